"""The RL Zoo's YAML files, read as plain data and checked before the Zoo would act on them.

rl_zoo3 reads ``config.yml`` / ``args.yml`` with ``yaml.UnsafeLoader`` and ``eval``s some of their strings
(``policy_kwargs``, ``normalize``...) or imports the names they give (``env_wrapper``, ``callback``...).
:func:`load_zoo_yaml` reads them with :class:`ZooYamlLoader`, a ``yaml.SafeLoader`` that additionally
understands the two Python tags the Zoo writes (``OrderedDict``, ``tuple``), and :func:`check_zoo_config`
rejects strings that the Zoo would ``eval`` or import unless they are plain literals / names from trusted
packages, and wrappers that write files.
"""

from __future__ import annotations

import ast
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import yaml


class ZooYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus the two Python tags the RL Zoo writes: ``OrderedDict`` and ``tuple``."""


def _construct_ordered_dict(loader: ZooYamlLoader, node: yaml.Node) -> OrderedDict:
    if isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        args = loader.construct_mapping(node, deep=True).get("args", [])
    else:
        raise yaml.constructor.ConstructorError(None, None, "bad OrderedDict node", node.start_mark)
    pairs = args[0] if args else []
    return OrderedDict((k, v) for k, v in pairs)


def _construct_tuple(loader: ZooYamlLoader, node: yaml.SequenceNode) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


ZooYamlLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _construct_ordered_dict)
ZooYamlLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def load_zoo_yaml(path: str | Path) -> Any:
    """
    Read a Zoo YAML file (``config.yml``, ``args.yml``...) without constructing arbitrary Python objects: plain
    YAML plus the Zoo's ``OrderedDict`` and ``tuple`` tags, nothing else (``yaml.UnsafeLoader``, which rl_zoo3
    uses, would run ``!!python/object/apply`` tags).

    :raises ValueError: Naming the file and the tag that is not plain data
    """
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=ZooYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(
            f"{Path(path).name} holds YAML that is not plain data{where}: {problem}; only mappings, lists, scalars, OrderedDict and tuple are read"
        ) from None


# Keys of config.yml whose strings the Zoo evaluates (``eval``) or imports by name.
_ZOO_EVAL_KEYS = ("normalize", "policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "frame_stack", "monitor_kwargs")
_ZOO_IMPORT_KEYS = ("env_wrapper", "vec_env_wrapper", "callback")  # and "policy" when it is a dotted name
TRUSTED_PACKAGES = ("gymnasium.", "stable_baselines3.", "sb3_contrib.", "rl_zoo3.", "sb3_gap.")
#: Wrappers of the trusted packages that write files wherever their arguments say: never accepted from a download.
FILE_WRITING_WRAPPERS = frozenset(
    {
        "gymnasium.wrappers.RecordVideo",
        "gymnasium.wrappers.RecordVideoV0",
        "gymnasium.wrappers.HumanRendering",
        "stable_baselines3.common.monitor.Monitor",
        "stable_baselines3.common.vec_env.VecVideoRecorder",
        "stable_baselines3.common.vec_env.VecMonitor",
        "stable_baselines3.common.callbacks.CheckpointCallback",
        "stable_baselines3.common.callbacks.EvalCallback",
    }  # fmt: skip
)
# Argument names that hold a path (video_folder, log_dir, filename, save_path, best_model_save_path...).
_PATH_ARG = re.compile(r"(?i)(folder|dir|path|file|prefix)")
REFUSED = "refused for downloaded configs (--allow-pickle does not lift this)"


def check_expression(text: str, where: str) -> None:
    """
    Accept what Zoo configs contain: first, what :func:`sb3_gap.zoo_config.parse_kwargs_string` reads
    without ``eval`` (literals and keyword calls of ``dict`` / ``policy_kwargs``, the form of sb3_gap's own
    YAML files); else literals, names and attributes inside ``dict(...)`` calls (``dict(activation_fn=nn.ReLU)``,
    rl_zoo3's form). Any other call and any private name is refused: without calls, evaluating the expression
    only looks names up.
    """
    from sb3_gap.zoo_config import parse_kwargs_string

    try:
        parse_kwargs_string(text)
        return
    except (ValueError, TypeError) as e:  # not in the parser's form (e.g. nn.ReLU): the structural check below decides
        parse_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"{where} = {text!r} is not a Python expression") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "policy_kwargs":
                raise ValueError(f"{where} = {text!r} is not a valid sb3_gap policy_kwargs(...) call ({parse_error}); {REFUSED}")
            if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
                raise ValueError(f"{where} = {text!r} calls something other than dict() or sb3_gap's policy_kwargs(); {REFUSED}")
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("_"):
            raise ValueError(f"{where} = {text!r} uses the private name {name!r}; {REFUSED}")
        if not isinstance(
            node,
            (
                ast.Expression,
                ast.Call,
                ast.Name,
                ast.Load,
                ast.keyword,
                ast.Constant,
                ast.List,
                ast.Tuple,
                ast.Dict,
                ast.Attribute,
                ast.UnaryOp,
                ast.USub,
            ),
        ):
            raise ValueError(f"{where} = {text!r} contains {type(node).__name__}; {REFUSED}")


def _wrappers(value: Any, where: str) -> list[tuple[str, Any]]:
    """(name, kwargs) of each wrapper / callback of a Zoo ``env_wrapper``-style entry."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(value, {})]
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, list):
        return [w for v in value for w in _wrappers(v, where)]
    raise ValueError(f"{where}: unexpected wrapper specification {value!r}")


def looks_like_path(value: Any) -> bool:
    """True when ``value`` names a file or folder: a path-like argument name (``video_folder``, ``log_dir``...) or a
    string with ``/``, ``\\`` or a leading ``~`` / ``.``, anywhere inside dicts and lists."""
    if isinstance(value, dict):
        return any(_PATH_ARG.search(str(k)) or looks_like_path(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(looks_like_path(v) for v in value)
    return isinstance(value, str) and ("/" in value or "\\" in value or value.startswith(("~", ".")))


def check_zoo_config(hyperparams: Any, name: str = "config.yml") -> None:
    """
    Refuse a downloaded ``config.yml`` whose strings the Zoo would ``eval`` (:func:`check_expression`) or
    import from outside :data:`TRUSTED_PACKAGES`, and wrappers / callbacks that write files
    (:data:`FILE_WRITING_WRAPPERS`, or any with a path-like argument such as ``video_folder``), whatever
    ``--allow-pickle`` says: that flag only accepts a pickled *model*.

    :param hyperparams: The loaded YAML
    :param name: File name for the messages
    :raises ValueError: Naming the key and value at fault
    """
    if hyperparams is None:
        return
    if not isinstance(hyperparams, dict):
        raise ValueError(f"{name} must hold a mapping, got {type(hyperparams).__name__}")
    for key in _ZOO_EVAL_KEYS:
        if isinstance(hyperparams.get(key), str):
            check_expression(hyperparams[key], f"{name}: {key}")
    policy = hyperparams.get("policy")
    if isinstance(policy, str) and "." in policy and not policy.startswith(TRUSTED_PACKAGES):
        raise ValueError(f"{name}: policy imports {policy!r}, outside the trusted packages {list(TRUSTED_PACKAGES)}; {REFUSED}")
    for key in _ZOO_IMPORT_KEYS:
        for wrapper, kwargs in _wrappers(hyperparams.get(key), f"{name}: {key}"):
            if not wrapper.startswith(TRUSTED_PACKAGES) or any(part.startswith("_") for part in wrapper.split(".")):
                raise ValueError(f"{name}: {key} imports {wrapper!r}, outside the trusted packages {list(TRUSTED_PACKAGES)}; {REFUSED}")
            if wrapper in FILE_WRITING_WRAPPERS or looks_like_path(kwargs):
                raise ValueError(f"{name}: {key} {wrapper!r} with arguments {kwargs!r} writes or reads files on this machine; {REFUSED}")


def check_env_kwargs(env_kwargs: Any, name: str) -> None:
    """
    Refuse downloaded ``env_kwargs`` that the Zoo would ``eval`` (a string: :func:`check_expression`) or that
    name files or folders on this machine (:func:`looks_like_path`).

    :param env_kwargs: The ``env_kwargs`` entry of a Zoo file (``None``: nothing to check)
    :param name: File name for the messages
    :raises ValueError: Naming the file and the value at fault
    """
    if isinstance(env_kwargs, str):
        check_expression(env_kwargs, f"{name}: env_kwargs")
    elif env_kwargs is not None and looks_like_path(env_kwargs):
        raise ValueError(f"{name}: env_kwargs {env_kwargs!r} name files or folders on this machine; {REFUSED}")
