"""
Resident memory and speed of RainbowReplayBuffer with Atari-shaped observations (4 x 84 x 84 uint8 stacks).

Writes ``--n`` transitions (default 200k, one env, episodes of random length with their final frames)
through ``add`` exactly as SB3's OffPolicyAlgorithm would, measures the resident-set growth from
/proc/self/status, and extrapolates to 1M transitions:

    RSS(1M) ~= RSS_delta(n) * 1e6 / n        (the storage is linear in n; the sum tree is rounded up
                                             to a power of two, a few MB either way)

It also reports ``storage_nbytes()`` of a (lazily allocated) 1M buffer, and the time of ``sample(32)``,
``update_priorities`` and ``add`` at that size.

Run:  flock /tmp/sb3gap.cpu python benchmarks/replay_memory.py [--n 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_gap.rainbow.buffers import RainbowReplayBuffer

FRAME_STACK, H, W = 4, 84, 84


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fill(buffer: RainbowReplayBuffer, n: int, rng: np.random.Generator) -> float:
    """Add n steps of VecFrameStack-style stacks (zeros at reset); returns seconds per add."""
    palette = rng.integers(0, 256, size=(512, 1, H, W), dtype=np.uint8)  # distinct frames to cycle through
    stack = np.zeros((1, FRAME_STACK, H, W), dtype=np.uint8)
    stack[0, -1] = palette[0, 0]
    episode_left = int(rng.integers(500, 5000))
    start = time.perf_counter()
    for t in range(n):
        frame = palette[(t * 7 + 1) % len(palette)]
        next_stack = np.concatenate([stack[:, 1:], frame[None]], axis=1)
        episode_left -= 1
        done = episode_left == 0
        infos = [{"TimeLimit.truncated": False}]
        buffer.add(stack, next_stack, np.array([t % 6]), np.array([1.0], dtype=np.float32), np.array([done]), infos)
        if done:  # reset: older frames are zeros
            episode_left = int(rng.integers(500, 5000))
            stack = np.zeros_like(stack)
            stack[0, -1] = palette[(t * 13 + 5) % len(palette), 0]
        else:
            stack = next_stack
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="transitions actually written (>= 100k)")
    parser.add_argument("--repeats", type=int, default=2000, help="sample() calls to time")
    args = parser.parse_args()
    th.set_num_threads(2)
    np.random.seed(0)
    rng = np.random.default_rng(0)
    obs_space = spaces.Box(0, 255, (FRAME_STACK, H, W), np.uint8)

    lazy = RainbowReplayBuffer(1_000_000, obs_space, spaces.Discrete(18), "cpu", frame_stack=FRAME_STACK)
    nbytes_1m, frames_1m = lazy.storage_nbytes(), lazy.frames.nbytes
    del lazy

    before = rss_bytes()
    buffer = RainbowReplayBuffer(args.n, obs_space, spaces.Discrete(18), "cpu", frame_stack=FRAME_STACK)
    add_s = fill(buffer, args.n, rng)
    delta = rss_bytes() - before
    assert buffer.full, "the buffer should be full"

    batch = buffer.sample(32)  # warm-up
    start = time.perf_counter()
    for _ in range(args.repeats):
        batch = buffer.sample(32, beta=0.5)
    sample_s = (time.perf_counter() - start) / args.repeats
    losses = rng.uniform(0, 5, size=(args.repeats, 32))
    start = time.perf_counter()
    for i in range(args.repeats):
        buffer.update_priorities(batch.indices, losses[i])
    update_s = (time.perf_counter() - start) / args.repeats

    per_transition = delta / args.n
    print(f"transitions written            n = {args.n:,} (4x84x84 uint8 stacks, frame_stack=4, 1 env)")
    print(f"RSS growth                     {delta / 1e9:.3f} GB  = {per_transition:,.0f} B/transition")
    print(f"  of which storage_nbytes()    {buffer.storage_nbytes() / 1e9:.3f} GB (frames {buffer.frames.nbytes / 1e9:.3f} GB)")
    print(f"extrapolated to 1M             RSS_delta * 1e6 / n = {per_transition * 1e6 / 1e9:.2f} GB  (limit 7.5 GB)")
    print(f"storage_nbytes() of a 1M buffer {nbytes_1m / 1e9:.3f} GB (frames {frames_1m / 1e9:.3f} GB, rest {(nbytes_1m - frames_1m) / 1e6:.1f} MB)")
    print(f"SB3 NStepReplayBuffer at 1M    {2 * 1_000_000 * FRAME_STACK * H * W / 1e9:.1f} GB (obs + next_obs stacks)")
    print(f"final-frame pool               {len(buffer.final_frames)} rows")
    print(f"add()                          {add_s * 1e6:.0f} us/step")
    print(f"sample(32)                     {sample_s * 1e3:.3f} ms  (mean of {args.repeats})")
    print(f"update_priorities(32)          {update_s * 1e6:.0f} us")


if __name__ == "__main__":
    main()
