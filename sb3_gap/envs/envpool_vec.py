"""envpool's batched C++ environments as an SB3 :class:`~stable_baselines3.common.vec_env.VecEnv`.

envpool steps all its envs in one call (a C++ thread pool) but follows gymnasium's *next-step*
autoreset: after an episode ends, the next ``step`` ignores that env's action and returns its first
observation. SB3's ``VecEnv`` contract is *same-step* autoreset: the step that ends an episode
returns the next episode's first observation and puts the last one in
``info["terminal_observation"]``. :class:`EnvPoolVecEnv` bridges the two by resetting the finished
envs right away (envpool steps a subset of envs with ``step(actions, env_ids)``).

It also writes SB3's ``info["episode"]`` itself (instead of ``VecMonitor``): with envpool's
``episodic_life`` a life loss ends a *training* episode but not the game, and the score must be
the game's raw score (``info["reward"]`` before envpool's ``reward_clip``), which ``VecMonitor``
cannot see.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_gap.checks import MissingPackage, Refused

QT_FIX = "apt-get update && apt-get install -y libqt5gui5"


def _is_qt_error(error: BaseException) -> bool:
    text = f"{error} {error.__cause__}"
    return "Qt" in text or "libQt5" in text


def envpool_make(task_id: str, **kwargs: Any) -> Any:
    """
    ``envpool.make(task_id, env_type="gymnasium", **kwargs)`` with errors that say how to fix them.

    :param task_id: An envpool task such as ``"Pong-v5"`` or ``"BigfishEasy-v0"``
    :param kwargs: envpool options (``num_envs``, ``seed``, ...)
    :raises ImportError: envpool or the system Qt5 runtime (Procgen) is missing, with the command to fix it
    """
    try:
        import envpool
    except ImportError as e:
        raise MissingPackage("envpool is not installed: pip install 'envpool>=1.2,<2' (Linux x86-64/aarch64 wheels)") from e
    try:
        return envpool.make(task_id, env_type="gymnasium", **kwargs)
    except ImportError as e:
        if _is_qt_error(e):
            raise MissingPackage(
                f"envpool's {task_id} needs the system Qt5 runtime (libQt5Core.so.5, libQt5Gui.so.5), which is "
                f"not installed. Fix (Debian/Ubuntu, as root): {QT_FIX}"
            ) from e
        raise


class EnvPoolVecEnv(VecEnv):
    """
    ``n_envs`` copies of an envpool task stepped in one C++ call, as an SB3 ``VecEnv``.

    :param task_id: envpool task id (``envpool.list_all_envs()``), e.g. ``"Pong-v5"``, ``"BigfishEasy-v0"``
    :param n_envs: Number of environments
    :param seed: envpool seeds env ``i`` with ``seed + i``; seeds are fixed at construction
        (``VecEnv.seed`` cannot re-seed a running pool, so pass the seed here)
    :param envpool_kwargs: Other ``envpool.make`` options (``repeat_action_probability``, ``num_levels``, ...)
    """

    def __init__(self, task_id: str, n_envs: int = 1, seed: int = 0, **envpool_kwargs: Any) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
            raise Refused(f"n_envs must be a positive integer, got {n_envs!r}")
        self.task_id = task_id
        self.pool = envpool_make(task_id, num_envs=n_envs, batch_size=n_envs, seed=seed, **envpool_kwargs)
        super().__init__(n_envs, self.pool.observation_space, self.pool.action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._t0 = time.time()

    def reset(self) -> VecEnvObs:
        if any(s is not None for s in self._seeds):
            warnings.warn("EnvPoolVecEnv ignores VecEnv.seed(): envpool seeds are fixed; pass seed= to the constructor", stacklevel=2)
        self._reset_seeds()
        self._reset_options()
        obs, _ = self.pool.reset()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async() must be called before step_wait()"
        obs, rewards, terminated, truncated, info = self.pool.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        # Game score: envpool's Atari reports the unclipped reward in info["reward"].
        raw = np.asarray(info.get("reward", rewards), dtype=np.float64)
        self._returns += raw
        self._lengths += 1
        # Atari with episodic_life: "terminated" in info is 1 only at game over (truncation also ends the game).
        game_over = np.asarray(info["terminated"], dtype=bool) | truncated if "terminated" in info else dones
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_ids = np.flatnonzero(dones)
        for i in done_ids:
            infos[i]["terminal_observation"] = obs[i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if game_over[i]:
                infos[i]["episode"] = {"r": self._returns[i], "l": int(self._lengths[i]), "t": round(time.time() - self._t0, 6)}
                self._returns[i] = 0.0
                self._lengths[i] = 0
        if len(done_ids):
            # Same-step autoreset (SB3): run envpool's next-step autoreset now, on the finished envs only
            # (their action is ignored). Unlike pool.reset(ids), which restarts the whole game, this
            # continues the game after an episodic_life life loss, like SB3's EpisodicLifeEnv.
            obs = obs.copy()
            ignored = np.zeros((len(done_ids), *(self.action_space.shape or ())), dtype=self.action_space.dtype)
            reset_obs, *_ = self.pool.step(ignored, done_ids.astype(np.int32))
            obs[done_ids] = reset_obs
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.pool.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name) if hasattr(self, attr_name) else getattr(self.pool, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"EnvPoolVecEnv cannot set {attr_name!r} on envpool environments")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        raise AttributeError(f"EnvPoolVecEnv has no per-env method {method_name!r} (envpool envs are C++ objects)")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # No gymnasium wrappers inside envpool, but this class writes Monitor's info["episode"] (game
        # scores), so SB3's evaluate_policy should count episodes from it, as it does with a Monitor.
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]
