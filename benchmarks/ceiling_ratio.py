"""
Rainbow's end-to-end env steps/s as a share of the zero-overhead ceiling (docs/benchmarks_speed.md), both measured in one
process and interleaved, so that machine noise hits both alike (separate runs of ``rainbow_throughput.py`` and
``throughput_floor.py`` differ by up to ±20 % on a shared 2-core VM).

Per case, one Rainbow model (C51 + 3-step + PER, the defaults; ε fixed at 0.01, one update of batch 32 every 4
steps) first fills its replay with ``--learning-starts`` steps. Then ``--rounds`` rounds, each timing:

* ``rainbow``: ``model.learn(--steps, reset_num_timesteps=False)``: SB3's loop, ``predict``, the replay writes,
  the updates, callbacks and logging; ``train()`` is timed inside it (``ms/update``);
* ``ceiling``: the same number of env steps done with nothing else: per step one batch-1 greedy forward of the
  model's online network and one ``env.step``; every 4 steps one bare update of the model's networks and
  optimizer (``throughput_floor.bare_update``: fixed batch, no replay, no loss bookkeeping).

Reported: medians over rounds of steps/s and their ratio (target: >= 90 %), and where Rainbow's extra time per
step goes: in ``train()`` (update minus bare update, per step) or outside it (the loop).

    flock /tmp/sb3gap.cpu python benchmarks/ceiling_ratio.py --threads 2     # the table in docs/benchmarks_speed.md
    python benchmarks/ceiling_ratio.py --quick                               # smoke run
    python benchmarks/ceiling_ratio.py --no-updates                          # SB3's loop alone vs bare acting + env steps
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch as th
from rainbow_throughput import make_env
from throughput_floor import bare_update
from update_cost import NETWORKS, parse_case

import sb3_gap
from sb3_gap import Rainbow

DEFAULT_CASES = ["minatar-breakout:minatar_impala-x4-gap", "minatar-breakout:impala-x4-gap", "pong:nature-x1-flatten"]


def measure_case(env_name: str, network: str, steps: int, rounds: int, learning_starts: int, updates: bool = True) -> dict[str, float]:
    """Median steps/s of Rainbow and of the ceiling loop over interleaved rounds, and the per-step split."""
    env = make_env(env_name, seed=0)
    model = Rainbow(
        "CnnPolicy", env, buffer_size=learning_starts + rounds * steps + 100, learning_starts=learning_starts, batch_size=32,
        train_freq=4, gradient_steps=1, exploration_initial_eps=0.01, exploration_final_eps=0.01, exploration_steps=0,
        policy_kwargs=sb3_gap.policy_kwargs(**NETWORKS[network]), seed=0,
    )  # fmt: skip
    clock = {"train": 0.0, "updates": 0}
    train = model.train

    def timed_train(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        train(*args, **kwargs)
        clock["train"] += time.perf_counter() - started
        clock["updates"] += 1

    model.train = timed_train  # type: ignore[method-assign]
    model.learn(learning_starts + 4)  # fill the replay; the first update runs
    update, q_net = bare_update(model), model.q_net
    if not updates:  # the loop alone: no gradient step in learn() and none in the ceiling loop
        model.gradient_steps = 0
        update = lambda: None  # noqa: E731
    ceiling_env = model._wrap_env(make_env(env_name, seed=1))  # as the model sees its env (VecTransposeImage for Pong)
    obs = ceiling_env.reset()

    def ceiling_loop() -> None:
        nonlocal obs
        for step in range(steps):
            with th.inference_mode():
                action = q_net.q_values(th.as_tensor(obs, device=model.device)).argmax(dim=1).cpu().numpy()
            obs, _, _, _ = ceiling_env.step(action)
            if step % 4 == 3:
                update()

    rows: dict[str, list[float]] = {"rainbow": [], "ceiling": [], "update_ms": [], "bare_ms": []}
    for round_ in range(rounds):
        for part in ("rainbow", "ceiling") if round_ % 2 == 0 else ("ceiling", "rainbow"):
            started = time.perf_counter()
            if part == "rainbow":
                train_before, updates_before = clock["train"], clock["updates"]
                model.learn(steps, reset_num_timesteps=False)
                rows["update_ms"].append(1000 * (clock["train"] - train_before) / max(clock["updates"] - updates_before, 1))
            else:
                ceiling_loop()
            rows[part].append(steps / (time.perf_counter() - started))
        bare_started = time.perf_counter()
        for _ in range(max(steps // 16, 5)):
            update()
        rows["bare_ms"].append(1000 * (time.perf_counter() - bare_started) / max(steps // 16, 5))
    env.close()
    ceiling_env.close()
    out = {key: statistics.median(values) for key, values in rows.items()}
    out["ratio"] = statistics.median(np.array(rows["rainbow"]) / np.array(rows["ceiling"]))
    extra_ms = 1000 / out["rainbow"] - 1000 / out["ceiling"]  # Rainbow's extra wall time per env step
    out["extra_in_update_ms"] = (out["update_ms"] - out["bare_ms"]) / 4
    out["extra_outside_ms"] = extra_ms - out["extra_in_update_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help=f"env:network, network from {sorted(NETWORKS)}")
    parser.add_argument("--steps", type=int, default=400, help="env steps per timed part of a round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one MinAtar case, 2 short rounds")
    parser.add_argument("--no-updates", action="store_true", help="no gradient updates on either side: SB3's loop against bare acting + env steps")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    cases = args.cases
    if args.quick:
        cases, args.steps, args.rounds, args.learning_starts = DEFAULT_CASES[:1], 80, 2, 200
    try:
        parsed = [parse_case(case) for case in cases]
    except ValueError as e:
        parser.error(str(e))
    print(
        "| env | network | Rainbow steps/s | ceiling steps/s | Rainbow / ceiling | ms/update | bare update ms | extra ms/step in train() | extra ms/step outside |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for env_name, network in parsed:
        steps = args.steps if env_name != "pong" else max(args.steps // 4, 40)
        r = measure_case(env_name, network, steps, args.rounds, args.learning_starts, updates=not args.no_updates)
        print(
            f"| {env_name} | {network} | {r['rainbow']:.1f} | {r['ceiling']:.1f} | {100 * r['ratio']:.0f}% | {r['update_ms']:.2f} | "
            f"{r['bare_ms']:.2f} | {r['extra_in_update_ms']:.2f} | {r['extra_outside_ms']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":  # guard: SubprocVecEnv re-imports __main__
    main()
