"""Cost of the diagnostics callbacks (run by hand; results in docs/benchmarks_diagnostics.md).

    flock /tmp/sb3gap.cpu python benchmarks/diagnostics_overhead.py

End-to-end wall-clock comparisons of short trainings on a shared 2-core machine are dominated by
noise (±10 % between identical runs), so this measures the two costs that make up the overhead:

1. *per update*: one ``model.train(gradient_steps=1)`` of QR-DQN (Impala φ, GAP, ψ ×``--width-scale``,
   batch 32, MinAtar Breakout, replay filled by ``--fill`` steps) with no callback, with a callback
   measuring **every** update (``every=1``, the worst case: each update pays one full check), and
   with ``every=1000`` (the default: no check in the window, only the step counter). The
   configurations alternate update by update and the median of each is kept.
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
    parser.add_argument("--updates", type=int, default=100, help="gradient updates timed per configuration")
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
    # Interleave the configurations update by update and keep the median: drift and other
    # processes on a shared machine then hit every configuration alike.
    callbacks = {name: make() if make else None for name, make in CALLBACKS.items()}
    times: dict[str, list[float]] = {k: [] for k in CALLBACKS}
    for cb in callbacks.values():
        if cb is not None:
            cb.init_callback(model)
            cb._remove_hooks()  # attached below, one configuration at a time
    for _ in range(args.updates):
        for name, cb in callbacks.items():
            if cb is not None:
                cb._init_callback()  # re-attach (not timed)
            start = time.perf_counter()
            model.train(gradient_steps=1, batch_size=32)
            times[name].append(time.perf_counter() - start)
            if cb is not None:
                cb.on_training_end()
    base = float(np.median(times["none"]))
    print(
        f"QR-DQN impala/gap ×{args.width_scale} on {args.env}, batch 32, device {model.device}, "
        f"median of {args.updates} interleaved updates per configuration"
    )
    print("| callback | ms / update (median) | extra ms / update | extra |\n|---|---:|---:|---:|")
    for name, ts in times.items():
        per = float(np.median(ts))
        print(f"| {name} | {1000 * per:.2f} | {1000 * (per - base):+.2f} | {100 * (per - base) / base:+.1f}% |")
    checks = {name: cb.n_updates // cb.every for name, cb in callbacks.items() if cb is not None}
    print(f"checks run: {checks}")

    obs = np.stack([model.observation_space.sample() for _ in range(256)])
    for fn in (dormant_fractions, grama_fractions, feature_norms):
        fn(model, obs)
        start = time.perf_counter()
        for _ in range(5):
            fn(model, obs)
        print(f"{fn.__name__}(model, 256 observations): {1000 * (time.perf_counter() - start) / 5:.1f} ms")


if __name__ == "__main__":
    main()
