"""Weight initialisation: ``init="torch"`` (PyTorch's layer defaults, the default) or ``init="dopamine"``
(google/dopamine's initializers, network by network), for :class:`~sb3_gap.extractor.ConvExtractor` (φ, the
connection, ψ) and Rainbow's head (``head_init``).

Dopamine 4.1.2 (flax) chooses a kernel initializer per network; every bias is flax's default, zeros:

==============================  =====================================================  =====================================
Dopamine network                convolutions                                           dense layers
==============================  =====================================================  =====================================
``RainbowNetwork``              variance scaling (1/√3, fan-in, uniform)               the same
``Stack`` / ``ImpalaEncoder``   a stack's first conv: Xavier uniform; residual-block   Xavier uniform (``ImpalaDQNNetwork``)
                                convs: flax's default, LeCun normal (truncated)
``MinatarRainbowNetwork``       Xavier uniform                                         Xavier uniform
==============================  =====================================================  =====================================

(the first two in ``dopamine/jax/networks.py``, the last in ``dopamine/labs/environments/minatar/minatar_env.py``).
Each encoder names the network it follows (``Encoder.dopamine_network``); ψ and the head use that network's
dense initializer. Hand-written because torch's ``nn.init`` has Xavier but no truncated LeCun normal with
flax's variance correction nor a scaled fan-in uniform; the formulas are jax's ``variance_scaling``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from torch import nn

from sb3_gap.checks import check_choice

#: The initialisation schemes ``ConvExtractor(init=...)`` and ``Rainbow(head_init=...)`` accept.
INITS = ("torch", "dopamine")

# jax.nn.initializers.variance_scaling: the standard deviation of a unit normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


def check_init(name: str, value: object) -> str:
    """Check an initialisation scheme name; raise a one-line ``ValueError`` naming the bad value and :data:`INITS`."""
    check_choice(name, value, INITS)
    return str(value)


@dataclass(frozen=True)
class VarianceScaling:
    """
    jax's ``variance_scaling(scale, mode, distribution)`` (what flax's ``xavier_uniform``, ``lecun_normal`` and
    Dopamine's scaled initializer are): variance ``scale / n`` with ``n`` = fan-in, or the mean of fan-in and
    fan-out (``"fan_avg"``).

    :param scale: The variance's numerator
    :param mode: ``"fan_in"`` or ``"fan_avg"``
    :param distribution: ``"uniform"`` (U(±√(3·var))) or ``"truncated_normal"`` (a normal truncated at ±2 of its
        own standard deviation, rescaled so the variance is still ``scale / n``)
    """

    scale: float
    mode: str
    distribution: str

    def variance(self, fan_in: int, fan_out: int) -> float:
        """The variance of each weight."""
        n = fan_in if self.mode == "fan_in" else (fan_in + fan_out) / 2
        return self.scale / n

    def bound(self, fan_in: int, fan_out: int) -> float:
        """The largest magnitude a weight can take."""
        var = self.variance(fan_in, fan_out)
        if self.distribution == "uniform":
            return math.sqrt(3 * var)
        return 2 * math.sqrt(var) / _TRUNCATED_STD

    @th.no_grad()
    def __call__(self, weight: th.Tensor, fan_in: int, fan_out: int) -> None:
        """Draw ``weight`` in place."""
        var = self.variance(fan_in, fan_out)
        if self.distribution == "uniform":
            bound = math.sqrt(3 * var)
            nn.init.uniform_(weight, -bound, bound)
        else:
            std = math.sqrt(var) / _TRUNCATED_STD
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


#: flax's ``xavier_uniform`` (Glorot & Bengio 2010).
XAVIER_UNIFORM = VarianceScaling(1.0, "fan_avg", "uniform")
#: flax's default kernel initializer, ``lecun_normal``.
LECUN_NORMAL = VarianceScaling(1.0, "fan_in", "truncated_normal")
#: Dopamine's ``RainbowNetwork`` initializer: ``variance_scaling(scale=1/√3, mode='fan_in', distribution='uniform')``.
DOPAMINE_SCALED_UNIFORM = VarianceScaling(1.0 / math.sqrt(3.0), "fan_in", "uniform")


@dataclass(frozen=True)
class DopamineNetworkInit:
    """
    The kernel initializers of one Dopamine network (biases are zeros).

    :param source: The Dopamine file and class it comes from
    :param conv: Convolutions (in a residual encoder: the first convolution of each stack)
    :param residual_conv: The convolutions inside residual blocks
    :param dense: Dense layers (the connection, ψ, the head)
    """

    source: str
    conv: VarianceScaling
    residual_conv: VarianceScaling
    dense: VarianceScaling


#: Dopamine's initializers by network (``Encoder.dopamine_network`` names one).
DOPAMINE_NETWORKS: dict[str, DopamineNetworkInit] = {
    # RainbowNetwork: one `initializer` for the three convs, the 512-unit layer and the output layer.
    "rainbow": DopamineNetworkInit(
        "dopamine/jax/networks.py RainbowNetwork", DOPAMINE_SCALED_UNIFORM, DOPAMINE_SCALED_UNIFORM, DOPAMINE_SCALED_UNIFORM
    ),
    # Stack: the first nn.Conv has kernel_init=xavier_uniform, the residual blocks' nn.Conv none (flax's lecun_normal);
    # ImpalaDQNNetwork's dense layers: xavier_uniform.
    "impala": DopamineNetworkInit("dopamine/jax/networks.py Stack, ImpalaDQNNetwork", XAVIER_UNIFORM, LECUN_NORMAL, XAVIER_UNIFORM),
    # MinatarRainbowNetwork: xavier_uniform for the conv and the output layer.
    "minatar": DopamineNetworkInit(
        "dopamine/labs/environments/minatar/minatar_env.py MinatarRainbowNetwork", XAVIER_UNIFORM, XAVIER_UNIFORM, XAVIER_UNIFORM
    ),
}


def fans(layer: nn.Module) -> tuple[int, int]:
    """
    ``(fan_in, fan_out)`` of a layer as jax counts them: a convolution's in/out channels times its kernel area, a
    linear layer's in/out features, one expert's in/out features for a per-expert weight ``(n, in, out)``.
    """
    if isinstance(layer, nn.Conv2d):
        area = math.prod(layer.kernel_size)
        return layer.in_channels // layer.groups * area, layer.out_channels // layer.groups * area
    shape = _weight(layer).shape
    if len(shape) == 3:  # ExpertLinear: (n, in, out)
        return int(shape[1]), int(shape[2])
    return int(shape[1]), int(shape[0])  # nn.Linear: (out, in)


def _weight(layer: nn.Module) -> th.Tensor:
    weight = layer.weight
    assert isinstance(weight, th.Tensor)  # for mypy: nn.Module attributes are typed Tensor | Module
    return weight


@th.no_grad()
def init_layer(layer: nn.Module, initializer: VarianceScaling) -> None:
    """Draw ``layer.weight`` with ``initializer`` (per expert for a ``(n, in, out)`` weight) and zero its bias."""
    fan_in, fan_out = fans(layer)
    initializer(_weight(layer), fan_in, fan_out)
    bias = getattr(layer, "bias", None)
    if isinstance(bias, th.Tensor):
        nn.init.zeros_(bias)


def init_dense_layers(module: nn.Module, initializer: VarianceScaling) -> int:
    """
    :func:`init_layer` on every plain dense layer of ``module``: ``nn.Linear`` and per-expert linear layers (a
    3-D ``weight``); noisy layers keep their own initialisation (Dopamine's ``NoisyNetwork`` has its own too).

    :return: The number of layers drawn
    """
    count = 0
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if type(layer) is nn.Linear or (isinstance(weight, nn.Parameter) and weight.dim() == 3 and hasattr(layer, "bias")):
            init_layer(layer, initializer)
            count += 1
    return count


__all__ = [
    "DOPAMINE_NETWORKS",
    "DOPAMINE_SCALED_UNIFORM",
    "INITS",
    "LECUN_NORMAL",
    "XAVIER_UNIFORM",
    "DopamineNetworkInit",
    "VarianceScaling",
    "check_init",
    "fans",
    "init_dense_layers",
    "init_layer",
]
