"""Networks for :class:`~sb3_gap.rainbow.Rainbow`: a C51 (or scalar-Q) head with optional dueling
streams and factorised noisy layers, on any SB3 features extractor."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from sb3_gap.initializers import DOPAMINE_NETWORKS, init_dense_layers
from sb3_gap.rainbow.config import HeadConfig, default_adam_eps


class NoisyLinear(nn.Module):
    """
    Linear layer with factorised Gaussian noise (Fortunato et al. 2018, "Noisy Networks for
    Exploration", Sec. 3.2): ``y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b`` with
    ``ε_w = f(ε_out) f(ε_in)ᵀ``, ``ε_b = f(ε_out)`` and ``f(x) = sgn(x) √|x|``.

    The noise is resampled only by :meth:`reset_noise` and used only when ``forward(x, noise=True)``
    (or, called without ``noise``, while :attr:`use_noise` is set, which is how :class:`RainbowNetwork`
    switches the noisy layers inside a features extractor): it never depends on ``nn.Module.training``
    (SB3 switches policies to eval mode when acting, so noise keyed on ``.training`` would silently never
    explore). The current ε is a buffer, so it is saved with the model and a loaded model acts exactly
    like the saved one.

    σ₀: Fortunato et al. (2018, Sec. 3.2) use 0.5; Dopamine's ``NoisyNetwork`` (google/dopamine
    ``dopamine/jax/networks.py``), used by its full Rainbow and DER, initialises σ to 0.1/√p, which is
    what :data:`sb3_gap.rainbow.PRESETS` ``"der"`` and ``"full"`` set.

    :param in_features: Input size p
    :param out_features: Output size q
    :param sigma0: σ₀; σ is initialised to σ₀/√p
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(th.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(th.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(th.empty(out_features))
        self.bias_sigma = nn.Parameter(th.empty(out_features))
        self.register_buffer("eps_in", th.zeros(in_features))
        self.register_buffer("eps_out", th.zeros(out_features))
        self.use_noise = True
        self.reset_parameters()
        self.reset_noise()

    @property
    def weight(self) -> th.Tensor:
        """μ_w: the weights the noise-free layer applies (what parameter reports count)."""
        return self.weight_mu

    @property
    def bias(self) -> th.Tensor:
        """μ_b."""
        return self.bias_mu

    def reset_parameters(self) -> None:
        """μ ~ U[-1/√p, 1/√p], σ = σ₀/√p (Fortunato et al. 2018, Sec. 3.2)."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 * bound)
        nn.init.constant_(self.bias_sigma, self.sigma0 * bound)

    @staticmethod
    def _scaled_noise(size: int, device: th.device) -> th.Tensor:
        x = th.randn(size, device=device)
        return x.sign() * x.abs().sqrt()

    @th.no_grad()
    def reset_noise(self) -> None:
        """Draw new ε_in, ε_out."""
        self.eps_in.copy_(self._scaled_noise(self.in_features, self.eps_in.device))
        self.eps_out.copy_(self._scaled_noise(self.out_features, self.eps_out.device))

    def forward(self, x: th.Tensor, noise: bool | None = None) -> th.Tensor:
        if not (self.use_noise if noise is None else noise):
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * th.outer(self.eps_out, self.eps_in)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


def make_noisy(module: nn.Module, sigma0: float) -> int:
    """
    Replace every plain ``nn.Linear`` inside ``module`` by a :class:`NoisyLinear` of the same shape, in
    place: with noisy nets, ψ's dense layers in the features extractor are noisy too, as in Dopamine's
    ``FullRainbowNetwork`` (google/dopamine ``dopamine/jax/networks.py``: the 512-unit layer after the
    torso is a ``NoisyNetwork``). Convolutions, masked (sparse) and expert layers stay as they are.

    :param module: A features extractor (``ConvExtractor``, SB3's ``NatureCNN``, ...)
    :param sigma0: σ₀ of the new layers
    :return: The number of layers replaced
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, NoisyLinear(child.in_features, child.out_features, sigma0=sigma0).to(child.weight.device))
            replaced += 1
        else:
            replaced += make_noisy(child, sigma0)
    return replaced


class _NoiseSequential(nn.Sequential):
    """``nn.Sequential`` that forwards the explicit ``noise`` flag to its :class:`NoisyLinear` layers.

    Its state-dict keys are those of a plain ``nn.Sequential`` (``0.weight``, ...), so that with noisy
    nets off the head is layer-for-layer SB3's DQN ``q_net``."""

    def forward(self, x: th.Tensor, noise: bool = True) -> th.Tensor:
        for module in self:
            x = module(x, noise) if isinstance(module, NoisyLinear) else module(x)
        return x


def _mlp(input_dim: int, output_dim: int, net_arch: list[int], activation_fn: type[nn.Module], sigma0: float | None) -> _NoiseSequential:
    """SB3's ``create_mlp`` layout (``Linear, act, ..., Linear``, same state-dict keys); noisy layers when ``sigma0`` is set."""
    if sigma0 is None:
        return _NoiseSequential(*create_mlp(input_dim, output_dim, net_arch, activation_fn))
    # create_mlp only builds nn.Linear: swapping NoisyLinear in afterwards would draw every init twice (other weights
    # for a given seed than models trained so far), so the noisy layout is built here, layer for layer the same.
    layers: list[nn.Module] = []
    last = input_dim
    for width in net_arch:
        layers += [NoisyLinear(last, width, sigma0=sigma0), activation_fn()]
        last = width
    layers.append(NoisyLinear(last, output_dim, sigma0=sigma0))
    return _NoiseSequential(*layers)


class RainbowHead(nn.Module):
    """
    The output head: per action either ``n_atoms`` logits of a categorical distribution (C51) or a
    single Q-value, optionally as dueling value and advantage streams over atoms (Wang et al. 2016,
    Eq. 9, applied to logits as in Hessel et al. 2018, Sec. 3 "Dueling networks").

    :param features_dim: Size of the features from the extractor
    :param n_actions: Number of discrete actions
    :param n_outputs: Outputs per action: ``n_atoms`` (distributional) or 1 (scalar Q)
    :param net_arch: Hidden layers of each stream
    :param activation_fn: Activation between hidden layers
    :param dueling: Separate value and advantage streams
    :param noisy: Use :class:`NoisyLinear` layers instead of ``nn.Linear``
    :param sigma0: σ₀ of the noisy layers
    """

    def __init__(
        self,
        features_dim: int,
        n_actions: int,
        n_outputs: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        dueling: bool,
        noisy: bool,
        sigma0: float,
    ) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.n_outputs = n_outputs
        noise = sigma0 if noisy else None
        self.advantage = _mlp(features_dim, n_actions * n_outputs, net_arch, activation_fn, noise)
        self.value = _mlp(features_dim, n_outputs, net_arch, activation_fn, noise) if dueling else None

    def forward(self, features: th.Tensor, noise: bool = True) -> th.Tensor:
        out = self.advantage(features, noise).view(-1, self.n_actions, self.n_outputs)
        if self.value is not None:
            value = self.value(features, noise).view(-1, 1, self.n_outputs)
            out = value + out - out.mean(dim=1, keepdim=True)
        return out


class RainbowNetwork(BasePolicy):
    """
    Online or target network of Rainbow: features extractor followed by a :class:`RainbowHead`.

    :param observation_space: Observation space
    :param action_space: Action space
    :param features_extractor: The features extractor
    :param features_dim: Its output size
    :param head: The head switches (``n_atoms`` ignored when not ``distributional``; noisy layers in the head and in
        the extractor's dense layers ψ)
    :param net_arch: Hidden layers of the head
    :param activation_fn: Activation function
    :param normalize_images: Whether to divide uint8 images by 255
    """

    action_space: spaces.Discrete
    support: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        head: HeadConfig | None = None,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images)
        head = HeadConfig() if head is None else head
        self.net_arch = [64, 64] if net_arch is None else net_arch
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.head_config = head
        n_atoms, v_min, v_max, distributional = head.n_atoms, head.v_min, head.v_max, head.distributional
        dueling, noisy, sigma0 = head.dueling, head.noisy, head.sigma0
        self.n_atoms, self.v_min, self.v_max, self.distributional = n_atoms, v_min, v_max, distributional
        self.dueling, self.noisy, self.sigma0 = dueling, noisy, sigma0
        if noisy:
            make_noisy(self.features_extractor, sigma0)
        # A plain list (not submodules): the extractor's noisy layers, switched per forward call.
        self._extractor_noisy = [m for m in self.features_extractor.modules() if isinstance(m, NoisyLinear)]
        n_outputs = n_atoms if distributional else 1
        self.head = RainbowHead(features_dim, int(action_space.n), n_outputs, self.net_arch, activation_fn, dueling, noisy, sigma0)
        head_init = getattr(self.features_extractor, "init", "torch") if head.head_init is None else head.head_init
        if head_init == "dopamine":
            # The dense initializer of the extractor's Dopamine network (RainbowNetwork's for other extractors).
            network = DOPAMINE_NETWORKS[getattr(self.features_extractor, "dopamine_network", "rainbow")]
            init_dense_layers(self.head, network.dense)
        # The atoms z_i = v_min + i Δz (Bellemare et al. 2017, Sec. 4).
        self.register_buffer("support", th.linspace(v_min, v_max, n_atoms) if distributional else th.zeros(1))
        # A plain list (not submodules) of every noisy layer: reset_noise runs at every acting step with noisy
        # nets, and walking all modules each time costs more than drawing the noise of a small network.
        self._noisy_layers = [m for m in self.modules() if isinstance(m, NoisyLinear)]
        # SB3's preprocess_obs divides these by 255 (checked once here rather than at every call)
        self._scaled_images = bool(normalize_images) and is_image_space(observation_space, check_channels=False)

    def extract_features(self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor) -> th.Tensor:
        """
        SB3's preprocessing + extractor. For uint8 images: a channels-last extractor gets its batch reordered before
        the float conversion (a quarter of the bytes to move; the float copy then keeps that memory format), and the
        division by 255 runs in place on the float copy (SB3's ``obs.float() / 255.0`` allocates a second float
        batch: 3.6 MB for 32 Atari stacks; same values).
        """
        if not (self._scaled_images and isinstance(obs, th.Tensor) and obs.dtype == th.uint8):
            return super().extract_features(obs, features_extractor)
        if obs.dim() == 4 and getattr(features_extractor, "channels_last", False) and getattr(features_extractor, "channels_first", False):
            obs = obs.contiguous(memory_format=th.channels_last)
        return features_extractor(obs.float().div_(255.0))

    def forward(self, obs: PyTorchObs, noise: bool = True) -> th.Tensor:
        """
        :param obs: Observation
        :param noise: Use the current noise of the noisy layers (no effect without noisy nets)
        :return: (B, A, n_atoms) logits if distributional, else (B, A) Q-values
        """
        for layer in self._extractor_noisy:
            layer.use_noise = noise
        out = self.head(self.extract_features(obs, self.features_extractor), noise)
        return out if self.distributional else out.squeeze(-1)

    def q_from_output(self, out: th.Tensor) -> th.Tensor:
        """Q-values (B, A) from :meth:`forward`'s output: ``Σ_i z_i p_i`` for C51."""
        if not self.distributional:
            return out
        return (F.softmax(out, dim=-1) * self.support).sum(dim=-1)

    def q_values(self, obs: PyTorchObs, noise: bool = True) -> th.Tensor:
        """Expected Q-values (B, A)."""
        return self.q_from_output(self(obs, noise))

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        # Greedy action; noisy nets act with their current noise unless deterministic.
        return self.q_values(observation, noise=not deterministic).argmax(dim=1).reshape(-1)

    def reset_noise(self) -> None:
        """Resample the noise of every noisy layer (no-op without noisy nets)."""
        for module in self._noisy_layers:
            module.reset_noise()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                features_dim=self.features_dim,
                head=self.head_config,
                activation_fn=self.activation_fn,
                features_extractor=self.features_extractor,
            )
        )
        return data


def _greedy_actions(q_net: RainbowNetwork, observation: th.Tensor, deterministic: bool) -> th.Tensor:
    """``q_net._predict`` as a function of the network, for ``torch.compile`` (a copied policy passes its own network)."""
    return q_net._predict(observation, deterministic=deterministic)


class RainbowPolicy(BasePolicy):
    """
    Policy with online and target :class:`RainbowNetwork` for :class:`~sb3_gap.rainbow.Rainbow`.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layers of the head; ``[]`` puts the head directly on the features
        (what :func:`sb3_gap.policy_kwargs` passes); default ``[64, 64]``, or ``[]`` on ``NatureCNN``
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor
    :param normalize_images: Whether to divide uint8 images by 255
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, for the optimizer
        (default for Adam: ``{"eps": DOPAMINE_ADAM_EPS}``, Dopamine's Rainbow, :mod:`sb3_gap.rainbow.config`)
    :param head: The head switches ``distributional``, ``n_atoms``, ``v_min``, ``v_max``, ``dueling``, ``noisy``,
        ``sigma0`` and ``head_init``, as flat keyword arguments (how ``Rainbow`` passes and saves them): :class:`~sb3_gap.rainbow.config.HeadConfig`
    """

    q_net: RainbowNetwork
    q_net_target: RainbowNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **head: Any,
    ) -> None:
        head_config = HeadConfig(**head)
        optimizer_kwargs = default_adam_eps(optimizer_class, optimizer_kwargs)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [] if features_extractor_class == NatureCNN else [64, 64]
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.head_config = head_config
        self.net_args = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "head": self.head_config,
            "net_arch": self.net_arch,
            "activation_fn": self.activation_fn,
            "normalize_images": normalize_images,
        }
        self._compiled_act: Callable[..., th.Tensor] | None = None
        self._act_cuda_graphs = False
        self._compile_times: dict[str, float] | None = None
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        self.q_net = self.make_q_net()
        self.q_net_target = self.make_q_net()
        self.q_net_target.load_state_dict(self.q_net.state_dict())
        self.q_net_target.set_training_mode(False)
        # Independent noise for the target network (Hessel et al. 2018, Sec. 3 "Noisy Nets").
        self.q_net_target.reset_noise()
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.q_net.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def make_q_net(self) -> RainbowNetwork:
        # Separate features extractors for online and target networks.
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RainbowNetwork(**net_args).to(self.device)

    def forward(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        act = self._compiled_act
        if act is None:
            return self.q_net._predict(obs, deterministic=deterministic)
        timing = self._compile_times is not None and "act" not in self._compile_times
        started = time.perf_counter()
        if self._act_cuda_graphs:
            th.compiler.cudagraph_mark_step_begin()
            actions = act(self.q_net, obs, deterministic).clone()  # the graph's output buffer is reused at the next replay
        else:
            actions = act(self.q_net, obs, deterministic)
        if timing:
            self._compile_times["act"] = time.perf_counter() - started  # type: ignore[index]
        return actions

    def set_compiled_acting(
        self, act: Callable[..., th.Tensor] | None, cuda_graphs: bool = False, compile_times: dict[str, float] | None = None
    ) -> None:
        """
        Act through a compiled :func:`_greedy_actions` (``Rainbow(compile=True)`` sets it), or eagerly with None.

        :param act: ``torch.compile(_greedy_actions, ...)``, or None
        :param cuda_graphs: Whether ``act`` replays CUDA graphs (its outputs are then copied out)
        :param compile_times: A dict that receives ``"act"``: the seconds of the first (compiling) call
        """
        self._compiled_act = act
        self._act_cuda_graphs = cuda_graphs and act is not None
        self._compile_times = compile_times

    def reset_noise(self) -> None:
        """Resample the noise of the online and the target network (independently)."""
        self.q_net.reset_noise()
        self.q_net_target.reset_noise()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                **self.head_config.kwargs(),
                net_arch=self.net_args["net_arch"],
                activation_fn=self.net_args["activation_fn"],
                lr_schedule=self._dummy_schedule,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
            )
        )
        return data

    def predict(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """SB3's ``BasePolicy.predict`` under ``torch.inference_mode`` (cheaper than ``no_grad`` when acting); under
        SB3's ``no_grad`` only when acting is compiled (torch 2.13's Dynamo fails its own guards on the numpy arrays of
        SB3's image check, ``observation_space.low``, inside ``inference_mode``)."""
        if self._compiled_act is not None:
            return super().predict(*args, **kwargs)
        with th.inference_mode():
            return super().predict(*args, **kwargs)

    def set_training_mode(self, mode: bool) -> None:
        """Train/eval mode (batch norm, dropout). Has no effect on the noise of noisy layers."""
        # SB3 calls this at every predict() and every rollout; walking all modules each time is a
        # measurable share of a small network's step, so only walk them when the mode changes.
        if self.q_net.training != mode or self.training != mode:
            self.q_net.set_training_mode(mode)
        self.training = mode


MlpPolicy = RainbowPolicy


class CnnPolicy(RainbowPolicy):
    """:class:`RainbowPolicy` with SB3's ``NatureCNN`` extractor by default (images)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)  # type: ignore[misc]  # args are positional-only here


class MultiInputPolicy(RainbowPolicy):
    """:class:`RainbowPolicy` with SB3's ``CombinedExtractor`` by default (dict observations)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)  # type: ignore[misc]  # args are positional-only here
