"""
The fastest any agent with a given network can run on this machine: an upper bound for the numbers of
``rainbow_throughput.py``.

With one env and one gradient update every 4 env steps, an off-policy agent needs per 4 steps at least:
one gradient update of the bare network (online forward with grad + target forward + backward + Adam step,
batch 32, no replay, no loss bookkeeping, no SB3) and 4 x (one batch-1 acting forward + one env step).
This script times those three pieces on their own, with the same env, network and thread count as
``rainbow_throughput.py``, and prints

* ``max steps/s`` = 4 / (update + 4 (act + env)): no algorithm using this network can step faster;
* ``max updates share`` = update / (update + 4 (act + env)): the largest share of wall time the gradient
  updates can take, even with zero framework overhead.

Not a test: run it by hand, alone on the machine (results in docs/benchmarks_rainbow.md)::

    flock /tmp/sb3gap.cpu python benchmarks/throughput_floor.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch as th
from rainbow_throughput import NETWORKS, make_env  # same envs and networks as the throughput benchmark

import sb3_gap
from sb3_gap import Rainbow


def _median_ms(fn: Callable[[], object], n: int, reps: int) -> float:
    """Median over ``reps`` repetitions of the mean time of ``n`` calls, in ms (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append(1000 * (time.perf_counter() - start) / n)
    return statistics.median(times)


def bare_update(model: Rainbow, batch_size: int = 32) -> Callable[[], None]:
    """
    One gradient update of ``model``'s networks with nothing else: online forward with grad + target forward +
    backward + the model's optimizer step on a fixed random batch (no replay, no loss bookkeeping, no SB3).

    :param model: A Rainbow model (its online and target networks and its optimizer are used)
    :param batch_size: Batch size
    :return: A function running one update
    """
    q_net, q_target = model.q_net, model.q_net_target
    optimizer = model.policy.optimizer  # Rainbow's default: Adam (fused where available)
    space = model.observation_space
    batch = th.as_tensor(np.stack([space.sample() for _ in range(batch_size)]), device=model.device)
    next_batch = th.as_tensor(np.stack([space.sample() for _ in range(batch_size)]), device=model.device)

    def update() -> None:
        with th.no_grad():
            target = q_target(next_batch)
        loss = (q_net(batch) * target).mean()  # the cheapest loss that uses both passes
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return update


def measure(env_name: str, network: str, n: int, reps: int) -> dict[str, float]:
    env = make_env(env_name, seed=0)
    model = Rainbow("CnnPolicy", env, buffer_size=100, policy_kwargs=sb3_gap.policy_kwargs(**NETWORKS[network]), seed=0)
    q_net = model.q_net
    single = th.as_tensor(model.observation_space.sample()[None], device=model.device)
    update = bare_update(model)

    def act() -> None:
        with th.inference_mode():
            q_net.q_values(single).argmax(dim=1).cpu()

    actions = [np.array([env.action_space.sample()]) for _ in range(64)]
    step_count = [0]

    def env_step() -> None:
        env.step(actions[step_count[0] % 64])
        step_count[0] += 1

    env.reset()
    result = {
        "update_ms": _median_ms(update, n, reps),
        "act_ms": _median_ms(act, 4 * n, reps),
        "env_ms": _median_ms(env_step, 4 * n, reps),
    }
    env.close()
    per_4_steps = result["update_ms"] + 4 * (result["act_ms"] + result["env_ms"])
    result["max_steps_per_s"] = 4000 / per_4_steps
    result["max_update_share"] = result["update_ms"] / per_4_steps
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["minatar-breakout", "pong"])
    parser.add_argument("--networks", nargs="+", default=None, help=f"default: all that fit; from {sorted(NETWORKS)}")
    parser.add_argument("--n", type=int, default=20, help="updates per repetition (4x as many acting/env steps)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for name in ("n", "reps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    th.set_num_threads(args.threads)
    for name in args.networks or []:
        if name not in NETWORKS:
            parser.error(f"Unknown network {name!r}; valid choices: {sorted(NETWORKS)}")
    print("| env | network | bare update ms | act ms (batch 1) | env step ms | max steps/s | max updates share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for env_name in args.envs:
        networks = [n for n in args.networks or NETWORKS if env_name == "pong" or not n.startswith("nature")]
        for network in networks:
            r = measure(env_name, network, args.n, args.reps)
            print(
                f"| {env_name} | {network} | {r['update_ms']:.1f} | {r['act_ms']:.2f} | {r['env_ms']:.2f} | "
                f"{r['max_steps_per_s']:.0f} | {100 * r['max_update_share']:.0f}% |",
                flush=True,
            )


if __name__ == "__main__":  # guard: SubprocVecEnv re-imports __main__
    main()
