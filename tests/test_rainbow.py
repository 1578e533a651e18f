"""Rainbow: C51 projection, DQN equivalence, learning on CartPole, noise, switches, save/load, errors, and updates
skipped until a complete n-step transition exists."""

from __future__ import annotations

import inspect
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from helpers import TINY_MLP, one_line_error, tiny_rainbow, tiny_sweep_args  # tests/ is on sys.path (pytest's rootdir-relative import)
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBufferSamples
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

import sb3_gap
from sb3_gap import Rainbow, policy_kwargs
from sb3_gap.hub import safe
from sb3_gap.rainbow import PRESETS, NoisyLinear, categorical_projection, rainbow_preset
from sb3_gap.rainbow.buffers import RainbowReplayBuffer, RainbowSamples

# ---------------------------------------------------------------------------------------------
# C51 projection (Bellemare et al. 2017, Eq. 7)


def projection_reference(probs, rewards, discounts, dones, support):
    """Brute-force Algorithm 1 of Bellemare et al. 2017, one atom at a time (floor/ceil form)."""
    n = len(support)
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (n - 1)
    out = np.zeros((len(rewards), n))
    for b in range(len(rewards)):
        for j in range(n):
            tz = rewards[b] + (0.0 if dones[b] else discounts[b]) * support[j]
            tz = min(max(tz, v_min), v_max)
            pos = (tz - v_min) / dz
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            if lo == hi:  # lands exactly on an atom
                out[b, lo] += probs[b, j]
            else:
                out[b, lo] += probs[b, j] * (hi - pos)
                out[b, hi] += probs[b, j] * (pos - lo)
    return out


def project(probs, rewards, discounts, dones, support):
    t = lambda x: th.as_tensor(np.asarray(x), dtype=th.float32)  # noqa: E731
    return categorical_projection(t(probs), t(rewards), t(discounts), t(dones), t(support)).numpy()


def test_projection_hand_computed():
    support = [-1.0, 0.0, 1.0]
    p = [[0.2, 0.5, 0.3]] * 4
    # Tz = [-0.5, 0.5, 1.5 -> 1]: mass splits half/half between neighbours, the top atom is clipped.
    # terminal r=0.3: all mass at 0.3; r=-5: all clipped to v_min; r=0.25, γ=0.5: Tz = [-0.25, 0.25, 0.75].
    got = project(p, [0.5, 0.3, -5.0, 0.25], [1.0, 0.99, 1.0, 0.5], [0, 1, 0, 0], support)
    expected = [
        [0.1, 0.35, 0.55],
        [0.0, 0.7, 0.3],
        [1.0, 0.0, 0.0],
        [0.05, 0.15 + 0.375 + 0.075, 0.125 + 0.225],
    ]
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("n_atoms", [2, 5, 51])
def test_projection_matches_brute_force(n_atoms):
    rng = np.random.default_rng(n_atoms)
    batch, gamma, n = 64, 0.99, 3
    support = np.linspace(-10, 10, n_atoms)
    probs = rng.dirichlet(np.ones(n_atoms), size=batch)
    rewards = rng.uniform(-15, 15, size=batch)
    rewards[:4] = [10.0, -10.0, 0.0, 12.0]  # exactly on atoms / clipped
    k = rng.integers(1, n + 1, size=batch)  # truncated windows: γ^k with k < n
    discounts = gamma**k
    dones = rng.random(batch) < 0.3
    got = project(probs, rewards, discounts, dones.astype(float), support)
    np.testing.assert_allclose(got, projection_reference(probs, rewards, discounts, dones, support), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# With every component off, Rainbow is DQN


def _fixed_batch(n: int = 16, seed: int = 0) -> ReplayBufferSamples:
    g = th.Generator().manual_seed(seed)
    return ReplayBufferSamples(
        observations=th.randn(n, 4, generator=g),
        actions=th.randint(0, 2, (n, 1), generator=g),
        next_observations=th.randn(n, 4, generator=g),
        dones=(th.rand(n, 1, generator=g) < 0.3).float(),
        rewards=th.randn(n, 1, generator=g),
        discounts=0.99 ** th.randint(1, 4, (n, 1), generator=g).float(),
    )


def test_all_components_off_is_dqn():
    pk = dict(net_arch=[32], optimizer_class=th.optim.Adam, optimizer_kwargs=dict(eps=1e-8))
    common = dict(learning_rate=1e-2, buffer_size=100, gamma=0.99, max_grad_norm=10.0, seed=0, policy_kwargs=pk)
    dqn = DQN("MlpPolicy", "CartPole-v1", **common)
    rb = Rainbow(
        "MlpPolicy", "CartPole-v1", distributional=False, n_steps=1, prioritized_replay=False,
        double_q=False, dueling=False, noisy=False, loss="huber", **common,
    )  # fmt: skip
    rb.q_net.head.advantage.load_state_dict(dqn.q_net.q_net.state_dict())
    rb.q_net_target.head.advantage.load_state_dict(dqn.q_net_target.q_net.state_dict())
    batch = _fixed_batch()
    dqn.replay_buffer.sample = lambda *a, **k: batch
    rb.replay_buffer.sample = lambda *a, **k: RainbowSamples(*batch, weights=th.ones(16), indices=np.arange(16))
    rb.replay_buffer.can_sample = lambda: True  # the empty buffer would make train() skip the update
    for model in (dqn, rb):
        model.set_logger(Logger(folder=None, output_formats=[]))
        model.train(gradient_steps=1, batch_size=16)
    assert rb.logger.name_to_value["train/loss"] == pytest.approx(dqn.logger.name_to_value["train/loss"], rel=1e-6)
    for a, b in zip(dqn.q_net.q_net.parameters(), rb.q_net.head.advantage.parameters()):
        th.testing.assert_close(a, b)  # same gradient step
    # and a loss that differs from DQN's would be caught: a non-zero result with a wrong discount
    assert dqn.logger.name_to_value["train/loss"] > 0


# ---------------------------------------------------------------------------------------------
# Learning: CartPole-v1 to a mean return >= 150

CARTPOLE = dict(
    learning_rate=1e-3,
    buffer_size=20_000,
    learning_starts=500,
    batch_size=64,
    train_freq=4,
    gradient_steps=2,
    target_update_interval=250,
    exploration_steps=4_000,
    exploration_final_eps=0.02,
    v_min=0.0,
    v_max=100.0,
    policy_kwargs=dict(net_arch=[64, 64]),
    seed=0,
)


@pytest.mark.parametrize("noisy", [False, True], ids=["eps-greedy", "noisy-eps0"])
@pytest.mark.slow
def test_learns_cartpole(noisy):
    kwargs = dict(CARTPOLE)
    if noisy:
        kwargs.update(noisy=True, exploration_initial_eps=0.0, exploration_final_eps=0.0)
    model = Rainbow("MlpPolicy", "CartPole-v1", **kwargs)  # C51 + 3-step + PER (the defaults)
    # Noise-only exploration as Dopamine does it (fresh noise every acting step, no uniform warm-up) needs
    # more steps here: measured 116.7 at 10k, 144.9 at 15k and 400.4 at 20k steps (seed 0, σ0 = 0.5).
    model.learn(20_000 if noisy else 10_000)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=True)
    assert mean >= 150, f"mean return {mean}"


# ---------------------------------------------------------------------------------------------
# Noise is controlled by reset_noise() and deterministic, never by train/eval mode


def test_noise_only_changes_on_reset_noise():
    model = Rainbow("MlpPolicy", "CartPole-v1", noisy=True, buffer_size=100, seed=0)
    assert any(isinstance(m, NoisyLinear) for m in model.q_net.modules())
    obs = th.randn(8, 4)
    q = lambda noise=True: model.q_net.q_values(obs, noise=noise).detach().clone()  # noqa: E731
    q0, mean0 = q(), q(noise=False)
    assert not th.allclose(q0, mean0)
    for mode in (False, True, False):
        model.policy.set_training_mode(mode)
        th.testing.assert_close(q(), q0)
    model.reset_noise()
    assert not th.allclose(q(), q0)
    th.testing.assert_close(q(noise=False), mean0)  # deterministic: μ only
    # predict(deterministic=True) ignores noise; non-deterministic (ε=0) follows the current noise
    model.exploration_rate = 0.0
    np_obs = obs.numpy()
    det = model.predict(np_obs, deterministic=True)[0]
    np.testing.assert_array_equal(det, mean0.argmax(1).numpy())
    np.testing.assert_array_equal(model.predict(np_obs)[0], model.predict(np_obs)[0])
    # target noise is independent of the online noise
    assert not th.equal(model.q_net.head.advantage[0].eps_in, model.q_net_target.head.advantage[0].eps_in)


def test_training_resamples_noise():
    model = Rainbow("MlpPolicy", "CartPole-v1", noisy=True, buffer_size=200, learning_starts=50, train_freq=10, seed=0)
    eps = model.q_net.head.advantage[0].eps_in.clone()
    model.learn(100)
    assert not th.equal(eps, model.q_net.head.advantage[0].eps_in)


# ---------------------------------------------------------------------------------------------
# Every switch on FakeImageEnv with sb3_gap's ConvExtractor

SWITCHES = ("double_q", "dueling", "noisy", "prioritized_replay", "distributional", "n_step")
# Orthogonal array L8(2^7), first 6 columns: every pair of switches takes all 4 value pairs; plus all-on.
L8 = ["000000", "000111", "011001", "011110", "101010", "101101", "110011", "110100", "111111"]


@pytest.mark.parametrize("row", L8)
def test_switch_combinations_train_on_images(row):
    on = dict(zip(SWITCHES, (c == "1" for c in row)))
    n_steps = 3 if on.pop("n_step") else 1
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=2)
    model = Rainbow(
        "CnnPolicy", env, buffer_size=200, learning_starts=16, batch_size=8, train_freq=4, n_steps=n_steps,
        target_update_interval=20, policy_kwargs=policy_kwargs(bottleneck="gap"), seed=0, **on,
    )  # fmt: skip
    assert isinstance(model.replay_buffer, RainbowReplayBuffer)
    assert model.q_net.features_extractor.__class__ is sb3_gap.ConvExtractor
    before = [p.detach().clone() for p in model.q_net.parameters()]
    model.learn(48)
    assert model._n_updates > 0
    assert any(not th.equal(a, b) for a, b in zip(before, model.q_net.parameters()))
    assert model.predict(env.reset()[0], deterministic=True)[0] in range(env.action_space.n)


def test_frame_stack_is_detected():
    venv = VecFrameStack(DummyVecEnv([lambda: FakeImageEnv(screen_height=40, screen_width=40, n_channels=1)]), 4)
    model = Rainbow("CnnPolicy", venv, buffer_size=100, policy_kwargs=policy_kwargs(bottleneck="gap"))
    assert model.observation_space.shape == (4, 40, 40)
    assert model.frame_stack == 4 and model.replay_buffer.frame_stack == 4
    plain = Rainbow("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40), buffer_size=100)
    assert plain.frame_stack == 1


def test_several_envs():
    from stable_baselines3.common.env_util import make_vec_env

    model = Rainbow("MlpPolicy", make_vec_env("CartPole-v1", n_envs=3, seed=0), buffer_size=600, learning_starts=30,
                    batch_size=8, train_freq=2, target_update_interval=10, seed=0)  # fmt: skip
    model.learn(90)
    assert model.num_timesteps == 90 and model._n_updates > 0


def test_dict_observations_use_sb3_dict_buffer():
    from stable_baselines3.common.buffers import DictReplayBuffer
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    with pytest.raises(ValueError, match="n_steps=1 and prioritized_replay=False"):
        Rainbow("MultiInputPolicy", SimpleMultiObsEnv(), buffer_size=100)
    model = Rainbow("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=1, prioritized_replay=False, double_q=True,
                    buffer_size=100, learning_starts=10, batch_size=8, seed=0)  # fmt: skip
    assert isinstance(model.replay_buffer, DictReplayBuffer)
    model.learn(30)
    assert model._n_updates > 0


# ---------------------------------------------------------------------------------------------
# Priorities, logging, exploration schedule


def test_priorities_are_per_sample_losses_and_logged():
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=500, learning_starts=64, batch_size=16, seed=0,
                    priority_beta=LinearSchedule(0.4, 1.0, 1.0))  # fmt: skip
    model.learn(100)
    seen = {}
    sample = model.replay_buffer.sample

    def spy_sample(batch_size, env=None, beta=0.5):
        seen["beta"] = beta
        seen["data"] = sample(batch_size, env=env, beta=beta)
        return seen["data"]

    model.replay_buffer.sample = spy_sample
    model.replay_buffer.update_priorities = lambda idx, pr: seen.update(indices=idx, priorities=pr)
    model.train(gradient_steps=1, batch_size=16)
    np.testing.assert_array_equal(seen["indices"], seen["data"].indices)
    assert seen["priorities"].shape == (16,) and (seen["priorities"] > 0).all()
    assert seen["beta"] == pytest.approx(0.4 + 0.6 * (1 - model._current_progress_remaining))
    for key in ("train/loss", "train/learning_rate", "train/mean_q", "train/is_weight_mean"):
        assert key in model.logger.name_to_value, key
    model._on_step()
    assert "rollout/exploration_rate" in model.logger.name_to_value


def test_dopamine_exploration_schedule():
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, learning_starts=100, exploration_steps=1000)
    for t, eps in ((0, 1.0), (100, 1.0), (600, 0.505), (1100, 0.01), (5000, 0.01)):
        model.num_timesteps = t
        assert model._exploration_eps() == pytest.approx(eps)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build(name):
    kwargs = rainbow_preset(name)
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, **kwargs)
    for key, value in kwargs.items():
        assert getattr(model, key) == value or key == "train_freq"
    kwargs["n_steps"] = -1  # a copy: the preset itself is untouched
    assert PRESETS[name].get("n_steps") != -1


# ---------------------------------------------------------------------------------------------
# Save / load / resume

NON_DEFAULT = dict(
    learning_rate=3e-4, buffer_size=300, learning_starts=40, batch_size=16, tau=0.9, gamma=0.95, train_freq=2,
    gradient_steps=2, n_steps=4, distributional=True, n_atoms=21, v_min=-5.0, v_max=7.0, loss="mse",
    prioritized_replay=True, priority_alpha=0.6, priority_beta=0.7, priority_eps=1e-5, double_q=True, dueling=True,
    noisy=True, sigma0=0.4, target_update_interval=77, exploration_steps=123, exploration_fraction=0.3,
    exploration_initial_eps=0.9, exploration_final_eps=0.05, max_grad_norm=5.0, stats_window_size=7,
)  # fmt: skip


def test_save_load_predictions_and_kwargs(tmp_path):
    model = Rainbow("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[16]), seed=0, **NON_DEFAULT)
    model.learn(100)
    path = tmp_path / "rainbow"
    model.save(path)
    loaded = Rainbow.load(path, env=gym.make("CartPole-v1"))
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for name in inspect.signature(Rainbow.__init__).parameters:
        if name in NON_DEFAULT and name not in ("train_freq", "stats_window_size"):
            assert getattr(loaded, name) == NON_DEFAULT[name], name
    assert loaded._stats_window_size == 7 and loaded.train_freq.frequency == 2
    net = loaded.q_net
    assert (net.n_atoms, net.v_min, net.v_max, net.dueling, net.noisy, net.sigma0, net.net_arch) == (21, -5.0, 7.0, True, True, 0.4, [16])
    assert loaded.replay_buffer.n_steps == 4


@pytest.mark.filterwarnings("ignore:RainbowReplayBuffer. an observation does not continue")
def test_resume_with_replay_buffer(tmp_path):
    kwargs = dict(buffer_size=1000, learning_starts=50, batch_size=16, train_freq=4, seed=0)
    model = Rainbow("MlpPolicy", "CartPole-v1", **kwargs)
    model.learn(200)
    model.save(tmp_path / "m")
    model.save_replay_buffer(tmp_path / "rb")
    loaded = Rainbow.load(tmp_path / "m", env=gym.make("CartPole-v1"))
    loaded.load_replay_buffer(tmp_path / "rb")
    assert loaded.replay_buffer.pos == model.replay_buffer.pos == 200
    updates = loaded._n_updates
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == 300 and loaded.replay_buffer.pos == 300
    assert loaded._n_updates == updates + 25


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model = Rainbow("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40), buffer_size=100, learning_starts=8,
                    batch_size=8, noisy=True, double_q=True, dueling=True, policy_kwargs=policy_kwargs(), device="cuda")  # fmt: skip
    model.learn(32)
    assert model.q_net.support.is_cuda and model._n_updates > 0


# ---------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(v_min=10.0, v_max=10.0), ["v_min=10.0", "v_max=10.0"]),
        (dict(v_min=1.0, v_max=-1.0), ["v_min=1.0", "smaller"]),
        (dict(n_atoms=0), ["n_atoms", "0", ">= 2"]),
        (dict(n_atoms=1), ["n_atoms", "1", "distributional=False"]),
        (dict(n_atoms=0, distributional=False), ["n_atoms", ">= 1"]),
        (dict(n_steps=0), ["n_steps", "0", ">= 1"]),
        (dict(n_steps=2.5), ["n_steps", "2.5"]),
        (dict(loss="l1"), ["'l1'", "huber", "mse"]),
        (dict(priority_beta=1.5), ["priority_beta", "1.5"]),
        (dict(sigma0=0.0), ["sigma0"]),
        (dict(replay_buffer_class=sb3_gap.rainbow.rainbow.ReplayBuffer), ["replay_buffer_class", "RainbowReplayBuffer"]),
        (dict(optimize_memory_usage=True), ["optimize_memory_usage"]),
        (dict(policy_kwargs=dict(n_atoms=11)), ["n_atoms", "11", "51"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"'dqn'.*\['der', 'dopamine', 'full'\]"):
        rainbow_preset("dqn")


def test_algo_registry_and_top_level_export():
    from sb3_gap.algos import get_algo

    assert get_algo("rainbow") is Rainbow
    assert "Rainbow" in sb3_gap.__all__


def test_dueling_combines_streams():
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, dueling=True, n_atoms=5, v_min=-1, v_max=1)
    head = model.q_net.head
    f = th.randn(3, 4)
    a = head.advantage(f).view(3, 2, 5)
    v = head.value(f).view(3, 1, 5)
    th.testing.assert_close(head(f), v + a - a.mean(1, keepdim=True))
    assert head.value[-1].out_features == 5 and head.advantage[-1].out_features == 2 * 5


def test_default_adam_epsilon_is_dopamines():
    """Paper Table 1: Adam's epsilon 1.5e-4 by default; an explicit optimizer_kwargs wins."""
    model = Rainbow("MlpPolicy", "CartPole-v1", learning_starts=0, buffer_size=100)
    assert model.policy.optimizer.defaults["eps"] == 1.5e-4
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-8)))
    assert model.policy.optimizer.defaults["eps"] == 1e-8


def test_adam_is_fused_by_default_unless_told_otherwise():
    """Fused Adam (one kernel for all parameters) by default, also when only Adam's eps is given (Zoo configs)."""
    fused = lambda **kw: Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, device="cpu", **kw).policy.optimizer.defaults["fused"]  # noqa: E731
    assert fused() is True
    assert fused(policy_kwargs=dict(optimizer_kwargs=dict(eps=3.125e-4))) is True
    assert not fused(policy_kwargs=dict(optimizer_kwargs=dict(fused=False)))
    assert not fused(policy_kwargs=dict(optimizer_kwargs=dict(foreach=True)))
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, policy_kwargs=dict(optimizer_class=th.optim.RMSprop))
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)


@pytest.mark.parametrize("channel_first", [True, False])
def test_uint8_batches_reordered_channels_last_give_the_same_values(channel_first):
    """The uint8 -> channels-last reorder before SB3's float conversion is a pure memory-layout change."""
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=3, channel_first=channel_first)
    fast = Rainbow("CnnPolicy", env, buffer_size=100, policy_kwargs=policy_kwargs(bottleneck="flatten"))
    plain = Rainbow("CnnPolicy", env, buffer_size=100, policy_kwargs=policy_kwargs(bottleneck="flatten", channels_last=False))
    plain.q_net.load_state_dict(fast.q_net.state_dict())
    obs = th.as_tensor(np.stack([fast.observation_space.sample() for _ in range(5)]))
    assert obs.dtype == th.uint8 and fast.q_net.features_extractor.channels_last
    with th.no_grad():
        th.testing.assert_close(fast.q_net(obs), plain.q_net(obs), rtol=1e-5, atol=1e-5)
        # the in-place division by 255 gives SB3's preprocess_obs values exactly, and leaves the uint8 batch as it was
        before = obs.clone()
        extractor = plain.q_net.features_extractor
        sb3 = BasePolicy.extract_features(plain.q_net, obs, extractor)
        assert th.equal(plain.q_net.extract_features(obs, extractor), sb3) and th.equal(obs, before)


# ---------------------------------------------------------------------------------------------
# Bad arguments: out-of-range numbers, buffers and architectures that do not fit


BAD_NUMBERS = [
    (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(learning_rate=float("inf")), "learning_rate"),
    (dict(tau=0.0), "tau"),
    (dict(tau=2.0), "tau"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),  # clip_grad_norm_ with a negative norm flips the gradient
    (dict(gamma=float("nan")), "gamma"),
    (dict(batch_size=0), "batch_size"),
    (dict(train_freq=0), "train_freq"),
    (dict(train_freq=(0, "step")), "train_freq"),
    (dict(train_freq=(4, "epoch")), "train_freq unit"),
    (dict(gradient_steps=0), "gradient_steps"),
    (dict(gradient_steps=-3), "gradient_steps"),
    (dict(exploration_fraction=-0.1), "exploration_fraction"),
    (dict(target_update_interval=0), "target_update_interval"),
    (dict(sigma0=float("nan")), "sigma0"),
    (dict(priority_alpha=float("nan")), "priority_alpha"),
    (dict(priority_eps=-1.0), "priority_eps"),
    (dict(learning_starts=-5), "learning_starts"),
]


@pytest.mark.parametrize("kwargs, name", BAD_NUMBERS, ids=lambda x: repr(x) if isinstance(x, dict) else None)
def test_rainbow_refuses_out_of_range_numbers_in_one_line(kwargs, name):
    with pytest.raises(ValueError, match=rf"^(Unknown )?{re.escape(name)}( must be .*got |.*valid choices)") as info:
        Rainbow("MlpPolicy", "CartPole-v1", **{"buffer_size": 64, "batch_size": 8, **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("v_min, v_max", [(-np.inf, 10.0), (-10.0, float("inf")), (float("nan"), 1.0)])
def test_non_finite_support_is_refused_at_construction(v_min, v_max):
    with pytest.raises(ValueError, match="v_min and v_max must be finite numbers"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, v_min=v_min, v_max=v_max)


SMALL = dict(buffer_size=500, learning_starts=10_000, batch_size=16, policy_kwargs=dict(net_arch=[8]), seed=0)


def test_buffer_smaller_than_a_batch_is_refused_at_construction_learn_and_in_a_sweep(tmp_path, capsys):
    """Refused at construction and in a sweep; a loaded model may act with a smaller buffer (rl_zoo3's enjoy loads
    with buffer_size=1) but not learn."""
    with pytest.raises(ValueError, match=r"buffer_size must be an integer >= batch_size .* buffer_size=10, batch_size=32"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=10, batch_size=32)
    model = Rainbow("MlpPolicy", "CartPole-v1", **SMALL)
    model.save(tmp_path / "m")
    loaded = Rainbow.load(tmp_path / "m", buffer_size=8, env=gym.make("CartPole-v1"))  # fine to act (the Zoo's enjoy does this)
    with pytest.raises(ValueError, match=r"buffer_size=8 is smaller than batch_size=16"):
        loaded.learn(10)
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--set", "buffer_size=10", "batch_size=32",
                                                  "--storage", f"sqlite:///{tmp_path}/s.db"), "sweep")  # fmt: skip
    assert "buffer_size=10 is smaller than batch_size=32" in line and not (tmp_path / "s.db").exists()


@pytest.mark.filterwarnings("ignore:RainbowReplayBuffer. an observation does not continue")
def test_load_replay_buffer_refuses_other_n_steps_gamma_or_prioritization(tmp_path):
    source = Rainbow("MlpPolicy", "CartPole-v1", n_steps=3, gamma=0.99, prioritized_replay=True, **SMALL)
    source.learn(60)
    source.save_replay_buffer(tmp_path / "rb")
    other = Rainbow("MlpPolicy", "CartPole-v1", n_steps=1, gamma=0.5, prioritized_replay=False, **SMALL)
    own = other.replay_buffer
    with pytest.raises(ValueError) as info:
        other.load_replay_buffer(tmp_path / "rb")
    for words in ("n_steps: model 1, buffer 3", "gamma: model 0.5, buffer 0.99", "prioritized_replay: model False, buffer True"):
        assert words in str(info.value)
    assert other.replay_buffer is own  # the model keeps its own buffer
    same = Rainbow("MlpPolicy", "CartPole-v1", n_steps=3, gamma=0.99, prioritized_replay=True, **SMALL)
    same.load_replay_buffer(tmp_path / "rb")
    assert same.replay_buffer.pos == source.replay_buffer.pos == 60


def test_load_refuses_overrides_of_the_network_shape(tmp_path):
    model = Rainbow("MlpPolicy", "CartPole-v1", n_atoms=51, **SMALL)
    model.save(tmp_path / "m")
    for override in (dict(n_atoms=21), dict(v_max=5.0), dict(dueling=True), dict(custom_objects={"noisy": True})):
        with pytest.raises(ValueError, match=r"Rainbow.load cannot override \['(n_atoms|v_max|dueling|noisy)'\]"):
            Rainbow.load(tmp_path / "m", **override)
    loaded = Rainbow.load(tmp_path / "m", buffer_size=100, learning_rate=1e-3)  # other overrides work as in SB3
    assert loaded.n_atoms == loaded.q_net.n_atoms == 51 and loaded.buffer_size == 100
    config, _ = safe.model_to_plain(model)
    safe.save_safe(model, tmp_path)
    with pytest.raises(ValueError, match=r"\['n_atoms'\] shape Rainbow's network"):
        safe.build_from_config(config, tmp_path / safe.WEIGHTS_FILE, device="cpu", n_atoms=21)


def test_set_parameters_with_another_atom_count_names_both_and_changes_nothing(tmp_path):
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


# ---------------------------------------------------------------------------------------------
# Updates are skipped until a complete n-step transition exists


def cartpole_rainbow(**kwargs) -> Rainbow:
    base = dict(buffer_size=1000, batch_size=4, target_update_interval=100, **TINY_MLP)
    return Rainbow("MlpPolicy", "CartPole-v1", **{**base, **kwargs})


def test_updates_are_skipped_until_an_n_step_transition_exists():
    """learning_starts=1, train_freq=1, n_steps=10: the first 10 updates have nothing to sample; they are skipped."""
    model = cartpole_rainbow(n_steps=10, learning_starts=1, train_freq=1)
    model.learn(50)
    # A transition gets its complete 10-step window when its 11th step is added (or its episode ends first).
    assert 0 < model._n_updates < 49
    assert model._n_updates + model._n_skipped_updates == 49  # one train() call per step after learning_starts


def test_der_preset_with_learning_starts_below_n_steps_trains():
    kwargs = {**rainbow_preset("der"), "learning_starts": 2}
    model = cartpole_rainbow(**kwargs)
    assert model.n_steps == 10 and model.train_freq.frequency == 1
    model.learn(40)
    assert model._n_updates > 0 and model._n_skipped_updates > 0


def test_model_resumed_without_its_replay_buffer_trains(tmp_path):
    """A loaded model resumed without its replay: num_timesteps > learning_starts but the buffer starts empty."""
    model = cartpole_rainbow(n_steps=3, learning_starts=10, train_freq=1)
    model.learn(30)
    model.save(tmp_path / "m")
    loaded = Rainbow.load(tmp_path / "m", env=gym.make("CartPole-v1"), device="cpu")
    assert loaded.num_timesteps == 30 and loaded.replay_buffer.size() == 0
    before = loaded._n_updates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.learn(20, reset_num_timesteps=False)
    assert loaded._n_updates > before and loaded._n_skipped_updates > 0


def test_no_update_is_skipped_when_learning_starts_covers_n_steps():
    """learning_starts >= n_steps (every preset, every study): no update is skipped, the counts are SB3's."""
    model = cartpole_rainbow(n_steps=3, learning_starts=20, train_freq=1)
    model.learn(40)
    assert model._n_skipped_updates == 0 and model._n_updates == 20
