"""ConvExtractor: every encoder × bottleneck with DQN / QR-DQN / PPO, Fig. 1 counts, save/load, errors."""

import re
import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from helpers import ENV_ID  # tests/ is on sys.path (pytest's rootdir-relative import)
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.torch_layers import NatureCNN

import sb3_gap
from sb3_gap import BOTTLENECKS, ENCODERS, ConvExtractor, parameter_report, policy_kwargs
from sb3_gap.rainbow import Rainbow
from sb3_gap.sweep import SweepSpec

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def small_env(channel_first: bool = False, side: int = 40) -> FakeImageEnv:
    return FakeImageEnv(screen_height=side, screen_width=side, n_channels=2, channel_first=channel_first)


def make_model(algo, env, **kw):
    if algo is PPO:
        return PPO("CnnPolicy", env, n_steps=16, batch_size=8, n_epochs=1, policy_kwargs=kw, seed=0)
    return algo("CnnPolicy", env, buffer_size=100, learning_starts=0, batch_size=8, train_freq=4, policy_kwargs=kw, seed=0)


@pytest.mark.parametrize("algo", [DQN, QRDQN, PPO], ids=lambda a: a.__name__)
@pytest.mark.parametrize("bottleneck", sorted(BOTTLENECKS))
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_combination_trains(algo, encoder, bottleneck):
    # The smallest image each encoder takes (at least 16x16): what is proven, gradient steps reaching φ through each
    # bottleneck, does not depend on the size, and token bottlenecks on an unpooled 40x40 map cost ~10x more.
    side = max(ENCODERS[encoder].min_image_size, 16)
    model = make_model(algo, small_env(side=side), **policy_kwargs(encoder=encoder, bottleneck=bottleneck))
    ext = sb3_gap.params.find_extractor(model)
    before = [p.detach().clone() for p in ext.parameters()]
    model.learn(32)
    changed = any(not th.equal(a, b) for a, b in zip(before, ext.parameters()))
    assert changed, "no gradient step reached the extractor"


@pytest.mark.parametrize("algo", [DQN, QRDQN], ids=lambda a: a.__name__)
def test_no_hidden_default_head(algo):
    model = make_model(algo, small_env(), **policy_kwargs(bottleneck="gap", width_scale=2))
    q_net = model.policy.q_net if algo is DQN else model.policy.quantile_net
    linears = [m for m in q_net.modules() if isinstance(m, th.nn.Linear) and m not in set(q_net.features_extractor.modules())]
    assert len(linears) == 1 and linears[0].in_features == 1024  # only the algorithm's output layer


def test_ppo_heads_sit_directly_on_psi():
    model = make_model(PPO, small_env(), **policy_kwargs(bottleneck="gap", width_scale=2))
    assert model.policy.action_net.in_features == 1024 and model.policy.value_net.in_features == 1024


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.slow
def test_connection_counts_match_figure_1(scale):
    d = 512 * scale
    counts = {b: parameter_report(ConvExtractor(ATARI, bottleneck=b, width_scale=scale)) for b in BOTTLENECKS}
    h, w, c = 11, 11, 32  # Impala on 84x84
    assert counts["flatten"].connection == h * w * c * d
    assert counts["gap"].connection == c * d
    assert counts["gmp"].connection == c * d
    assert counts["tokenize"].connection == c * d
    assert counts["softmoe"].connection == 4 * c * d
    assert counts["sparse"].connection == h * w * c * d
    assert counts["sparse"].effective_connection == round(0.1 * h * w * c * d)
    for r in counts.values():
        assert r.total == r.phi + r.connection + r.psi


def test_nature_counts_and_layers_match_sb3_nature_cnn():
    ext = ConvExtractor(ATARI, encoder="nature", bottleneck="flatten", width_scale=1)
    assert ext.encoder_out_shape == (64, 7, 7)
    assert parameter_report(ext).connection == 7 * 7 * 64 * 512
    ours = [m for m in ext.encoder.modules() if isinstance(m, th.nn.Conv2d)]
    theirs = [m for m in NatureCNN(ATARI).cnn.modules() if isinstance(m, th.nn.Conv2d)]
    assert [(m.weight.shape, m.stride) for m in ours] == [(m.weight.shape, m.stride) for m in theirs]


def test_impala_shapes_and_depth():
    ext = ConvExtractor(ATARI, encoder="impala", bottleneck="gap", encoder_scale=2, extra_blocks=2)
    assert ext.encoder_out_shape == (64, 11, 11)
    blocks = [m for m in ext.encoder.modules() if type(m).__name__ == "ResidualBlock"]
    assert len(blocks) == 3 * (2 + 2)


def test_gap_is_the_channel_mean():
    ext = ConvExtractor(ATARI, bottleneck="gap")
    x = th.rand(3, 4, 84, 84)
    f = ext.encode(x)
    expected = ext.bottleneck.psi(ext.bottleneck.connection(f.reshape(3, 32, -1).mean(-1)))
    assert th.allclose(ext(x), expected, atol=1e-6)


def test_channel_last_equals_channel_first():
    first = ConvExtractor(gym.spaces.Box(0, 255, (4, 40, 40), np.uint8), bottleneck="gap")
    last = ConvExtractor(gym.spaces.Box(0, 255, (40, 40, 4), np.uint8), bottleneck="gap")
    last.load_state_dict(first.state_dict())
    x = th.rand(2, 4, 40, 40)
    assert th.allclose(first(x), last(x.permute(0, 2, 3, 1)), atol=1e-5)


def test_channels_last_memory_format_is_numerically_the_same():
    a = ConvExtractor(ATARI, bottleneck="flatten", channels_last=False)
    b = ConvExtractor(ATARI, bottleneck="flatten", channels_last=True)
    b.load_state_dict(a.state_dict())
    x = th.rand(2, 4, 84, 84)
    assert th.allclose(a(x), b(x), atol=1e-4)


def test_sparse_mask_survives_training():
    model = make_model(DQN, small_env(), **policy_kwargs(bottleneck="sparse", sparsity=0.8))
    ext = sb3_gap.params.find_extractor(model)
    before = parameter_report(model).effective_connection
    model.learn(64)
    weights = ext.bottleneck.connection.weight * ext.bottleneck.connection.weight_mask
    assert int(weights.count_nonzero()) <= before
    assert th.all(
        ext.bottleneck.connection.weight.grad is None or (ext.bottleneck.connection.weight.grad * (1 - ext.bottleneck.connection.weight_mask)) == 0
    )


def test_layer_norm_and_depth_in_psi():
    ext = ConvExtractor(ATARI, bottleneck="gap", psi_depth=2, layer_norm=True)
    assert sum(isinstance(m, th.nn.LayerNorm) for m in ext.modules()) == 3
    assert sum(isinstance(m, th.nn.Linear) for m in ext.modules()) == 3


@pytest.mark.parametrize("algo", [DQN, QRDQN, PPO], ids=lambda a: a.__name__)
@pytest.mark.parametrize("bottleneck", ["gap", "softmoe", "sparse"])
@pytest.mark.slow
def test_save_load_identical_predictions(tmp_path, algo, bottleneck):
    env = small_env()
    model = make_model(algo, env, **policy_kwargs(bottleneck=bottleneck, width_scale=2))
    model.learn(32)
    obs = np.stack([env.observation_space.sample() for _ in range(8)])
    model.save(tmp_path / "m")
    loaded = algo.load(tmp_path / "m")
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert parameter_report(model) == parameter_report(loaded)
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert th.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(encoder="resnet"), r"Unknown encoder 'resnet'; valid choices: \['impala', 'minatar', 'minatar_deep', 'minatar_impala', 'nature'\]"),
        (dict(bottleneck="avg"), r"Unknown bottleneck 'avg'; valid choices: \['flatten', 'gap', 'gmp', 'softmoe', 'sparse', 'tokenize'\]"),
        (dict(width_scale=0), r"width_scale must be a positive integer .* got 0"),
        (dict(width_scale=1.5), r"width_scale must be a positive integer .* got 1.5"),
        (dict(width_scale=True), r"width_scale must be a positive integer .* got True"),
        (dict(encoder_scale=-2), r"encoder_scale must be a positive integer .* got -2"),
        (dict(psi_depth=-1), r"psi_depth must be an integer >= 0 .* got -1"),
        (dict(bottleneck="tokenize", num_experts=4), r"num_experts=4 only applies to bottleneck \['softmoe'\], not 'tokenize'"),
        (dict(bottleneck="softmoe", num_experts=0), r"num_experts must be a positive integer .* got 0"),
        (dict(bottleneck="gap", sparsity=0.9), r"sparsity=0.9 only applies to bottleneck \['sparse'\]"),
        (dict(bottleneck="sparse", sparsity=1.0), r"sparsity must be a float in \(0, 1\) .* got 1.0"),
        (
            dict(encoder="nature", extra_blocks=1),
            r"extra_blocks=1 needs a residual encoder \['impala', 'minatar_impala', 'minatar_deep'\], got 'nature'",
        ),
        (dict(widthscale=4), r"Unknown ConvExtractor argument\(s\) \['widthscale'\]; valid arguments: \["),
    ],
)
def test_bad_arguments_name_value_and_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_kwargs(**kwargs)
    with pytest.raises(ValueError, match=match):
        ConvExtractor(ATARI, **kwargs)


def test_bad_observation_spaces():
    with pytest.raises(ValueError, match=r"needs an image observation space: a 3-D Box .* got Box\(.*\(8,\)"):
        ConvExtractor(gym.spaces.Box(-1, 1, (8,)))
    with pytest.raises(ValueError, match=r"got Discrete\(3\)"):
        ConvExtractor(gym.spaces.Discrete(3))
    with pytest.raises(
        ValueError,
        match=r"Image 10x10 is too small for encoder 'nature' \(needs at least 36x36\); encoders that fit: \['impala', 'minatar', 'minatar_impala', 'minatar_deep'\]",
    ):
        ConvExtractor(gym.spaces.Box(0, 255, (4, 10, 10), np.uint8), encoder="nature")
    with pytest.raises(ValueError, match=r"num_experts=50 exceeds the 4 tokens \(2x2\)"):
        ConvExtractor(gym.spaces.Box(0, 255, (4, 10, 10), np.uint8), bottleneck="softmoe", num_experts=50)


def test_minatar_env_is_an_sb3_image_env():
    env = gym.make("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 255}
    model = QRDQN("CnnPolicy", env, policy_kwargs=policy_kwargs(bottleneck="gap"), learning_starts=0, batch_size=8, train_freq=4)
    model.learn(16)
    assert ConvExtractor(env.observation_space).encoder_out_shape == (32, 2, 2)
    with pytest.raises(ValueError, match=r"Unknown MinAtar game 'Pong'; valid games: \["):
        sb3_gap.envs.make_minatar("Pong")


def test_width_scale_above_the_bound_is_refused_before_allocating(monkeypatch):
    from sb3_gap.extractor import MAX_WIDTH_SCALE

    monkeypatch.setattr(th.nn.Linear, "__init__", lambda *a, **k: pytest.fail("a layer was allocated"))
    for call in (lambda: policy_kwargs(width_scale=MAX_WIDTH_SCALE + 1),
                 lambda: ConvExtractor(spaces.Box(0, 255, (4, 10, 10), np.uint8), width_scale=10**6)):  # fmt: skip
        with pytest.raises(ValueError, match=rf"width_scale must be a positive integer and at most {MAX_WIDTH_SCALE}"):
            call()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(psi_depth=20_000), "psi_depth must be an integer >= 0 and at most 64"),
        (dict(extra_blocks=100_000), "extra_blocks must be an integer >= 0 and at most 32"),
        (dict(encoder="minatar_deep", extra_blocks=5_000), "extra_blocks must be an integer >= 0 and at most 32"),
    ],
)
def test_depths_are_bounded_in_policy_kwargs_and_the_sweep_spec(tmp_path, kwargs, words):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(words)):
        policy_kwargs(**kwargs)
    with pytest.raises(ValueError, match=re.escape(words)):
        SweepSpec(envs=[ENV_ID], encoders=[kwargs.get("encoder", "impala")], fixed={k: v for k, v in kwargs.items() if k != "encoder"},
                  storage=f"sqlite:///{tmp_path}/s.db").validate()  # fmt: skip
    assert time.perf_counter() - start < 10


def test_parameter_count_is_estimated_and_bounded_before_allocating(no_big_layers):
    from sb3_gap.extractor import MAX_PARAMETERS, estimate_parameters

    space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert estimate_parameters(space, encoder="impala", bottleneck="gap") == sum(p.numel() for p in ConvExtractor(space).parameters())
    big = dict(encoder="impala", bottleneck="flatten", width_scale=64, psi_depth=8)  # every size within its own bound
    policy_kwargs(**big)
    for call in (lambda: estimate_parameters(space, **big), lambda: ConvExtractor(space, **big)):
        with pytest.raises(ValueError, match=rf"would have [0-9,]+ parameters, more than {MAX_PARAMETERS:,}"):
            call()


def test_dict_observation_error_says_how_to_use_the_image_key():
    space = spaces.Dict({"pixels": spaces.Box(0, 255, (3, 64, 64), np.uint8), "state": spaces.Box(-1, 1, (3,))})
    with pytest.raises(ValueError, match=r"image key\(s\) \['pixels'\].*TransformObservation.*obs\['pixels'\].*MultiInputPolicy"):
        ConvExtractor(space)
    with pytest.raises(ValueError, match=r"image key\(s\) \['pixels'\]"):
        Rainbow("MultiInputPolicy", FakeDictEnv(), buffer_size=100, n_steps=1, prioritized_replay=False, policy_kwargs=policy_kwargs())


class FakeDictEnv(gym.Env):
    observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (3, 40, 40), np.uint8), "state": spaces.Box(-1, 1, (3,))})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
