"""
A sweep's Optuna study: its storage (:func:`make_storage`, with heartbeats so that a dead worker's trial is
retried), the study with the grid and training settings it was run with (:func:`open_study`), the grid
sampler, and the best trial and state of each grid cell (:func:`best_trials`, :func:`cell_states`).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sb3_gap.checks import Refused
from sb3_gap.sweep import database as sweep_database
from sb3_gap.sweep.database import check_sqlite_storage, check_storage_url, display_url, is_lock_error, locked_message, rdb_storage
from sb3_gap.sweep.spec import SweepSpec, cell_key

# Optuna's heartbeat API is marked experimental; it is the documented way to recover dead workers,
# so its ExperimentalWarnings are silenced where it is used.

_STATE_RANK = {TrialState.COMPLETE: 5, TrialState.RUNNING: 4, TrialState.WAITING: 3, TrialState.FAIL: 2, TrialState.PRUNED: 1}


class SweepGridSampler(optuna.samplers.GridSampler):
    """
    ``GridSampler`` whose ``after_trial`` tolerates cells queued with ``enqueue_trial``.

    Optuna's ``after_trial`` reads the trial's ``grid_id`` system attribute, which only trials
    the sampler itself assigned have; for a re-queued cell it raises ``KeyError`` when one grid
    point is left. Its only effect is ``study.stop()`` once the grid is exhausted, which
    :func:`run_worker` decides itself (it runs one trial per ``optimize`` call).
    """

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        if "grid_id" in trial.system_attrs:
            super().after_trial(study, trial, state, values)


#: Tries of a trial's write (its result, an evaluation, an attribute) while the SQLite storage stays locked; each try
#: waits :data:`~sb3_gap.sweep.database.SQLITE_BUSY_TIMEOUT_S` for the lock, and the pause between tries doubles.
LOCK_TRIES = 3
#: Seconds before the second try of a locked write (then 2x, 4x...).
LOCK_BACKOFF_S = 5.0


class SweepStorage(RDBStorage):
    """
    Optuna's ``RDBStorage`` for sweeps, which outlasts another process locking its SQLite file mid-run: a heartbeat
    that finds the storage locked says so in one line and the next heartbeat tries again (Optuna's heartbeat thread
    would die with a traceback), and a trial's writes (its result, evaluations, attributes) are tried
    :data:`LOCK_TRIES` times, each announced in one line, before the lock error is raised (:func:`run_worker
    <sb3_gap.sweep.workers.run_worker>` turns it into one line; the unfinished trial is retried by the next run).
    """

    def _locked(self, during: str) -> None:
        print(f"sb3-gap sweep: {locked_message(self.url, during)}", file=sys.stderr, flush=True)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as e:
            if not is_lock_error(e):
                raise
            self._locked(f"(a heartbeat of trial id {trial_id} waited {sweep_database.SQLITE_BUSY_TIMEOUT_S:g} s); the next heartbeat tries again")

    def _retry(self, write: Callable[[], Any], what: str) -> Any:
        for attempt in range(1, LOCK_TRIES + 1):
            try:
                return write()
            except Exception as e:
                if not is_lock_error(e) or attempt == LOCK_TRIES:
                    raise
                pause = LOCK_BACKOFF_S * 2 ** (attempt - 1)
                self._locked(f"while {what}; try {attempt + 1} of {LOCK_TRIES} in {pause:g} s")
                time.sleep(pause)
        raise AssertionError("unreachable")

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        return self._retry(
            lambda: super(SweepStorage, self).set_trial_state_values(trial_id, state, values), f"recording trial id {trial_id}'s result"
        )

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._retry(
            lambda: super(SweepStorage, self).set_trial_intermediate_value(trial_id, step, intermediate_value),
            f"recording trial id {trial_id}'s evaluation at step {step}",
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._retry(lambda: super(SweepStorage, self).set_trial_user_attr(trial_id, key, value), f"recording trial id {trial_id}'s {key}")


def make_storage(spec: SweepSpec, heartbeat: bool = True) -> RDBStorage:
    """
    Optuna RDB storage for ``spec.storage``; with ``heartbeat``, dead workers' trials are retried.

    SQLite files get their folder created, are checked first by :func:`check_sqlite_storage` (a corrupt,
    truncated or locked file is a one-line error within seconds) and get a long lock timeout (many local
    workers write to one file); other URLs are used as given.
    """
    check_storage_url(spec.storage)
    engine_kwargs: dict[str, Any] = {}
    if spec.storage.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(spec.storage).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        check_sqlite_storage(spec.storage, write=True)  # corrupt, truncated or locked: say so now, not after minutes
        engine_kwargs = {"connect_args": {"timeout": sweep_database.SQLITE_BUSY_TIMEOUT_S}}
    if not heartbeat:
        return rdb_storage(spec.storage, engine_kwargs=engine_kwargs, storage_class=SweepStorage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return rdb_storage(
            spec.storage,
            storage_class=SweepStorage,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=spec.heartbeat_interval,
            grace_period=spec.grace_period or 3 * spec.heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry),
        )


def _check_axes_unchanged(study: optuna.Study, spec: SweepSpec) -> None:
    """
    Refuse a grid whose axis takes other values than in the study's trials: Optuna fixes a categorical
    parameter's choices per study ("CategoricalDistribution does not support dynamic value space").

    :raises ValueError: Naming the axis, the stored and the given values, and the way out (a new study)
    """
    space = spec.search_space()
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if name in space and isinstance(dist, optuna.distributions.CategoricalDistribution) and list(dist.choices) != list(space[name]):
                raise Refused(
                    f"Study {spec.study!r} in {display_url(spec.storage)} has grid axis {name!r} = {list(dist.choices)}, "
                    f"given {list(space[name])}; Optuna fixes an axis' values per study: use the same values to resume, "
                    f"or a new --study name (sb3-gap report merges studies)"
                )


def open_study(spec: SweepSpec) -> optuna.Study:
    """Create or load the sweep's study and check that its training settings match ``spec``."""
    study = optuna.create_study(
        storage=make_storage(spec),
        study_name=spec.study,
        sampler=SweepGridSampler(spec.search_space(), seed=0),
        direction="maximize",
        load_if_exists=True,
    )
    _check_axes_unchanged(study, spec)
    space = json.loads(json.dumps(spec.search_space()))
    grids = study.user_attrs.get("grids", [])
    if space not in grids:  # every grid ever run, so that reports can mark cells never started
        study.set_user_attr("grids", [*grids, space])
    config = spec.training_config()
    stored = study.user_attrs.get("training_config")
    if stored is None:
        study.set_user_attr("training_config", config)
        study.set_user_attr("out_dir", str(Path(spec.out_dir).resolve()))
    elif stored != json.loads(json.dumps(config)):
        diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != json.loads(json.dumps(config)).get(k))
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            # Settings that never completed a trial (e.g. a bad value) do not bind the study: the corrected ones replace them.
            study.set_user_attr("training_config", config)
            print(
                f"sb3-gap sweep: study {spec.study!r} has no complete or running trial; its settings {diff} are replaced by the given ones",
                file=sys.stderr,
            )
            return study
        raise Refused(
            f"Study {spec.study!r} in {display_url(spec.storage)} was run with other training settings {diff}: "
            f"stored { ({k: stored.get(k) for k in diff}) }, given { ({k: config.get(k) for k in diff}) }; "
            f"use the same settings to resume, or a new --study name"
        )
    return study


def best_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, optuna.trial.FrozenTrial]:
    """The best trial per cell key (COMPLETE > RUNNING > WAITING > FAIL > PRUNED; the first of equals).
    A queued trial without params yet counts for the cell of its ``fixed_params``."""
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for t in trials:
        key = cell_key(t.params) if t.params else cell_key(t.system_attrs.get("fixed_params", {}))
        if key not in best or _STATE_RANK.get(t.state, 0) > _STATE_RANK.get(best[key].state, 0):
            best[key] = t
    return best


def cell_states(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, TrialState | None]:
    """Best state per cell key over all trials (see :func:`best_trials`)."""
    return {key: t.state for key, t in best_trials(trials).items()}
