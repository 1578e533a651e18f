"""
``sb3-gap sweep --dry-run``: what a grid costs before it starts. The number of runs, env steps and gradient updates
(from each cell's resolved ``train_freq``/``gradient_steps``/``learning_starts``), the cells already complete in the
storage (read only; a missing SQLite file means none) and a wall-time estimate from a short timed probe of the most
expensive cell on this machine. Nothing is started and nothing is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import time
from typing import Any

from sb3_gap.checks import Refused
from sb3_gap.sweep.spec import HP_PREFIX, SweepSpec, cell_key

#: GPU measurements of a sweep run's cost that docs/ records, by device name: (seconds per env step, per update).
#: Empty: no GPU was lent to this project's sessions (docs/benchmarks_speed.md).
GPU_MEASUREMENTS: dict[str, tuple[float, float]] = {}
#: Env steps and gradient updates the probe times.
PROBE_STEPS, PROBE_UPDATES = 64, 4

# How much a network option costs, for picking the most expensive cell (higher sorts first).
_BOTTLENECK_COST = {"softmoe": 5, "sparse": 4, "tokenize": 3, "flatten": 2, "gmp": 1, "gap": 0}


def _cell_options(spec: SweepSpec, cell: dict[str, Any]) -> dict[str, Any]:
    return {**spec.fixed, **{k[len(HP_PREFIX) :]: v for k, v in cell.items() if k.startswith(HP_PREFIX)}}


def algorithm_arguments(spec: SweepSpec, cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's algorithm arguments: its resolved settings over the algorithm's own defaults (Rainbow's, DQN's, ...)."""
    from sb3_gap.algos import get_algo
    from sb3_gap.sweep.cell import resolve_run

    _, kwargs, _, _ = resolve_run(spec, cell)
    params = inspect.signature(get_algo(cell["algo"]).__init__).parameters.values()
    return {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **kwargs}


def is_on_policy(algo: str) -> bool:
    """Whether ``algo`` collects rollouts into a rollout buffer (PPO) rather than a replay buffer."""
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from sb3_gap.algos import get_algo

    return issubclass(get_algo(algo), OnPolicyAlgorithm)


def cell_updates(spec: SweepSpec, cell: dict[str, Any]) -> int | None:
    """
    Gradient updates one cell makes in ``spec.steps`` env steps, as SB3 schedules them with the cell's own settings
    and its algorithm's defaults; ``None`` when they depend on episode lengths (``train_freq=(n, "episode")``).
    """
    args = algorithm_arguments(spec, cell)
    if is_on_policy(cell["algo"]):  # epochs x minibatches per rollout
        rollout = int(args["n_steps"]) * spec.n_envs
        return (spec.steps // rollout) * int(args["n_epochs"]) * math.ceil(rollout / int(args["batch_size"]))
    train_freq = args["train_freq"]
    if isinstance(train_freq, (tuple, list)):
        if str(train_freq[1]) == "episode":
            return None
        train_freq = train_freq[0]
    per_rollout = int(train_freq) * spec.n_envs
    # SB3 trains after each rollout that ends past learning_starts; gradient_steps=-1: one update per env step collected.
    rollouts = spec.steps // per_rollout - min(spec.steps, int(args["learning_starts"])) // per_rollout
    gradient_steps = int(args["gradient_steps"])
    return rollouts * (per_rollout if gradient_steps < 0 else gradient_steps)


def most_expensive(spec: SweepSpec, updates: dict[str, int | None]) -> dict[str, Any]:
    """The cell that costs most per env step: most updates, then the biggest φ, ψ and bottleneck."""

    def cost(cell: dict[str, Any]) -> tuple[Any, ...]:
        opts = _cell_options(spec, cell)
        return (updates[cell_key(cell)] or 0, opts.get("encoder_scale", 1), opts.get("extra_blocks", 0), cell["width_scale"],
                opts.get("psi_depth", 0), _BOTTLENECK_COST.get(cell["bottleneck"], 0), opts.get("sparse_scope") == "all")  # fmt: skip

    return max(spec.cells(), key=cost)


def probe(spec: SweepSpec, cell: dict[str, Any], steps: int = PROBE_STEPS, n_updates: int = PROBE_UPDATES) -> tuple[float, float]:
    """
    Seconds per env step (acting, no update) and per gradient update of ``cell`` on this machine: the cell's model
    with a replay buffer of ``steps`` + 100 transitions and learning starting after ``steps`` steps, run for ``steps``
    env steps, then ``n_updates`` updates after one warm-up update. Writes nothing (no logs, no model).
    """
    from sb3_gap.envs.protocols import protocol_for
    from sb3_gap.sweep.cell import build_model
    from sb3_gap.zoo_config import resolve_section

    small = {} if is_on_policy(cell["algo"]) else {"buffer_size": steps + 100, "learning_starts": steps}
    trial = dataclasses.replace(
        spec,
        fixed={**spec.fixed, **small},
        hyperparams={k: v for k, v in spec.hyperparams.items() if k not in small},
    )
    cell = {k: v for k, v in cell.items() if k[len(HP_PREFIX) :] not in small}
    zoo_env = resolve_section(cell["algo"], cell["env"], spec.conf_dir).env
    protocol = protocol_for(cell["env"])
    env = protocol.make_env(
        cell["env"], spec.n_envs, cell["seed"], True, env_kwargs=zoo_env.get("env_kwargs"), env_wrapper=zoo_env.get("env_wrapper")
    )
    try:
        model = build_model(trial, cell, env)
        start = time.perf_counter()
        model.learn(steps)
        per_step = (time.perf_counter() - start) / steps
        train = getattr(model, "train", None)
        if is_on_policy(cell["algo"]) or train is None:
            return per_step, 0.0
        batch_size = int(getattr(model, "batch_size", 32))
        train(gradient_steps=1, batch_size=batch_size)  # warm-up (allocations, first-call costs)
        start = time.perf_counter()
        train(gradient_steps=n_updates, batch_size=batch_size)
        return per_step, (time.perf_counter() - start) / n_updates
    finally:
        env.close()


def complete_cells(spec: SweepSpec) -> int | str:
    """Cells of ``spec`` already complete in its storage, read without writing (a missing SQLite file: 0)."""
    from sb3_gap.sweep.database import sqlite_file

    path = sqlite_file(spec.storage)
    if path is not None and not path.is_file():
        return 0
    if path is None:
        return "not checked (--dry-run reads SQLite files only)"
    import sqlite3

    import optuna

    keys = {cell_key(c) for c in spec.cells()}
    uri = f"file:{path.resolve()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            found = db.execute("SELECT study_id FROM studies WHERE study_name = ?", (spec.study,)).fetchone()
            if found is None:
                return 0
            rows = db.execute(
                "SELECT t.trial_id, p.param_name, p.param_value, p.distribution_json FROM trials t JOIN trial_params p "
                "ON p.trial_id = t.trial_id WHERE t.study_id = ? AND t.state = 'COMPLETE'",
                (found[0],),
            ).fetchall()
    except sqlite3.DatabaseError as e:  # not SQLite, or SQLite without Optuna's tables ("no such table: studies")
        raise Refused(f"--storage {path}: not an Optuna study database ({e}); give the sweep's own database or a new file") from None
    params: dict[int, dict[str, Any]] = {}
    for trial_id, name, value, dist in rows:
        distribution = optuna.distributions.json_to_distribution(dist)
        params.setdefault(trial_id, {})[name] = distribution.to_external_repr(value)
    return len({cell_key(p) for p in params.values()} & keys)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def dry_run_report(spec: SweepSpec, workers: int | str = 1, timed: bool = True) -> str:
    """
    The text ``--dry-run`` prints: size, updates, complete cells and the wall-time estimate.

    :param spec: A validated grid
    :param workers: Local workers the sweep would run (the estimate divides by them)
    :param timed: Run the timed probe (else the estimate is left out)
    """
    cells = spec.cells()
    per_config: dict[str, int | None] = {}
    updates: dict[str, int | None] = {}
    for cell in cells:
        config = cell_key({k: v for k, v in cell.items() if k != "seed"})
        if config not in per_config:
            per_config[config] = cell_updates(spec, cell)
        updates[cell_key(cell)] = per_config[config]
    per_episode = sum(n is None for n in updates.values())
    total_updates = sum(n for n in updates.values() if n is not None)
    done = complete_cells(spec)
    lines = [
        f"sweep {spec.study} ({len(spec.envs)} envs x {len(cells) // max(1, len(spec.envs))} runs each)",
        f"  runs:              {len(cells):,}",
        f"  env steps:         {len(cells) * spec.steps:,} ({spec.steps:,} per run)",
        f"  gradient updates:  {total_updates:,}" + (f" (+ {per_episode:,} runs that train per episode: not counted)" if per_episode else ""),
        f"  complete already:  {done}" + (f" of {len(cells):,}" if isinstance(done, int) else ""),
    ]
    if timed:
        cell = most_expensive(spec, updates)
        per_step, per_update = probe(spec, cell)
        n_workers = (os.cpu_count() or 1) if workers == "auto" else int(workers)
        remaining = len(cells) - (done if isinstance(done, int) else 0)
        wall = (len(cells) * spec.steps * per_step + total_updates * per_update) * remaining / max(1, len(cells))
        name = " ".join(f"{k}={v}" for k, v in cell.items())
        lines += [
            f"  probe (this machine, {PROBE_STEPS} steps + {PROBE_UPDATES} updates of the most expensive cell: {name}):",
            f"    {per_step * 1e3:.2f} ms per env step, {per_update * 1e3:.2f} ms per update",
            f"  estimate here:     {_hours(wall / max(1, n_workers))} with {n_workers} worker(s) for the {remaining:,} runs left "
            f"(every run costed as the probed one; evaluations not included)",
        ]
        if GPU_MEASUREMENTS:
            for device, (gpu_step, gpu_update) in GPU_MEASUREMENTS.items():
                gpu_wall = (len(cells) * spec.steps * gpu_step + total_updates * gpu_update) * remaining / max(1, len(cells))
                lines.append(f"  estimate on {device}: {_hours(gpu_wall)} for one run at a time (docs/paper.md)")
        else:
            lines.append("  estimate on a GPU: not measured (no GPU measurement in docs/)")
    lines.append("  nothing was started and nothing was written")
    return "\n".join(lines)
