"""
Sparse training of pixel networks: static sparsity, gradual magnitude pruning and RigL.

The three methods the paper compares GAP against (Sokar & Castro 2025, Fig. 5 and Fig. 10):

=========  ==================================================================================
method     what happens to the mask
=========  ==================================================================================
static     a random mask drawn at initialisation, fixed for all of training
           (Graesser et al. 2022; Sokar et al. 2022)
gmp        dense at first; every ``prune_every`` updates between ``prune_start`` and ``prune_end``
           the smallest-magnitude weights are pruned to the sparsity of Zhu & Gupta's (2017)
           cubic schedule ``s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(t_1 − t_0))³`` with ``s_i = 0``
           (Obando Ceron et al. 2024)
rigl       a random mask at initialisation; every ``rigl_interval`` updates, a fraction
           ``rigl_drop · ½(1 + cos(π t / rigl_end))`` of the active weights with the smallest
           magnitude is dropped and as many inactive weights with the largest dense-gradient
           magnitude are grown, at zero (Evci et al. 2020, Alg. 1 and Eq. 1); constant sparsity
=========  ==================================================================================

Scopes: ``sparse_scope="bottleneck"`` sparsifies the φ→ψ connection only (Fig. 5 left, "ψ only");
``"all"`` sparsifies every convolution of φ and every linear layer of ψ, with the per-layer
densities of the Erdős–Rényi-Kernel (ERK) distribution (Evci et al. 2020, Sec. 3), the default of
JaxPruner (Lee et al. 2024), so that the whole extractor has density ``1 − sparsity``.

**How it runs without a callback.** :class:`SparseTrainer` lives inside the extractor (so a
``policy_kwargs`` dict, an rl_zoo3 YAML line or a sweep axis is enough) and works through two hooks:

1. a post-accumulate-grad hook on every masked weight zeroes the gradient of masked weights right
   after ``backward()`` (before gradient clipping and before the optimizer) and, when a RigL update
   is due, first keeps the *dense* gradient (the forward pass uses the plain weight, whose masked
   entries are zero, so ``∂L/∂W`` is the dense gradient of Evci et al.);
2. a global ``torch.optim`` step post-hook (:func:`torch.optim.optimizer.register_optimizer_step_post_hook`)
   fires after every ``optimizer.step()`` of an optimizer that holds the masked weights: it advances the
   trainer's update counter ``updates`` (a buffer, saved with the model), updates the masks when the
   schedule says so, re-applies the masks to the weights (so optimizers whose update is not
   elementwise, such as Kron, cannot revive a pruned weight) and, when a mask changed, zeroes the
   optimizer state (Adam's ``exp_avg``/``exp_avg_sq``, SGD's momentum, ...) at the masked entries.

So the schedule counts **optimizer steps that update the masked weights**, i.e. gradient updates:
a ``backward()`` without a step (Grad-CAM, diagnostics) does not count, and a target network, whose
weights no optimizer holds, never advances. Target networks copied from the online one (Polyak or
``load_state_dict``) receive the zeros of the pruned weights, because masking is done on the weights
themselves rather than in the forward pass.

**Why the masking is hand-written.** ``torch.nn.utils.prune`` and ``torch.ao.pruning`` both mask in
the forward pass (``weight = weight_orig · weight_mask`` via a forward pre-hook or a ``FakeSparsity``
parametrization): a DQN target network, which SB3 updates by Polyak averaging of ``parameters()``
only, would keep its stale mask and miss the weights RigL grows; neither touches the optimizer
state, and neither implements RigL's grow step. What *is* used from torch:
:meth:`torch.ao.pruning.CubicSL.sparsity_compute_fn` (the cubic schedule),
:class:`torch.nn.utils.prune.L1Unstructured` (magnitude masks for ``gmp`` and RigL's drop) and
:class:`torch.nn.utils.prune.RandomUnstructured` (random initial masks), through their ``compute_mask``.
The mask of each layer is a ``weight_mask`` buffer, as ``torch.nn.utils.prune`` names it.
"""

from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import dataclass, fields
from typing import Any

import torch as th
from torch import nn
from torch.ao.pruning import CubicSL
from torch.nn.utils import prune
from torch.optim.optimizer import register_optimizer_step_post_hook

from sb3_gap.checks import Refused

SPARSE_METHODS = ("static", "gmp", "rigl")
SPARSE_SCOPES = ("bottleneck", "all")
MASK = "weight_mask"  # buffer name on each masked layer (torch.nn.utils.prune's convention)


@dataclass(frozen=True)
class SparseConfig:
    """
    Options of sparse training; the user-facing names are those of ``policy_kwargs``.

    :param sparsity: Target fraction of zero weights s_f, in (0, 1) (paper: 0.9, Graesser et al. 2022)
    :param sparse_method: ``"static"``, ``"gmp"`` or ``"rigl"``
    :param sparse_scope: ``"bottleneck"`` (the φ→ψ connection) or ``"all"`` (φ's convolutions and ψ, ERK)
    :param prune_start: ``gmp``: gradient update t_0 at which pruning starts (paper: 4% of training)
    :param prune_end: ``gmp``: gradient update t_1 at which the target sparsity is reached (paper: 80% of
        training); required for ``gmp``
    :param prune_every: ``gmp``: prune every this many gradient updates (Δt of Zhu & Gupta)
    :param rigl_interval: ``rigl``: update the mask every this many gradient updates (paper: 5,000)
    :param rigl_drop: ``rigl``: initial drop fraction α (paper: 0.2), cosine-decayed to 0 at ``rigl_end``
    :param rigl_end: ``rigl``: gradient update after which the mask stays fixed (Evci et al.: 75% of
        training); required for ``rigl``
    """

    sparsity: float = 0.9
    sparse_method: str = "static"
    sparse_scope: str = "bottleneck"
    prune_start: int = 0
    prune_end: int | None = None
    prune_every: int = 1_000
    rigl_interval: int = 5_000
    rigl_drop: float = 0.2
    rigl_end: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, as ``policy_kwargs`` takes them."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, **options: Any) -> SparseConfig:
        """A checked config; numpy scalars become Python numbers. Unset (``None``) options take their defaults.

        :raises ValueError: One line naming the bad value and the valid choices
        """
        given = {k: v for k, v in options.items() if v is not None}
        for name in ("prune_start", "prune_end", "prune_every", "rigl_interval", "rigl_end"):
            if name in given:
                value = given[name]
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (0 if name == "prune_start" else 1):
                    low = "an integer >= 0" if name == "prune_start" else "a positive integer"
                    raise Refused(f"{name} must be {low} (gradient updates), got {value!r}")
                given[name] = int(value)
        for name, (lo, hi) in (("sparsity", (0.0, 1.0)), ("rigl_drop", (0.0, 1.0))):
            if name in given:
                value = given[name]
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo < value < hi:
                    raise Refused(f"{name} must be a float in ({lo:g}, {hi:g}), got {value!r}")
                given[name] = float(value)
        config = cls(**given)
        if config.sparse_method not in SPARSE_METHODS:
            raise Refused(f"Unknown sparse_method {config.sparse_method!r}; valid choices: {list(SPARSE_METHODS)}")
        if config.sparse_scope not in SPARSE_SCOPES:
            raise Refused(f"Unknown sparse_scope {config.sparse_scope!r}; valid choices: {list(SPARSE_SCOPES)}")
        if config.sparse_method == "gmp":
            if config.prune_end is None:
                raise Refused("sparse_method='gmp' needs prune_end (gradient updates; the paper stops pruning at 80% of training)")
            if config.prune_end <= config.prune_start:
                raise Refused(f"prune_end={config.prune_end} must exceed prune_start={config.prune_start}")
        if config.sparse_method == "rigl" and config.rigl_end is None:
            raise Refused("sparse_method='rigl' needs rigl_end (gradient updates; Evci et al. stop mask updates at 75% of training)")
        return config


def cubic_sparsity(step: int, target: float, start: int, end: int) -> float:
    """
    Zhu & Gupta (2017, Eq. 1) with s_i = 0: ``s_t = s_f (1 − (1 − (t − t_0)/(t_1 − t_0))³)`` on [t_0, t_1],
    0 before, s_f after; computed by :meth:`torch.ao.pruning.CubicSL.sparsity_compute_fn` with
    ``Δt · n = t_1 − t_0``.

    :param step: Gradient update t
    :param target: Final sparsity s_f
    :param start: t_0
    :param end: t_1
    """
    return float(CubicSL.sparsity_compute_fn(0.0, target, step, start, 1, end - start, initially_zero=True))


def rigl_drop_fraction(step: int, drop: float, end: int) -> float:
    """RigL's cosine decay (Evci et al. 2020, Eq. 1): ``α/2 · (1 + cos(π t / T_end))``, 0 from ``end`` on."""
    return 0.0 if step >= end else drop / 2.0 * (1.0 + math.cos(math.pi * step / end))


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """
    Erdős–Rényi-Kernel layer densities (Evci et al. 2020, Sec. 3): density_l ∝ Σ dims / Π dims
    (``(n_in + n_out + k_h + k_w)/(n_in·n_out·k_h·k_w)`` for a convolution), scaled so that the
    layers together keep ``density`` of their weights; a layer that would exceed 1 is made dense and
    the rest rescaled (as in the RigL code and JaxPruner).

    :param shapes: Weight shapes of the layers
    :param density: Overall density 1 − s
    """
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        eps = budget / divisor
        over = [i for i in range(len(shapes)) if i not in dense and eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.add(max(over, key=lambda i: raw[i]))


def _zero_state_at(optimizer: th.optim.Optimizer, param: nn.Parameter, mask: th.Tensor) -> None:
    """Zero every optimizer state tensor shaped like ``param`` (Adam's moments, momentum) where ``mask`` is 0."""
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, th.Tensor) and value.shape == param.shape:
            value.mul_(mask.to(value.dtype))


class SparseTrainer(nn.Module):
    """
    Masks, update counter and schedule of sparse training for some layers of an extractor.
    See the module docstring for how it runs from ``policy_kwargs`` alone.

    The layers are referenced, not owned (they stay where they are in φ and ψ); each gets a
    ``weight_mask`` buffer. The trainer's own state is the ``updates`` buffer, so that a saved model
    resumes the schedule where it was.

    :param layers: ``nn.Linear`` / ``nn.Conv2d`` layers to sparsify
    :param config: The options
    """

    def __init__(self, layers: list[nn.Module], config: SparseConfig) -> None:
        super().__init__()
        self.config = config
        self._layers = list(layers)  # a plain list: not submodules, so no duplicate state_dict entries
        self.register_buffer("updates", th.zeros((), dtype=th.long))
        self._count = 0  # Python mirror of ``updates`` (no device sync per step); refreshed on load
        density = 1.0 - config.sparsity
        if config.sparse_scope == "all" and len(layers) > 1:
            self.targets = [1.0 - d for d in erk_densities([tuple(m.weight.shape) for m in layers], density)]
        else:
            self.targets = [config.sparsity] * len(layers)
        self._dense_grads: dict[int, th.Tensor] = {}
        self._owned: weakref.WeakKeyDictionary[th.optim.Optimizer, bool] = weakref.WeakKeyDictionary()
        for i, (layer, target) in enumerate(zip(self._layers, self.targets)):
            weight = layer.weight
            mask = th.ones_like(weight)
            if config.sparse_method != "gmp":  # static and RigL start sparse, from a random mask
                mask = prune.RandomUnstructured(amount=self._n_pruned(weight, target)).compute_mask(weight, mask)
            layer.register_buffer(MASK, mask)
            with th.no_grad():
                weight.mul_(mask)
            weight.register_post_accumulate_grad_hook(_GradHook(self, i))
        _LIVE.add(self)

    @staticmethod
    def _n_pruned(weight: th.Tensor, sparsity: float) -> int:
        return int(round(sparsity * weight.numel()))

    @property
    def layers(self) -> list[nn.Module]:
        """The masked layers."""
        return self._layers

    def masks(self) -> list[th.Tensor]:
        """The current binary masks, one per layer."""
        return [getattr(layer, MASK) for layer in self._layers]

    def density(self) -> float:
        """Fraction of non-zero weights over all masked layers."""
        nonzero = total = 0
        for layer in self._layers:
            nonzero += int(layer.weight.count_nonzero())
            total += layer.weight.numel()
        return nonzero / total

    def rigl_due(self, step: int) -> bool:
        """Whether RigL updates the mask after gradient update ``step``."""
        c = self.config
        return c.sparse_method == "rigl" and step % c.rigl_interval == 0 and 0 < step < (c.rigl_end or 0)

    def gmp_due(self, step: int) -> bool:
        """Whether GMP prunes after gradient update ``step``."""
        c = self.config
        if c.sparse_method != "gmp" or c.prune_end is None:
            return False
        return step == c.prune_end or (c.prune_start <= step < c.prune_end and (step - c.prune_start) % c.prune_every == 0)

    def owns(self, optimizer: th.optim.Optimizer) -> bool:
        """Whether ``optimizer`` updates the masked weights (cached per optimizer)."""
        known = self._owned.get(optimizer)
        if known is None:
            ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
            known = self._owned[optimizer] = any(id(layer.weight) in ids for layer in self._layers)
        return known

    def on_grad(self, index: int, param: nn.Parameter) -> None:
        """After ``backward()``: keep the dense gradient if RigL needs it, then zero the masked gradients."""
        if param.grad is None:
            return
        if self.rigl_due(self._count + 1):
            self._dense_grads[index] = param.grad.detach().clone()
        param.grad.mul_(getattr(self._layers[index], MASK))

    @th.no_grad()
    def after_step(self, optimizer: th.optim.Optimizer) -> None:
        """After ``optimizer.step()``: count the update, update masks when due, keep pruned weights and state at zero."""
        self._count += 1
        self.updates.fill_(self._count)
        step = self._count
        changed = False
        if self.gmp_due(step):
            self._prune(step)
            changed = True
        elif self.rigl_due(step) and len(self._dense_grads) == len(self._layers):
            self._rigl(step)
            changed = True
        self._dense_grads.clear()
        for layer in self._layers:
            mask = getattr(layer, MASK)
            layer.weight.mul_(mask)
            if changed:
                _zero_state_at(optimizer, layer.weight, mask)

    def _prune(self, step: int) -> None:
        """GMP: prune each layer to the cubic-schedule sparsity of its own target (magnitude, L1Unstructured)."""
        c = self.config
        assert c.prune_end is not None
        for layer, target in zip(self._layers, self.targets):
            s_t = cubic_sparsity(step, target, c.prune_start, c.prune_end)
            mask = getattr(layer, MASK)
            # The weights already pruned are 0, so they are the first |w|-smallest: masks only shrink.
            new = prune.L1Unstructured(amount=self._n_pruned(layer.weight, s_t)).compute_mask(layer.weight * mask, mask)
            mask.copy_(new)

    def _rigl(self, step: int) -> None:
        """RigL (Evci et al. 2020, Alg. 1): drop the smallest active |w|, grow the largest inactive |∇L|, at zero."""
        c = self.config
        assert c.rigl_end is not None
        fraction = rigl_drop_fraction(step, c.rigl_drop, c.rigl_end)
        for i, layer in enumerate(self._layers):
            mask = getattr(layer, MASK)
            active = mask.bool()
            k = int(fraction * int(active.sum()))
            if k == 0:
                continue
            flat = mask.view(-1)
            # Drop: the k active weights of smallest magnitude (inactive ones scored +inf so never chosen).
            score_drop = th.where(active, layer.weight.abs(), th.full_like(layer.weight, math.inf)).view(-1)
            dropped = th.topk(score_drop, k, largest=False).indices
            after_drop = flat.clone()
            after_drop[dropped] = 0
            # Grow: the k positions not active after the drop with the largest dense-gradient magnitude.
            score_grow = th.where(after_drop.view_as(mask).bool(), th.full_like(mask, -math.inf), self._dense_grads[i].abs()).view(-1)
            grown = th.topk(score_grow, k, largest=True).indices
            after_drop[grown] = 1
            # New connections start at zero (a regrown just-dropped weight keeps its value, as in the RigL code).
            newly = (after_drop.view_as(mask) > flat.view_as(mask)).view(-1)
            layer.weight.view(-1)[newly] = 0.0
            mask.copy_(after_drop.view_as(mask))

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = int(self.updates)  # resume the schedule where the saved model was


class _GradHook:
    """Post-accumulate-grad hook holding its trainer weakly (no reference cycle through the parameter)."""

    def __init__(self, trainer: SparseTrainer, index: int) -> None:
        self.trainer = weakref.ref(trainer)
        self.index = index

    def __call__(self, param: nn.Parameter) -> None:
        trainer = self.trainer()
        if trainer is not None:
            trainer.on_grad(self.index, param)


_LIVE: weakref.WeakSet[SparseTrainer] = weakref.WeakSet()


def _after_any_step(optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Global optimizer step post-hook: advance every live trainer whose weights ``optimizer`` holds."""
    for trainer in list(_LIVE):
        if trainer.owns(optimizer):
            trainer.after_step(optimizer)


_HOOK = register_optimizer_step_post_hook(_after_any_step)
