"""Sweeps across machines on a real PostgreSQL server: ``sb3-gap sweep`` worker processes sharing one
study, one of them SIGKILLed, workers racing to create Optuna's tables, passwords kept out of every output, and
one-line errors for a wrong password, an unreachable server and a missing driver.

The server (tests/postgres_server.py) is started once per test process that runs these tests (each pytest-xdist
worker its own, on its own free port) and stopped, its folder deleted, at the end of the session. Each test gets
a new empty database. When the server cannot start, the tests fail with the reason under ``CI=true`` and are
skipped with it elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from postgres_server import PostgresServer, ServerError, free_port  # tests/ is on sys.path (pytest's rootdir-relative import)

from sb3_gap.sweep import SweepSpec
from sb3_gap.sweep.database import display_url
from sb3_gap.sweep.report import build_report
from sb3_gap.sweep.spec import cell_key, run_name

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]


def _unavailable(reason: str) -> None:
    """No server: a failure in CI (``CI=true``), where these tests must run; a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server():
    server, reason = PostgresServer(), None
    try:
        import psycopg  # noqa: F401 - the driver the storage URLs name (setup.py extra "test")

        server.start()
    except ImportError as e:
        reason = f"PostgreSQL tests need psycopg 3 (pip install -e '.[test]'): {e}"
    except ServerError as e:
        reason = f"PostgreSQL server could not start: {e}"
    if reason:  # outside the except blocks: the one line, without a chained traceback
        _unavailable(reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A new empty database on the session's server, as a storage URL with the ``sweeper`` password in it."""
    return pg_server.url(pg_server.create_database())


def spec_fields(url: str, **overrides) -> dict:
    """tests/test_sweep.py's tiny_spec, on PostgreSQL."""
    fields = dict(envs=["MinAtar/Breakout-v1"], algos=["qrdqn"], bottlenecks=["flatten", "gap"], width_scales=[1], seeds=2, steps=200,
                  eval_freq=100, eval_episodes=1, final_evals=1, storage=url, study="pg", heartbeat_interval=1, grace_period=3)  # fmt: skip
    fields.update(overrides)
    return fields


def sweep_argv(fields: dict, out: Path, *extra: str) -> list[str]:
    """The ``sb3-gap sweep`` command line of ``fields`` (every machine passes the same flags, its own --out)."""
    argv = ["sweep", "--algo", *fields["algos"], "--envs", *fields["envs"], "--bottlenecks", *fields["bottlenecks"],
            "--width-scales", *map(str, fields["width_scales"]), "--seeds", str(fields["seeds"])]  # fmt: skip
    for flag in ("steps", "eval_freq", "eval_episodes", "final_evals", "storage", "study", "heartbeat_interval", "grace_period"):
        argv += [f"--{flag.replace('_', '-')}", str(fields[flag])]
    return [*argv, "--out", str(out), "--no-save-models", "--no-progress", *extra]


# A worker process that imports everything, says it is ready, and calls `sb3-gap sweep` at the instant written in the
# barrier's `go` file: two of them open the empty database together (the table-creation race).
AT_INSTANT = """
import sys, time
from pathlib import Path
import sb3_gap.sweep.cli
from sb3_gap.cli import main
barrier, name = Path(sys.argv.pop(1)), sys.argv.pop(1)
(barrier / name).touch()
while not (barrier / "go").exists():
    time.sleep(0.005)
time.sleep(max(0.0, float((barrier / "go").read_text()) - time.time()))
main()
"""


def start_worker(argv: list[str], log: Path, barrier: Path | None = None) -> subprocess.Popen:
    """``python -m sb3_gap.cli sweep ...`` (or the same at the barrier's instant), stdout and stderr to ``log``.{out,err}."""
    cmd = [sys.executable, "-c", AT_INSTANT, str(barrier), log.name, *argv] if barrier else [sys.executable, "-m", "sb3_gap.cli", *argv]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:  # the child keeps its own copies
        return subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=out, stderr=err)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    """Wait for a worker; its stdout + stderr."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return Path(f"{log}.out").read_text(errors="replace") + Path(f"{log}.err").read_text(errors="replace")


def complete_by_cell(study: optuna.Study) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        out.setdefault(cell_key(t.params), []).append(t.number)
    return out


def assert_no_password(password: str, texts: list[str], folder: Path) -> int:
    """``password`` in none of ``texts`` and in no file under ``folder``; returns the number of files read."""
    for text in texts:
        assert password not in text
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert password.encode() not in path.read_bytes(), path
    return len(files)


# ----------------------------------------------------------------------------------------------- the tests
@pytest.mark.slow
def test_two_workers_start_together_on_an_empty_database_and_share_the_grid(pg_server, pg_url, tmp_path):
    """Two `sb3-gap sweep` processes ("machines": own --out each) start at the same instant on an empty database:
    both get through the race to create Optuna's tables and exit cleanly, and every cell runs exactly once. The
    password is in no output, log, settings.json or summary.md."""
    fields = spec_fields(pg_url)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    logs = [tmp_path / "machine_a", tmp_path / "machine_b"]
    procs = [
        start_worker(sweep_argv(fields, tmp_path / "out_a", "--report", str(tmp_path / "report")), logs[0], barrier),
        start_worker(sweep_argv(fields, tmp_path / "out_b"), logs[1], barrier),
    ]
    deadline = time.time() + 180
    while not all((barrier / log.name).exists() for log in logs) and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    (barrier / "go.tmp").write_text(str(time.time() + 0.5))
    os.replace(barrier / "go.tmp", barrier / "go")
    outputs = [finish(p, log) for p, log in zip(procs, logs)]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-2000:]
        assert "Traceback" not in output, output[-2000:]

    study = optuna.load_study(study_name="pg", storage=pg_url)
    done = complete_by_cell(study)
    cells = SweepSpec(**fields).cells()
    assert sorted(done) == sorted(cell_key(c) for c in cells)
    assert all(len(numbers) == 1 for numbers in done.values()), done  # exactly once; a racing duplicate is pruned untrained
    assert not study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING))
    runs_by_machine = {m: len(list((tmp_path / m / "pg").rglob("result.json"))) for m in ("out_a", "out_b")}
    # Shared: the two workers' runs add up to the grid, each cell once. Which worker gets how many is up to timing (one that
    # lost the table-creation race and backed off can find every cell taken), so no worker is required to get one.
    assert sum(runs_by_machine.values()) == len(cells), runs_by_machine
    assert len(list(tmp_path.rglob("settings.json"))) == len(cells)

    summary = (tmp_path / "report" / "summary.md").read_text()
    assert display_url(pg_url) in summary and f"Complete runs: {len(cells)}/{len(cells)}" in summary
    assert f"({display_url(pg_url)})" in outputs[0]  # "sweep pg: ... s wall (URL)": printed, masked
    assert assert_no_password(pg_server.password, outputs, tmp_path) > 4 * len(cells)  # settings, curves, results, TensorBoard, report


@pytest.mark.slow
def test_worker_killed_mid_trial_is_retried_by_the_other_and_the_report_equals_sqlites(pg_server, pg_url, tmp_path):
    """Worker A is SIGKILLed mid-trial; worker B retries that trial once it is stale (grace period) and finishes the
    grid: nothing lost, nothing twice. The report from PostgreSQL equals the report from the same trials in SQLite."""
    fields = spec_fields(pg_url, bottlenecks=["gap"], seeds=3, steps=600, eval_freq=100, grace_period=5)
    a = start_worker(sweep_argv(fields, tmp_path / "out_a"), tmp_path / "machine_a")
    b = start_worker(sweep_argv(fields, tmp_path / "out_b"), tmp_path / "machine_b")
    victim = None
    axes = len(SweepSpec(**fields).search_space())
    try:
        study = None
        deadline = time.time() + 180
        while victim is None and time.time() < deadline and a.poll() is None:
            try:
                study = study or optuna.load_study(study_name="pg", storage=pg_url)
            except KeyError:  # not created yet
                time.sleep(0.2)
                continue
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.intermediate_values and len(t.params) == axes and list((tmp_path / "out_a").rglob(f"{run_name(t.params)}/curve.json")):
                    victim = t  # A's trial, evaluated at least once: mid-trial
                    break
            else:
                time.sleep(0.1)
        assert victim is not None, "worker A never got mid-trial:\n" + finish(a, tmp_path / "machine_a", 1)[-2000:]
        a.send_signal(signal.SIGKILL)
        a.wait()
        output_b = finish(b, tmp_path / "machine_b")
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert b.returncode == 0, output_b[-2000:]

    study = optuna.load_study(study_name="pg", storage=pg_url)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[victim.number].state == TrialState.FAIL  # failed by B's stale-trial check
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    assert str(tmp_path / "out_b") in retry[0].user_attrs["run_dir"]  # retried by the other worker
    done = complete_by_cell(study)
    assert sorted(done) == sorted(cell_key(c) for c in SweepSpec(**fields).cells()) and all(len(v) == 1 for v in done.values()), done
    assert [t.number for t in trials.values() if t.state == TrialState.FAIL] == [victim.number]

    # The same trials in SQLite (optuna.copy_study): the report must not depend on the database.
    sqlite_url = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name="pg", from_storage=pg_url, to_storage=sqlite_url)
    reports = {name: tmp_path / f"report_{name}" for name in ("pg", "sqlite")}
    build_report([(pg_url, "pg")], reports["pg"], reps=200)
    build_report([(sqlite_url, "pg")], reports["sqlite"], reps=200)
    for name in ("runs.csv", "aggregates.csv"):
        pg_table, sqlite_table = (pd.read_csv(folder / name) for folder in reports.values())
        pd.testing.assert_frame_equal(pg_table, sqlite_table)
    runs = pd.read_csv(reports["pg"] / "runs.csv")
    assert list(runs["state"]) == ["COMPLETE"] * 3 and sorted(runs["seed"]) == [0, 1, 2]
    summaries = [(folder / "summary.md").read_text() for folder in reports.values()]
    assert summaries[0].replace(display_url(pg_url), "URL") == summaries[1].replace(sqlite_url, "URL")
    assert_no_password(pg_server.password, [output_b], tmp_path / "out_b")
    assert_no_password(pg_server.password, [summaries[0]], reports["pg"])


@pytest.mark.parametrize("problem", ["wrong password", "unreachable server", "missing driver", "unknown driver"])
def test_connection_problems_give_one_line_naming_them(pg_server, pg_url, tmp_path, capsys, monkeypatch, problem):
    from sb3_gap.sweep.cli import main

    name = pg_url.rsplit("/", 1)[1]
    url, words = {
        "wrong password": (pg_server.url(name, password="WrongPw12345"), ["password authentication failed", '"sweeper"']),
        "unreachable server": (pg_server.url(name, port=free_port()), ["Connection refused", "127.0.0.1"]),
        "missing driver": (pg_url, ["No database driver", 'pip install "psycopg[binary]"', "sweeper:***@127.0.0.1"]),
        "unknown driver": (pg_server.url(name, driver="nosuchdriver"), ["Can't load plugin", "postgresql.nosuchdriver"]),
    }[problem]
    if problem == "missing driver":
        monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError, as without the package
    with pytest.raises(SystemExit) as info:
        main(sweep_argv(spec_fields(url), tmp_path / "out")[1:])
    message = str(info.value.code)
    assert message.startswith("sb3-gap sweep: error: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    captured = capsys.readouterr()
    for secret in (pg_server.password, "WrongPw12345"):
        assert secret not in message + captured.out + captured.err
