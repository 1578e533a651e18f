"""Rainbow (Hessel et al. 2018) for Stable-Baselines3: C51, n-step, prioritized replay, double Q,
dueling and noisy nets, each a constructor switch."""

from sb3_gap.rainbow.buffers import RainbowReplayBuffer, RainbowSamples
from sb3_gap.rainbow.config import HeadConfig
from sb3_gap.rainbow.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, NoisyLinear, RainbowPolicy
from sb3_gap.rainbow.projection import categorical_projection
from sb3_gap.rainbow.rainbow import PRESETS, Rainbow, rainbow_preset

__all__ = [
    "PRESETS",
    "CnnPolicy",
    "HeadConfig",
    "MlpPolicy",
    "MultiInputPolicy",
    "NoisyLinear",
    "Rainbow",
    "RainbowPolicy",
    "RainbowReplayBuffer",
    "RainbowSamples",
    "categorical_projection",
    "rainbow_preset",
]
