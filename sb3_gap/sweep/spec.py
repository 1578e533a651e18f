"""
The grid of a scaling sweep: :class:`SweepSpec` (bottleneck × width scale × env × seed × algo × encoder
× any listed hyperparameter, with the training budget and where runs are stored), the identity and
folder of each grid cell, and the checks that refuse a bad grid before any trial starts.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sb3_gap  # noqa: F401  (registers MinAtar/* ids)
from sb3_gap.algo_args import check_algo_args
from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.bottlenecks import BOTTLENECKS
from sb3_gap.checks import Refused, check_choice, check_device, check_int
from sb3_gap.envs.protocols import check_env_registered
from sb3_gap.extractor import ENCODERS, ConvExtractor, policy_kwargs
from sb3_gap.optim import OPTIMIZER_ARGS
from sb3_gap.replay_ratio import REPLAY_RATIO, apply_replay_ratio, check_replay_ratio_alone, check_takes_replay_ratio, replay_ratio_schedule
from sb3_gap.sweep.database import check_storage_url
from sb3_gap.zoo_config import SCHEDULE_KEYS, materialize, resolve_section

HP_PREFIX = "hp:"  # grid parameters named "hp:<name>" are hyperparameters
# ConvExtractor arguments go to policy_kwargs; every other hyperparameter goes to the algorithm.
EXTRACTOR_ARGS = frozenset(ConvExtractor.argument_names())  # with the options bottlenecks declare (sparse_method, ...)
EXTRACTOR_ARGS |= frozenset(OPTIMIZER_ARGS)  # policy_kwargs(optimizer=..., weight_decay=...): policy arguments too


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"1e-4"`` → 1e-4, ``"true"`` → True, ``"none"`` → None, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def cell_key(params: dict[str, Any]) -> str:
    """Canonical identity of a grid cell (its parameters as sorted JSON)."""
    return json.dumps(params, sort_keys=True)


def run_name(params: dict[str, Any]) -> str:
    """``qrdqn-impala-gap-x4-s0`` (+ ``-name=value`` per hyperparameter): the run's folder name."""
    hps = "".join(f"-{k[len(HP_PREFIX) :]}={v}" for k, v in sorted(params.items()) if k.startswith(HP_PREFIX))
    return f"{params['algo']}-{params['encoder']}-{params['bottleneck']}-x{params['width_scale']}{hps}-s{params['seed']}"


def env_slug(env_id: str) -> str:
    """
    ``env_id`` as a folder name, the RL Zoo's way (huggingface_sb3's ``EnvironmentName``, which names
    ``logs/<algo>/<slug>_<N>/`` and the Hub's ``<algo>-<slug>.zip``): ``MinAtar/Breakout-v1`` -> ``MinAtar-Breakout-v1``.
    """
    from huggingface_sb3 import EnvironmentName

    return str(EnvironmentName(env_id))


def env_dir(spec: SweepSpec, env_id: str) -> Path:
    """
    ``<out>/<study>/<slug>``; a study whose folder already uses the earlier slug (``/`` -> ``_``, e.g.
    ``results/minatar_scaling/MinAtar_Breakout-v1``) keeps it, so resuming never splits its runs over two folders.
    """
    root = Path(spec.out_dir) / spec.study
    legacy = root / env_id.replace("/", "_").replace(":", "_")
    return legacy if legacy.is_dir() else root / env_slug(env_id)


def run_dir_for(spec: SweepSpec, params: dict[str, Any]) -> Path:
    """The run folder of one grid cell: ``<out>/<study>/<env slug>/<run name>``."""
    return env_dir(spec, params["env"]) / run_name(params)


@dataclass
class SweepSpec:
    """
    A scaling sweep: the grid, the training budget and where everything is stored.

    :param envs: Env ids as given to ``gym.make`` (``"MinAtar/Breakout-v1"``, ``"ALE/Pong-v5"``)
    :param algos: Algorithm names of :data:`sb3_gap.algos.ALGOS`
    :param bottlenecks: Bottlenecks of :data:`sb3_gap.BOTTLENECKS`
    :param width_scales: ψ width multipliers (dim(ψ) = 512 × scale)
    :param seeds: Number of seeds (``0..n-1``) or an explicit list
    :param encoders: Encoders φ of :data:`sb3_gap.ENCODERS`
    :param hyperparams: Extra grid axes ``{name: [values]}``; ``ConvExtractor`` arguments
        (``psi_depth``, ``layer_norm``, ...) go to the network, anything else to the algorithm
    :param fixed: Hyperparameters fixed for every run (same routing as ``hyperparams``)
    :param steps: Environment steps per run
    :param eval_freq: Evaluate every this many environment steps (default: ``steps // 10``)
    :param eval_episodes: Episodes per evaluation
    :param final_evals: A run's final score is the mean of its last ``final_evals`` evaluations
    :param n_envs: Parallel training envs per run
    :param storage: Optuna storage URL (SQLite file, or a shared PostgreSQL/MySQL for many machines)
    :param study: Optuna study name
    :param out_dir: Root of per-trial folders (curves, models, TensorBoard logs): ``out_dir/study/env/run``
    :param save_models: Save each run's final model (``model.zip``)
    :param heartbeat_interval: Seconds between a running trial's heartbeats
    :param grace_period: Seconds without heartbeat before a trial counts as dead (default 3 × interval)
    :param max_retry: Times a dead worker's trial is retried (``None``: forever)
    :param device: Torch device for training (``"auto"`` uses CUDA when present)
    :param conf_dir: Folder of the Zoo configs ``<algo>.yml`` each run's hyperparameters come from
        (default: the repository's ``zoo_configs/``); ``fixed`` and ``hyperparams`` override them
    """

    envs: list[str]
    algos: list[str] = field(default_factory=lambda: ["qrdqn"])
    bottlenecks: list[str] = field(default_factory=lambda: ["flatten", "gap"])
    width_scales: list[int] = field(default_factory=lambda: [1])
    seeds: int | list[int] = 1
    encoders: list[str] = field(default_factory=lambda: ["impala"])
    hyperparams: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    steps: int = 100_000
    eval_freq: int | None = None
    eval_episodes: int = 10
    final_evals: int = 3
    n_envs: int = 1
    storage: str = "sqlite:///runs/sweep.db"
    study: str = "sweep"
    out_dir: str = "runs"
    save_models: bool = True
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_retry: int | None = 3
    device: str = "auto"
    conf_dir: str | None = None

    def __post_init__(self) -> None:
        # Numbers in spirit (numpy scalars from a script) become Python numbers: Optuna and JSON store them.
        for name in ("width_scales", "seeds", "steps", "eval_freq", "eval_episodes", "final_evals", "n_envs"):
            setattr(self, name, _plain(getattr(self, name)))
        self.fixed = {k: _plain(v) for k, v in self.fixed.items()} if isinstance(self.fixed, dict) else self.fixed
        if isinstance(self.hyperparams, dict):
            self.hyperparams = {k: _plain(v) for k, v in self.hyperparams.items()}
        if isinstance(self.seeds, int) and not isinstance(self.seeds, bool):
            self.seeds = list(range(self.seeds))
        if self.eval_freq is None and isinstance(self.steps, int):
            self.eval_freq = max(1, self.steps // 10)

    # ----------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the valid choices; fixed and grid values become typed."""
        self._check_axes()
        self._check_envs()
        self._check_budget_and_storage()
        self._check_hyperparameter_names()
        self._check_hyperparameter_values()
        _check_replay_sizes(self)
        self._check_network_arguments()
        self._check_run_folders()

    def _check_axes(self) -> None:
        """Every grid axis non-empty, without a value twice, and each value one that exists."""
        axes = dict(
            envs=self.envs,
            algos=self.algos,
            bottlenecks=self.bottlenecks,
            width_scales=self.width_scales,
            seeds=self.seeds,
            encoders=self.encoders,
        )
        for name, values in list(axes.items()) + [(f"hyperparams[{k!r}]", v) for k, v in self.hyperparams.items()]:
            if not isinstance(values, (list, tuple)) or len(values) == 0:
                raise Refused(f"Empty grid: {name} has no values ({values!r}); give at least one value")
            if len(set(map(repr, values))) != len(values):
                raise Refused(f"{name} lists a value twice: {values!r}")
        for algo in self.algos:
            check_choice("algorithm", algo, ALGOS)
            try:
                get_algo(algo)
            except ImportError as e:
                raise Refused(f"Algorithm {algo!r} is registered but cannot be imported ({e}); available: {sorted(ALGOS)}") from None
        for encoder in self.encoders:
            check_choice("encoder", encoder, ENCODERS)
        for bottleneck in self.bottlenecks:
            check_choice("bottleneck", bottleneck, BOTTLENECKS)
        for scale in self.width_scales:
            ConvExtractor.validate(width_scale=scale)
        for seed in self.seeds:  # type: ignore[union-attr]
            check_int("seed", seed, minimum=0)

    def _check_envs(self) -> None:
        """Every env id registered, and every run's Zoo section found (with a valid ``replay_ratio``, if any)."""
        for env_id in self.envs:
            check_env_registered(env_id)
            for algo in self.algos:
                section = resolve_section(algo, env_id, self.conf_dir)
                apply_replay_ratio(section.algo_kwargs, n_envs=1, names=(section.source,))

    def _check_budget_and_storage(self) -> None:
        """The step, evaluation and heartbeat counts positive integers, the study name, storage URL and device valid."""
        for name, value in (("steps", self.steps), ("eval_freq", self.eval_freq), ("eval_episodes", self.eval_episodes),
                            ("final_evals", self.final_evals), ("n_envs", self.n_envs), ("heartbeat_interval", self.heartbeat_interval)):  # fmt: skip
            check_int(name, value)
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise Refused(f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval})")
        _check_study_name(self.study)
        check_storage_url(self.storage)
        check_device(self.device, "--device")

    def _check_hyperparameter_names(self) -> None:
        """
        Each fixed or grid hyperparameter named once, not one the sweep sets itself, and one every algorithm of the
        grid takes (or a network argument; ``replay_ratio`` alone and only for algorithms that take it).
        """
        names = list(self.hyperparams) + list(self.fixed)
        check_replay_ratio_alone(names, "the sweep's --set/--hyperparams")
        overlap = sorted(set(self.hyperparams) & set(self.fixed))
        if overlap:
            raise Refused(f"Hyperparameter(s) {overlap} are both a grid axis and fixed; choose one")
        reserved = {"encoder", "bottleneck", "width_scale", "seed", "env", "policy", "policy_kwargs", "tensorboard_log", "device", "verbose"}
        for name in names:
            if name in reserved:
                raise Refused(f"Hyperparameter {name!r} is set by the sweep itself; reserved names: {sorted(reserved)}")
            if name in EXTRACTOR_ARGS:
                continue
            for algo in self.algos:
                accepted = constructor_args(get_algo(algo))
                if name == REPLAY_RATIO:
                    check_takes_replay_ratio(algo, get_algo(algo), {a: get_algo(a) for a in ALGOS})
                    continue
                if name not in accepted:
                    raise Refused(
                        f"Unknown hyperparameter {name!r} for algorithm {algo!r}; valid choices: "
                        f"{sorted(accepted - reserved)} or network arguments {sorted(EXTRACTOR_ARGS - reserved)}"
                    )

    def _check_hyperparameter_values(self) -> None:
        """
        Grid values plain (str, int, float, bool or None), and every fixed and grid value one its algorithms take, as
        the type they take: checked before any trial starts (and before the study records them), so that a typo such
        as ``learning_rate=abc`` never reaches training nor the stored settings.
        """
        for name, values in self.hyperparams.items():
            for value in values:
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise Refused(f"Grid values must be str, int, float, bool or None; {name}={value!r}")
        for algo in self.algos:
            cls = get_algo(algo)
            self.fixed = {k: _check_hp_value(cls, algo, k, v) for k, v in self.fixed.items()}
            self.hyperparams = {k: [_check_hp_value(cls, algo, k, v) for v in vs] for k, vs in self.hyperparams.items()}

    def _check_network_arguments(self) -> None:
        """Every network the grid builds accepted by :func:`~sb3_gap.extractor.policy_kwargs`, with the user's call on the stack."""
        for encoder in self.encoders:
            for bottleneck in self.bottlenecks:
                ext = {k: v for k, v in self.fixed.items() if k in EXTRACTOR_ARGS}
                for k, values in self.hyperparams.items():
                    if k in EXTRACTOR_ARGS:
                        for v in values:
                            policy_kwargs(encoder=encoder, bottleneck=bottleneck, **ext, **{k: v})  # validates
                policy_kwargs(encoder=encoder, bottleneck=bottleneck, **ext)

    def _check_run_folders(self) -> None:
        """Every run's folder a folder of ``out_dir/study/<env>``: no grid value holds a path separator."""
        root = os.path.normpath(os.path.join(self.out_dir, self.study))
        for cell in self.cells():
            name = run_name(cell)
            folder = os.path.normpath(run_dir_for(self, cell))
            if any(sep in name for sep in ("/", "\\")) or os.path.dirname(folder) != os.path.normpath(env_dir(self, cell["env"])):
                raise Refused(
                    f"Run folder {name!r} of cell {cell_key(cell)} would not be a folder of {root}: grid values must not contain '/' or '\\'"
                )

    # ----------------------------------------------------------------------------- grid
    def search_space(self) -> dict[str, list[Any]]:
        """The ``GridSampler`` search space (keys sorted, as Optuna stores it)."""
        space: dict[str, list[Any]] = dict(
            algo=list(self.algos),
            encoder=list(self.encoders),
            env=list(self.envs),
            bottleneck=list(self.bottlenecks),
            width_scale=list(self.width_scales),
            seed=list(self.seeds),  # type: ignore[arg-type]
        )
        space.update({HP_PREFIX + k: list(v) for k, v in self.hyperparams.items()})
        return dict(sorted(space.items()))

    def cells(self) -> list[dict[str, Any]]:
        """
        Every grid cell as a parameter dict, in the order workers start them: the widest ψ first, then
        seed by seed, so that a study cut off early has every seed of the scaled networks (the paper's claim).
        """
        import itertools

        space = self.search_space()
        cells = [dict(zip(space, values)) for values in itertools.product(*space.values())]
        seeds = {seed: i for i, seed in enumerate(space["seed"])}
        return sorted(cells, key=lambda c: (-c["width_scale"], seeds[c["seed"]]))  # stable: the rest keeps grid order

    def training_config(self) -> dict[str, Any]:
        """Settings every worker of a study must share (checked against the study's copy)."""
        config: dict[str, Any] = dict(steps=self.steps, eval_freq=self.eval_freq, eval_episodes=self.eval_episodes,
                      final_evals=self.final_evals, n_envs=self.n_envs, fixed=dict(sorted(self.fixed.items())))  # fmt: skip
        if self.conf_dir is not None:
            config["conf_dir"] = self.conf_dir
        return config


def constructor_args(cls: type) -> set[str]:
    """Keyword arguments a class's constructor accepts (following ``**kwargs`` to the parent classes)."""
    return set(_init_parameters(cls)) - {"self"}


def _plain(value: Any) -> Any:
    """numpy scalars (also inside lists) as Python numbers; everything else as it is."""
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_study_name(study: Any) -> None:
    """A study name is one folder name under ``--out``: no path separators, no ``.``/``..``."""
    if not isinstance(study, str) or not study.strip():
        raise Refused(f"study name must be a non-empty string, got {study!r}")
    if study in (".", "..") or any(c in study for c in ("/", "\\", "\0")) or os.path.isabs(study):
        raise Refused(
            f"study name {study!r} must be a plain folder name (letters, digits, '-', '_', '.'; no '/', '\\' or '..'): "
            "run folders are <out>/<study>/..."
        )


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a class's constructor, following ``**kwargs`` to the parent classes."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        for name, p in params.items():
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(name, p)
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            break
    return found


def _init_defaults(cls: type) -> dict[str, Any]:
    """Default value of each keyword argument of a class's constructor."""
    return {name: p.default for name, p in _init_parameters(cls).items() if p.default is not p.empty}


def _wants_int(param: inspect.Parameter) -> bool:
    """Whether a parameter takes integers only: annotated ``int`` without ``float`` (else: an int default)."""
    note = param.annotation
    text = note if isinstance(note, str) else getattr(note, "__name__", "") if isinstance(note, type) else str(note)
    if text and note is not param.empty:
        return re.search(r"\bint\b", text) is not None and "float" not in text
    return isinstance(param.default, int) and not isinstance(param.default, bool)


def _check_hp_value(cls: type, algo: str, name: str, value: Any) -> Any:
    """
    ``value`` for hyperparameter ``name`` of ``cls``, checked against the constructor's default: a number for a
    number (finite; an integral float becomes an int where the default is an int), a bool for a bool, a string for
    a string, ``lin_<float>`` strings for schedules; then against its range (:func:`sb3_gap.algo_args.check_algo_args`:
    ``batch_size=0``, ``max_grad_norm=-1``, ``tau=2`` are refused). Network arguments are checked by ``ConvExtractor.validate``.

    :raises ValueError: Naming the value and what the hyperparameter takes
    """
    value = _typed_hp_value(cls, algo, name, value)
    if name not in EXTRACTOR_ARGS and name != REPLAY_RATIO:
        check_algo_args({name: value})
    return value


def _typed_hp_value(cls: type, algo: str, name: str, value: Any) -> Any:
    """``value`` with the type the constructor's default has (:func:`_check_hp_value`)."""
    if name in EXTRACTOR_ARGS:
        return value
    if name == REPLAY_RATIO:
        replay_ratio_schedule(value)  # raises naming the value
        return value
    if name in SCHEDULE_KEYS and isinstance(value, str):
        try:
            materialize({name: value})
        except ValueError:
            raise Refused(f"{name}={value!r} for {algo} is neither a number nor a schedule lin_<float> (e.g. lin_2.5e-4)") from None
        return value
    param = _init_parameters(cls).get(name)
    default = inspect.Parameter.empty if param is None else param.default
    if param is None or default is inspect.Parameter.empty or default is None or callable(default):
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise Refused(f"{name}={value!r} for {algo} must be true or false (default {default!r})")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Refused(f"{name}={value!r} for {algo} must be a number (default {default!r})")
        if not np.isfinite(value):
            raise Refused(f"{name}={value!r} for {algo} must be a finite number (default {default!r})")
        if _wants_int(param):
            if float(value) != int(value):
                raise Refused(f"{name}={value!r} for {algo} must be an integer (default {default!r})")
            return int(value)
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise Refused(f"{name}={value!r} for {algo} must be a string (default {default!r})")
    return value


def _check_replay_sizes(spec: SweepSpec) -> None:
    """Refuse ``buffer_size < batch_size`` for off-policy algorithms: every batch would repeat the same few transitions."""
    import itertools

    grid = {k: v for k, v in spec.hyperparams.items() if k in ("buffer_size", "batch_size")}
    for algo in spec.algos:
        defaults = _init_defaults(get_algo(algo))
        if "buffer_size" not in defaults:
            continue
        for env_id in spec.envs:
            base = {**resolve_section(algo, env_id, spec.conf_dir).algo_kwargs, **spec.fixed}
            for values in itertools.product(*grid.values()):
                kwargs = {**base, **dict(zip(grid, values))}
                buffer_size = kwargs.get("buffer_size", defaults["buffer_size"])
                batch_size = kwargs.get("batch_size", defaults.get("batch_size"))
                if isinstance(buffer_size, (int, float)) and isinstance(batch_size, (int, float)) and buffer_size < batch_size:
                    raise Refused(
                        f"buffer_size={buffer_size} is smaller than batch_size={batch_size} for {algo} on {env_id}: every batch "
                        f"would repeat at most {buffer_size} transitions; use buffer_size >= batch_size"
                    )
