"""The README's main job: a small flatten-vs-GAP scaling demo on MinAtar Breakout.

``python -m sb3_gap.demo`` trains QR-DQN with an Impala encoder and a flatten or GAP
bottleneck at ψ widths ×1 and ×4, then prints final returns, wall time and parameter counts.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch as th
from rich.console import Console
from rich.table import Table
from sb3_contrib import QRDQN
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_gap  # noqa: F401  (registers MinAtar/* ids)
from sb3_gap import parameter_report, policy_kwargs


def run_one(env_id: str, bottleneck: str, width_scale: int, steps: int, seed: int, eval_episodes: int) -> dict:
    env = gym.make(env_id)
    model = QRDQN(
        "CnnPolicy",
        env,
        policy_kwargs=policy_kwargs(encoder="impala", bottleneck=bottleneck, width_scale=width_scale),
        learning_rate=2.5e-4,
        buffer_size=min(100_000, steps),
        learning_starts=min(1_000, steps // 10),
        batch_size=32,
        train_freq=4,
        target_update_interval=1_000,
        exploration_fraction=0.25,
        exploration_final_eps=0.01,
        seed=seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(steps, progress_bar=True)
    wall = time.perf_counter() - start
    mean, std = evaluate_policy(model, gym.make(env_id), n_eval_episodes=eval_episodes, deterministic=True)
    report = parameter_report(model)
    return dict(bottleneck=bottleneck, width_scale=width_scale, mean=mean, std=std, wall=wall, report=report)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--steps", type=int, default=10_000, help="training steps per run")
    parser.add_argument("--bottlenecks", nargs="+", default=["flatten", "gap"])
    parser.add_argument("--width-scales", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args(argv)
    th.set_num_threads(max(1, min(th.get_num_threads(), 2)))

    console = Console()
    rows = []
    for scale in args.width_scales:
        for neck in args.bottlenecks:
            console.print(f"[bold]QR-DQN · impala · {neck} ×{scale} · {args.env} · {args.steps} steps")
            rows.append(run_one(args.env, neck, scale, args.steps, args.seed, args.eval_episodes))

    table = Table(title=f"QR-DQN on {args.env}, {args.steps} steps, seed {args.seed}")
    for col in ("bottleneck", "ψ width", "eval return", "wall (s)", "steps/s", "φ params", "connection", "ψ params"):
        table.add_column(col, justify="right")
    for r in rows:
        rep = r["report"]
        table.add_row(
            r["bottleneck"],
            f"×{r['width_scale']}",
            f"{r['mean']:.2f} ± {r['std']:.2f}",
            f"{r['wall']:.1f}",
            f"{args.steps / r['wall']:.0f}",
            f"{rep.phi:,}",
            f"{rep.connection:,}",
            f"{rep.psi:,}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
