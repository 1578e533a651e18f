"""Which units of a :class:`~sb3_gap.ConvExtractor` are *neurons*, where their activation is read,
and which weights are theirs (incoming) or their consumers' (outgoing).

A *neuron layer* is a parametrized layer (``Conv2d``, ``Linear``, the SoftMoE ``ExpertLinear``) of
the online network's extractor; its neurons are the output channels (conv), output units (dense) or
(expert, unit) pairs (SoftMoE). For each layer we record

- ``z``: the layer's output, the *pre-activation* (GraMa's gradients are taken w.r.t. ``z``);
- ``h``: the *activation* used by the τ-dormant score: the output of the ``ReLU`` that directly
  follows the layer (through an optional ``LayerNorm``), the functional ReLU inside an Impala
  residual block for ``conv0``, or ``z`` itself for layers that feed a residual stream, a max-pool
  or a mixture (Impala stack convs, residual ``conv1``, the last expert layer of SoftMoE);
- masks selecting each neuron's *incoming* parameters (weight rows/filters, bias, per-neuron
  LayerNorm affine entries) and *outgoing* weights (input columns/channels of every consumer).

ReDo/ReGraMa only reset *resettable* layers: hidden ReLU neurons whose every consumer is a weight
matrix we can address. Residual-stream channels cannot be silenced (the identity skip carries them),
so Impala's stack convs and residual ``conv1`` are measured but never reset, and neither are
SoftMoE's expert output layers (they are the experts' outputs, mixed by the combine weights).

The structure is walked by hand (rather than traced with ``torch.fx``) because the three module
kinds here — ``nn.Sequential`` chains, Impala ``ResidualBlock`` and the bottlenecks — are few and
fixed, and a hand walk gives readable layer names and exact masks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch as th
from torch import nn

from sb3_gap.bottlenecks import BOTTLENECKS, Bottleneck, DenseBottleneck, ExpertLinear, MultiSkipResidual
from sb3_gap.checks import Refused
from sb3_gap.encoders import ResidualBlock
from sb3_gap.extractor import ConvExtractor
from sb3_gap.rainbow.policies import NoisyLinear
from sb3_gap.sparse import MASK

#: The module groups of Sokar & Castro (2025): encoder φ, the φ→ψ connection (ψ's first layer),
#: and the rest of ψ.
GROUPS = ("phi", "bottleneck", "psi")

# NoisyLinear: ψ's dense layers with Rainbow's noisy=True (μ and σ are both the layer's weights).
NEURON_LAYER_TYPES = (nn.Conv2d, nn.Linear, ExpertLinear, NoisyLinear)

# A mask function maps a boolean neuron mask (one entry per neuron of the layer) to a boolean
# tensor that broadcasts to one parameter's shape.
MaskFn = Callable[[th.Tensor], th.Tensor]


@dataclass
class ParamSlice:
    """
    The entries of ``param`` that belong to a set of neurons.

    :param param: A parameter of the online network
    :param mask_fn: Neuron mask → boolean mask broadcastable to ``param``
    :param init: For incoming slices, where new values come from: the name of the parameter in its
        layer (drawn from the layer's own initializer), ``"ones"`` or ``"zeros"`` (LayerNorm affine)
    """

    param: nn.Parameter
    mask_fn: MaskFn
    init: str | None = None

    def mask(self, neurons: th.Tensor) -> th.Tensor:
        return self.mask_fn(neurons.to(self.param.device)).expand_as(self.param)


@dataclass
class NeuronLayer:
    """
    One layer of neurons of a :class:`~sb3_gap.ConvExtractor`.

    :param name: Qualified module name inside the extractor (e.g. ``"bottleneck.connection"``)
    :param group: ``"phi"``, ``"bottleneck"`` or ``"psi"``
    :param module: The parametrized layer; its output is the pre-activation ``z``
    :param probe: Module whose output is the activation ``h`` (after ``relu_on_probe``)
    :param relu_on_probe: Apply a ReLU to the probe output (the architecture applies it functionally)
    :param neuron_dims: Dimensions of ``z``/``h`` that index neurons (all others are averaged)
    :param incoming: Parameter slices re-initialised by a reset
    :param outgoing: Consumer weight slices zeroed/shrunk by a reset
    :param resettable: Whether ReDo/ReGraMa may reset this layer (see module docstring)
    """

    name: str
    group: str
    module: nn.Module
    probe: nn.Module
    relu_on_probe: bool
    neuron_dims: tuple[int, ...]
    incoming: list[ParamSlice] = field(default_factory=list)
    outgoing: list[ParamSlice] = field(default_factory=list)
    resettable: bool = False

    def reduce(self, t: th.Tensor) -> th.Tensor:
        """``E|t|`` per neuron: the mean of ``|t|`` over every dimension but the neuron ones."""
        dims = [d for d in range(t.dim()) if d not in self.neuron_dims]
        return t.detach().abs().float().mean(dim=dims) if dims else t.detach().abs().float()

    def activation(self, probe_out: th.Tensor) -> th.Tensor:
        return th.relu(probe_out) if self.relu_on_probe else probe_out


# --------------------------------------------------------------------------------------------
# Masks and fresh values per layer type
# --------------------------------------------------------------------------------------------


def _neuron_dims(m: nn.Module) -> tuple[int, ...]:
    if isinstance(m, nn.Conv2d):
        return (1,)  # (B, C, H, W)
    if isinstance(m, ExpertLinear):
        return (1, 3)  # (B, n_experts, slots, units)
    return (1,)  # nn.Linear on (B, D)


def fresh_values(m: nn.Module) -> dict[str, th.Tensor]:
    """New values for every parameter of ``m`` drawn from the layer's own initializer."""
    with th.no_grad():
        new = copy.deepcopy(m)
        if isinstance(new, ExpertLinear):
            # Same init as ExpertLinear.__init__: nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) per expert.
            bound = 1.0 / math.sqrt(new.weight.shape[1])
            nn.init.uniform_(new.weight, -bound, bound)
            nn.init.uniform_(new.bias, -bound, bound)
        else:
            new.reset_parameters()
        if hasattr(new, MASK):
            new.weight.mul_(getattr(new, MASK))  # keep the sparsity pattern (sb3_gap.sparse)
    return {k: v.detach() for k, v in new.named_parameters(recurse=False)}


def _incoming(m: nn.Module, norm: nn.LayerNorm | None) -> list[ParamSlice]:
    slices: list[ParamSlice] = []
    if isinstance(m, nn.Conv2d):
        slices.append(ParamSlice(m.weight, lambda f: f.view(-1, 1, 1, 1), "weight"))
    elif isinstance(m, ExpertLinear):
        slices.append(ParamSlice(m.weight, lambda f: f[:, None, :], "weight"))  # (n, in, out)
        slices.append(ParamSlice(m.bias, lambda f: f[:, None, :], "bias"))  # (n, 1, out)
        return slices  # a LayerNorm after experts is shared across experts: left alone
    elif isinstance(m, NoisyLinear):  # rows of μ_w and σ_w, entries of μ_b and σ_b
        for name in ("weight_mu", "weight_sigma"):
            slices.append(ParamSlice(getattr(m, name), lambda f: f.view(-1, 1), name))
        for name in ("bias_mu", "bias_sigma"):
            slices.append(ParamSlice(getattr(m, name), lambda f: f, name))
    else:
        slices.append(ParamSlice(m.weight, lambda f: f.view(-1, 1), "weight"))
    if not isinstance(m, NoisyLinear) and getattr(m, "bias", None) is not None:
        slices.append(ParamSlice(m.bias, lambda f: f, "bias"))
    if norm is not None and norm.elementwise_affine:
        slices.append(ParamSlice(norm.weight, lambda f: f, "ones"))
        if norm.bias is not None:
            slices.append(ParamSlice(norm.bias, lambda f: f, "zeros"))
    return slices


def _into(consumer: nn.Module) -> list[ParamSlice]:
    """Outgoing weights: the consumer's input slice fed by each neuron of the previous layer."""
    if isinstance(consumer, nn.Conv2d):
        return [ParamSlice(consumer.weight, lambda f: f.view(1, -1, 1, 1))]
    if isinstance(consumer, ExpertLinear):
        return [ParamSlice(consumer.weight, lambda f: f[:, :, None])]  # neurons (n, units) → (n, in, out)
    if isinstance(consumer, nn.Linear):
        return [ParamSlice(consumer.weight, lambda f: f.view(1, -1))]
    if isinstance(consumer, NoisyLinear):
        return [ParamSlice(consumer.weight_mu, lambda f: f.view(1, -1)), ParamSlice(consumer.weight_sigma, lambda f: f.view(1, -1))]
    raise TypeError(type(consumer).__name__)


def _into_bottleneck(neck: nn.Module, in_shape: tuple[int, int, int]) -> list[ParamSlice]:
    """Outgoing weights of φ's last channels: the weights that read channel c, as the bottleneck declares them
    (:meth:`sb3_gap.bottlenecks.Bottleneck.channel_weights`)."""
    declared = getattr(type(neck), "channel_weights", None)
    if declared is None or declared is Bottleneck.channel_weights:
        raise Refused(
            f"Bottleneck {type(neck).__name__} declares no channel_weights (the weights that read channel c of φ), so "
            f"φ's last neurons cannot be measured; registered bottlenecks: {sorted(BOTTLENECKS)}"
        )
    return [ParamSlice(weight, mask_fn) for weight, mask_fn in neck.channel_weights(in_shape)]


# --------------------------------------------------------------------------------------------
# Walking the extractor
# --------------------------------------------------------------------------------------------


def _walk_chain(
    items: list[tuple[str, nn.Module]],
    group_of: Callable[[str], str],
    exit_slices: list[ParamSlice] | None,
) -> list[NeuronLayer]:
    """
    Neuron layers of a chain of modules applied in order (an ``nn.Sequential`` unrolled).

    :param exit_slices: Outgoing slices for a layer whose ReLU ends the chain (``None``: unknown)
    """
    layers: list[NeuronLayer] = []
    for k, (name, m) in enumerate(items):
        if isinstance(m, ResidualBlock):
            layers += _residual_block(name, m, group_of(name))
            continue
        if isinstance(m, MultiSkipResidual):
            layers += _multi_skip_blocks(name, m, group_of(name))
            continue
        if not isinstance(m, NEURON_LAYER_TYPES):
            continue
        probe: nn.Module = m
        j, norm = k + 1, None
        if j < len(items) and isinstance(items[j][1], nn.LayerNorm):
            norm, j = items[j][1], j + 1
        relu_follows = j < len(items) and isinstance(items[j][1], nn.ReLU)
        outgoing: list[ParamSlice] | None = None
        if relu_follows:
            probe, j = items[j][1], j + 1
            if j == len(items):
                outgoing = exit_slices
            elif isinstance(items[j][1], NEURON_LAYER_TYPES):
                outgoing = _into(items[j][1])
        layer = NeuronLayer(
            name=name,
            group=group_of(name),
            module=m,
            probe=probe,
            relu_on_probe=False,
            neuron_dims=_neuron_dims(m),
            incoming=_incoming(m, norm if relu_follows else None),
            outgoing=outgoing or [],
            resettable=outgoing is not None,
        )
        layers.append(layer)
    return layers


def _residual_block(name: str, block: ResidualBlock, group: str) -> list[NeuronLayer]:
    """Impala block ``x + conv1(relu(conv0(relu(x))))``: conv0's neurons are ReLU units feeding
    only conv1 (resettable); conv1 writes into the residual stream (measured on ``|z|``, not reset)."""
    conv0 = NeuronLayer(
        name=f"{name}.conv0",
        group=group,
        module=block.conv0,
        probe=block.conv0,
        relu_on_probe=True,
        neuron_dims=(1,),
        incoming=_incoming(block.conv0, None),
        outgoing=_into(block.conv1),
        resettable=True,
    )
    conv1 = NeuronLayer(f"{name}.conv1", group, block.conv1, block.conv1, False, (1,))
    return [conv0, conv1]


def _multi_skip_blocks(name: str, stream: MultiSkipResidual, group: str) -> list[NeuronLayer]:
    """ψ's multi-skip residual blocks (``psi="residual"``), ``h + LN₁(W₁ ReLU(LN₀(W₀ ReLU(h)))) + h₀``: as in an
    Impala block, ``linear0``'s units are ReLU neurons feeding only ``linear1`` (resettable); ``linear1`` writes
    into the residual stream (measured on ``|z|`` after its LayerNorm, never reset)."""
    layers = []
    for i, block in enumerate(stream.blocks):
        ln0 = block.ln0 if isinstance(block.ln0, nn.LayerNorm) else None
        layers.append(
            NeuronLayer(
                name=f"{name}.blocks.{i}.linear0",
                group=group,
                module=block.linear0,
                probe=ln0 or block.linear0,
                relu_on_probe=True,
                neuron_dims=_neuron_dims(block.linear0),
                incoming=_incoming(block.linear0, ln0),
                outgoing=_into(block.linear1),
                resettable=True,
            )
        )
        probe = block.ln1 if isinstance(block.ln1, nn.LayerNorm) else block.linear1
        layers.append(NeuronLayer(f"{name}.blocks.{i}.linear1", group, block.linear1, probe, False, _neuron_dims(block.linear1)))
    return layers


def neuron_layers(extractor: ConvExtractor, head_consumers: list[nn.Module] | None = None) -> list[NeuronLayer]:
    """
    Every neuron layer of ``extractor`` in forward order, grouped into φ / bottleneck / ψ.

    :param extractor: The online network's extractor
    :param head_consumers: Modules of the algorithm's head that read the extractor's features
        (see :func:`find_head_consumers`); without them ψ's last layer is not resettable
    :return: The layers, each with its probe, masks and ``resettable`` flag
    """
    enc_items = [(f"encoder.{n}", m) for n, m in _chain_items(extractor.encoder)]
    neck = extractor.bottleneck
    neck_items = [("bottleneck.connection", neck.connection)] if hasattr(neck, "connection") else []
    neck_items += [(f"bottleneck.psi.{n}", m) for n, m in _chain_items(getattr(neck, "psi", nn.Sequential()))]

    head_slices: list[ParamSlice] | None = None
    if head_consumers is not None and isinstance(neck, DenseBottleneck):
        d = extractor.features_dim
        head_slices = [
            ParamSlice(p, lambda f: f.view(1, -1))
            for mod in head_consumers
            for p in mod.parameters(recurse=False)
            if p.dim() == 2 and p.shape[1] == d
        ] or None

    def encoder_group(_: str) -> str:
        return "phi"

    def neck_group(n: str) -> str:
        return "bottleneck" if n == "bottleneck.connection" else "psi"

    layers = _walk_chain(enc_items, encoder_group, _into_bottleneck(neck, extractor.encoder_out_shape))
    layers += _walk_chain(neck_items, neck_group, head_slices)
    return layers


def _chain_items(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """A module as a chain: an ``nn.Sequential`` (possibly wrapped as ``.net``) unrolled, else itself."""
    if isinstance(module, nn.Sequential):
        return [(n, m) for n, m in module.named_children()]
    net = getattr(module, "net", None)
    if isinstance(net, nn.Sequential):
        return [(f"net.{n}", m) for n, m in net.named_children()]
    # Unknown structure: every parametrized layer is measured on |z| and never reset.
    return [(n, m) for n, m in module.named_modules() if isinstance(m, NEURON_LAYER_TYPES)]


def find_head_consumers(policy: nn.Module, extractor: ConvExtractor) -> list[nn.Module]:
    """
    Leaf modules of ``policy`` that read ``extractor``'s output tensor directly (DQN's output
    layer, QR-DQN's quantile layer, PPO's ``action_net``/``value_net``, dueling/noisy heads).

    Found by running ``policy`` once on a sampled observation with forward pre-hooks and matching
    the features tensor by identity, so it works for any head whose first layers take the features
    as they are.
    """
    features: list[th.Tensor] = []
    found: list[nn.Module] = []
    ext_modules = set(extractor.modules())

    def grab(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
        features.append(out)

    def check(m: nn.Module, inp: tuple) -> None:
        if features and inp and inp[0] is features[-1] and m not in found:
            found.append(m)

    handles = [extractor.register_forward_hook(grab)]
    for m in policy.modules():
        if m not in ext_modules and not list(m.children()) and any(p.dim() == 2 for p in m.parameters(recurse=False)):
            handles.append(m.register_forward_pre_hook(check))
    try:
        # A blank observation and a deterministic forward: no RNG (torch's or the space's) is
        # consumed, so attaching a callback does not change the training run.
        space = policy.observation_space
        obs = th.zeros((1, *tuple(space.shape)), dtype=th.as_tensor(np.zeros(1, space.dtype)).dtype, device=next(policy.parameters()).device)
        with th.no_grad():
            try:
                policy(obs, deterministic=True)
            except TypeError:
                policy(obs)
    finally:
        for h in handles:
            h.remove()
    return found
