"""Sweeps (Optuna grid, workers, crash recovery) and their reports, on tiny MinAtar budgets.

Bad input is one line before any study or run folder exists; storage passwords never reach an error or the report;
missing, locked, corrupt and foreign SQLite storages, and a full disk, are one line and lose nothing trained.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import cloudpickle
import gymnasium as gym
import numpy as np
import optuna
import pytest
import scipy.stats
import yaml
from helpers import ENV_ID, ENV_NAME, disk_full_on, one_line_error, temp_files, tiny_sweep_args  # tests/ is on sys.path
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from rliable import library as rly
from rliable import metrics

from sb3_gap.checks import Refused
from sb3_gap.cli import main as cli_main
from sb3_gap.sweep import SweepSpec, open_study, run_sweep, run_worker
from sb3_gap.sweep import database as sweep_database
from sb3_gap.sweep import spec as sweep_spec
from sb3_gap.sweep import workers as sweep_workers
from sb3_gap.sweep.cli import main
from sb3_gap.sweep.report import build_report, compute_aggregates, load_runs, score_matrices
from sb3_gap.sweep.spec import cell_key, run_dir_for
from sb3_gap.sweep.storage import SweepGridSampler, cell_states, make_storage
from sb3_gap.sweep.workers import _Objective

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(tmp_path: Path, **overrides) -> SweepSpec:
    fields = dict(
        envs=["MinAtar/Breakout-v1"],
        algos=["qrdqn"],
        bottlenecks=["flatten", "gap"],
        width_scales=[1],
        seeds=2,
        steps=200,
        eval_freq=100,
        eval_episodes=1,
        final_evals=1,
        storage=f"sqlite:///{tmp_path / 'sweep.db'}",
        study="tiny",
        out_dir=str(tmp_path / "runs"),
        heartbeat_interval=1,
        grace_period=3,
        save_models=False,
    )
    fields.update(overrides)
    return SweepSpec(**fields)


def complete_by_cell(study: optuna.Study) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        out.setdefault(cell_key(t.params), []).append(t.number)
    return out


# ----------------------------------------------------------------------------- aggregates
def test_aggregates_equal_rliable_called_directly():
    rng = np.random.default_rng(1)
    scores = {"flatten": rng.normal(0.5, 0.3, (5, 3)), "gap": rng.normal(0.9, 0.3, (5, 3))}
    ours = compute_aggregates(scores, reps=300, seed=7)

    def func(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x)])

    np.random.seed(7)
    points, intervals = rly.get_interval_estimates(scores, func, reps=300)
    for key in scores:
        for i, metric in enumerate(("IQM", "Median", "Mean", "Optimality gap")):
            assert ours[key][metric] == pytest.approx((points[key][i], intervals[key][0, i], intervals[key][1, i]))
        # Point estimates against their definitions (Agarwal et al. 2021), computed independently.
        x = scores[key]
        assert ours[key]["IQM"][0] == pytest.approx(scipy.stats.trim_mean(x.ravel(), 0.25))
        assert ours[key]["Median"][0] == pytest.approx(np.median(x.mean(axis=0)))
        assert ours[key]["Mean"][0] == pytest.approx(x.mean())
        assert ours[key]["Optimality gap"][0] == pytest.approx(np.mean(1.0 - np.minimum(x, 1.0)))
        low, high = ours[key]["IQM"][1:]
        assert low < ours[key]["IQM"][0] < high


# ----------------------------------------------------------------------------- workers
def test_duplicate_cell_is_pruned_not_trained(tmp_path):
    """Two trials on one cell (GridSampler race): the higher-numbered one is pruned without training."""
    spec = tiny_spec(tmp_path, bottlenecks=["gap"], seeds=1)
    open_study(spec)
    # Without heartbeats, so that the hand-made RUNNING trial is not failed as stale.
    study = optuna.load_study(study_name=spec.study, storage=make_storage(spec, heartbeat=False), sampler=SweepGridSampler(spec.search_space()))
    cell = spec.cells()[0]
    study.enqueue_trial(cell)
    first = study.ask()  # RUNNING in "another worker"
    study.enqueue_trial(cell)
    study.optimize(_Objective(spec, progress=False), n_trials=1)
    second = study.trials[-1]
    assert second.state == TrialState.PRUNED and second.user_attrs["duplicate_of"] == first.number
    assert not (Path(spec.out_dir) / spec.study).exists()  # nothing trained


@pytest.mark.slow
def test_two_workers_complete_grid_without_duplicates(tmp_path):
    spec = tiny_spec(tmp_path)
    study = run_sweep(spec, workers=2, progress=False)
    done = complete_by_cell(study)
    assert sorted(done) == sorted(cell_key(c) for c in spec.cells())
    assert all(len(numbers) == 1 for numbers in done.values()), done
    results = sorted((Path(spec.out_dir) / spec.study).rglob("result.json"))
    assert len(results) == len(spec.cells())
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert sorted(t.intermediate_values) == [100, 200]  # the curve, reported per evaluation
        curve = json.loads((Path(t.user_attrs["run_dir"]) / "curve.json").read_text())
        assert curve["timesteps"] == [100, 200] and curve["mean"] == [t.intermediate_values[100], t.intermediate_values[200]]
        assert list((Path(t.user_attrs["run_dir"]) / "tb").rglob("events.out.tfevents.*"))
    # Re-running the finished sweep trains nothing.
    assert run_worker(spec, progress=False) == 0


@pytest.mark.slow
def test_sigkill_mid_trial_loses_nothing_and_resumes(tmp_path):
    spec = tiny_spec(tmp_path, bottlenecks=["gap"], seeds=3, steps=600, eval_freq=100)
    open_study(spec)
    code = (
        "import json, sys, torch; torch.set_num_threads(1);"
        "from sb3_gap.sweep import SweepSpec, run_worker;"
        "run_worker(SweepSpec(**json.loads(sys.argv[1])), progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(asdict(spec))], env=env, stderr=subprocess.DEVNULL)
    study = optuna.load_study(study_name=spec.study, storage=spec.storage)
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if any(t.state == TrialState.COMPLETE for t in trials) and running:
            victim = running[0]
        else:
            time.sleep(0.1)
    assert victim is not None, "worker never reached a second trial"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {t.number: (t.value, cell_key(t.params)) for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert finished
    saved = {p: p.read_bytes() for t in study.get_trials(states=(TrialState.COMPLETE,)) for p in Path(t.user_attrs["run_dir"]).glob("*.json")}
    assert len(saved) == 3 * len(finished)  # curve.json, result.json and settings.json per finished run

    run_worker(spec, progress=False, poll_interval=0.5)  # the same command again

    trials = {t.number: t for t in study.get_trials()}
    for number, (value, _key) in finished.items():  # finished trials untouched and not rerun
        assert trials[number].state == TrialState.COMPLETE and trials[number].value == value
    assert trials[victim.number].state == TrialState.FAIL
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    done = complete_by_cell(study)
    assert len(done) == len(spec.cells()) and all(len(v) == 1 for v in done.values())
    assert all(p.read_bytes() == data for p, data in saved.items())  # finished runs' files untouched
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        json.loads((Path(t.user_attrs["run_dir"]) / "curve.json").read_text())  # whole, parseable files


# ----------------------------------------------------------------------------- report
def _fake_complete(study: optuna.Study, spec: SweepSpec, params: dict, value: float) -> None:
    dists = {k: CategoricalDistribution(v) for k, v in spec.search_space().items()}
    study.add_trial(
        optuna.trial.create_trial(
            params=params, distributions=dists, value=value, intermediate_values={100: value / 2, 200: value},
            user_attrs=dict(wall_s=36.0, params_connection=1000 * params["width_scale"], params_psi=10, params_total=5000),
        )
    )  # fmt: skip


@pytest.mark.slow
def test_report_renders_partial_merged_studies(tmp_path):
    spec = tiny_spec(tmp_path, envs=["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"], width_scales=[1, 4], seeds=2)
    study = open_study(spec)
    cells = spec.cells()
    for i, params in enumerate(cells):
        if params["bottleneck"] == "flatten" and params["width_scale"] == 4 and params["env"] == "MinAtar/Asterix-v1":
            continue  # this configuration never ran on Asterix: its aggregate is missing
        if params["seed"] == 1 and params["bottleneck"] == "gap" and params["width_scale"] == 1:
            continue  # partial: one seed only
        _fake_complete(study, spec, params, float(i))
    # A second study adds a seed of one configuration.
    spec2 = tiny_spec(tmp_path, study="more", bottlenecks=["gap"], width_scales=[1], seeds=[2], envs=spec.envs)
    study2 = open_study(spec2)
    for params in spec2.cells():
        _fake_complete(study2, spec2, params, 3.0)

    sources = [(spec.storage, "tiny"), (spec.storage, "more")]
    df = load_runs(sources)
    assert len(df) == len(cells) + 2 and (df["state"] == "missing").sum() == 4
    matrices, missing = score_matrices(df)
    assert "qrdqn impala flatten ×4" in missing and "Asterix" in missing["qrdqn impala flatten ×4"]
    assert matrices["qrdqn impala gap ×1"].shape == (2, 2)  # seed 0 (tiny) + seed 2 (more) on both games

    summary = build_report(sources, tmp_path / "report", reps=200)
    text = summary.read_text()
    for name in ("scaling.png", "cost.png", "curves.png", "profiles.png", "runs.csv", "aggregates.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    flatten4 = next(line for line in text.splitlines() if line.startswith("| qrdqn impala flatten ×4 |"))
    assert "missing" in flatten4
    assert "missing (missing: 2)" in text  # the per-game table marks the cells never run
    assert "[" in next(line for line in text.splitlines() if line.startswith("| qrdqn impala gap ×4 |"))  # a CI


def test_report_refuses_to_merge_a_cell_of_studies_that_fix_other_settings(tmp_path):
    """Two studies holding the same cell but fixing other settings (the LayerNorm study next to the architectures
    study of Fig. 10) are refused in one line naming both studies and the setting, where the merge kept one silently;
    as a grid axis the setting keeps the two configurations apart, each labelled."""
    plain = tiny_spec(tmp_path, study="plain", seeds=1, bottlenecks=["flatten"])
    normed = tiny_spec(tmp_path, study="normed", seeds=1, bottlenecks=["flatten"], fixed={"layer_norm": True})
    axis = tiny_spec(tmp_path, study="axis", seeds=1, bottlenecks=["flatten"], hyperparams={"layer_norm": [True]})
    for spec in (plain, normed, axis):
        study = open_study(spec)
        for params in spec.cells():
            _fake_complete(study, spec, params, 1.0)
    with pytest.raises(Refused) as info:
        load_runs([(plain.storage, "plain"), (normed.storage, "normed")])
    message = str(info.value)
    assert "\n" not in message and "'plain'" in message and "'normed'" in message
    assert "layer_norm (unset in 'plain', True in 'normed')" in message
    df = load_runs([(plain.storage, "plain"), (axis.storage, "axis")])
    assert sorted(df["config"].unique()) == ["qrdqn impala flatten ×1", "qrdqn impala flatten ×1 layer_norm=True"]
    assert (df["state"] == "COMPLETE").all() and len(df) == 2


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(bottlenecks=["gap", "nope"]), ["'nope'", "flatten", "gap"]),
        (dict(algos=["a2c"]), ["'a2c'", "qrdqn", "rainbow"]),
        (dict(encoders=["resnet"]), ["'resnet'", "impala", "nature"]),
        (dict(storage="runs/sweep.db"), ["'runs/sweep.db'", "sqlite:///"]),
        (dict(storage="redis://localhost/0"), ["'redis'", "postgresql", "sqlite"]),
        (dict(bottlenecks=[]), ["Empty grid", "bottlenecks"]),
        (dict(seeds=0), ["Empty grid", "seeds"]),
        (dict(envs=["MinAtar/Breakout-v9"]), ["'MinAtar/Breakout-v9'", "MinAtar/Breakout-v1"]),
        (dict(hyperparams={"learning_rat": [1e-4]}), ["'learning_rat'", "learning_rate"]),
        (dict(width_scales=[0]), ["width_scale", "0"]),
    ],
)
def test_bad_input_names_value_and_choices(tmp_path, overrides, words):
    with pytest.raises(ValueError) as info:
        tiny_spec(tmp_path, **overrides).validate()
    for word in words:
        assert word in str(info.value)


def test_bad_input_cli_and_report(tmp_path, capsys):
    with pytest.raises(SystemExit, match="Unknown bottleneck 'nope'"):
        main(["--envs", "MinAtar/Breakout-v1", "--bottlenecks", "nope", "--storage", f"sqlite:///{tmp_path}/x.db"])
    spec = tiny_spec(tmp_path)
    study = open_study(spec)
    with pytest.raises(ValueError, match="No study 'other'.*tiny"):
        build_report([(spec.storage, "other")], tmp_path / "r")
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.0))  # settings with results bind the study
    with pytest.raises(ValueError, match="other training settings"):
        open_study(tiny_spec(tmp_path, steps=300))


def test_changed_grid_axis_values_refused_with_the_way_out(tmp_path):
    """Optuna fixes an axis' choices per study: a grid that changes them gets one line naming axis, values, remedy."""
    spec = tiny_spec(tmp_path)
    study = open_study(spec)
    space = spec.search_space()
    params = {name: values[0] for name, values in space.items()}
    dists = {name: CategoricalDistribution(values) for name, values in space.items()}
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.0, params=params, distributions=dists))
    open_study(spec)  # the same grid resumes
    open_study(tiny_spec(tmp_path, hyperparams={"learning_rate": [1e-4]}))  # a new axis is fine (other name)
    with pytest.raises(ValueError, match=r"grid axis 'bottleneck' = \['flatten', 'gap'\], given \['gap'\].*new --study name"):
        open_study(tiny_spec(tmp_path, bottlenecks=["gap"]))


def test_cell_states_prefers_complete():
    def trial(state, number):
        t = optuna.trial.create_trial(state=state, params={"seed": 0}, distributions={"seed": CategoricalDistribution([0])},
                                      value=1.0 if state == TrialState.COMPLETE else None)  # fmt: skip
        t.number = number
        return t

    states = cell_states([trial(TrialState.FAIL, 0), trial(TrialState.COMPLETE, 1), trial(TrialState.PRUNED, 2)])
    assert states == {cell_key({"seed": 0}): TrialState.COMPLETE}


def test_normalization_tables_by_protocol(tmp_path):
    from sb3_gap.envs.protocols import load_reference, protocol_for

    assert protocol_for("ALE/Pong-v5").reference("ALE/Pong-v5") == (-20.7, 14.6)  # random, human
    assert protocol_for("BreakoutNoFrameskip-v4").reference("BreakoutNoFrameskip-v4") == (1.7, 30.5)
    assert protocol_for("procgen:procgen-starpilot-v0").reference("procgen:procgen-starpilot-v0") == (2.5, 64)  # easy
    assert protocol_for("procgen/starpilot-hard").reference("procgen/starpilot-hard") == (1.5, 35)
    assert protocol_for("MinAtar/Breakout-v1").reference("MinAtar/Breakout-v1") is None  # raw
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"MinAtar/Breakout-v1": [0, 10]}))
    assert load_reference(path) == {"MinAtar/Breakout-v1": (0.0, 10.0)}
    path.write_text(json.dumps({"MinAtar/Breakout-v1": [3, 3]}))
    with pytest.raises(ValueError, match="MinAtar/Breakout-v1"):
        load_reference(path)


def test_sb3_gap_atari_ids_use_the_papers_protocol():
    """Dopamine/* and Atari100k/* ids get the env module's protocol: training wrappers, VecFrameStack(4), human-normalized."""
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_gap.envs.protocols import protocol_for

    proto = protocol_for("Dopamine/Pong-v5")
    assert proto.make_env.__name__ == "make_sb3_gap_atari_env"
    assert proto.reference("Atari100k/Pong-v5") == proto.reference("ALE/Pong-v5") is not None
    venv = proto.make_env("Atari100k/Pong-v5", 1, 0, True)
    try:
        assert isinstance(venv, VecFrameStack) and venv.observation_space.shape == (4, 84, 84)
    finally:
        venv.close()


# ---------------------------------------------------------------------------------------- storages
def test_storage_urls_never_show_passwords():
    from sb3_gap.sweep.database import check_storage_url, display_url

    assert display_url("postgresql://sweeper:s3cret@127.0.0.1:9/sweeps") == "postgresql://sweeper:***@127.0.0.1:9/sweeps"
    assert display_url("sqlite:///runs/x.db") == "sqlite:///runs/x.db"
    with pytest.raises(ValueError, match="Unsupported storage backend 'firebird'") as info:
        check_storage_url("firebird://u:s3cret@127.0.0.1:9/db")
    assert "s3cret" not in str(info.value)


def test_missing_database_driver_says_what_to_install():
    from sb3_gap.sweep.database import rdb_storage

    with pytest.raises(ImportError, match="No database driver") as info:
        rdb_storage("postgresql+pg8000://sweeper:s3cret@localhost/sweeps")  # pg8000 is not installed
    assert "pip install" in str(info.value) and "s3cret" not in str(info.value)


def test_storage_creation_race_is_retried(monkeypatch):
    """Workers starting together on an empty PostgreSQL race to create Optuna's tables; the loser retries."""
    import sqlalchemy.exc

    import sb3_gap.sweep.database as sweep_module

    calls = []

    class RacyStorage:
        def __init__(self, url, **kwargs):
            calls.append(url)
            if len(calls) == 1:
                raise sqlalchemy.exc.IntegrityError("CREATE TABLE alembic_version", {}, Exception("duplicate key"))

    monkeypatch.setattr(sweep_module, "RDBStorage", RacyStorage)
    monkeypatch.setattr(sweep_module.time, "sleep", lambda s: None)
    assert isinstance(sweep_module.rdb_storage("postgresql://u:p@127.0.0.1:9/db"), RacyStorage) and len(calls) == 2

    class DownStorage:  # a database that never answers: the error comes out after the attempts
        def __init__(self, url, **kwargs):
            calls.append(url)
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception("connection refused"))

    calls.clear()
    monkeypatch.setattr(sweep_module, "RDBStorage", DownStorage)
    with pytest.raises(Refused, match=r"^Cannot open the storage postgresql://u:\*+@127.0.0.1:9/db: .*connection refused") as info:
        sweep_module.rdb_storage("postgresql://u:secret@127.0.0.1:9/db", attempts=3)
    assert len(calls) == 3 and "secret" not in str(info.value)
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)  # the driver's error stays in the traceback chain


# ----------------------------------------------------------------------------- diagnostics per evaluation
DIAG_KEYS = ("dormant_psi", "dormant_psi@0.1", "dormant_phi", "feature_norm_phi", "feature_norm_out")


@pytest.mark.parametrize("algo", ["qrdqn", "dqn", "rainbow", "ppo"])
@pytest.mark.slow
def test_every_sweep_run_records_dormancy_and_feature_norm_per_evaluation(tmp_path, algo):
    """Each evaluation of every run adds ψ/φ dormancy (τ 0.001 and 0.1) and feature norms to curve.json and to the trial."""
    spec = tiny_spec(tmp_path, algos=[algo], bottlenecks=["flatten"], seeds=1, steps=256, eval_freq=128)
    study = run_sweep(spec, workers=1, progress=False)
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    curve = json.loads((Path(trial.user_attrs["run_dir"]) / "curve.json").read_text())
    diag = trial.user_attrs["diagnostics"]
    assert diag["timesteps"] == curve["timesteps"] and len(curve["timesteps"]) == 2
    for key in DIAG_KEYS:
        assert len(curve[key]) == 2 and curve[key] == diag[key], key
        assert all(np.isfinite(curve[key])), (key, curve[key])
    assert all(0.0 <= v <= 1.0 for key in DIAG_KEYS[:3] for v in curve[key])
    assert all(v > 0 for v in curve["feature_norm_phi"])
    assert 0 < trial.user_attrs["diagnostics_s"] < trial.user_attrs["wall_s"]


@pytest.mark.slow
def test_diagnostics_leave_training_unchanged(tmp_path):
    """Measuring dormancy draws no random number and restores the network's mode: the same run with and without is identical."""
    from sb3_gap.envs.protocols import protocol_for
    from sb3_gap.sweep.cell import SweepEvalCallback, build_model

    spec = tiny_spec(tmp_path, algos=["rainbow"], bottlenecks=["gap"], seeds=1, steps=300)
    params = spec.cells()[0]
    protocol = protocol_for(params["env"])
    finals = []
    for diagnostics in (False, True):
        env = protocol.make_env(params["env"], 1, 0, True)
        model = build_model(spec, {**params}, env)
        model.learning_starts = 50
        cb = SweepEvalCallback(protocol.make_eval_env(params["env"], 7), tmp_path / f"curve{diagnostics}.json", eval_freq=100,
                               n_eval_episodes=1, diagnostics=diagnostics)  # fmt: skip
        model.learn(300, callback=cb)
        finals.append((cb.curve["mean"], [p.detach().clone() for p in model.policy.parameters()]))
        assert ("dormant_psi" in cb.curve) == diagnostics
    assert finals[0][0] == finals[1][0]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(finals[0][1], finals[1][1]))


@pytest.mark.slow
def test_report_plots_and_tabulates_dormancy(tmp_path):
    spec = tiny_spec(tmp_path, width_scales=[1, 4], seeds=2)
    study = open_study(spec)
    for i, params in enumerate(spec.cells()):
        dists = {k: CategoricalDistribution(v) for k, v in spec.search_space().items()}
        diag = {"timesteps": [100, 200], "dormant_psi": [0.1, 0.2 + i / 100], "dormant_psi@0.1": [0.3, 0.4], "dormant_phi": [0.0, 0.05],
                "feature_norm_phi": [3.0, 4.0], "feature_norm_out": [1.0, 2.0]}  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=1.0,
                intermediate_values={100: 0.5, 200: 1.0},
                user_attrs=dict(wall_s=100.0, diagnostics_s=1.0, diagnostics=diag),
            )  # fmt: skip
        )
    summary = build_report([(spec.storage, spec.study)], tmp_path / "report", reps=50)
    text = summary.read_text()
    assert (tmp_path / "report" / "dormancy.png").stat().st_size > 0 and "![dormancy.png](dormancy.png)" in text
    row = next(line for line in text.splitlines() if line.startswith("| qrdqn impala flatten ×4 | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    expected = np.mean([0.2 + i / 100 for i, p in enumerate(spec.cells()) if p["bottleneck"] == "flatten" and p["width_scale"] == 4])
    assert cells[2] == f"{expected:.3f}" and cells[3] == "0.400" and cells[5] == "4" and cells[7] == "1.00%"


# ----------------------------------------------------------------------------- presets never write into their committed folders
@pytest.mark.parametrize(
    "preset, argv, storage, report",
    [
        ("minatar-scaling", ["--storage", "sqlite:///{t}/mine.db", "--out", "{t}/mine"], "sqlite:///{t}/mine.db", "{t}/mine/minatar_scaling_report"),
        ("minatar-scaling", ["--out", "{t}/mine"], "sqlite:///{t}/mine/minatar_scaling/study.db", "{t}/mine/minatar_scaling"),
        ("demo", ["--out", "{t}/mine"], "sqlite:///{t}/mine/demo.db", "{t}/mine/demo_report"),
        ("demo", ["--out", "{t}/mine", "--study", "other"], "sqlite:///{t}/mine/demo.db", "{t}/mine/other_report"),
        ("minatar-deep", [], "sqlite:///results/minatar_deep/study.db", "results/minatar_deep"),
        ("minatar-width", [], "sqlite:///results/minatar_width/study.db", "results/minatar_width"),
    ],
)
def test_preset_report_and_database_follow_out_and_storage(tmp_path, monkeypatch, preset, argv, storage, report):
    import sb3_gap.sweep.cli as cli

    calls = {}
    monkeypatch.setattr(cli, "run_sweep", lambda spec, **kw: calls.update(spec=spec))
    monkeypatch.setattr(cli, "build_report", lambda sources, out, **kw: calls.update(sources=sources, report=str(out)))
    cli.main(["--preset", preset, "--no-progress", *(a.format(t=tmp_path) for a in argv)])
    assert calls["spec"].storage == storage.format(t=tmp_path) and calls["sources"][0][0] == calls["spec"].storage
    assert calls["report"] == report.format(t=tmp_path)
    if argv:
        assert calls["spec"].out_dir == f"{tmp_path}/mine"


def test_preset_with_another_storage_but_its_own_folders_is_refused(tmp_path, monkeypatch):
    import sb3_gap.sweep.cli as cli

    monkeypatch.setattr(cli, "run_sweep", lambda *a, **k: pytest.fail("must not start"))
    with pytest.raises(SystemExit, match=r"--storage sqlite:///.*mine.db with --preset minatar-scaling.*results/minatar_scaling.*give --out DIR"):
        cli.main(["--preset", "minatar-scaling", "--storage", f"sqlite:///{tmp_path}/mine.db"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["minatar-scaling", "minatar-deep"])
def test_committed_complete_study_resumes_without_training(tmp_path, monkeypatch, preset):
    """The preset's command on a copy of its committed folder (study.db and run files, no checkpoints) finds every
    cell complete under today's code: no trial is added, nothing trains, and the report is built from that study."""
    import sb3_gap.sweep.cli as cli

    folder = preset.replace("-", "_")
    shutil.copytree(ROOT / "results" / folder, tmp_path / folder)
    db = tmp_path / folder / "study.db"

    def trial_counts() -> tuple[int, int]:
        with closing(sqlite3.connect(db)) as con:
            return con.execute("select count(*), sum(state = 'COMPLETE') from trials").fetchone()

    before = trial_counts()
    monkeypatch.setattr(_Objective, "__call__", lambda *a, **k: pytest.fail("a complete study must not train"))
    reports = []
    monkeypatch.setattr(cli, "build_report", lambda sources, out, **kw: reports.append((sources, str(out))))
    main(["--preset", preset, "--out", str(tmp_path), "--workers", "1", "--no-progress"])
    assert trial_counts() == before
    assert reports == [([(f"sqlite:///{db}", folder)], str(tmp_path / folder))]


@pytest.mark.parametrize("preset", ["minatar-scaling", "minatar-deep", "minatar-rr"])
def test_new_study_name_with_a_committed_preset_needs_its_own_out(tmp_path, monkeypatch, preset):
    """--study NEW with a preset whose results are committed would add NEW to the committed database: refused without
    --out; with --out the new study's database and report go there."""
    import sb3_gap.sweep.cli as cli

    calls = {}
    monkeypatch.setattr(cli, "run_sweep", lambda spec, **kw: calls.update(spec=spec))
    monkeypatch.setattr(cli, "build_report", lambda sources, out, **kw: calls.update(report=str(out)))
    with pytest.raises(SystemExit, match=rf"--study bigger with --preset {preset}: the new study would be added to the committed .*give --out DIR"):
        cli.main(["--preset", preset, "--study", "bigger", "--steps", "200000", "--no-progress"])
    assert not calls
    cli.main(["--preset", preset, "--study", "bigger", "--out", str(tmp_path / "mine"), "--no-progress"])
    assert calls["spec"].storage.startswith(f"sqlite:///{tmp_path}/mine/") and calls["report"].startswith(str(tmp_path / "mine"))


@pytest.mark.slow
def test_compare_studies_scores_the_first_study_at_100k(capsys):
    """tools/compare_studies.py: a run's score at 100k is the mean of its evaluations at 80k, 90k, 100k (committed curves)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_studies", ROOT / "tools" / "compare_studies.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rows = [r for r in tool.load(100_000, 3) if r["study"].startswith("one stack")]
    assert len(rows) == 24
    run = ROOT / "results/minatar_scaling/MinAtar_SpaceInvaders-v1/rainbow-minatar_impala-gap-x1-s0/curve.json"
    curve = json.loads(run.read_text())
    expected = np.mean([m for t, m in zip(curve["timesteps"], curve["mean"]) if t in (80_000, 90_000, 100_000)])
    (row,) = [r for r in rows if (r["bottleneck"], r["width"], r["seed"], r["env"]) == ("gap", 1, 0, "MinAtar/SpaceInvaders-v1")]
    assert row["score"] == pytest.approx(expected)
    tool.main(["--reps", "50"])
    out = capsys.readouterr().out
    assert "| one stack (study 1) | flatten ×4 | " in out and "[" in out.split("| one stack (study 1) | flatten ×4 | ")[1].split("\n")[0]
    # the replay-ratio question: study 2's x8 arm (ratio 0.25) beside study 3's (ratio 1), and D = GAP x8 - flatten x8
    ratios = out.split("### Updates: replay ratio 0.25 vs 1")[1].split("###")[0]
    for row in (
        "| deep φ (study 2) | flatten ×8 |",
        "| deep φ, ratio 1 (study 3) | flatten ×8 |",
        "| deep φ (study 2) | gap ×8 |",
        "| deep φ, ratio 1 (study 3) | gap ×8 |",
    ):
        assert row in ratios
    assert "| 0.25 | -3.39 | -1.30 | -5.48 |" in ratios and "\n| 1 | " in ratios


# ----------------------------------------------------------------------------- checkpoints: a stopped run resumes
_RESUME_FIXED = {
    "rainbow": {"learning_starts": 50, "buffer_size": 1_000, "replay_ratio": 1, "target_update_interval": 50},
    "dqn": {"learning_starts": 50, "buffer_size": 1_000, "target_update_interval": 50},
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 2},
}


class _Stopped(Exception):
    """Stands for a kill: raised from inside training, past the last checkpoint."""


def _params_of(run_dir: Path, algo: str) -> list[np.ndarray]:
    from sb3_gap.algos import get_algo

    model = get_algo(algo).load(run_dir / "model.zip", device="cpu")
    return [p.detach().numpy().copy() for p in model.policy.state_dict().values()]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rainbow", "dqn", "ppo"])
def test_run_stopped_between_checkpoints_resumes_bit_for_bit(tmp_path, monkeypatch, algo):
    """A run stopped after its second evaluation resumes from its checkpoint and ends exactly as the uninterrupted run."""
    from sb3_gap.sweep.cell import SweepEvalCallback, train_cell
    from sb3_gap.sweep.checkpoint import CHECKPOINT_NAME

    specs = {name: tiny_spec(tmp_path / name, algos=[algo], bottlenecks=["flatten"], seeds=1, steps=400, eval_freq=100,
                             fixed=_RESUME_FIXED[algo], save_models=True) for name in ("whole", "stopped")}  # fmt: skip
    params = specs["whole"].cells()[0]
    whole = train_cell(specs["whole"], dict(params))

    step = SweepEvalCallback._on_step

    def stop_at_250(self):
        if self.num_timesteps >= 250:
            raise _Stopped
        return step(self)

    monkeypatch.setattr(SweepEvalCallback, "_on_step", stop_at_250)
    with pytest.raises(_Stopped):
        train_cell(specs["stopped"], dict(params))
    run_dir = run_dir_for(specs["stopped"], params)
    assert (run_dir / CHECKPOINT_NAME).is_file() and not (run_dir / "result.json").exists()
    monkeypatch.setattr(SweepEvalCallback, "_on_step", step)

    reported = []
    resumed = train_cell(specs["stopped"], dict(params), on_eval=lambda mean, at: reported.append(at))
    # from the first rollout boundary after the evaluation at 200 (PPO's rollouts are 32 steps long)
    assert resumed["resumed_from"] == (224 if algo == "ppo" else 200) and whole["resumed_from"] is None
    curves = [json.loads((Path(r["run_dir"]) / "curve.json").read_text()) for r in (whole, resumed)]
    assert reported == curves[1]["timesteps"] and reported[:4] == [100, 200, 300, 400]  # the new trial gets the whole curve
    for key in curves[0].keys() - {"wall_s"}:
        assert curves[0][key] == curves[1][key], key
    assert resumed["final_score"] == whole["final_score"]
    for a, b in zip(_params_of(Path(whole["run_dir"]), algo), _params_of(run_dir, algo), strict=True):
        assert np.array_equal(a, b)
    assert not (run_dir / CHECKPOINT_NAME).exists()  # removed once result.json is written


@pytest.mark.slow
def test_result_names_the_run_folder_as_the_sweep_does_without_this_machines_path(tmp_path, monkeypatch):
    """A committed result.json under a relative --out holds the relative run folder, not the absolute path of the machine."""
    from sb3_gap.sweep.cell import train_cell

    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tmp_path, algos=["dqn"], bottlenecks=["gap"], seeds=1, steps=100, eval_freq=100, out_dir="runs")
    result = train_cell(spec, dict(spec.cells()[0]))
    saved = json.loads((tmp_path / result["run_dir"] / "result.json").read_text())
    assert saved["run_dir"] == result["run_dir"] == str(run_dir_for(spec, spec.cells()[0])) and saved["run_dir"].startswith("runs/")
    assert str(tmp_path) not in json.dumps(saved)


@pytest.mark.slow
def test_checkpoint_of_other_settings_is_set_aside_and_the_run_starts_over(tmp_path, caplog):
    from sb3_gap.sweep.cell import run_settings, train_cell
    from sb3_gap.sweep.checkpoint import CHECKPOINT_NAME, UNUSABLE_NAME

    spec = tiny_spec(tmp_path, algos=["dqn"], bottlenecks=["gap"], seeds=1, steps=200, eval_freq=100)
    params = spec.cells()[0]
    run_dir = run_dir_for(spec, params)
    run_dir.mkdir(parents=True)
    other = {**run_settings(spec, params), "seed": 99}
    (run_dir / CHECKPOINT_NAME).write_bytes(cloudpickle.dumps(dict(format=1, settings=other)))
    with caplog.at_level("WARNING"):
        result = train_cell(spec, dict(params))
    assert result["resumed_from"] is None
    assert "has settings other than this run's" in caplog.text
    assert (run_dir / UNUSABLE_NAME).is_file() and not (run_dir / CHECKPOINT_NAME).exists()

    (run_dir / CHECKPOINT_NAME).write_bytes(b"cut short")
    with caplog.at_level("WARNING"):
        assert train_cell(spec, dict(params))["resumed_from"] is None
    assert "cannot be read (UnpicklingError" in caplog.text


@pytest.mark.slow
def test_run_whose_state_cannot_be_pickled_trains_without_checkpoints(tmp_path, monkeypatch, caplog):
    from sb3_gap.sweep.cell import train_cell

    def refuse(obj, *args, **kwargs):
        raise TypeError("cannot pickle 'envpool' object")

    monkeypatch.setattr(cloudpickle, "dumps", refuse)
    spec = tiny_spec(tmp_path, algos=["dqn"], bottlenecks=["gap"], seeds=1, steps=300, eval_freq=100)
    with caplog.at_level("WARNING"):
        result = train_cell(spec, dict(spec.cells()[0]))
    assert result["n_evals"] == 3
    assert caplog.text.count("Run not checkpointed") == 1  # said once, then no more tries


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_ends_a_sweep_with_one_line_saying_how_to_resume(tmp_path, workers):
    """SIGINT to the terminal's process group (what Ctrl-C does) mid-run: one line, exit 130, and the same command resumes."""
    spec = tiny_spec(tmp_path, bottlenecks=["gap"], seeds=2, steps=3_000, eval_freq=100)
    argv = [sys.executable, "-m", "sb3_gap.cli", "sweep", "--envs", "MinAtar/Breakout-v1", "--algos", "qrdqn", "--bottlenecks", "gap",
            "--seeds", "2", "--steps", "3000", "--eval-freq", "100", "--eval-episodes", "1", "--final-evals", "1", "--no-progress",
            "--no-save-models", "--storage", spec.storage, "--study", spec.study, "--out", spec.out_dir, "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list(Path(spec.out_dir).glob("*/*/*/curve.json")):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err  # Optuna's own one-line warnings name the failed trials
    said = [line for line in err.splitlines() if line.startswith("sb3-gap sweep:")]
    assert len(said) == 1 and re.fullmatch(
        r"sb3-gap sweep: interrupted: [0-9] of 2 runs complete; nothing finished is lost: run the same command .*", said[0]
    ), err


def test_a_bug_inside_a_run_keeps_its_traceback_in_the_runs_folder(tmp_path, monkeypatch):
    """A ValueError from inside training (numpy-shaped, not a refusal) is no one-liner: its traceback is in the run's
    folder and in the log, and the command's one line says where."""
    from sb3_gap.sweep.cell import SweepEvalCallback

    def broken_step(self):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(SweepEvalCallback, "_on_step", broken_step)
    spec = tiny_spec(tmp_path, bottlenecks=["gap"], seeds=1)
    with pytest.raises(SystemExit) as info:
        main(["--envs", "MinAtar/Breakout-v1", "--algos", "qrdqn", "--bottlenecks", "gap", "--seeds", "1", "--steps", "200",
              "--eval-freq", "100", "--eval-episodes", "1", "--final-evals", "1", "--no-progress", "--no-save-models",
              "--storage", spec.storage, "--study", spec.study, "--out", spec.out_dir])  # fmt: skip
    line = str(info.value.code)
    path = run_dir_for(spec, spec.cells()[0]) / "traceback.txt"
    assert line.startswith("sb3-gap sweep: error: run ") and f"traceback in {path}" in line and "ValueError: operands" in line, line
    saved = path.read_text()
    assert saved.startswith("Traceback (most recent call last):") and "in broken_step" in saved and saved.rstrip().endswith("(4,)")
    (trial,) = optuna.load_study(study_name=spec.study, storage=spec.storage).get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["traceback_file"] == str(path)  # retried on the next run


# ----------------------------------------------------------------------------- storage URLs: a password never reaches an error, a log line or the report


SECRET = "hunter2secret"


SECRET_URLS = [
    f"postgresql://sweeper:{SECRET}@127.0.0.1:9/sweeps",
    f"postgresql://sweeper:p@{SECRET}@127.0.0.1:9/sweeps",  # '@' inside the password, not escaped
    f"postgresql://sweeper:p%40{SECRET}@127.0.0.1:9/sweeps",
    f"postgresql://127.0.0.1:9/sweeps?password={SECRET}",
    f"mysql+pymysql://u@127.0.0.1:9/db?ssl=1&sslpassword={SECRET}",
    f"sqlite:///runs/x.db?password={SECRET}",
    f"postgresql://sweeper:{SECRET}@127.0.0.1:notaport/sweeps",  # does not parse
    f"postgres:/sweeper:{SECRET}@127.0.0.1:9/sweeps",  # does not parse
    f"sweeper:{SECRET}@127.0.0.1",  # does not parse
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_display_url_and_scrub_secrets_mask_every_form_of_password(url):
    from sb3_gap.sweep.database import display_url, scrub_secrets

    shown = display_url(url)
    assert SECRET not in shown and "***" in shown
    assert SECRET not in scrub_secrets(f"could not open {url} (connection refused)", url)
    assert scrub_secrets(f"password 'x{SECRET}' rejected", f"postgresql://u:x{SECRET}@127.0.0.1:9/db") == "password '***' rejected"


@pytest.mark.parametrize("url", [SECRET_URLS[1], SECRET_URLS[3], SECRET_URLS[6], SECRET_URLS[7]])
def test_sweep_and_report_errors_never_show_the_storage_password(tmp_path, capsys, url):
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", url), "sweep")
    assert SECRET not in line
    line = one_line_error(capsys, ["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert SECRET not in line


@pytest.mark.parametrize("password", ["Qol:Sl/x9q", "pQ@sZ@wrd42", "50%offQZ!", "itQ's:mZn/oKk", "Zab/cdQ:efW@ghX%ijY'klV"])
def test_storage_url_errors_never_quote_any_part_of_the_password(tmp_path, capsys, password):
    """A password holding raw @ : / % ' is refused (or masked) without any piece of it in the message."""
    url = f"postgresql://sweeper:{password}@127.0.0.1:9/sweeps"
    pieces = [piece for piece in re.split(r"[@:/%']", password) if len(piece) >= 2 and piece.lower() != piece]  # distinctive ones
    for argv, command in ((tiny_sweep_args(tmp_path, "--storage", url), "sweep"),
                          (["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")], "report")):  # fmt: skip
        line = one_line_error(capsys, argv, command)
        assert not [piece for piece in pieces if piece in line], line


def test_report_summary_masks_storage_passwords():
    import pandas as pd

    from sb3_gap.sweep.report import METRICS, markdown_summary

    df = pd.DataFrame([dict(env=ENV_ID, seed=0, state="COMPLETE", score=1.0, normalization="raw return", config="c", settings=None)])
    agg = pd.DataFrame([dict(config="c", runs_per_task=1, tasks=1, complete=1, cells=1, wall_h=0.1, params_bottleneck=1, params_effective_psi=1, missing="",
                             **{k: v for m in METRICS for k, v in ((m, 1.0), (f"{m} low", 0.5), (f"{m} high", 1.5))})])  # fmt: skip
    text = markdown_summary(df, agg, [(url, "s") for url in SECRET_URLS], [])
    assert SECRET not in text and "***" in text


# ----------------------------------------------------------------------------- SQLite storages: missing, locked, corrupt, truncated, foreign; locked mid-run


def make_sqlite(path: Path, rows: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * rows)
    conn.commit()
    conn.close()


def test_report_never_creates_a_missing_sqlite_file(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{missing}", "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert f"SQLite storage {missing} does not exist" in line
    assert not missing.exists()
    from sb3_gap.sweep.report import build_report

    with pytest.raises(ValueError, match="does not exist"):
        build_report([(f"sqlite:///{missing}", "s")], tmp_path / "r")
    assert not missing.exists()


def test_sweep_on_a_locked_sqlite_storage_retries_then_names_the_holder(tmp_path, capsys, monkeypatch):
    db = tmp_path / "locked.db"
    make_sqlite(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n", str(db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(sweep_database, "SQLITE_PROBE_TIMEOUT_S", 0.5)
        monkeypatch.setattr(sweep_database, "SQLITE_LOCK_WAIT_S", 1.5)
        start = time.perf_counter()
        with pytest.raises(SystemExit) as info:
            cli_main(tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}"))
        elapsed = time.perf_counter() - start
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value.code)
    assert message.startswith("sb3-gap sweep: error: SQLite storage") and "is locked by" in message
    assert f"PID {holder.pid}" in message and "gave up after" in message
    assert "retry 1" in err and f"PID {holder.pid}" in err  # retried visibly
    assert elapsed < 30


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


def _truncated(path: Path) -> None:
    make_sqlite(path, rows=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, words", [(_corrupt, "not an SQLite database"), (_truncated, "truncated")])
@pytest.mark.parametrize("command", ["sweep", "report"])
def test_corrupt_or_truncated_sqlite_storage_is_one_line_and_left_unchanged(tmp_path, capsys, damage, words, command):
    db = tmp_path / "bad.db"
    damage(db)
    before = db.read_bytes()
    if command == "sweep":
        argv = tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}")
    else:
        argv = ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r")]
    line = one_line_error(capsys, argv, command)
    assert str(db) in line and words in line
    assert db.read_bytes() == before


def test_report_never_writes_into_a_database_without_an_optuna_study(tmp_path, capsys):
    db = tmp_path / "foreign.db"
    make_sqlite(db, rows=3)
    before = db.read_bytes()
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert "holds no Optuna study" in line and "['t']" in line and "nothing was written" in line
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["t"]
    conn.close()


def test_report_on_a_study_not_made_by_sweep_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/other.db"
    study = optuna.create_study(storage=url, study_name="tuned")
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)}, value=1.0))
    line = one_line_error(capsys, ["report", "--storage", url, "--study", "tuned", "--out", str(tmp_path / "r")], "report")
    assert "Study 'tuned'" in line and "was not made by `sb3-gap sweep`" in line and "['x']" in line


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


def test_heartbeat_outlasts_a_storage_lock_mid_run(tmp_path, locked_mid_run, capsys):
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
def test_result_outlasts_a_short_storage_lock_and_a_long_one_is_one_line(tmp_path, locked_mid_run, capsys):
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


# ----------------------------------------------------------------------------- bad sweep input: one line before any study or run folder exists


@pytest.mark.parametrize("study", ["../../x", "..", "a/b", "/abs", "a\\b"])
def test_sweep_refuses_study_names_that_leave_out_before_writing(tmp_path, capsys, study):
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--study", study, "--storage", f"sqlite:///{tmp_path}/s.db"), "sweep")
    assert repr(study) in line and "plain folder name" in line
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "runs").exists()


def test_sweep_spec_refuses_grid_values_that_make_run_folders_leave_out(tmp_path):
    spec = SweepSpec(envs=[ENV_ID], algos=["rainbow"], bottlenecks=["gap"], hyperparams={"loss": ["huber", "../../../evil"]},
                     storage=f"sqlite:///{tmp_path}/s.db", out_dir=str(tmp_path / "runs"))  # fmt: skip
    with pytest.raises(ValueError, match=r"Run folder .*evil.* would not be a folder of"):
        spec.validate()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--workers", "0"], ["--workers", "'0'", "positive integer", "'auto'"]),
        (["--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/db"], ["No database driver", "pip install"]),
        (["--envs", "MinAtar/Breakout-v9"], ["Unknown env id 'MinAtar/Breakout-v9'", "MinAtar/Breakout-v1"]),
        (["--set", "learning_rate=abc"], ["learning_rate='abc'", "lin_<float>"]),
        (["--set", "target_update_interval=2.5"], ["target_update_interval=2.5", "must be an integer"]),
    ],
)
def test_sweep_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails, as without the driver (the test extra installs it)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    args = tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "t")
    line = one_line_error(capsys, args + extra, "sweep")
    for word in words:
        assert word in line, line
    assert SECRET not in line


def test_sweep_and_report_with_an_unwritable_out_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_error(capsys, [*tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db"), "--out", str(blocker)], "sweep")
    assert f"--out {blocker}" in line and "cannot write run folders" in line
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "t", "--out", str(blocker / "r")], "report")
    assert "does not exist" in line or str(blocker) in line


def test_sweep_refuses_bad_fixed_values_before_the_study_exists(tmp_path, capsys):
    db = tmp_path / "s.db"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}", "--set", "learning_rate=abc"), "sweep")
    assert "learning_rate='abc'" in line
    assert not db.exists() and not (tmp_path / "runs").exists()
    for fixed in ({"learning_rate": float("nan")}, {"batch_size": None}, {"optimize_memory_usage": "yes"}, {"gamma": "0.9x"}):
        with pytest.raises(ValueError, match=list(fixed)[0]):
            SweepSpec(envs=[ENV_ID], fixed=fixed, storage=f"sqlite:///{db}").validate()
    spec = SweepSpec(envs=[ENV_ID], fixed={"buffer_size": 1e4, "learning_rate": "lin_1e-4"}, storage=f"sqlite:///{db}")
    spec.validate()
    assert spec.fixed["buffer_size"] == 10_000 and isinstance(spec.fixed["buffer_size"], int)


@pytest.mark.parametrize("setting, name", [("max_grad_norm=-1", "max_grad_norm"), ("tau=2", "tau"), ("batch_size=0", "batch_size"),
                                           ("train_freq=0", "train_freq"), ("gradient_steps=0", "gradient_steps")])  # fmt: skip
def test_sweep_set_out_of_range_is_one_line_before_the_study(tmp_path, capsys, setting, name):
    db = tmp_path / "s.db"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}", "--set", setting), "sweep")
    assert name in line and "must be" in line
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_study_settings_can_be_replaced_until_a_trial_completes(tmp_path, capsys):
    """A study whose settings completed no trial (e.g. a value that made every trial fail) takes corrected settings,
    with a warning; once a trial completed, other settings are refused."""

    def spec(**fixed):
        return SweepSpec(envs=[ENV_ID], fixed=fixed, storage=f"sqlite:///{tmp_path}/s.db", study="t", out_dir=str(tmp_path / "runs"))

    study = open_study(spec(learning_starts=5))  # e.g. a value that made every trial fail
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    corrected = open_study(spec(learning_starts=7))
    assert corrected.user_attrs["training_config"]["fixed"] == {"learning_starts": 7}
    assert "replaced by the given ones" in capsys.readouterr().err
    corrected.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0))
    with pytest.raises(ValueError, match="other training settings"):  # a study with results stays protected
        open_study(spec(learning_starts=9))


@pytest.mark.slow
def test_sweep_on_a_full_disk_is_one_line_and_the_cell_is_retried(tmp_path, monkeypatch, capsys):
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


# ----------------------------------------------------------------------------- ALE ids, run folder names, idle workers, the replay's gamma


def test_sweep_accepts_ale_ids_before_ale_py_is_imported(fresh_registry, tmp_path):
    with pytest.raises(gym.error.Error):
        gym.spec("ALE/Pong-v5")  # the fixture bites
    spec = SweepSpec(envs=["ALE/Pong-v5", "PongNoFrameskip-v4"], algos=["rainbow", "qrdqn"], storage=f"sqlite:///{tmp_path}/s.db")
    spec.validate()


def test_sweep_run_folders_use_the_zoo_env_slug(tmp_path):
    """Sweep run folders are named like rl_zoo3's (logs/<algo>/MinAtar-Breakout-v1_1, tests/test_hub.py's zoo_run);
    a study folder that already holds the underscore slug of older sweeps (MinAtar_Breakout-v1) keeps it."""
    spec = SweepSpec(envs=[ENV_ID, "ALE/Pong-v5"], algos=["dqn"], bottlenecks=["gap"], storage=f"sqlite:///{tmp_path}/s.db",
                     out_dir=str(tmp_path / "runs"), study="st")  # fmt: skip
    spec.validate()
    dirs = {c["env"]: sweep_spec.run_dir_for(spec, c) for c in spec.cells()}
    assert dirs[ENV_ID].parent == tmp_path / "runs" / "st" / ENV_NAME == tmp_path / "runs" / "st" / "MinAtar-Breakout-v1"
    assert dirs["ALE/Pong-v5"].parent.name == "ALE-Pong-v5"
    legacy = tmp_path / "runs" / "st" / "MinAtar_Breakout-v1"
    legacy.mkdir(parents=True)
    spec.validate()
    assert sweep_spec.run_dir_for(spec, spec.cells()[0] if spec.cells()[0]["env"] == ENV_ID else spec.cells()[1]).parent == legacy


def test_idle_worker_leaves_a_finished_grid_within_seconds(tmp_path, monkeypatch):
    """A worker with nothing left to start polls every IDLE_POLL_S (not every 30 s heartbeat) and exits once the
    last running cell, another worker's, completes."""
    spec = SweepSpec(envs=[ENV_ID], algos=["dqn"], bottlenecks=["gap"], storage=f"sqlite:///{tmp_path}/s.db", study="idle",
                     out_dir=str(tmp_path / "runs"))  # fmt: skip
    assert spec.heartbeat_interval == 30
    study = open_study(spec)
    (cell,) = spec.cells()
    study.enqueue_trial(cell)
    other = study.ask()  # another worker's running trial
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        study.tell(other, 1.0)  # the other worker finishes while this one waits

    monkeypatch.setattr(sweep_workers.time, "sleep", sleep)
    assert sweep_workers.run_worker(spec, progress=False, wait=True) == 0  # trained nothing, left the finished grid
    assert slept == [sweep_workers.IDLE_POLL_S] and sweep_workers.IDLE_POLL_S <= 2


def test_sweep_gives_frame_replay_buffer_the_sections_gamma(tmp_path):
    """The sweep builds the Zoo section's FrameReplayBuffer with the section's gamma."""
    from sb3_gap.sweep import SweepSpec
    from sb3_gap.sweep.cell import resolve_run

    section = dict(policy="CnnPolicy", buffer_size=200, learning_starts=100, gamma=0.5, replay_buffer_class="FrameReplayBuffer",
                   replay_buffer_kwargs="dict(n_steps=3)")  # fmt: skip
    (tmp_path / "dqn.yml").write_text(yaml.safe_dump({"MinAtar/Breakout-v1": section}))
    spec = SweepSpec(envs=["MinAtar/Breakout-v1"], algos=["dqn"], bottlenecks=["gap"], seeds=1, steps=200, eval_freq=100,
                     storage=f"sqlite:///{tmp_path / 's.db'}", study="t", out_dir=str(tmp_path / "runs"), conf_dir=str(tmp_path))  # fmt: skip
    _, kwargs, _, _ = resolve_run(spec, spec.cells()[0])
    assert kwargs["replay_buffer_kwargs"] == {"n_steps": 3, "gamma": 0.5}


# ----------------------------------------------------------------------------- report arguments: --reference, --gamma, --reps; a full disk


@pytest.fixture
def finished_study(tmp_path):
    """A sweep study whose one cell has a COMPLETE trial (recorded directly, nothing trained)."""
    url = f"sqlite:///{tmp_path}/s.db"
    spec = SweepSpec(envs=[ENV_ID], algos=["dqn"], bottlenecks=["gap"], storage=url, study="s", out_dir=str(tmp_path / "runs"))
    study = open_study(spec)
    for cell in spec.cells():
        distributions = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in cell.items()}
        study.add_trial(optuna.trial.create_trial(params=cell, distributions=distributions, value=2.0, user_attrs={"wall_s": 60.0}))
    return url


@pytest.mark.parametrize("content, words", [(b"{not json", "is not JSON"), (b"[1, 2]", "another shape"), (None, "does not exist")])
def test_report_reference_that_is_not_json_names_the_file(tmp_path, capsys, content, words):
    db = tmp_path / "s.db"
    open_study(SweepSpec(envs=[ENV_ID], storage=f"sqlite:///{db}", study="s", out_dir=str(tmp_path / "runs")))
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_bytes(content)
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r"),
                                   "--reference", str(ref)], "report")  # fmt: skip
    assert f"--reference {ref}" in line and words in line


@pytest.mark.parametrize("pair", ["[NaN, 10]", "[0, Infinity]", "[true, 10]"])
def test_report_reference_scores_must_be_two_finite_numbers(finished_study, tmp_path, capsys, pair):
    ref = tmp_path / "ref.json"
    ref.write_text(f'{{"{ENV_ID}": {pair}}}')
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--reference", str(ref)],
                          "report")  # fmt: skip
    assert str(ref) in line and "two finite numbers" in line and ENV_ID in line
    assert not (tmp_path / "r" / "summary.md").exists()


@pytest.mark.parametrize("gamma", ["nan", "inf"])
def test_report_gamma_must_be_finite(finished_study, tmp_path, capsys, gamma):
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--gamma", gamma], "report")
    assert "--gamma" in line and "finite number" in line and gamma in line
    assert not (tmp_path / "r").exists()


def test_report_summary_names_the_gamma_used(finished_study, tmp_path):
    from sb3_gap.sweep.report import build_report

    summary = build_report([(finished_study, "s")], tmp_path / "r", gamma=0.5, reps=20).read_text()
    assert "below γ = 0.5," in summary and "γ = 1," not in summary


@pytest.mark.parametrize("reps", ["0", "-5"])
def test_report_reps_must_be_positive(finished_study, tmp_path, capsys, reps):  # noqa: F811 - the fixture
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--reps", reps], "report")
    assert "--reps" in line and "positive integer" in line and reps in line
    assert not (tmp_path / "r" / "summary.md").exists()
    from sb3_gap.sweep.report import build_report

    with pytest.raises(ValueError, match=r"reps .*must be a positive integer .*got 0"):
        build_report([(finished_study, "s")], tmp_path / "r2", reps=0)


def test_report_on_a_full_disk_is_one_line_and_writes_nothing(finished_study, tmp_path, monkeypatch, capsys):  # noqa: F811 - the fixture
    out = tmp_path / "r"
    disk_full_on(monkeypatch, "summary.md")
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(out), "--reps", "20"], "report")
    assert "No space left on device" in line and str(out / "summary.md") in line, line
    assert not (out / "summary.md").exists() and temp_files(out) == []


def test_workers_start_no_cell_of_the_next_seed_before_the_current_seeds_cells():
    """Two workers, the study of results/minatar_rr: when one seed-0 cell is left, both workers' next cell is it, never a
    seed-1 cell; while a seed has two cells left either may start (workers starting together rarely collide)."""
    import random

    from sb3_gap.sweep.cli import SWEEP_PRESETS
    from sb3_gap.sweep.workers import next_cell

    preset = SWEEP_PRESETS["minatar-rr"]
    spec = SweepSpec(**{k: v for k, v in preset.items() if k not in ("workers", "report", "description")})
    cells = {cell_key(c): c for c in spec.cells()}
    order = list(cells)
    last_of_seed_0 = order[3:]
    picks = {next_cell(last_of_seed_0, cells, random.Random(i)) for i in range(50)}
    assert picks == {order[3]} and cells[order[3]]["seed"] == 0
    assert {next_cell(order, cells, random.Random(i)) for i in range(50)} == {order[0], order[1]}
