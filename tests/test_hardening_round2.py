"""Hardening, round 2 (issue 23, item 13): the rest of the list in one pass. A locked SQLite storage mid-run, a full
disk, ``--reps`` <= 0, deep / non-UTF-8 / extra-tensor Hub files, a Rainbow ``set_parameters`` with another atom
count, ``gradcam --algo`` naming another algorithm than the zip's, and path-like env ids such as ``".."``.

Every failure is one line naming the culprit; nothing trained is lost. Hub tests drive the real huggingface_hub client
against the loopback fake Hub of ``tests/fake_hub.py``; models are tiny and never trained long.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import gymnasium as gym
import pytest
import safetensors.torch
import torch as th
from test_hardening import (  # noqa: F401 - finished_study is a fixture
    ENV_ID,
    ENV_NAME,
    finished_study,
    one_line_error,
    publish,
    safe_files,
    tiny_dqn,
    tiny_sweep_args,
)

from sb3_gap import policy_kwargs
from sb3_gap.cli import main as cli_main
from sb3_gap.hub import pull_from_hub, safe
from sb3_gap.rainbow import Rainbow


def tiny_rainbow(n_atoms: int = 5) -> Rainbow:
    """An untrained Rainbow with sb3_gap's extractor (built, never trained)."""
    return Rainbow("CnnPolicy", gym.make(ENV_ID), buffer_size=64, batch_size=8, n_atoms=n_atoms,
                   policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap"), seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def dqn_files(tmp_path_factory):
    model = tiny_dqn()
    return model, safe_files(model, tmp_path_factory.mktemp("safe"))


def empty_or_missing(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# ------------------------------------------------------------------------------------------------
# --reps <= 0
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reps", ["0", "-5"])
def test_issue23_item13_report_reps_must_be_positive(finished_study, tmp_path, capsys, reps):  # noqa: F811 - the fixture
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--reps", reps], "report")
    assert "--reps" in line and "positive integer" in line and reps in line
    assert not (tmp_path / "r" / "summary.md").exists()
    from sb3_gap.sweep.report import build_report

    with pytest.raises(ValueError, match=r"reps .*must be a positive integer .*got 0"):
        build_report([(finished_study, "s")], tmp_path / "r2", reps=0)


def test_issue23_item13_benchmark_reps_must_be_positive(monkeypatch, capsys):
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("throughput_floor", bench / "throughput_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["throughput_floor.py", "--reps", "0"])
    monkeypatch.setattr(module, "measure", lambda *a: pytest.fail("measured with --reps 0"))
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code == 2
    assert "--reps must be a positive integer, got 0" in capsys.readouterr().err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------
# Rainbow set_parameters with another atom count
# ------------------------------------------------------------------------------------------------


def test_issue23_item13_set_parameters_names_both_atom_counts(tmp_path):
    model, other = tiny_rainbow(n_atoms=5), tiny_rainbow(n_atoms=7)
    other.save(tmp_path / "seven.zip")
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    for source in (str(tmp_path / "seven.zip"), other.get_parameters()):
        with pytest.raises(ValueError) as info:
            model.set_parameters(source)
        message = str(info.value)
        assert "\n" not in message and "n_atoms=7" in message and "n_atoms=5" in message, message
        after = model.policy.state_dict()
        assert all(th.equal(before[k], after[k]) for k in before)  # nothing was half-loaded
    model.set_parameters(tiny_rainbow(n_atoms=5).get_parameters())  # the same atom count still loads


# ------------------------------------------------------------------------------------------------
# gradcam --algo that is not the zip's
# ------------------------------------------------------------------------------------------------


def test_issue23_item13_gradcam_algo_must_match_the_zip(tmp_path, capsys):
    tiny_rainbow().save(tmp_path / "rainbow.zip")
    tiny_dqn().save(tmp_path / "dqn.zip")
    out = tmp_path / "cam.png"
    for path, given, held in ((tmp_path / "rainbow.zip", "dqn", "rainbow"), (tmp_path / "dqn.zip", "rainbow", "dqn")):
        line = one_line_error(capsys, ["gradcam", str(path), "--algo", given, "--env", ENV_ID, "--steps", "1", "--out", str(out)], "gradcam")
        assert f"holds a {held} model" in line and f"--algo {given}" in line and f"--algo {held}" in line, line
    assert not out.exists()
    cli_main(["gradcam", str(tmp_path / "rainbow.zip"), "--algo", "rainbow", "--env", ENV_ID, "--steps", "1", "--out", str(out)])
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# env ids that are paths
# ------------------------------------------------------------------------------------------------

PATH_LIKE_IDS = ["..", ".", "../MinAtar/Breakout-v1", "MinAtar/../Breakout-v1", "a\\..\\b", "/etc/passwd", ""]


@pytest.mark.parametrize("env_id", PATH_LIKE_IDS)
def test_issue23_item13_path_like_env_ids_are_refused_everywhere(hub_env, dqn_files, tmp_path, capsys, env_id):
    model, files = dqn_files
    words = f"env id {env_id!r} is not a Gymnasium env id"
    line = one_line_error(capsys, ["sweep", "--envs", env_id, "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "runs")], "sweep")
    assert words in line, line
    model.save(tmp_path / "m.zip")
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", env_id], "gradcam")
    assert words in line, line
    line = one_line_error(capsys, ["push", "--algo", "dqn", "--env", env_id, "-f", str(tmp_path / "logs"), "--repo-id", "a/b", "--no-video"], "push")
    assert words in line, line
    downloads = tmp_path / "dl"
    publish(hub_env, "alice/plain", files)
    line = one_line_error(capsys, ["pull", "--repo-id", "alice/plain", "-f", str(downloads), "--env", env_id], "pull")
    assert words in line or "does not match the repository's env" in line, line
    # A download cannot steer where a pull writes: the env id recorded in sb3_gap.json is checked too.
    config = json.loads(files[safe.CONFIG_FILE])
    repo = f"mallory/env-{abs(hash(env_id)) % 10**6}"
    publish(hub_env, repo, {**files, safe.CONFIG_FILE: json.dumps(dict(config, env_id=env_id)).encode()})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(downloads)], "pull")
    assert words in line and safe.CONFIG_FILE in line, line
    assert empty_or_missing(downloads / "dqn")
    with pytest.raises(ValueError, match="is not a Gymnasium env id"):
        pull_from_hub(repo, downloads, env_id=ENV_ID)
    assert empty_or_missing(downloads / "dqn") and not (downloads / "config.yml").exists()


# ------------------------------------------------------------------------------------------------
# Hub files: deeply nested, not UTF-8, a tensor the model does not have
# ------------------------------------------------------------------------------------------------


def _deep_json(depth: int) -> bytes:
    return b'{"format": "sb3_gap.hub/1", "x": ' + b"[" * depth + b"]" * depth + b"}"


def _deep_yaml(depth: int) -> bytes:
    return b"policy: CnnPolicy\nx: " + b"[" * depth + b"]" * depth + b"\n"


@pytest.mark.parametrize(
    "name, content, words",
    [
        (safe.CONFIG_FILE, _deep_json(100_000), "nested deeper than"),
        ("config.yml", _deep_yaml(100_000), "nested deeper than"),
        ("args.yml", _deep_yaml(5_000), "nested deeper than"),
        (safe.CONFIG_FILE, b'{"format": "sb3_gap.hub/1", "env_id": "\xff\xfe"}', "is not UTF-8 text"),
        ("config.yml", b"policy: CnnPolicy\nx: \xff\xfe\n", "is not UTF-8 text"),
        ("env_kwargs.yml", b"\x80\x81", "is not UTF-8 text"),
    ],
)
def test_issue23_item13_deep_or_binary_hub_files_are_one_line(hub_env, dqn_files, tmp_path, capsys, name, content, words):
    _, files = dqn_files
    repo = f"mallory/{name.split('.')[0].replace('_', '-')}-{abs(hash(content)) % 10**6}"
    publish(hub_env, repo, {**files, name: content})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert name in line and words in line, line
    assert empty_or_missing(tmp_path / "dl" / "dqn")


def test_issue23_item13_extra_tensor_in_the_weights_is_one_line(hub_env, dqn_files, tmp_path, capsys):
    model, files = dqn_files
    tensors = safetensors.torch.load(files[safe.WEIGHTS_FILE])
    tensors["q_net.backdoor.weight"] = th.zeros(3, 3)
    publish(hub_env, "mallory/extra-tensor", {**files, safe.WEIGHTS_FILE: safetensors.torch.save(tensors, metadata={"format": "pt"})})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/extra-tensor", "-f", str(tmp_path / "dl")], "pull")
    assert safe.WEIGHTS_FILE in line and "'q_net.backdoor.weight'" in line and "does not build" in line, line
    assert empty_or_missing(tmp_path / "dl" / "dqn")


def test_issue23_item13_every_registered_env_id_has_the_form():
    from sb3_gap.checks import check_env_id_form
    from sb3_gap.envs.protocols import register_ale_ids

    register_ale_ids()
    for env_id in gym.registry:
        check_env_id_form(env_id)
    with pytest.raises(ValueError, match=r"^sb3_gap.json: env id 'MinAtar/Breakout-v1\\n' is not a Gymnasium env id"):
        check_env_id_form("MinAtar/Breakout-v1\n", "sb3_gap.json")


def test_issue23_item13_extra_tensor_without_the_meta_precheck_is_one_line(dqn_files, tmp_path, monkeypatch):
    model, files = dqn_files
    tensors = safetensors.torch.load(files[safe.WEIGHTS_FILE])
    tensors["q_net.backdoor.weight"] = th.zeros(3, 3)
    weights = tmp_path / safe.WEIGHTS_FILE
    weights.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))
    config = json.loads(files[safe.CONFIG_FILE])

    def cannot_build_on_meta(model):
        raise NotImplementedError("a layer that reads tensor values")

    monkeypatch.setattr(safe, "_meta_shapes", cannot_build_on_meta)  # then only the strict load compares
    with pytest.raises(ValueError) as info:
        safe.build_from_config(config, weights, device="cpu")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{safe.WEIGHTS_FILE} does not fit the network") and "q_net.backdoor.weight" in message


# ------------------------------------------------------------------------------------------------
# A full disk: one line with the path, no temp file left, nothing trained lost
# ------------------------------------------------------------------------------------------------


def disk_full_on(monkeypatch, name: str) -> list[str]:
    """Make ``os.fsync`` fail with ENOSPC for files whose name contains ``name`` (what a full disk does to a write);
    returns the paths it failed for."""
    real_fsync, failed = os.fsync, []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if name in Path(path).name:
            failed.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file is written")
    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or "-pull-" in p.name]


def test_issue23_item13_disk_full_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    from sb3_gap.sweep.cell import atomic_write_json

    path = tmp_path / "run" / "curve.json"
    atomic_write_json(path, {"mean": [1.0]})
    disk_full_on(monkeypatch, "curve.json")
    with pytest.raises(OSError) as info:
        atomic_write_json(path, {"mean": [1.0, 2.0]})
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value) and "\n" not in str(info.value)
    assert json.loads(path.read_text()) == {"mean": [1.0]}  # the previous file, whole
    assert temp_files(tmp_path) == []


@pytest.mark.slow
def test_issue23_item13_disk_full_in_a_sweep_is_one_line_and_the_run_is_retried(tmp_path, monkeypatch, capsys):
    import optuna

    storage = f"sqlite:///{tmp_path}/s.db"
    args = tiny_sweep_args(tmp_path, "--storage", storage, "--study", "full")
    failed = disk_full_on(monkeypatch, "result.json")
    line = one_line_error(capsys, args, "sweep")
    assert failed and "No space left on device" in line and "result.json" in line, line
    assert str(Path(failed[0]).parent) in line, line
    assert temp_files(tmp_path / "runs") == []
    (trial,) = optuna.load_study(study_name="full", storage=storage).get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL
    monkeypatch.undo()  # the disk has room again: the same command trains the cell again
    cli_main(args)
    trials = optuna.load_study(study_name="full", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert list((tmp_path / "runs").rglob("result.json")) and temp_files(tmp_path / "runs") == []


def test_issue23_item13_disk_full_in_a_report_is_one_line(finished_study, tmp_path, monkeypatch, capsys):  # noqa: F811 - the fixture
    out = tmp_path / "r"
    disk_full_on(monkeypatch, "summary.md")
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(out), "--reps", "20"], "report")
    assert "No space left on device" in line and str(out / "summary.md") in line, line
    assert not (out / "summary.md").exists() and temp_files(out) == []


def test_issue23_item13_disk_full_in_gradcam_is_one_line(tmp_path, monkeypatch, capsys):
    tiny_dqn().save(tmp_path / "m.zip")
    out = tmp_path / "cam.png"
    disk_full_on(monkeypatch, "cam.png")
    line = one_line_error(
        capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", ENV_ID, "--steps", "1", "--out", str(out)], "gradcam"
    )
    assert "No space left on device" in line and str(out) in line, line
    assert not out.exists() and temp_files(tmp_path) == [] and not list(tmp_path.glob("*.png"))


def test_issue23_item13_disk_full_in_a_pull_is_one_line(hub_env, dqn_files, tmp_path, monkeypatch, capsys):
    import shutil

    from huggingface_hub import HfApi

    _, files = dqn_files
    publish(hub_env, "alice/full-disk", files)
    downloads = tmp_path / "dl"

    def copyfile(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import sb3_gap.hub.pull as pull_module

    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", copyfile)  # writing the run folder: copied files ...
        m.setattr(pull_module, "write_zoo_yaml", copyfile)  # ... and the checked YAML, written again
        line = one_line_error(capsys, ["pull", "--repo-id", "alice/full-disk", "-f", str(downloads)], "pull")
    assert "No space left on device" in line and str(downloads / "dqn" / f"{ENV_NAME}_1") in line, line
    assert empty_or_missing(downloads / "dqn")

    def download(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(HfApi, "hf_hub_download", download)  # the Hub cache
        line = one_line_error(capsys, ["pull", "--repo-id", "alice/full-disk", "-f", str(downloads)], "pull")
    assert "No space left on the local disk" in line and "hf-cache" in line and "connection" not in line, line
    assert empty_or_missing(downloads / "dqn")


# ------------------------------------------------------------------------------------------------
# The SQLite storage locked by another process while a trial runs
# ------------------------------------------------------------------------------------------------

LOCK_HOLDER = """import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('BEGIN EXCLUSIVE')
print('locked', flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def locked_mid_run(tmp_path, monkeypatch):
    """Shrink the lock waits to fractions of a second, and replace training by a stand-in that has another process
    lock the storage for ``hold`` seconds while the trial runs (the trial returns after ``train`` seconds)."""
    import subprocess
    import sys
    import threading

    from sb3_gap.sweep import database as sweep_database
    from sb3_gap.sweep import storage as sweep_storage
    from sb3_gap.sweep import workers as sweep_workers

    monkeypatch.setattr(sweep_database, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(sweep_storage, "LOCK_BACKOFF_S", 0.2)
    thread_errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    holders: list[subprocess.Popen] = []
    plan = {"hold": 0.0, "train": 0.0}

    def train_cell(spec, params, **kwargs):
        if plan["hold"]:
            db = spec.storage.removeprefix("sqlite:///")
            holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, db, str(plan["hold"])], stdout=subprocess.PIPE, text=True)
            holders.append(holder)
            assert holder.stdout.readline().strip() == "locked"
        import time

        time.sleep(plan["train"])
        return {"params": params, "final_score": 1.0}

    monkeypatch.setattr(sweep_workers, "train_cell", train_cell)

    def release() -> None:
        for holder in holders:
            holder.kill()
            holder.wait()

    yield plan, thread_errors, release
    release()


def test_issue23_item13_heartbeat_outlasts_a_lock_mid_run(tmp_path, locked_mid_run, capsys):
    import optuna

    plan, thread_errors, _ = locked_mid_run
    plan.update(hold=3.0, train=4.0)  # the lock is gone before the trial's result is recorded
    storage = f"sqlite:///{tmp_path}/s.db"
    cli_main(tiny_sweep_args(tmp_path, "--storage", storage, "--study", "hb", "--heartbeat-interval", "1"))
    err = capsys.readouterr().err
    assert thread_errors == []  # Optuna's heartbeat thread did not die
    assert f"SQLite storage {tmp_path / 's.db'} is locked by PID" in err and "the next heartbeat tries again" in err, err
    assert "Traceback" not in err
    (trial,) = optuna.load_study(study_name="hb", storage=storage).get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE


@pytest.mark.slow
def test_issue23_item13_result_outlasts_a_short_lock_and_a_long_one_is_one_line(tmp_path, locked_mid_run, capsys):
    import optuna

    plan, thread_errors, release = locked_mid_run
    storage = f"sqlite:///{tmp_path}/s.db"

    def args(study: str) -> list[str]:
        return tiny_sweep_args(tmp_path, "--storage", storage, "--study", study, "--heartbeat-interval", "1", "--grace-period", "2")

    plan.update(hold=1.2, train=0.0)  # locked while the result is recorded, for less than the tries wait
    cli_main(args("short"))
    err = capsys.readouterr().err
    assert "while recording trial id 1's" in err and "try 2 of 3" in err and "Traceback" not in err, err
    assert optuna.load_study(study_name="short", storage=storage).get_trials()[0].state == optuna.trial.TrialState.COMPLETE

    plan.update(hold=60.0)  # locked past every try of the result
    line = one_line_error(capsys, args("long"), "sweep")
    assert f"SQLite storage {tmp_path / 's.db'} is locked by PID" in line and "retried by the next run of the same command" in line, line
    assert thread_errors == []
    release()
    plan.update(hold=0.0)
    cli_main(args("long"))  # the same command: the unfinished trial goes stale, fails and is trained again
    states = [t.state.name for t in optuna.load_study(study_name="long", storage=storage).get_trials()]
    assert states == ["FAIL", "COMPLETE"], states
