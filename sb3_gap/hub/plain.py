"""Plain data for pickle-free Hub files: registered classes by name, SB3 schedules, Gymnasium spaces.

:func:`encode_plain` writes a value as JSON-ready data, every class as its registered name
``{"__class__": "module:QualName"}``; :func:`decode_plain` reads it back by looking names up in
:func:`safe_classes` only, so nothing from a download is imported, evaluated or unpickled.
:func:`register_safe_class` adds a class of your own (e.g. a features extractor) on both sides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import TrainFreq
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

from sb3_gap.checks import Refused

_CLASS_KEY = "__class__"
_SAFE_CLASSES: dict[str, type] = {}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_safe_class(cls: type) -> str:
    """
    Allow ``cls`` inside ``policy_kwargs`` of pickle-free Hub files (e.g. your own features extractor).

    The class is written as its name ``"module:QualName"`` and, on load, looked up in this
    registry only (never imported), so the loading side must register it too.

    :param cls: The class to allow
    :return: The name it is written under
    """
    if not isinstance(cls, type):
        raise Refused(f"register_safe_class expects a class, got {cls!r}")
    _SAFE_CLASSES[_class_name(cls)] = cls
    return _class_name(cls)


def safe_classes() -> dict[str, type]:
    """
    Classes allowed by name: sb3_gap / SB3 extractors and buffers (``replay_buffer_class``: SB3's, and sb3_gap's
    frame-once :class:`~sb3_gap.replay.FrameReplayBuffer` / ``RainbowReplayBuffer`` that ``zoo_configs`` use for
    pixel envs), torch activations and optimizers, and the optimizers of :data:`sb3_gap.optim.OPTIMIZERS`
    (``policy_kwargs(..., optimizer="kron")`` gives :class:`sb3_gap.optim.Kron`).
    """
    if not _SAFE_CLASSES:
        from stable_baselines3.common import buffers, torch_layers

        from sb3_gap.extractor import ConvExtractor
        from sb3_gap.optim import Kron
        from sb3_gap.rainbow.buffers import RainbowReplayBuffer
        from sb3_gap.replay import FrameReplayBuffer

        for cls in (
            buffers.ReplayBuffer,
            buffers.DictReplayBuffer,
            buffers.NStepReplayBuffer,
            buffers.RolloutBuffer,
            buffers.DictRolloutBuffer,
            FrameReplayBuffer,
            RainbowReplayBuffer,
            ConvExtractor,
            torch_layers.NatureCNN,
            torch_layers.FlattenExtractor,
            torch_layers.CombinedExtractor,
            th.nn.ReLU,
            th.nn.Tanh,
            th.nn.ELU,
            th.nn.GELU,
            th.nn.SiLU,
            th.nn.LeakyReLU,
            th.nn.Sigmoid,
            th.nn.Identity,
            th.optim.Adam,
            th.optim.AdamW,
            th.optim.RMSprop,
            th.optim.SGD,
            Kron,
        ):
            register_safe_class(cls)
    return _SAFE_CLASSES


# ----------------------------------------------------------------------------------------------
# Plain-data encoding
# ----------------------------------------------------------------------------------------------


class NotPlainData(Refused):
    """A value that cannot be written as plain data (it would need pickle)."""


def encode_plain(value: Any, where: str = "value") -> Any:
    """
    ``value`` as JSON-ready plain data; registered classes become ``{"__class__": name}``.

    :param value: Nested dicts / lists / tuples of numbers, strings, bools, None and registered classes
    :param where: Name of the value, for the error message
    :raises NotPlainData: For anything else (callables, arrays, unregistered classes)
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"__float__": repr(value)}
        return value
    if isinstance(value, np.generic) and np.ndim(value) == 0 and value.dtype.kind in "biuf":
        return encode_plain(value.item(), where)
    # SB3's schedule objects (learning_rate, clip_range, ...) as numbers / plain parameters.
    if isinstance(value, FloatSchedule):
        return encode_plain(value.value_schedule, where)
    if isinstance(value, ConstantSchedule):
        return encode_plain(float(value.val), where)
    if isinstance(value, LinearSchedule):
        return {"__schedule__": "linear", "start": float(value.start), "end": float(value.end), "end_fraction": float(value.end_fraction)}
    if isinstance(value, TrainFreq):  # (frequency, unit) as SB3's train_freq=(4, "step") accepts it
        return [int(value.frequency), value.unit.value]
    if isinstance(value, (list, tuple)):
        return [encode_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotPlainData(f"{where} has non-string keys: {list(value)!r}")
        return {k: encode_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, type):
        name = _class_name(value)
        if name not in safe_classes():
            raise NotPlainData(
                f"{where} is the class {name}, which is not registered for pickle-free files; "
                f"call sb3_gap.hub.register_safe_class({value.__qualname__}) before pushing and loading "
                f"(registered: {sorted(safe_classes())})"
            )
        return {_CLASS_KEY: name}
    raise NotPlainData(f"{where} = {value!r} ({type(value).__name__}) is not plain data")


def decode_plain(value: Any, where: str = "value") -> Any:
    """Inverse of :func:`encode_plain`; class names are looked up in :func:`safe_classes` only."""
    if isinstance(value, list):
        return [decode_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if set(value) == {_CLASS_KEY}:
            name = value[_CLASS_KEY]
            if name not in safe_classes():
                raise Refused(
                    f"{where} names the class {name!r}, which is not registered for pickle-free loading; "
                    f"registered: {sorted(safe_classes())}. If you trust it, register it with "
                    "sb3_gap.hub.register_safe_class(cls)."
                )
            return safe_classes()[name]
        if value.get("__schedule__") == "linear" and set(value) == {"__schedule__", "start", "end", "end_fraction"}:
            return LinearSchedule(float(value["start"]), float(value["end"]), float(value["end_fraction"]))
        if set(value) == {"__float__"}:
            text = value["__float__"]
            if text not in ("inf", "-inf", "nan"):
                raise Refused(f"{where}: bad float {text!r}; valid: 'inf', '-inf', 'nan'")
            return float(text)
        return {k: decode_plain(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _bound(array: np.ndarray) -> Any:
    flat = np.unique(array)
    if flat.size == 1:  # the common case: one bound for every element
        return encode_plain(flat[0].item())
    return encode_plain(array.tolist())


def space_to_plain(space: spaces.Space) -> dict[str, Any]:
    """A ``Box`` / ``Discrete`` / ``MultiDiscrete`` / ``MultiBinary`` space as plain data."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": encode_plain(space.n)}
    raise NotPlainData(f"Space {space!r} is not supported by pickle-free files; supported: Box, Discrete, MultiDiscrete, MultiBinary")


def space_from_plain(data: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_plain`."""
    kind = data.get("type")
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        if dtype.kind not in "biuf":
            raise Refused(f"Box dtype {data['dtype']!r} is not numeric")
        shape = tuple(int(s) for s in data["shape"])
        low = np.broadcast_to(np.asarray(decode_plain(data["low"]), dtype=dtype), shape)
        high = np.broadcast_to(np.asarray(decode_plain(data["high"]), dtype=dtype), shape)
        return spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(data["nvec"], dtype=np.int64), start=np.asarray(data.get("start", 0), dtype=np.int64))
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    raise Refused(f"Unknown space type {kind!r}; valid: ['Box', 'Discrete', 'MultiBinary', 'MultiDiscrete']")
