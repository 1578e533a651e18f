"""QR-DQN (sb3-contrib) with a flatten and a GAP bottleneck at ψ ×4: compare parameter counts, then train GAP."""

import argparse

import gymnasium as gym
from sb3_contrib import QRDQN

import sb3_gap  # noqa: F401  (registers MinAtar/* image envs)
from sb3_gap import parameter_report, policy_kwargs

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5_000, help="training steps")
    steps = parser.parse_args().steps
    env = gym.make("MinAtar/Breakout-v1")
    for bottleneck in ("flatten", "gap"):
        model = QRDQN("CnnPolicy", env, policy_kwargs=policy_kwargs(bottleneck=bottleneck, width_scale=4), learning_starts=1_000)
        print(bottleneck, parameter_report(model))
    model.learn(steps, progress_bar=True)
    model.save("qrdqn_minatar_breakout_gap4")
