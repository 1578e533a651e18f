"""Pickle-free model files: ``model.safetensors`` (policy ``state_dict``) + ``sb3_gap.json`` (plain data).

An SB3 ``.zip`` stores its ``data`` with ``cloudpickle``: loading one from a stranger runs the
stranger's code. This module writes, next to the zip, a copy that carries no code at all:

* ``model.safetensors``: the policy's tensors (safetensors cannot hold code);
* ``sb3_gap.json``: the algorithm by its registered Zoo name, the policy by its alias
  (``"CnnPolicy"``), observation / action spaces as plain numbers, ``policy_kwargs`` with every
  class replaced by a registered *name* (:mod:`sb3_gap.hub.plain`), and the model's plain hyperparameters.

:func:`build_from_config` rebuilds the model from these two files by looking names up in
:data:`sb3_gap.algos.ALGOS` and :func:`sb3_gap.hub.plain.safe_classes` only: nothing from the download is
imported, evaluated or unpickled. Written by hand because neither SB3 nor huggingface_hub offers a
code-free serialisation of an SB3 model (SB3's zip, huggingface_sb3 and rl_zoo3 all use pickle).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

import sb3_gap
from sb3_gap.algo_args import check_model_attributes
from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.checks import Refused
from sb3_gap.extractor import MAX_PARAMETERS
from sb3_gap.hub.common import check_nesting, nesting_error, read_text
from sb3_gap.hub.plain import NotPlainData, decode_plain, encode_plain, space_from_plain, space_to_plain

logger = logging.getLogger("sb3_gap.hub")

FORMAT = "sb3_gap.hub/1"
# Replay buffer size for a loaded off-policy model (the Zoo's enjoy uses 1; Rainbow's n-step /
# frame-stack buffer needs a few more slots). Pass buffer_size=... to continue training.
INFERENCE_BUFFER_SIZE = 64
CONFIG_FILE = "sb3_gap.json"
WEIGHTS_FILE = "model.safetensors"
#: Most elements an observation space of a downloaded config may have (3×512×512 RGB is 786,432; a 4×84×84 Atari
#: stack 28,224): the loader allocates the space's bounds and an inference replay before any weight is read.
MAX_OBS_ELEMENTS = 2**20
#: Most elements the rebuilt model's replay or rollout buffer may hold (observations × slots × envs; 2**28 float32 is 1 GiB).
MAX_BUFFER_ELEMENTS = 2**28
#: Largest ``sb3_gap.json`` read (a few kB in practice): checked from the Hub's file list before it is downloaded, and
#: on disk before it is read.
MAX_CONFIG_BYTES = 2**20
#: Largest ``model.safetensors`` downloaded: float32 tensors of up to four networks of
#: :data:`sb3_gap.extractor.MAX_PARAMETERS` parameters each (online and target, actor and critic), plus the header.
MAX_WEIGHTS_BYTES = 4 * 4 * MAX_PARAMETERS + 2**20
#: Most parallel envs a downloaded config may declare (the replay is allocated per env); pass ``n_envs=`` to override.
MAX_N_ENVS = 64


# ----------------------------------------------------------------------------------------------
# Model <-> (config, safetensors)
# ----------------------------------------------------------------------------------------------

# Set separately (spaces, policy_kwargs) or rebuilt by ``_setup_model`` (schedules).
_SPECIAL_ATTRS = {"observation_space", "action_space", "policy_kwargs", "policy_class", "lr_schedule"}
# Rollout state of a training run: not part of the model.
_RUN_STATE_ATTRS = {"_last_obs", "_last_original_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer"}
# Set by BaseAlgorithm.__init__ only when an env is given (the rebuilt model has none).
_ENV_ATTRS = {"n_envs"}
# Where this machine writes or what it prints: never taken from a download (the local defaults stay).
_LOCAL_ATTRS = {"tensorboard_log", "verbose", "device", "start_time"}
# Training progress restored with the hyperparameters (plain numbers).
_PROGRESS_ATTRS = {
    "num_timesteps", "_n_updates", "_episode_num", "_n_calls", "exploration_rate", "_current_progress_remaining",
    "_num_timesteps_at_start", "_total_timesteps", "_stats_window_size", "n_envs", "frame_stack", "action_noise",
}  # fmt: skip


def algo_name(model: BaseAlgorithm) -> str:
    """The Zoo name (``"dqn"``) of ``model``'s class in :data:`sb3_gap.algos.ALGOS`."""
    for name, target in ALGOS.items():
        module, cls = target.split(":")
        if type(model).__module__.startswith(module) and type(model).__name__ == cls:
            return name
    raise Refused(f"{type(model).__name__} is not a registered algorithm; valid choices: {sorted(ALGOS)}")


def policy_alias(model: BaseAlgorithm) -> str:
    """The alias (``"CnnPolicy"``) under which ``model.policy_class`` is registered by its algorithm."""
    for alias, cls in type(model).policy_aliases.items():
        if cls is model.policy_class:
            return alias
    raise NotPlainData(
        f"Policy class {model.policy_class.__name__} is not one of {type(model).__name__}'s policy aliases "
        f"{sorted(type(model).policy_aliases)}; pickle-free files need an aliased policy"
    )


def _unbuilt(cls: type[BaseAlgorithm], policy_class: type, device: th.device | str) -> BaseAlgorithm:
    """An instance with hyperparameters set but no networks (what ``BaseAlgorithm.load`` starts from)."""
    return cls(policy=policy_class, env=None, device=device, _init_setup_model=False)  # type: ignore[call-arg]


def model_to_plain(model: BaseAlgorithm, env_id: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """
    The plain-data config of ``model`` and the names of attributes left out because they are not plain data
    (e.g. a learning-rate *schedule*: the rebuilt model gets the algorithm's default; weights are unaffected).

    :param model: A trained model
    :param env_id: The environment id, recorded for the card and for ``sb3-gap pull``
    """
    excluded = set(model._excluded_save_params()) | _SPECIAL_ATTRS | _RUN_STATE_ATTRS | _LOCAL_ATTRS
    # Only what the constructor sets is restored; _setup_model() rebuilds the rest (schedules, aliases).
    constructed = set(_unbuilt(type(model), model.policy_class, "cpu").__dict__) | _ENV_ATTRS
    attrs: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in model.__dict__.items():
        if key in excluded or key not in constructed:
            continue
        try:
            attrs[key] = encode_plain(value, key)
        except NotPlainData:
            dropped.append(key)
    if "replay_buffer_class" in dropped and "replay_buffer_kwargs" in attrs:
        dropped.append("replay_buffer_kwargs")  # the arguments of a class the loader will not have
        del attrs["replay_buffer_kwargs"]
    config = {
        "format": FORMAT,
        "algo": algo_name(model),
        "algo_class": type(model).__name__,
        "policy": policy_alias(model),
        "env_id": env_id,
        "observation_space": space_to_plain(model.observation_space),
        "action_space": space_to_plain(model.action_space),
        "policy_kwargs": encode_plain(model.policy_kwargs, "policy_kwargs"),
        "model_attrs": attrs,
        "weights": WEIGHTS_FILE,
        "versions": {"sb3_gap": sb3_gap.__version__, "stable_baselines3": stable_baselines3.__version__, "torch": th.__version__},
    }
    return config, sorted(dropped)


def save_safe(
    model: BaseAlgorithm,
    folder: str | Path,
    env_id: str | None = None,
    plain: tuple[dict[str, Any], list[str]] | None = None,
) -> dict[str, Any]:
    """
    Write ``sb3_gap.json`` and ``model.safetensors`` for ``model`` into ``folder``.

    :param plain: :func:`model_to_plain`'s result for ``model`` if the caller already has it
    :return: The config written, with ``dropped_attrs``: attributes left out (see :func:`model_to_plain`)
    """
    folder = Path(folder)
    config, dropped = plain if plain is not None else model_to_plain(model, env_id)
    config = dict(config, dropped_attrs=dropped)
    # force_contiguous: ConvExtractor keeps conv weights in channels_last memory format.
    safetensors.torch.save_model(model.policy, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "sb3_gap": FORMAT})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return config


def read_config(path: str | Path) -> dict[str, Any]:
    """
    Read and check ``sb3_gap.json`` (plain JSON; nothing is evaluated).

    :raises ValueError: Naming the file when it has more than :data:`MAX_CONFIG_BYTES`, is not UTF-8 JSON, nests deeper than
        :data:`~sb3_gap.hub.common.MAX_NESTING` or is not an sb3_gap Hub config
    """
    name = Path(path).name
    size = Path(path).stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise Refused(
            f"{name} has {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} it may have (sb3_gap.hub.safe.MAX_CONFIG_BYTES); refused unread"
        )
    try:
        config = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise Refused(f"{name} is not JSON ({e.msg} at line {e.lineno} column {e.colno}): a corrupt download or another kind of file") from None
    except RecursionError:  # the JSON parser recurses into nested arrays and objects
        raise nesting_error(name) from None
    check_nesting(config, name)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise Refused(f"{path} is not an sb3_gap Hub config: format {found!r}, expected {FORMAT!r}")
    return config


def allowed_attrs(cls: type[BaseAlgorithm]) -> set[str]:
    """
    Attributes a downloaded ``sb3_gap.json`` may set on a rebuilt ``cls``: its constructor's hyperparameters
    (``learning_rate``, ``buffer_size``, ``n_atoms``...) and the training progress (:data:`_PROGRESS_ATTRS`), never
    where this machine writes or what it prints (``tensorboard_log``, ``verbose``: see :data:`_LOCAL_ATTRS`).
    """
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:  # every class of the hierarchy (DQN sets OffPolicyAlgorithm's use_sde without taking it)
        if issubclass(klass, BaseAlgorithm) and "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters
            names |= {p for p, v in params.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    names -= {"self", "policy", "env", "policy_kwargs", "_init_setup_model", "supported_action_spaces", "sde_support", "support_multi_env"}
    return (names | _PROGRESS_ATTRS) - _LOCAL_ATTRS - _SPECIAL_ATTRS


def architecture_args(cls: type[BaseAlgorithm]) -> frozenset[str]:
    """Arguments that shape ``cls``'s network (``Rainbow.ARCHITECTURE_ARGS``, plus the spaces and ``policy_kwargs``)."""
    return frozenset(getattr(cls, "ARCHITECTURE_ARGS", ())) | {"policy_kwargs", "observation_space", "action_space", "policy_class"}


def weight_shapes(weights: str | Path) -> dict[str, tuple[int, ...]]:
    """
    The tensor shapes in a safetensors file, from its header only (no tensor is read).

    :raises ValueError: When the file is not a valid safetensors file (corrupt, truncated, another format)
    """
    try:
        with safetensors.safe_open(str(weights), framework="pt", device="cpu") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError) for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Refused(f"{Path(weights).name} is not a valid safetensors file ({first}): corrupt or truncated download") from None


def check_model_attrs(attrs: dict[str, Any], where: str) -> None:
    """
    Refuse hyperparameters the algorithm's constructor would refuse, by the bounds of
    :data:`sb3_gap.algo_args.ALGO_ARG_BOUNDS` (``eval_epsilon: 5``, ``priority_eps: 0``, a negative ``gamma``...), and
    an ``exploration_rate`` that is not a probability (the bound of ``exploration_initial_eps``).

    :param attrs: The attributes to set (``model_attrs`` of ``sb3_gap.json``, with the caller's overrides)
    :param where: Where they come from, for the message
    :raises ValueError: One line naming the attribute, the value and the valid range
    """
    try:
        check_model_attributes(attrs)
    except ValueError as e:
        raise Refused(f"{where}: {e}") from None


def _space_elements(data: Any, where: str) -> int:
    """Elements of a plain space (before it is built), bounded by :data:`MAX_OBS_ELEMENTS`."""
    if not isinstance(data, dict):
        raise Refused(f"{where} must be a mapping, got {type(data).__name__}")
    if data.get("type") == "Box":
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise Refused(f"{where} has shape {shape!r}; it must be a list of positive integers")
        size = math.prod(shape)
    elif data.get("type") == "MultiBinary":
        n = data.get("n")
        dims = n if isinstance(n, list) else [n]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
            raise Refused(f"{where} has n {n!r}; it must be a positive integer or a list of them")
        size = math.prod(dims)
    elif data.get("type") == "MultiDiscrete":
        size = len(np.ravel(np.asarray(data.get("nvec", []), dtype=object)))
    else:
        size = 1
    if size > MAX_OBS_ELEMENTS:
        raise Refused(
            f"{where} of shape {data.get('shape', data.get('n'))} has {size:,} elements, more than the {MAX_OBS_ELEMENTS:,} "
            "a downloaded config may declare (sb3_gap.hub.safe.MAX_OBS_ELEMENTS); refused before allocating"
        )
    return size


def _meta_shapes(model: BaseAlgorithm) -> list[tuple[set[str], tuple[int, ...]]]:
    """The policy ``model`` would build, as (names sharing one tensor, shape), built on torch's meta device (no memory)."""
    import inspect

    kwargs = dict(model.policy_kwargs)
    kwargs["optimizer_class"], kwargs["optimizer_kwargs"] = th.optim.SGD, {}  # no optimizer runs on meta tensors
    if "use_sde" in inspect.signature(model.policy_class.__init__).parameters:
        kwargs.setdefault("use_sde", getattr(model, "use_sde", False))
    original_to, original_load = th.nn.Module.to, th.nn.Module.load_state_dict

    def is_meta(module: th.nn.Module) -> bool:
        return any(t.is_meta for t in module.parameters()) or any(t.is_meta for t in module.buffers())

    def to(module: th.nn.Module, *args: Any, **to_kwargs: Any) -> th.nn.Module:
        # SB3 policies move sub-networks with .to(device): a meta module stays where it is (it has no data to copy).
        return module if is_meta(module) else original_to(module, *args, **to_kwargs)

    def load_state_dict(module: th.nn.Module, state_dict: Any, *args: Any, **load_kwargs: Any) -> Any:
        # DQN copies q_net into q_net_target: meta tensors hold no values to copy (and the shapes agree by construction).
        if is_meta(module):
            return th.nn.modules.module._IncompatibleKeys([], [])
        return original_load(module, state_dict, *args, **load_kwargs)

    th.nn.Module.to, th.nn.Module.load_state_dict = to, load_state_dict  # type: ignore[method-assign,assignment]
    try:
        with th.device("meta"):
            policy = model.policy_class(model.observation_space, model.action_space, lambda _: 0.0, **kwargs)
    finally:
        th.nn.Module.to, th.nn.Module.load_state_dict = original_to, original_load  # type: ignore[method-assign]
    groups: dict[int, tuple[set[str], tuple[int, ...]]] = {}
    for name, tensor in policy.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), (set(), tuple(tensor.shape)))[0].add(name)
    return list(groups.values())


def _check_against_weights(model: BaseAlgorithm, stored: dict[str, tuple[int, ...]], weights: str | Path) -> None:
    """Refuse a config whose network differs from the weights (another width, atom count, action count...), and weights
    holding a tensor the network does not have, before building it."""
    try:
        groups = _meta_shapes(model)
    except ValueError:  # a bad argument (e.g. psi_depth above its bound): the config is refused, nothing was allocated
        raise
    except Exception as e:  # noqa: BLE001 - a layer whose construction reads tensor values cannot be built on meta
        # Then only the bounds on spaces, buffers and extractor arguments apply, and the strict load compares the shapes.
        logger.warning("Could not pre-check %s against %s on torch's meta device (%s: %s)", CONFIG_FILE, Path(weights).name, type(e).__name__, e)
        return
    for names, shape in groups:
        present = sorted(names & set(stored))
        if not present:
            raise Refused(
                f"{CONFIG_FILE} builds a network with tensor {sorted(names)[0]!r} {list(shape)}, which {Path(weights).name} "
                "does not have: the config and the weights belong to different models"
            )
        for name in present:
            if stored[name] != shape:
                raise Refused(
                    f"{Path(weights).name} has {name!r} of shape {list(stored[name])}, but {CONFIG_FILE} builds {list(shape)}: "
                    "the config and the weights belong to different models (e.g. another width_scale or n_atoms)"
                )
    built = set().union(*(names for names, _ in groups))
    extra = sorted(set(stored) - built)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise Refused(
            f"{Path(weights).name} holds tensor {extra[0]!r} {list(stored[extra[0]])}{more}, which the network {CONFIG_FILE} "
            "describes does not build: the config and the weights belong to different models, or the file was altered"
        )


def _check_buffer_size(model: BaseAlgorithm, obs_elements: int) -> None:
    """Bound what ``_setup_model`` allocates for the replay / rollout buffer by :data:`MAX_BUFFER_ELEMENTS`."""
    n_envs = int(getattr(model, "n_envs", 1) or 1)
    if isinstance(model, OffPolicyAlgorithm):
        slots, what = max(int(model.buffer_size), n_envs) * 2, f"buffer_size={model.buffer_size}"
    elif isinstance(n_steps := getattr(model, "n_steps", None), int):
        slots, what = n_steps * n_envs, f"n_steps={n_steps} x n_envs={n_envs}"
    else:
        return
    if slots * obs_elements > MAX_BUFFER_ELEMENTS:
        raise Refused(
            f"The rebuilt model would allocate a buffer of {slots * obs_elements:,} elements ({what}, {obs_elements:,} per "
            f"observation), more than {MAX_BUFFER_ELEMENTS:,} (sb3_gap.hub.safe.MAX_BUFFER_ELEMENTS); pass smaller values as overrides"
        )


def build_from_config(config: dict[str, Any], weights: str | Path, device: th.device | str = "auto", **overrides: Any) -> BaseAlgorithm:
    """
    Rebuild a model from a plain config and safetensors weights, executing nothing from either file.

    Mirrors what ``BaseAlgorithm.load`` does (construct with ``_init_setup_model=False``, restore
    attributes, ``_setup_model()``, load the policy weights), with every class found by name in
    :data:`sb3_gap.algos.ALGOS`, the algorithm's ``policy_aliases`` or :func:`~sb3_gap.hub.plain.safe_classes`.
    The config cannot steer this machine: only :func:`allowed_attrs` are restored (``tensorboard_log``, ``verbose``...
    keep their local defaults), observation spaces are bounded by :data:`MAX_OBS_ELEMENTS`, buffers by
    :data:`MAX_BUFFER_ELEMENTS`, and the network the config describes is first built on torch's meta
    device and compared with the shapes in the weights' header, so nothing is allocated for a config
    that does not match its weights.

    :param config: The content of ``sb3_gap.json``
    :param weights: Path to ``model.safetensors``
    :param device: Torch device (``"auto"``: CUDA when available)
    :param overrides: Attributes to set instead of the stored ones (``buffer_size`` defaults to at most
        :data:`INFERENCE_BUFFER_SIZE` for off-policy algorithms, as the Zoo's ``enjoy`` does, so no
        large replay buffer is allocated); arguments that shape the network (``n_atoms``, ``policy_kwargs``...)
        cannot be overridden
    :raises ValueError: Naming the attribute, shape or tensor at fault
    """
    cls = get_algo(config["algo"])
    policy = config["policy"]
    if policy not in cls.policy_aliases:
        raise Refused(f"Unknown policy {policy!r} for {cls.__name__}; valid choices: {sorted(cls.policy_aliases)}")
    fixed = sorted(set(overrides) & architecture_args(cls))
    if fixed:
        raise Refused(
            f"{fixed} shape {cls.__name__}'s network, which the weights fix: they cannot be overridden on load (train a new model to change them)"
        )
    obs_elements = _space_elements(config.get("observation_space"), "observation_space")
    _space_elements(config.get("action_space"), "action_space")
    stored = weight_shapes(weights)
    model = _unbuilt(cls, cls.policy_aliases[policy], device)
    attrs = decode_plain(config.get("model_attrs", {}), "model_attrs")
    if not isinstance(attrs, dict):
        raise Refused(f"model_attrs must be a mapping, got {type(attrs).__name__}")
    allowed = allowed_attrs(cls)
    for key in list(attrs):
        if key in _LOCAL_ATTRS:
            del attrs[key]  # written by older pushes; where this machine logs is decided here
        elif key.startswith("__") or key not in allowed or not (hasattr(model, key) or key in _ENV_ATTRS):
            raise Refused(f"model_attrs has unexpected attribute {key!r} for {cls.__name__}; allowed: {sorted(allowed)}")
    if attrs.get("action_noise") is not None:
        raise Refused(f"model_attrs.action_noise must be null in a pickle-free config, got {attrs['action_noise']!r}")
    n_envs = attrs.get("n_envs", 1)
    if "n_envs" not in overrides and (isinstance(n_envs, bool) or not isinstance(n_envs, int) or not 1 <= n_envs <= MAX_N_ENVS):
        raise Refused(f"model_attrs.n_envs must be an integer in [1, {MAX_N_ENVS}], got {n_envs!r}; pass n_envs=... to override")
    if issubclass(cls, OffPolicyAlgorithm):
        attrs["buffer_size"] = min(int(attrs.get("buffer_size") or INFERENCE_BUFFER_SIZE), INFERENCE_BUFFER_SIZE)
    if isinstance(attrs.get("train_freq"), list):
        attrs["train_freq"] = tuple(attrs["train_freq"])  # SB3 only converts tuples to TrainFreq
    attrs.update(overrides)
    check_model_attrs(attrs, CONFIG_FILE if not overrides else f"{CONFIG_FILE} or the overrides")
    for key, value in attrs.items():
        setattr(model, key, value)
    model.observation_space = space_from_plain(config["observation_space"])
    model.action_space = space_from_plain(config["action_space"])
    model.policy_kwargs = decode_plain(config["policy_kwargs"], "policy_kwargs")
    if not isinstance(model.policy_kwargs, dict):
        raise Refused(f"policy_kwargs must be a mapping, got {type(model.policy_kwargs).__name__}")
    for key in sorted(set(model.policy_kwargs) & set(attrs)):  # e.g. Rainbow's n_atoms lives in both
        if model.policy_kwargs[key] != attrs[key]:
            raise Refused(f"{CONFIG_FILE} gives {key}={attrs[key]!r} in model_attrs but {model.policy_kwargs[key]!r} in policy_kwargs")
    _check_buffer_size(model, obs_elements)
    _check_against_weights(model, stored, weights)
    model._setup_model()
    try:
        missing, unexpected = safetensors.torch.load_model(model.policy, str(weights), strict=True, device=str(model.device))
    except RuntimeError as e:  # only when the meta pre-check could not run: torch's many-line "Error(s) in loading state_dict"
        lines = [line.strip() for line in str(e).strip().splitlines()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__
        raise Refused(f"{Path(weights).name} does not fit the network {CONFIG_FILE} describes ({detail})") from None
    assert not missing and not unexpected  # strict=True raises before this
    _check_finite(model.policy, weights)
    return model


def _check_finite(policy: th.nn.Module, weights: str | Path) -> None:
    """Refuse weights holding NaN or infinite values: such a model acts on garbage (diverged, or tampered with)."""
    bad = [name for name, t in policy.state_dict().items() if t.is_floating_point() and not bool(th.isfinite(t).all())]
    if bad:
        shown = ", ".join(repr(n) for n in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise Refused(f"{Path(weights).name} holds NaN or infinite values in {shown}: refused (a diverged or damaged model)")
