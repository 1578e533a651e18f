"""``parameter_report``: where the parameters of a pixel network live (φ, connection, ψ)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from sb3_gap.checks import Refused
from sb3_gap.extractor import ConvExtractor
from sb3_gap.sparse import MASK


@dataclass(frozen=True)
class ParameterReport:
    """
    Parameter counts of a :class:`~sb3_gap.ConvExtractor`.

    :param phi: Encoder φ parameters
    :param connection: Weights connecting φ's output to ψ's first layer (Fig. 1 of Sokar & Castro 2025)
    :param psi: Remaining parameters of the bottleneck and ψ (biases, router, deeper layers, LayerNorm)
    :param total: ``phi + connection + psi``
    :param effective_connection: Non-zero connection weights (differs from ``connection`` for ``sparse``)
    :param effective_total: ``total`` with the connection counted by its non-zero weights
    :param effective_psi: ψ's parameters, connection included, with masked weights left out: the non-zero
        connection weights plus ``psi`` less the masked entries of ψ's other sparse layers (``sparse_scope="all"``).
        The x axis of Fig. 5 (right) of Sokar & Castro (2025)
    """

    phi: int
    connection: int
    psi: int
    total: int
    effective_connection: int
    effective_total: int
    effective_psi: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def find_extractor(obj: nn.Module | object) -> ConvExtractor:
    """The online network's :class:`ConvExtractor` inside a model, policy or extractor."""
    if isinstance(obj, ConvExtractor):
        return obj
    module = getattr(obj, "policy", obj)
    if isinstance(module, nn.Module):
        # Module order puts the online network before any target copy (q_net before q_net_target).
        for sub in module.modules():
            if isinstance(sub, ConvExtractor):
                return sub
    raise Refused(f"No sb3_gap ConvExtractor found in {type(obj).__name__}; build the model with sb3_gap.policy_kwargs(...)")


def parameter_report(model_or_extractor: nn.Module | object) -> ParameterReport:
    """
    Count parameters of φ, of the φ→ψ connection and of ψ.

    For Impala ×4 on 84×84 inputs the connection is 11·11·32·2048 weights with ``flatten``
    and 32·2048 with ``gap``, as in Fig. 1 of the paper.

    :param model_or_extractor: An SB3 model, its policy, or a ``ConvExtractor``
    """
    ext = find_extractor(model_or_extractor)
    phi = sum(p.numel() for p in ext.encoder.parameters())
    weights = ext.bottleneck.connection_weights()
    connection = sum(w.numel() for w in weights)
    effective_connection = sum(int(w.count_nonzero()) for w in weights)
    psi = sum(p.numel() for p in ext.bottleneck.parameters()) - connection
    total = phi + connection + psi
    # Masked entries of ψ's other layers (sparse training of φ and ψ; the connection is counted above).
    conn = getattr(ext.bottleneck, "connection", None)
    masked = sum(int((getattr(m, MASK) == 0).sum()) for m in ext.bottleneck.modules() if hasattr(m, MASK) and m is not conn)
    effective_psi = effective_connection + psi - masked
    return ParameterReport(phi, connection, psi, total, effective_connection, total - connection + effective_connection, effective_psi)
