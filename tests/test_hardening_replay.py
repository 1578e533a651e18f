"""Hardening of the replay (issue 23, items 7 and 12).

7. ``FrameReplayBuffer`` takes the algorithm's ``gamma`` (where sb3_gap builds the model: the rl_zoo3 hook and the
   sweep; direct users must pass it for ``n_steps > 1``), and a loaded buffer whose ``n_steps``/``gamma`` differ
   from the model's is refused, as ``Rainbow.load_replay_buffer`` does.
12. Rainbow trains when ``learning_starts``/``train_freq`` are below ``n_steps`` and when resumed without its
    buffer: updates are skipped until a complete n-step transition exists, instead of raising inside ``learn``.

Each test names the item it covers; models are tiny and trained for a few dozen steps.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces
from stable_baselines3 import DQN

from sb3_gap.rainbow import Rainbow, rainbow_preset
from sb3_gap.replay import FrameReplayBuffer

TINY = dict(policy_kwargs=dict(net_arch=[8]), device="cpu", seed=0)


def frame_dqn(gamma: float, buffer_kwargs: dict | None = None) -> DQN:
    """A tiny DQN on CartPole replaying through FrameReplayBuffer (learning never starts: acting and storing only)."""
    return DQN("MlpPolicy", "CartPole-v1", buffer_size=200, learning_starts=10_000, gamma=gamma,
               replay_buffer_class=FrameReplayBuffer, replay_buffer_kwargs=buffer_kwargs, **TINY)  # fmt: skip


def zoo_manager(tmp_path: Path, section: dict, trained_agent: str = "", algo: str = "dqn"):
    """An rl_zoo3 ExperimentManager for CartPole-v1 with ``section`` as its YAML, sb3_gap's hook registered."""
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    config = tmp_path / f"{algo}.yml"
    base = dict(policy="MlpPolicy", n_timesteps=100, buffer_size=200, learning_starts=10_000, policy_kwargs="dict(net_arch=[8])")
    config.write_text(yaml.safe_dump({"CartPole-v1": {**base, **section}}))
    return ExperimentManager(argparse.Namespace(), algo, "CartPole-v1", str(tmp_path / "logs"), eval_freq=-1, device="cpu",
                             verbose=0, seed=0, config=str(config), trained_agent=trained_agent)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# 7. FrameReplayBuffer takes the algorithm's gamma; a loaded buffer with other n-step settings is refused
# ------------------------------------------------------------------------------------------------


def test_issue23_item7_buffer_without_gamma_refuses_n_steps():
    """Direct use: an n-step FrameReplayBuffer needs the algorithm's gamma (it used to discount with 0.99 silently)."""
    box, disc = spaces.Box(0, 255, (4, 6, 7), np.uint8), spaces.Discrete(2)
    no_gamma = FrameReplayBuffer(100, box, disc, n_steps=3)  # built (a model saved that way still loads to act) ...
    with pytest.raises(ValueError, match=r"FrameReplayBuffer\(n_steps=3\) needs gamma") as info:  # ... refused when fed
        no_gamma.add(*[np.zeros((1, *box.shape), np.uint8)] * 2, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    assert "\n" not in str(info.value) and no_gamma.pos == 0
    assert FrameReplayBuffer(100, box, disc, n_steps=3, gamma=0.5).gamma == 0.5
    one_step = FrameReplayBuffer(100, box, disc)  # 1-step: no discount inside the buffer, gamma not needed
    assert one_step.n_steps == 1 and one_step.gamma is None


def test_issue23_item7_zoo_buffer_takes_the_algorithms_gamma(tmp_path):
    """rl_zoo3 + sb3_gap hook: DQN's gamma 0.5 reaches an n-step FrameReplayBuffer (it stayed at 0.99)."""
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = zoo_manager(tmp_path, section).setup_experiment()
    assert isinstance(model.replay_buffer, FrameReplayBuffer)
    assert model.replay_buffer.n_steps == 3 and model.replay_buffer.gamma == 0.5
    # No gamma in the YAML: the algorithm's default (DQN: 0.99)
    section = dict(replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = zoo_manager(tmp_path, section).setup_experiment()
    assert model.replay_buffer.gamma == model.gamma == 0.99


def test_issue23_item7_zoo_buffer_gamma_other_than_the_algorithms_is_refused(tmp_path):
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3, gamma=0.99)")
    with pytest.raises(ValueError, match=r"replay_buffer_kwargs gamma=0.99 differs from the algorithm's gamma=0.5") as info:
        zoo_manager(tmp_path, section).setup_experiment()
    assert "\n" not in str(info.value)


def test_issue23_item7_sweep_buffer_takes_the_algorithms_gamma(tmp_path):
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


def test_issue23_item7_loaded_buffer_with_other_n_steps_or_gamma_is_refused(tmp_path):
    """Python API: sb3_gap.replay.load_replay_buffer refuses the buffer and keeps the model's own, as Rainbow does."""
    from sb3_gap.replay import load_replay_buffer

    source = frame_dqn(0.9, dict(n_steps=3, gamma=0.9))
    source.learn(30)
    source.save_replay_buffer(tmp_path / "rb")
    for model, words in (
        (frame_dqn(0.9), "n_steps: model 1, buffer 3"),
        (frame_dqn(0.5, dict(n_steps=3, gamma=0.5)), "gamma: model 0.5, buffer 0.9"),
    ):
        own = model.replay_buffer
        with pytest.raises(ValueError) as info:
            load_replay_buffer(model, tmp_path / "rb")
        assert words in str(info.value) and "\n" not in str(info.value)
        assert model.replay_buffer is own  # the model keeps its own buffer
    same = frame_dqn(0.9, dict(n_steps=3, gamma=0.9))
    load_replay_buffer(same, tmp_path / "rb")
    assert same.replay_buffer.pos == source.replay_buffer.pos > 0 and same.replay_buffer.gamma == 0.9


def test_issue23_item7_zoo_trained_agent_with_other_buffer_settings_is_refused(tmp_path):
    """rl_zoo3 --trained-agent loads replay_buffer.pkl next to the model: one saved with another gamma is refused."""
    source = frame_dqn(0.9, dict(n_steps=3, gamma=0.9))
    source.learn(30)
    (tmp_path / "agent").mkdir()
    source.save(tmp_path / "agent" / "CartPole-v1.zip")
    source.save_replay_buffer(tmp_path / "agent" / "replay_buffer.pkl")
    agent = str(tmp_path / "agent" / "CartPole-v1.zip")
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    with pytest.raises(ValueError, match=r"gamma: model 0.5, buffer 0.9"):
        zoo_manager(tmp_path, section, trained_agent=agent).setup_experiment()
    section = dict(gamma=0.9, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = zoo_manager(tmp_path, section, trained_agent=agent).setup_experiment()
    assert model.replay_buffer.pos == source.replay_buffer.pos > 0 and model.replay_buffer.gamma == 0.9


# ------------------------------------------------------------------------------------------------
# 12. Rainbow skips updates until a complete n-step transition exists
# ------------------------------------------------------------------------------------------------


def tiny_rainbow(**kwargs) -> Rainbow:
    base = dict(buffer_size=1000, batch_size=4, target_update_interval=100, **TINY)
    return Rainbow("MlpPolicy", "CartPole-v1", **{**base, **kwargs})


def test_issue23_item12_learning_starts_below_n_steps_trains():
    """learning_starts=1, train_freq=1, n_steps=10: the first 10 updates have nothing to sample; they are skipped."""
    model = tiny_rainbow(n_steps=10, learning_starts=1, train_freq=1)
    model.learn(50)
    # A transition gets its complete 10-step window when its 11th step is added (or its episode ends first).
    assert 0 < model._n_updates < 49
    assert model._n_updates + model._n_skipped_updates == 49  # one train() call per step after learning_starts


def test_issue23_item12_der_preset_with_small_learning_starts_trains():
    kwargs = {**rainbow_preset("der"), "learning_starts": 2}
    model = tiny_rainbow(**kwargs)
    assert model.n_steps == 10 and model.train_freq.frequency == 1
    model.learn(40)
    assert model._n_updates > 0 and model._n_skipped_updates > 0


def test_issue23_item12_resumed_without_its_buffer_trains(tmp_path):
    """A loaded model resumed without its replay: num_timesteps > learning_starts but the buffer starts empty."""
    model = tiny_rainbow(n_steps=3, learning_starts=10, train_freq=1)
    model.learn(30)
    model.save(tmp_path / "m")
    loaded = Rainbow.load(tmp_path / "m", env=gym.make("CartPole-v1"), device="cpu")
    assert loaded.num_timesteps == 30 and loaded.replay_buffer.size() == 0
    before = loaded._n_updates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.learn(20, reset_num_timesteps=False)
    assert loaded._n_updates > before and loaded._n_skipped_updates > 0


def test_issue23_item12_nothing_skipped_when_data_exists():
    """learning_starts >= n_steps (every preset, every study): no update is skipped, the counts are SB3's."""
    model = tiny_rainbow(n_steps=3, learning_starts=20, train_freq=1)
    model.learn(40)
    assert model._n_skipped_updates == 0 and model._n_updates == 20
