"""Hardening of the replay (issue 23, item 12).

12. Rainbow trains when ``learning_starts``/``train_freq`` are below ``n_steps`` and when resumed without its
    buffer: updates are skipped until a complete n-step transition exists, instead of raising inside ``learn``.

Each test names the item it covers; models are tiny and trained for a few dozen steps.
"""

from __future__ import annotations

import warnings

import gymnasium as gym

from sb3_gap.rainbow import Rainbow, rainbow_preset

TINY = dict(policy_kwargs=dict(net_arch=[8]), device="cpu", seed=0)


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
