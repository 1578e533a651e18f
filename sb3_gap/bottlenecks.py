"""The bottleneck: how φ's feature map ``F ∈ R^{B×C×H×W}`` reaches the dense layers ψ.

Sokar & Castro (2025, Fig. 1) count the weights that *connect* φ to the first layer of ψ:

=============  ==============================  =====================================
bottleneck     ψ's first layer sees            connection weights
=============  ==============================  =====================================
``flatten``    all H·W·C activations           H·W·C·dim(ψ)   (the baseline)
``sparse``     all H·W·C, through a mask        (1 - s)·H·W·C·dim(ψ) non-zero
``gap``        C channel means (Eq. 1)          C·dim(ψ)
``gmp``        C channel maxima (App. B.1)      C·dim(ψ)
``tokenize``   H·W tokens of size C, shared ψ   C·dim(ψ)   (SoftMoE-1)
``softmoe``    n·p slots of size C, n experts   n·C·dim(ψ)
=============  ==============================  =====================================

Every bottleneck owns ψ (first layer = ``connection``, then ``psi_depth`` more layers of the
same width, optional LayerNorm, ReLU) and exposes ``features_dim`` and
``connection_weights()`` for :func:`sb3_gap.parameter_report`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch as th
from torch import nn

from sb3_gap.sparse import MASK, SparseConfig, SparseTrainer


def _dense_tail(width: int, psi_depth: int, layer_norm: bool) -> nn.Sequential:
    """What follows ψ's first linear layer: ``[LN] ReLU (Linear [LN] ReLU) × psi_depth``."""
    layers: list[nn.Module] = []
    for i in range(psi_depth + 1):
        if i > 0:
            layers.append(nn.Linear(width, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DenseBottleneck(nn.Module):
    """
    ``ψ(pool(F))``: reduce the feature map to a vector, then a dense ψ.
    Subclasses only choose the reduction (:meth:`pool`) and its size (:meth:`pooled_dim`).

    :param in_shape: φ's output shape ``(C, H, W)``
    :param width: Width dim(ψ) of every dense layer of ψ
    :param psi_depth: Extra hidden layers of ψ after the first
    :param layer_norm: Apply LayerNorm before each ReLU of ψ
    """

    def __init__(self, in_shape: tuple[int, int, int], width: int, psi_depth: int = 0, layer_norm: bool = False) -> None:
        super().__init__()
        self.connection = self._make_connection(self.pooled_dim(*in_shape), width)
        self.psi = _dense_tail(width, psi_depth, layer_norm)
        self.features_dim = width

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        raise NotImplementedError

    def pool(self, f: th.Tensor) -> th.Tensor:
        raise NotImplementedError

    def _make_connection(self, in_dim: int, width: int) -> nn.Linear:
        return nn.Linear(in_dim, width)

    def connection_weights(self) -> list[th.Tensor]:
        """The weights connecting φ to ψ as they act in the forward pass."""
        return [self.connection.weight]

    def forward(self, f: th.Tensor) -> th.Tensor:
        return self.psi(self.connection(self.pool(f)))


class Flatten(DenseBottleneck):
    """The baseline: every activation of φ feeds every unit of ψ's first layer."""

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        return c * h * w

    def pool(self, f: th.Tensor) -> th.Tensor:
        return f.flatten(1)


class GAP(DenseBottleneck):
    """Global average pooling, Eq. 1 of Sokar & Castro (2025): g^c = 1/(H·W) Σ_ij F^c_ij."""

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        return c

    def pool(self, f: th.Tensor) -> th.Tensor:
        return f.mean(dim=(2, 3))


class GMP(DenseBottleneck):
    """Global max pooling (Sokar & Castro 2025, Appendix B.1): g^c = max_ij F^c_ij."""

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        return c

    def pool(self, f: th.Tensor) -> th.Tensor:
        return f.amax(dim=(2, 3))


class Sparse(Flatten):
    """
    Flatten with sparse training (:mod:`sb3_gap.sparse`): static sparsity, gradual magnitude pruning
    or RigL, on the φ→ψ connection (``sparse_scope="bottleneck"``, (1 − s)·H·W·C·dim(ψ) non-zero
    weights) or on every layer of φ and ψ (``sparse_scope="all"``, ERK densities).

    The options are those of :class:`sb3_gap.sparse.SparseConfig`; the masks and the update counter
    live in the extractor (``weight_mask`` buffers, ``trainer.updates``), so they are saved with the model.

    :param sparsity: Target fraction of zero weights, in (0, 1) (paper: 0.9)
    :param sparse_method: ``"static"``, ``"gmp"`` or ``"rigl"``
    :param sparse_scope: ``"bottleneck"`` or ``"all"``
    :param prune_start: ``gmp``: first pruning update t_0
    :param prune_end: ``gmp``: update t_1 at which the target sparsity is reached (required for ``gmp``)
    :param prune_every: ``gmp``: pruning period in gradient updates
    :param rigl_interval: ``rigl``: mask update period in gradient updates (paper: 5,000)
    :param rigl_drop: ``rigl``: initial drop fraction (paper: 0.2)
    :param rigl_end: ``rigl``: last mask update (required for ``rigl``)
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        width: int,
        psi_depth: int = 0,
        layer_norm: bool = False,
        sparsity: float = 0.9,
        sparse_method: str = "static",
        sparse_scope: str = "bottleneck",
        prune_start: int = 0,
        prune_end: int | None = None,
        prune_every: int = 1_000,
        rigl_interval: int = 5_000,
        rigl_drop: float = 0.2,
        rigl_end: int | None = None,
    ) -> None:
        super().__init__(in_shape, width, psi_depth, layer_norm)
        self.config = SparseConfig.build(
            sparsity=sparsity, sparse_method=sparse_method, sparse_scope=sparse_scope, prune_start=prune_start,
            prune_end=prune_end, prune_every=prune_every, rigl_interval=rigl_interval, rigl_drop=rigl_drop, rigl_end=rigl_end,
        )  # fmt: skip
        self._register_load_state_dict_pre_hook(_load_static_mask_of_0_x)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Check the options without building layers (``ConvExtractor.validate``)."""
        SparseConfig.build(**options)

    def attach(self, extractor: nn.Module) -> None:
        """Called by ``ConvExtractor`` once φ and this bottleneck exist: choose the layers, build the masks."""
        if self.config.sparse_scope == "bottleneck":
            layers: list[nn.Module] = [self.connection]
        else:
            layers = [m for m in extractor.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        self.trainer = SparseTrainer(layers, self.config)


def _load_static_mask_of_0_x(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Models saved before sparse training had ``connection.mask`` and no update counter: map them."""
    old = prefix + "connection.mask"
    if old in state_dict:
        mask = state_dict.pop(old)
        state_dict[prefix + "connection." + MASK] = mask
        state_dict[prefix + "connection.weight"] = state_dict[prefix + "connection.weight"] * mask
        state_dict.setdefault(prefix + "trainer.updates", th.zeros((), dtype=th.long))


class ExpertLinear(nn.Module):
    """``n`` independent linear layers applied to their own slots: (B, n, p, i) → (B, n, p, o)."""

    def __init__(self, num_experts: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(th.empty(num_experts, in_features, out_features))
        self.bias = nn.Parameter(th.zeros(num_experts, 1, out_features))
        # Same init as nn.Linear, per expert.
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.einsum("bnpi,nio->bnpo", x, self.weight) + self.bias


class SoftMoE(nn.Module):
    """
    Soft mixture of experts over φ's H·W tokens of dimension C (Puigcerver et al. 2024), as
    used in deep RL by Obando-Ceron et al. (2024). With ``m = H·W`` tokens ``X ∈ R^{m×C}``,
    router ``Φ ∈ R^{C×(n·p)}`` and ``p = ceil(m / n)`` slots per expert:

    - dispatch ``D = softmax_m(XΦ)`` (over tokens), slots ``X̃ = Dᵀ X``;
    - expert i maps its p slots with ``Dense(dim(ψ)) → ReLU → Dense(C)``;
    - combine ``C = softmax_{n·p}(XΦ)`` (over all slots), ``Y = C Ỹ ∈ R^{m×C}``, flattened.

    ``num_experts=1`` is SoftMoE-1, the ``tokenize`` bottleneck of Sokar et al. (2025).

    :param in_shape: φ's output shape ``(C, H, W)``
    :param width: Hidden width dim(ψ) of each expert
    :param psi_depth: Extra hidden layers inside each expert
    :param layer_norm: LayerNorm before each hidden ReLU of the experts
    :param num_experts: Number of experts n
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        width: int,
        psi_depth: int = 0,
        layer_norm: bool = False,
        num_experts: int = 4,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        n_tokens = h * w
        self.num_experts = num_experts
        self.slots_per_expert = math.ceil(n_tokens / num_experts)
        self.router = nn.Parameter(th.randn(c, num_experts * self.slots_per_expert) / math.sqrt(c))
        self.connection = ExpertLinear(num_experts, c, width)
        layers: list[nn.Module] = []
        for i in range(psi_depth + 1):
            if i > 0:
                layers.append(ExpertLinear(num_experts, width, width))
            if layer_norm:
                layers.append(nn.LayerNorm(width))
            layers.append(nn.ReLU())
        layers.append(ExpertLinear(num_experts, width, c))
        self.psi = nn.Sequential(*layers)
        self.features_dim = n_tokens * c

    def connection_weights(self) -> list[th.Tensor]:
        return [self.connection.weight]

    def forward(self, f: th.Tensor) -> th.Tensor:
        tokens = f.flatten(2).transpose(1, 2)  # (B, m, C)
        logits = tokens @ self.router  # (B, m, n·p)
        dispatch = logits.softmax(dim=1)  # softmax over tokens
        combine = logits.softmax(dim=2)  # softmax over slots
        slots = dispatch.transpose(1, 2) @ tokens  # (B, n·p, C)
        slots = slots.view(f.shape[0], self.num_experts, self.slots_per_expert, -1)
        out = self.psi(self.connection(slots)).flatten(1, 2)  # (B, n·p, C)
        return (combine @ out).flatten(1)  # (B, m·C)


class Tokenize(SoftMoE):
    """SoftMoE-1 (Sokar et al. 2025, "Don't flatten, tokenize!"): one expert, shared over the H·W tokens."""

    def __init__(self, in_shape: tuple[int, int, int], width: int, psi_depth: int = 0, layer_norm: bool = False) -> None:
        super().__init__(in_shape, width, psi_depth, layer_norm, num_experts=1)


BOTTLENECKS: dict[str, type[nn.Module]] = {
    "flatten": Flatten,
    "gap": GAP,
    "gmp": GMP,
    "sparse": Sparse,
    "tokenize": Tokenize,
    "softmoe": SoftMoE,
}

_COMMON = ("self", "in_shape", "width", "psi_depth", "layer_norm")
# Keyword arguments that only some bottlenecks take: each bottleneck declares its own in its signature
# (checked in ConvExtractor; a bottleneck may also define ``check_options(**options)`` and ``attach(extractor)``).
BOTTLENECK_OPTIONS: dict[str, tuple[str, ...]] = {
    name: options
    for name, cls in BOTTLENECKS.items()
    if (options := tuple(p for p in inspect.signature(cls.__init__).parameters if p not in _COMMON))
}
