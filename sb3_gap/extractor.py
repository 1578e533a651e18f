"""``ConvExtractor``: encoder φ → bottleneck → ψ, as an SB3 features extractor, and
:func:`policy_kwargs`, the one-line way to plug it into DQN, QR-DQN, PPO and Rainbow."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_gap.bottlenecks import BOTTLENECK_OPTIONS, BOTTLENECKS, PSI, Bottleneck
from sb3_gap.checks import Refused, check_choice, check_int
from sb3_gap.encoders import ENCODERS, Encoder, encoder_options
from sb3_gap.initializers import DOPAMINE_NETWORKS, check_init, init_dense_layers
from sb3_gap.optim import optimizer_policy_kwargs

# Width of ψ's first layer at scale ×1 (Dopamine's Rainbow, paper Table 1).
BASE_WIDTH = 512
#: Largest ``width_scale`` (ψ of 512 × 64 = 32,768 units; the paper goes to ×16): checked before any layer is allocated.
MAX_WIDTH_SCALE = 64
#: Largest ``encoder_scale`` (φ's channels × 16).
MAX_ENCODER_SCALE = 16
#: Largest ``psi_depth`` (extra layers or residual blocks of ψ; the paper and Castanyer et al. go to 10).
MAX_PSI_DEPTH = 64
#: Most parameters (and buffer elements) a ``ConvExtractor`` may have: 2**31, 8 GiB of float32 (the paper's largest
#: networks have ~0.5e9). :func:`estimate_parameters` counts them on torch's meta device before any memory is allocated.
MAX_PARAMETERS = 2**31
# The extractor's own integer arguments: (name, minimum, maximum).
_INT_ARGS = (("width_scale", 1, MAX_WIDTH_SCALE), ("encoder_scale", 1, MAX_ENCODER_SCALE), ("psi_depth", 0, MAX_PSI_DEPTH))


def plain_numbers(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with numpy scalars as Python ``int`` / ``float`` (numbers in spirit; a sweep's values are numpy's)."""
    out = dict(kwargs)
    for name, value in kwargs.items():
        if isinstance(value, np.integer):
            out[name] = int(value)
        elif isinstance(value, np.floating):
            out[name] = float(value)
    return out


def _option_names() -> list[str]:
    """Every option an encoder or a bottleneck declares (``extra_blocks``, ``sparsity``, ``num_experts``, ...)."""
    names: list[str] = []
    classes: list[type[Encoder] | type[Bottleneck]] = [*ENCODERS.values(), *BOTTLENECKS.values()]
    for cls in classes:
        names += [o for o in cls.options if o not in names]
    return names


def _dict_space_error(observation_space: spaces.Dict) -> Refused:
    images = [k for k, sub in observation_space.spaces.items() if isinstance(sub, spaces.Box) and len(sub.shape) == 3]
    if not images:
        return Refused(
            f"ConvExtractor needs an image observation space, got a Dict with no 3-D Box {observation_space!r}; "
            "use MultiInputPolicy without sb3_gap for such observations"
        )
    key = images[0]
    return Refused(
        f"ConvExtractor takes one image, got a Dict observation space with image key(s) {images}: keep only the image with "
        f"gymnasium.wrappers.TransformObservation(env, lambda obs: obs[{key!r}], env.observation_space[{key!r}]) and use "
        "CnnPolicy with sb3_gap.policy_kwargs(...), or keep the Dict with MultiInputPolicy and SB3's CombinedExtractor (no sb3_gap bottleneck)"
    )


class ConvExtractor(BaseFeaturesExtractor):
    """
    Pixel features extractor with a pluggable bottleneck between φ and ψ (Sokar & Castro 2025).

    ``features = ψ(bottleneck(φ(obs)))``; the algorithm's own head (Q-values, quantiles,
    atoms, policy/value) follows. Use :func:`policy_kwargs` to build the ``policy_kwargs`` dict.

    :param observation_space: A 3-D ``Box`` image space, channel-first (C, H, W) or channel-last (H, W, C)
    :param encoder: φ, a name of :data:`sb3_gap.encoders.ENCODERS`
    :param bottleneck: A name of :data:`sb3_gap.bottlenecks.BOTTLENECKS`
    :param width_scale: Width multiplier of ψ: dim(ψ) = 512 × ``width_scale``, an integer in [1, :data:`MAX_WIDTH_SCALE`]
        (numpy integers accepted)
    :param encoder_scale: Channel multiplier of φ, an integer in [1, :data:`MAX_ENCODER_SCALE`]
    :param psi_depth: Extra hidden layers of ψ (paper Fig. 8); with ``psi="residual"`` the number of residual blocks;
        at most :data:`MAX_PSI_DEPTH`. The whole network may have at most :data:`MAX_PARAMETERS` parameters
        (:func:`estimate_parameters`, checked before anything is allocated)
    :param layer_norm: LayerNorm in ψ (None: the ψ builder's default, off for ``"dense"``, on for ``"residual"``)
    :param psi: How ψ continues after its first layer: ``"dense"`` (the paper's MLP) or ``"residual"`` (multi-skip
        residual blocks of Castanyer et al. 2025, :class:`sb3_gap.bottlenecks.ResidualPsi`); works with every bottleneck
    :param options: The options the chosen encoder and bottleneck declare in their ``options`` class attribute,
        e.g. ``extra_blocks`` (residual encoders, paper Fig. 4), ``num_experts`` (``"softmoe"``), ``sparsity`` and
        the other :class:`sb3_gap.sparse.SparseConfig` fields (``"sparse"``, ``docs/sparse.md``); ``None`` means the
        default; an option of another encoder or bottleneck is an error
    :param normalized_image: Accepted for parity with SB3's ``NatureCNN``; any 3-D Box is accepted
        and SB3's ``normalize_images`` decides whether uint8 pixels are divided by 255
    :param channels_last: Run the convolutions in ``torch.channels_last`` memory format
        (timings in ``docs/benchmarks.md``)
    :param init: Weight initialisation, a name of :data:`sb3_gap.initializers.INITS`: ``"torch"`` (the default: each
        layer's PyTorch default, and the ψ builder's own) or ``"dopamine"``: the initializers of the Dopamine network
        the encoder follows (``Encoder.dopamine_network``, :data:`sb3_gap.initializers.DOPAMINE_NETWORKS`) for φ's
        convolutions and, with ``psi="dense"``, the connection and ψ (SoftMoE's router keeps its own; the residual ψ
        keeps its reference's orthogonal init); zero biases. Rainbow's head follows it unless ``head_init`` is given
    """

    def __init__(
        self,
        observation_space: gym.Space,
        encoder: str = "impala",
        bottleneck: str = "gap",
        width_scale: int = 1,
        encoder_scale: int = 1,
        psi_depth: int = 0,
        layer_norm: bool | None = None,
        psi: str = "dense",
        normalized_image: bool = False,
        channels_last: bool = True,
        init: str = "torch",
        **options: Any,
    ) -> None:
        if isinstance(observation_space, spaces.Dict):
            raise _dict_space_error(observation_space)
        own = dict(encoder=encoder, bottleneck=bottleneck, width_scale=width_scale, encoder_scale=encoder_scale,
                   psi_depth=psi_depth, layer_norm=layer_norm, psi=psi, init=init)  # fmt: skip
        args = plain_numbers({**options, **own})
        self.validate(**args)
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise Refused(
                f"ConvExtractor needs an image observation space: a 3-D Box (C, H, W) or (H, W, C), "
                f"got {observation_space!r}. For vector observations use MlpPolicy without sb3_gap."
            )
        on_meta = th.empty(0).is_meta  # built on torch's meta device: by estimate_parameters, or Hub's pre-check
        if not on_meta:
            estimate_parameters(observation_space, **args)  # refuses a network above MAX_PARAMETERS before allocating it
        self.channels_first = is_image_space_channels_first(observation_space)
        shape = observation_space.shape
        c, h, w = shape if self.channels_first else (shape[2], shape[0], shape[1])
        encoder_cls = ENCODERS[encoder]
        if min(h, w) < encoder_cls.min_image_size:
            fits = [e for e, cls in ENCODERS.items() if min(h, w) >= cls.min_image_size]
            raise Refused(
                f"Image {h}x{w} is too small for encoder {encoder!r} (needs at least "
                f"{encoder_cls.min_image_size}x{encoder_cls.min_image_size}); encoders that fit: {fits}"
            )

        phi = encoder_cls(c, scale=args["encoder_scale"], **encoder_options(encoder, args))
        with th.no_grad():
            phi_shape = tuple(phi(th.zeros(1, c, h, w)).shape[1:])
        neck_cls = BOTTLENECKS[bottleneck]
        # The options the bottleneck declares (e.g. sparse_method for "sparse"); unset ones take its defaults.
        neck_options = {k: args[k] for k in neck_cls.options if args.get(k) is not None}
        layer_norm = PSI[psi].layer_norm_default if layer_norm is None else bool(layer_norm)
        try:
            neck = neck_cls(phi_shape, BASE_WIDTH * args["width_scale"], psi_depth=args["psi_depth"], layer_norm=layer_norm,
                            psi=psi, **neck_options)  # fmt: skip
        except ValueError as e:  # e.g. more experts than tokens: say which encoder and images made φ's output
            raise Refused(f"{e} (encoder {encoder!r} on {h}x{w} images)") from None
        super().__init__(observation_space, features_dim=neck.features_dim)

        #: The initialisation scheme (Rainbow's head follows it) and the Dopamine network whose initializers it means.
        self.init = init
        self.dopamine_network = encoder_cls.dopamine_network
        if init == "dopamine":  # before attach: sparse masks are applied to the weights drawn here
            network = DOPAMINE_NETWORKS[encoder_cls.dopamine_network]
            phi.dopamine_init(network)
            if not PSI[psi].keeps_own_init:
                init_dense_layers(neck, network.dense)
        self.encoder = phi
        self.bottleneck = neck
        if hasattr(neck, "attach"):  # e.g. sparse training masks layers of φ too (sparse_scope="all")
            neck.attach(self)
        self.encoder_out_shape = phi_shape
        self.channels_last = channels_last
        if on_meta:
            count = sum(t.numel() for t in (*self.parameters(), *self.buffers()))
            if count > MAX_PARAMETERS:
                raise Refused(
                    f"ConvExtractor({', '.join(f'{k}={v!r}' for k, v in own.items())}, ...) on {h}x{w}x{c} images would have "
                    f"{count:,} parameters, more than {MAX_PARAMETERS:,} (sb3_gap.extractor.MAX_PARAMETERS): lower width_scale, "
                    "psi_depth, encoder_scale or extra_blocks"
                )

    @classmethod
    def validate(cls, **kwargs: Any) -> None:
        """Check extractor arguments without an observation space; raise ``ValueError`` naming the bad value."""
        valid = cls.argument_names()
        kwargs = plain_numbers(kwargs)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise Refused(f"Unknown ConvExtractor argument(s) {unknown}; valid arguments: {valid}")
        encoder, bottleneck = kwargs.get("encoder", "impala"), kwargs.get("bottleneck", "gap")
        check_choice("encoder", encoder, ENCODERS)
        check_choice("bottleneck", bottleneck, BOTTLENECKS)
        check_choice("psi", kwargs.get("psi", "dense"), PSI)
        check_init("init", kwargs.get("init", "torch"))
        if kwargs.get("layer_norm") is not None and not isinstance(kwargs["layer_norm"], (bool, np.bool_)):
            raise Refused(f"layer_norm must be true, false or None (the ψ builder's default), got {kwargs['layer_norm']!r}")
        for name, minimum, maximum in _INT_ARGS:
            if name in kwargs:
                check_int(name, kwargs[name], minimum, maximum, example="1, 2, 4, 8")
        encoder_options(encoder, kwargs)
        for key in sorted({k for keys in BOTTLENECK_OPTIONS.values() for k in keys}):
            if kwargs.get(key) is not None and key not in BOTTLENECK_OPTIONS.get(bottleneck, ()):
                owners = [b for b, keys in BOTTLENECK_OPTIONS.items() if key in keys]
                raise Refused(f"{key}={kwargs[key]!r} only applies to bottleneck {owners}, not {bottleneck!r}")
        neck_cls = BOTTLENECKS[bottleneck]
        neck_cls.check_options(**{k: kwargs[k] for k in neck_cls.options if k in kwargs})

    @classmethod
    def argument_names(cls) -> list[str]:
        """Every argument the extractor takes: its own, then the options encoders and bottlenecks declare (e.g. ``sparse_method``)."""
        own = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "observation_space", "options")]
        return own + [k for k in _option_names() if k not in own]

    def encode(self, observations: th.Tensor) -> th.Tensor:
        """φ(x): the (B, C, H, W) feature map, before the bottleneck."""
        if not self.channels_first:
            observations = observations.permute(0, 3, 1, 2)
        if self.channels_last:
            observations = observations.contiguous(memory_format=th.channels_last)
        return self.encoder(observations)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.bottleneck(self.encode(observations))


def estimate_parameters(observation_space: gym.Space, **extractor_kwargs: Any) -> int:
    """
    The number of parameters and buffer elements of ``ConvExtractor(observation_space, **extractor_kwargs)``,
    from the arguments alone: the extractor is built on torch's meta device (shapes, no memory) after
    :meth:`ConvExtractor.validate` has bounded its sizes (``width_scale``, ``encoder_scale``, ``psi_depth``,
    ``extra_blocks``), so this takes well under a second for any accepted arguments.

    :param observation_space: A 3-D ``Box`` image space
    :param extractor_kwargs: :class:`ConvExtractor` arguments
    :raises ValueError: A bad argument, or more than :data:`MAX_PARAMETERS`
    """
    with th.device("meta"):  # ConvExtractor validates its arguments before building anything
        extractor = ConvExtractor(observation_space, **extractor_kwargs)
    return sum(t.numel() for t in (*extractor.parameters(), *extractor.buffers()))


def policy_kwargs(
    encoder: str = "impala",
    bottleneck: str = "gap",
    width_scale: int = 1,
    net_arch: list[int] | dict[str, list[int]] | None = None,
    optimizer: str | type[th.optim.Optimizer] | None = None,
    weight_decay: float | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    **extractor_kwargs: Any,
) -> dict[str, Any]:
    """
    ``policy_kwargs`` for DQN, QR-DQN, PPO or Rainbow with a :class:`ConvExtractor`.

    ``net_arch`` defaults to ``[]`` so that ψ lives entirely in the extractor and the algorithm
    only adds its output head (SB3's DQN/QR-DQN would otherwise add a hidden ``[64, 64]`` MLP).

    :param encoder: A name of :data:`sb3_gap.encoders.ENCODERS`
    :param bottleneck: A name of :data:`sb3_gap.bottlenecks.BOTTLENECKS`
    :param width_scale: dim(ψ) = 512 × ``width_scale`` (the paper uses 1, 2, 4, 8; at most :data:`MAX_WIDTH_SCALE`)
    :param net_arch: Layers the algorithm adds after the extractor (default: none)
    :param optimizer: ``"adam"``, ``"adamw"``, ``"kron"`` (:data:`sb3_gap.optim.OPTIMIZERS`) or an optimizer class
        (default: the algorithm's own, Adam)
    :param weight_decay: Weight decay; with Adam (the default) the optimizer becomes AdamW (decoupled decay)
    :param optimizer_kwargs: More optimizer settings (e.g. ``dict(eps=1.5e-4)``)
    :param extractor_kwargs: Other :class:`ConvExtractor` arguments (``encoder_scale``, ``psi_depth``, ``psi``, ...)
    :return: A plain dict with ``features_extractor_class``, ``features_extractor_kwargs`` and ``net_arch``, plus
        SB3's ``optimizer_class`` and ``optimizer_kwargs`` when one of the optimizer arguments is given
        (:func:`sb3_gap.optim.optimizer_policy_kwargs`)
    """
    kwargs = plain_numbers(dict(encoder=encoder, bottleneck=bottleneck, width_scale=width_scale, **extractor_kwargs))
    # Validate now, with the user's call on the stack, rather than deep inside model construction.
    ConvExtractor.validate(**kwargs)
    out: dict[str, Any] = {
        "features_extractor_class": ConvExtractor,
        "features_extractor_kwargs": kwargs,
        "net_arch": [] if net_arch is None else net_arch,
    }
    if optimizer is not None or weight_decay is not None or optimizer_kwargs is not None:
        out.update(optimizer_policy_kwargs(optimizer, weight_decay, optimizer_kwargs))
    return out
