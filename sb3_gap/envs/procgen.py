"""Procgen (Cobbe et al. 2020) through envpool: 16 games, 64×64×3 pixels, easy/hard, train/test levels.

The ``procgen`` package has no wheel for Python 3.11; envpool ships Procgen, and needs the system Qt5
runtime (``apt-get update && apt-get install -y libqt5gui5``).

Two ways in:

* ``gym.make("Procgen/<Game>-v0", distribution_mode="easy", num_levels=200, start_level=0)``:
  one game as a gymnasium ``Env`` (:class:`ProcgenEnv`), what the RL Zoo's ``--env`` and
  ``make_vec_env`` need. Observations are channel-first ``uint8`` ``(3, 64, 64)``.
* :func:`make_procgen_vec_env`: ``n_envs`` games in one envpool call
  (:class:`~sb3_gap.envs.envpool_vec.EnvPoolVecEnv`), the fast path for scripts.

Levels: ``num_levels=200, start_level=0`` is the usual training set (Cobbe et al. 2020, "easy" generalization
protocol, and the ids' default); evaluate on unseen levels with ``num_levels=0`` (the full level distribution).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sb3_gap.checks import Refused
from sb3_gap.envs.envpool_vec import EnvPoolVecEnv, envpool_make

#: The 16 Procgen games; each name is also envpool's task stem ("Bigfish" -> "BigfishEasy-v0" / "BigfishHard-v0").
PROCGEN_GAMES = (
    "Bigfish Bossfight Caveflyer Chaser Climber Coinrun Dodgeball Fruitbot Heist Jumper Leaper Maze Miner Ninja Plunder Starpilot"
).split()
DISTRIBUTION_MODES = ("easy", "hard")
TRAIN_LEVELS = 200  # Cobbe et al. (2020): 200 training levels (easy mode)


def procgen_task_id(game: str, distribution_mode: str = "easy") -> str:
    """
    envpool's task id, e.g. ``procgen_task_id("bigfish", "hard") == "BigfishHard-v0"``.

    :raises ValueError: unknown game or distribution mode, naming the valid choices
    """
    title = game.title() if isinstance(game, str) else game
    if title not in PROCGEN_GAMES:
        raise Refused(f"Unknown Procgen game {game!r}; valid games: {PROCGEN_GAMES}")
    if distribution_mode not in DISTRIBUTION_MODES:
        raise Refused(f"Unknown Procgen distribution_mode {distribution_mode!r}; valid choices (envpool): {list(DISTRIBUTION_MODES)}")
    return f"{title}{distribution_mode.title()}-v0"


#: envpool takes int32 seeds; seeds are mapped into [0, 2**31) (:func:`envpool_seed`).
ENVPOOL_SEED_RANGE = 2**31


def envpool_seed(seed: int) -> int:
    """
    ``seed`` as envpool accepts it: ``seed mod 2**31``. rl_zoo3 draws seeds in ``[0, 2**32)`` when ``--seed``
    is not given (and ``make_vec_env`` adds the env index), but envpool asserts an int32 seed.

    :param seed: Any integer seed
    :return: The seed in ``[0, 2**31)``; seeds below ``2**31`` are unchanged
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise Refused(f"seed must be an integer, got {seed!r}")
    return int(seed) % ENVPOOL_SEED_RANGE


def _check_levels(num_levels: int, start_level: int) -> None:
    for name, value in (("num_levels", num_levels), ("start_level", start_level)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise Refused(f"{name} must be an integer >= 0 (num_levels=0: all levels), got {value!r}")


class ProcgenEnv(gym.Env):
    """
    One Procgen game (an envpool pool of size 1) with the gymnasium ``Env`` API.

    Written by hand because envpool only makes batched envs: this unbatches them and re-creates the
    pool on ``reset(seed=...)`` (envpool fixes seeds at construction), so that ``make_vec_env``'s
    per-env seeds give different level sequences.

    :param game: One of :data:`PROCGEN_GAMES` (case-insensitive)
    :param distribution_mode: ``"easy"`` or ``"hard"``
    :param num_levels: Number of distinct levels (0: unlimited)
    :param start_level: First level seed
    :param seed: envpool seed of the level sampler (any integer; mapped by :func:`envpool_seed`)
    :param envpool_kwargs: Other envpool Procgen options (``use_backgrounds``, ``restrict_themes``, ...)
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        game: str,
        distribution_mode: str = "easy",
        num_levels: int = TRAIN_LEVELS,
        start_level: int = 0,
        seed: int = 0,
        **envpool_kwargs: Any,
    ) -> None:
        self.task_id = procgen_task_id(game, distribution_mode)
        _check_levels(num_levels, start_level)
        self._options = dict(num_levels=num_levels, start_level=start_level, **envpool_kwargs)
        self._pool = envpool_make(self.task_id, num_envs=1, seed=envpool_seed(seed), **self._options)
        self.observation_space = self._pool.observation_space
        self.action_space = self._pool.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._pool.close()
            self._pool = envpool_make(self.task_id, num_envs=1, seed=envpool_seed(seed), **self._options)
        obs, info = self._pool.reset()
        return obs[0], {"level_seed": int(info["level_seed"][0])}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray([action]))
        extra = {"level_seed": int(info["level_seed"][0]), "prev_level_complete": bool(info["prev_level_complete"][0])}
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), extra

    def close(self) -> None:
        self._pool.close()


def make_procgen_vec_env(
    game: str,
    n_envs: int = 64,
    distribution_mode: str = "easy",
    num_levels: int = TRAIN_LEVELS,
    start_level: int = 0,
    seed: int = 0,
    **envpool_kwargs: Any,
) -> EnvPoolVecEnv:
    """
    ``n_envs`` Procgen games stepped together by envpool, as an SB3 ``VecEnv`` (channel-first ``(3, 64, 64)`` uint8).

    :param game: One of :data:`PROCGEN_GAMES`
    :param n_envs: Parallel games (Cobbe et al. use 64)
    :param distribution_mode: ``"easy"`` or ``"hard"``
    :param num_levels: Number of distinct levels (0: unlimited; use 0 to test on unseen levels)
    :param start_level: First level seed
    :param seed: envpool seed (any integer; mapped by :func:`envpool_seed`, so env ``i`` gets ``(seed mod 2**31) + i``)
    """
    task_id = procgen_task_id(game, distribution_mode)
    _check_levels(num_levels, start_level)
    return EnvPoolVecEnv(task_id, n_envs, seed=envpool_seed(seed), num_levels=num_levels, start_level=start_level, **envpool_kwargs)


def register_procgen() -> None:
    """Register ``Procgen/<Game>-v0`` (kwargs: ``distribution_mode``, ``num_levels``, ``start_level``)."""
    for game in PROCGEN_GAMES:
        gym.register(f"Procgen/{game}-v0", entry_point="sb3_gap.envs.procgen:ProcgenEnv", kwargs=dict(game=game))
