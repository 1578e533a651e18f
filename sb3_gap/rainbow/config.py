"""Rainbow's settings in one place: the head switches (:class:`HeadConfig`), Dopamine's Adam epsilon, the
presets and the checks of :class:`~sb3_gap.rainbow.Rainbow`'s other arguments."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch as th

from sb3_gap.algo_args import ALGO_ARG_BOUNDS, check_algo_args
from sb3_gap.checks import check, check_choice, is_int, is_number
from sb3_gap.initializers import check_init
from sb3_gap.rainbow.buffers import RainbowReplayBuffer

#: Adam's epsilon in Dopamine's Rainbow: 1.5e-4 = 0.01 / 32 (Hessel et al. 2018, Table 1; Sokar & Castro 2025,
#: Table 1; google/dopamine ``dopamine/jax/agents/rainbow/configs/rainbow.gin``, ``create_optimizer.eps``).
DOPAMINE_ADAM_EPS = 1.5e-4

#: Losses of the scalar head (``distributional=False``).
LOSSES = ("huber", "mse")

#: Ready-made hyperparameters, as plain kwargs dicts (usable from Python and from RL Zoo YAML files).
PRESETS: dict[str, dict[str, Any]] = {
    # Dopamine's Rainbow as used by Sokar & Castro 2025 (their Table 1): the class defaults.
    "dopamine": {},
    # Data-efficient Rainbow for Atari-100k (van Hasselt et al. 2019), Dopamine's DER configuration.
    "der": dict(
        n_steps=10,
        train_freq=1,
        gradient_steps=1,
        learning_starts=1_600,
        learning_rate=1e-4,
        target_update_interval=2_000,
        exploration_steps=2_000,  # DER.gin's ε schedule; inactive while noisy=True (ε = 0, as in Dopamine)
        double_q=True,
        dueling=True,
        noisy=True,
        sigma0=0.1,  # Dopamine's NoisyNetwork (dopamine/jax/networks.py): σ = 0.1/√fan_in
    ),
    # All six components of Hessel et al. 2018 on top of Dopamine's defaults (Dopamine's full_rainbow agent).
    "full": dict(double_q=True, dueling=True, noisy=True, sigma0=0.1),
}


def rainbow_preset(name: str) -> dict[str, Any]:
    """
    A copy of the keyword arguments of a named preset: ``Rainbow("CnnPolicy", env, **rainbow_preset("der"))``.

    :param name: ``"dopamine"`` (the defaults), ``"der"`` (Atari-100k) or ``"full"`` (all components)
    :return: A new kwargs dict
    """
    check_choice("Rainbow preset", name, PRESETS)
    return copy.deepcopy(PRESETS[name])


def _is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(float(value))


@dataclass(frozen=True)
class HeadConfig:
    """
    The switches that shape Rainbow's network (and so are fixed by saved weights), checked once when built.

    Defaults: Dopamine's Rainbow, the agent of Sokar & Castro (2025, Table 1): C51 with 51 atoms on [-10, 10]
    (google/dopamine ``dopamine/jax/agents/rainbow/rainbow_agent.py``, ``num_atoms=51``, ``vmax=10.``), no
    dueling, no noisy nets. Dopamine's full Rainbow (``dopamine/jax/agents/full_rainbow/``) turns on dueling and
    noisy nets with σ₀ = 0.1 (:data:`PRESETS` ``"full"``); 0.5 is Fortunato et al.'s (2018, Sec. 3.2).

    ``Rainbow``, ``RainbowPolicy`` and ``RainbowNetwork`` take these as flat keyword arguments (as users and the
    Zoo YAML pass them); ``Rainbow`` also keeps them as attributes (``model.n_atoms``), as saved models have them.

    :param distributional: C51 head (Bellemare et al. 2017), else one Q-value per action as DQN
    :param n_atoms: Atoms N of the categorical distribution (>= 2 when ``distributional``)
    :param v_min: Smallest atom
    :param v_max: Largest atom
    :param dueling: Dueling value and advantage streams (Wang et al. 2016)
    :param noisy: Factorised noisy linear layers (Fortunato et al. 2018) in the head and in ψ's dense layers
    :param sigma0: σ₀ of the noisy layers (σ is initialised to σ₀/√fan_in)
    :param head_init: Initialisation of the head's plain linear layers, a name of
        :data:`sb3_gap.initializers.INITS`, or None (the default): the features extractor's ``init``
        (``ConvExtractor(init=...)``), ``"torch"`` for other extractors. ``"dopamine"``: the dense initializer of the
        Dopamine network the extractor's encoder follows (Dopamine's ``RainbowNetwork`` for other extractors:
        variance scaling 1/√3, fan-in, uniform, ``dopamine/jax/networks.py``), zero biases; noisy layers keep theirs
    :raises ValueError: One line naming the bad value and what is valid
    """

    distributional: bool = True
    n_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    head_init: str | None = None

    def __post_init__(self) -> None:
        if self.head_init is not None:
            check_init("head_init", self.head_init)
        if self.distributional:
            check(
                is_int(self.n_atoms) and self.n_atoms >= 2,
                f"n_atoms must be an integer >= 2 for the distributional head (C51 uses 51), got {self.n_atoms!r}; "
                "for a scalar Q head pass distributional=False",
            )
        else:
            check(is_int(self.n_atoms) and self.n_atoms >= 1, f"n_atoms must be an integer >= 1, got {self.n_atoms!r}")
        check(
            _is_finite_number(self.v_min) and _is_finite_number(self.v_max),
            f"v_min and v_max must be finite numbers (e.g. v_min=-10, v_max=10), got v_min={self.v_min!r}, v_max={self.v_max!r}",
        )
        check(
            self.v_min < self.v_max,
            f"v_min must be smaller than v_max (e.g. v_min=-10, v_max=10), got v_min={self.v_min!r}, v_max={self.v_max!r}",
        )
        ALGO_ARG_BOUNDS["sigma0"].check("sigma0", self.sigma0)
        # Plain Python numbers (numpy scalars from a sweep become int / float), as the saved attributes always were.
        object.__setattr__(self, "n_atoms", int(self.n_atoms))
        object.__setattr__(self, "v_min", float(self.v_min))
        object.__setattr__(self, "v_max", float(self.v_max))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The switch names, as ``Rainbow`` takes them."""
        return tuple(f.name for f in fields(cls))

    def kwargs(self) -> dict[str, Any]:
        """The switches as flat keyword arguments (``policy_kwargs``, saved with the model)."""
        return asdict(self)


def check_rainbow_args(**kw: Any) -> None:
    """
    Check :class:`~sb3_gap.rainbow.Rainbow`'s arguments other than the head's: each number against its range
    (:func:`sb3_gap.algo_args.check_algo_args`, the table DQN, QR-DQN and PPO share), then what only Rainbow
    asks (buffer_size >= batch_size, the loss, the replay class); raise ``ValueError`` naming the bad value.
    """
    check_algo_args(kw)
    check(
        kw["buffer_size"] >= kw["batch_size"],
        f"buffer_size must be an integer >= batch_size (every batch would repeat the few stored transitions), got "
        f"buffer_size={kw['buffer_size']!r}, batch_size={kw['batch_size']!r}",
    )
    check_choice("loss", kw["loss"], LOSSES)
    cls = kw["replay_buffer_class"]
    check(
        cls is None or (isinstance(cls, type) and issubclass(cls, RainbowReplayBuffer)),
        f"replay_buffer_class must be None or a subclass of RainbowReplayBuffer (which gets n_steps, gamma and priorities from Rainbow), got {cls!r}",
    )
    check(
        not kw["optimize_memory_usage"],
        "optimize_memory_usage=True is not supported: RainbowReplayBuffer stores each frame once already; valid choices: [False]",
    )


def _fused_adam_available(device: th.device) -> bool:
    """Whether ``th.optim.Adam(..., fused=True)`` runs on ``device``: CUDA, and CPU since torch 2.4."""
    if device.type == "cuda":
        return True
    major, minor = (int(part) for part in th.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def default_adam_eps(optimizer_class: type[th.optim.Optimizer] | None, optimizer_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """``optimizer_kwargs`` with Dopamine's Adam epsilon when none are given and the optimizer is (by default) Adam."""
    if optimizer_kwargs is None and optimizer_class in (None, th.optim.Adam):
        return {"eps": DOPAMINE_ADAM_EPS}
    return optimizer_kwargs


def rainbow_optimizer(policy_kwargs: dict[str, Any], device: th.device) -> None:
    """
    Set Dopamine's Adam in ``policy_kwargs`` (in place) unless another optimizer is chosen: Adam (or AdamW, from
    ``sb3_gap.policy_kwargs(weight_decay=...)``, docs/methods.md) with :data:`DOPAMINE_ADAM_EPS`, fused where it runs.

    Fused: the same update rule in one kernel over all parameters instead of a Python loop of ~10 small ops per
    tensor (timings in docs/benchmarks_rainbow.md); also when only Adam's settings are given (the Zoo configs give
    ``eps``); ``fused=False`` or ``foreach`` opts out.
    """
    given_class = policy_kwargs.get("optimizer_class")
    if given_class is not None and given_class is not th.optim.AdamW:
        return
    policy_kwargs["optimizer_class"] = given_class or th.optim.Adam
    given = policy_kwargs.get("optimizer_kwargs")
    optimizer_kwargs: dict[str, Any] = dict(eps=DOPAMINE_ADAM_EPS) if given is None else dict(given)
    if given_class is th.optim.AdamW:
        optimizer_kwargs.setdefault("eps", DOPAMINE_ADAM_EPS)
    if _fused_adam_available(device) and "foreach" not in optimizer_kwargs:
        optimizer_kwargs.setdefault("fused", True)
    policy_kwargs["optimizer_kwargs"] = optimizer_kwargs


__all__ = ["DOPAMINE_ADAM_EPS", "LOSSES", "PRESETS", "HeadConfig", "check_rainbow_args", "rainbow_preset", "rainbow_optimizer"]
