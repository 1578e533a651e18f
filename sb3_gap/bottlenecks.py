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

Every bottleneck owns ψ: its first layer is the ``connection``; what follows is built by a ψ builder
of :data:`PSI` (``psi="dense"``: ``psi_depth`` more layers of the same width, optional LayerNorm, ReLU;
``psi="residual"``: ``psi_depth`` multi-skip residual blocks, Castanyer et al. 2025). Each bottleneck
is a :class:`Bottleneck`: it exposes ``features_dim`` and ``connection_weights()`` for
:func:`sb3_gap.parameter_report`, declares its own ``ConvExtractor`` arguments in ``options`` and the
weights that read each channel of φ in ``channel_weights`` (for the diagnostics' neuron resets).

Adding a bottleneck is a one-file change (this one): subclass :class:`Bottleneck` (or
:class:`DenseBottleneck` for a pooling), then add it to :data:`BOTTLENECKS`; importing this module
checks the declaration against the constructor.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch as th
from torch import nn

from sb3_gap.checks import Refused, check, check_int, is_number
from sb3_gap.sparse import MASK, SparseConfig, SparseTrainer

#: Builds a linear layer ``(in_features, out_features) -> module``: ``nn.Linear``, or one linear layer per expert.
LinearFactory = Callable[[int, int], nn.Module]
#: Maps a boolean mask over φ's C output channels to a boolean mask that broadcasts to one weight.
ChannelMask = Callable[[th.Tensor], th.Tensor]
#: The constructor arguments every bottleneck takes (``ConvExtractor`` passes them all).
COMMON_ARGS = ("in_shape", "width", "psi_depth", "layer_norm", "psi")


def _weights(layer: nn.Module) -> list[th.Tensor]:
    """A linear layer's weight matrices: ``weight``, or ``weight_mu`` and ``weight_sigma`` once Rainbow's
    ``noisy=True`` made it a ``NoisyLinear`` (both read the same inputs)."""
    return [p for name, p in layer.named_parameters(recurse=False) if name.startswith("weight")]


class Bottleneck(nn.Module):
    """
    Base class of the bottlenecks: ``forward`` maps φ's feature map ``(B, C, H, W)`` to ψ's output
    ``(B, features_dim)``. The constructor is ``(in_shape, width, psi_depth, layer_norm, psi, *options)``.

    Optional hooks: ``attach(extractor)``, called by ``ConvExtractor`` once φ and the bottleneck exist.
    """

    #: Extra constructor arguments, beyond :data:`COMMON_ARGS`, that ``ConvExtractor`` accepts for this bottleneck.
    options: ClassVar[tuple[str, ...]] = ()
    features_dim: int

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Check the values of :attr:`options` without building layers; raise ``ValueError`` naming the bad value."""

    def connection_weights(self) -> list[th.Tensor]:
        """The weights connecting φ to ψ as they act in the forward pass."""
        raise NotImplementedError

    def channel_weights(self, in_shape: tuple[int, int, int]) -> list[tuple[th.Tensor, ChannelMask]]:
        """
        The weights that read channel c of φ's output, each with the function that turns a ``(C,)`` channel
        mask into a mask of that weight (:mod:`sb3_gap.diagnostics.layers` resets φ's last neurons with it).

        :param in_shape: φ's output shape ``(C, H, W)``
        """
        raise NotImplementedError


class DensePsi:
    """ψ as a plain MLP (Dopamine's, Sokar & Castro 2025): after the connection,
    ``[LN] ReLU (Linear [LN] ReLU) × psi_depth``; its output has ψ's width."""

    #: LayerNorm unless ``layer_norm`` is given: off (the paper's networks have none).
    layer_norm_default = False
    #: Whether ψ keeps its own initialisation under ``init="dopamine"``: no, its layers are Dopamine's dense layers.
    keeps_own_init = False

    def build(self, width: int, psi_depth: int, layer_norm: bool, linear: LinearFactory = nn.Linear) -> tuple[nn.Sequential, int]:
        """:return: ``(the layers after the connection, output dimension)``"""
        layers: list[nn.Module] = []
        for i in range(psi_depth + 1):
            if i > 0:
                layers.append(linear(width, width))
            if layer_norm:
                layers.append(nn.LayerNorm(width))
            layers.append(nn.ReLU())
        return nn.Sequential(*layers), width

    def init_connection(self, layer: nn.Module) -> None:
        """Initialise the connection (the layer's own default init here)."""


#: Output width of the residual ψ: ``trunk_output_size`` = 512 for every width in Castanyer et al.'s code
#: (src/models/agent.py; src/pqn.py never changes it).
RESIDUAL_OUT = 512


def _orthogonal_(layer: nn.Module, gain: float = math.sqrt(2)) -> None:
    """Castanyer et al.'s ``layer_init`` (src/models/mlp.py): orthogonal weights with gain √2, zero bias.
    ``ExpertLinear`` weights ``(n, in, out)`` get one orthogonal matrix per expert."""
    with th.no_grad():
        weights = layer.weight if layer.weight.dim() == 3 else [layer.weight]
        for w in weights:
            nn.init.orthogonal_(w, gain)
        nn.init.zeros_(layer.bias)


class MultiSkipBlock(nn.Module):
    """
    One block of Castanyer et al.'s ``MultiSkipResidualBlock`` (roger-creus/stable-deep-rl-at-scale,
    src/models/mlp.py, ``ResidualBlock`` inside it): pre-activation, two linear layers, LayerNorm after each,
    ``f(h) = LN₁(W₁ ReLU(LN₀(W₀ ReLU(h))))``; :class:`MultiSkipResidual` adds the skips.

    :param width: Width of the residual stream
    :param layer_norm: LayerNorm after each linear layer
    :param linear: Linear-layer factory (``nn.Linear`` or per-expert)
    """

    def __init__(self, width: int, layer_norm: bool, linear: LinearFactory = nn.Linear) -> None:
        super().__init__()
        self.linear0 = linear(width, width)
        self.ln0 = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear1 = linear(width, width)
        self.ln1 = nn.LayerNorm(width) if layer_norm else nn.Identity()
        for layer in (self.linear0, self.linear1):
            _orthogonal_(layer)

    def forward(self, h: th.Tensor) -> th.Tensor:
        return self.ln1(self.linear1(th.relu(self.ln0(self.linear0(th.relu(h))))))


class MultiSkipResidual(nn.Module):
    """
    The multi-skip residual stream of Castanyer et al. (2025): ``h_l = h_{l−1} + f_l(h_{l−1}) + h_0``
    for ``l = 1..N``, ``h_0`` being the input (their ``StoreGlobalSkip`` → ``MultiSkipResidualBlock`` × N →
    ``ExtractOutput``, src/models/mlp.py).
    """

    def __init__(self, width: int, n_blocks: int, layer_norm: bool, linear: LinearFactory = nn.Linear) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MultiSkipBlock(width, layer_norm, linear) for _ in range(n_blocks))

    def forward(self, h0: th.Tensor) -> th.Tensor:
        h = h0
        for block in self.blocks:
            h = h + block(h) + h0
        return h


class ResidualPsi:
    """
    ψ as Castanyer et al.'s ``MultiSkipResidualMLP`` (roger-creus/stable-deep-rl-at-scale, src/models/mlp.py):
    connection ``W_in`` → ``[LN]`` → ``h_0``; ``psi_depth`` blocks ``h_l = h_{l−1} + f(h_{l−1}) + h_0``;
    output ``Linear(width, 512)`` → ``[LN]``; then ReLU (the ``act_()`` that starts their Q head, src/models/agent.py).
    Every linear layer, the connection included, is initialised orthogonally with gain √2 and zero bias.
    Their sizes: width 512 / 1536 / 2560 / 5120 with 1 / 3 / 5 / 10 blocks (``src/utils/utils.py``) are
    ``width_scale`` 1 / 3 / 5 / 10 and ``psi_depth`` 1 / 3 / 5 / 10.
    """

    #: LayerNorm unless ``layer_norm=False`` is given: on, as in the method of Castanyer et al. (``use_ln=True``).
    layer_norm_default = True
    #: Whether ψ keeps its own initialisation under ``init="dopamine"``: yes, its reference's orthogonal one (the
    #: connection and the experts' output layer included), as Dopamine has no residual ψ.
    keeps_own_init = True

    def build(self, width: int, psi_depth: int, layer_norm: bool, linear: LinearFactory = nn.Linear) -> tuple[nn.Sequential, int]:
        out = linear(width, RESIDUAL_OUT)
        _orthogonal_(out)
        layers: list[nn.Module] = [nn.LayerNorm(width)] if layer_norm else []
        layers += [MultiSkipResidual(width, psi_depth, layer_norm, linear), out]
        layers += [nn.LayerNorm(RESIDUAL_OUT)] if layer_norm else []
        return nn.Sequential(*layers, nn.ReLU()), RESIDUAL_OUT

    def init_connection(self, layer: nn.Module) -> None:
        _orthogonal_(layer)


#: ψ builders by name (``policy_kwargs(..., psi=...)``): what follows the connection, the same for every bottleneck.
PSI: dict[str, DensePsi | ResidualPsi] = {"dense": DensePsi(), "residual": ResidualPsi()}


class DenseBottleneck(Bottleneck):
    """
    ``ψ(pool(F))``: reduce the feature map to a vector, then a dense ψ.
    Subclasses only choose the reduction (:meth:`pool`) and its size (:meth:`pooled_dim`).

    :param in_shape: φ's output shape ``(C, H, W)``
    :param width: Width dim(ψ) of every dense layer of ψ
    :param psi_depth: Extra hidden layers of ψ after the first (``psi="residual"``: residual blocks)
    :param layer_norm: Apply LayerNorm before each ReLU of ψ (``psi="residual"``: after each linear layer)
    :param psi: How ψ continues after the connection, a name of :data:`PSI`
    """

    def __init__(self, in_shape: tuple[int, int, int], width: int, psi_depth: int = 0, layer_norm: bool = False, psi: str = "dense") -> None:
        super().__init__()
        self.connection = self._make_connection(self.pooled_dim(*in_shape), width)
        PSI[psi].init_connection(self.connection)
        self.psi, self.features_dim = PSI[psi].build(width, psi_depth, layer_norm)

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        raise NotImplementedError

    def pool(self, f: th.Tensor) -> th.Tensor:
        raise NotImplementedError

    def _make_connection(self, in_dim: int, width: int) -> nn.Linear:
        return nn.Linear(in_dim, width)

    def connection_weights(self) -> list[th.Tensor]:
        return [self.connection.weight]

    def forward(self, f: th.Tensor) -> th.Tensor:
        return self.psi(self.connection(self.pool(f)))


class _ChannelPool(DenseBottleneck):
    """A pooling to one value per channel: column c of the connection reads channel c."""

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        return c

    def channel_weights(self, in_shape: tuple[int, int, int]) -> list[tuple[th.Tensor, ChannelMask]]:
        return [(w, lambda f: f.view(1, -1)) for w in _weights(self.connection)]


class Flatten(DenseBottleneck):
    """The baseline: every activation of φ feeds every unit of ψ's first layer."""

    @staticmethod
    def pooled_dim(c: int, h: int, w: int) -> int:
        return c * h * w

    def pool(self, f: th.Tensor) -> th.Tensor:
        return f.flatten(1)

    def channel_weights(self, in_shape: tuple[int, int, int]) -> list[tuple[th.Tensor, ChannelMask]]:
        # Channel c is the columns c·H·W .. (c+1)·H·W − 1 of the connection.
        hw = in_shape[1] * in_shape[2]
        return [(w, lambda f: f.repeat_interleave(hw).view(1, -1)) for w in _weights(self.connection)]


class GAP(_ChannelPool):
    """Global average pooling, Eq. 1 of Sokar & Castro (2025): g^c = 1/(H·W) Σ_ij F^c_ij."""

    def pool(self, f: th.Tensor) -> th.Tensor:
        return f.mean(dim=(2, 3))


class GMP(_ChannelPool):
    """Global max pooling (Sokar & Castro 2025, Appendix B.1): g^c = max_ij F^c_ij."""

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

    options = SparseConfig.names()

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        width: int,
        psi_depth: int = 0,
        layer_norm: bool = False,
        psi: str = "dense",
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
        super().__init__(in_shape, width, psi_depth, layer_norm, psi)
        self.config = SparseConfig.build(
            sparsity=sparsity, sparse_method=sparse_method, sparse_scope=sparse_scope, prune_start=prune_start,
            prune_end=prune_end, prune_every=prune_every, rigl_interval=rigl_interval, rigl_drop=rigl_drop, rigl_end=rigl_end,
        )  # fmt: skip
        self._register_load_state_dict_pre_hook(_load_static_mask_of_0_x)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        sparsity = options.get("sparsity")
        if sparsity is not None:
            check(is_number(sparsity) and 0.0 < sparsity < 1.0, f"sparsity must be a float in (0, 1) (the paper uses 0.9), got {sparsity!r}")
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


class SoftMoE(Bottleneck):
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
    :param psi_depth: Extra hidden layers inside each expert (``psi="residual"``: residual blocks)
    :param layer_norm: LayerNorm before each hidden ReLU of the experts (``psi="residual"``: after each linear layer)
    :param psi: How each expert's ψ continues after its first layer, a name of :data:`PSI`
    :param num_experts: Number of experts n (``None``: 4); a number given must not exceed the H·W tokens
    """

    options: ClassVar[tuple[str, ...]] = ("num_experts",)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        width: int,
        psi_depth: int = 0,
        layer_norm: bool = False,
        psi: str = "dense",
        num_experts: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        n_tokens = h * w
        if num_experts is None:
            num_experts = 4  # the default may exceed the tokens (then one slot per expert, some empty)
        elif num_experts > n_tokens:
            raise Refused(f"num_experts={num_experts} exceeds the {n_tokens} tokens ({h}x{w}) of φ's feature map; choose 1..{n_tokens}")
        self.num_experts = num_experts
        self.slots_per_expert = math.ceil(n_tokens / num_experts)
        self.router = nn.Parameter(th.randn(c, num_experts * self.slots_per_expert) / math.sqrt(c))
        self.connection = ExpertLinear(num_experts, c, width)
        PSI[psi].init_connection(self.connection)
        # Each expert's ψ (same layer layout as a dense bottleneck's, one weight matrix per expert), then Dense(C).
        tail, out_dim = PSI[psi].build(width, psi_depth, layer_norm, lambda i, o: ExpertLinear(num_experts, i, o))
        self.psi = nn.Sequential(*tail, ExpertLinear(num_experts, out_dim, c))
        self.features_dim = n_tokens * c

    @classmethod
    def check_options(cls, num_experts: Any = None) -> None:  # type: ignore[override]  # checks its own declared options
        if num_experts is not None:
            check_int("num_experts", num_experts, 1, example="1, 2, 4, 8")

    def connection_weights(self) -> list[th.Tensor]:
        return [self.connection.weight]

    def channel_weights(self, in_shape: tuple[int, int, int]) -> list[tuple[th.Tensor, ChannelMask]]:
        # Row c of the router and input c of every expert's connection.
        return [(self.router, lambda f: f.view(-1, 1)), (self.connection.weight, lambda f: f.view(1, -1, 1))]

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

    options = ()

    def __init__(self, in_shape: tuple[int, int, int], width: int, psi_depth: int = 0, layer_norm: bool = False, psi: str = "dense") -> None:
        super().__init__(in_shape, width, psi_depth, layer_norm, psi, num_experts=1)


#: Bottlenecks by name: what ``policy_kwargs(bottleneck=...)``, the sweep and the Zoo YAML accept.
BOTTLENECKS: dict[str, type[Bottleneck]] = {
    "flatten": Flatten,
    "gap": GAP,
    "gmp": GMP,
    "sparse": Sparse,
    "tokenize": Tokenize,
    "softmoe": SoftMoE,
}


def _check_declaration(name: str, cls: type[Bottleneck]) -> None:
    """Fail at import when a bottleneck's ``options`` and its constructor disagree (a typo), or it lacks ``channel_weights``."""
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    missing = [p for p in COMMON_ARGS if p not in params]
    extra = [p for p in params if p not in COMMON_ARGS]
    if missing or sorted(extra) != sorted(cls.options):
        raise TypeError(
            f"Bottleneck {name!r} ({cls.__name__}): __init__ must take {list(COMMON_ARGS)} plus exactly its declared "
            f"options {list(cls.options)}; it lacks {missing} and takes the extra arguments {extra}"
        )
    if cls.channel_weights is Bottleneck.channel_weights:
        raise TypeError(f"Bottleneck {name!r} ({cls.__name__}) must define channel_weights (the weights that read channel c of φ)")


for _name, _cls in BOTTLENECKS.items():
    _check_declaration(_name, _cls)

#: The options of each bottleneck that has some (``{"sparse": ("sparsity", ...), "softmoe": ("num_experts",)}``).
BOTTLENECK_OPTIONS: dict[str, tuple[str, ...]] = {name: cls.options for name, cls in BOTTLENECKS.items() if cls.options}
