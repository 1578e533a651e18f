"""
Replay that stores each frame once, for SB3's off-policy algorithms (DQN, sb3-contrib's QR-DQN, and any
``OffPolicyAlgorithm`` that samples ``ReplayBufferSamples``) and for Rainbow.

:class:`FrameReplayBuffer` is the frame store: per step it keeps the newest frame of the observation,
and rebuilds frame stacks, next observations and n-step windows at sample time (Dopamine's layout).
Used as ``replay_buffer_class`` it returns exactly the batches of SB3's ``ReplayBuffer`` (``n_steps=1``)
or ``NStepReplayBuffer`` (``n_steps > 1``, SB3 >= 2.7 semantics, ``discounts`` field) for the same stream
of transitions and the same sampled indices, sampling uniformly as they do.
:class:`~sb3_gap.rainbow.buffers.RainbowReplayBuffer` subclasses it and adds prioritized sampling over
the same storage.

Written by hand because SB3 stores ``observations`` and ``next_observations`` as full stacks (2 x 4 x 84
x 84 bytes per Atari transition: 56 GB for 1M transitions, and its 26 GiB ``np.zeros`` already fails on a
24 GB machine); its ``optimize_memory_usage`` (28 GB) cannot be combined with time-limit handling or
n-step returns, and no SB3 package stores frames once.

Usage (n-step returns go through the buffer kwargs: SB3 ignores the algorithm's ``n_steps`` and ``gamma`` when a
``replay_buffer_class`` is passed, so an n-step buffer needs the algorithm's ``gamma`` too)::

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4"), n_stack=4)
    model = DQN("CnnPolicy", env, buffer_size=1_000_000, gamma=0.99, replay_buffer_class=FrameReplayBuffer,
                replay_buffer_kwargs=dict(frame_stack=4, n_steps=3, gamma=0.99))

Where sb3_gap builds the model (the rl_zoo3 hook, :mod:`sb3_gap.sweep`) the buffer's ``gamma`` is filled in from the
algorithm's (:func:`with_algorithm_gamma`). A saved buffer is loaded with :func:`load_replay_buffer`, which refuses one
whose ``n_steps``/``gamma`` differ from the model's (the rl_zoo3 hook does so for ``--trained-agent``).
"""

from __future__ import annotations

import inspect
import io
import numbers
import pathlib
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack, VecNormalize, VecTransposeImage

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


class FrameReplayBuffer(ReplayBuffer):
    """
    SB3 replay buffer that stores each frame once and rebuilds frame stacks at sample time; optional
    n-step returns with the semantics of SB3's ``NStepReplayBuffer``. Pass it as ``replay_buffer_class``.

    **Storage.** Per slot ``(t, env)`` it keeps the *newest frame* of the observation (the whole
    observation when ``frame_stack=1``), the action, reward, an episode-end flag, a time-limit flag and
    the position in the episode (clipped to ``frame_stack - 1``). Stacks are rebuilt from the
    ``frame_stack`` most recent frames of the same episode, zeros before the episode start, as
    ``VecFrameStack`` pads. The next observation of a step is the next slot's frame, except when the
    step ended the episode (termination, time limit, or an observation that does not continue the
    previous ``next_obs``): then its final frame (SB3's ``terminal_observation``) is kept in a small side
    pool, referenced from that slot and freed when the slot is overwritten; and for the newest step of
    each env, whose successor is not stored yet, the last ``next_obs`` is kept whole.
    1M transitions of 4x84x84 uint8: 7.06 GB of frames + ~25 MB of the rest (``storage_nbytes()``),
    against 56 GB for SB3's ``ReplayBuffer``. ``frame_stack=1`` still halves SB3's memory (no second
    copy for ``next_observations``).

    **Sampling** is SB3's: uniform over the stored steps and envs, the same ``np.random`` calls, the
    same batches (:class:`~stable_baselines3.common.type_aliases.ReplayBufferSamples`). With
    ``n_steps > 1``, the window of step ``t`` stops at the first episode end among ``t .. t+n-1``
    (inclusive) or at the newest step (SB3's write head), ``rewards`` is the discounted sum over it,
    ``discounts`` is ``gamma^k`` for its length ``k``, ``dones`` is 1 iff it ended on a termination:
    truncations bootstrap. With ``n_steps=1`` ``discounts`` is None, as in SB3's ``ReplayBuffer``.
    Two differences, both forced by storing frames once: once the buffer is full, the
    ``frame_stack - 1`` oldest steps, whose older frames were overwritten, are not sampled; and an
    observation that does not continue the previous ``next_obs`` (an env reset without a done, e.g.
    ``learn()`` called again) cuts the previous step as a time-limit truncation, where SB3 would
    chain the two episodes in an n-step window.

    **gamma.** The buffer never sees the algorithm, and SB3 passes it neither the algorithm's ``n_steps`` nor its
    ``gamma`` (``OffPolicyAlgorithm._setup_model``), so ``n_steps > 1`` needs ``gamma`` in ``replay_buffer_kwargs``,
    the algorithm's: without it the buffer refuses its first ``add`` instead of discounting with another value than
    the bootstrap (``gamma`` is None, unused, for ``n_steps=1``; a model saved that way still loads to act). The rl_zoo3 hook and the sweep fill it in from the
    algorithm's and refuse a different one (:func:`with_algorithm_gamma`). A buffer saved with
    ``save_replay_buffer`` is loaded with :func:`load_replay_buffer`, which refuses one whose ``n_steps`` or
    ``gamma`` differ from the model's (``Rainbow.load_replay_buffer`` does so for Rainbow, and the rl_zoo3 hook for
    ``--trained-agent``'s ``replay_buffer.pkl``); SB3's own ``model.load_replay_buffer`` does not check.

    :param buffer_size: Max number of transitions (split across envs as in SB3)
    :param observation_space: Observation space (``Box`` or ``Discrete``; not ``Dict``)
    :param action_space: Action space
    :param device: PyTorch device of the sampled tensors ("auto": CUDA when present)
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (frames are already stored once); must be False
    :param handle_timeout_termination: Treat time-limit truncations (``info["TimeLimit.truncated"]``) as
        non-terminal: the window stops there and bootstraps from the final observation. If False,
        they are treated as terminations.
    :param n_steps: Length ``n`` of the multi-step return; 1 for SB3's ``ReplayBuffer`` batches
    :param gamma: Discount factor of the n-step return: the algorithm's ``gamma``, required when ``n_steps > 1``
        (None: unused with ``n_steps=1``)
    :param frame_stack: Number ``k`` of frames stacked along axis 0 of the observation, oldest first
        (``VecFrameStack`` on channel-first images, or channel-last ones under SB3's automatic
        ``VecTransposeImage``: see :func:`infer_frame_stack`). 1 stores observations as given.
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

    # ------------------------------------------------------------------ sampling
    def can_sample(self) -> bool:
        """Whether :meth:`sample` has a transition to draw: a stored step (of a full buffer, one that kept its stack)."""
        return self.size() - (self.frame_stack - 1 if self.full else 0) >= 1

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """
        Sample ``batch_size`` transitions uniformly, as SB3's ``ReplayBuffer.sample`` (same ``np.random``
        calls), leaving out the ``frame_stack - 1`` oldest steps of a full buffer.

        :param batch_size: Number of transitions
        :param env: VecNormalize to normalize observations and rewards, if any
        :return: A ``ReplayBufferSamples`` batch (``discounts`` set when ``n_steps > 1``)
        """
        if not self.can_sample():
            raise Refused(f"{type(self).__name__} is empty: add() a transition before sampling")
        lost = self.frame_stack - 1 if self.full else 0
        upper = (self.buffer_size if self.full else self.pos) - lost
        if lost:  # the oldest stored step is at self.pos
            batch_inds = (np.random.randint(0, upper, size=batch_size) + self.pos + lost) % self.buffer_size
        else:
            batch_inds = np.random.randint(0, upper, size=batch_size)
        return self._get_samples(batch_inds, env=env)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """
        Transitions of the steps ``batch_inds``, each from an env drawn at random as SB3 does.

        :param batch_inds: Slots (not handles) of the steps
        :param env: VecNormalize to normalize observations and rewards, if any
        :return: A ``ReplayBufferSamples`` batch
        """
        batch_inds = np.asarray(batch_inds)
        env_indices = np.random.randint(0, high=self.n_envs, size=batch_inds.shape)
        obs, actions, next_obs, dones, rewards, discounts = self._transitions(batch_inds, env_indices, env)
        return ReplayBufferSamples(
            observations=self.to_torch(obs, copy=False),
            actions=self.to_torch(actions, copy=False),
            next_observations=self.to_torch(next_obs, copy=False),
            dones=self.to_torch(dones, copy=False),
            rewards=self.to_torch(rewards, copy=False),
            discounts=self.to_torch(discounts, copy=False) if self.n_steps > 1 else None,
        )

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        """
        ``array`` as a tensor on the buffer's device. On CUDA the batch goes through page-locked (pinned) host
        memory with a non-blocking copy, so the host goes on preparing the update while the copy runs (SB3's
        ``th.as_tensor`` copies from pageable memory and waits). Torch's pinned-memory allocator keeps each
        staging block until its copy has finished, so the copy is safe. Elsewhere: SB3's ``to_torch``. Used by
        DQN, QR-DQN and (through :class:`~sb3_gap.rainbow.buffers.RainbowReplayBuffer`) Rainbow.

        :param array: A numpy array (a fresh sample, never a view of the storage)
        :param copy: Whether to copy the data on CPU (see SB3's ``BaseBuffer.to_torch``)
        """
        if self.device.type == "cuda":
            return th.from_numpy(np.ascontiguousarray(array)).pin_memory().to(self.device, non_blocking=True)
        return super().to_torch(array, copy)

    def _stacks(self, slots: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Observations of (slot, env) pairs: the stored frame plus its frame_stack - 1 predecessors."""
        if self.frame_stack == 1:
            return self.frames[slots, envs]
        k = self.frame_stack
        back = np.arange(k - 1, -1, -1)  # oldest first
        frames = self.frames[(slots[:, None] - back) % self.buffer_size, envs[:, None]]  # (B, k, c, ...)
        frames[back[None, :] > self.episode_steps[slots, envs][:, None]] = 0  # before the episode start
        return frames.reshape(len(slots), *self.obs_shape)

    def _next_stacks(self, last: np.ndarray, envs: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """
        Observations following step ``last``: the final frame after an episode end, the last ``next_obs``
        after the newest step of an ongoing episode, else the next slot's stack.
        """
        newest = self.frames[(last + 1) % self.buffer_size, envs]
        if ended.any():
            newest[ended] = self.final_frames[self.final_index[last[ended], envs[ended]]]
        if self.frame_stack == 1:
            next_obs = newest
        else:
            k = self.frame_stack
            back = np.arange(k - 2, -1, -1)  # frames of slots last - back, oldest first
            older = self.frames[(last[:, None] - back) % self.buffer_size, envs[:, None]]  # (B, k-1, c, ...)
            # the next observation is one step further into the episode than `last`
            older[back[None, :] + 1 > self.episode_steps[last, envs][:, None] + 1] = 0
            next_obs = np.concatenate([older, newest[:, None]], axis=1).reshape(len(last), *self.obs_shape)
        at_head = ~ended & (last == (self.pos - 1) % self.buffer_size)
        if at_head.any():  # its successor is not stored yet
            next_obs[at_head] = self._last_next_obs[envs[at_head]]
        return next_obs

    def _transitions(
        self, slots: np.ndarray, envs: np.ndarray, env: VecNormalize | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """
        n-step transitions of steps ``(slots, envs)``, as SB3's ``NStepReplayBuffer._get_samples`` computes
        them (same float32 arithmetic, so the batches are equal): the window stops at the first episode
        end among ``t .. t+n-1`` or at the newest step, ``R = sum_{i<k} gamma^i r_{t+i}`` (Hessel et al.
        2018, Eq. 2), ``discount = gamma^k``, ``done`` = that end was a termination (not a time limit).

        :return: ``(obs, actions, next_obs, dones, rewards, discounts)``, the last three of shape ``(B, 1)``
        """
        slots, envs = np.asarray(slots, dtype=np.int64), np.asarray(envs, dtype=np.int64)
        steps = np.arange(self.n_steps).reshape(1, -1)
        window = (slots[:, None] + steps) % self.buffer_size  # (B, n)
        rewards_seq = self._normalize_reward(self.rewards[window, envs[:, None]], env)
        # SB3 marks the newest step as truncated while sampling: windows never run into older data
        ends = (self.dones[window, envs[:, None]] > 0) | (window == (self.pos - 1) % self.buffer_size)
        last_offset = np.where(ends.any(axis=1), ends.argmax(axis=1), self.n_steps - 1)
        mask = steps <= last_offset[:, None]
        gamma = 1.0 if self.gamma is None else self.gamma  # None only with n_steps=1, whose discounts are not returned
        discounts = gamma ** mask.sum(axis=1, keepdims=True).astype(np.float32)
        gammas = gamma ** np.arange(self.n_steps, dtype=np.float32).reshape(1, -1)
        returns = (rewards_seq * gammas * mask).sum(axis=1, keepdims=True)
        last = (slots + last_offset) % self.buffer_size
        ended = self.dones[last, envs] > 0
        dones = (ended & (self.timeouts[last, envs] == 0)).astype(np.float32)[:, None]

        obs = self._normalize_obs(self._stacks(slots, envs), env)
        next_obs = self._normalize_obs(self._next_stacks(last, envs, ended), env)
        # Every array here is a fresh result of fancy indexing or arithmetic, never a view of the storage,
        # so the tensors need no extra copy (to_torch(copy=False)): torch's own CPU copy of a batch costs far more
        # than the gather (measured in docs/benchmarks_replay.md).
        return obs, self.actions[slots, envs], next_obs, dones, returns, discounts  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- the algorithm's settings

#: The value of a buffer attribute for buffers without it: SB3's ``ReplayBuffer`` is 1-step; Rainbow buffers saved before
#: ``per_sampling`` existed sampled stratified.
_BUFFER_BEFORE: dict[str, Any] = {"n_steps": 1, "per_sampling": "stratified"}


def replay_mismatches(loaded: Any, expected: dict[str, Any], buffer_class: type | None = None, names: dict[str, str] | None = None) -> list[str]:
    """
    What differs between a loaded replay buffer and the replay a model builds (:func:`load_replay_buffer`,
    ``Rainbow.load_replay_buffer``).

    :param loaded: The loaded buffer
    :param expected: The model's value of each buffer attribute that must match (``n_steps``, ``gamma``...)
    :param buffer_class: The class the buffer must be an instance of (None: any)
    :param names: The model's name of a buffer attribute, for the messages (e.g. ``{"prioritized": "prioritized_replay"}``)
    :return: One ``"<setting>: model <value>, buffer <value>"`` per difference
    """
    if buffer_class is not None and not isinstance(loaded, buffer_class):
        return [f"class: model {buffer_class.__name__}, buffer {type(loaded).__name__}"]
    problems = []
    for attribute, mine in expected.items():
        theirs = getattr(loaded, attribute, _BUFFER_BEFORE.get(attribute))
        if theirs is None or mine is None:
            differ = theirs is not mine
        elif isinstance(mine, (bool, np.bool_)):
            differ = bool(mine) != bool(theirs)
        elif isinstance(mine, numbers.Real) and isinstance(theirs, numbers.Real):
            differ = float(mine) != float(theirs)
        else:
            differ = mine != theirs
        if differ:
            problems.append(f"{(names or {}).get(attribute, attribute)}: model {mine!r}, buffer {theirs!r}")
    return problems


def replay_settings(model: OffPolicyAlgorithm) -> dict[str, Any]:
    """
    The n-step settings of the replay ``model`` builds: ``n_steps`` from its ``replay_buffer_kwargs`` (where SB3 also
    puts those of its ``NStepReplayBuffer``; 1 without), and for ``n_steps > 1`` the algorithm's ``gamma``.

    :param model: An off-policy model (SB3's DQN, sb3-contrib's QR-DQN...)
    :return: ``{"n_steps": n}`` or ``{"n_steps": n, "gamma": gamma}``
    """
    n_steps = int((getattr(model, "replay_buffer_kwargs", None) or {}).get("n_steps", 1))
    return {"n_steps": n_steps, "gamma": float(model.gamma)} if n_steps > 1 else {"n_steps": n_steps}


def check_loaded_replay(model: OffPolicyAlgorithm, source: str = "The loaded replay buffer") -> None:
    """
    Refuse ``model.replay_buffer`` if its n-step settings differ from the replay the model builds (:func:`replay_settings`;
    Rainbow's own checks for a Rainbow): training would silently use the buffer's. Call it after SB3's
    ``model.load_replay_buffer``, or use :func:`load_replay_buffer`, which also keeps the model's buffer on refusal.

    :param model: An off-policy model whose replay buffer was just loaded
    :param source: What the buffer is, for the message (e.g. ``"The replay buffer in run/replay_buffer.pkl"``)
    :raises ValueError: One line naming each setting, the model's value and the buffer's
    """
    own = getattr(model, "_replay_mismatches", None)  # Rainbow: n-step, gamma, prioritized sampling, frame stack
    problems = own(model.replay_buffer) if callable(own) else replay_mismatches(model.replay_buffer, replay_settings(model))
    if problems:
        raise replay_mismatch_error(source, problems)


def replay_mismatch_error(source: str, problems: list[str]) -> Refused:
    """The one-line error for a loaded replay buffer saved with other settings (:func:`replay_mismatches`)."""
    return Refused(
        f"{source} was saved with other settings ({'; '.join(problems)}): training would use the buffer's; "
        "load it into a model with the buffer's settings, or start a new buffer"
    )


def load_replay_buffer(model: OffPolicyAlgorithm, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
    """
    SB3's ``model.load_replay_buffer``, refusing a buffer whose ``n_steps`` or ``gamma`` differ from the model's
    (:func:`check_loaded_replay`), as ``Rainbow.load_replay_buffer`` does. The model keeps its own buffer when the
    loaded one is refused.

    :param model: An off-policy model (DQN, QR-DQN, Rainbow...)
    :param path: Path of the pickled replay buffer (``save_replay_buffer``)
    :param truncate_last_traj: See SB3's ``OffPolicyAlgorithm.load_replay_buffer``
    :raises ValueError: Naming each setting, the model's value and the buffer's
    """
    previous = model.replay_buffer
    model.load_replay_buffer(path, truncate_last_traj)
    try:
        check_loaded_replay(model, f"The replay buffer in {path}")
    except ValueError:
        model.replay_buffer = previous
        raise


#: Class attribute of an algorithm that gives its replay buffer its own ``gamma`` (Rainbow), which
#: :func:`with_algorithm_gamma` then leaves alone.
PASSES_GAMMA_TO_REPLAY = "passes_gamma_to_replay"


def _default_gamma(algo_class: type) -> Any:
    """The default ``gamma`` of ``algo_class``'s constructor (None when it has none)."""
    for klass in algo_class.__mro__:
        if "__init__" in vars(klass):
            param = inspect.signature(vars(klass)["__init__"]).parameters.get("gamma")
            if param is not None and param.default is not param.empty:
                return param.default
    return None


def with_algorithm_gamma(algo_class: type, hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    ``hyperparams`` whose :class:`FrameReplayBuffer` (``replay_buffer_class``) gets the algorithm's ``gamma`` (that of
    ``hyperparams``, else ``algo_class``'s default) in ``replay_buffer_kwargs`` when its ``n_steps > 1``: SB3 passes
    a custom buffer neither (``OffPolicyAlgorithm._setup_model``). Used by the rl_zoo3 hook and the sweep; Rainbow
    passes its own (:data:`PASSES_GAMMA_TO_REPLAY`) and is left alone, as are other buffers and 1-step ones (which do
    not discount).

    :param algo_class: The algorithm class (DQN, QRDQN...)
    :param hyperparams: Its keyword arguments, ``replay_buffer_class`` a class (not a string)
    :return: ``hyperparams``, or a copy with ``replay_buffer_kwargs["gamma"]`` filled in
    :raises ValueError: ``replay_buffer_kwargs`` give a ``gamma`` other than the algorithm's
    """
    buffer_class = hyperparams.get("replay_buffer_class")
    if not (isinstance(buffer_class, type) and issubclass(buffer_class, FrameReplayBuffer)):
        return hyperparams
    if getattr(algo_class, PASSES_GAMMA_TO_REPLAY, False):
        return hyperparams
    gamma = hyperparams.get("gamma", _default_gamma(algo_class))
    buffer_kwargs = dict(hyperparams.get("replay_buffer_kwargs") or {})
    given = buffer_kwargs.get("gamma")
    if given is not None and gamma is not None and float(given) != float(gamma):
        raise Refused(
            f"replay_buffer_kwargs gamma={given!r} differs from the algorithm's gamma={gamma!r}: the n-step return would "
            f"discount with another gamma than the bootstrap; valid: gamma={gamma!r}, or leave it out (sb3_gap fills it in)"
        )
    if given is not None or gamma is None or int(buffer_kwargs.get("n_steps", 1)) <= 1:
        return hyperparams
    buffer_kwargs["gamma"] = gamma
    return {**hyperparams, "replay_buffer_kwargs": buffer_kwargs}
