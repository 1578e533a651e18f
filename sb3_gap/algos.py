"""Algorithms sb3_gap knows by name (the RL Zoo's names), for the CLI, the Zoo, sweeps and the Hub."""

from __future__ import annotations

import importlib

from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_gap.checks import Refused

# name -> "module:Class"; imported on demand so that a missing optional piece breaks only its user.
ALGOS: dict[str, str] = {
    "dqn": "stable_baselines3:DQN",
    "qrdqn": "sb3_contrib:QRDQN",
    "ppo": "stable_baselines3:PPO",
    "rainbow": "sb3_gap.rainbow:Rainbow",
}


def get_algo(name: str) -> type[BaseAlgorithm]:
    """The algorithm class for a Zoo-style name such as ``"qrdqn"``."""
    key = name.lower()
    if key not in ALGOS:
        raise Refused(f"Unknown algorithm {name!r}; valid choices: {sorted(ALGOS)}")
    module, cls = ALGOS[key].split(":")
    return getattr(importlib.import_module(module), cls)
