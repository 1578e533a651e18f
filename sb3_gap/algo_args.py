"""
The valid range of every numeric algorithm argument sb3_gap owns or passes through, in one table.

SB3 takes a NaN learning rate, a negative ``max_grad_norm`` (``clip_grad_norm_`` then flips the gradient: ascent),
``batch_size=0`` (an empty batch: a NaN loss) or ``train_freq=0`` (no env step is ever collected: the run hangs) and
runs on, silently wrong; so does kron-torch with ``b1=nan``. :func:`check_algo_args` refuses each in one line naming
the argument, the value and the valid range. It is called by :class:`~sb3_gap.rainbow.Rainbow`'s constructor, by the rl_zoo3 hook for every
``--algo`` of ``rl_zoo3.train`` (Rainbow in full, SB3's and sb3-contrib's as below; :mod:`sb3_gap.zoo`), by sweeps for ``--set``,
``--hyperparams`` and presets before any trial starts (:mod:`sb3_gap.sweep.spec`); :func:`check_kron_args` by
:class:`~sb3_gap.optim.Kron` and ``policy_kwargs(optimizer="kron", optimizer_kwargs=...)``. ``DQN(...)`` built
directly in Python is SB3's own constructor, which sb3_gap does not wrap.

Names not in the tables are left to the algorithm (a NaN is refused whatever the name). Arguments that take a
schedule (``learning_rate``, ``clip_range``, ``priority_beta``) accept a callable, SB3's and rl_zoo3's schedule objects
are checked on their initial value, and rl_zoo3's ``lin_<x>`` strings on ``x``.

An algorithm sb3_gap does not own (SB3's and sb3-contrib's, in the rl_zoo3 hook: ``check_algo_args(kwargs,
host=True)``) is checked only where it would silently misuse a value: a bound marked ``misuse=False`` is sb3_gap's
own stricter range (``learning_starts >= 0``, ``target_update_interval >= 1``, ``gradient_steps`` >= 1 or -1: SB3
skips training at 0 on purpose and reads any negative value as -1, ``ent_coef >= 0``: SB3 takes ``ent_coef='auto'``
for SAC/TQC and uses a negative coefficient as written), applied to Rainbow and the sweeps only;
for the host's algorithms such a value passes unless it is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sb3_gap.checks import Refused, check_choice, check_int, check_range, is_int, is_number


@dataclass(frozen=True)
class Bound:
    """
    The valid values of one argument.

    :param low: Lower bound (None: none)
    :param high: Upper bound (None: none)
    :param low_open: Exclude ``low`` itself
    :param high_open: Exclude ``high`` itself
    :param integer: Integers only
    :param none_ok: ``None`` is valid (e.g. ``max_grad_norm=None``: no clipping)
    :param schedule_ok: A callable of the progress remaining is valid
    :param also: Other valid values (``gradient_steps=-1``: as many as env steps)
    :param example: Valid values to show in the error
    :param misuse: A value outside the range is one SB3's algorithms would silently misuse (checked for every algorithm);
        False: sb3_gap's own stricter range, checked only for algorithms sb3_gap owns (see the module docstring)
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    none_ok: bool = False
    schedule_ok: bool = False
    also: tuple[Any, ...] = ()
    example: str = ""
    misuse: bool = True

    def check(self, name: str, value: Any) -> None:
        """Raise a one-line ``ValueError`` unless ``value`` is valid for argument ``name``."""
        if self.schedule_ok and callable(value):
            start = schedule_start(value)
            if start is None:  # a user's own callable: SB3 calls it, sb3_gap does not guess its values
                return
            value = start
        if (value is None and self.none_ok) or (value in self.also and is_int(value)):
            return
        if self.schedule_ok and isinstance(value, str) and value.startswith("lin_"):  # rl_zoo3's linear schedule
            try:
                value = float(value[len("lin_") :])
            except ValueError:
                raise Refused(f"{name}={value!r} is not a schedule lin_<float> (e.g. lin_{self.example or '2.5e-4'})") from None
        also = f"; or {', '.join(map(str, self.also))}" if self.also else ""
        none = "; or None" if self.none_ok else ""
        if self.integer:
            low = int(self.low or 0)
            if not is_int(value) or value < low or (self.high is not None and value > self.high):
                high = "" if self.high is None else f" and <= {int(self.high)}"
                raise Refused(f"{name} must be an integer >= {low}{high} (e.g. {self.example}{also}{none}), got {value!r}")
        else:
            check_range(name, value, self.low, self.high, self.low_open, self.high_open, example=f"{self.example}{also}{none}")


#: Modules whose schedule classes are unwrapped to their initial value (``ConstantSchedule``, ``LinearSchedule``,
#: ``FloatSchedule``, rl_zoo3's ``SimpleLinearSchedule``): pure functions of the progress, safe to call here.
_SCHEDULE_MODULES = ("stable_baselines3.common.utils", "rl_zoo3.utils")


def schedule_start(value: Any) -> Any:
    """The value an SB3 or rl_zoo3 schedule object starts from (progress remaining 1), None for any other callable."""
    if type(value).__module__ not in _SCHEDULE_MODULES:
        return None
    try:
        return value(1.0)
    except Exception:  # a schedule that cannot be evaluated is the algorithm's to report
        return None


_PROBABILITY = Bound(0.0, 1.0, example="0.01")

#: Algorithm constructor arguments (DQN, QR-DQN, PPO, Rainbow) and their valid values. Bounds follow what the
#: algorithm's update does with them (SB3's ``dqn.py``, ``ppo.py``, ``off_policy_algorithm.py``; Rainbow's own).
ALGO_ARG_BOUNDS: dict[str, Bound] = {
    "learning_rate": Bound(0.0, low_open=True, schedule_ok=True, example="6.25e-5"),
    "gamma": Bound(0.0, 1.0, example="0.99"),
    "tau": Bound(0.0, 1.0, low_open=True, example="1.0 (hard update)"),
    "max_grad_norm": Bound(0.0, low_open=True, none_ok=True, example="10"),
    "batch_size": Bound(1, integer=True, example="32"),
    "buffer_size": Bound(1, integer=True, example="1000000"),
    "learning_starts": Bound(0, integer=True, example="20000", misuse=False),  # SB3: a negative one starts at once
    # SB3's off_policy_algorithm.learn: 0 skips training on purpose, any negative value means -1
    "gradient_steps": Bound(1, integer=True, also=(-1,), example="1", misuse=False),
    "target_update_interval": Bound(1, integer=True, example="8000", misuse=False),  # DQN: 0 -> every step
    "n_steps": Bound(1, integer=True, example="3"),
    "exploration_fraction": Bound(0.0, 1.0, low_open=True, none_ok=True, example="0.1"),
    "exploration_initial_eps": _PROBABILITY,
    "exploration_final_eps": _PROBABILITY,
    "exploration_steps": Bound(0, integer=True, example="250000"),
    "eval_epsilon": Bound(0.0, 1.0, none_ok=True, example="0.001"),
    "stats_window_size": Bound(1, integer=True, example="100"),
    # PPO
    "n_epochs": Bound(1, integer=True, example="4"),
    "gae_lambda": Bound(0.0, 1.0, example="0.95"),
    "clip_range": Bound(0.0, low_open=True, schedule_ok=True, example="0.1"),
    "clip_range_vf": Bound(0.0, low_open=True, none_ok=True, schedule_ok=True, example="0.1"),
    "ent_coef": Bound(0.0, example="0.01", misuse=False),  # SAC/TQC: also "auto", "auto_0.1" (learned)
    "vf_coef": Bound(0.0, example="0.5"),
    "target_kl": Bound(0.0, low_open=True, none_ok=True, example="0.02"),
    # Rainbow: noisy nets and prioritized replay (Hessel et al. 2018, Table 1; Dopamine's 1e-10 for priority_eps)
    "sigma0": Bound(0.0, low_open=True, example="0.5, or Dopamine's 0.1"),
    "priority_alpha": Bound(0.0, example="0.5"),
    "priority_beta": Bound(0.0, 1.0, schedule_ok=True, example="0.5"),
    "priority_eps": Bound(0.0, low_open=True, example="1e-6, or Dopamine's 1e-10"),
}

#: ``train_freq`` units SB3 takes (``TrainFrequencyUnit``).
TRAIN_FREQ_UNITS = ("step", "episode")


def check_train_freq(value: Any) -> None:
    """``train_freq``: an integer >= 1 or ``(n, "step" | "episode")``; 0 would never train."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise Refused(f"train_freq must be an integer >= 1 or (n, unit) with unit in {list(TRAIN_FREQ_UNITS)}, got {value!r}")
        check_int("train_freq", value[0], example="4, (4, 'step')")
        unit = getattr(value[1], "value", value[1])  # SB3's TrainFrequencyUnit enum, or its string
        check_choice("train_freq unit", unit, TRAIN_FREQ_UNITS)
    else:
        check_int("train_freq", value, example="4, (4, 'step')")


def check_algo_args(kwargs: Mapping[str, Any], host: bool = False) -> None:
    """
    Check the arguments of :data:`ALGO_ARG_BOUNDS` (and ``train_freq``) found in ``kwargs``; others are refused only
    when NaN (no algorithm means anything by a NaN).

    :param kwargs: An algorithm's keyword arguments (a Zoo section, a sweep cell, Rainbow's own)
    :param host: The algorithm is SB3's or sb3-contrib's, not sb3_gap's: bounds with ``misuse=False`` are not applied
        (what the host takes and uses as written is never refused)
    :raises ValueError: One line naming the argument, the bad value and the valid range
    """
    for name, value in kwargs.items():
        bound = ALGO_ARG_BOUNDS.get(name)
        if name == "train_freq":
            check_train_freq(value)
        elif bound is not None and (bound.misuse or not host):
            bound.check(name, value)
        elif is_number(value) and math.isnan(value):
            raise Refused(f"{name} must be a number, got {value!r}")


def check_model_attributes(attrs: Mapping[str, Any]) -> None:
    """
    Attributes set on a built or loaded model (``load(..., **kwargs)``, a downloaded ``sb3_gap.json``'s ``model_attrs``):
    the constructor's bounds (:func:`check_algo_args`), and ``exploration_rate`` (the current ε, which only a model has)
    within the bound of ``exploration_initial_eps``.

    :raises Refused: One line naming the attribute, the bad value and the valid range
    """
    check_algo_args(attrs)
    if "exploration_rate" in attrs:
        ALGO_ARG_BOUNDS["exploration_initial_eps"].check("exploration_rate", attrs["exploration_rate"])


#: kron-torch's ``Kron`` options (``kron_torch/kron.py``) and their valid values.
KRON_ARG_BOUNDS: dict[str, Bound] = {
    "lr": Bound(0.0, low_open=True, example="1e-4"),
    "b1": Bound(0.0, 1.0, high_open=True, example="0.9"),
    "weight_decay": Bound(0.0, example="0.0"),
    "max_size_triangular": Bound(1, integer=True, example="8192"),
    "min_ndim_triangular": Bound(1, integer=True, example="2"),
    "precond_lr": Bound(0.0, low_open=True, example="0.1"),
    "precond_init_scale": Bound(0.0, low_open=True, example="1.0"),
}
#: kron-torch's ``memory_save_mode`` choices.
KRON_MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")


def is_kron_schedule(value: Any) -> bool:
    """
    Whether ``value`` is kron-torch's update-probability schedule. Each kron-torch module defines its own
    ``ProbScheduler`` class (``kron.py``, ``dist_kron.py``, ...) and the package exports ``dist_kron``'s
    ``precond_update_prob_schedule``, so the class is recognised by module and name; all save as their
    constructor arguments (``__reduce__``).
    """
    cls = type(value)
    return cls.__name__ == "ProbScheduler" and cls.__module__.startswith("kron_torch.")


def check_kron_args(kwargs: Mapping[str, Any]) -> None:
    """
    Check Kron's options: the numbers of :data:`KRON_ARG_BOUNDS`, ``memory_save_mode``, the two flags, and
    ``preconditioner_update_probability`` as a probability in (0, 1], None or kron-torch's own schedule
    (``kron_torch.precond_update_prob_schedule(...)``): any other callable is refused here, at construction,
    since it could not be saved with the model (and a function named in a config is never called).

    :param kwargs: ``kron_torch.Kron`` keyword arguments
    :raises ValueError: One line naming the option, the bad value and the valid values
    """
    for name, value in kwargs.items():
        if name in KRON_ARG_BOUNDS:
            KRON_ARG_BOUNDS[name].check(f"Kron {name}", value)
        elif name == "memory_save_mode":
            check_choice("Kron memory_save_mode", value, KRON_MEMORY_SAVE_MODES)
        elif name in ("momentum_into_precond_update", "merge_dims") and not isinstance(value, bool):
            raise Refused(f"Kron {name} must be True or False, got {value!r}")
        elif name == "preconditioner_update_probability" and value is not None and not is_kron_schedule(value):
            if callable(value):
                raise Refused(
                    f"Kron preconditioner_update_probability={value!r} is a callable other than kron-torch's schedule; valid: a "
                    "float in (0, 1], None (the default schedule) or kron_torch.precond_update_prob_schedule(...)"
                )
            check_range("Kron preconditioner_update_probability", value, 0.0, 1.0, low_open=True, example="1.0; or None")


__all__ = [
    "ALGO_ARG_BOUNDS",
    "KRON_ARG_BOUNDS",
    "Bound",
    "check_algo_args",
    "check_model_attributes",
    "check_kron_args",
    "check_train_freq",
    "is_kron_schedule",
    "schedule_start",
]
