"""How a Rainbow learns: the gradient steps of ``train`` (a replay batch, the loss of :mod:`sb3_gap.rainbow.loss`,
the optimizer step and the new priorities) and their statistics."""

from __future__ import annotations

import time
from typing import Any

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_gap.compile import uses_cuda_graphs
from sb3_gap.rainbow.buffers import RainbowReplayBuffer
from sb3_gap.rainbow.loss import per_sample_loss
from sb3_gap.rainbow.policies import RainbowNetwork, RainbowPolicy


class RainbowTraining(OffPolicyAlgorithm):
    """
    The learning half of :class:`~sb3_gap.rainbow.Rainbow` (which documents the arguments): :meth:`train` and the loss
    it minimises, compiled when ``compile`` is set.
    """

    q_net: RainbowNetwork
    q_net_target: RainbowNetwork
    policy: RainbowPolicy
    replay_buffer: ReplayBuffer
    double_q: bool
    distributional: bool
    loss: str
    noisy: bool
    prioritized_replay: bool
    priority_beta: Any
    max_grad_norm: float | None
    compile_mode: str | None
    #: Seconds spent compiling, per compiled function (``"update"``, ``"act"``), once each has run
    compile_times: dict[str, float]
    _compiled_update: Any
    #: Gradient steps skipped because the replay had no complete n-step transition yet (``train/skipped_updates``;
    #: ``train/n_updates`` counts the real ones). A class default: models saved before it existed, and the Hub's
    #: pickle-free files, which keep the constructor's attributes only, start from 0.
    _n_skipped_updates: int = 0

    def _current_beta(self) -> float:
        """The importance-sampling exponent β at the current progress."""
        beta = self.priority_beta
        return float(beta(self._current_progress_remaining)) if callable(beta) else float(beta)

    def per_sample_loss(self, replay_data: Any) -> tuple[th.Tensor, th.Tensor]:
        """The per-transition loss of a replay batch and Q of the taken actions (:func:`sb3_gap.rainbow.loss.per_sample_loss`)."""
        return per_sample_loss(self.q_net, self.q_net_target, replay_data, self.gamma, self.double_q, self.distributional, self.loss)

    def _update_loss(self, replay_data: Any, weights: th.Tensor | None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The update's loss (mean of the IS-weighted per-sample losses), the per-sample losses and Q of the taken actions."""
        per_sample, q_taken = self.per_sample_loss(replay_data)
        # Importance-sampling correction of prioritized replay (Schaul et al. 2016, Alg. 1).
        loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
        return loss, per_sample, q_taken

    def _replay_can_sample(self) -> bool:
        """Whether the replay holds a transition to sample (a complete n-step window for :class:`RainbowReplayBuffer`)."""
        can_sample = getattr(self.replay_buffer, "can_sample", None)
        return bool(can_sample()) if callable(can_sample) else self.replay_buffer.size() > 0

    def _skip_updates(self, gradient_steps: int) -> None:
        """
        Count ``gradient_steps`` updates as skipped: the replay has no complete n-step window yet (learning_starts or
        train_freq below n_steps, e.g. DER's train_freq=1 with a small learning_starts, or a model resumed without its
        replay). SB3 trains as soon as num_timesteps > learning_starts (off_policy_algorithm.py, learn()); Dopamine
        never reaches this, its min_replay_history exceeding its update_horizon. Nothing is drawn or changed.
        """
        self._n_skipped_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/skipped_updates", self._n_skipped_updates, exclude="tensorboard")

    def _sample_batch(self, batch_size: int, beta: float) -> tuple[Any, th.Tensor | None]:
        """A replay batch and its importance-sampling weights (None for SB3's buffers, which have none)."""
        if isinstance(self.replay_buffer, RainbowReplayBuffer):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, beta=beta)
            return replay_data, replay_data.weights.reshape(-1)
        return self.replay_buffer.sample(batch_size, env=self._vec_normalize_env), None

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """
        ``gradient_steps`` updates of ``batch_size`` transitions each, or none (counted as skipped) while the replay
        has no complete n-step window.

        :param gradient_steps: Number of updates
        :param batch_size: Transitions per update
        """
        # Switch to train mode (this affects batch norm / dropout, never the noise of noisy layers)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        beta = self._current_beta()
        if not self._replay_can_sample():
            self._skip_updates(gradient_steps)
            return

        # Statistics stay on the device until the end: no host sync per gradient step
        # (except the priorities, which the replay needs on the host).
        losses, mean_qs, mean_weights = [], [], []
        update = self._update_loss if self._compiled_update is None else self._compiled_update
        cuda_graphs = self._compiled_update is not None and uses_cuda_graphs(self.compile_mode, self.device)
        for _ in range(gradient_steps):
            timing = self._compiled_update is not None and "update" not in self.compile_times
            if timing:
                started = time.perf_counter()
            replay_data, weights = self._sample_batch(batch_size, beta)
            if self.noisy:
                # New noise for every update, independent for online and target (Fortunato et al. 2018, Alg. 1).
                self.policy.reset_noise()
            if cuda_graphs:
                th.compiler.cudagraph_mark_step_begin()  # the previous update's graph outputs may be overwritten
            loss, per_sample, q_taken = update(replay_data, weights)

            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

            if weights is not None and self.prioritized_replay:
                # The one host sync per update: the sum tree lives on the host and the next sample needs it.
                self.replay_buffer.update_priorities(replay_data.indices, per_sample.detach().cpu().numpy())  # type: ignore[attr-defined]
            # Kept until the end of train(): copies when CUDA graphs would overwrite the outputs at the next replay.
            losses.append(loss.detach().clone() if cuda_graphs else loss.detach())
            mean_qs.append(q_taken.mean())
            if weights is not None:
                mean_weights.append(weights.mean())
            if timing:
                self._record_compile_time("update", time.perf_counter() - started)

        self._n_updates += gradient_steps
        self._record_train_stats(losses, mean_qs, mean_weights, beta)

    def _record_train_stats(self, losses: list[th.Tensor], mean_qs: list[th.Tensor], mean_weights: list[th.Tensor], beta: float) -> None:
        """Log the updates of one ``train`` call: counts, mean loss, Q and IS weight, β and the compile time."""
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self._n_skipped_updates:
            self.logger.record("train/skipped_updates", self._n_skipped_updates, exclude="tensorboard")
        if losses:
            # One device-to-host copy for the three statistics (instead of one sync per .item()).
            stats = [th.stack(losses).mean(), th.stack(mean_qs).mean()] + ([th.stack(mean_weights).mean()] if mean_weights else [])
            values = th.stack(stats).tolist()
            self.logger.record("train/loss", values[0])
            self.logger.record("train/mean_q", values[1])
            self.logger.record("train/is_weight_mean", values[2] if mean_weights else 1.0)
        if self.prioritized_replay:
            self.logger.record("train/priority_beta", beta)
        if self.compile_times:
            self.logger.record("train/compile_s", sum(self.compile_times.values()))

    def _record_compile_time(self, name: str, seconds: float) -> None:
        """Keep how long compiling ``name`` took (and say so when verbose)."""
        self.compile_times[name] = seconds
        if self.verbose >= 1:
            print(f"Rainbow: torch.compile of the {name} took {seconds:.1f} s (mode {self.compile_mode!r})")
