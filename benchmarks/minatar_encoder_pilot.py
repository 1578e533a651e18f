"""Pilot for the MinAtar scaling study's encoder (results/minatar_scaling/README.md): a few minutes per candidate.

For each candidate encoder φ, train Rainbow with Dopamine's MinAtar settings (zoo_configs/rainbow.yml,
``minatar`` section) and the study's budget override (ε decay over 25k steps) at ψ ×4 with a flatten
and a GAP bottleneck, one seed, one torch thread per run, two runs at a time; print steps/s and the
evaluation returns.

    python benchmarks/minatar_encoder_pilot.py --steps 32000 --candidates minatar_impala --out pilot.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

CANDIDATES = {
    # name: a registered encoder name, or ImpalaEncoder kwargs
    "minatar": "minatar",  # Dopamine's one-conv MinAtar torso: 16x10x10, receptive field 3
    "minatar_impala": "minatar_impala",  # one pooled Impala stack, 1 residual block: 16x5x5, receptive field 13
    "impala": "impala",  # the paper's Impala (3 stacks): 32x2x2 on 10x10, flatten/GAP ratio only 4
    "stack16_nopool": dict(channels=(16,), pool=(False,)),  # one stack, 2 blocks, no pooling: 16x10x10, receptive field 11
    "stack16_pool_2blocks": dict(channels=(16,), pool=(True,)),  # one pooled stack, 2 blocks: 16x5x5, receptive field 21
    "stack32_pool_2blocks": dict(channels=(32,), pool=(True,)),  # one pooled stack, 2 blocks: 32x5x5, receptive field 21
}


def run(args: tuple[str, str, int, int]) -> dict:
    candidate, bottleneck, steps, seed = args
    import torch as th

    th.set_num_threads(1)
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import sb3_gap
    from sb3_gap.encoders import ENCODERS, ImpalaEncoder

    spec = CANDIDATES[candidate]
    if isinstance(spec, dict):
        ENCODERS[candidate] = type(
            candidate, (ImpalaEncoder,), {"__init__": lambda self, c, scale=1, **kw: ImpalaEncoder.__init__(self, c, scale=scale, **spec)}
        )
    env_kwargs = dict(use_minimal_action_set=False)
    env = make_vec_env(
        "MinAtar/Breakout-v1",
        n_envs=1,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=gym.wrappers.ClipReward,
        wrapper_kwargs=dict(min_reward=-1, max_reward=1),
    )
    eval_env = make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=seed + 10_000, env_kwargs=env_kwargs)
    pk = sb3_gap.policy_kwargs(encoder=candidate, bottleneck=bottleneck, width_scale=4)
    pk["optimizer_kwargs"] = dict(eps=3.125e-4)
    model = sb3_gap.Rainbow(
        "CnnPolicy",
        env,
        policy_kwargs=pk,
        learning_rate=2.5e-4,
        buffer_size=100_000,
        learning_starts=1000,
        n_steps=3,
        train_freq=4,
        target_update_interval=1000,
        v_min=-100.0,
        v_max=100.0,
        exploration_steps=25_000,
        seed=seed,
        device="cpu",
    )
    report = sb3_gap.parameter_report(model).as_dict()
    curve = []
    start = time.perf_counter()
    chunk = steps // 4
    for _ in range(4):
        model.learn(chunk, reset_num_timesteps=False)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10)
        curve.append((model.num_timesteps, float(mean)))
    wall = time.perf_counter() - start
    return dict(
        candidate=candidate,
        bottleneck=bottleneck,
        steps=steps,
        seed=seed,
        wall_s=wall,
        sps=steps / wall,
        curve=curve,
        connection=report["connection"],
        phi=report["phi"],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--candidates", nargs="+", default=sorted(CANDIDATES), choices=sorted(CANDIDATES))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    jobs = [(c, b, args.steps, 0) for c in args.candidates for b in ("flatten", "gap")]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for r in pool.imap_unordered(run, jobs):
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(command=" ".join(["python benchmarks/minatar_encoder_pilot.py", f"--steps {args.steps}"]), results=results), f, indent=2)


if __name__ == "__main__":
    main()
