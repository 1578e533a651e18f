"""
Throughput of Rainbow vs SB3's DQN and sb3-contrib's QR-DQN: same env, same network, same update period.

For each (env, network) it trains each algorithm for ``--learning-starts`` random steps (filling the
replay, not timed) and then ``--steps`` timed steps with one gradient update every 4 steps (batch 32),
and reports env steps/s, ms per update and the share of wall time spent in ``train()`` (the gradient
updates). Exploration is fixed at ε = 0.01 for every algorithm so that each step runs the network.

Not a test: run it by hand, alone on the machine (results in docs/benchmarks_rainbow.md)::

    flock /tmp/sb3gap.cpu python benchmarks/rainbow_throughput.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

import sb3_gap
from sb3_gap import Rainbow

ALGOS: dict[str, type[BaseAlgorithm]] = {"rainbow": Rainbow, "dqn": DQN, "qrdqn": QRDQN}

# (label, policy_kwargs(...) arguments); Nature needs >= 36 px so it only runs on Atari.
NETWORKS: dict[str, dict[str, Any]] = {
    "nature-x1-flatten": dict(encoder="nature", bottleneck="flatten", width_scale=1),
    "impala-x1-flatten": dict(encoder="impala", bottleneck="flatten", width_scale=1),
    "impala-x1-gap": dict(encoder="impala", bottleneck="gap", width_scale=1),
    "impala-x4-flatten": dict(encoder="impala", bottleneck="flatten", width_scale=4),
    "impala-x4-gap": dict(encoder="impala", bottleneck="gap", width_scale=4),
}


def make_env(name: str, seed: int) -> VecEnv:
    """``minatar-breakout``: MinAtar/Breakout-v1 (4x10x10 uint8); ``pong``: ALE Pong with SB3's
    AtariWrapper (frame skip 4, 84x84 gray) and 4 stacked frames, as in the paper."""
    if name == "minatar-breakout":
        return make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=seed)
    if name == "pong":
        import ale_py

        gym.register_envs(ale_py)
        # frameskip=1 at the ALE level: AtariWrapper skips 4 frames itself (ALE/*-v5 would skip 4 already).
        env = make_vec_env(lambda: gym.make("ALE/Pong-v5", frameskip=1), n_envs=1, seed=seed, wrapper_class=AtariWrapper)
        return VecFrameStack(env, 4)
    raise ValueError(f"Unknown env {name!r}; valid choices: ['minatar-breakout', 'pong']")


class _Timer(BaseCallback):
    """Starts the clock when the replay warm-up ends."""

    def __init__(self, learning_starts: int, clock: dict[str, float]) -> None:
        super().__init__()
        self.learning_starts, self.clock = learning_starts, clock

    def _on_step(self) -> bool:
        if self.num_timesteps == self.learning_starts:
            self.clock["start"] = time.perf_counter()
            self.clock["train_at_start"] = self.clock["train"]
            self.clock["updates_at_start"] = self.model._n_updates
        return True


def measure(algo: str, env_name: str, network: str, steps: int, learning_starts: int, device: str) -> dict[str, float]:
    env = make_env(env_name, seed=0)
    kwargs: dict[str, Any] = dict(
        buffer_size=learning_starts + steps + 100,
        learning_starts=learning_starts,
        batch_size=32,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=8_000,
        exploration_initial_eps=0.01,
        exploration_final_eps=0.01,
        policy_kwargs=sb3_gap.policy_kwargs(**NETWORKS[network]),
        seed=0,
        device=device,
    )
    if algo == "rainbow":
        kwargs["exploration_steps"] = 0  # C51 + 3-step + PER: the defaults
    model = ALGOS[algo]("CnnPolicy", env, **kwargs)
    clock = {"train": 0.0}
    train = model.train
    cuda = th.device(model.device).type == "cuda"

    def timed_train(*args: Any, **kw: Any) -> None:
        t = time.perf_counter()
        train(*args, **kw)
        if cuda:
            th.cuda.synchronize()
        clock["train"] += time.perf_counter() - t

    model.train = timed_train  # type: ignore[method-assign]
    model.learn(learning_starts + steps, callback=_Timer(learning_starts, clock))
    if cuda:
        th.cuda.synchronize()
    wall = time.perf_counter() - clock["start"]
    train_s = clock["train"] - clock["train_at_start"]
    updates = model._n_updates - clock["updates_at_start"]
    env.close()
    return {"steps_per_s": steps / wall, "ms_per_update": 1000 * train_s / max(updates, 1), "update_share": train_s / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["minatar-breakout", "pong"])
    parser.add_argument("--networks", nargs="+", default=None, help=f"default: all that fit; from {sorted(NETWORKS)}")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--steps", type=int, default=1000, help="timed env steps per run (after learning_starts)")
    parser.add_argument("--pong-steps", type=int, default=400, help="timed env steps per run on Pong")
    parser.add_argument("--learning-starts", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    for name in args.networks or []:
        if name not in NETWORKS:
            parser.error(f"Unknown network {name!r}; valid choices: {sorted(NETWORKS)}")

    rows = []
    print("| env | network | algo | steps/s | ms/update | updates share of wall | Rainbow speed-up |")
    print("|---|---|---|---:|---:|---:|---|")
    for env_name in args.envs:
        networks = [n for n in args.networks or NETWORKS if env_name == "pong" or not n.startswith("nature")]
        steps = args.pong_steps if env_name == "pong" else args.steps
        for network in networks:
            results = {algo: measure(algo, env_name, network, steps, args.learning_starts, args.device) for algo in args.algos}
            for algo, r in results.items():
                speedup = ""
                if algo == "rainbow":
                    ratios = [f"{r['steps_per_s'] / results[o]['steps_per_s']:.2f}x {o}" for o in ("dqn", "qrdqn") if o in results]
                    speedup = ", ".join(ratios)
                print(
                    f"| {env_name} | {network} | {algo} | {r['steps_per_s']:.1f} | {r['ms_per_update']:.1f} | "
                    f"{100 * r['update_share']:.0f}% | {speedup} |",
                    flush=True,
                )
                rows.append((env_name, network, algo, r))


if __name__ == "__main__":  # guard: SubprocVecEnv re-imports __main__
    main()
