"""Neuron-activity metrics of a network with a :class:`~sb3_gap.ConvExtractor`.

Pure functions of a model (or policy / extractor) and a batch of observations:

- :func:`dormant_fractions`: τ-dormant neurons (Sokar et al. 2023, Def. 3.1). For neuron i of layer ℓ
  with activation ``h_i``, ``s_i = E_x|h_i(x)| / (1/H_ℓ Σ_k E_x|h_k(x)|)``; conv channels are averaged
  over batch and space; the neuron is dormant if ``s_i ≤ τ``.
- :func:`grama_fractions`: GraMa (Liu et al. 2025), the same normalisation applied to
  ``E_x|∂L/∂z_i|``, the loss gradient w.r.t. the neuron's pre-activation ``z_i``; inactive if ``≤ τ``.
- :func:`feature_norms`: mean L2 norm of φ's output and of the bottleneck/ψ output (Sokar & Castro
  2025, Fig. 7).
- :func:`effective_connection_params`: non-zero φ→ψ connection weights.

All of them read activations with forward hooks (:class:`ActivityRecorder`), which the callbacks in
:mod:`sb3_gap.diagnostics.callbacks` reuse inside the algorithm's own training step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from torch import nn

from sb3_gap.checks import Refused
from sb3_gap.diagnostics.layers import GROUPS, NeuronLayer, neuron_layers
from sb3_gap.extractor import ConvExtractor
from sb3_gap.params import find_extractor, parameter_report

#: Default τ of the paper's appendix (Sokar & Castro 2025, "dormancy threshold of 0.001").
DEFAULT_TAU = 0.001


def check_tau(tau: float) -> float:
    """Validate a dormancy threshold: a finite number >= 0."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau) or tau < 0:
        raise Refused(f"tau must be a number >= 0 (e.g. 0, 0.001 as in the paper, 0.025, 0.1), got {tau!r}")
    return float(tau)


def check_groups(groups: Iterable[str] | None) -> tuple[str, ...]:
    """Validate module group names against :data:`GROUPS`."""
    if groups is None:
        return GROUPS
    if isinstance(groups, str):
        groups = [groups]
    groups = tuple(groups)
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise Refused(f"Unknown module name(s) {bad if bad else groups!r}; valid choices: {list(GROUPS)}")
    return groups


def normalized_scores(magnitudes: th.Tensor) -> th.Tensor:
    """``s_i = m_i / mean_k m_k`` over one layer; all zeros when the whole layer is silent."""
    mean = magnitudes.mean()
    return magnitudes / mean if mean > 0 else th.zeros_like(magnitudes)


@dataclass(frozen=True)
class LayerActivity:
    """
    Inactive neurons of one layer.

    :param name: Module name inside the extractor
    :param group: ``"phi"``, ``"bottleneck"`` or ``"psi"``
    :param neurons: Number of neurons
    :param inactive: Number with normalised score ``≤ τ``
    """

    name: str
    group: str
    neurons: int
    inactive: int

    @property
    def fraction(self) -> float:
        return self.inactive / self.neurons if self.neurons else 0.0


@dataclass(frozen=True)
class ActivityReport:
    """
    τ-inactive neurons per layer and per module, for one metric.

    :param metric: ``"dormant"`` (activations) or ``"grama"`` (gradients)
    :param tau: The threshold τ
    :param layers: One :class:`LayerActivity` per neuron layer, in forward order
    """

    metric: str
    tau: float
    layers: tuple[LayerActivity, ...]

    def fraction(self, group: str | None = None) -> float:
        """Inactive neurons / neurons over ``group`` (``None``: the whole extractor), counting neurons."""
        sel = [layer for layer in self.layers if group is None or layer.group == check_groups([group])[0]]
        total = sum(layer.neurons for layer in sel)
        return sum(layer.inactive for layer in sel) / total if total else 0.0

    def as_dict(self, per_layer: bool = True) -> dict[str, float]:
        """Flat ``{"<metric>/<group>": fraction, ...}`` for a logger; layers under ``<metric>/layer/<name>``."""
        out = {f"{self.metric}/{g}": self.fraction(g) for g in GROUPS if any(layer.group == g for layer in self.layers)}
        out[f"{self.metric}/all"] = self.fraction()
        if per_layer:
            out.update({f"{self.metric}/layer/{layer.name}": layer.fraction for layer in self.layers})
        return out


def activity_report(metric: str, magnitudes: dict[str, th.Tensor], layers: Sequence[NeuronLayer], tau: float) -> ActivityReport:
    """Build an :class:`ActivityReport` from per-layer ``E|·|`` magnitudes."""
    tau = check_tau(tau)
    rows = []
    for layer in layers:
        if layer.name not in magnitudes:
            continue
        scores = normalized_scores(magnitudes[layer.name])
        rows.append(LayerActivity(layer.name, layer.group, scores.numel(), int((scores <= tau).sum())))
    return ActivityReport(metric, tau, tuple(rows))


def inactive_masks(magnitudes: dict[str, th.Tensor], tau: float) -> dict[str, th.Tensor]:
    """Per-layer boolean masks of neurons whose normalised score is ``≤ tau``."""
    tau = check_tau(tau)
    return {name: normalized_scores(m) <= tau for name, m in magnitudes.items()}


class ActivityRecorder:
    """
    Forward hooks that average ``|h|`` (activations) and ``|∂L/∂z|`` (pre-activation gradients) per
    neuron while ``armed``, plus the norms of φ's and the extractor's outputs.

    Only grad-enabled forward passes are recorded when ``training_only`` is set, so that inside
    SB3's ``learn()`` the statistics come from the algorithm's own training batch and backward
    pass (the TD / quantile / PPO loss), never from rollout or target-network forwards.

    :param extractor: The online network's extractor
    :param layers: Its neuron layers (:func:`~sb3_gap.diagnostics.layers.neuron_layers`)
    :param activations: Record ``E|h|``
    :param gradients: Record ``E|∂L/∂z|`` through tensor hooks on ``z``
    :param training_only: Ignore forward passes run under ``torch.no_grad()``
    """

    def __init__(
        self,
        extractor: ConvExtractor,
        layers: Sequence[NeuronLayer],
        activations: bool = True,
        gradients: bool = True,
        training_only: bool = True,
    ) -> None:
        self.extractor = extractor
        self.layers = list(layers)
        self.activations = activations
        self.gradients = gradients
        self.training_only = training_only
        self.armed = False
        self._handles: list[th.utils.hooks.RemovableHandle] = []
        self.clear()

    def clear(self) -> None:
        self._act: dict[str, list[th.Tensor]] = {}
        self._grad: dict[str, list[th.Tensor]] = {}
        self._norms: dict[str, list[float]] = {"encoder": [], "bottleneck": []}

    def _active(self) -> bool:
        return self.armed and (th.is_grad_enabled() or not self.training_only)

    def attach(self) -> ActivityRecorder:
        if self._handles:
            return self
        for layer in self.layers:
            if self.activations:
                self._handles.append(layer.probe.register_forward_hook(self._probe_hook(layer)))
            if self.gradients:
                self._handles.append(layer.module.register_forward_hook(self._grad_hook(layer)))
        self._handles.append(self.extractor.encoder.register_forward_hook(self._norm_hook("encoder")))
        self._handles.append(self.extractor.register_forward_hook(self._norm_hook("bottleneck")))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> ActivityRecorder:
        self.armed = True
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        self.detach()

    def _probe_hook(self, layer: NeuronLayer) -> Callable:
        def hook(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
            if self._active():
                self._act.setdefault(layer.name, []).append(layer.reduce(layer.activation(out)))

        return hook

    def _grad_hook(self, layer: NeuronLayer) -> Callable:
        def hook(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
            if self._active() and out.requires_grad:
                out.register_hook(lambda g: self._grad.setdefault(layer.name, []).append(layer.reduce(g)))

        return hook

    def _norm_hook(self, key: str) -> Callable:
        def hook(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
            if self._active():
                self._norms[key].append(float(out.detach().flatten(1).float().norm(dim=1).mean()))

        return hook

    @staticmethod
    def _mean(d: dict[str, list[th.Tensor]]) -> dict[str, th.Tensor]:
        return {k: th.stack(v).mean(0) for k, v in d.items() if v}

    def activation_magnitudes(self) -> dict[str, th.Tensor]:
        """``E|h_i|`` per layer, averaged over every recorded forward pass."""
        return self._mean(self._act)

    def gradient_magnitudes(self) -> dict[str, th.Tensor]:
        """``E|∂L/∂z_i|`` per layer, averaged over every recorded backward pass."""
        return self._mean(self._grad)

    def feature_norms(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self._norms.items() if v}


# --------------------------------------------------------------------------------------------
# The network's decision: what Grad-CAM and the default GraMa surrogate differentiate
# --------------------------------------------------------------------------------------------


def _policy(model_or_policy: object) -> nn.Module | None:
    policy = getattr(model_or_policy, "policy", model_or_policy)
    return None if isinstance(policy, ConvExtractor) or not isinstance(policy, nn.Module) else policy


def decision_values(policy: Any, obs: th.Tensor) -> th.Tensor:
    """
    Per-action scores whose argmax is the greedy action, shape ``(B, n_actions)``:
    Q-values (DQN), mean over quantiles (QR-DQN), expected Q over atoms with the noisy layers'
    mean weights (Rainbow, through its ``q_net.q_values``), action logits (PPO/A2C with a
    ``Categorical``).

    :param policy: An SB3 policy
    :param obs: Observations as a tensor on the policy's device (raw: the policy preprocesses)
    """
    q_net = getattr(policy, "q_net", None)
    if hasattr(q_net, "q_values"):  # Rainbow: E_z[Z(s, a)] = Σ_i z_i p_i(s, a), without exploration noise
        return q_net.q_values(obs, noise=False)  # type: ignore[union-attr]
    if hasattr(policy, "quantile_net"):  # QR-DQN: Q(s, a) = mean_j θ_j(s, a)
        return policy.quantile_net(obs).mean(dim=1)
    if hasattr(policy, "q_net"):  # DQN
        return policy.q_net(obs)
    if hasattr(policy, "get_distribution"):  # actor-critic: action logits
        dist = policy.get_distribution(obs).distribution
        if isinstance(dist, th.distributions.Categorical):
            return dist.logits
        raise Refused(f"decision_values needs a discrete (Categorical) action distribution, got {type(dist).__name__}")
    raise Refused(f"Unsupported policy {type(policy).__name__}: expected a DQN, QR-DQN, Rainbow or actor-critic policy")


def greedy_value_loss(outputs: th.Tensor) -> th.Tensor:
    """Default GraMa surrogate loss: ``Σ_b max_a d(s_b, a)``, the greedy decision value summed over the batch."""
    return outputs.max(dim=-1).values.sum()


def prepare_input(model_or_policy: object, obs: np.ndarray | th.Tensor) -> tuple[ConvExtractor, nn.Module | None, th.Tensor]:
    """
    ``(extractor, policy or None, observations as a tensor on the extractor's device)``.

    :param model_or_policy: An SB3 model, its policy, or a bare :class:`~sb3_gap.ConvExtractor`
    :param obs: A batch of observations; numpy arrays go through the policy's ``obs_to_tensor``
    """
    extractor = find_extractor(model_or_policy)
    policy: Any = _policy(model_or_policy)  # an SB3 policy (nn.Module's attribute typing cannot see obs_to_tensor)
    device = next(extractor.parameters()).device
    if policy is not None and hasattr(policy, "obs_to_tensor") and not isinstance(obs, th.Tensor):
        obs_t, _ = policy.obs_to_tensor(obs)
    else:
        obs_t = th.as_tensor(obs, device=device)
    return extractor, policy, obs_t


def _forward(extractor: ConvExtractor, policy: nn.Module | None, obs: th.Tensor) -> th.Tensor:
    if policy is None:  # a bare extractor: inputs are taken as already preprocessed
        return extractor(obs.float())
    return decision_values(policy, obs)


def neuron_magnitudes(
    model: object,
    obs: np.ndarray | th.Tensor,
    gradients: bool = True,
    loss_fn: Callable[[th.Tensor], th.Tensor] | None = None,
) -> tuple[list[NeuronLayer], dict[str, th.Tensor], dict[str, th.Tensor], dict[str, float]]:
    """
    One forward (and backward) pass recording per-neuron magnitudes.

    :param model: An SB3 model, its policy, or a bare :class:`~sb3_gap.ConvExtractor`
    :param obs: A batch of observations (raw, as the env returns them; for a bare extractor, already
        preprocessed floats)
    :param gradients: Also compute GraMa's ``E|∂L/∂z|``
    :param loss_fn: Maps the network's outputs (decision values for a model/policy, features for a
        bare extractor) to the scalar loss; default :func:`greedy_value_loss`
    :return: ``(layers, E|h| per layer, E|∂L/∂z| per layer, feature norms)``; parameters' ``.grad``
        are left untouched
    """
    extractor, policy, obs_t = prepare_input(model, obs)
    layers = neuron_layers(extractor)
    rec = ActivityRecorder(extractor, layers, gradients=False, training_only=False)
    outputs: dict[str, th.Tensor] = {}

    def keep(layer: NeuronLayer) -> Callable:
        def hook(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
            outputs[layer.name] = out

        return hook

    handles = [layer.module.register_forward_hook(keep(layer)) for layer in layers] if gradients else []
    was_training = extractor.training
    extractor.train(False)
    try:
        with rec, th.set_grad_enabled(gradients):
            out = _forward(extractor, policy, obs_t)
            grads: dict[str, th.Tensor] = {}
            if gradients:
                loss = (loss_fn or greedy_value_loss)(out)
                names = [n for n, z in outputs.items() if z.requires_grad]
                # autograd.grad w.r.t. the pre-activations: no parameter .grad is touched.
                gs = th.autograd.grad(loss, [outputs[n] for n in names], allow_unused=True)
                for name, g in zip(names, gs):
                    layer = next(lay for lay in layers if lay.name == name)
                    grads[name] = layer.reduce(g) if g is not None else layer.reduce(th.zeros_like(outputs[name]))
    finally:
        for h in handles:
            h.remove()
        extractor.train(was_training)
    return layers, rec.activation_magnitudes(), grads, rec.feature_norms()


def dormant_fractions(model: object, obs: np.ndarray | th.Tensor, tau: float = DEFAULT_TAU) -> ActivityReport:
    """
    τ-dormant neurons (Sokar et al. 2023) per layer and per module φ / bottleneck / ψ.

    :param model: An SB3 model, its policy, or a :class:`~sb3_gap.ConvExtractor`
    :param obs: A batch of observations
    :param tau: Threshold τ ≥ 0 (0.001 in the paper's appendix; 0 counts exactly-silent neurons)
    """
    tau = check_tau(tau)
    layers, act, _, _ = neuron_magnitudes(model, obs, gradients=False)
    return activity_report("dormant", act, layers, tau)


def grama_fractions(
    model: object,
    obs: np.ndarray | th.Tensor,
    tau: float = DEFAULT_TAU,
    loss_fn: Callable[[th.Tensor], th.Tensor] | None = None,
) -> ActivityReport:
    """
    GraMa-inactive neurons (Liu et al. 2025): normalised ``E|∂L/∂z_i| ≤ τ``.

    Outside training there is no TD loss, so the default loss is the surrogate
    :func:`greedy_value_loss` (the greedy action's value); the callbacks instead capture the
    algorithm's own loss gradients during ``learn()``.

    :param model: An SB3 model, its policy, or a :class:`~sb3_gap.ConvExtractor`
    :param obs: A batch of observations
    :param tau: Threshold τ ≥ 0
    :param loss_fn: Outputs → scalar loss (see :func:`neuron_magnitudes`)
    """
    tau = check_tau(tau)
    layers, _, grads, _ = neuron_magnitudes(model, obs, gradients=True, loss_fn=loss_fn)
    return activity_report("grama", grads, layers, tau)


def feature_norms(model: object, obs: np.ndarray | th.Tensor) -> dict[str, float]:
    """
    Mean per-sample L2 norm of φ's output (``"encoder"``) and of the extractor's output after the
    bottleneck and ψ (``"bottleneck"``), as in Fig. 7 of Sokar & Castro (2025).
    """
    _, _, _, norms = neuron_magnitudes(model, obs, gradients=False)
    return norms


def effective_connection_params(model: object) -> int:
    """Non-zero weights of the φ→ψ connection (:func:`sb3_gap.parameter_report`)."""
    return parameter_report(model).effective_connection
