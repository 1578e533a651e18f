"""
Resident memory and speed of the frame-once replays with Atari-shaped observations (4 x 84 x 84 uint8
stacks), as the Zoo configs build them for DQN, QR-DQN and Rainbow:

- ``dqn`` / ``qrdqn``: ``replay_buffer_class`` + ``replay_buffer_kwargs`` of the ``atari`` section of
  ``zoo_configs/<algo>.yml`` (sb3_gap.replay.FrameReplayBuffer, uniform sampling, SB3's batches);
- ``rainbow``: ``RainbowReplayBuffer`` with ``zoo_configs/rainbow.yml``'s ``n_steps`` and prioritized
  replay (Rainbow's default).

Each buffer is measured in a fresh child process: ``--n`` transitions (default 200k, one env,
episodes of 500-5000 steps with their final frames) go through ``add`` exactly as SB3's
``OffPolicyAlgorithm`` calls it, into a buffer of capacity ``n`` (so it is full); the resident-set growth
(/proc/self/status) is extrapolated to 1M transitions:

    RSS(1M) ~= RSS_delta(n) * 1e6 / n        (the storage is linear in n; the sum tree is rounded up
                                             to a power of two, a few MB either way)

It also reports ``storage_nbytes()`` of a (lazily allocated) 1M buffer, and the time of ``add``,
``sample(32)`` and (Rainbow) ``update_priorities`` at that size.

Run:  flock /tmp/sb3gap.cpu python benchmarks/replay_memory.py [--n 200000] [--algos dqn qrdqn rainbow]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
from gymnasium import spaces

FRAME_STACK, H, W, N_ACTIONS = 4, 84, 84, 18
ALGOS = ("dqn", "qrdqn", "rainbow")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_replay(algo: str, buffer_size: int) -> Any:
    """The replay ``algo`` gets from its Zoo config's ``atari`` section (Dopamine/Pong-v5), for 4x84x84 stacks."""
    from sb3_gap.rainbow.buffers import RainbowReplayBuffer
    from sb3_gap.zoo_config import resolve_section

    settings = resolve_section(algo, "Dopamine/Pong-v5")
    if settings.env.get("frame_stack") != FRAME_STACK:
        raise ValueError(f"{settings.source} stacks {settings.env.get('frame_stack')} frames; valid: {FRAME_STACK}")
    obs_space, action_space = spaces.Box(0, 255, (FRAME_STACK, H, W), np.uint8), spaces.Discrete(N_ACTIONS)
    kwargs = settings.algo_kwargs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "needs ... GB once full" on a small machine: nothing is touched yet
        if algo == "rainbow":
            return RainbowReplayBuffer(buffer_size, obs_space, action_space, "cpu", n_steps=kwargs.get("n_steps", 3),
                                       gamma=kwargs.get("gamma", 0.99), frame_stack=FRAME_STACK, prioritized=True)  # fmt: skip
        buffer_class = kwargs.get("replay_buffer_class")
        if buffer_class is None:
            raise ValueError(f"{settings.source} sets no replay_buffer_class; valid: FrameReplayBuffer")
        return buffer_class(buffer_size, obs_space, action_space, "cpu", **kwargs.get("replay_buffer_kwargs", {}))


def fill(buffer: Any, n: int, rng: np.random.Generator) -> float:
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


def measure(algo: str, n: int, repeats: int) -> dict[str, Any]:
    """Fill a replay of capacity n in this process and measure it (run in a fresh child per algo)."""
    import torch as th

    th.set_num_threads(2)
    np.random.seed(0)
    rng = np.random.default_rng(0)
    lazy = make_replay(algo, 1_000_000)
    result: dict[str, Any] = dict(algo=algo, cls=type(lazy).__name__, n_steps=lazy.n_steps, nbytes_1m=lazy.storage_nbytes(),
                                  frames_1m=lazy.frames.nbytes)  # fmt: skip
    del lazy

    before = rss_bytes()
    buffer = make_replay(algo, n)
    result["add_us"] = fill(buffer, n, rng) * 1e6
    result["rss_delta"] = rss_bytes() - before
    result["nbytes"], result["frames"], result["final_rows"] = buffer.storage_nbytes(), buffer.frames.nbytes, len(buffer.final_frames)
    assert buffer.full, "the buffer should be full"

    prioritized = algo == "rainbow"
    batch = buffer.sample(32)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        batch = buffer.sample(32, beta=0.5) if prioritized else buffer.sample(32)
    result["sample_ms"] = (time.perf_counter() - start) / repeats * 1e3
    if prioritized:
        losses = rng.uniform(0, 5, size=(repeats, 32))
        start = time.perf_counter()
        for i in range(repeats):
            buffer.update_priorities(batch.indices, losses[i])
        result["update_us"] = (time.perf_counter() - start) / repeats * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="transitions actually written (>= 100k)")
    parser.add_argument("--repeats", type=int, default=2000, help="sample() calls to time")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="replays to measure")
    parser.add_argument("--child", choices=ALGOS, help=argparse.SUPPRESS)  # one measurement, printed as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.n, args.repeats)))
        return

    sb3_1m = 2 * 1_000_000 * FRAME_STACK * H * W  # obs + next_obs stacks
    rows = []
    for algo in args.algos:
        cmd = [sys.executable, __file__, "--child", algo, "--n", str(args.n), "--repeats", str(args.repeats)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        per = r["rss_delta"] / args.n
        print(f"{algo}: {r['cls']}(n_steps={r['n_steps']}) RSS growth {r['rss_delta'] / 1e9:.3f} GB for n={args.n:,} = {per:,.0f} "
              f"B/transition -> {per * 1e6 / 1e9:.2f} GB at 1M; storage_nbytes(1M) {r['nbytes_1m'] / 1e9:.3f} GB "
              f"(frames {r['frames_1m'] / 1e9:.3f} GB, rest {(r['nbytes_1m'] - r['frames_1m']) / 1e6:.1f} MB); "
              f"final-frame pool {r['final_rows']} rows; add {r['add_us']:.0f} us; sample(32) {r['sample_ms']:.3f} ms"
              + (f"; update_priorities(32) {r['update_us']:.0f} us" if "update_us" in r else ""), flush=True)  # fmt: skip
        rows.append((algo, r, per))
    print()
    print(
        f"| algo | replay | RSS growth, n = {args.n:,} | per transition | **extrapolated to 1M** | storage_nbytes() at 1M | SB3 ReplayBuffer at 1M | add() | sample(32) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for algo, r, per in rows:
        sampling = "prioritized" if algo == "rainbow" else "uniform"
        print(f"| {algo} | `{r['cls']}` (n_steps={r['n_steps']}, {sampling}) | {r['rss_delta'] / 1e9:.3f} GB | {per:,.0f} B | "
              f"**{per * 1e6 / 1e9:.2f} GB** | {r['nbytes_1m'] / 1e9:.3f} GB | {sb3_1m / 1e9:.1f} GB | {r['add_us']:.0f} µs | "
              f"{r['sample_ms']:.2f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
