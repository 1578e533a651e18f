"""Overhead of the diagnostics callbacks on training wall time (run by hand; results in docs/benchmarks_diagnostics.md).

    flock /tmp/sb3gap.cpu python benchmarks/diagnostics_overhead.py --steps 5000 --repeats 2

Trains QR-DQN (Impala φ, GAP, ψ ×1) on MinAtar Breakout with no callback and with each callback,
interleaving the configurations over ``--repeats`` rounds, and prints the best wall time of each
and its overhead relative to no callback. Also times one call of the pure metric functions.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import QRDQN

import sb3_gap  # noqa: F401  (registers MinAtar/*)
from sb3_gap import policy_kwargs
from sb3_gap.diagnostics import DiagnosticsCallback, ReDoCallback, ReGraMaCallback, dormant_fractions, grama_fractions

CONFIGS = {
    "none": lambda: [],
    "DiagnosticsCallback(every=1000)": lambda: [DiagnosticsCallback(every=1000)],
    "DiagnosticsCallback(every=100)": lambda: [DiagnosticsCallback(every=100)],
    "DiagnosticsCallback(every=10)": lambda: [DiagnosticsCallback(every=10)],
    "ReDoCallback(every=1000)": lambda: [ReDoCallback(every=1000)],
    "ReGraMaCallback(every=1000)": lambda: [ReGraMaCallback(every=1000)],
}


def make(env_id: str, steps: int, width_scale: int, device: str) -> QRDQN:
    return QRDQN(
        "CnnPolicy",
        gym.make(env_id),
        policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap", width_scale=width_scale),
        buffer_size=steps,
        learning_starts=500,
        batch_size=32,
        train_freq=4,
        seed=0,
        device=device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width-scale", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    times: dict[str, list[float]] = {k: [] for k in CONFIGS}
    updates: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, callbacks in CONFIGS.items():
            model = make(args.env, args.steps, args.width_scale, args.device)
            cbs = callbacks()
            start = time.perf_counter()
            model.learn(args.steps, callback=cbs)
            times[name].append(time.perf_counter() - start)
            updates[name] = model._n_updates
    base = min(times["none"])
    print(f"QR-DQN impala/gap ×{args.width_scale} on {args.env}, {args.steps} steps, device {model.device}, best of {args.repeats}")
    print(f"| callback | updates | checks | wall (s) | overhead |\n|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        every = int(name.split("=")[1].rstrip(")")) if "=" in name else 0
        checks = updates[name] // every if every else 0
        print(f"| {name} | {updates[name]} | {checks} | {min(ts):.2f} | {100 * (min(ts) - base) / base:+.1f}% |")

    obs = np.stack([model.observation_space.sample() for _ in range(256)])
    for fn in (dormant_fractions, grama_fractions):
        fn(model, obs)
        start = time.perf_counter()
        for _ in range(5):
            fn(model, obs)
        print(f"{fn.__name__}(model, 256 observations): {1000 * (time.perf_counter() - start) / 5:.1f} ms")


if __name__ == "__main__":
    main()
