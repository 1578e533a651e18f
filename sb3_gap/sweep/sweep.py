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

import argparse
import difflib
import inspect
import io
import json
import multiprocessing as mp
import os
import random
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import torch as th
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import sync_envs_normalization
from tqdm import tqdm

import sb3_gap  # noqa: F401  (registers MinAtar/* ids)
from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.bottlenecks import BOTTLENECKS
from sb3_gap.extractor import ENCODERS, ConvExtractor, policy_kwargs
from sb3_gap.optim import OPTIMIZER_ARGS, optimizer_policy_kwargs
from sb3_gap.report import parameter_report
from sb3_gap.sweep.protocols import protocol_for, register_ale_ids
from sb3_gap.zoo_config import SCHEDULE_KEYS, ZooSettings, materialize, resolve_section

# Optuna's heartbeat API is marked experimental; it is the documented way to recover dead workers,
# so its ExperimentalWarnings are silenced where it is used.

HP_PREFIX = "hp:"  # grid parameters named "hp:<name>" are hyperparameters
IDLE_POLL_S = 2.0  # seconds between storage checks of a worker waiting for others' running cells
# ConvExtractor arguments go to policy_kwargs; every other hyperparameter goes to the algorithm.
EXTRACTOR_ARGS = frozenset(ConvExtractor.argument_names())  # with the options bottlenecks declare (sparse_method, ...)
EXTRACTOR_ARGS |= frozenset(OPTIMIZER_ARGS)  # policy_kwargs(optimizer=..., weight_decay=...): policy arguments too
EVAL_SEED_OFFSET = 10_000  # evaluation envs never share a seed with training envs
STORAGE_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
STORAGE_EXAMPLES = "sqlite:///runs/sweep.db, postgresql://user:password@host/db, mysql+pymysql://user:password@host/db"
_STATE_RANK = {TrialState.COMPLETE: 5, TrialState.RUNNING: 4, TrialState.WAITING: 3, TrialState.FAIL: 2, TrialState.PRUNED: 1}


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"1e-4"`` → 1e-4, ``"true"`` → True, ``"none"`` → None, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# The driver each backend needs, for the error when it is missing. SQLAlchemy >= 2.1 opens postgresql:// with
# psycopg 3; psycopg2 needs postgresql+psycopg2:// (checked against PostgreSQL 15, docs/sweeps.md).
DB_DRIVERS = {
    "postgresql": 'pip install "psycopg[binary]" (for postgresql://; with psycopg2-binary write postgresql+psycopg2://)',
    "mysql": "pip install pymysql, and write mysql+pymysql://",
    "mariadb": "pip install pymysql, and write mariadb+pymysql://",
}


# Query-string keys whose values are secrets (``?password=...``, ``&sslpassword=...``, tokens, keys).
_SECRET_QUERY = re.compile(r"(?i)([?&;][^=&;#?]*(?:pass|pwd|secret|token|key)[^=&;#?]*=)[^&;#]*")
# scheme://user:<anything, '@' and '/' included>@<rest without '@'>: the password is everything up to the LAST '@'.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:/*[^:/?#@]*):(.*)@([^@]*)$", re.S)


def _mask_userinfo(text: str) -> str:
    """``text`` with any ``user:password@`` part masked, whether or not SQLAlchemy can parse it."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(text)
        rendered = parsed.render_as_string(hide_password=True)
        password = None if parsed.password is None else str(parsed.password)
        # SQLAlchemy stops the password at the first '@' ("u:p@ss@host" has host "ss@host"): fall through then.
        if "@" not in (parsed.host or "") and not (password and password in rendered):
            return rendered
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: masked by the rules below
        pass
    match = _USERINFO.match(text)
    if match:
        return f"{match.group(1)}:***@{match.group(3)}"
    if "@" in text:  # no "user:" part that the pattern recognizes: hide all that precedes the last '@'
        scheme, sep, rest = text.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if sep else "***@" + text.rsplit("@", 1)[1]
    return text


def display_url(url: str) -> str:
    """
    ``url`` with every form of password masked (``***``), for messages, logs and reports: the
    ``user:password@`` part (also when the password holds ``@`` or ``/``, or the URL does not parse)
    and query-string secrets (``?password=``, ``sslpassword``, tokens, keys).

    :param url: A storage URL, possibly malformed
    """
    return _SECRET_QUERY.sub(r"\1***", _mask_userinfo(str(url)))


def scrub_secrets(text: str, url: str | None) -> str:
    """``text`` (an error message) with ``url`` shown masked and its password, if any, replaced by ``***``."""
    if not url:
        return text
    text = text.replace(str(url), display_url(url))
    from sqlalchemy.engine import make_url

    secrets: list[str] = []
    try:
        parsed = make_url(url)
        secrets += [str(parsed.password)] if parsed.password else []
        secrets += [str(v) for k, v in parsed.query.items() if re.search(r"(?i)pass|pwd|secret|token|key", k) and isinstance(v, str)]
    except Exception:  # noqa: BLE001 - unparsable: the pattern below finds the password
        pass
    match = _USERINFO.match(str(url))  # also when SQLAlchemy stopped the password at an '@' inside it
    secrets += [match.group(2)] if match else []
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:  # shorter "secrets" would mask ordinary words and reveal little
            text = text.replace(secret, "***")
    return text


def rdb_storage(url: str, attempts: int = 4, **kwargs: Any) -> RDBStorage:
    """
    ``optuna.storages.RDBStorage(url, **kwargs)``, with a clear error when the database driver is missing,
    and retried when workers that start together on an empty database race to create Optuna's tables
    (seen with PostgreSQL: one worker fails on a duplicate ``alembic_version`` type; a retry finds the tables).

    :param url: SQLAlchemy database URL
    :param attempts: Tries before a database error is raised
    :param kwargs: Passed to ``RDBStorage``
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return RDBStorage(url, **kwargs)
        except ImportError as e:
            backend = make_url(url).get_backend_name()
            hint = DB_DRIVERS.get(backend, f"install the SQLAlchemy driver for {backend!r}")
            raise ImportError(f"No database driver for the storage {display_url(url)}: {hint} ({e})") from None
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1) + random.random())
    raise AssertionError("unreachable")


def check_storage_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is an SQLAlchemy database URL Optuna's RDBStorage can open."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError, TypeError) as e:
        raise ValueError(f"Bad storage URL {display_url(url)!r} ({e}); valid forms: {STORAGE_EXAMPLES}") from None
    if backend not in STORAGE_BACKENDS:
        raise ValueError(
            f"Unsupported storage backend {backend!r} in {display_url(url)!r}; valid backends: {list(STORAGE_BACKENDS)}"
        )


#: Seconds one probe of an SQLite storage waits for a lock before saying so (then it retries, visibly).
SQLITE_PROBE_TIMEOUT_S = 3.0
#: Seconds a locked SQLite storage is retried before the command stops with an error.
SQLITE_LOCK_WAIT_S = 60.0


def sqlite_file(url: str) -> Path | None:
    """The file of an ``sqlite:///`` storage URL (``None`` for other backends and in-memory databases)."""
    if not str(url).startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _lock_holders(path: Path) -> str:
    """Which processes have ``path`` (or its journal) open, from ``/proc`` (Linux; same user), for the lock message."""
    targets = {str(path.resolve()), str(path.resolve()) + "-journal", str(path.resolve()) + "-wal"}
    holders = []
    proc = Path("/proc")
    for pid_dir in proc.iterdir() if proc.is_dir() else []:
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (pid_dir / "fd").iterdir()):
                cmd = " ".join((pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split())
                holders.append(f"PID {pid_dir.name} ({cmd[:80]})")
        except OSError:  # gone, or another user's process
            continue
    return ", ".join(holders) if holders else "another process (none visible from here: another user, or another machine)"


def _sqlite_header_problem(path: Path) -> str | None:
    """Why ``path`` is not an intact SQLite file (bad header, truncated), or ``None``; an empty file is a new database."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header:
        return None
    if not header.startswith(b"SQLite format 3\x00"):
        return "it is not an SQLite database (wrong header: corrupt, or another kind of file)"
    if len(header) < 100:
        return f"it is truncated ({len(header)} bytes, shorter than the 100-byte SQLite header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # the in-header size is valid when these counters agree
    if header_valid and pages and path.stat().st_size < pages * page_size:
        return f"it is truncated ({path.stat().st_size} bytes; its header says {pages} pages of {page_size} bytes)"
    return None


def check_sqlite_storage(url: str, must_exist: bool = False, write: bool = True, wait: float | None = None) -> None:
    """
    Check an ``sqlite:///`` storage before Optuna opens it, so that problems are one-line errors instead of
    hangs or tracebacks: a missing file (when ``must_exist``), a corrupt or truncated file, and a lock held by
    another process, which is reported within :data:`SQLITE_PROBE_TIMEOUT_S` seconds with the processes
    holding the file, retried visibly on stderr and given up after ``wait`` seconds. Other URLs are not touched.

    :param url: Storage URL
    :param must_exist: Refuse a file that does not exist (reports: never create an empty database)
    :param write: Probe for a write lock (sweeps) rather than a read (reports)
    :param wait: Seconds to retry a locked file (default :data:`SQLITE_LOCK_WAIT_S`)
    :raises ValueError: Naming the file and what is wrong with it
    """
    import sqlite3

    path = sqlite_file(url)
    if path is None:
        return
    if not path.exists():
        if must_exist:
            raise ValueError(f"SQLite storage {path} does not exist (from {display_url(url)}): check the path; a sweep creates it")
        return
    if path.is_dir():
        raise ValueError(f"SQLite storage {path} is a folder, not a database file: check --storage ({display_url(url)})")
    problem = _sqlite_header_problem(path)
    if problem:
        raise ValueError(f"SQLite storage {path} cannot be used: {problem}; restore it from a copy or use another --storage")
    wait = SQLITE_LOCK_WAIT_S if wait is None else wait
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        try:
            conn = sqlite3.connect(str(path), timeout=SQLITE_PROBE_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("ROLLBACK")
            finally:
                conn.close()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise ValueError(f"SQLite storage {path} cannot be opened: {e}") from None
            holders = _lock_holders(path)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValueError(
                    f"SQLite storage {path} is locked by {holders}; gave up after {wait:.0f} s: "
                    "let that process finish or stop it, or use another --storage"
                ) from None
            attempt += 1
            print(f"sb3-gap: SQLite storage {path} is locked by {holders}; retry {attempt} (giving up in {left:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(min(1.0, max(left, 0.0)))
        except sqlite3.DatabaseError as e:
            raise ValueError(f"SQLite storage {path} is corrupt ({e}); restore it from a copy or use another --storage") from None


def _check_env_id(env_id: str) -> None:
    register_ale_ids()  # ALE/Pong-v5, PongNoFrameskip-v4: registered by importing ale_py, which gymnasium 1.x does not do
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        raise ValueError(f"Unknown env id {env_id!r} ({e}); close registered ids: {close}") from None


def cell_key(params: dict[str, Any]) -> str:
    """Canonical identity of a grid cell (its parameters as sorted JSON)."""
    return json.dumps(params, sort_keys=True)


def run_name(params: dict[str, Any]) -> str:
    """``qrdqn-impala-gap-x4-s0`` (+ ``-name=value`` per hyperparameter): the run's folder name."""
    hps = "".join(f"-{k[len(HP_PREFIX):]}={v}" for k, v in sorted(params.items()) if k.startswith(HP_PREFIX))
    return f"{params['algo']}-{params['encoder']}-{params['bottleneck']}-x{params['width_scale']}{hps}-s{params['seed']}"


def env_slug(env_id: str) -> str:
    """
    ``env_id`` as a folder name, the RL Zoo's way (huggingface_sb3's ``EnvironmentName``, which names
    ``logs/<algo>/<slug>_<N>/`` and the Hub's ``<algo>-<slug>.zip``): ``MinAtar/Breakout-v1`` -> ``MinAtar-Breakout-v1``.
    """
    from huggingface_sb3 import EnvironmentName

    return str(EnvironmentName(env_id))


def env_dir(spec: SweepSpec, env_id: str) -> Path:
    """
    ``<out>/<study>/<slug>``; a study whose folder already uses the earlier slug (``/`` -> ``_``, e.g.
    ``results/minatar_scaling/MinAtar_Breakout-v1``) keeps it, so resuming never splits its runs over two folders.
    """
    root = Path(spec.out_dir) / spec.study
    legacy = root / env_id.replace("/", "_").replace(":", "_")
    return legacy if legacy.is_dir() else root / env_slug(env_id)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace``: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


@dataclass
class SweepSpec:
    """
    A scaling sweep: the grid, the training budget and where everything is stored.

    :param envs: Env ids as given to ``gym.make`` (``"MinAtar/Breakout-v1"``, ``"ALE/Pong-v5"``)
    :param algos: Algorithm names of :data:`sb3_gap.algos.ALGOS`
    :param bottlenecks: Bottlenecks of :data:`sb3_gap.BOTTLENECKS`
    :param width_scales: ψ width multipliers (dim(ψ) = 512 × scale)
    :param seeds: Number of seeds (``0..n-1``) or an explicit list
    :param encoders: Encoders φ of :data:`sb3_gap.ENCODERS`
    :param hyperparams: Extra grid axes ``{name: [values]}``; ``ConvExtractor`` arguments
        (``psi_depth``, ``layer_norm``, ...) go to the network, anything else to the algorithm
    :param fixed: Hyperparameters fixed for every run (same routing as ``hyperparams``)
    :param steps: Environment steps per run
    :param eval_freq: Evaluate every this many environment steps (default: ``steps // 10``)
    :param eval_episodes: Episodes per evaluation
    :param final_evals: A run's final score is the mean of its last ``final_evals`` evaluations
    :param n_envs: Parallel training envs per run
    :param storage: Optuna storage URL (SQLite file, or a shared PostgreSQL/MySQL for many machines)
    :param study: Optuna study name
    :param out_dir: Root of per-trial folders (curves, models, TensorBoard logs): ``out_dir/study/env/run``
    :param save_models: Save each run's final model (``model.zip``)
    :param heartbeat_interval: Seconds between a running trial's heartbeats
    :param grace_period: Seconds without heartbeat before a trial counts as dead (default 3 × interval)
    :param max_retry: Times a dead worker's trial is retried (``None``: forever)
    :param device: Torch device for training (``"auto"`` uses CUDA when present)
    :param conf_dir: Folder of the Zoo configs ``<algo>.yml`` each run's hyperparameters come from
        (default: the repository's ``zoo_configs/``); ``fixed`` and ``hyperparams`` override them
    """

    envs: list[str]
    algos: list[str] = field(default_factory=lambda: ["qrdqn"])
    bottlenecks: list[str] = field(default_factory=lambda: ["flatten", "gap"])
    width_scales: list[int] = field(default_factory=lambda: [1])
    seeds: int | list[int] = 1
    encoders: list[str] = field(default_factory=lambda: ["impala"])
    hyperparams: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    steps: int = 100_000
    eval_freq: int | None = None
    eval_episodes: int = 10
    final_evals: int = 3
    n_envs: int = 1
    storage: str = "sqlite:///runs/sweep.db"
    study: str = "sweep"
    out_dir: str = "runs"
    save_models: bool = True
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_retry: int | None = 3
    device: str = "auto"
    conf_dir: str | None = None

    def __post_init__(self) -> None:
        # Numbers in spirit (numpy scalars from a script) become Python numbers: Optuna and JSON store them.
        for name in ("width_scales", "seeds", "steps", "eval_freq", "eval_episodes", "final_evals", "n_envs"):
            setattr(self, name, _plain(getattr(self, name)))
        self.fixed = {k: _plain(v) for k, v in self.fixed.items()} if isinstance(self.fixed, dict) else self.fixed
        if isinstance(self.hyperparams, dict):
            self.hyperparams = {k: _plain(v) for k, v in self.hyperparams.items()}
        if isinstance(self.seeds, int) and not isinstance(self.seeds, bool):
            self.seeds = list(range(self.seeds))
        if self.eval_freq is None and isinstance(self.steps, int):
            self.eval_freq = max(1, self.steps // 10)

    # ----------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the valid choices."""
        axes = dict(
            envs=self.envs,
            algos=self.algos,
            bottlenecks=self.bottlenecks,
            width_scales=self.width_scales,
            seeds=self.seeds,
            encoders=self.encoders,
        )
        for name, values in list(axes.items()) + [(f"hyperparams[{k!r}]", v) for k, v in self.hyperparams.items()]:
            if not isinstance(values, (list, tuple)) or len(values) == 0:
                raise ValueError(f"Empty grid: {name} has no values ({values!r}); give at least one value")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"{name} lists a value twice: {values!r}")
        for algo in self.algos:
            if algo not in ALGOS:
                raise ValueError(f"Unknown algorithm {algo!r}; valid choices: {sorted(ALGOS)}")
            try:
                get_algo(algo)
            except ImportError as e:
                raise ValueError(f"Algorithm {algo!r} is registered but cannot be imported ({e}); available: {sorted(ALGOS)}") from None
        for encoder in self.encoders:
            if encoder not in ENCODERS:
                raise ValueError(f"Unknown encoder {encoder!r}; valid choices: {sorted(ENCODERS)}")
        for bottleneck in self.bottlenecks:
            if bottleneck not in BOTTLENECKS:
                raise ValueError(f"Unknown bottleneck {bottleneck!r}; valid choices: {sorted(BOTTLENECKS)}")
        for scale in self.width_scales:
            ConvExtractor.validate(width_scale=scale)
        for seed in self.seeds:  # type: ignore[union-attr]
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"Seeds must be non-negative integers, got {seed!r}")
        for env_id in self.envs:
            _check_env_id(env_id)
            for algo in self.algos:
                resolve_section(algo, env_id, self.conf_dir)  # every run has its Zoo section
        for name, value in (("steps", self.steps), ("eval_freq", self.eval_freq), ("eval_episodes", self.eval_episodes),
                            ("final_evals", self.final_evals), ("n_envs", self.n_envs), ("heartbeat_interval", self.heartbeat_interval)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval})")
        _check_study_name(self.study)
        check_storage_url(self.storage)
        names = list(self.hyperparams) + list(self.fixed)
        overlap = sorted(set(self.hyperparams) & set(self.fixed))
        if overlap:
            raise ValueError(f"Hyperparameter(s) {overlap} are both a grid axis and fixed; choose one")
        reserved = {"encoder", "bottleneck", "width_scale", "seed", "env", "policy", "policy_kwargs", "tensorboard_log", "device", "verbose"}
        for name in names:
            if name in reserved:
                raise ValueError(f"Hyperparameter {name!r} is set by the sweep itself; reserved names: {sorted(reserved)}")
            if name in EXTRACTOR_ARGS:
                continue
            for algo in self.algos:
                accepted = _init_params(get_algo(algo))
                if name not in accepted:
                    raise ValueError(
                        f"Unknown hyperparameter {name!r} for algorithm {algo!r}; valid choices: "
                        f"{sorted(accepted - reserved)} or network arguments {sorted(EXTRACTOR_ARGS - reserved)}"
                    )
        for name, values in self.hyperparams.items():
            for value in values:
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise ValueError(f"Grid values must be str, int, float, bool or None; {name}={value!r}")
        # Values are checked against what each algorithm takes before any trial starts (and before the study
        # records them): a typo such as learning_rate=abc never reaches training nor the stored settings.
        for algo in self.algos:
            cls = get_algo(algo)
            self.fixed = {k: _check_hp_value(cls, algo, k, v) for k, v in self.fixed.items()}
            self.hyperparams = {k: [_check_hp_value(cls, algo, k, v) for v in vs] for k, vs in self.hyperparams.items()}
        _check_replay_sizes(self)
        # Network arguments are checked together, with the user's call on the stack.
        for encoder in self.encoders:
            for bottleneck in self.bottlenecks:
                ext = {k: v for k, v in self.fixed.items() if k in EXTRACTOR_ARGS}
                for k, values in self.hyperparams.items():
                    if k in EXTRACTOR_ARGS:
                        for v in values:
                            policy_kwargs(encoder=encoder, bottleneck=bottleneck, **ext, **{k: v})  # validates
                policy_kwargs(encoder=encoder, bottleneck=bottleneck, **ext)
        root = os.path.normpath(os.path.join(self.out_dir, self.study))
        for cell in self.cells():
            name = run_name(cell)
            folder = os.path.normpath(run_dir_for(self, cell))
            if any(sep in name for sep in ("/", "\\")) or os.path.dirname(folder) != os.path.normpath(env_dir(self, cell["env"])):
                raise ValueError(
                    f"Run folder {name!r} of cell {cell_key(cell)} would not be a folder of {root}: grid values "
                    "must not contain '/' or '\\'"
                )

    # ----------------------------------------------------------------------------- grid
    def search_space(self) -> dict[str, list[Any]]:
        """The ``GridSampler`` search space (keys sorted, as Optuna stores it)."""
        space: dict[str, list[Any]] = dict(
            algo=list(self.algos),
            encoder=list(self.encoders),
            env=list(self.envs),
            bottleneck=list(self.bottlenecks),
            width_scale=list(self.width_scales),
            seed=list(self.seeds),  # type: ignore[arg-type]
        )
        space.update({HP_PREFIX + k: list(v) for k, v in self.hyperparams.items()})
        return dict(sorted(space.items()))

    def cells(self) -> list[dict[str, Any]]:
        """
        Every grid cell as a parameter dict, in the order workers start them: the widest ψ first, then
        seed by seed, so that a study cut off early has every seed of the scaled networks (the paper's claim).
        """
        import itertools

        space = self.search_space()
        cells = [dict(zip(space, values)) for values in itertools.product(*space.values())]
        seeds = {seed: i for i, seed in enumerate(space["seed"])}
        return sorted(cells, key=lambda c: (-c["width_scale"], seeds[c["seed"]]))  # stable: the rest keeps grid order

    def training_config(self) -> dict[str, Any]:
        """Settings every worker of a study must share (checked against the study's copy)."""
        config = dict(steps=self.steps, eval_freq=self.eval_freq, eval_episodes=self.eval_episodes,
                      final_evals=self.final_evals, n_envs=self.n_envs, fixed=dict(sorted(self.fixed.items())))  # fmt: skip
        if self.conf_dir is not None:
            config["conf_dir"] = self.conf_dir
        return config


def _init_params(cls: type) -> set[str]:
    """Keyword arguments a class's constructor accepts (following ``**kwargs`` to the parent classes)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            break
    return names


def _plain(value: Any) -> Any:
    """numpy scalars (also inside lists) as Python numbers; everything else as it is."""
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_study_name(study: Any) -> None:
    """A study name is one folder name under ``--out``: no path separators, no ``.``/``..``."""
    if not isinstance(study, str) or not study.strip():
        raise ValueError(f"study name must be a non-empty string, got {study!r}")
    if study in (".", "..") or any(c in study for c in ("/", "\\", "\0")) or os.path.isabs(study):
        raise ValueError(
            f"study name {study!r} must be a plain folder name (letters, digits, '-', '_', '.'; no '/', '\\' or '..'): "
            "run folders are <out>/<study>/..."
        )


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a class's constructor, following ``**kwargs`` to the parents (as :func:`_init_params`)."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        for name, p in params.items():
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(name, p)
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            break
    return found


def _init_defaults(cls: type) -> dict[str, Any]:
    """Default value of each keyword argument of a class's constructor."""
    return {name: p.default for name, p in _init_parameters(cls).items() if p.default is not p.empty}


def _wants_int(param: inspect.Parameter) -> bool:
    """Whether a parameter takes integers only: annotated ``int`` without ``float`` (else: an int default)."""
    note = param.annotation
    text = note if isinstance(note, str) else getattr(note, "__name__", "") if isinstance(note, type) else str(note)
    if text and note is not param.empty:
        return re.search(r"\bint\b", text) is not None and "float" not in text
    return isinstance(param.default, int) and not isinstance(param.default, bool)


def _check_hp_value(cls: type, algo: str, name: str, value: Any) -> Any:
    """
    ``value`` for hyperparameter ``name`` of ``cls``, checked against the constructor's default: a number for a
    number (finite; an integral float becomes an int where the default is an int), a bool for a bool, a string for
    a string, ``lin_<float>`` strings for schedules. Network arguments are checked by ``ConvExtractor.validate``.

    :raises ValueError: Naming the value and what the hyperparameter takes
    """
    if name in EXTRACTOR_ARGS:
        return value
    if name in SCHEDULE_KEYS and isinstance(value, str):
        try:
            materialize({name: value})
        except ValueError:
            raise ValueError(f"{name}={value!r} for {algo} is neither a number nor a schedule lin_<float> (e.g. lin_2.5e-4)") from None
        return value
    param = _init_parameters(cls).get(name)
    default = inspect.Parameter.empty if param is None else param.default
    if param is None or default is inspect.Parameter.empty or default is None or callable(default):
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} for {algo} must be true or false (default {default!r})")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}={value!r} for {algo} must be a number (default {default!r})")
        if not np.isfinite(value):
            raise ValueError(f"{name}={value!r} for {algo} must be a finite number (default {default!r})")
        if _wants_int(param):
            if float(value) != int(value):
                raise ValueError(f"{name}={value!r} for {algo} must be an integer (default {default!r})")
            return int(value)
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name}={value!r} for {algo} must be a string (default {default!r})")
    return value


def _check_replay_sizes(spec: SweepSpec) -> None:
    """Refuse ``buffer_size < batch_size`` for off-policy algorithms: every batch would repeat the same few transitions."""
    import itertools

    grid = {k: v for k, v in spec.hyperparams.items() if k in ("buffer_size", "batch_size")}
    for algo in spec.algos:
        defaults = _init_defaults(get_algo(algo))
        if "buffer_size" not in defaults:
            continue
        for env_id in spec.envs:
            base = {**resolve_section(algo, env_id, spec.conf_dir).algo_kwargs, **spec.fixed}
            for values in itertools.product(*grid.values()):
                kwargs = {**base, **dict(zip(grid, values))}
                buffer_size = kwargs.get("buffer_size", defaults["buffer_size"])
                batch_size = kwargs.get("batch_size", defaults.get("batch_size"))
                if isinstance(buffer_size, (int, float)) and isinstance(batch_size, (int, float)) and buffer_size < batch_size:
                    raise ValueError(
                        f"buffer_size={buffer_size} is smaller than batch_size={batch_size} for {algo} on {env_id}: every batch "
                        f"would repeat at most {buffer_size} transitions; use buffer_size >= batch_size"
                    )


# --------------------------------------------------------------------------------- storage
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
        engine_kwargs = {"connect_args": {"timeout": 120}}
    if not heartbeat:
        return rdb_storage(spec.storage, engine_kwargs=engine_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return rdb_storage(
            spec.storage,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=spec.heartbeat_interval,
            grace_period=spec.grace_period or 3 * spec.heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry),
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
        raise ValueError(
            f"Study {spec.study!r} in {display_url(spec.storage)} was run with other training settings {diff}: "
            f"stored {({k: stored.get(k) for k in diff})}, given {({k: config.get(k) for k in diff})}; "
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


# --------------------------------------------------------------------------------- one run
class SweepEvalCallback(EvalCallback):
    """
    Periodic evaluation that also keeps the learning curve on disk and reports it to Optuna.

    SB3's ``EvalCallback`` keeps per-evaluation results only when it writes its own ``.npz``
    (in place, not atomically) and never evaluates at the end of training, so :meth:`_on_step`
    is re-written here around the same ``evaluate_policy`` call: every evaluation appends to the
    curve, rewrites ``curve.json`` atomically, logs to TensorBoard and calls ``on_eval(mean, step)``.

    :param eval_env: Evaluation env (the protocol's evaluation variant)
    :param curve_path: Where to write ``{"timesteps", "mean", "std", "wall_s"}``
    :param on_eval: Called with ``(mean_return, num_timesteps)`` after each evaluation
    :param eval_freq: Evaluate every ``eval_freq`` calls (= env steps / n_envs)
    :param n_eval_episodes: Episodes per evaluation
    """

    def __init__(
        self,
        eval_env: Any,
        curve_path: Path,
        on_eval: Callable[[float, int], None] | None = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 10,
    ) -> None:
        super().__init__(eval_env, eval_freq=eval_freq, n_eval_episodes=n_eval_episodes, deterministic=True, verbose=0)
        self.curve_path = Path(curve_path)
        self.on_eval = on_eval
        self.curve: dict[str, list[float]] = {"timesteps": [], "mean": [], "std": [], "wall_s": []}
        self._start = time.perf_counter()

    def _init_callback(self) -> None:
        with warnings.catch_warnings():
            # The eval env is wrapped for ε-greedy evaluation (EpsilonGreedyActions) where the protocol says so:
            # a different VecEnv type from the training env by design.
            warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
            super()._init_callback()

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.curve["timesteps"] or self.curve["timesteps"][-1] != self.num_timesteps:
            self.evaluate()

    def evaluate(self) -> float:
        """Evaluate now, record and report; returns the mean return."""
        sync_envs_normalization(self.training_env, self.eval_env)
        returns, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.n_eval_episodes, deterministic=True, return_episode_rewards=True, warn=self.warn
        )
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.last_mean_reward = mean
        for key, value in (("timesteps", self.num_timesteps), ("mean", mean), ("std", std), ("wall_s", time.perf_counter() - self._start)):
            self.curve[key].append(value)
        atomic_write_json(self.curve_path, self.curve)
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/std_reward", std)
        self.logger.dump(self.num_timesteps)
        if self.on_eval is not None:
            self.on_eval(mean, self.num_timesteps)
        return mean


class RunProgressCallback(BaseCallback):
    """
    Per-run progress bar with plain ``tqdm``: SB3's own ``progress_bar=True`` uses a rich live
    display, which cannot nest under the sweep's grid bar.
    """

    def __init__(self, total: int, desc: str, position: int = 1) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc=desc, position=position, leave=False, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.model.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def _jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a settings value (classes and schedules by name)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def resolve_run(spec: SweepSpec, params: dict[str, Any]) -> tuple[ZooSettings, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Everything one grid cell trains with: the Zoo section for its (algo, env) as rl_zoo3 reads it,
    then ``spec.fixed``, then the cell's grid hyperparameters. Nothing is rescaled.

    :return: ``(zoo settings, algorithm kwargs, policy_kwargs, overrides)``, where ``overrides`` are the
        values that differ from the Zoo section (``fixed`` and grid hyperparameters)
    """
    settings = resolve_section(params["algo"], params["env"], spec.conf_dir)
    overrides = {**spec.fixed, **{k[len(HP_PREFIX):]: v for k, v in params.items() if k.startswith(HP_PREFIX)}}
    net = {k: v for k, v in overrides.items() if k in EXTRACTOR_ARGS}
    kwargs = {**settings.algo_kwargs, **{k: v for k, v in overrides.items() if k not in EXTRACTOR_ARGS}}
    accepted = _init_params(get_algo(params["algo"]))
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"{settings.source} gives {unknown}, which {params['algo']} does not accept; valid: {sorted(accepted)}")
    # The section's own network arguments other than the grid's axes carry over (e.g. layer_norm).
    network = {k: v for k, v in settings.network.items() if k not in ("encoder", "bottleneck", "width_scale")}
    network.update(net)
    optim = {k: network.pop(k) for k in OPTIMIZER_ARGS if k in network}
    pk = {**settings.policy_extra, **policy_kwargs(encoder=params["encoder"], bottleneck=params["bottleneck"], width_scale=params["width_scale"], **network)}
    if optim:  # from the Zoo section's optimizer: its settings carry over where the chosen one takes them (eps to AdamW)
        pk.update(optimizer_policy_kwargs(**optim, base=settings.policy_extra))
    return settings, kwargs, pk, overrides


def run_settings(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The resolved settings of one run as plain JSON (written to ``settings.json`` and listed by the report)."""
    settings, kwargs, pk, overrides = resolve_run(spec, params)
    return _jsonable(
        dict(
            zoo_source=settings.source,
            algo=params["algo"],
            env=params["env"],
            policy="CnnPolicy",
            hyperparameters=dict(sorted(kwargs.items())),
            policy_kwargs=pk,
            env_settings=settings.env,
            overrides=dict(sorted(overrides.items())),
            steps=spec.steps,
            eval=dict(freq=spec.eval_freq, episodes=spec.eval_episodes, final_evals=spec.final_evals,
                      epsilon=protocol_for(params["env"]).eval_epsilon, protocol=protocol_for(params["env"]).name),  # fmt: skip
            n_envs=spec.n_envs,
            seed=params["seed"],
        )
    )


def build_model(spec: SweepSpec, params: dict[str, Any], env: Any, tensorboard_log: str | None = None) -> BaseAlgorithm:
    """The algorithm of one grid cell with the hyperparameters of :func:`resolve_run`."""
    _, kwargs, pk, _ = resolve_run(spec, params)
    return get_algo(params["algo"])(
        "CnnPolicy",
        env,
        policy_kwargs=pk,
        seed=params["seed"],
        tensorboard_log=tensorboard_log,
        device=spec.device,
        verbose=0,
        **materialize(kwargs),
    )


def run_dir_for(spec: SweepSpec, params: dict[str, Any]) -> Path:
    return env_dir(spec, params["env"]) / run_name(params)


def train_cell(
    spec: SweepSpec,
    params: dict[str, Any],
    on_eval: Callable[[float, int], None] | None = None,
    tb_name: str = "run",
    progress: bool = False,
) -> dict[str, Any]:
    """
    Train and evaluate one grid cell; write ``curve.json``, ``result.json`` and ``model.zip``
    atomically into its run folder.

    :return: The result: ``final_score`` (mean of the last ``final_evals`` evaluations),
        ``wall_s``, ``fps``, ``n_evals``, parameter counts and the run folder
    """
    run_dir = run_dir_for(spec, params)
    run_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol_for(params["env"])
    settings = run_settings(spec, params)
    atomic_write_json(run_dir / "settings.json", settings)
    zoo_env = resolve_section(params["algo"], params["env"], spec.conf_dir).env
    env_kwargs = zoo_env.get("env_kwargs")
    env = protocol.make_env(params["env"], spec.n_envs, params["seed"], True, env_kwargs=env_kwargs, env_wrapper=zoo_env.get("env_wrapper"))
    eval_env = protocol.make_eval_env(params["env"], params["seed"] + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
    model = build_model(spec, params, env, tensorboard_log=str(run_dir / "tb"))
    assert spec.eval_freq is not None
    evaluator = SweepEvalCallback(
        eval_env, run_dir / "curve.json", on_eval, eval_freq=max(1, spec.eval_freq // spec.n_envs), n_eval_episodes=spec.eval_episodes
    )
    callbacks: list[BaseCallback] = [evaluator]
    if progress:
        callbacks.append(RunProgressCallback(spec.steps, run_name(params)))
    start = time.perf_counter()
    model.learn(spec.steps, callback=callbacks, tb_log_name=tb_name)
    wall = time.perf_counter() - start
    means = evaluator.curve["mean"]
    counts = parameter_report(model).as_dict()
    result = dict(
        params=params,
        final_score=float(np.mean(means[-spec.final_evals :])),
        wall_s=wall,
        fps=model.num_timesteps / wall,
        n_evals=len(means),
        run_dir=str(run_dir.resolve()),
        host=socket.gethostname(),
        device=str(model.device),
        settings=settings,
        **{f"params_{k}": v for k, v in counts.items()},
    )
    if spec.save_models:
        buffer = io.BytesIO()
        model.save(buffer)
        atomic_write_bytes(run_dir / "model.zip", buffer.getvalue())
    atomic_write_json(run_dir / "result.json", result)
    env.close()
    eval_env.close()
    return result


# --------------------------------------------------------------------------------- workers
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

        result = train_cell(self.spec, params, on_eval=report, tb_name=f"trial_{trial.number}", progress=self.progress)
        for name, value in result.items():
            if name != "params":
                trial.set_user_attr(name, value)
        return result["final_score"]


def _grid_bar(spec: SweepSpec, n_cells: int, enabled: bool) -> tqdm:
    return tqdm(total=n_cells, desc=f"grid {spec.study}", unit="run", position=0, disable=not enabled, dynamic_ncols=True)


def _n_complete(study: optuna.Study, keys: set[str]) -> int:
    states = cell_states(study.get_trials(deepcopy=False))
    return sum(states.get(k) == TrialState.COMPLETE for k in keys)


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
                # are done). One of the first two, at random, so that workers starting together rarely collide.
                study.enqueue_trial(cells[rng.choice(todo[:2])])
            study.optimize(objective, n_trials=1)
            ran += 1
        bar.update(_n_complete(study, set(cells)) - bar.n)
    finally:
        bar.close()
    return ran


class SweepWorkersFailed(RuntimeError):
    """Some local worker processes of :func:`run_sweep` exited with an error (their output says why)."""


def _check_workers(workers: Any) -> None:
    if workers == "auto":
        return
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (local worker processes, e.g. 1 or 2) or 'auto', got {workers!r}")


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
        raise ValueError(f"--workers {text}: expected a positive integer (e.g. 1, 2) or 'auto'")
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
            raise ValueError(f"--workers auto with device={device!r}: no CUDA device is available; valid: --device cpu or auto")
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
    import tempfile

    folder = Path(spec.out_dir) / spec.study
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"--out {spec.out_dir}: cannot write run folders in {folder} ({e.strerror or e}); choose a writable --out") from None


def _worker_entry(spec: SweepSpec, threads: int, wait: bool) -> None:
    run_worker(spec, progress=False, wait=wait, threads=threads)


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
    _check_workers(workers)
    spec.validate()
    check_out_dir(spec)
    study = open_study(spec)
    if workers == "auto":
        workers, threads = auto_workers(spec.device, len(spec.cells()))
        if progress:
            print(f"sb3-gap sweep: --workers auto: {workers} worker(s), {threads} torch thread(s) each", file=sys.stderr)
    else:
        threads = max(1, available_cpus() // int(workers)) if workers > 1 else None
    if workers == 1:
        run_worker(spec, progress=progress, wait=wait, threads=threads)
        return study
    import dataclasses

    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_entry, args=(dataclasses.replace(spec, device=device), threads, wait), name=f"sweep-worker-{i}")
        for i, device in enumerate(_worker_devices(spec.device, workers))
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
    finally:
        bar.close()
        for p in procs:
            p.join()
    failed = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if failed:
        raise SweepWorkersFailed(f"Sweep workers failed (name, exit code): {failed}; re-run the same command to resume")
    return study


# --------------------------------------------------------------------------------- CLI
def _parse_assignments(items: Sequence[str], grid: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            form = "name=v1,v2,..." if grid else "name=value"
            raise ValueError(f"Expected {form}, got {item!r}")
        name, values = item.split("=", 1)
        out[name.strip()] = [parse_value(v) for v in values.split(",")] if grid else parse_value(values)
    return out


# Presets list every change from the Zoo configs explicitly (``fixed``); nothing is rescaled silently.
# ``workers`` and ``report`` are CLI defaults, not part of the SweepSpec.
PRESETS: dict[str, dict[str, Any]] = {
    # The MinAtar scaling study (issue 11; results/minatar_scaling/, README "Results"): Rainbow with Dopamine's
    # MinAtar settings (zoo_configs/rainbow.yml, minatar section), the study encoder, flatten vs GAP at ψ x1 and
    # x4, 2 games x 3 seeds x 150k steps. Budget override: ε decays over 25k steps instead of Dopamine's 250k
    # (which would never finish within 150k steps). Committed runs resume with the same command.
    "minatar-scaling": dict(
        envs=["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"],
        algos=["rainbow"],
        encoders=["minatar_impala"],
        bottlenecks=["flatten", "gap"],
        width_scales=[1, 4],
        seeds=3,
        steps=150_000,
        eval_freq=10_000,
        eval_episodes=10,
        final_evals=3,
        fixed={"exploration_steps": 25_000},
        storage="sqlite:///results/minatar_scaling/study.db",
        study="minatar_scaling",
        out_dir="results",
        save_models=False,
        workers=2,  # one torch thread each
        report="results/minatar_scaling",
    ),
    # The README's main job (`make demo`, ~5 min on 2 cores): the study's network and settings, flatten x4 vs
    # GAP x4 on MinAtar Breakout, one seed each, 30k steps. Budget override: ε decays over 10k steps.
    "demo": dict(
        envs=["MinAtar/Breakout-v1"],
        algos=["rainbow"],
        encoders=["minatar_impala"],
        bottlenecks=["flatten", "gap"],
        width_scales=[4],
        seeds=1,
        steps=30_000,
        eval_freq=5_000,
        eval_episodes=10,
        final_evals=2,
        fixed={"exploration_steps": 10_000},
        storage="sqlite:///runs/demo.db",
        study="demo",
        out_dir="runs",
        workers=2,  # one torch thread each (see docs/benchmarks_sweeps.md)
        report="runs/demo_report",
    ),
}

#: CLI-only preset keys (not SweepSpec fields).
PRESET_CLI_KEYS = ("workers", "report")


def _workers_arg(text: str) -> int | str:
    try:
        return parse_workers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: " + str(e).split(": ", 1)[1]) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sb3-gap sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset (other flags override it)")
    p.add_argument("--algo", "--algos", dest="algos", nargs="+", help=f"algorithms, of {sorted(ALGOS)} (default qrdqn)")
    p.add_argument("--envs", nargs="+", help="env ids as given to gym.make")
    p.add_argument("--bottlenecks", nargs="+", help=f"of {sorted(BOTTLENECKS)} (default flatten gap)")
    p.add_argument("--width-scales", nargs="+", type=int, help="ψ width multipliers (default 1)")
    p.add_argument("--encoders", nargs="+", help=f"of {sorted(ENCODERS)} (default impala)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..n-1 (default 1)")
    p.add_argument("--seed-list", nargs="+", type=int, help="explicit seeds instead of --seeds")
    p.add_argument("--hyperparams", nargs="+", default=[], metavar="NAME=V1,V2", help="extra grid axes")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="hyperparameters fixed for all runs")
    p.add_argument("--steps", type=int, help="env steps per run (default 100000)")
    p.add_argument("--eval-freq", type=int, help="env steps between evaluations (default steps/10)")
    p.add_argument("--eval-episodes", type=int)
    p.add_argument("--final-evals", type=int, help="final score = mean of the last N evaluations")
    p.add_argument("--n-envs", type=int)
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/sweep.db)")
    p.add_argument("--study", help="study name (default sweep)")
    p.add_argument("--out", dest="out_dir", help="root of run folders (default runs)")
    p.add_argument("--workers", type=_workers_arg, help="local worker processes (default 1, or the preset's), or 'auto': one "
                   f"per core on CPU, {WORKERS_PER_GPU} per GPU with --device cuda, each with cores/workers torch threads")
    p.add_argument("--heartbeat-interval", type=int)
    p.add_argument("--grace-period", type=int)
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--device", help="torch device (default auto)")
    p.add_argument("--conf-dir", help="folder of the Zoo configs <algo>.yml the runs' hyperparameters come from (default: zoo_configs/)")
    p.add_argument("--no-wait", action="store_true", help="exit when no cell is left to start instead of waiting for other workers")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report", metavar="DIR", help="write the report to DIR when the sweep ends (default for presets: runs/<study>_report)")
    return p


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    fields: dict[str, Any] = dict(PRESETS[args.preset]) if args.preset else {}
    for key in PRESET_CLI_KEYS:
        fields.pop(key, None)
    for name in ("algos", "envs", "bottlenecks", "width_scales", "encoders", "steps", "eval_freq", "eval_episodes", "final_evals",
                 "n_envs", "storage", "study", "out_dir", "heartbeat_interval", "grace_period", "device", "conf_dir"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.seed_list is not None:
        fields["seeds"] = args.seed_list
    elif args.seeds is not None:
        fields["seeds"] = args.seeds
    if args.hyperparams:
        fields["hyperparams"] = _parse_assignments(args.hyperparams, grid=True)
    if args.set:
        fields["fixed"] = {**fields.get("fixed", {}), **_parse_assignments(args.set, grid=False)}
    if args.no_save_models:
        fields["save_models"] = False
    if "envs" not in fields:
        raise ValueError("--envs is required (or a --preset), e.g. --envs MinAtar/Breakout-v1")
    return SweepSpec(**fields)


def cli_errors() -> tuple[type[BaseException], ...]:
    """Failures the CLIs report in one line (bad input, files, databases, drivers) instead of a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    return (ValueError, ImportError, OSError, SQLAlchemyError, optuna.exceptions.OptunaError, SweepWorkersFailed)


def cli_message(command: str, error: BaseException, storage: str | Sequence[str] | None = None) -> str:
    """``sb3-gap <command>: error: <first line>``, with the secrets of the storage URL(s) masked."""
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    if type(error).__module__.startswith("sqlalchemy") and not first.startswith("("):
        first = f"({type(error).__name__}) {first}"
    for url in [storage] if isinstance(storage, str) else list(storage or []):
        first = scrub_secrets(first, url)
    return f"sb3-gap {command}: error: {first}"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    storage = args.storage
    try:
        spec = spec_from_args(args)
        storage = spec.storage
        spec.validate()
        workers = args.workers if args.workers is not None else PRESETS.get(args.preset or "", {}).get("workers", 1)
        _check_workers(workers)
        start = time.perf_counter()
        run_sweep(spec, workers=workers, progress=not args.no_progress, wait=not args.no_wait)
        wall = time.perf_counter() - start
        preset = PRESETS.get(args.preset or "", {})
        report_dir = args.report or preset.get("report") or (f"{spec.out_dir}/{spec.study}_report" if args.preset else None)
        print(f"sweep {spec.study}: {wall:.1f} s wall ({display_url(spec.storage)})", file=sys.stderr)
        if report_dir:
            from sb3_gap.sweep.report import build_report

            build_report([(spec.storage, spec.study)], report_dir, print_table=True)
    except cli_errors() as e:
        raise SystemExit(cli_message("sweep", e, storage)) from None


if __name__ == "__main__":
    main()
