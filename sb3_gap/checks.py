"""
Argument checks shared by every module, and the exception every refusal raises: one wording for every bad value.

The contract (docs/checks.md): each check raises :class:`Refused` (a ``ValueError``), or one of its kinds below, with
one line that names the argument, the bad value and what is valid. The command lines print a ``Refused`` as that line
and nothing else; any other exception is a bug and keeps its full traceback (inside a sweep run, in the run's
``traceback.txt``). A bound lives in one module (the range table in :mod:`sb3_gap.algo_args`, :data:`MAX_FRAME_STACK`
here, ...) and every entry point calls its check instead of writing the ``if ...: raise`` again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np


class Refused(ValueError):
    """
    sb3_gap refused an input (a bad value, a file or download that fails a check, a resource it cannot use): the one
    exception class whose message the CLIs and the sweep's log print as one line without a traceback. Any other
    exception is a bug or an unexpected failure and keeps its full traceback. A ``ValueError``, so code and tests
    that expect SB3's and Python's ``ValueError`` for bad arguments keep working.
    """


class MissingFile(FileNotFoundError, Refused):
    """A file or folder the user named (or that a named folder must hold) does not exist: one line naming it."""


class CannotWrite(OSError, Refused):
    """
    The system refused to write a file (disk full, quota, read-only file system, no permission): one line naming the
    file and the ``errno`` (:func:`sb3_gap.files.write_error` raises it). An ``OSError`` with its ``errno``.
    """


class MissingPackage(ImportError, Refused):
    """An optional package or system library a feature needs is not installed: one line saying what to install."""


#: The most frames any stack may hold: ``FrameReplayBuffer(frame_stack=...)``, the Atari envs' ``frame_stack``, and a
#: downloaded Zoo config's ``frame_stack`` and stacking wrappers (the paper stacks 4). Each stacked frame is allocated
#: per env and per stored transition, so the bound is checked before anything is built.
MAX_FRAME_STACK = 256


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for ``bool`` (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for Python and numpy reals, False for ``bool``."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None, example: str = "") -> int:
    """
    Check that ``value`` is an integer in ``[minimum, maximum]`` and return it as a Python ``int``.

    :param name: The argument's name, as the user wrote it (``"n_envs"``, ``"--workers"``)
    :param value: The value to check
    :param minimum: Smallest valid value (1: "a positive integer")
    :param maximum: Largest valid value (``None``: no bound)
    :param example: Valid values to show, e.g. ``"1, 2, 4"`` (appended as ``(e.g. ...)``)
    :raises ValueError: ``"<name> must be a positive integer (e.g. ...), got <value>"``
    """
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        kind = {1: "a positive integer", 0: "an integer >= 0"}.get(minimum, f"an integer >= {minimum}")
        bound = f" and at most {maximum}" if maximum is not None else ""
        hint = f" (e.g. {example})" if example else ""
        raise Refused(f"{name} must be {kind}{bound}{hint}, got {value!r}")
    return int(value)


def check_range(
    name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False, example: str = ""
) -> float:
    """
    Check that ``value`` is a finite real number in the interval and return it as a Python ``float``.

    :param name: The argument's name
    :param value: The value to check
    :param low: Lower bound (``None``: none)
    :param high: Upper bound (``None``: none)
    :param low_open: Exclude ``low`` itself
    :param high_open: Exclude ``high`` itself
    :param example: A valid value to show (e.g. the paper's)
    :raises ValueError: ``"<name> must be in [low, high] (e.g. ...), got <value>"``
    """
    ok = is_number(value) and bool(np.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            where = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            where = f"a finite number {'<' if high_open else '<='} {high:g}"
        else:
            where = "a finite number"
        hint = f" (e.g. {example})" if example else ""
        raise Refused(f"{name} must be {where}{hint}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """
    Check that ``value`` is one of ``choices`` and return it.

    :param name: The argument's name
    :param value: The value to check
    :param choices: The valid values (a registry's keys, a tuple of names)
    :raises ValueError: ``"Unknown <name> <value>; valid choices: [...]"``
    """
    valid = list(choices)
    try:
        found = value in valid
    except TypeError:  # an unhashable / incomparable value is not a choice
        found = False
    if not found:
        shown = sorted(valid) if all(isinstance(c, str) for c in valid) else valid
        raise Refused(f"Unknown {name} {value!r}; valid choices: {shown}")
    return value


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: for checks the helpers above do not cover."""
    if not condition:
        raise Refused(message)


#: The device names ``check_device`` shows as valid (``cuda:N`` for the N-th GPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device(device: Any, name: str = "device") -> str:
    """
    Check a torch device name and that it exists here; return it as a string (``"auto"`` as it is).

    SB3's ``get_device("cuda")`` falls back to the CPU without a word when no GPU is visible: a study asked to run
    on a GPU would train for hours on the CPU. Here ``cuda`` without a GPU (or ``cuda:N`` past the last one, or
    ``mps`` without Metal) is an error instead.

    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``
    :param name: The argument's name, as the user wrote it (``"--device"``)
    :raises ValueError: ``"Unknown <name> 'bogus'; valid choices: [...]"`` or naming the missing device
    """
    import torch as th

    text = str(device).strip() if isinstance(device, (str, th.device)) else None
    if text == "auto":
        return text
    try:
        dev = th.device(text) if text else None
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise Refused(f"Unknown {name} {device!r}; valid choices: {list(DEVICE_CHOICES)}")
    if dev.type == "cuda":
        count = th.cuda.device_count() if th.cuda.is_available() else 0
        if count == 0:
            raise Refused(
                f"{name} {text!r}: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); valid choices here: ['auto', 'cpu']"
            )
        if dev.index is not None and dev.index >= count:
            raise Refused(f"{name} {text!r}: torch sees {count} CUDA GPU(s); valid choices: cuda:0..cuda:{count - 1}")
    if dev.type == "mps" and not (hasattr(th.backends, "mps") and th.backends.mps.is_available()):
        raise Refused(f"{name} {text!r}: Metal (MPS) is not available here; valid choices here: ['auto', 'cpu']")
    return str(text)


#: The form of a Gymnasium env id, ``[namespace/]name[-vN]`` (``gymnasium.envs.registration.ENV_ID_RE``): letters, digits,
#: ``_``, ``-``, ``:`` and (in the name) ``.``; never a ``\\``, a second ``/`` or an absolute path.
_ENV_ID_FORM = re.compile(r"(?:[\w:-]+/)?[\w:.-]+")


def check_env_id_form(env_id: Any, where: str = "") -> str:
    """
    Check that ``env_id`` has the form of a Gymnasium env id before it is looked up, or used in a folder or file name
    (``logs/<algo>/<env>_<N>/``, ``<algo>-<env>.zip``): ``".."``, ``"."``, ``"a/../b"``, ``"/etc/x"``, ``"a\\b"`` and
    ``""`` never are, and a name never starts with ``.``. Whether the id is *registered* is checked elsewhere.

    :param env_id: The env id, from the command line or from a file (a download's ``sb3_gap.json``)
    :param where: Where the id comes from, prefixed to the message (``"sb3_gap.json"``); empty for an argument
    :raises ValueError: ``"env id '..' is not a Gymnasium env id: ..."``
    """
    name = env_id.rsplit("/", 1)[-1] if isinstance(env_id, str) else ""
    if not isinstance(env_id, str) or not _ENV_ID_FORM.fullmatch(env_id) or name.startswith("."):
        prefix = f"{where}: " if where else ""
        raise Refused(
            f"{prefix}env id {env_id!r} is not a Gymnasium env id: ids have the form [namespace/]name[-vN] "
            "(e.g. MinAtar/Breakout-v1, ALE/Pong-v5) and are never paths such as '..'"
        )
    return env_id
