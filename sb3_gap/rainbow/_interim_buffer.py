"""THROWAWAY stand-in for sb3_gap/rainbow/buffers.py (written on branch rainbow-replay) so the
algorithm can be developed before it lands: SB3's NStepReplayBuffer, uniform sampling, unit IS weights."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer


class RainbowSamples(NamedTuple):
    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    weights: th.Tensor
    indices: np.ndarray


class RainbowReplayBuffer(NStepReplayBuffer):
    def __init__(self, *args: Any, frame_stack: int = 1, prioritized: bool = True, alpha: float = 0.5,
                 priority_eps: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_stack, self.prioritized, self.alpha, self.priority_eps = frame_stack, prioritized, alpha, priority_eps

    def sample(self, batch_size: int, env: Any = None, beta: float = 0.5) -> RainbowSamples:  # type: ignore[override]
        upper = self.buffer_size if self.full else self.pos
        inds = np.random.randint(0, upper, size=batch_size)
        s = self._get_samples(inds, env)
        return RainbowSamples(*s, weights=th.ones(batch_size, device=self.device), indices=inds)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        pass
