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
from dataclasses import dataclass, field
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
#: ``replay_buffer_class`` strings our YAML files use (rl_zoo3 evaluates them with ``eval``, sb3_gap.zoo.YAML_NAMES in
#: scope); this reader looks them up here instead.
REPLAY_BUFFER_CLASS_NAMES = ("FrameReplayBuffer", "sb3_gap.replay.FrameReplayBuffer")


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
