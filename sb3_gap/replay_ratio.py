"""
Replay ratio: gradient updates per env step, the one knob the third MinAtar study turns and the paper's Fig. 6 (centre
left) sweeps. ``replay_ratio`` in a Zoo YAML, ``--hyperparams``, ``sb3-gap sweep --set/--hyperparams`` and presets
becomes SB3's ``train_freq`` and ``gradient_steps`` here, by one set of rules (a ratio p/q, at most
:data:`MAX_REPLAY_RATIO`, never given with what it sets, only for algorithms that take it), and Rainbow checks its own
``gradient_steps`` per ``train_freq`` against the same bound.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

from sb3_gap.checks import Refused

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
