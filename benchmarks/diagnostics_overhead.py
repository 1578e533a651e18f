"""Cost of the diagnostics callbacks (run by hand; results in docs/benchmarks_diagnostics.md).

    flock /tmp/sb3gap.cpu python benchmarks/diagnostics_overhead.py

End-to-end wall-clock comparisons of short trainings on a shared 2-core machine are dominated by
noise (±10 % between identical runs), so this measures the two costs that make up the overhead:

1. *per update*: ``model.train(gradient_steps=U)`` of QR-DQN (Impala φ, GAP, ψ ×``--width-scale``,
   batch 32, MinAtar Breakout, replay filled by ``--fill`` random-ish steps) with no callback, with
   a callback measuring **every** update (``every=1``, the worst case: each update pays one check),
   and with ``every=1000`` (the default). Configurations are interleaved over ``--repeats`` rounds
   and the best time of each is kept.
2. *per call*: the pure functions on 256 observations.

Overhead of ``every=N`` on training ≈ (check cost) / (N × time per update + env time between updates).
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
from sb3_gap.diagnostics import DiagnosticsCallback, ReDoCallback, ReGraMaCallback, dormant_fractions, feature_norms, grama_fractions

CALLBACKS = {
    "none": None,
    "DiagnosticsCallback(every=1000)": lambda: DiagnosticsCallback(every=1000),
    "DiagnosticsCallback(every=1)": lambda: DiagnosticsCallback(every=1),
    "ReDoCallback(every=1)": lambda: ReDoCallback(every=1, tau=0.1),
    "ReGraMaCallback(every=1)": lambda: ReGraMaCallback(every=1, tau=0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--fill", type=int, default=1000, help="env steps to fill the replay buffer")
    parser.add_argument("--updates", type=int, default=200, help="gradient updates timed per configuration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width-scale", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    model = QRDQN(
        "CnnPolicy",
        gym.make(args.env),
        policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap", width_scale=args.width_scale),
        buffer_size=args.fill,
        learning_starts=args.fill,  # fill only, no update yet
        batch_size=32,
        seed=0,
        device=args.device,
    )
    model.learn(args.fill)
    times: dict[str, list[float]] = {k: [] for k in CALLBACKS}
    for _ in range(args.repeats):
        for name, make in CALLBACKS.items():
            cb = make() if make else None
            if cb is not None:
                cb.init_callback(model)
            start = time.perf_counter()
            model.train(gradient_steps=args.updates, batch_size=32)
            times[name].append(time.perf_counter() - start)
            if cb is not None:
                cb.on_training_end()
                assert cb.n_updates == args.updates
    base = min(times["none"]) / args.updates
    print(f"QR-DQN impala/gap ×{args.width_scale} on {args.env}, batch 32, device {model.device}, "
          f"{args.updates} updates, best of {args.repeats}")
    print("| callback | ms / update | extra ms / update | extra per update |\n|---|---:|---:|---:|")
    for name, ts in times.items():
        per = min(ts) / args.updates
        print(f"| {name} | {1000 * per:.2f} | {1000 * (per - base):+.2f} | {100 * (per - base) / base:+.1f}% |")

    obs = np.stack([model.observation_space.sample() for _ in range(256)])
    for fn in (dormant_fractions, grama_fractions, feature_norms):
        fn(model, obs)
        start = time.perf_counter()
        for _ in range(5):
            fn(model, obs)
        print(f"{fn.__name__}(model, 256 observations): {1000 * (time.perf_counter() - start) / 5:.1f} ms")


if __name__ == "__main__":
    main()
