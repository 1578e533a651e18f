"""Training speed of candidate MinAtar encoders for the MinAtar studies: Rainbow with Dopamine's
MinAtar settings on Breakout (full action set), one torch thread, 2,000 warm-up steps (1,000 random),
then 3,000 timed steps (one update every 4 steps, or ``--replay-ratio``'s updates per step); also the time
of 100 bare gradient updates.

Not a test: run it by hand, alone on the machine (the numbers are in results/minatar_scaling/README.md)::

    python benchmarks/minatar_encoder_speed.py minatar:gap:4 minatar:flatten:4 minatar_impala:gap:4 minatar_impala:flatten:4 \\
        minatar_impala:gap:1 minatar_impala:flatten:1 stack16_pool_2blocks:gap:4 stack16_pool_2blocks:flatten:4 stack16_nopool:gap:4

Each argument is ``encoder:bottleneck:width_scale``; encoders are registered names or the extra candidates below.
``--replay-ratio 1`` times one update per env step (the third study's pilot, results/minatar_rr/README.md)::

    python benchmarks/minatar_encoder_speed.py --replay-ratio 1 minatar_deep:flatten:8 minatar_deep:gap:8
"""

from __future__ import annotations

import argparse
import json
import time

import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_gap
from sb3_gap.encoders import ENCODERS, ImpalaEncoder
from sb3_gap.replay_ratio import replay_ratio_schedule

# Extra candidates (ImpalaEncoder arguments) beside the registered encoders.
CANDIDATES = {
    "stack16_nopool": dict(channels=(16,), pool=(False,)),  # 16x10x10, 2 residual blocks, receptive field 11
    "stack16_pool_2blocks": dict(channels=(16,), pool=(True,)),  # 16x5x5, 2 residual blocks, receptive field 21
    "stack32_pool_2blocks": dict(channels=(32,), pool=(True,)),  # 32x5x5, 2 residual blocks
    # The second study's pilot (results/minatar_deep/README.md): the paper's three Impala stacks
    # (15 convolutions), pooling only in the first, so φ keeps 5x5 positions; the paper's channels or 16 everywhere.
    "deep_16_32_32": dict(channels=(16, 32, 32), pool=(True, False, False)),  # 32x5x5
    "deep_16_16_16": dict(channels=(16, 16, 16), pool=(True, False, False)),  # 16x5x5
}


def register(name: str) -> None:
    spec = CANDIDATES[name]
    ENCODERS[name] = type(name, (ImpalaEncoder,), {"__init__": lambda self, c, scale=1, **kw: ImpalaEncoder.__init__(self, c, scale=scale, **spec)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="encoder:bottleneck:width_scale")
    parser.add_argument("--replay-ratio", type=float, default=0.25, help="gradient updates per env step (default 0.25, Dopamine's)")
    args = parser.parse_args()
    train_freq, gradient_steps = replay_ratio_schedule(args.replay_ratio)
    th.set_num_threads(1)
    for arg in args.candidates:
        encoder, bottleneck, width = arg.split(":")
        if encoder in CANDIDATES:
            register(encoder)
        env = make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=0, env_kwargs=dict(use_minimal_action_set=False))
        pk = sb3_gap.policy_kwargs(encoder=encoder, bottleneck=bottleneck, width_scale=int(width))
        pk["optimizer_kwargs"] = dict(eps=3.125e-4)
        model = sb3_gap.Rainbow("CnnPolicy", env, policy_kwargs=pk, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=1_000,
                                n_steps=3, train_freq=train_freq, gradient_steps=gradient_steps, target_update_interval=1_000, v_min=-100.0, v_max=100.0,
                                exploration_steps=2_000, seed=0, device="cpu")  # fmt: skip
        model.learn(2_000)
        start = time.perf_counter()
        model.learn(3_000, reset_num_timesteps=False)
        sps = 3_000 / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(100):
            model.train(1, 32)
        update_ms = (time.perf_counter() - start) * 10
        report = sb3_gap.parameter_report(model)
        print(json.dumps(dict(candidate=arg, replay_ratio=args.replay_ratio, steps_per_s=round(sps, 1), update_ms=round(update_ms, 2), connection=report.connection,
                              phi_out=list(model.q_net.features_extractor.encoder_out_shape))), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
