"""Convolutional encoders φ (the part of a pixel network *before* the bottleneck), and their registry.

Every encoder returns the raw feature map ``F ∈ R^{B×C×H×W}``; what happens to it
(flatten, pooling, tokens) is the job of :mod:`sb3_gap.bottlenecks`.

Adding an encoder is a one-file change (this one): subclass :class:`Encoder` (constructor
``(in_channels, scale=1, ...)`` that sets ``out_channels``; class attributes ``min_image_size`` and
``options``) and add it to :data:`ENCODERS`. The arguments it lists in ``options`` (such as Impala's
``extra_blocks``) become valid ``ConvExtractor`` arguments for that encoder only; they are checked
against its constructor when this module is imported.

Written by hand rather than reusing SB3's ``NatureCNN`` because ``NatureCNN`` fuses
``Flatten + Linear`` into the extractor (exactly the connection this project replaces)
and hard-codes the channel counts, so it cannot be scaled. ``NatureEncoder(scale=1)``
keeps the layer spec of ``NatureCNN.cnn``
(``tests/test_extractor.py::test_nature_counts_and_layers_match_sb3_nature_cnn``).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch as th
from torch import nn

from sb3_gap.checks import Refused, check_int
from sb3_gap.initializers import DOPAMINE_NETWORKS, DopamineNetworkInit, init_layer

#: Largest ``extra_blocks`` (residual blocks added per stack; the paper adds up to 8): checked before any layer exists.
MAX_EXTRA_BLOCKS = 32


class Encoder(nn.Module):
    """
    Base class of the encoders φ: ``forward`` maps ``(B, in_channels, H, W)`` images to the feature map
    ``(B, out_channels, H', W')``.

    Subclasses set :attr:`out_channels` in their constructor ``(in_channels, scale=1, **options)``.
    """

    #: Smallest image side the encoder accepts (checked by ``ConvExtractor`` before building anything).
    min_image_size: ClassVar[int] = 1
    #: Extra constructor arguments that ``ConvExtractor`` / ``policy_kwargs`` pass through for this encoder.
    options: ClassVar[tuple[str, ...]] = ()
    #: The Dopamine network whose initializers ``init="dopamine"`` applies, a key of
    #: :data:`sb3_gap.initializers.DOPAMINE_NETWORKS` (checked at import).
    dopamine_network: ClassVar[str] = "rainbow"
    out_channels: int

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Check the values of :attr:`options` without building layers; raise ``ValueError`` naming the bad value."""

    def dopamine_init(self, network: DopamineNetworkInit) -> None:
        """
        Redraw every convolution with ``network``'s initializers (``ConvExtractor(init="dopamine")``): those inside a
        :class:`ResidualBlock` with ``residual_conv``, the others with ``conv``; biases zero.
        """
        residual = {id(m) for block in self.modules() if isinstance(block, ResidualBlock) for m in (block.conv0, block.conv1)}
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                init_layer(layer, network.residual_conv if id(layer) in residual else network.conv)


class ResidualBlock(nn.Module):
    """Impala residual block: ``x + conv(relu(conv(relu(x))))`` (Espeholt et al. 2018, Fig. 3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: th.Tensor) -> th.Tensor:
        out = self.conv0(th.relu(x))
        out = self.conv1(th.relu(out))
        return x + out


class ImpalaEncoder(Encoder):
    """
    Impala ResNet encoder (Espeholt et al. 2018) as used by Dopamine and the paper.

    Each stack is ``conv3×3 → max-pool 3×3/2 → num_blocks residual blocks``; a final ReLU
    follows the last stack. With the default channels (16, 32, 32) an 84×84 input gives a
    32×11×11 feature map.

    :param in_channels: Number of input channels (e.g. 4 stacked frames)
    :param scale: Multiplier on every stack's channel count (scales φ)
    :param channels: Base channel count of each stack
    :param num_blocks: Residual blocks per stack (2 in Impala)
    :param extra_blocks: Extra residual blocks per stack to deepen φ (paper Fig. 4 / Appendix A), at most
        :data:`MAX_EXTRA_BLOCKS`
    :param pool: Per stack, whether it down-samples with the 3×3/2 max-pool (default: every stack)
    """

    options = ("extra_blocks",)
    dopamine_network = "impala"

    def __init__(
        self,
        in_channels: int,
        scale: int = 1,
        channels: tuple[int, ...] = (16, 32, 32),
        num_blocks: int = 2,
        extra_blocks: int = 0,
        pool: tuple[bool, ...] | None = None,
    ) -> None:
        super().__init__()
        pool = (True,) * len(channels) if pool is None else tuple(pool)
        if len(pool) != len(channels):
            raise Refused(f"pool must give one flag per stack ({len(channels)} stacks), got {pool!r}")
        layers: list[nn.Module] = []
        prev = in_channels
        for base, down in zip(channels, pool):
            out = base * scale
            layers.append(nn.Conv2d(prev, out, kernel_size=3, padding=1))
            if down:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            layers += [ResidualBlock(out) for _ in range(num_blocks + extra_blocks)]
            prev = out
        layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.out_channels = prev

    @classmethod
    def check_options(cls, extra_blocks: Any = None) -> None:  # type: ignore[override]  # checks its own declared options
        if extra_blocks is not None:
            check_int("extra_blocks", extra_blocks, 0, MAX_EXTRA_BLOCKS, example="1, 2, 4, 8")

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


class NatureEncoder(Encoder):
    """
    Convolutional torso of the DQN Nature network (Mnih et al. 2015):
    32 8×8/4 → 64 4×4/2 → 64 3×3/1, each followed by ReLU, channels × ``scale``.
    An 84×84 input gives a 64×7×7 feature map; inputs must be at least 36×36.

    :param in_channels: Number of input channels
    :param scale: Multiplier on every layer's channel count (scales φ)
    """

    min_image_size = 36
    dopamine_network = "rainbow"  # the torso of Dopamine's RainbowNetwork (dopamine/jax/networks.py)

    def __init__(self, in_channels: int, scale: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = 32 * scale, 64 * scale, 64 * scale
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        self.out_channels = c3

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


class MinAtarEncoder(Encoder):
    """
    Dopamine's MinAtar torso (``MinatarRainbowNetwork`` / ``MinatarDQNNetwork`` in
    google/dopamine ``dopamine/labs/environments/minatar/minatar_env.py``): one 3×3 convolution,
    16 channels × ``scale``, stride 1, SAME padding, ReLU, Xavier-uniform kernel and zero bias
    (flax's defaults there). A 10×10 map gives a 16×10×10 feature map, so ``flatten`` has
    1,600·dim(ψ) connection weights and ``gap`` 16·dim(ψ). Its receptive field is 3×3.

    :param in_channels: Number of input channels (the game's object channels)
    :param scale: Multiplier on the channel count
    """

    dopamine_network = "minatar"

    def __init__(self, in_channels: int, scale: int = 1) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, 16 * scale, kernel_size=3, stride=1, padding=1)
        nn.init.xavier_uniform_(conv.weight)
        nn.init.zeros_(conv.bias)
        self.net = nn.Sequential(conv, nn.ReLU())
        self.out_channels = 16 * scale

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


class MinAtarImpalaEncoder(ImpalaEncoder):
    """
    The MinAtar scaling study's encoder (``results/minatar_scaling/``, chosen by
    ``benchmarks/minatar_encoder_pilot.py``): one Impala stack, ``conv3×3(16) → max-pool 3×3/2 →
    1 residual block → ReLU``. A 10×10 map gives 16×5×5 features, so ``flatten`` has 25× the
    connection weights of ``gap`` (400·dim(ψ) vs 16·dim(ψ)), and the receptive field (13×13) covers
    the map, so channel means can still encode where objects are — unlike Dopamine's one-conv
    :class:`MinAtarEncoder` (3×3 receptive field).

    :param in_channels: Number of input channels
    :param scale: Multiplier on the channel count
    :param extra_blocks: Extra residual blocks
    """

    def __init__(self, in_channels: int, scale: int = 1, extra_blocks: int = 0) -> None:
        super().__init__(in_channels, scale=scale, channels=(16,), num_blocks=1, extra_blocks=extra_blocks, pool=(True,))


class MinAtarDeepEncoder(ImpalaEncoder):
    """
    The second MinAtar study's encoder (``results/minatar_deep/``): the paper's φ, Impala's three
    stacks with two residual blocks each (15 convolutions) and its channels 16-32-32, fitted to a 10×10 map by
    max-pooling in the first stack only. A 10×10 map gives 32×5×5 features, so ``flatten``'s connection has 25×
    the weights of ``gap``'s (800·dim(ψ) vs 32·dim(ψ)), as in the first study, and the receptive field (45×45)
    covers the map. Channels chosen by the timed pilot recorded in ``results/minatar_deep/README.md``.

    :param in_channels: Number of input channels
    :param scale: Multiplier on every stack's channel count
    :param extra_blocks: Extra residual blocks per stack
    """

    def __init__(self, in_channels: int, scale: int = 1, extra_blocks: int = 0) -> None:
        super().__init__(in_channels, scale=scale, channels=(16, 32, 32), num_blocks=2, extra_blocks=extra_blocks, pool=(True, False, False))


#: Encoders φ by name: what ``policy_kwargs(encoder=...)``, the sweep and the Zoo YAML accept.
ENCODERS: dict[str, type[Encoder]] = {
    "impala": ImpalaEncoder,
    "nature": NatureEncoder,
    "minatar": MinAtarEncoder,
    "minatar_impala": MinAtarImpalaEncoder,
    "minatar_deep": MinAtarDeepEncoder,
}

#: How validation names the encoders an option needs (``"extra_blocks=1 needs a residual encoder [...]"``).
OPTION_OWNERS = {"extra_blocks": "a residual encoder"}


def _check_declaration(name: str, cls: type[Encoder]) -> None:
    """Fail at import when an encoder's ``options`` name an argument its constructor does not take (a typo)."""
    params = inspect.signature(cls.__init__).parameters
    typos = [o for o in cls.options if o not in params]
    if typos:
        raise TypeError(f"Encoder {name!r} ({cls.__name__}) declares options {typos} that its __init__ does not take")
    if cls.dopamine_network not in DOPAMINE_NETWORKS:
        raise TypeError(f"Encoder {name!r} ({cls.__name__}) names dopamine_network {cls.dopamine_network!r}; valid: {sorted(DOPAMINE_NETWORKS)}")


for _name, _cls in ENCODERS.items():
    _check_declaration(_name, _cls)


def encoder_options(encoder: str, options: dict[str, Any]) -> dict[str, Any]:
    """
    Check the encoder options among ``options`` (any encoder's, e.g. ``extra_blocks``) for ``encoder``.

    :param encoder: A name of :data:`ENCODERS`
    :param options: Keyword arguments; those that are no encoder's option are ignored
    :return: The options to pass to ``ENCODERS[encoder]``: those given and different from its default
    :raises ValueError: A bad value, or an option that ``encoder`` does not take
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        owners = [e for e, cls in ENCODERS.items() if key in cls.options]
        if not owners or value is None:
            continue
        ENCODERS[owners[0]].check_options(**{key: value})
        default = inspect.signature(ENCODERS[owners[0]].__init__).parameters[key].default
        if value == default:
            continue
        if encoder not in owners:
            raise Refused(f"{key}={value!r} needs {OPTION_OWNERS.get(key, 'an encoder of')} {owners}, got {encoder!r}")
        out[key] = value
    return out
