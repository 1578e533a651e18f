"""MinAtar (Young & Tian 2019): 10×10×k Atari-like games, the cheap CPU test bed.

``minatar`` emits channel-last *bool* observations, which SB3 does not treat as images.
:class:`MinAtarImage` turns them into channel-first uint8 images in {0, 255}, so SB3 stores
them compactly, ``normalize_images`` maps them back to {0, 1} and no ``VecTransposeImage`` is needed.
``MinAtar/<Game>-v1`` ids are registered with this wrapper on ``import sb3_gap``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_gap.checks import MissingPackage, Refused

#: The five MinAtar games by name (``MinAtar/<Game>-v1``) -> MinAtar's environment name.
MINATAR_GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest", "SpaceInvaders": "space_invaders"}


class MinAtarImage(gym.ObservationWrapper):
    """Bool (10, 10, k) → uint8 (k, 10, 10) with values {0, 255}."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        assert env.observation_space.shape is not None  # MinAtar's Box (10, 10, k)
        h, w, k = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, shape=(k, h, w), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = np.moveaxis(observation, -1, 0).astype(np.uint8, order="C")  # one copy per step, C-contiguous
        frame *= 255
        return frame


def make_minatar(game: str, use_minimal_action_set: bool = True, **kwargs: Any) -> gym.Env:
    """
    A MinAtar game as an SB3-ready image env.

    :param game: One of ``MINATAR_GAMES`` (``"Breakout"``) or the minatar name (``"breakout"``)
    :param use_minimal_action_set: Only the game's legal actions (the ``-v1`` ids)
    :param kwargs: Passed to ``minatar.Environment`` (``sticky_action_prob``, ``difficulty_ramping``)
    """
    name = MINATAR_GAMES.get(game, game)
    if name not in MINATAR_GAMES.values():
        raise Refused(f"Unknown MinAtar game {game!r}; valid games: {sorted(MINATAR_GAMES)}")
    try:
        from minatar.gym import BaseEnv
    except ImportError as e:  # pragma: no cover - minatar is an install requirement
        raise MissingPackage("MinAtar is not installed: pip install minatar") from e
    return MinAtarImage(BaseEnv(name, use_minimal_action_set=use_minimal_action_set, **kwargs))


def register_minatar() -> None:
    """Register ``MinAtar/<Game>-v0`` (all actions) and ``-v1`` (minimal actions) as image envs."""
    for title in MINATAR_GAMES:
        for version, minimal in (("v0", False), ("v1", True)):
            env_id = f"MinAtar/{title}-{version}"
            gym.register(env_id, entry_point="sb3_gap.envs.minatar:make_minatar", kwargs=dict(game=title, use_minimal_action_set=minimal))
