"""Optimizers as ``policy_kwargs`` options: weight decay (AdamW) and Kron, for DQN, QR-DQN, PPO and Rainbow.

``sb3_gap.policy_kwargs(..., optimizer="kron")`` or ``policy_kwargs(..., weight_decay=0.1)`` fill SB3's own
``optimizer_class`` / ``optimizer_kwargs`` entries, so every algorithm takes them without a subclass, an
rl_zoo3 YAML line can name them and a sweep can use them as axes (``--hyperparams optimizer=adam,kron``).

- **Weight decay** is decoupled (AdamW, Loshchilov & Hutter 2019) when the optimizer is Adam, the default
  optimizer of all four algorithms; Kron applies its own ``weight_decay`` to matrices.
- **Kron** is the PSGD Kron optimizer of the ``kron-torch`` package (Li 2018; the optimizer of Castanyer et al.
  2025, roger-creus/stable-deep-rl-at-scale ``src/utils/utils.py::get_optimizer``). :class:`Kron` is
  ``kron_torch.Kron`` with a state dict that SB3 can save and load: SB3 loads optimizer states with
  ``torch.load(weights_only=True)``, which refuses kron-torch's preconditioner-update schedule object and numpy
  shapes, and ``Optimizer.load_state_dict`` cannot copy kron-torch's einsum strings (it recurses into every
  iterable). The state dict therefore holds plain numbers, lists and tensors only, and the strings travel
  outside the per-parameter state; nothing is unpickled beyond what ``weights_only`` allows.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterable
from typing import Any

import kron_torch
import torch as th
from kron_torch.kron import precond_update_prob_schedule

from sb3_gap.algo_args import check_kron_args, is_kron_schedule
from sb3_gap.checks import Refused

#: The state-dict key of Kron's own counters (preconditioner schedule step, update counter, RNG, einsum strings).
KRON_STATE_KEY = "kron"
#: ``policy_kwargs`` options of this module (the sweep routes grid axes of these names to the optimizer).
OPTIMIZER_ARGS = ("optimizer", "weight_decay")


def _eager() -> contextlib.AbstractContextManager:
    # kron-torch compiles its preconditioner-update schedule (a scalar formula) with torch.compile on first use:
    # 169 s on a loaded 2-core CPU. The reference code turns compilation off for Kron too (src/pqn.py).
    set_stance = getattr(th.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


class Kron(kron_torch.Kron):
    """
    ``kron_torch.Kron`` (PSGD with Kronecker-factored preconditioners) whose state dict SB3's weights-only
    loading accepts, with exact resumption: momentum, preconditioners, the update-probability schedule and its
    step, the update counter and the RNG that times preconditioner balancing are all saved.

    The arguments are those of ``kron_torch.Kron`` (``lr=3e-4, b1=0.9, weight_decay=0.0,
    preconditioner_update_probability=None, max_size_triangular=8192, ...``); SB3 sets ``lr`` from the
    algorithm's ``learning_rate``. The kron-torch authors, and Castanyer et al.'s code, use a third of
    Adam's learning rate with Kron (``src/pqn.py``: ``args.learning_rate /= 3.0``). A float or the default
    schedule can be saved as ``preconditioner_update_probability``; another callable cannot.

    :param params: Parameters or parameter groups
    :param kwargs: ``kron_torch.Kron`` keyword arguments
    """

    def __init__(self, params: Iterable[Any], **kwargs: Any) -> None:
        check_kron_args(kwargs)  # kron-torch checks none: b1=nan trains to NaN, a callable cannot be saved
        super().__init__(params, **kwargs)
        self._pending: dict[str, Any] | None = None
        self.register_state_dict_post_hook(_plain_state_dict)
        self.register_load_state_dict_pre_hook(_unpack_state_dict)
        self.register_load_state_dict_post_hook(_restore_counters)

    @th.no_grad()
    def step(self, closure: Any = None) -> Any:
        with _eager():
            return super().step(closure)


def _plain_schedule(value: Any) -> Any:
    if is_kron_schedule(value):
        # ProbScheduler.__reduce__ gives its constructor arguments (max_prob, min_prob, decay, flat_start).
        return {"precond_update_prob_schedule": [float(a) for a in value.__reduce__()[1]]}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Refused(
        f"Kron preconditioner_update_probability={value!r} cannot be saved; use a float or the default schedule "
        "(kron_torch.precond_update_prob_schedule(...))"
    )


def _plain_state_dict(optimizer: Kron, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Optimizer state-dict post-hook: only what ``torch.load(weights_only=True)`` and ``load_state_dict`` take."""
    state, exprs = {}, {}
    for index, entry in state_dict["state"].items():
        entry = dict(entry)  # the live per-parameter state: copy before changing it
        if "exprs" in entry:
            exprs[index] = entry.pop("exprs")
        if "merged_shape" in entry:
            entry["merged_shape"] = [int(n) for n in entry["merged_shape"]]  # numpy integers otherwise
        state[index] = entry
    groups = [dict(g, preconditioner_update_probability=_plain_schedule(g["preconditioner_update_probability"]))
              for g in state_dict["param_groups"]]  # fmt: skip
    counters = dict(prob_step=int(optimizer._prob_step), update_counter=int(optimizer._update_counter), rng=optimizer.rng.getstate(), exprs=exprs)
    return {**state_dict, "state": state, "param_groups": groups, KRON_STATE_KEY: counters}


def _unpack_state_dict(optimizer: Kron, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Load pre-hook: rebuild the schedule, keep the counters for the post-hook."""
    state_dict = dict(state_dict)
    optimizer._pending = state_dict.pop(KRON_STATE_KEY, None)
    groups = []
    for group in state_dict["param_groups"]:
        prob = group.get("preconditioner_update_probability")
        if isinstance(prob, dict):
            group = dict(group, preconditioner_update_probability=precond_update_prob_schedule(*prob["precond_update_prob_schedule"]))
        groups.append(group)
    state_dict["param_groups"] = groups
    return state_dict


def _restore_counters(optimizer: Kron) -> None:
    """Load post-hook: counters, RNG and the einsum strings of each parameter's preconditioner."""
    pending, optimizer._pending = optimizer._pending, None
    if pending is None:  # a state dict of kron_torch.Kron itself: nothing more to restore
        return
    optimizer._prob_step = th.tensor(pending["prob_step"], dtype=th.int32)
    optimizer._update_counter = th.tensor(pending["update_counter"], dtype=th.int32)
    version, internal, gauss = pending["rng"]
    optimizer.rng.setstate((version, tuple(internal), gauss))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, exprs in pending["exprs"].items():
        optimizer.state[params[int(index)]]["exprs"] = exprs


#: Optimizers by name (``policy_kwargs(optimizer=...)``, sweep axes, YAML): Adam (every algorithm's default),
#: AdamW (decoupled weight decay) and Kron.
OPTIMIZERS: dict[str, type[th.optim.Optimizer]] = {"adam": th.optim.Adam, "adamw": th.optim.AdamW, "kron": Kron}


def resolve_optimizer(optimizer: str | type[th.optim.Optimizer]) -> type[th.optim.Optimizer]:
    """
    The optimizer class for a name of :data:`OPTIMIZERS` (any case) or a class; ``kron_torch.Kron`` becomes
    :class:`Kron` (same update, a state dict SB3 can load).

    :raises ValueError: Naming the value and the valid choices
    """
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.strip().lower())
        if cls is None:
            raise Refused(f"Unknown optimizer {optimizer!r}; valid choices: {sorted(OPTIMIZERS)} or a torch.optim.Optimizer subclass")
        return cls
    if isinstance(optimizer, type) and issubclass(optimizer, th.optim.Optimizer):
        return Kron if optimizer is kron_torch.Kron else optimizer
    raise Refused(f"optimizer must be one of {sorted(OPTIMIZERS)} or a torch.optim.Optimizer subclass, got {optimizer!r}")


def _accepted(cls: type) -> set[str] | None:
    """Keyword arguments ``cls`` takes (None: it takes any, through ``**kwargs`` all the way)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is th.optim.Optimizer:
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names - {"self", "params"}
    return None


def check_weight_decay(weight_decay: Any) -> None:
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not math.isfinite(weight_decay) or weight_decay < 0:
        raise Refused(f"weight_decay must be a finite number >= 0 (e.g. 0.1), got {weight_decay!r}")


def optimizer_policy_kwargs(
    optimizer: str | type[th.optim.Optimizer] | None = None,
    weight_decay: float | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    SB3's ``optimizer_class`` and ``optimizer_kwargs`` policy arguments.

    :param optimizer: A name of :data:`OPTIMIZERS` or an optimizer class (None: the base's class, Adam by default;
        with ``weight_decay``, Adam becomes AdamW)
    :param weight_decay: Weight decay coefficient (decoupled for AdamW; Kron decays matrices only)
    :param optimizer_kwargs: More settings of the optimizer (e.g. ``eps``); each must be one the optimizer takes
    :param base: Settings to start from, as a Zoo section gives them (``{"optimizer_class": ...,
        "optimizer_kwargs": ...}``): its class is used when ``optimizer`` is None, and its settings where the
        chosen optimizer takes them (Adam's ``eps`` carries over to AdamW, not to Kron)
    :return: ``{"optimizer_class": cls, "optimizer_kwargs": kwargs}``
    :raises ValueError: Naming the bad value and the valid choices
    """
    base = base or {}
    if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, dict):
        raise Refused(f"optimizer_kwargs must be a dict (e.g. dict(eps=1.5e-4)), got {optimizer_kwargs!r}")
    if weight_decay is not None:
        check_weight_decay(weight_decay)
    cls = resolve_optimizer(optimizer if optimizer is not None else base.get("optimizer_class") or th.optim.Adam)
    if weight_decay is not None and cls is th.optim.Adam:
        cls = th.optim.AdamW  # Adam's own weight_decay is an L2 penalty inside the adaptive step; AdamW decouples it
    accepted = _accepted(cls)
    given = dict(optimizer_kwargs or {})
    if weight_decay is not None:
        given["weight_decay"] = float(weight_decay)
    bad = sorted(k for k in given if k in ("params", "lr") or (accepted is not None and k not in accepted))
    if bad:
        valid = sorted((accepted or set()) - {"lr"})
        raise Refused(f"{cls.__name__} does not take {bad} (the learning rate comes from the algorithm); valid: {valid}")
    defaults = {k: v for k, v in (base.get("optimizer_kwargs") or {}).items() if k != "lr" and (accepted is None or k in accepted)}
    if issubclass(cls, kron_torch.Kron):
        check_kron_args({**defaults, **given})  # here already, before a model (or a sweep's first trial) is built
    return {"optimizer_class": cls, "optimizer_kwargs": {**defaults, **given}}
