"""Sparse training (sb3_gap.sparse): cubic schedule, GMP density, RigL, Adam, save/load, every algorithm."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.envs import FakeImageEnv

from sb3_gap import ConvExtractor, parameter_report, policy_kwargs
from sb3_gap.params import find_extractor
from sb3_gap.rainbow import Rainbow
from sb3_gap.sparse import SparseConfig, cubic_sparsity, erk_densities, rigl_drop_fraction

SPACE = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)  # MinAtar-sized: 16·10·10 = 1,600 inputs to ψ


def extractor(**kw) -> ConvExtractor:
    return ConvExtractor(SPACE, encoder="minatar", bottleneck="sparse", **kw)


def train(ext: ConvExtractor, steps: int, optimizer: th.optim.Optimizer | None = None) -> th.optim.Optimizer:
    """``steps`` Adam updates of a random regression through the extractor."""
    opt = optimizer or th.optim.Adam(ext.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        ext(th.rand(4, *SPACE.shape)).pow(2).mean().backward()
        opt.step()
    return opt


def connection_density(ext: ConvExtractor) -> float:
    w = ext.bottleneck.connection.weight
    return int(w.count_nonzero()) / w.numel()


def test_cubic_schedule_matches_zhu_gupta():
    s_f, t0, t1 = 0.9, 100, 1100
    for t in (0, 99, 100, 101, 350, 600, 1099, 1100, 5000):
        expected = 0.0 if t < t0 else s_f if t > t1 else s_f + (0.0 - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3
        assert cubic_sparsity(t, s_f, t0, t1) == pytest.approx(expected, abs=1e-12)


def test_gmp_follows_the_schedule_and_reaches_target_density():
    ext = extractor(sparsity=0.9, sparse_method="gmp", prune_start=2, prune_end=10, prune_every=2)
    assert connection_density(ext) == 1.0  # GMP starts dense
    train(ext, 6)  # pruned after updates 2, 4, 6
    assert 1 - connection_density(ext) == pytest.approx(cubic_sparsity(6, 0.9, 2, 10), abs=1e-3)
    train(ext, 7)  # past prune_end = 10
    assert int(ext.bottleneck.trainer.updates) == 13
    assert connection_density(ext) == pytest.approx(0.1, abs=0.005)
    assert parameter_report(ext).effective_connection == int(ext.bottleneck.connection.weight_mask.sum())


def test_rigl_keeps_density_while_the_mask_changes():
    ext = extractor(sparsity=0.9, sparse_method="rigl", rigl_interval=2, rigl_end=100)
    mask0 = ext.bottleneck.connection.weight_mask.clone()
    density0 = mask0.mean().item()
    assert density0 == pytest.approx(0.1, abs=1e-3)
    train(ext, 6)
    mask = ext.bottleneck.connection.weight_mask
    assert mask.mean().item() == density0
    assert not th.equal(mask, mask0)
    assert connection_density(ext) <= density0  # masked weights are zero (grown ones may still be 0)


def test_rigl_drop_fraction_is_cosine_decayed():
    assert rigl_drop_fraction(0, 0.2, 1000) == pytest.approx(0.2)
    assert rigl_drop_fraction(500, 0.2, 1000) == pytest.approx(0.1)
    assert rigl_drop_fraction(1000, 0.2, 1000) == 0.0


@pytest.mark.parametrize("method", ["gmp", "rigl", "static"])
def test_masked_weights_never_come_back_under_adam(method):
    ext = extractor(sparsity=0.8, sparse_method=method, prune_start=0, prune_end=4, prune_every=1, rigl_interval=3, rigl_end=50)
    opt = th.optim.AdamW(ext.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(4):
        train(ext, 3, opt)
        w, mask = ext.bottleneck.connection.weight, ext.bottleneck.connection.weight_mask
        assert th.all(w[mask == 0] == 0)
        state = opt.state[w]
        assert th.all(state["exp_avg"][mask == 0] == 0) and th.all(state["exp_avg_sq"][mask == 0] == 0)
    assert connection_density(ext) <= 0.2 + 1e-6


def test_scope_all_uses_erk_over_phi_and_psi():
    ext = extractor(sparsity=0.9, sparse_scope="all")
    layers = ext.bottleneck.trainer.layers
    assert isinstance(layers[0], th.nn.Conv2d) and layers[-1] is ext.bottleneck.connection
    total = sum(m.weight.numel() for m in layers)
    kept = sum(int(m.weight_mask.sum()) for m in layers)
    assert kept / total == pytest.approx(0.1, abs=0.005)
    densities = erk_densities([tuple(m.weight.shape) for m in layers], 0.1)
    assert densities[0] > densities[-1]  # the small convolution is kept denser than the big connection


def test_backward_without_step_does_not_advance_the_schedule():
    ext = extractor(sparse_method="gmp", prune_end=10)
    ext(th.rand(2, *SPACE.shape)).sum().backward()
    assert int(ext.bottleneck.trainer.updates) == 0


def _dqn(**sparse):
    env = FakeImageEnv(screen_height=10, screen_width=10, n_channels=4)
    kw = policy_kwargs(encoder="minatar", bottleneck="sparse", **sparse)
    return DQN("CnnPolicy", env, buffer_size=100, learning_starts=0, batch_size=4, train_freq=1, policy_kwargs=kw, seed=0)


@pytest.mark.slow
def test_save_load_of_a_half_pruned_model_resumes_pruning(tmp_path):
    model = _dqn(sparsity=0.9, sparse_method="gmp", prune_start=0, prune_end=40, prune_every=2)
    model.learn(20)
    ext = find_extractor(model)
    updates, mask = int(ext.bottleneck.trainer.updates), ext.bottleneck.connection.weight_mask.clone()
    assert 0 < updates < 40 and 0.1 < mask.mean().item() < 1.0  # half-pruned
    model.save(tmp_path / "m.zip")
    loaded = DQN.load(tmp_path / "m.zip")
    lext = find_extractor(loaded)
    assert int(lext.bottleneck.trainer.updates) == updates
    assert th.equal(lext.bottleneck.connection.weight_mask, mask)
    assert th.equal(lext.bottleneck.connection.weight, ext.bottleneck.connection.weight)
    loaded.set_env(model.get_env())
    loaded.learn(40, reset_num_timesteps=False)
    assert int(lext.bottleneck.trainer.updates) > 40
    assert connection_density(lext) == pytest.approx(0.1, abs=0.005)


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo", "rainbow"])
def test_every_algorithm_prunes_from_policy_kwargs_alone(algo):
    env = FakeImageEnv(screen_height=10, screen_width=10, n_channels=4)
    kw = policy_kwargs(encoder="minatar", bottleneck="sparse", sparse_method="gmp", prune_start=0, prune_end=4, prune_every=1)
    common = dict(policy_kwargs=kw, seed=0)
    if algo == "ppo":
        model = PPO("CnnPolicy", env, n_steps=8, batch_size=4, n_epochs=2, **common)  # 2 × 2 minibatch updates
    else:
        cls = {"dqn": DQN, "qrdqn": QRDQN, "rainbow": Rainbow}[algo]
        # learning_starts > n_steps: Rainbow samples complete 3-step transitions only.
        model = cls("CnnPolicy", env, buffer_size=100, learning_starts=4, batch_size=4, train_freq=1, **common)
    model.learn(8 if algo == "ppo" else 12)
    ext = find_extractor(model)
    assert int(ext.bottleneck.trainer.updates) >= 4
    assert connection_density(ext) == pytest.approx(0.1, abs=0.005)
    assert parameter_report(model).effective_connection == int(ext.bottleneck.connection.weight_mask.sum())


def test_target_network_receives_the_zeros():
    model = _dqn(sparsity=0.5, sparse_method="gmp", prune_end=2, prune_every=1)
    model.target_update_interval = 4
    model.learn(8)
    online, target = find_extractor(model.q_net), find_extractor(model.q_net_target)
    mask = online.bottleneck.connection.weight_mask
    assert th.all(target.bottleneck.connection.weight[mask == 0] == 0)
    assert int(target.bottleneck.trainer.updates) == 0  # no optimizer holds the target's weights


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sparse_method="prune"), r"Unknown sparse_method 'prune'; valid choices: \['static', 'gmp', 'rigl'\]"),
        (dict(sparse_scope="psi"), r"Unknown sparse_scope 'psi'; valid choices: \['bottleneck', 'all'\]"),
        (dict(sparse_method="gmp"), r"sparse_method='gmp' needs prune_end"),
        (dict(sparse_method="rigl"), r"sparse_method='rigl' needs rigl_end"),
        (dict(sparse_method="gmp", prune_start=5, prune_end=5), r"prune_end=5 must exceed prune_start=5"),
        (dict(rigl_drop=1.5), r"rigl_drop must be a float in \(0, 1\), got 1.5"),
        (dict(prune_every=0), r"prune_every must be a positive integer \(gradient updates\), got 0"),
    ],
)
def test_errors_name_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        policy_kwargs(bottleneck="sparse", **kwargs)


def test_options_belong_to_sparse_only():
    with pytest.raises(ValueError, match=r"sparse_method='gmp' only applies to bottleneck \['sparse'\], not 'gap'"):
        policy_kwargs(bottleneck="gap", sparse_method="gmp")
    assert SparseConfig.build(prune_end=np.int64(10)).prune_end == 10


def test_models_saved_with_the_old_static_mask_still_load():
    old = extractor(sparsity=0.75).state_dict()
    old["bottleneck.connection.mask"] = old.pop("bottleneck.connection.weight_mask")
    del old["bottleneck.trainer.updates"]
    new = extractor(sparsity=0.75)
    new.load_state_dict(old)
    assert th.equal(new.bottleneck.connection.weight_mask, old["bottleneck.connection.mask"])
    assert int(new.bottleneck.trainer.updates) == 0
