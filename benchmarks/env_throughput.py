"""Environment throughput: envpool ×N (one C++ call) vs SB3 DummyVecEnv ×N (Python loop), random actions.

    python benchmarks/env_throughput.py --n-envs 4 --steps 2500

Counts agent steps over all envs per second (each Atari agent step = 4 emulator frames), including
VecFrameStack(4) for Atari as in training. Results go in docs/benchmarks_envs.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from sb3_gap.envs import make_atari_vec_env, make_procgen_vec_env
from sb3_gap.envs.procgen import ProcgenEnv


def steps_per_second(venv: VecEnv, steps: int, seed: int = 0) -> float:
    """Agent steps per second summed over ``venv``'s envs, after a short warm-up."""
    rng = np.random.default_rng(seed)
    n_actions = int(venv.action_space.n)
    venv.reset()
    for _ in range(50):
        venv.step(rng.integers(n_actions, size=venv.num_envs))
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(n_actions, size=venv.num_envs))
    elapsed = time.perf_counter() - start
    venv.close()
    return steps * venv.num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2500, help="vectorized steps per measurement")
    parser.add_argument("--atari-game", default="Pong")
    parser.add_argument("--procgen-game", default="Starpilot")
    args = parser.parse_args()
    th.set_num_threads(1)
    n = args.n_envs
    rows = [
        (
            f"Atari {args.atari_game}, Dopamine protocol, DummyVecEnv x{n} (gymnasium AtariPreprocessing)",
            make_atari_vec_env(args.atari_game, "Dopamine", n_envs=n, seed=0, backend="gymnasium"),
        ),
        (
            f"Atari {args.atari_game}, Dopamine protocol, envpool x{n} (EnvPoolVecEnv)",
            make_atari_vec_env(args.atari_game, "Dopamine", n_envs=n, seed=0, backend="envpool"),
        ),
        (
            f"Procgen {args.procgen_game} easy, DummyVecEnv x{n} of ProcgenEnv (envpool pools of 1)",
            make_vec_env(ProcgenEnv, n_envs=n, seed=0, env_kwargs=dict(game=args.procgen_game)),
        ),
        (f"Procgen {args.procgen_game} easy, envpool x{n} (EnvPoolVecEnv)", make_procgen_vec_env(args.procgen_game, n_envs=n)),
    ]
    print(f"# {platform.processor() or platform.machine()}, {n} envs, {args.steps} vectorized steps each")
    print("| setting | agent steps/s |\n|---|---|")
    for name, venv in rows:
        print(f"| {name} | {steps_per_second(venv, args.steps):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
