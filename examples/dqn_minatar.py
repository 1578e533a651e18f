"""DQN with an Impala encoder and a GAP bottleneck at ψ ×4 on MinAtar Breakout."""

import argparse

import gymnasium as gym
from stable_baselines3 import DQN

import sb3_gap  # noqa: F401  (registers MinAtar/* image envs)
from sb3_gap import parameter_report, policy_kwargs

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5_000, help="training steps")
    steps = parser.parse_args().steps
    env = gym.make("MinAtar/Breakout-v1")
    model = DQN(
        "CnnPolicy",
        env,
        policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap", width_scale=4),
        learning_starts=1_000,
        target_update_interval=1_000,
        exploration_fraction=0.2,
        verbose=1,
    )
    print(parameter_report(model))
    model.learn(steps, progress_bar=True)
    model.save("dqn_minatar_breakout_gap4")
