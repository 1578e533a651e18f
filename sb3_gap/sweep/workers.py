"""Scaling sweeps on Optuna: a grid over bottleneck × width scale × env × seed (× algo, encoder and
any listed hyperparameter), one training run per trial, many workers on one storage.

Optuna is the distributed engine (one RDB storage, any number of worker processes on any number of
machines). This module adds what a *grid of training runs* needs on top of it:

* **No cell trained twice.** ``GridSampler`` alone can hand the same cell to two workers that ask
  at the same moment. Each trial therefore checks the storage before training: if its cell is
  already ``COMPLETE``, or ``RUNNING`` in a trial with a lower number, it is pruned as a duplicate
  (``user_attrs["duplicate_of"]``) without training. Of two racing trials the lower-numbered one
  always trains, so a cell is never dropped either.
* **Nothing lost to a crash.** Workers record Optuna heartbeats; a trial whose worker died (even
  by ``SIGKILL``) goes stale after ``grace_period`` seconds, is failed by
  :func:`optuna.storages.fail_stale_trials` and re-queued by
  :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`. Cells whose last trial failed are
  re-queued (``enqueue_trial``) on the next run of the same command, so re-running resumes.
  Curves and models are written per trial through a temp file and ``os.replace``.
* **Workers finish the grid.** A worker that finds no cell to start waits while other workers'
  trials run, so the last worker left also retries a stale trial of a worker that died.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch as th
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from tqdm import tqdm

from sb3_gap.checks import Refused, is_int
from sb3_gap.files import atomic_write_text
from sb3_gap.sweep.cell import train_cell
from sb3_gap.sweep.database import cli_message, is_lock_error, is_refusal, locked_message
from sb3_gap.sweep.spec import SweepSpec, cell_key, run_dir_for, run_name
from sb3_gap.sweep.storage import cell_states, open_study

IDLE_POLL_S = 2.0
#: The file in a run's folder that holds the traceback of a run that failed on a bug.
TRACEBACK_FILE = "traceback.txt"  # seconds between storage checks of a worker waiting for others' running cells


class RunFailed(RuntimeError):
    """A sweep run failed on an error that is not a refusal (a bug): one line naming the run and the file holding its traceback."""


class _OneLineTrialErrors(logging.Filter):
    """Drop the traceback Optuna logs with a trial that failed on a refusal (:func:`is_refusal`); every other error keeps its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and record.exc_info[1] is not None
            and (is_refusal(record.exc_info[1]) or isinstance(record.exc_info[1], KeyboardInterrupt))
        ):
            record.exc_info = None
        return True


def _quiet_known_trial_errors() -> None:
    """Install :class:`_OneLineTrialErrors` on the logger of ``study.optimize`` (once)."""
    optimize_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _OneLineTrialErrors) for f in optimize_logger.filters):
        optimize_logger.addFilter(_OneLineTrialErrors())


class _Objective:
    def __init__(self, spec: SweepSpec, progress: bool) -> None:
        self.spec = spec
        self.space = spec.search_space()
        self.progress = progress

    def duplicate_of(self, trial: optuna.Trial, key: str, patience: float = 5.0) -> optuna.trial.FrozenTrial | None:
        """
        A trial that owns this cell: ``COMPLETE``, or ``RUNNING`` with a lower number.

        A lower-numbered ``RUNNING`` trial whose parameters are not stored yet (it was just asked
        for and is still suggesting) is waited for, up to ``patience`` seconds.
        """
        deadline = time.monotonic() + patience
        while True:
            undecided = False
            for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if other.number == trial.number or (other.state == TrialState.RUNNING and other.number > trial.number):
                    continue
                params = other.params if len(other.params) >= len(self.space) else other.system_attrs.get("fixed_params", other.params)
                if len(params) < len(self.space):
                    undecided = undecided or other.state == TrialState.RUNNING
                elif cell_key(params) == key:
                    return other
            if not undecided or time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def __call__(self, trial: optuna.Trial) -> float:
        # A re-queued trial (dead worker's retry) already carries its params, possibly with the
        # choices of an older grid, which suggest_categorical would reject as a changed distribution.
        stored = trial.params
        params = {name: stored[name] if name in stored else trial.suggest_categorical(name, values) for name, values in self.space.items()}
        duplicate = self.duplicate_of(trial, cell_key(params))
        if duplicate is not None:
            trial.set_user_attr("duplicate_of", duplicate.number)
            raise optuna.TrialPruned(f"cell {run_name(params)} is already {duplicate.state.name} in trial {duplicate.number}")

        def report(mean: float, step: int) -> None:
            trial.report(mean, step)

        try:
            result = train_cell(self.spec, params, on_eval=report, tb_name=f"trial_{trial.number}", progress=self.progress)
        except Exception as e:
            if is_refusal(e):
                raise
            # A bug: its whole traceback goes to the run's folder (and to Optuna's log); the command says where.
            path = run_dir_for(self.spec, params) / TRACEBACK_FILE
            atomic_write_text(path, "".join(traceback.format_exception(e)))
            trial.set_user_attr("traceback_file", str(path))
            first = (str(e).strip().splitlines() or [""])[0]
            raise RunFailed(f"run {run_name(params)} (trial {trial.number}) failed with {type(e).__name__}: {first}; traceback in {path}") from e
        for name, value in result.items():
            if name != "params":
                trial.set_user_attr(name, value)
        return result["final_score"]


def _grid_bar(spec: SweepSpec, n_cells: int, enabled: bool) -> tqdm:
    return tqdm(total=n_cells, desc=f"grid {spec.study}", unit="run", position=0, disable=not enabled, dynamic_ncols=True)


def _n_complete(study: optuna.Study, keys: set[str]) -> int:
    states = cell_states(study.get_trials(deepcopy=False))
    return sum(states.get(k) == TrialState.COMPLETE for k in keys)


def next_cell(todo: list[str], cells: dict[str, dict[str, Any]], rng: random.Random) -> str:
    """
    The cell a worker starts next: the first not yet started in the order of :meth:`SweepSpec.cells`, or the second
    when it has the same width scale and seed (picked at random, so that workers starting together rarely collide).
    A cell of the next seed never starts before the current seed's cells have all started, so a study cut off early
    holds whole seeds.

    :param todo: Keys of the cells not started, in start order
    :param cells: Every cell by key
    :param rng: The worker's random generator
    """

    def group(key: str) -> tuple[Any, Any]:
        return cells[key]["width_scale"], cells[key]["seed"]

    return rng.choice([key for key in todo[:2] if group(key) == group(todo[0])])


def run_worker(
    spec: SweepSpec,
    progress: bool = True,
    wait: bool = True,
    max_trials: int | None = None,
    poll_interval: float | None = None,
    threads: int | None = None,
) -> int:
    """
    One worker: run grid cells of ``spec``'s study until every cell is complete.

    Start as many as you like, on this machine or on others sharing ``spec.storage``.

    :param progress: Show the grid bar and a per-run bar
    :param wait: When no cell is left to start, wait for other workers' running trials (and retry
        them if their worker dies) instead of returning
    :param max_trials: Stop after this many trials (``None``: until the grid is done)
    :param poll_interval: Seconds between checks while waiting (default :data:`IDLE_POLL_S`, at most the heartbeat
        interval): an idle worker leaves within seconds of the grid's last cell completing
    :param threads: Torch CPU threads (default: leave as is)
    :return: The number of trials this worker ran
    """
    spec.validate()
    check_out_dir(spec)
    if threads is not None:
        th.set_num_threads(threads)
    study = open_study(spec)
    _quiet_known_trial_errors()
    cells = {cell_key(c): c for c in spec.cells()}
    objective = _Objective(spec, progress)
    rng = random.Random()
    poll = poll_interval if poll_interval is not None else min(IDLE_POLL_S, float(spec.heartbeat_interval))
    bar = _grid_bar(spec, len(cells), progress)
    ran = 0
    try:
        while max_trials is None or ran < max_trials:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)  # a dead worker's trial → FAIL → re-queued as WAITING
            trials = study.get_trials(deepcopy=False)
            states = cell_states(trials)
            done = sum(states.get(k) == TrialState.COMPLETE for k in cells)
            bar.update(done - bar.n)
            if done == len(cells):
                break
            waiting = [t for t in trials if t.state == TrialState.WAITING]
            todo = [k for k in cells if states.get(k) not in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)]
            if not waiting and not todo:
                if not wait:
                    break
                time.sleep(poll)  # the rest is running elsewhere
                continue
            if not waiting:
                # Queue the next cell explicitly, in the order of SweepSpec.cells (GridSampler would pick at
                # random, counts failed/pruned cells as visited and does not know cells of an extended grid
                # are done).
                study.enqueue_trial(cells[next_cell(todo, cells, rng)])
            study.optimize(objective, n_trials=1)
            ran += 1
        bar.update(_n_complete(study, set(cells)) - bar.n)
    except Exception as e:
        if not is_lock_error(e):
            raise
        # Optuna may raise something else while handling it (AssertionError "Should not reach." when the tell fails).
        raise StorageLockedError(
            locked_message(
                spec.storage, "mid-run, longer than this worker waits: stopped; an unfinished trial is retried by the next run of the same command"
            )
        ) from None
    finally:
        bar.close()
    return ran


class StorageLockedError(Refused):
    """The sweep's storage stayed locked by another process longer than a worker waits (one line; re-run to resume)."""


class SweepWorkersFailed(RuntimeError):
    """Some local worker processes of :func:`run_sweep` exited with an error (their output says why)."""


def check_workers(workers: Any) -> None:
    """``workers`` of :func:`run_sweep`: a positive integer or ``"auto"``."""
    if workers == "auto":
        return
    if not is_int(workers) or workers < 1:
        raise Refused(f"workers must be a positive integer (local worker processes, e.g. 1 or 2) or 'auto', got {workers!r}")


#: Local workers per GPU with ``--workers auto`` on CUDA. The networks swept here (MinAtar; Atari Nature and Impala
#: at batch 32) keep a GPU busy for a fraction of each env step with one process, whose env steps, replay and Python
#: run on its CPU core; several processes share the GPU to fill it (each holds its own CUDA context, ~0.5 GB).
#: A starting point, not a measurement (no GPU has run a sweep yet): see docs/benchmarks_sweeps.md.
WORKERS_PER_GPU = 4


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parse_workers(text: str) -> int | str:
    """``--workers``: a positive integer or ``auto``."""
    if text == "auto":
        return "auto"
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise Refused(f"--workers {text}: expected a positive integer (e.g. 1, 2) or 'auto'")
    return workers


def auto_workers(device: str, n_cells: int) -> tuple[int, int]:
    """
    Worker processes and torch threads per worker for ``--workers auto``.

    On CPU: one worker per core, each with ``cores // workers`` threads. On CUDA (``device`` ``"cuda"``, or
    ``"auto"`` with a GPU present): :data:`WORKERS_PER_GPU` per GPU (on every GPU for ``"cuda"``, on the named
    one for ``"cuda:i"``). Never more workers than cores or than grid cells; the spare cores become threads.

    :param device: The sweep's ``device``
    :param n_cells: Number of grid cells
    :return: ``(workers, threads)``
    """
    cpus = available_cpus()
    kind = "cuda" if device == "auto" and th.cuda.is_available() else ("cpu" if device == "auto" else th.device(device).type)
    if kind == "cuda":
        if not th.cuda.is_available():
            raise Refused(f"--workers auto with device={device!r}: no CUDA device is available; valid: --device cpu or auto")
        gpus = 1 if th.device("cuda" if device == "auto" else device).index is not None else th.cuda.device_count()
        wanted = WORKERS_PER_GPU * max(gpus, 1)
    else:
        wanted = cpus
    workers = max(1, min(wanted, cpus, n_cells))
    return workers, max(1, cpus // workers)


def _worker_devices(device: str, workers: int) -> list[str]:
    """The device of each worker: ``"cuda"`` on several GPUs is spread round-robin (``cuda:0``, ``cuda:1``, ...)."""
    gpus = th.cuda.device_count() if device == "cuda" and th.cuda.is_available() else 0
    return [f"cuda:{i % gpus}" if gpus > 1 else device for i in range(workers)]


def check_out_dir(spec: SweepSpec) -> None:
    """Create ``<out_dir>/<study>`` and check that files can be written there, before any trial starts."""
    folder = Path(spec.out_dir) / spec.study
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise Refused(f"--out {spec.out_dir}: cannot write run folders in {folder} ({e.strerror or e}); choose a writable --out") from None


def _worker_entry(spec: SweepSpec, threads: int, wait: bool) -> None:
    """A spawned worker: :func:`run_worker`, its known failures printed in one line (not a traceback) with exit code 1."""
    try:
        run_worker(spec, progress=False, wait=wait, threads=threads)
    except Exception as e:
        if not (is_refusal(e) or isinstance(e, RunFailed)):
            raise  # a bug: its traceback
        print(f"{mp.current_process().name}: {cli_message('sweep', e, spec.storage)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal: the main process says what happened
        raise SystemExit(INTERRUPTED_EXIT) from None


#: Exit code of a sweep (and of its workers) stopped by Ctrl-C (SIGINT): 128 + 2, as a shell reports it.
INTERRUPTED_EXIT = 130
#: Seconds stopped workers get to leave after the main process passed Ctrl-C on, before they are terminated.
STOP_GRACE_S = 10.0


def interrupted_message(spec: SweepSpec) -> str:
    """The one line a sweep stopped by Ctrl-C prints: how many runs are complete and how to resume."""
    keys = {cell_key(c) for c in spec.cells()}
    try:
        study = optuna.load_study(study_name=spec.study, storage=spec.storage)
        done = f"{_n_complete(study, keys)} of {len(keys)} runs complete"
    except Exception:  # noqa: BLE001 - the storage itself may be what was interrupted; the way to resume is the same
        done = f"{len(keys)} runs in the grid"
    return (
        f"sb3-gap sweep: interrupted: {done}; nothing finished is lost: run the same command to resume "
        "(runs in flight continue from their last evaluation's checkpoint)"
    )


def run_sweep(spec: SweepSpec, workers: int | str = 1, progress: bool = True, wait: bool = True) -> optuna.Study:
    """
    Run (or resume) a sweep with ``workers`` local worker processes; returns the study.

    With ``workers > 1`` the workers are spawned processes with ``cpu_count // workers`` torch
    threads each, and this process shows the grid bar. Scripts that call this must guard their
    entry point with ``if __name__ == "__main__":`` (spawned processes re-import ``__main__``).

    :param spec: The sweep
    :param workers: Local worker processes, or ``"auto"``: one per core on CPU, :data:`WORKERS_PER_GPU` per GPU
        on CUDA (:func:`auto_workers`), with ``device="cuda"`` spread over all GPUs
    :param progress: Show progress bars
    :param wait: See :func:`run_worker`
    """
    check_workers(workers)
    spec.validate()
    check_out_dir(spec)
    study = open_study(spec)
    threads: int | None
    if workers == "auto":
        n_workers, threads = auto_workers(spec.device, len(spec.cells()))
        if progress:
            print(f"sb3-gap sweep: --workers auto: {n_workers} worker(s), {threads} torch thread(s) each", file=sys.stderr)
    else:
        n_workers = int(workers)
        threads = max(1, available_cpus() // n_workers) if n_workers > 1 else None
    if n_workers == 1:
        run_worker(spec, progress=progress, wait=wait, threads=threads)
        return study
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_entry, args=(dataclasses.replace(spec, device=device), threads, wait), name=f"sweep-worker-{i}")
        for i, device in enumerate(_worker_devices(spec.device, n_workers))
    ]
    for p in procs:
        p.start()
    keys = {cell_key(c) for c in spec.cells()}
    bar = _grid_bar(spec, len(keys), progress)
    try:
        while any(p.is_alive() for p in procs):
            bar.update(_n_complete(study, keys) - bar.n)
            time.sleep(1.0)
        bar.update(_n_complete(study, keys) - bar.n)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a SIGINT sent to this process alone is passed on. A worker
        # still running after the grace period is terminated: its trial goes stale and is retried on resume.
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
        raise
    finally:
        bar.close()
        for p in procs:
            p.join()
    failed = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if failed:
        raise SweepWorkersFailed(f"Sweep workers failed (name, exit code): {failed}; re-run the same command to resume")
    return study
