"""
A saved replay buffer loaded into a model: :func:`load_replay_buffer` (SB3's ``model.load_replay_buffer``) and
:func:`check_loaded_replay` refuse a buffer whose n-step settings differ from the replay the model builds, since
training would silently use the buffer's (``Rainbow.load_replay_buffer`` checks its own settings the same way).
"""

from __future__ import annotations

import io
import numbers
import pathlib
from typing import Any

import numpy as np
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_gap.checks import Refused

#: The value of a buffer attribute for buffers without it: SB3's ``ReplayBuffer`` is 1-step; Rainbow buffers saved before
#: ``per_sampling`` existed sampled stratified.
_BUFFER_BEFORE: dict[str, Any] = {"n_steps": 1, "per_sampling": "stratified"}


def replay_mismatches(loaded: Any, expected: dict[str, Any], buffer_class: type | None = None, names: dict[str, str] | None = None) -> list[str]:
    """
    What differs between a loaded replay buffer and the replay a model builds (:func:`load_replay_buffer`,
    ``Rainbow.load_replay_buffer``).

    :param loaded: The loaded buffer
    :param expected: The model's value of each buffer attribute that must match (``n_steps``, ``gamma``...)
    :param buffer_class: The class the buffer must be an instance of (None: any)
    :param names: The model's name of a buffer attribute, for the messages (e.g. ``{"prioritized": "prioritized_replay"}``)
    :return: One ``"<setting>: model <value>, buffer <value>"`` per difference
    """
    if buffer_class is not None and not isinstance(loaded, buffer_class):
        return [f"class: model {buffer_class.__name__}, buffer {type(loaded).__name__}"]
    problems = []
    for attribute, mine in expected.items():
        theirs = getattr(loaded, attribute, _BUFFER_BEFORE.get(attribute))
        if theirs is None or mine is None:
            differ = theirs is not mine
        elif isinstance(mine, (bool, np.bool_)):
            differ = bool(mine) != bool(theirs)
        elif isinstance(mine, numbers.Real) and isinstance(theirs, numbers.Real):
            differ = float(mine) != float(theirs)
        else:
            differ = mine != theirs
        if differ:
            problems.append(f"{(names or {}).get(attribute, attribute)}: model {mine!r}, buffer {theirs!r}")
    return problems


def replay_settings(model: OffPolicyAlgorithm) -> dict[str, Any]:
    """
    The n-step settings of the replay ``model`` builds: ``n_steps`` from its ``replay_buffer_kwargs`` (where SB3 also
    puts those of its ``NStepReplayBuffer``; 1 without), and for ``n_steps > 1`` the algorithm's ``gamma``.

    :param model: An off-policy model (SB3's DQN, sb3-contrib's QR-DQN...)
    :return: ``{"n_steps": n}`` or ``{"n_steps": n, "gamma": gamma}``
    """
    n_steps = int((getattr(model, "replay_buffer_kwargs", None) or {}).get("n_steps", 1))
    return {"n_steps": n_steps, "gamma": float(model.gamma)} if n_steps > 1 else {"n_steps": n_steps}


def check_loaded_replay(model: OffPolicyAlgorithm, source: str = "The loaded replay buffer") -> None:
    """
    Refuse ``model.replay_buffer`` if its n-step settings differ from the replay the model builds (:func:`replay_settings`;
    Rainbow's own checks for a Rainbow): training would silently use the buffer's. Call it after SB3's
    ``model.load_replay_buffer``, or use :func:`load_replay_buffer`, which also keeps the model's buffer on refusal.

    :param model: An off-policy model whose replay buffer was just loaded
    :param source: What the buffer is, for the message (e.g. ``"The replay buffer in run/replay_buffer.pkl"``)
    :raises ValueError: One line naming each setting, the model's value and the buffer's
    """
    own = getattr(model, "_replay_mismatches", None)  # Rainbow: n-step, gamma, prioritized sampling, frame stack
    problems = own(model.replay_buffer) if callable(own) else replay_mismatches(model.replay_buffer, replay_settings(model))
    if problems:
        raise replay_mismatch_error(source, problems)


def replay_mismatch_error(source: str, problems: list[str]) -> Refused:
    """The one-line error for a loaded replay buffer saved with other settings (:func:`replay_mismatches`)."""
    return Refused(
        f"{source} was saved with other settings ({'; '.join(problems)}): training would use the buffer's; "
        "load it into a model with the buffer's settings, or start a new buffer"
    )


def load_replay_buffer(model: OffPolicyAlgorithm, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
    """
    SB3's ``model.load_replay_buffer``, refusing a buffer whose ``n_steps`` or ``gamma`` differ from the model's
    (:func:`check_loaded_replay`), as ``Rainbow.load_replay_buffer`` does. The model keeps its own buffer when the
    loaded one is refused.

    :param model: An off-policy model (DQN, QR-DQN, Rainbow...)
    :param path: Path of the pickled replay buffer (``save_replay_buffer``)
    :param truncate_last_traj: See SB3's ``OffPolicyAlgorithm.load_replay_buffer``
    :raises ValueError: Naming each setting, the model's value and the buffer's
    """
    previous = model.replay_buffer
    model.load_replay_buffer(path, truncate_last_traj)
    try:
        check_loaded_replay(model, f"The replay buffer in {path}")
    except ValueError:
        model.replay_buffer = previous
        raise
