"""
The frame store of :class:`~sb3_gap.replay.FrameReplayBuffer`: SB3's replay-buffer ``add`` with each frame of a
stacked observation stored once (Dopamine's layout), episode ends and final frames kept per slot, and buffers that
pickle only their written part. :func:`infer_frame_stack` finds the stack of an SB3 VecEnv.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack, VecTransposeImage

from sb3_gap.checks import MAX_FRAME_STACK, Refused, check_int


def infer_frame_stack(env: VecEnv | None) -> int:
    """
    The ``frame_stack`` to give :class:`FrameReplayBuffer` for an SB3 VecEnv: ``n_stack`` of its
    ``VecFrameStack`` when the stacked frames end up along axis 0 of the observation (channel-first
    stacking, channel-last stacking under a ``VecTransposeImage`` as ``make_atari_env`` + ``VecFrameStack``
    + SB3's automatic transpose produce, or 1-D observations), else 1 (each observation stored whole).

    :param env: The (wrapped) VecEnv, or None
    :return: The number of stacked frames, 1 when frames cannot be stored once
    """
    transposed_above = False
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecTransposeImage):
            transposed_above = True
        if isinstance(env, VecFrameStack):
            stacked = env.stacked_obs
            if isinstance(env.observation_space, spaces.Dict) or not hasattr(stacked, "channels_first"):
                return 1
            one_dim = len(env.observation_space.shape) == 1  # type: ignore[arg-type]
            return stacked.n_stack if (stacked.channels_first or transposed_above or one_dim) else 1
        env = env.venv
    return 1


class FrameStore(ReplayBuffer):
    """
    The frame store under :class:`~sb3_gap.replay.FrameReplayBuffer` (which documents the constructor's arguments and
    samples from it): it adds SB3's steps, keeping each frame once, and rebuilds nothing; sampling is the subclass's.

    Per slot ``(t, env)`` it keeps the *newest frame* of the observation (the whole observation when
    ``frame_stack=1``), the action, reward, an episode-end flag, a time-limit flag and the position in the episode
    (clipped to ``frame_stack - 1``). Stacks are rebuilt from the ``frame_stack`` most recent frames of the same
    episode, zeros before the episode start, as ``VecFrameStack`` pads. The next observation of a step is the next
    slot's frame, except when the step ended the episode (termination, time limit, or an observation that does not
    continue the previous ``next_obs``): then its final frame (SB3's ``terminal_observation``) is kept in a small side
    pool, referenced from that slot and freed when the slot is overwritten; and for the newest step of each env, whose
    successor is not stored yet, the last ``next_obs`` is kept whole. 1M transitions of 4x84x84 uint8: 7.06 GB of
    frames + ~25 MB of the rest (``storage_nbytes()``), against 56 GB for SB3's ``ReplayBuffer``. ``frame_stack=1``
    still halves SB3's memory (no second copy for ``next_observations``).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        n_steps: int = 1,
        gamma: float | None = None,
        frame_stack: int = 1,
    ) -> None:
        name = type(self).__name__
        if isinstance(observation_space, spaces.Dict):
            raise Refused(f"{name} does not support Dict observation spaces; valid: Box, Discrete")
        if optimize_memory_usage:
            raise Refused(
                f"optimize_memory_usage=True is not supported by {name} (valid: False); "
                "it already stores each frame once (use frame_stack=k for stacked images)"
            )
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise Refused(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0.0 <= gamma <= 1.0):
            raise Refused(f"gamma must be in [0, 1], got {gamma!r}")
        frame_stack = check_int("frame_stack", frame_stack, 1, MAX_FRAME_STACK, example="4")
        if n_envs < 1:
            raise Refused(f"n_envs must be >= 1, got {n_envs}")
        # ReplayBuffer.__init__ would allocate full obs and next_obs arrays: only set up the base.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        # What makes a buffer unable to store transitions is refused at its first add(), not here: a model loaded only
        # to act builds its buffer too (rl_zoo3's enjoy loads off-policy models with buffer_size=1, rl_zoo3/enjoy.py;
        # models saved before gamma was required have n_steps > 1 without it), and must load.
        if gamma is None and n_steps > 1:
            self._unusable = (
                f"{name}(n_steps={n_steps}) needs gamma, the algorithm's discount, for its n-step return (SB3 does not pass "
                f"it): e.g. replay_buffer_kwargs=dict(n_steps={n_steps}, gamma=model's gamma); valid: a float in [0, 1]"
            )
        elif self.buffer_size <= n_steps + frame_stack:
            self._unusable = (
                f"buffer_size // n_envs = {self.buffer_size} must be > n_steps + frame_stack = {n_steps + frame_stack} to store "
                "transitions (a smaller buffer only serves models loaded to act)"
            )
        if frame_stack > 1 and (len(self.obs_shape) < 1 or self.obs_shape[0] % frame_stack != 0):
            raise Refused(
                f"frame_stack={frame_stack} needs observations stacked along axis 0 (channel-first, e.g. "
                f"VecFrameStack + VecTransposeImage), but observation shape {self.obs_shape} has "
                f"axis 0 not divisible by {frame_stack}; valid: frame_stack=1 or a divisor of {self.obs_shape[:1]}"
            )
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.n_steps = int(n_steps)
        self.gamma = None if gamma is None else float(gamma)
        self.frame_stack = int(frame_stack)
        # channels of one frame: the newest frame is obs[-frame_channels:]
        self.frame_channels: int = self.obs_shape[0] // self.frame_stack  # == obs_shape[0] without a stack
        self.frame_shape: tuple[int, ...] = (self.frame_channels, *self.obs_shape[1:]) if self.frame_stack > 1 else tuple(self.obs_shape)
        self._allocate()
        self._warn_if_too_big()

    # ------------------------------------------------------------------ storage
    def _allocate(self) -> None:
        """(Re)create all storage. np.zeros maps pages lazily: memory is committed as slots are written."""
        size, n_envs = self.buffer_size, self.n_envs
        self.frames = np.zeros((size, n_envs, *self.frame_shape), dtype=self.observation_space.dtype)
        self.actions = np.zeros((size, n_envs, self.action_dim), dtype=self._maybe_cast_dtype(self.action_space.dtype))
        self.rewards = np.zeros((size, n_envs), dtype=np.float32)
        # dones: the episode ended at this step (termination or truncation); timeouts: it was a truncation
        self.dones = np.zeros((size, n_envs), dtype=np.float32)
        self.timeouts = np.zeros((size, n_envs), dtype=np.float32)
        # position in the episode, clipped to frame_stack - 1 (all that stack rebuilding needs)
        self.episode_steps = np.zeros((size, n_envs), dtype=np.uint8)
        # final frames of episode-ending steps: slot -> row of final_frames (-1: none); rows recycled
        self.final_index = np.full((size, n_envs), -1, dtype=np.int32)
        self.final_frames = np.zeros((max(4 * n_envs, 16), *self.frame_shape), dtype=self.observation_space.dtype)
        self._free_final_rows: list[int] = list(range(len(self.final_frames) - 1, -1, -1))
        # per-env state of the ongoing episode
        self._has_prev = np.zeros(n_envs, dtype=bool)
        self._prev_episode_step = np.zeros(n_envs, dtype=np.int64)
        self._last_next_obs = np.zeros((n_envs, *self.obs_shape), dtype=self.observation_space.dtype)
        self._warned_cut = False

    def _storage_arrays(self) -> list[np.ndarray]:
        return [
            self.frames, self.actions, self.rewards, self.dones, self.timeouts, self.episode_steps,
            self.final_index, self.final_frames, self._last_next_obs,
        ]  # fmt: skip

    def storage_nbytes(self) -> int:
        """Bytes of all arrays the buffer holds (allocated size, whether or not pages were touched yet)."""
        return int(sum(a.nbytes for a in self._storage_arrays()))

    def _warn_if_too_big(self) -> None:
        try:
            with open("/proc/meminfo") as f:
                available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
        except (OSError, StopIteration, ValueError):
            return
        if self.storage_nbytes() > available:
            warnings.warn(
                f"{type(self).__name__} needs {self.storage_nbytes() / 1e9:.2f} GB once full, but only {available / 1e9:.2f} GB are available",
                stacklevel=2,
            )

    def reset(self) -> None:
        """Empty the buffer (storage and per-env episode state)."""
        super().reset()
        self._allocate()

    # Slot-indexed arrays: a buffer that is not full pickles only its written prefix (save_replay_buffer
    # of a 1M Atari buffer after 100k steps writes 0.7 GB, not 7 GB) and unpickles into lazily mapped zeros.
    _SLOT_ARRAYS = ("frames", "actions", "rewards", "dones", "timeouts", "episode_steps", "final_index")
    #: Why this buffer cannot store transitions (no gamma for its n-step return, too small), or None
    _unusable: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if not self.full:
            for key in self._SLOT_ARRAYS:
                state[key] = (state[key].shape, state[key][: self.pos].copy())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key in self._SLOT_ARRAYS:
            if isinstance(state.get(key), tuple):
                shape, prefix = state[key]
                array = np.zeros(shape, dtype=prefix.dtype)
                if key == "final_index":
                    array.fill(-1)
                array[: len(prefix)] = prefix
                state[key] = array
        self.__dict__.update(state)

    # ------------------------------------------------------------------ adding
    def _alloc_final_row(self) -> int:
        if not self._free_final_rows:  # grow the pool x2 (amortised O(1))
            old = len(self.final_frames)
            self.final_frames = np.concatenate([self.final_frames, np.zeros_like(self.final_frames)])
            self._free_final_rows = list(range(2 * old - 1, old - 1, -1))
        return self._free_final_rows.pop()

    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        return obs[-self.frame_channels :] if self.frame_stack > 1 else obs

    def _end_episode(self, slot: int, env: int, final_obs: np.ndarray, truncated: bool) -> None:
        """Mark ``slot`` as the last step of its episode in ``env`` and keep its final frame."""
        self.dones[slot, env] = 1.0
        self.timeouts[slot, env] = float(truncated)
        row = self._alloc_final_row()
        self.final_frames[row] = self._newest_frame(final_obs)
        self.final_index[slot, env] = row

    def _clear_slot(self, pos: int) -> None:
        """Forget the transitions of slot ``pos`` before it is overwritten (frees their final frames)."""
        old_rows = self.final_index[pos]
        self._free_final_rows.extend(int(r) for r in old_rows[old_rows >= 0])
        self.final_index[pos] = -1
        self.dones[pos] = 0.0
        self.timeouts[pos] = 0.0

    def _write_step(self, pos: int, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, episode_step: np.ndarray) -> None:
        """Store the newest frame, action, reward and episode position of every env in slot ``pos``."""
        self.frames[pos] = obs[:, -self.frame_channels :] if self.frame_stack > 1 else obs
        self.actions[pos] = action
        self.rewards[pos] = reward
        self.episode_steps[pos] = episode_step

    def _step_added(self, pos: int, done: np.ndarray) -> None:
        """Called at the end of :meth:`add` once slot ``pos`` is complete (hook for subclasses)."""

    def _check_stack(self, env: int, obs: np.ndarray, next_obs: np.ndarray, episode_step: int) -> None:
        """Check the env stacks as ``frame_stack`` says: older frames = stored frames (zeros before the start)."""
        k, c, name = self.frame_stack, self.frame_channels, type(self).__name__
        stack = obs.reshape(k, c, *self.obs_shape[1:])
        back = np.arange(1, k)  # frame k-1-j of the stack is the frame of slot pos - j
        expected = self.frames[(self.pos - back) % self.buffer_size, env]
        expected[back > episode_step] = 0
        if not np.array_equal(stack[k - 1 - back], expected):
            where = "zeros (episode start)" if episode_step == 0 else "the frames stored for the previous steps"
            raise Refused(
                f"{name}(frame_stack={k}): env {env}'s observation of shape {obs.shape} is not a "
                f"stack of {k} frames of {c} channel(s) whose older frames are {where}. The env must stack "
                f"frames channel-first along axis 0, oldest first and zero-padded at reset (VecFrameStack("
                f"n_stack={k}) + VecTransposeImage, or VecFrameStack on channel-first images); "
                f"valid: frame_stack={k} with such an env, or frame_stack=1"
            )
        if not np.array_equal(next_obs[:-c], obs[c:]):
            raise Refused(
                f"{name}(frame_stack={k}): env {env}'s next observation is not its observation "
                f"shifted by one frame of {c} channel(s) along axis 0; the env does not stack {k} frames "
                f"channel-first (valid: frame_stack=1, or VecFrameStack(n_stack={k}) + VecTransposeImage)"
            )

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        Add one step of every env (SB3's signature). ``next_obs`` is the final observation for envs that
        are done (SB3's ``_store_transition`` substitutes ``terminal_observation``), and
        ``infos[i]["TimeLimit.truncated"]`` marks time-limit truncations.
        """
        if self._unusable is not None:
            raise Refused(self._unusable)
        n_envs, pos, size = self.n_envs, self.pos, self.buffer_size
        obs = np.asarray(obs).reshape((n_envs, *self.obs_shape))
        next_obs = np.asarray(next_obs).reshape((n_envs, *self.obs_shape))
        action = np.asarray(action).reshape((n_envs, self.action_dim))
        reward = np.asarray(reward, dtype=np.float32).reshape(n_envs)
        done = np.asarray(done).reshape(n_envs).astype(bool)
        if self.handle_timeout_termination:
            truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos]) & done
        else:
            truncated = np.zeros(n_envs, dtype=bool)

        # 1. Validate before changing anything, so that a ValueError leaves the buffer intact.
        episode_step = np.zeros(n_envs, dtype=np.int64)
        cut = np.zeros(n_envs, dtype=bool)
        for env in range(n_envs):
            if self._has_prev[env] and not self.dones[(pos - 1) % size, env]:
                # An observation that does not continue the previous next_obs means the env was reset
                # without a done (e.g. learn() called again after loading): the previous step is cut.
                cut[env] = not np.array_equal(obs[env], self._last_next_obs[env])
                if not cut[env]:
                    episode_step[env] = min(self._prev_episode_step[env] + 1, self.frame_stack - 1)
            if self.frame_stack > 1:
                self._check_stack(env, obs[env], next_obs[env], int(episode_step[env]))
        if cut.any() and not self._warned_cut:
            warnings.warn(
                f"{type(self).__name__}: an observation does not continue the previous next_obs "
                "(env reset without done?); the previous step is stored as a time-limit truncation",
                stacklevel=2,
            )
            self._warned_cut = True

        # 2. Free slot `pos`, end the episodes that were cut.
        self._clear_slot(pos)
        for cut_env in np.flatnonzero(cut).tolist():  # bootstrap the cut step from its own next_obs
            self._end_episode((pos - 1) % size, cut_env, self._last_next_obs[cut_env], truncated=True)

        # 3. Write the step and end the episodes that ended with it.
        self._write_step(pos, obs, action, reward, episode_step)
        for done_env in np.flatnonzero(done).tolist():
            self._end_episode(pos, done_env, next_obs[done_env], truncated=bool(truncated[done_env]))
        self._step_added(pos, done)
        self._last_next_obs[:] = next_obs
        self._has_prev[:] = True
        self._prev_episode_step = episode_step

        self.pos += 1
        if self.pos == size:
            self.full = True
            self.pos = 0
