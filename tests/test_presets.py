"""The paper's experiments as presets, the replay-ratio axis and the dry run."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from sb3_gap.envs.protocols import protocol_for
from sb3_gap.sweep import SweepSpec
from sb3_gap.sweep.cell import build_model, resolve_run
from sb3_gap.sweep.cli import main
from sb3_gap.zoo_config import resolve_section

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, **overrides) -> SweepSpec:
    fields = dict(
        envs=["MinAtar/Breakout-v1"],
        algos=["dqn"],
        encoders=["minatar"],
        bottlenecks=["gap"],
        steps=216,
        eval_freq=216,
        eval_episodes=1,
        final_evals=1,
        fixed=dict(buffer_size=500, learning_starts=16),
        storage=f"sqlite:///{tmp_path / 'sweep.db'}",
        study="presets",
        out_dir=str(tmp_path / "runs"),
        save_models=False,
    )
    fields.update(overrides)
    return SweepSpec(**fields)


# ----------------------------------------------------------------------------- replay ratio
@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "rainbow"])
def test_replay_ratio_1_makes_4x_the_updates_of_0_25(tmp_path, algo):
    """replay_ratio sets train_freq/gradient_steps (Dopamine's period 4 = 0.25); the target period stays in env steps."""
    spec = _spec(tmp_path, algos=[algo], hyperparams={"replay_ratio": [0.25, 1]})
    spec.validate()
    updates = {}
    for cell in spec.cells():
        _, kwargs, _, _ = resolve_run(spec, cell)
        env = protocol_for(cell["env"]).make_env(cell["env"], 1, 0, True)
        model = build_model(spec, cell, env)
        model.learn(spec.steps)
        ratio = cell["hp:replay_ratio"]
        updates[ratio] = model._n_updates
        assert (kwargs["train_freq"], kwargs["gradient_steps"]) == {0.25: (4, 1), 1: (1, 1)}[ratio]
        assert model.target_update_interval == resolve_section(algo, cell["env"]).algo_kwargs["target_update_interval"]
        env.close()
    assert updates[0.25] == 50 and updates[1] == 200  # trains after each rollout once past learning_starts=16


def test_replay_ratio_in_the_zoo_yaml_for_the_sweep_and_rl_zoo3(tmp_path):
    """A Zoo section's replay_ratio reaches the sweep and rl_zoo3 as train_freq/gradient_steps; --set replaces it."""
    sections = yaml.safe_load((ROOT / "zoo_configs" / "dqn.yml").read_text())
    section = {k: v for k, v in sections["MinAtar/Breakout-v1"].items() if k not in ("train_freq", "gradient_steps")}
    (tmp_path / "dqn.yml").write_text(yaml.safe_dump({"MinAtar/Breakout-v1": {**section, "replay_ratio": 2}}))
    spec = _spec(tmp_path, conf_dir=str(tmp_path))
    spec.validate()
    cell = spec.cells()[0]
    assert {k: resolve_run(spec, cell)[1][k] for k in ("train_freq", "gradient_steps")} == {"train_freq": 1, "gradient_steps": 2}
    spec = _spec(tmp_path, conf_dir=str(tmp_path), fixed=dict(buffer_size=500, replay_ratio=0.5))
    assert {k: resolve_run(spec, cell)[1][k] for k in ("train_freq", "gradient_steps")} == {"train_freq": 2, "gradient_steps": 1}

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    manager = ExperimentManager(argparse.Namespace(), "dqn", "MinAtar/Breakout-v1", str(tmp_path), config=str(tmp_path / "dqn.yml"))
    hyperparams = manager._preprocess_hyperparams(manager.read_hyperparameters()[0])[0]
    assert "replay_ratio" not in hyperparams and (hyperparams["train_freq"], hyperparams["gradient_steps"]) == (1, 2)
    manager = ExperimentManager(argparse.Namespace(), "dqn", "MinAtar/Breakout-v1", str(tmp_path),
                                hyperparams={"replay_ratio": 0.25, "n_envs": 2}, config=str(ROOT / "zoo_configs" / "dqn.yml"))  # fmt: skip
    hyperparams = manager._preprocess_hyperparams(manager.read_hyperparameters()[0])[0]
    assert (hyperparams["train_freq"], hyperparams["gradient_steps"]) == (2, 1)  # 2 envs: 4 env steps per update


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--set", "replay_ratio=0"], ["replay_ratio=0", "positive number", "0.25"]),
        (["--hyperparams", "replay_ratio=0.25,abc"], ["replay_ratio='abc'", "positive number"]),
        (["--set", "replay_ratio=0.123456789"], ["replay_ratio=0.123456789", "p/q"]),
        (["--set", "replay_ratio=1", "train_freq=4"], ["replay_ratio", "['train_freq']", "one or the other"]),
        (["--algo", "ppo", "--set", "replay_ratio=1"], ["'ppo'", "['dqn', 'qrdqn', 'rainbow']"]),
    ],
)
def test_bad_replay_ratio_is_one_line(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        main(["--envs", "MinAtar/Breakout-v1", "--storage", f"sqlite:///{tmp_path}/x.db", "--out", str(tmp_path), *argv])
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert not (tmp_path / "x.db").exists()


# ----------------------------------------------------------------------------- the paper's presets
PAPER_20 = ("Asterix SpaceInvaders Breakout Pong Qbert DemonAttack Seaquest WizardOfWor RoadRunner BeamRider Frostbite "
            "CrazyClimber Assault Krull Boxing Jamesbond Kangaroo UpNDown Gopher Hero").split()  # paper appendix A  # fmt: skip
PAPER_100K = ("Alien Amidar Assault Asterix BankHeist BattleZone Boxing Breakout ChopperCommand CrazyClimber DemonAttack "
              "Freeway Frostbite Gopher Hero Jamesbond Kangaroo Krull KungFuMaster MsPacman Pong PrivateEye Qbert RoadRunner "
              "Seaquest UpNDown").split()  # paper appendix A  # fmt: skip
DOPAMINE_60 = ("AirRaid Alien Amidar Assault Asterix Asteroids Atlantis BankHeist BattleZone BeamRider Berzerk Bowling Boxing "
               "Breakout Carnival Centipede ChopperCommand CrazyClimber DemonAttack DoubleDunk ElevatorAction Enduro "
               "FishingDerby Freeway Frostbite Gopher Gravitar Hero IceHockey Jamesbond JourneyEscape Kangaroo Krull "
               "KungFuMaster MontezumaRevenge MsPacman NameThisGame Phoenix Pitfall Pong Pooyan PrivateEye Qbert Riverraid "
               "RoadRunner Robotank Seaquest Skiing Solaris SpaceInvaders StarGunner Tennis TimePilot Tutankham UpNDown "
               "Venture VideoPinball WizardOfWor YarsRevenge Zaxxon").split()  # google/dopamine dopamine/colab/utils.py ALL_GAMES  # fmt: skip
PROCGEN_16 = "Bigfish Bossfight Caveflyer Chaser Climber Coinrun Dodgeball Fruitbot Heist Jumper Leaper Maze Miner Ninja Plunder Starpilot".split()
FIGURES = ["Fig. 6 left", "Fig. 6 centre left", "Fig. 6 centre right", "Fig. 6 right", "Fig. 2 right", "Fig. 4", "Fig. 5 left", "Fig. 8",
           "Fig. 10 (1/4)", "Fig. 10 (2/4)", "Fig. 10 (3/4)", "Fig. 10 (4/4)", "Fig. 12", "Fig. 11 left", "Fig. 11 right"]  # fmt: skip


def _games(preset: str) -> set[str]:
    from sb3_gap.sweep.cli import SWEEP_PRESETS

    return {env.split("/")[1].rsplit("-", 1)[0] for env in SWEEP_PRESETS[preset]["envs"]}


def test_presets_hold_the_papers_game_lists():
    assert len(set(PAPER_20)) == 20 and len(set(PAPER_100K)) == 26 and len(set(DOPAMINE_60)) == 60
    twenty = [p for p in ("atari-width-scaling", "atari-replay-ratio", "atari-nature-cnn", "atari-depth-width", "atari-gmp-vs-gap")]
    assert all(_games(p) == set(PAPER_20) for p in twenty)
    assert _games("atari-60-games") == set(DOPAMINE_60)
    assert _games("atari100k-der") == set(PAPER_100K)
    assert _games("procgen-rainbow") == set(PROCGEN_16)


def test_list_presets_prints_each_experiment_with_its_figure_and_size(capsys):
    main(["--list-presets"])
    out = capsys.readouterr().out
    for figure in FIGURES:
        assert sum(f"  {figure}:" in line for line in out.splitlines()) == 1, figure
    line = next(line for line in out.splitlines() if line.startswith("atari-width-scaling "))
    assert "800 runs" in line and "40,000,000,000 env steps" in line
    assert len(out.splitlines()) >= 3 + 12


def test_dry_run_prints_size_and_estimate_and_starts_nothing(tmp_path, monkeypatch, capsys):
    import sb3_gap.sweep.cli as cli
    import sb3_gap.sweep.dryrun as dryrun

    monkeypatch.setattr(cli, "run_sweep", lambda *a, **k: pytest.fail("must not start"))
    probed = []
    monkeypatch.setattr(dryrun, "probe", lambda spec, cell: probed.append(cell) or (0.002, 0.02))
    main(["--preset", "atari-width-scaling", "--dry-run", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "runs:              800" in out and "40,000,000,000 (50,000,000 per run)" in out
    assert "gradient updates:  9,996,000,000" in out  # 800 x (50M - 20,000 learning starts) / 4
    assert "complete already:  0 of 800" in out
    assert probed == [dict(probed[0], width_scale=8, bottleneck="flatten")]  # the most expensive cell
    hours = (800 * 50_000_000 * 0.002 + 9_996_000_000 * 0.02) / 3600
    assert f"estimate here:     {hours:,.1f} h with 1 worker(s)" in out and "estimate on a GPU" in out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_counts_complete_cells_times_a_real_probe_and_writes_nothing(tmp_path, capsys):
    import hashlib

    import optuna

    from sb3_gap.sweep import open_study

    spec = _spec(tmp_path, bottlenecks=["flatten", "gap"], hyperparams={"replay_ratio": [0.25, 1]})
    study = open_study(spec)
    cell = spec.cells()[0]
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in spec.search_space().items()}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0, params=cell, distributions=distributions))
    db = tmp_path / "sweep.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest(), sorted(tmp_path.rglob("*"))
    argv = ["--envs", "MinAtar/Breakout-v1", "--algo", "dqn", "--encoders", "minatar", "--hyperparams", "replay_ratio=0.25,1",
            "--set", "buffer_size=500", "learning_starts=16", "--steps", "216", "--eval-freq", "216", "--eval-episodes", "1",
            "--final-evals", "1", "--storage", spec.storage, "--study", spec.study, "--out", spec.out_dir, "--dry-run"]  # fmt: skip
    main(argv)
    out = capsys.readouterr().out
    assert "runs:              4" in out and "gradient updates:  500" in out  # 2 x 50 + 2 x 200
    assert "complete already:  1 of 4" in out
    assert "ms per env step" in out and "hp:replay_ratio=1" in out  # probed: the cell with the most updates
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(tmp_path.rglob("*"))) == before


@pytest.mark.parametrize(
    "algo, kwargs, expected",
    [
        ("rainbow", {"train_freq": 4}, 100_000 // 4 - 20_000 // 4),  # Rainbow's own learning_starts (20,000), not DQN's
        ("dqn", {"train_freq": 4}, 100_000 // 4 - 100 // 4),
        ("dqn", {"train_freq": 4, "gradient_steps": -1, "learning_starts": 1_000}, (100_000 // 4 - 1_000 // 4) * 4),
        ("dqn", {"train_freq": (8, "step"), "learning_starts": 0}, 100_000 // 8),
        ("dqn", {"train_freq": (1, "episode")}, None),  # depends on episode lengths: not counted
        ("ppo", {"n_steps": 128, "n_epochs": 4, "batch_size": 256}, (100_000 // 128) * 4),
    ],
)
def test_dry_run_counts_updates_with_each_algorithms_own_defaults(monkeypatch, algo, kwargs, expected):
    import sb3_gap.sweep.cell as cell
    from sb3_gap.sweep.dryrun import cell_updates

    monkeypatch.setattr(cell, "resolve_run", lambda spec, params: (None, dict(kwargs), {}, {}))
    spec = _spec(Path("/nonexistent"), algos=[algo], steps=100_000)
    assert cell_updates(spec, spec.cells()[0]) == expected


@pytest.mark.slow
def test_dry_run_of_ppo_probes_without_replay_settings(tmp_path, capsys):
    main(["--envs", "MinAtar/Breakout-v1", "--algos", "ppo", "--encoders", "minatar", "--steps", "1024", "--eval-freq", "1024",
          "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "runs"), "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert "ms per env step" in out and "gradient updates:  " in out
    assert not (tmp_path / "s.db").exists()


def test_dry_run_on_a_sqlite_file_that_is_not_a_study_is_one_line(tmp_path, capsys):
    import sqlite3

    other = tmp_path / "notes.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(SystemExit, match=r"sb3-gap sweep: error: --storage .*notes.db: not an Optuna study database \(no such table: studies\)"):
        main(["--envs", "MinAtar/Breakout-v1", "--algos", "dqn", "--storage", f"sqlite:///{other}", "--out", str(tmp_path / "runs"), "--dry-run"])


def _all_presets() -> list[str]:
    from sb3_gap.sweep.cli import SWEEP_PRESETS

    return list(SWEEP_PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("name", _all_presets())
def test_every_preset_resolves_and_one_cell_trains(tmp_path, name):
    """Each preset's whole grid validates and resolves (env ids, encoders, bottlenecks, hyperparameters); one cell, the
    last one (smallest psi, last value of every axis), trains 32 steps with a tiny buffer (--steps/--set overrides)."""
    from sb3_gap.sweep.cli import PRESET_CLI_KEYS, SWEEP_PRESETS
    from sb3_gap.zoo_config import resolve_section

    fields = {k: v for k, v in SWEEP_PRESETS[name].items() if k not in PRESET_CLI_KEYS}
    small = dict(buffer_size=500, learning_starts=24)
    fields.update(steps=32, eval_freq=32, seeds=[0], storage=f"sqlite:///{tmp_path}/s.db", out_dir=str(tmp_path), fixed={**fields["fixed"], **small})
    spec = SweepSpec(**fields)
    spec.validate()
    seen = set()
    for cell in spec.cells():
        config = tuple((k, v) for k, v in cell.items() if k != "env")
        if config not in seen:
            seen.add(config)
            resolve_run(spec, cell)
    cell = spec.cells()[-1]
    zoo_env = resolve_section(cell["algo"], cell["env"]).env
    env = protocol_for(cell["env"]).make_env(cell["env"], 1, 0, True, env_kwargs=zoo_env.get("env_kwargs"), env_wrapper=zoo_env.get("env_wrapper"))
    try:
        model = build_model(spec, cell, env)
        model.learn(spec.steps)
        assert model.num_timesteps == 32 and model._n_updates > 0
    finally:
        env.close()
    assert not (tmp_path / "s.db").exists()


def test_fig10_studies_share_no_cell_and_the_layer_norm_runs_are_labelled():
    """The four Fig. 10 presets' studies merge into one report: no cell (its grid parameters) is in two of them, so
    none replaces another's, and the LayerNorm runs' configuration says layer_norm=True."""
    from sb3_gap.sweep.cli import PRESET_CLI_KEYS, SWEEP_PRESETS
    from sb3_gap.sweep.runs import config_label
    from sb3_gap.sweep.spec import cell_key

    names = [name for name in SWEEP_PRESETS if name.startswith("atari-methods-")]
    assert len(names) == 4
    owner: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    for name in names:
        spec = SweepSpec(**{k: v for k, v in SWEEP_PRESETS[name].items() if k not in PRESET_CLI_KEYS})
        for cell in spec.cells():
            assert owner.setdefault(cell_key(cell), name) == name, f"{name} and {owner[cell_key(cell)]} share the cell {cell}"
            labels.setdefault(name, set()).add(config_label(cell))
    assert labels["atari-methods-layer-norm"] == {"rainbow impala flatten ×4 layer_norm=True"}
    assert "rainbow impala flatten ×4" in labels["atari-methods-architectures"]
