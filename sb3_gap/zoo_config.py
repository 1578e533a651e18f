"""The RL Zoo hyperparameter files ``zoo_configs/<algo>.yml``, read the way ``python -m rl_zoo3.train
--conf-file`` reads them, so that sweeps and the Zoo train with one source of truth.

rl_zoo3 (``rl_zoo3/exp_manager.py``: ``read_hyperparameters`` and ``_preprocess_hyperparams``) picks
the section named by the env id, else ``atari`` for Atari ids, else ``default``; it then takes the
environment-level keys out (``n_timesteps``, ``n_envs``, ``env_wrapper``, ``env_kwargs``,
``frame_stack``, ...), turns ``lin_<x>`` strings into linear schedules and ``eval``s string
``policy_kwargs``. :func:`resolve_section` does the same, except that string ``policy_kwargs`` are
*parsed*, never evaluated: :func:`parse_kwargs_string` accepts literals, ``dict(...)`` and
``policy_kwargs(...)`` calls only (the forms our YAML files use), so a config that came from
elsewhere (a Hub download) cannot run code through them.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from sb3_gap.checks import Refused

#: Where the YAML files live in a source checkout (``pip install -e .``): the repository's ``zoo_configs/``.
ZOO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "zoo_configs"

#: Keys rl_zoo3 takes out of a section before the rest goes to the algorithm's constructor.
ENV_KEYS = frozenset(
    {
        "n_timesteps",
        "n_envs",
        "env_wrapper",
        "env_kwargs",
        "frame_stack",
        "normalize",
        "vec_env_wrapper",
        "callback",
        "monitor_kwargs",
        "policy",
    }  # fmt: skip
)
#: Keys of ``policy_kwargs`` that describe the network (the sweep's grid sets them per cell).
NETWORK_KEYS = frozenset({"features_extractor_class", "features_extractor_kwargs", "net_arch"})
#: Hyperparameters rl_zoo3 turns from ``lin_<x>`` strings into linear schedules.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")
#: ``replay_buffer_class`` strings our YAML files use (rl_zoo3 ``eval``s them with sb3_gap.zoo.YAML_NAMES in
#: scope); this reader looks them up here instead.
REPLAY_BUFFER_CLASS_NAMES = ("FrameReplayBuffer", "sb3_gap.replay.FrameReplayBuffer")


#: The sweep's and the Zoo YAML's name for gradient updates per env step; it sets ``train_freq`` and ``gradient_steps``.
REPLAY_RATIO = "replay_ratio"
#: The SB3 arguments :data:`REPLAY_RATIO` sets.
REPLAY_RATIO_SETS = ("train_freq", "gradient_steps")
#: Largest denominator of a replay ratio p/q (one rollout of q steps, p updates).
MAX_REPLAY_RATIO_DENOMINATOR = 64
#: Most gradient updates per env step sb3_gap takes, wherever a replay ratio is given: ``replay_ratio`` in a Zoo YAML,
#: ``--hyperparams``, ``sb3-gap sweep --set/--hyperparams`` and presets (:func:`replay_ratio_schedule`), and Rainbow's
#: ``gradient_steps`` per ``train_freq`` env steps (:func:`check_updates_per_env_step`). The literature's highest are 8
#: (BBF) to 16 (SR-SPR); ``1e9`` would make each env step run 1e9 updates, a run that hangs without a word.
MAX_REPLAY_RATIO = 64


def check_replay_ratio_bound(ratio: float | Fraction, what: str) -> None:
    """Refuse more than :data:`MAX_REPLAY_RATIO` gradient updates per env step; ``what`` names the value as given."""
    if ratio > MAX_REPLAY_RATIO:
        raise Refused(
            f"{what} is {float(ratio):g} gradient updates per env step, more than sb3_gap takes ({MAX_REPLAY_RATIO}; "
            "e.g. 0.25 = one update every 4 steps as Dopamine, 1, 2, 8 as BBF)"
        )


def check_updates_per_env_step(gradient_steps: Any, train_freq: Any, n_envs: int = 1) -> None:
    """
    Rainbow's replay ratio, ``gradient_steps`` per ``train_freq`` steps of ``n_envs`` envs, within :data:`MAX_REPLAY_RATIO`
    (the bound :func:`replay_ratio_schedule` applies). ``gradient_steps=-1`` (as many as env steps) and a ``train_freq``
    in episodes have no fixed ratio and pass; malformed values are left to :func:`sb3_gap.algo_args.check_algo_args`.
    """
    freq, unit = tuple(train_freq) if isinstance(train_freq, (tuple, list)) and len(train_freq) == 2 else (train_freq, "step")
    unit = getattr(unit, "value", unit)  # SB3's TrainFrequencyUnit enum, or its string
    if unit != "step" or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (gradient_steps, freq, n_envs)):
        return
    if gradient_steps > 0 and freq > 0 and n_envs > 0:
        check_replay_ratio_bound(
            Fraction(int(gradient_steps), int(freq) * int(n_envs)),
            f"gradient_steps={gradient_steps} per train_freq={freq} step(s) of {n_envs} env(s)",
        )


def takes_replay_ratio(cls: Any) -> bool:
    """Whether an algorithm class takes what :data:`REPLAY_RATIO` sets: SB3's off-policy algorithms (DQN, QR-DQN, SAC,
    TQC, Rainbow...); on-policy ones (PPO, A2C) train on each rollout once and have no ``train_freq``/``gradient_steps``."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    return isinstance(cls, type) and issubclass(cls, OffPolicyAlgorithm)


def check_takes_replay_ratio(algo: str, cls: Any, algos: dict[str, Any]) -> None:
    """
    Refuse :data:`REPLAY_RATIO` for an algorithm that does not take ``train_freq`` and ``gradient_steps``.

    :param algo: The algorithm's name, as given
    :param cls: Its class
    :param algos: Every algorithm of the entry point by name (to list those that take a replay ratio)
    """
    if not takes_replay_ratio(cls):
        takers = sorted(name for name, other in algos.items() if takes_replay_ratio(other))
        raise Refused(
            f"{REPLAY_RATIO} sets {list(REPLAY_RATIO_SETS)}, which {algo!r} does not take (on-policy: no replay); algorithms that do: {takers}"
        )


def replay_ratio_schedule(ratio: Any, n_envs: int = 1) -> tuple[int, int]:
    """
    SB3's ``(train_freq, gradient_steps)`` for ``ratio`` gradient updates per env step (Dopamine's update period 4 =
    ratio 0.25): ``ratio`` = p/q in lowest terms gives ``train_freq`` = q vec-env steps (of ``n_envs`` env steps each)
    and ``gradient_steps`` = p, after reducing p·n_envs/q. 0.25 -> (4, 1), 1 -> (1, 1), 2 -> (1, 2), 0.75 -> (4, 3).

    :param ratio: A positive number p/q with q <= :data:`MAX_REPLAY_RATIO_DENOMINATOR`, at most :data:`MAX_REPLAY_RATIO`
    :param n_envs: Parallel envs; SB3's ``train_freq`` counts steps of the vectorized env
    :raises ValueError: One line naming the bad value and what is accepted
    """
    what = (
        f"must be a positive number p/q with q <= {MAX_REPLAY_RATIO_DENOMINATOR}, at most {MAX_REPLAY_RATIO} (gradient "
        "updates per env step, e.g. 0.25 = one update every 4 steps as Dopamine, 1, 2)"
    )
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not math.isfinite(float(ratio)) or ratio <= 0:
        raise Refused(f"{REPLAY_RATIO}={ratio!r} {what}")
    check_replay_ratio_bound(ratio, f"{REPLAY_RATIO}={ratio!r}")
    frac = Fraction(float(ratio)).limit_denominator(MAX_REPLAY_RATIO_DENOMINATOR)
    if abs(float(frac) - float(ratio)) > 1e-9 * float(ratio):
        raise Refused(f"{REPLAY_RATIO}={ratio!r} {what}")
    per_rollout = frac * int(n_envs)
    return per_rollout.denominator, per_rollout.numerator


def check_replay_ratio_alone(names: Any, where: str = "") -> None:
    """Refuse :data:`REPLAY_RATIO` given together with what it sets (``train_freq``, ``gradient_steps``) in one place.

    :param names: The hyperparameter names given there (a dict or a list of names)
    :param where: Where they were given (a YAML section, ``--hyperparams``), for the message
    """
    clash = [k for k in REPLAY_RATIO_SETS if k in names]
    if REPLAY_RATIO in names and clash:
        ratio = f"={names[REPLAY_RATIO]!r}" if isinstance(names, dict) else ""
        raise Refused(
            f"{REPLAY_RATIO}{ratio} and {clash} both given{f' in {where}' if where else ''}: {REPLAY_RATIO} sets "
            f"{list(REPLAY_RATIO_SETS)}; give one or the other"
        )


def apply_replay_ratio(*layers: dict[str, Any], n_envs: int = 1, names: tuple[str, ...] = ()) -> dict[str, Any]:
    """
    Merge hyperparameter ``layers`` (later ones win), each layer's ``replay_ratio`` turned into ``train_freq`` and
    ``gradient_steps`` (:func:`replay_ratio_schedule`) before it is merged: a sweep's ``--set replay_ratio=1``
    replaces the Zoo section's ``train_freq: 4``. The target network keeps its period in env steps (SB3's
    ``target_update_interval``, Dopamine's ``target_update_period`` in agent steps), whatever the ratio.

    :param layers: E.g. the Zoo section's algorithm kwargs, then the sweep's overrides
    :param n_envs: Parallel envs of the run
    :param names: A name per layer for the error message
    :raises ValueError: A bad ratio, or a layer giving ``replay_ratio`` with ``train_freq`` or ``gradient_steps``
    """
    out: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        layer = dict(layer)
        if REPLAY_RATIO in layer:
            check_replay_ratio_alone(layer, names[i] if i < len(names) else "")
            train_freq, gradient_steps = replay_ratio_schedule(layer.pop(REPLAY_RATIO), n_envs)
            layer.update(train_freq=train_freq, gradient_steps=gradient_steps)
        out.update(layer)
    return out


def _safe_callables() -> dict[str, Any]:
    from sb3_gap.extractor import policy_kwargs

    return {"dict": dict, "policy_kwargs": policy_kwargs}


def _optimizer_names() -> dict[str, Any]:
    """Optimizer classes a YAML may name as ``optimizer_class`` (rl_zoo3 style: ``dict(optimizer_class=Kron)``)."""
    import torch as th

    from sb3_gap.optim import Kron

    names: dict[str, Any] = {"Kron": Kron, "sb3_gap.optim.Kron": Kron}
    for prefix in ("th.optim.", "torch.optim."):
        names.update({prefix + "Adam": th.optim.Adam, prefix + "AdamW": th.optim.AdamW})
    return names


def parse_kwargs_string(text: str, callables: dict[str, Any] | None = None) -> Any:
    """
    Evaluate a Zoo YAML string such as ``"dict(policy_kwargs(encoder='impala', bottleneck='gap'), n_quantiles=200)"``
    without ``eval``: only literals (numbers, strings, booleans, ``None``, lists, tuples, dicts), unary
    minus, keyword calls of the allow-listed names (``dict``, ``policy_kwargs``; ``dict`` also takes one
    mapping positionally) and the optimizer class names ``Kron``, ``th.optim.Adam`` and ``th.optim.AdamW``
    (also ``torch.optim.*``) are accepted.

    :param text: The string from the YAML file
    :param callables: Names that may be called (default: ``dict`` and :func:`sb3_gap.policy_kwargs`)
    :raises ValueError: Naming the construct that is not allowed
    """
    allowed = _safe_callables() if callables is None else callables
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise Refused(f"Cannot parse {text!r} as Python keyword arguments ({e.msg})") from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.Name, ast.Attribute)) and ast.unparse(node) in _optimizer_names():
            return _optimizer_names()[ast.unparse(node)]
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in allowed:
            kwargs: dict[str, Any] = {}
            if node.func.id == "dict" and len(node.args) == 1:  # dict(mapping, **more), as in dict(policy_kwargs(...), ...)
                first = value(node.args[0])
                if not isinstance(first, dict):
                    raise Refused(f"dict(...) needs a mapping as its positional argument in {text!r}")
                kwargs.update(first)
            elif node.args:
                raise Refused(f"{node.func.id}(...) takes keyword arguments only in {text!r}")
            for kw in node.keywords:
                if kw.arg is None:  # dict(**x) / f(**x): merge a mapping
                    merged = value(kw.value)
                    if not isinstance(merged, dict):
                        raise Refused(f"** needs a mapping in {text!r}")
                    kwargs.update(merged)
                else:
                    kwargs[kw.arg] = value(kw.value)
            return allowed[node.func.id](**kwargs)
        what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
        raise Refused(f"{what!r} is not allowed in {text!r}; allowed: literals and keyword calls of {sorted(allowed)}")

    return value(tree.body)


def config_path(algo: str, conf_dir: str | Path | None = None) -> Path:
    """``<conf_dir>/<algo>.yml`` (default: :data:`ZOO_CONFIG_DIR`), with a clear error when it is missing."""
    folder = Path(conf_dir) if conf_dir is not None else ZOO_CONFIG_DIR
    path = folder / f"{algo}.yml"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.yml")) if folder.is_dir() else []
        raise Refused(f"No Zoo config for algorithm {algo!r}: {path} does not exist; configs in {folder}: {have}")
    return path


def _is_atari(env_id: str) -> bool:
    # rl_zoo3's ExperimentManager.is_atari, extended by sb3_gap's hook (sb3_gap.zoo) to Dopamine/* and Atari100k/*.
    from sb3_gap.envs.atari import is_sb3_gap_atari

    if is_sb3_gap_atari(env_id):
        return True
    try:
        return "AtariEnv" in str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        return False


def load_section(algo: str, env_id: str, conf_dir: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """
    The raw section of ``<algo>.yml`` that rl_zoo3 would use for ``env_id``: the env id's own key,
    else ``atari`` for Atari ids, else ``default``.

    :return: ``(section name, a copy of its hyperparameters)``
    """
    path = config_path(algo, conf_dir)
    with open(path, encoding="utf-8") as f:
        sections = yaml.safe_load(f) or {}
    if env_id in sections:
        name = env_id
    elif _is_atari(env_id) and "atari" in sections:
        name = "atari"
    elif "default" in sections:
        name = "default"
    else:
        close = difflib.get_close_matches(env_id, [k for k in sections if "/" in k or k.endswith(("-v0", "-v1", "-v4", "-v5"))], n=5, cutoff=0.5)
        raise Refused(f"No section for env {env_id!r} in {path} (and no 'atari'/'default' that applies); close keys: {close}")
    return name, dict(sections[name])


@dataclass
class ZooSettings:
    """
    One env's resolved Zoo section, split as rl_zoo3 splits it.

    :param algo: Algorithm name
    :param env_id: Env id
    :param source: ``"<file>:<section>"`` it came from
    :param algo_kwargs: Constructor arguments of the algorithm (``policy_kwargs`` without the network keys)
    :param policy_extra: ``policy_kwargs`` entries other than the network (``optimizer_kwargs``, ``n_quantiles``...)
    :param network: The section's own network (``features_extractor_kwargs``), for reference
    :param env: Environment-level keys (``n_timesteps``, ``env_kwargs``, ``env_wrapper``, ``frame_stack``, ...)
    :param raw: The section as written in the YAML file
    """

    algo: str
    env_id: str
    source: str
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    policy_extra: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def resolve_section(algo: str, env_id: str, conf_dir: str | Path | None = None) -> ZooSettings:
    """
    Read and split the Zoo section for ``(algo, env_id)``: see :class:`ZooSettings`.
    String ``policy_kwargs`` are parsed with :func:`parse_kwargs_string` (no ``eval``).
    """
    name, section = load_section(algo, env_id, conf_dir)
    raw = dict(section)
    env = {k: section.pop(k) for k in list(section) if k in ENV_KEYS}
    pk = section.pop("policy_kwargs", {})
    if isinstance(pk, str):
        pk = parse_kwargs_string(pk)
    if not isinstance(pk, dict):
        raise Refused(f"policy_kwargs in {config_path(algo, conf_dir)}:{name} must be a dict, got {pk!r}")
    network = dict(pk.get("features_extractor_kwargs", {}))
    policy_extra = {k: v for k, v in pk.items() if k not in NETWORK_KEYS}
    where = f"{config_path(algo, conf_dir)}:{name}"
    buffer_class = section.get("replay_buffer_class")
    if isinstance(buffer_class, str):
        if buffer_class.strip() not in REPLAY_BUFFER_CLASS_NAMES:
            raise Refused(f"replay_buffer_class {buffer_class!r} in {where} is not one of {list(REPLAY_BUFFER_CLASS_NAMES)}")
        from sb3_gap.replay import FrameReplayBuffer

        section["replay_buffer_class"] = FrameReplayBuffer
    if isinstance(section.get("replay_buffer_kwargs"), str):
        section["replay_buffer_kwargs"] = parse_kwargs_string(section["replay_buffer_kwargs"], callables={"dict": dict})
    if isinstance(section.get("train_freq"), list):
        section["train_freq"] = tuple(section["train_freq"])
    return ZooSettings(
        algo=algo,
        env_id=env_id,
        source=f"{config_path(algo, conf_dir).name}:{name}",
        algo_kwargs=section,
        policy_extra=policy_extra,
        network=network,
        env=env,
        raw=raw,
    )


def materialize(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn rl_zoo3's ``lin_<x>`` schedule strings into SB3 schedules (``LinearSchedule(x, 0, 1)``, i.e.
    x × progress remaining, as rl_zoo3's ``SimpleLinearSchedule``); other values are returned as they are."""
    from stable_baselines3.common.utils import LinearSchedule

    out = dict(kwargs)
    for key in SCHEDULE_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            kind, _, initial = value.partition("_")
            try:
                start = float(initial)
            except ValueError:
                start = None
            if kind != "lin" or start is None:
                raise Refused(f"{key}={value!r}: schedules must be written lin_<float> (e.g. lin_2.5e-4)")
            out[key] = LinearSchedule(start, 0.0, 1.0)
    return out
