"""
Rainbow's replay: n-step returns + proportional prioritized replay over the frame store of
:class:`~sb3_gap.replay.FrameReplayBuffer` (one stored copy of each frame).

References
----------
- Hessel et al. 2018, "Rainbow: Combining Improvements in Deep RL" (n-step targets, Eq. 2; PER with
  the KL/cross-entropy loss as priority, alpha=0.5, beta=0.4->1 in the paper, 0.5 constant in Dopamine).
- Schaul et al. 2016, "Prioritized Experience Replay": P(i) = p_i^alpha / sum_k p_k^alpha (Eq. 1),
  importance weights w_i = (N P(i))^-beta / max_j w_j (Sec. 3.4), stratified sampling over a sum tree
  (Appendix B.2.1).
- Dopamine's ``circular_replay_buffer`` / ``prioritized_replay_buffer`` (the paper's code base): frames
  stored once, stacks and n-step windows rebuilt at sample time, new transitions at the maximum
  priority recorded so far (starting at 1), IS weights normalised by the batch maximum.

The storage, the stack rebuilding and the n-step windows (SB3 ``NStepReplayBuffer``'s arithmetic) are
:class:`~sb3_gap.replay.FrameReplayBuffer`'s, which SB3's DQN and QR-DQN use with uniform sampling.
This subclass adds what SB3 has no counterpart for: a sum tree over the same slots and, as Dopamine,
only ever samples *complete* windows (no window is cut at the write head).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gap.algo_args import ALGO_ARG_BOUNDS
from sb3_gap.checks import Refused, check_choice
from sb3_gap.rainbow.sum_tree import SumTree
from sb3_gap.replay import FrameReplayBuffer, infer_frame_stack, replay_mismatches

__all__ = ["PER_SAMPLING", "RainbowReplayBuffer", "RainbowSamples", "infer_frame_stack"]

#: How prioritized replay draws a batch: ``"stratified"`` (one draw in each of ``batch_size`` equal segments of the
#: total priority; Schaul et al. 2016, App. B.2.1, and Dopamine's TF ``prioritized_replay_buffer``) or ``"iid"``
#: (``batch_size`` independent draws, with replacement: Dopamine 4.1.2's JAX sampler,
#: ``dopamine/jax/replay_memory/samplers.py``, ``PrioritizedSamplingDistribution.sample``).
PER_SAMPLING = ("stratified", "iid")


class RainbowSamples(NamedTuple):
    """
    A batch of n-step transitions. The target distribution is built from
    ``rewards + discounts * (1 - dones) * Z(next_observations)``.

    :param observations: ``(B, *obs_shape)``, dtype as stored (uint8 images stay uint8)
    :param actions: ``(B, action_dim)``; ``(B, 1)`` for ``Discrete``
    :param next_observations: the observation at ``t + k`` where the window ended (``k <= n_steps``)
    :param dones: ``(B, 1)`` float32, 1 iff the window ended on a true termination (not a time limit)
    :param rewards: ``(B, 1)`` float32, ``sum_{i<k} gamma^i r_{t+i}``
    :param discounts: ``(B, 1)`` float32, ``gamma^k``
    :param weights: ``(B, 1)`` float32 importance-sampling weights (ones when not prioritized)
    :param indices: ``(B,)`` handles to pass back to :meth:`RainbowReplayBuffer.update_priorities`
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    weights: th.Tensor
    indices: np.ndarray


class RainbowReplayBuffer(FrameReplayBuffer):
    """
    Replay buffer for Rainbow: n-step returns, proportional prioritized replay over a sum tree and, for
    frame-stacked image observations, each frame stored once (Dopamine's layout).

    **Storage** is :class:`~sb3_gap.replay.FrameReplayBuffer`'s: per slot ``(t, env)`` the newest frame,
    action, reward, episode-end and time-limit flags, and the position in the episode; final frames in
    a side pool. 1M transitions of 4x84x84 uint8: 7.06 GB of frames + ~34 MB of the rest
    (``storage_nbytes()``, sum tree included).

    **Which transitions can be sampled.** A transition ``t`` becomes sampleable (gets a priority) once its
    n-step window is complete: when the step ``t + n_steps`` has been added (its observation is the
    bootstrap observation), or as soon as the episode ends within the window. So the newest
    ``n_steps`` transitions of each ongoing episode are held back (Dopamine does the same near its
    cursor). When the buffer is full, the ``frame_stack - 1`` oldest transitions per env, whose older
    frames were overwritten, are not sampled either. Windows never cross the write head or mix envs.

    **Priorities.** New transitions get the maximum priority recorded so far (starting at 1);
    :meth:`update_priorities` takes raw per-sample losses ``p`` and stores ``(p + priority_eps)^alpha``.
    Sampling is stratified by default: the total priority is cut into ``batch_size`` equal segments and one
    value is drawn uniformly in each (Schaul et al. 2016, App. B.2.1); ``per_sampling="iid"`` draws ``batch_size``
    values uniformly in ``[0, total)`` instead, as Dopamine 4.1.2's JAX replay does (:data:`PER_SAMPLING`). Both
    draw each transition with probability ``p_i / Σ p``; stratified batches repeat transitions less. Randomness
    comes from ``np.random`` (as in SB3), so ``set_random_seed`` makes it reproducible and a pickled buffer resumes
    exactly.

    :param buffer_size: Max number of transitions (split across envs as in SB3)
    :param observation_space: Observation space (``Box`` or ``Discrete``; not ``Dict``)
    :param action_space: Action space
    :param device: PyTorch device of the sampled tensors ("auto": CUDA when present)
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (frames are already stored once); must be False
    :param handle_timeout_termination: Treat time-limit truncations (``info["TimeLimit.truncated"]``) as
        non-terminal: the window stops there and bootstraps from the final observation. If False,
        they are treated as terminations.
    :param n_steps: Length ``n`` of the multi-step return (Hessel et al. 2018, Eq. 2)
    :param gamma: Discount factor
    :param frame_stack: Number ``k`` of frames stacked along axis 0 of the observation, oldest first
        (``VecFrameStack`` with channel-first images). 1 stores observations as given.
    :param prioritized: Proportional prioritized sampling; False samples uniformly (weights are 1)
    :param alpha: Priority exponent (Schaul et al. 2016, Eq. 1)
    :param priority_eps: Added to the losses before the exponent so no priority is 0 (1e-6 here; Dopamine adds 1e-10,
        ``priorities=jnp.sqrt(loss + 1e-10)`` in ``dopamine/jax/agents/rainbow/rainbow_agent.py``)
    :param per_sampling: How a prioritized batch is drawn, a name of :data:`PER_SAMPLING`: ``"stratified"`` (the
        default) or ``"iid"`` (Dopamine 4.1.2's JAX sampler)
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
        n_steps: int = 3,
        gamma: float = 0.99,
        frame_stack: int = 1,
        prioritized: bool = True,
        alpha: float = 0.5,
        priority_eps: float = 1e-6,
        per_sampling: str = "stratified",
    ) -> None:
        # Rainbow checked its own priority_alpha already; these are for direct users of the buffer, with Rainbow's bounds.
        ALGO_ARG_BOUNDS["priority_alpha"].check("alpha", alpha)
        ALGO_ARG_BOUNDS["priority_eps"].check("priority_eps", priority_eps)
        self.per_sampling = check_choice("per_sampling", per_sampling, PER_SAMPLING)
        self.prioritized = bool(prioritized)
        self.alpha = float(alpha)
        self.priority_eps = float(priority_eps)
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
            handle_timeout_termination, n_steps=n_steps, gamma=gamma, frame_stack=frame_stack,
        )  # fmt: skip

    # ------------------------------------------------------------------ storage
    def _allocate(self) -> None:
        super()._allocate()
        # one leaf per (slot, env), handle = slot * n_envs + env; 0 = not sampleable
        self.tree = SumTree(self.buffer_size * self.n_envs)
        self.max_priority = 1.0
        self._pending = np.zeros(self.n_envs, dtype=np.int64)  # newest transitions not yet sampleable

    def _storage_arrays(self) -> list[np.ndarray]:
        return [*super()._storage_arrays(), self.tree.nodes]

    # ------------------------------------------------------------------ adding
    def _enable(self, slots: np.ndarray, env: int) -> None:
        """Make transitions sampleable, at the max priority recorded so far (Schaul et al. 2016, Alg. 1 l.6)."""
        leaves = np.asarray(slots, dtype=np.int64) % self.buffer_size * self.n_envs + env
        self.tree.update(leaves, self.max_priority if self.prioritized else 1.0)

    def _clear_slot(self, pos: int) -> None:
        """Take slot ``pos`` (and, when full, the stacks that lose a frame with it) out of the tree."""
        super()._clear_slot(pos)
        n_envs = self.n_envs
        self.tree.update(pos * n_envs + np.arange(n_envs), 0.0)
        if self.full and self.frame_stack > 1:
            # the next frame_stack - 1 oldest slots lose an older frame of their stack: not sampleable anymore
            ahead = (pos + np.arange(1, self.frame_stack)) % self.buffer_size
            self.tree.update((ahead[:, None] * n_envs + np.arange(n_envs)).reshape(-1), 0.0)

    def _end_episode(self, slot: int, env: int, final_obs: np.ndarray, truncated: bool) -> None:
        """Mark ``slot`` as the last step of its episode, keep its final frame, release pending windows."""
        super()._end_episode(slot, env, final_obs, truncated)
        self._enable(slot - np.arange(self._pending[env]), env)
        self._pending[env] = 0

    def _write_step(self, pos: int, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, episode_step: np.ndarray) -> None:
        super()._write_step(pos, obs, action, reward, episode_step)
        self._pending += 1

    def _step_added(self, pos: int, done: np.ndarray) -> None:
        """Release the windows the step completes (the tree recomputes its sums at the next sample)."""
        for env in np.flatnonzero(~done & (self._pending > self.n_steps)):
            # step pos - n has its n rewards and its bootstrap observation (this slot's frame)
            self._enable(np.array([pos - self.n_steps]), int(env))
            self._pending[env] = self.n_steps

    # ------------------------------------------------------------------ sampling
    def can_sample(self) -> bool:
        """
        Whether :meth:`sample` has a transition to draw: at least one complete n-step window (see "Which transitions
        can be sampled" above). False for the first ``n_steps`` steps of an ongoing episode, so ``Rainbow`` skips its
        updates until then when ``learning_starts`` or ``train_freq`` is below ``n_steps`` or it resumes without its replay.
        """
        return self.tree.total > 0.0

    def sample(self, batch_size: int, env: VecNormalize | None = None, beta: float = 0.5) -> RainbowSamples:  # type: ignore[override]
        """
        Sample ``batch_size`` n-step transitions, proportionally to their priority (stratified or i.i.d.,
        :attr:`per_sampling`) or uniformly.

        :param batch_size: Number of transitions
        :param env: VecNormalize to normalize observations and rewards, if any
        :param beta: Importance-sampling exponent in [0, 1] (Schaul et al. 2016, Sec. 3.4)
        :return: A :class:`RainbowSamples` batch
        """
        if not 0.0 <= beta <= 1.0:
            raise Refused(f"beta must be in [0, 1], got {beta}")
        if batch_size < 1:
            raise Refused(f"batch_size must be >= 1, got {batch_size}")
        total = self.tree.total
        if total <= 0.0:
            raise Refused(
                "RainbowReplayBuffer has no complete n-step transition to sample yet: a transition becomes "
                f"sampleable once n_steps={self.n_steps} more steps were added or its episode ended"
            )
        # getattr: buffers pickled before per_sampling existed sampled stratified
        if self.prioritized and getattr(self, "per_sampling", "stratified") == "stratified":
            # stratified: one uniform draw in each of batch_size equal segments of [0, total)
            values = (np.arange(batch_size) + np.random.uniform(size=batch_size)) * (total / batch_size)
        else:
            # i.i.d. with replacement: uniform sampling, or Dopamine's JAX PER (samplers.py: rng.uniform(0, root, size))
            values = np.random.uniform(size=batch_size) * total
        indices = self.tree.find(values)
        if self.prioritized:
            # w_i = (N P(i))^-beta / max_j w_j; N cancels in the normalisation by the batch maximum (Dopamine)
            probs = self.tree.get(indices) / total
            weights = probs ** (-beta)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            weights = np.ones(batch_size, dtype=np.float32)
        return self._get_samples(indices, env=env, weights=weights)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None, weights: np.ndarray | None = None
    ) -> RainbowSamples:
        """
        n-step transitions for tree handles ``batch_inds`` (= slot * n_envs + env), computed by
        :meth:`FrameReplayBuffer._transitions <sb3_gap.replay.FrameReplayBuffer._transitions>`.
        """
        batch_inds = np.asarray(batch_inds, dtype=np.int64)
        slots, envs = batch_inds // self.n_envs, batch_inds % self.n_envs
        obs, actions, next_obs, dones, rewards, discounts = self._transitions(slots, envs, env)
        if weights is None:
            weights = np.ones(len(batch_inds), dtype=np.float32)
        return RainbowSamples(
            observations=self.to_torch(obs, copy=False),
            actions=self.to_torch(actions, copy=False),
            next_observations=self.to_torch(next_obs, copy=False),
            dones=self.to_torch(dones, copy=False),
            rewards=self.to_torch(rewards, copy=False),
            discounts=self.to_torch(discounts, copy=False),
            weights=self.to_torch(np.asarray(weights, dtype=np.float32).reshape(-1, 1), copy=False),
            indices=batch_inds,
        )

    # ------------------------------------------------------------------ priorities
    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray | th.Tensor) -> None:
        """
        Set the priorities of sampled transitions from their losses: ``(loss + priority_eps)^alpha``.
        Handles whose transition was overwritten since sampling (their leaf is 0) are skipped, so an
        incomplete window is never made sampleable. No-op when ``prioritized=False``.

        :param indices: ``RainbowSamples.indices``
        :param priorities: Raw non-negative per-sample losses, shape ``(B,)`` or ``(B, 1)``
        """
        if not self.prioritized:
            return
        if isinstance(priorities, th.Tensor):
            priorities = priorities.detach().cpu().numpy()
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if priorities.shape != indices.shape:
            raise Refused(f"priorities has {priorities.size} entries but indices has {indices.size}")
        if not np.all(np.isfinite(priorities)) or np.any(priorities < 0):
            raise Refused(f"priorities must be finite and >= 0, got min {priorities.min()}, max {priorities.max()}")
        if np.any((indices < 0) | (indices >= self.tree.capacity)):
            raise Refused(f"indices must be in [0, {self.tree.capacity}), got {indices.min()}..{indices.max()}")
        values = (priorities + self.priority_eps) ** self.alpha
        live = self.tree.get(indices) > 0.0
        self.tree.update(indices[live], values[live])
        if live.any():
            self.max_priority = max(self.max_priority, float(values[live].max()))


#: Rainbow's arguments that decide what the replay stores and how it samples, and the buffer's names for them.
REPLAY_SETTINGS = {
    "n_steps": "n_steps",
    "gamma": "gamma",
    "prioritized_replay": "prioritized",
    "priority_alpha": "alpha",
    "per_sampling": "per_sampling",
}


def rainbow_replay_mismatches(loaded: Any, settings: dict[str, Any], frame_stack: int) -> list[str]:
    """
    What differs between a loaded replay buffer and a Rainbow model's replay settings (``Rainbow.load_replay_buffer``):
    :func:`sb3_gap.replay.replay_mismatches` over :data:`REPLAY_SETTINGS` (α and the sampling only when prioritized).

    :param loaded: The loaded buffer
    :param settings: The model's :data:`REPLAY_SETTINGS` values by Rainbow's names
    :param frame_stack: The model's frame stack
    :return: One ``"<setting>: model <value>, buffer <value>"`` per difference
    """
    expected = {
        buffer_key: settings[model_key]
        for model_key, buffer_key in REPLAY_SETTINGS.items()
        if settings["prioritized_replay"] or model_key not in ("priority_alpha", "per_sampling")
    }
    if hasattr(loaded, "frame_stack"):
        expected["frame_stack"] = frame_stack
    names = {buffer_key: model_key for model_key, buffer_key in REPLAY_SETTINGS.items()}
    return replay_mismatches(loaded, expected, buffer_class=RainbowReplayBuffer, names=names)
