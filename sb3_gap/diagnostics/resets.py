"""Neuron resets: ReDo (Sokar et al. 2023) and ReGraMa (Liu et al. 2025).

For every flagged neuron of a resettable layer (:mod:`sb3_gap.diagnostics.layers`):

1. its *incoming* parameters (weight row / conv filter, bias, per-neuron LayerNorm affine) are drawn
   again from the layer's own initializer (PyTorch's default init of that layer type);
2. its *outgoing* weights (the consumers' input columns / channels) are multiplied by
   ``outgoing_scale``: ``0`` for ReDo, so the reset neuron starts with no effect on the output;
3. the optimizer's per-entry state for exactly those entries (Adam's ``exp_avg`` and
   ``exp_avg_sq``, and any other state tensor shaped like the parameter) is set to zero.

Nothing else is touched: other neurons, the output layer's own neurons, the target network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch as th

from sb3_gap.checks import Refused
from sb3_gap.diagnostics.layers import NeuronLayer, fresh_values


def check_outgoing_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or not 0.0 <= scale <= 1.0:
        raise Refused(f"outgoing_scale must be a number in [0, 1] (0 = ReDo's zeroing), got {scale!r}")
    return float(scale)


@dataclass(frozen=True)
class ResetResult:
    """
    :param neurons: Neurons reset per layer name
    :param entries: Parameter entries changed (incoming + outgoing)
    """

    neurons: dict[str, int]
    entries: int

    @property
    def total(self) -> int:
        return sum(self.neurons.values())


def _param_mask(masks: dict[int, tuple[th.Tensor, th.Tensor]], param: th.Tensor, mask: th.Tensor) -> None:
    key = id(param)
    masks[key] = (param, masks[key][1] | mask if key in masks else mask)


@th.no_grad()
def reset_neurons(
    layers: list[NeuronLayer],
    flagged: dict[str, th.Tensor],
    optimizer: th.optim.Optimizer | None,
    outgoing_scale: float = 0.0,
) -> ResetResult:
    """
    Re-initialise the flagged neurons of resettable layers.

    :param layers: Neuron layers of the online network
    :param flagged: Boolean neuron mask per layer name (shape: the layer's neurons, e.g. ``(C,)`` or ``(n_experts, units)``);
        layers that are missing or not ``resettable`` are skipped
    :param optimizer: The optimizer whose per-entry state is zeroed for every changed entry
    :param outgoing_scale: Factor on the outgoing weights of reset neurons (0 = ReDo)
    :return: How many neurons and entries changed
    """
    outgoing_scale = check_outgoing_scale(outgoing_scale)
    changed: dict[int, tuple[th.Tensor, th.Tensor]] = {}
    counts: dict[str, int] = {}
    selected = []
    for layer in layers:
        mask = flagged.get(layer.name)
        if mask is not None and layer.resettable and bool(mask.any()):
            selected.append((layer, mask))
            counts[layer.name] = int(mask.sum())
    # Incoming first, outgoing second: a weight linking two reset neurons ends up scaled
    # (zero for ReDo), so every reset neuron starts with no effect on the layers after it.
    for layer, mask in selected:
        fresh = fresh_values(layer.module) if any(s.init not in (None, "ones", "zeros") for s in layer.incoming) else {}
        for s in layer.incoming:
            m = s.mask(mask)
            if s.init == "ones":
                new = th.ones_like(s.param)
            elif s.init == "zeros":
                new = th.zeros_like(s.param)
            else:
                new = fresh[s.init].to(s.param.device, s.param.dtype)  # type: ignore[index]
            s.param.copy_(th.where(m, new, s.param))
            _param_mask(changed, s.param, m)
    for layer, mask in selected:
        for s in layer.outgoing:
            m = s.mask(mask)
            s.param.copy_(th.where(m, s.param * outgoing_scale, s.param))
            _param_mask(changed, s.param, m)

    if optimizer is not None:
        for param, m in changed.values():
            state = optimizer.state.get(param, {})
            for _key, value in state.items():
                # exp_avg, exp_avg_sq (Adam), square_avg (RMSprop), momentum_buffer (SGD), ...;
                # the scalar "step" is shared by the whole tensor and is left alone.
                if isinstance(value, th.Tensor) and value.shape == param.shape:
                    value.masked_fill_(m, 0.0)
    return ResetResult(counts, sum(int(m.sum()) for _, m in changed.values()))
