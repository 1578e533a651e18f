"""The RL Zoo's YAML files, read as plain data and checked before the Zoo would act on them.

rl_zoo3 reads ``config.yml`` / ``args.yml`` with ``yaml.UnsafeLoader`` and ``eval``s some of their strings
(``policy_kwargs``, ``normalize``...) or imports the names they give (``env_wrapper``, ``callback``...).
:func:`load_zoo_yaml` reads them with :class:`ZooYamlLoader`, a ``yaml.SafeLoader`` that additionally
understands the two Python tags the Zoo writes (``OrderedDict``, ``tuple``), and :func:`check_zoo_config`
rejects strings that the Zoo would ``eval`` unless they are plain literals, class names that it would import unless
they are in an explicit allow-list (:func:`allowed_classes`), and wrappers that write files.
"""

from __future__ import annotations

import ast
import inspect
import math
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import yaml

from sb3_gap.algo_args import Bound
from sb3_gap.checks import MAX_FRAME_STACK, Refused, check_int, is_int
from sb3_gap.hub.common import check_nesting, nesting_error, read_text
from sb3_gap.hub.safe import MAX_OBS_ELEMENTS


class ZooYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus the two Python tags the RL Zoo writes: ``OrderedDict`` and ``tuple``."""


#: The tag under which the Zoo (``yaml.dump`` of an ``OrderedDict``) writes its ``config.yml`` / ``args.yml``.
ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"
_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"
_PAIRS = "an OrderedDict is read from 'args' only, holding one list of [key, value] pairs"


def _refuse_node(node: yaml.Node, problem: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _construct_ordered_dict(loader: ZooYamlLoader, node: yaml.Node) -> OrderedDict:
    """
    The Zoo's ``OrderedDict`` from its ``args`` only: ``[[[key, value], ...]]`` (the form ``yaml.dump`` writes) or a
    mapping whose one key is ``args``. Any other key (``kwds``, ``dictitems``, ``state``, ``listitems``) is refused:
    ``yaml.UnsafeLoader``, which rl_zoo3 uses, applies them too, so they could hide keys, or override the ones checked.
    """
    if isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else key_node.tag
            if key != "args":
                raise _refuse_node(node, f"an OrderedDict with the key {key!r} (refused: {_PAIRS}; rl_zoo3's yaml.UnsafeLoader would apply it)")
        args = loader.construct_mapping(node, deep=True).get("args", [])
    else:
        raise _refuse_node(node, f"an OrderedDict that is a scalar (refused: {_PAIRS})")
    if not isinstance(args, list) or len(args) > 1:
        raise _refuse_node(node, f"an OrderedDict with args {args!r} (refused: {_PAIRS})")
    pairs = args[0] if args else []
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
        raise _refuse_node(node, f"an OrderedDict with args {args!r} (refused: {_PAIRS})")
    try:
        return OrderedDict((key, value) for key, value in pairs)
    except TypeError:  # an unhashable key
        raise _refuse_node(node, f"an OrderedDict with an unhashable key in {pairs!r}") from None


def _construct_tuple(loader: ZooYamlLoader, node: yaml.Node) -> tuple:
    if not isinstance(node, yaml.SequenceNode):
        raise _refuse_node(node, "a python/tuple that is not a sequence")
    return tuple(loader.construct_sequence(node, deep=True))


ZooYamlLoader.add_constructor(ORDERED_DICT_TAG, _construct_ordered_dict)
ZooYamlLoader.add_constructor(_TUPLE_TAG, _construct_tuple)


class ZooYamlDumper(yaml.SafeDumper):
    """
    ``yaml.SafeDumper`` writing ``OrderedDict`` and ``tuple`` with the tags the Zoo's ``yaml.dump`` uses, never an anchor
    or alias: what :func:`write_zoo_yaml` writes, ``yaml.UnsafeLoader`` (rl_zoo3) and :class:`ZooYamlLoader` read alike.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_ordered_dict(dumper: ZooYamlDumper, data: OrderedDict) -> yaml.Node:
    """As PyYAML's ``Representer.represent_ordered_dict`` (the Zoo's form): the tag, then one list of [key, value] pairs."""
    return dumper.represent_sequence(ORDERED_DICT_TAG, [[[key, value] for key, value in data.items()]])


def _represent_tuple(dumper: ZooYamlDumper, data: tuple) -> yaml.Node:
    return dumper.represent_sequence(_TUPLE_TAG, list(data))


ZooYamlDumper.add_representer(OrderedDict, _represent_ordered_dict)
ZooYamlDumper.add_representer(tuple, _represent_tuple)


def write_zoo_yaml(data: Any, path: str | Path) -> None:
    """
    Write ``data``, as read by :func:`load_zoo_yaml` and checked, in the Zoo's format: what a pull hands the RL Zoo is
    this serialization of the checked data, never the downloaded bytes (which another YAML loader may read otherwise).

    :param data: Plain data (mappings, lists, scalars, ``OrderedDict``, ``tuple``)
    :param path: The file to write
    """
    Path(path).write_text(yaml.dump(data, Dumper=ZooYamlDumper, sort_keys=False), encoding="utf-8")


class NoAliasZooYamlLoader(ZooYamlLoader):
    """:class:`ZooYamlLoader` that refuses anchors and aliases (``&a`` / ``*a``, merge keys ``<<: *a``): a few hundred
    bytes of nested aliases expand to gigabytes when walked ("billion laughs"). For YAML read from a download."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise yaml.composer.ComposerError(None, None, f"found the {kind}{event.anchor}: anchors and aliases are refused", event.start_mark)
        return super().compose_node(parent, index)


#: Largest YAML file read (a Zoo ``config.yml`` is a few kB): checked before it is read.
MAX_YAML_BYTES = 2**20


def load_zoo_yaml(path: str | Path, *, allow_aliases: bool = False) -> Any:
    """
    Read a Zoo YAML file (``config.yml``, ``args.yml``...) without constructing arbitrary Python objects: plain
    YAML plus the Zoo's ``OrderedDict`` and ``tuple`` tags, nothing else (``yaml.UnsafeLoader``, which rl_zoo3
    uses, would run ``!!python/object/apply`` tags). Files above :data:`MAX_YAML_BYTES` are refused unread, as are
    files that are not UTF-8 or nest deeper than :data:`~sb3_gap.hub.common.MAX_NESTING`.

    :param path: The file
    :param allow_aliases: Accept YAML anchors and aliases: only for local files (a run folder being pushed); a
        download is read with :class:`NoAliasZooYamlLoader` (the default)
    :raises ValueError: Naming the file and the tag, alias, size, encoding or nesting that is not accepted
    """
    size = os.path.getsize(path)
    if size > MAX_YAML_BYTES:
        raise Refused(
            f"{Path(path).name} has {size:,} bytes, more than the {MAX_YAML_BYTES:,} a Zoo YAML file may have (sb3_gap.hub.zoo_yaml.MAX_YAML_BYTES)"
        )
    loader = ZooYamlLoader if allow_aliases else NoAliasZooYamlLoader
    text = read_text(path)  # not UTF-8: an error naming the file
    try:
        loaded = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise nesting_error(Path(path).name) from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise Refused(
            f"{Path(path).name} holds YAML that is not plain data{where}: {problem}; only mappings, lists, scalars, OrderedDict and tuple "
            f"are read{'' if allow_aliases else ', without anchors or aliases'}"
        ) from None
    check_nesting(loaded, Path(path).name)
    return loaded


# Keys of config.yml whose strings the Zoo evaluates (``eval``) or imports by name.
_ZOO_EVAL_KEYS = ("normalize", "policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "frame_stack", "monitor_kwargs")
_ZOO_IMPORT_KEYS = ("env_wrapper", "vec_env_wrapper", "callback")  # and "policy" when it is a dotted name
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
        "rl_zoo3.callbacks.EvalCallback",
        "rl_zoo3.callbacks.SaveVecNormalizeCallback",
    }  # fmt: skip
)
#: Modules whose ``gymnasium.Wrapper`` subclasses a downloaded ``env_wrapper`` may name (gymnasium's wrappers, SB3's and
#: rl_zoo3's Atari / frame wrappers, sb3_gap's env wrappers); nothing else, and never a function or another callable.
ENV_WRAPPER_MODULES = ("gymnasium.wrappers", "stable_baselines3.common.atari_wrappers", "rl_zoo3.wrappers", "sb3_gap.envs.minatar")
#: Modules whose ``VecEnvWrapper`` subclasses a downloaded ``vec_env_wrapper`` may name.
VEC_ENV_WRAPPER_MODULES = ("stable_baselines3.common.vec_env", "sb3_gap.envs.protocols")
#: The callbacks a downloaded ``callback`` may name: they take no file or folder and build nothing from their arguments.
CALLBACKS = (
    "stable_baselines3.common.callbacks.ProgressBarCallback",
    "stable_baselines3.common.callbacks.LogEveryNTimesteps",
    "stable_baselines3.common.callbacks.StopTrainingOnMaxEpisodes",
    "rl_zoo3.callbacks.RawStatisticsCallback",
)
# Wrapper arguments that multiply what a wrapper allocates per observation: bounded like frame_stack.
_STACK_ARGS = ("frame_stack", "stack_size", "n_stack", "num_stack", "n_frames")
#: Most environment steps one call of an allow-listed wrapper may take (``noop_max`` no-ops at each reset, ``frame_skip``
#: / ``skip`` / ``num_repeats`` steps per step): a downloaded ``noop_max: 1000000000`` would make enjoy hang at reset.
MAX_WRAPPER_STEPS = 1000
_NOOPS = Bound(0, MAX_WRAPPER_STEPS, integer=True, example="30")
_REPEATS = Bound(1, MAX_WRAPPER_STEPS, integer=True, example="4")
_HISTORY = Bound(0, MAX_FRAME_STACK, integer=True, example="2")
#: Arguments of allow-listed wrappers that size a loop or an allocation, with their bounds (by the class's dotted name).
WRAPPER_ARG_BOUNDS: dict[str, dict[str, Bound]] = {
    "gymnasium.wrappers.AtariPreprocessing": {"noop_max": _NOOPS, "frame_skip": _REPEATS},
    "stable_baselines3.common.atari_wrappers.AtariWrapper": {"noop_max": _NOOPS, "frame_skip": _REPEATS},
    "stable_baselines3.common.atari_wrappers.NoopResetEnv": {"noop_max": _NOOPS},
    "stable_baselines3.common.atari_wrappers.MaxAndSkipEnv": {"skip": _REPEATS},
    "gymnasium.wrappers.MaxAndSkipObservation": {"skip": _REPEATS},
    "gymnasium.wrappers.RepeatAction": {"num_repeats": _REPEATS},
    "rl_zoo3.wrappers.FrameSkip": {"skip": _REPEATS},
    "gymnasium.wrappers.DelayObservation": {"delay": _HISTORY},
    "rl_zoo3.wrappers.HistoryWrapper": {"horizon": _HISTORY},
    "rl_zoo3.wrappers.HistoryWrapperObsDict": {"horizon": _HISTORY},
}
#: Arguments of allow-listed wrappers that give the size of the observations they make, with the number of image sides
#: an integer stands for (``screen_size: 84`` is 84x84): together at most :data:`sb3_gap.hub.safe.MAX_OBS_ELEMENTS`.
WRAPPER_IMAGE_ARGS: dict[str, dict[str, int]] = {
    "gymnasium.wrappers.AtariPreprocessing": {"screen_size": 2},
    "stable_baselines3.common.atari_wrappers.AtariWrapper": {"screen_size": 2},
    "stable_baselines3.common.atari_wrappers.WarpFrame": {"width": 1, "height": 1},
    "gymnasium.wrappers.ResizeObservation": {"shape": 1},
    "gymnasium.wrappers.ReshapeObservation": {"shape": 1},
    "rl_zoo3.wrappers.YAMLCompatResizeObservation": {"shape": 1},
}
#: Allow-listed modules' wrappers whose arguments size an allocation in a way not bounded here (``bins`` per dimension):
#: left out of the allow-list.
UNBOUNDED_WRAPPERS = frozenset({"gymnasium.wrappers.DiscretizeAction", "gymnasium.wrappers.DiscretizeObservation"})
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
        raise Refused(f"{where} = {text!r} is not a Python expression") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "policy_kwargs":
                raise Refused(f"{where} = {text!r} is not a valid sb3_gap policy_kwargs(...) call ({parse_error}); {REFUSED}")
            if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
                raise Refused(f"{where} = {text!r} calls something other than dict() or sb3_gap's policy_kwargs(); {REFUSED}")
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("_"):
            raise Refused(f"{where} = {text!r} uses the private name {name!r}; {REFUSED}")
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
            raise Refused(f"{where} = {text!r} contains {type(node).__name__}; {REFUSED}")


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
    raise Refused(f"{where}: unexpected wrapper specification {value!r}")


def looks_like_path(value: Any) -> bool:
    """True when ``value`` names a file or folder: a path-like argument name (``video_folder``, ``log_dir``...) or a
    string with ``/``, ``\\`` or a leading ``~`` / ``.``, anywhere inside dicts and lists."""
    if isinstance(value, dict):
        return any(_PATH_ARG.search(str(k)) or looks_like_path(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(looks_like_path(v) for v in value)
    return isinstance(value, str) and ("/" in value or "\\" in value or value.startswith(("~", ".")))


def _classes_in(modules: tuple[str, ...], base: type) -> dict[str, type]:
    """Public subclasses of ``base`` in ``modules``, by every dotted name the Zoo's ``get_class_by_name`` could import
    them under here (``<module>.<name>`` and the class's own ``<__module__>.<name>``), file-writing ones left out."""
    import importlib
    import inspect

    found: dict[str, type] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for attr, cls in vars(module).items():  # vars, not dir: no lazy import (gymnasium's jax / torch converters)
            if attr.startswith("_") or not inspect.isclass(cls) or not issubclass(cls, base) or inspect.isabstract(cls):
                continue
            names = {f"{module_name}.{attr}", f"{cls.__module__}.{cls.__name__}"}
            if names & (FILE_WRITING_WRAPPERS | UNBOUNDED_WRAPPERS):  # the class itself, under whichever name
                continue
            found.update((dotted, cls) for dotted in names if not any(part.startswith("_") for part in dotted.split(".")))
    return found


_ALLOWED: dict[str, dict[str, type]] = {}


def allowed_classes(key: str) -> dict[str, type]:
    """
    The classes a downloaded ``config.yml`` may name under ``key``, by dotted name: an explicit allow-list, never
    "anything under a trusted package" (which would admit functions such as ``gymnasium.make``).

    * ``env_wrapper``: ``gymnasium.Wrapper`` subclasses of :data:`ENV_WRAPPER_MODULES`;
    * ``vec_env_wrapper``: ``VecEnvWrapper`` subclasses of :data:`VEC_ENV_WRAPPER_MODULES`;
    * ``callback``: :data:`CALLBACKS`;
    * ``policy``: the policy classes of :data:`sb3_gap.algos.ALGOS` (their ``policy_aliases``).

    File-writing classes (:data:`FILE_WRITING_WRAPPERS`) and wrappers whose sizes are not bounded
    (:data:`UNBOUNDED_WRAPPERS`) are never in it.

    :param key: ``"env_wrapper"``, ``"vec_env_wrapper"``, ``"callback"`` or ``"policy"``
    :raises ValueError: For another key
    """
    if key not in _ALLOWED:
        import gymnasium as gym
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.vec_env import VecEnvWrapper

        from sb3_gap.algos import ALGOS, get_algo

        if key == "env_wrapper":
            _ALLOWED[key] = _classes_in(ENV_WRAPPER_MODULES, gym.Wrapper)
        elif key == "vec_env_wrapper":
            _ALLOWED[key] = _classes_in(VEC_ENV_WRAPPER_MODULES, VecEnvWrapper)
        elif key == "callback":
            modules = tuple(sorted({name.rsplit(".", 1)[0] for name in CALLBACKS}))
            _ALLOWED[key] = {k: v for k, v in _classes_in(modules, BaseCallback).items() if k in CALLBACKS}
        elif key == "policy":
            policies = {cls for algo in ALGOS for cls in get_algo(algo).policy_aliases.values()}
            _ALLOWED[key] = {f"{cls.__module__}.{cls.__name__}": cls for cls in policies}
        else:
            raise Refused(f"Unknown config key {key!r}; valid choices: {['callback', 'env_wrapper', 'policy', 'vec_env_wrapper']}")
    return _ALLOWED[key]


def _check_allowed(key: str, value: str, name: str) -> None:
    """Refuse ``value`` unless it is one of :func:`allowed_classes` ``(key)``, naming the valid choices."""
    if value in FILE_WRITING_WRAPPERS:
        raise Refused(f"{name}: {key} {value!r} writes files on this machine; {REFUSED}")
    allowed = allowed_classes(key)
    if value not in allowed:
        raise Refused(f"{name}: {key} names {value!r}, which is not an allowed class; {REFUSED}; valid choices: {sorted(allowed)}")


def _check_stack(value: Any, where: str) -> None:
    """Refuse a frame-stack size that is not an integer in [0, :data:`MAX_FRAME_STACK`] (a string is read as a literal,
    as the Zoo would ``eval`` it; 0 / ``False`` mean no stacking there)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            pass
    if value is False or value is None:
        return
    check_int(where, value, 0, MAX_FRAME_STACK, example="4")


def _same_class(key: str, wrapper: str, table: dict[str, Any]) -> Any:
    """The entry of ``table`` for the class ``wrapper`` names (under whichever allow-listed name), else None."""
    allowed = allowed_classes(key)
    cls = allowed.get(wrapper)
    return next((entry for dotted, entry in table.items() if cls is not None and allowed.get(dotted) is cls), None)


def _check_wrapper_sizes(key: str, wrapper: str, kwargs: Any, where: str) -> None:
    """Refuse arguments of an allow-listed wrapper that would make it loop or allocate without bound: those of
    :data:`WRAPPER_ARG_BOUNDS` outside their bounds, and observation sizes (:data:`WRAPPER_IMAGE_ARGS`, defaults
    included) above :data:`sb3_gap.hub.safe.MAX_OBS_ELEMENTS`."""
    given = kwargs if isinstance(kwargs, dict) else {}
    for arg, bound in (_same_class(key, wrapper, WRAPPER_ARG_BOUNDS) or {}).items():
        if arg in given:
            bound.check(f"{where}: {key} {wrapper} {arg}", given[arg])
    image = _same_class(key, wrapper, WRAPPER_IMAGE_ARGS)
    if not image:
        return
    defaults = inspect.signature(allowed_classes(key)[wrapper]).parameters
    sides: list[int] = []
    for arg, sides_of_int in image.items():
        value = given.get(arg, defaults[arg].default if arg in defaults else inspect.Parameter.empty)
        if value is inspect.Parameter.empty:
            continue  # a required argument not given: the wrapper refuses it
        dims = [value] * sides_of_int if is_int(value) else value
        if not isinstance(dims, (list, tuple)) or not dims or not all(is_int(d) and d >= 1 for d in dims):
            raise Refused(f"{where}: {key} {wrapper} {arg} must be a positive integer or a list of them, got {value!r}; {REFUSED}")
        sides.extend(int(d) for d in dims)
    elements = math.prod(sides)
    if elements > MAX_OBS_ELEMENTS:
        shown = ", ".join(f"{arg}={given[arg]!r}" for arg in image if arg in given)
        raise Refused(
            f"{where}: {key} {wrapper} with {shown} makes observations of {elements:,} elements per channel, more than the "
            f"{MAX_OBS_ELEMENTS:,} a downloaded config may ask for (sb3_gap.hub.safe.MAX_OBS_ELEMENTS); {REFUSED}"
        )


def check_zoo_config(hyperparams: Any, name: str = "config.yml") -> None:
    """
    Refuse a downloaded ``config.yml`` whose strings the Zoo would ``eval`` (:func:`check_expression`) or whose
    class names it would import unless they are in the explicit allow-list (:func:`allowed_classes`: gymnasium /
    SB3 / rl_zoo3 / sb3_gap env wrappers, a few callbacks, registered policies), and wrappers / callbacks that write
    files (:data:`FILE_WRITING_WRAPPERS`, or any with a path-like argument such as ``video_folder``), and wrapper
    arguments that size a loop or an allocation beyond their bounds (:data:`WRAPPER_ARG_BOUNDS`,
    :data:`WRAPPER_IMAGE_ARGS`), whatever ``--allow-pickle`` says: that flag only accepts a pickled *model*.

    :param hyperparams: The loaded YAML
    :param name: File name for the messages
    :raises ValueError: Naming the key and value at fault
    """
    if hyperparams is None:
        return
    if not isinstance(hyperparams, dict):
        raise Refused(f"{name} must hold a mapping, got {type(hyperparams).__name__}")
    for key in _ZOO_EVAL_KEYS:
        if isinstance(hyperparams.get(key), str):
            check_expression(hyperparams[key], f"{name}: {key}")
    if "frame_stack" in hyperparams:
        _check_stack(hyperparams["frame_stack"], f"{name}: frame_stack")
    policy = hyperparams.get("policy")
    if isinstance(policy, str) and "." in policy:
        _check_allowed("policy", policy, name)
    for key in _ZOO_IMPORT_KEYS:
        for wrapper, kwargs in _wrappers(hyperparams.get(key), f"{name}: {key}"):
            _check_allowed(key, wrapper, name)
            for arg in _STACK_ARGS:
                if isinstance(kwargs, dict) and arg in kwargs:
                    _check_stack(kwargs[arg], f"{name}: {key} {wrapper} {arg}")
            _check_wrapper_sizes(key, wrapper, kwargs, name)
            if looks_like_path(kwargs):
                raise Refused(f"{name}: {key} {wrapper!r} with arguments {kwargs!r} writes or reads files on this machine; {REFUSED}")


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
        raise Refused(f"{name}: env_kwargs {env_kwargs!r} name files or folders on this machine; {REFUSED}")
