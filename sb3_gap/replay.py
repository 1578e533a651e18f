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

The pieces: :mod:`sb3_gap.frame_store` (:class:`~sb3_gap.frame_store.FrameStore`, what ``add`` keeps, and
:func:`infer_frame_stack`), this module (sampling, and the algorithm's ``gamma`` for the buffer) and
:mod:`sb3_gap.replay_loading` (a saved buffer checked against the model that loads it).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gap.checks import Refused
from sb3_gap.frame_store import FrameStore, infer_frame_stack
from sb3_gap.replay_loading import check_loaded_replay, load_replay_buffer, replay_mismatch_error, replay_mismatches, replay_settings


class FrameReplayBuffer(FrameStore):
    """
    SB3 replay buffer that stores each frame once and rebuilds frame stacks at sample time; optional
    n-step returns with the semantics of SB3's ``NStepReplayBuffer``. Pass it as ``replay_buffer_class``.

    **Storage** is :class:`~sb3_gap.frame_store.FrameStore`'s: per slot the newest frame of the observation, the
    action, reward, episode-end and time-limit flags and the position in the episode; final frames of episode ends in
    a side pool. 1M transitions of 4x84x84 uint8: 7.06 GB, against 56 GB for SB3's ``ReplayBuffer``.

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


__all__ = [
    "PASSES_GAMMA_TO_REPLAY",
    "FrameReplayBuffer",
    "FrameStore",
    "check_loaded_replay",
    "infer_frame_stack",
    "load_replay_buffer",
    "replay_mismatch_error",
    "replay_mismatches",
    "replay_settings",
    "with_algorithm_gamma",
]
