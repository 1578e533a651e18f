"""SB3 callbacks: log neuron diagnostics during ``learn()`` and reset inactive neurons (ReDo / ReGraMa).

All three count *gradient updates* exactly, with a post-step hook on the policy's optimizer (SB3's
``_n_updates`` counts epochs for PPO, not minibatch steps). On every ``every``-th update they arm
forward hooks just before that update's forward pass, so activations and gradients come from the
algorithm's own training batch and its own loss (TD/Huber for DQN, quantile Huber for QR-DQN,
clipped surrogate + value + entropy for PPO, the distributional loss for Rainbow) — no extra forward
pass and no surrogate loss. The forward hooks are attached only around the measured update, so between
checks the cost is one counter increment per update (measured in ``docs/benchmarks_diagnostics.md``).

Target networks (DQN, QR-DQN, Rainbow) are *not* reset: they keep following the online network
through the algorithm's own target updates (hard copy every ``target_update_interval`` or Polyak
averaging). With ReDo's zeroed outgoing weights a reset leaves the online network's outputs
unchanged (except through a LayerNorm, whose statistics see the new incoming weights), so the TD
targets stay consistent until the next sync, as in Sokar et al.'s (2023) implementation which
recycles the online parameters only.

Usable from the RL Zoo's YAML::

    callback:
      - sb3_gap.diagnostics.DiagnosticsCallback:
          every: 1000
      - sb3_gap.diagnostics.ReDoCallback:
          every: 1000
          tau: 0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_gap.checks import Refused
from sb3_gap.diagnostics.layers import find_head_consumers, neuron_layers
from sb3_gap.diagnostics.metrics import (
    DEFAULT_TAU,
    ActivityRecorder,
    activity_report,
    check_groups,
    check_tau,
    inactive_masks,
)
from sb3_gap.diagnostics.resets import ResetResult, check_outgoing_scale, reset_neurons
from sb3_gap.params import find_extractor, parameter_report


def check_every(every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise Refused(f"every must be a positive integer (gradient updates between checks, e.g. 1000), got {every!r}")
    return every


class UpdateScheduledCallback(BaseCallback):
    """
    Base class: run :meth:`_on_check` after every ``every``-th optimizer step, with the activations
    and/or gradients of that step's training batch recorded by an :class:`ActivityRecorder`.

    :param every: Gradient updates (optimizer steps) between checks, > 0
    :param verbose: Verbosity level
    """

    needs_activations = True
    needs_gradients = True

    def __init__(self, every: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.every = check_every(every)
        self.n_updates = 0
        self.recorder: ActivityRecorder | None = None
        self._step_hook: Any = None

    def _init_callback(self) -> None:
        self._remove_hooks()
        policy = self.model.policy
        self.extractor = find_extractor(self.model)
        self.optimizer: th.optim.Optimizer = policy.optimizer
        self.layers = neuron_layers(self.extractor, find_head_consumers(policy, self.extractor))
        self.recorder = ActivityRecorder(self.extractor, self.layers, activations=self.needs_activations, gradients=self.needs_gradients)
        self._step_hook = self.optimizer.register_step_post_hook(self._after_step)
        self._arm()

    def _arm(self) -> None:
        # Forward hooks exist only around the measured update: between checks the only cost is
        # the optimizer's post-step hook (one counter increment per update).
        assert self.recorder is not None
        self.recorder.armed = (self.n_updates + 1) % self.every == 0
        if self.recorder.armed:
            self.recorder.attach()
        else:
            self.recorder.detach()

    def _after_step(self, _optimizer: th.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        self.n_updates += 1
        assert self.recorder is not None
        if self.n_updates % self.every == 0:
            self._on_check()
            self.recorder.clear()
        self._arm()

    def _on_check(self) -> None:
        raise NotImplementedError

    def _on_step(self) -> bool:
        return True

    def _remove_hooks(self) -> None:
        if self.recorder is not None:
            self.recorder.detach()
            self.recorder = None
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None

    def _on_training_end(self) -> None:
        # Leave the model as we found it: no hook survives learn().
        self._remove_hooks()


class DiagnosticsCallback(UpdateScheduledCallback):
    """
    Log τ-dormant and GraMa fractions per module (φ / bottleneck / ψ, optionally per layer), the
    feature norms of φ's and the bottleneck's outputs, and the effective connection parameter count
    under ``diagnostics/...`` in the SB3 logger (TensorBoard, CSV, stdout), every ``every`` updates.

    Values are recorded with ``logger.record`` and written at SB3's next dump (``log_interval``); the
    most recent check wins. Each check is also appended to :attr:`history`.

    :param every: Gradient updates between measurements, > 0
    :param tau: Threshold(s) τ ≥ 0; several give keys ``dormant@<τ>/...`` and ``grama@<τ>/...``
    :param per_layer: Also log every layer under ``diagnostics/<metric>/layer/<name>``
    :param verbose: Verbosity level
    """

    def __init__(self, every: int = 1000, tau: float | Sequence[float] = DEFAULT_TAU, per_layer: bool = False, verbose: int = 0) -> None:
        super().__init__(every, verbose)
        taus = [tau] if isinstance(tau, (int, float)) else list(tau)
        self.taus = [check_tau(t) for t in taus]
        if not self.taus:
            raise Refused(f"tau must be a number >= 0 or a non-empty list of them, got {tau!r}")
        self.per_layer = per_layer
        self.history: list[dict[str, float]] = []

    def _on_check(self) -> None:
        assert self.recorder is not None
        act, grads = self.recorder.activation_magnitudes(), self.recorder.gradient_magnitudes()
        values: dict[str, float] = {"updates": float(self.n_updates)}
        for tau in self.taus:
            suffix = "" if len(self.taus) == 1 else f"@{tau:g}"
            for metric, mags in (("dormant", act), ("grama", grads)):
                report = activity_report(metric + suffix, mags, self.layers, tau)
                values.update(report.as_dict(per_layer=self.per_layer))
        for key, norm in self.recorder.feature_norms().items():
            values[f"feature_norm/{key}"] = norm
        values["effective_connection_params"] = float(parameter_report(self.extractor).effective_connection)
        for key, value in values.items():
            self.logger.record(f"diagnostics/{key}", value)
        self.history.append(values)


class _ResetCallback(UpdateScheduledCallback):
    """Shared logic of :class:`ReDoCallback` and :class:`ReGraMaCallback`."""

    metric = ""

    def __init__(
        self,
        every: int,
        tau: float,
        outgoing_scale: float,
        modules: Iterable[str] | None,
        verbose: int,
    ) -> None:
        super().__init__(every, verbose)
        self.tau = check_tau(tau)
        self.outgoing_scale = check_outgoing_scale(outgoing_scale)
        self.modules = check_groups(modules)
        self.resets: list[ResetResult] = []

    def _magnitudes(self) -> dict[str, th.Tensor]:
        raise NotImplementedError

    def _on_check(self) -> None:
        flagged = inactive_masks(self._magnitudes(), self.tau)
        flagged = {
            layer.name: flagged[layer.name] for layer in self.layers if layer.resettable and layer.group in self.modules and layer.name in flagged
        }
        result = reset_neurons(self.layers, flagged, self.optimizer, self.outgoing_scale)
        self.resets.append(result)
        candidates = sum(int(m.numel()) for m in flagged.values())
        self.logger.record(f"diagnostics/{self.metric}/reset_neurons", result.total)
        self.logger.record(f"diagnostics/{self.metric}/reset_fraction", result.total / candidates if candidates else 0.0)
        if self.verbose >= 1:
            print(f"{type(self).__name__}: update {self.n_updates}, reset {result.total}/{candidates} neurons {result.neurons}")


class ReDoCallback(_ResetCallback):
    """
    ReDo, Recycling Dormant neurons (Sokar et al. 2023, Alg. 1): every ``every`` gradient updates,
    neurons whose normalised activation ``s_i = E|h_i| / mean_k E|h_k| ≤ τ`` on the training batch
    get fresh incoming weights, zero outgoing weights and zero Adam moments for those entries.

    Only hidden ReLU neurons of the sb3_gap extractor are reset (never the output layer; see
    :mod:`sb3_gap.diagnostics.layers` for residual streams); target networks are left to the
    algorithm's own sync (module docstring).

    :param every: Gradient updates between resets, > 0 (Sokar et al. recycle every 1000 updates)
    :param tau: Dormancy threshold τ ≥ 0 for resetting (Sokar et al. use 0.1 for Atari DQN)
    :param outgoing_scale: Factor on reset neurons' outgoing weights, in [0, 1] (ReDo: 0)
    :param modules: Which of ``"phi"``, ``"bottleneck"``, ``"psi"`` to reset (default: all)
    :param verbose: Verbosity level
    """

    metric = "redo"
    needs_gradients = False

    def __init__(
        self,
        every: int = 1000,
        tau: float = 0.1,
        outgoing_scale: float = 0.0,
        modules: Iterable[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(every, tau, outgoing_scale, modules, verbose)

    def _magnitudes(self) -> dict[str, th.Tensor]:
        assert self.recorder is not None
        return self.recorder.activation_magnitudes()


class ReGraMaCallback(_ResetCallback):
    """
    ReGraMa (Liu et al. 2025): like ReDo, but neurons are flagged by GraMa, the normalised magnitude
    of the training loss's gradient w.r.t. their pre-activation, ``E|∂L/∂z_i| / mean_k E|∂L/∂z_k| ≤ τ``,
    captured during the algorithm's own backward pass; outgoing weights are shrunk by
    ``outgoing_scale`` rather than zeroed.

    :param every: Gradient updates between resets, > 0
    :param tau: GraMa threshold τ ≥ 0
    :param outgoing_scale: Factor on reset neurons' outgoing weights, in [0, 1]; the default 0.1 is
        this package's choice, not a value from the paper
    :param modules: Which of ``"phi"``, ``"bottleneck"``, ``"psi"`` to reset (default: all)
    :param verbose: Verbosity level
    """

    metric = "regrama"
    needs_activations = False

    def __init__(
        self,
        every: int = 1000,
        tau: float = 0.1,
        outgoing_scale: float = 0.1,
        modules: Iterable[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(every, tau, outgoing_scale, modules, verbose)

    def _magnitudes(self) -> dict[str, th.Tensor]:
        assert self.recorder is not None
        return self.recorder.gradient_magnitudes()
