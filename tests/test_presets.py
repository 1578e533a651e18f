"""The paper's experiments as presets, the replay-ratio axis and the dry run (issue 24)."""

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


# ----------------------------------------------------------------------------- replay ratio (item 2)
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
