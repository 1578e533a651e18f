"""PPO with a shared Impala + GAP ×2 extractor; the actor and critic heads sit directly on ψ (net_arch=[])."""

import argparse

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_gap  # noqa: F401  (registers MinAtar/* image envs)
from sb3_gap import parameter_report, policy_kwargs

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5_000, help="training steps")
    steps = parser.parse_args().steps
    env = make_vec_env("MinAtar/Breakout-v1", n_envs=4, seed=0)
    model = PPO("CnnPolicy", env, n_steps=128, batch_size=256, policy_kwargs=policy_kwargs(bottleneck="gap", width_scale=2), verbose=1)
    print(parameter_report(model))
    model.learn(steps, progress_bar=True)
    model.save("ppo_minatar_breakout_gap2")
