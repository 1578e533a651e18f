"""Sweeps train with the Zoo config's settings, and each Dopamine behaviour the presets and
protocols copy is pinned here (google/dopamine: jax/agents/full_rainbow/full_rainbow_agent.py,
jax/networks.py, labs/atari_100k/configs/DER.gin, labs/environments/minatar/*)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_gap
from sb3_gap import Rainbow, parameter_report, policy_kwargs
from sb3_gap.checks import Refused
from sb3_gap.envs.protocols import DOPAMINE_EVAL_EPSILON, EpsilonGreedyActions, make_plain_env, protocol_for
from sb3_gap.rainbow import rainbow_preset
from sb3_gap.rainbow.policies import NoisyLinear
from sb3_gap.sweep import SweepSpec
from sb3_gap.sweep import cell as sweep_module
from sb3_gap.sweep.cell import resolve_run, run_settings, train_cell
from sb3_gap.sweep.cli import SWEEP_PRESETS
from sb3_gap.zoo_config import ZOO_CONFIG_DIR, parse_kwargs_string, resolve_section

MINATAR = gym.spaces.Box(0, 255, (4, 10, 10), np.uint8)


def _spec(tmp_path: Path, **overrides) -> SweepSpec:
    fields = dict(
        envs=["MinAtar/Breakout-v1"], algos=["rainbow"], encoders=["minatar_impala"], bottlenecks=["gap"], width_scales=[1],
        seeds=1, steps=64, eval_freq=32, eval_episodes=1, final_evals=1, storage=f"sqlite:///{tmp_path / 's.db'}",
        study="t", out_dir=str(tmp_path / "runs"), save_models=True,
    )  # fmt: skip
    fields.update(overrides)
    return SweepSpec(**fields)


CELL = dict(algo="rainbow", encoder="minatar_impala", env="MinAtar/Breakout-v1", bottleneck="gap", width_scale=1, seed=0)


# ----------------------------------------------------------------------------- one source of truth
def test_sweep_has_no_budget_table_of_its_own():
    assert not hasattr(sweep_module, "DEFAULT_HYPERPARAMS")


def test_sweep_model_has_the_zoo_values_after_save_and_load(tmp_path):
    spec = _spec(tmp_path)
    result = train_cell(spec, CELL)
    model = Rainbow.load(Path(result["run_dir"]) / "model.zip")
    # zoo_configs/rainbow.yml, minatar section (Dopamine's labs/environments/minatar/rainbow_breakout.gin)
    assert model.learning_rate == pytest.approx(2.5e-4)
    assert model.target_update_interval == 1_000
    assert model.n_steps == 3 and model.v_max == 100.0 and model.v_min == -100.0
    assert model.buffer_size == 100_000 and model.learning_starts == 1_000 and model.train_freq.frequency == 4
    assert model.policy.optimizer.defaults["eps"] == pytest.approx(3.125e-4)
    settings = json.loads((Path(result["run_dir"]) / "settings.json").read_text())
    assert settings["zoo_source"] == "rainbow.yml:MinAtar/Breakout-v1" and settings["overrides"] == {}
    assert settings["hyperparameters"]["learning_rate"] == 2.5e-4
    assert settings["policy_kwargs"]["features_extractor_kwargs"]["encoder"] == "minatar_impala"
    assert settings["eval"]["epsilon"] == DOPAMINE_EVAL_EPSILON
    assert result["settings"] == settings  # also stored with the trial, for the report


def test_overrides_are_explicit_and_recorded(tmp_path):
    spec = _spec(tmp_path, fixed={"exploration_steps": 25_000}, hyperparams={"target_update_interval": [500]})
    cell = dict(CELL, **{"hp:target_update_interval": 500})
    _, kwargs, _, overrides = resolve_run(spec, cell)
    assert kwargs["exploration_steps"] == 25_000 and kwargs["target_update_interval"] == 500
    assert kwargs["learning_rate"] == 2.5e-4  # untouched Zoo value
    assert overrides == {"exploration_steps": 25_000, "target_update_interval": 500}
    assert run_settings(spec, cell)["overrides"] == overrides


def test_study_preset_lists_its_budget_overrides():
    preset = SWEEP_PRESETS["minatar-scaling"]
    assert preset["fixed"] == {"exploration_steps": 25_000}
    assert preset["steps"] >= 150_000 and len(preset["envs"]) >= 2 and preset["seeds"] >= 3
    assert preset["bottlenecks"] == ["flatten", "gap"] and preset["width_scales"] == [1, 4]


@pytest.mark.parametrize(
    "name, changed",
    [("minatar-width", dict(width_scales=[8])), ("minatar-deep", dict(encoders=["minatar_deep"], width_scales=[1, 8], steps=100_000))],
)
def test_later_minatar_studies_change_only_what_they_test(name, changed):
    """The second study (deep phi, x1/x8, 100k steps: pre-registered) and the width study (x8) keep every
    other setting of the first study; only where results go differs besides."""
    first, later = SWEEP_PRESETS["minatar-scaling"], SWEEP_PRESETS[name]
    where = {"description", "storage", "study", "report"}
    assert {k: v for k, v in later.items() if k not in where} == {**{k: v for k, v in first.items() if k not in where}, **changed}
    assert later["study"] == name.replace("-", "_") and later["storage"] == f"sqlite:///results/{later['study']}/study.db"


def _spec_of(preset: dict) -> SweepSpec:
    return SweepSpec(**{k: v for k, v in preset.items() if k not in ("workers", "report", "description")})


def test_replay_ratio_study_is_the_deep_studys_x8_arm_at_ratio_1():
    """minatar-rr lists only what it changes from minatar-deep (x8 only, replay_ratio 1, where results go), and each
    of its runs resolves to the settings of minatar-deep's x8 run of the same cell but for one update per env step."""
    deep, rr = SWEEP_PRESETS["minatar-deep"], SWEEP_PRESETS["minatar-rr"]
    where = {"description", "storage", "study", "report"}
    changed = dict(width_scales=[8], fixed={"exploration_steps": 25_000, "replay_ratio": 1})
    assert {k: v for k, v in rr.items() if k not in where} == {**{k: v for k, v in deep.items() if k not in where}, **changed}
    assert rr["storage"] == "sqlite:///results/minatar_rr/study.db" and rr["report"] == "results/minatar_rr"
    deep_cells = {json.dumps(c, sort_keys=True): c for c in _spec_of(deep).cells()}
    rr_spec = _spec_of(rr)
    assert len(rr_spec.cells()) == 12
    for cell in rr_spec.cells():
        a, b = run_settings(_spec_of(deep), deep_cells[json.dumps(cell, sort_keys=True)]), run_settings(rr_spec, cell)
        assert a["hyperparameters"].pop("train_freq") == 4 and b["hyperparameters"].pop("train_freq") == 1
        assert a["hyperparameters"].pop("gradient_steps", 1) == 1 and b["hyperparameters"].pop("gradient_steps") == 1
        assert a["overrides"] == {"exploration_steps": 25_000} and b["overrides"] == {"exploration_steps": 25_000, "replay_ratio": 1}
        a.pop("overrides"), b.pop("overrides")
        assert a == b
        assert b["hyperparameters"]["target_update_interval"] == 1_000  # env steps, whatever the ratio


def test_replay_ratio_study_starts_seed_by_seed():
    """Seed 0 on both games and both bottlenecks first, so a partial study is balanced."""
    cells = _spec_of(SWEEP_PRESETS["minatar-rr"]).cells()
    assert [c["seed"] for c in cells] == [0] * 4 + [1] * 4 + [2] * 4
    assert {(c["env"], c["bottleneck"]) for c in cells[:4]} == {(e, b) for e in SWEEP_PRESETS["minatar-rr"]["envs"] for b in ("flatten", "gap")}


def test_cells_start_with_the_widest_network_seed_by_seed(tmp_path):
    spec = _spec(tmp_path, width_scales=[1, 4], seeds=2, bottlenecks=["flatten", "gap"])
    order = [(c["width_scale"], c["seed"]) for c in spec.cells()]
    assert order == [(4, 0), (4, 0), (4, 1), (4, 1), (1, 0), (1, 0), (1, 1), (1, 1)]


def test_zoo_policy_kwargs_strings_are_parsed_not_evaluated():
    pk = parse_kwargs_string(
        "dict(policy_kwargs(encoder='impala', bottleneck='gap', width_scale=4), n_quantiles=200, optimizer_kwargs=dict(eps=1.5e-4))"
    )
    assert pk["n_quantiles"] == 200 and pk["optimizer_kwargs"] == {"eps": 1.5e-4}
    assert pk["features_extractor_kwargs"]["width_scale"] == 4 and pk["net_arch"] == []
    assert parse_kwargs_string("dict(net_arch=[64, 64], v=-1.5, t=(1, 2))") == {"net_arch": [64, 64], "v": -1.5, "t": (1, 2)}
    for bad in (
        "__import__('os').system('true')",
        "dict(a=open('x'))",
        "policy_kwargs.__globals__",
        "(lambda: 1)()",
        "dict(**{'a': [x for x in ()]})",
    ):
        with pytest.raises(ValueError, match="not allowed"):
            parse_kwargs_string(bad)


def test_every_zoo_section_splits_into_algo_and_env_settings():
    for algo in ("dqn", "qrdqn", "ppo", "rainbow"):
        for env_id in ("MinAtar/Breakout-v1", "Dopamine/Pong-v5", "Atari100k/Pong-v5", "Procgen/Coinrun-v0"):
            settings = resolve_section(algo, env_id)
            assert "n_timesteps" in settings.env and "policy_kwargs" not in settings.algo_kwargs
            assert isinstance(settings.policy_extra, dict)


# ----------------------------------------------------------------------------- MinAtar as Dopamine runs it
def test_minatar_zoo_section_uses_the_full_action_set_and_clips_training_rewards():
    for algo in ("dqn", "qrdqn", "rainbow"):
        env_settings = resolve_section(algo, "MinAtar/Breakout-v1").env
        assert env_settings["env_kwargs"] == {"use_minimal_action_set": False}
        train = make_plain_env("MinAtar/Breakout-v1", 1, 0, True, env_kwargs=env_settings["env_kwargs"], env_wrapper=env_settings["env_wrapper"])
        assert train.action_space == gym.spaces.Discrete(6)  # minatar.Environment's full set, as Dopamine uses it
        assert isinstance(train.envs[0], gym.wrappers.ClipReward)  # outside Monitor: logged returns stay raw
        evaluation = make_plain_env(
            "MinAtar/Breakout-v1", 1, 0, False, env_kwargs=env_settings["env_kwargs"], env_wrapper=env_settings["env_wrapper"]
        )
        assert not isinstance(evaluation.envs[0], gym.wrappers.ClipReward)
    assert gym.make("MinAtar/Breakout-v1").action_space == gym.spaces.Discrete(3)  # the minimal set stays available


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "Dopamine/Pong-v5", "Atari100k/Pong-v5"])
def test_dopamine_protocols_evaluate_with_epsilon_0_001(env_id):
    protocol = protocol_for(env_id)
    assert protocol.eval_epsilon == DOPAMINE_EVAL_EPSILON == 0.001
    if env_id.startswith("MinAtar"):
        assert isinstance(protocol.make_eval_env(env_id, 0), EpsilonGreedyActions)


def test_epsilon_greedy_actions_replace_actions_at_rate_epsilon():
    class Record(gym.Wrapper):
        actions: list = []

        def step(self, action):
            Record.actions.append(int(action))
            return super().step(action)

    venv = EpsilonGreedyActions(DummyVecEnv([lambda: Record(gym.make("CartPole-v1"))]), epsilon=0.3, seed=0)
    venv.reset()
    for _ in range(2_000):
        venv.step(np.array([0]))
    share = np.mean(Record.actions)  # random actions are 1 half of the time
    assert share == pytest.approx(0.15, abs=0.03)
    with pytest.raises(ValueError, match="epsilon must be in"):
        EpsilonGreedyActions(venv, epsilon=1.5)


# ----------------------------------------------------------------------------- noisy nets as in Dopamine
@pytest.mark.parametrize("preset", ["der", "full"])
def test_noisy_presets_use_dopamine_sigma_and_zero_epsilon(preset):
    kwargs = rainbow_preset(preset)
    assert kwargs["noisy"] and kwargs["sigma0"] == 0.1
    model = Rainbow("CnnPolicy", make_vec_env("MinAtar/Breakout-v1", n_envs=1), buffer_size=1_000,
                    policy_kwargs=policy_kwargs(encoder="minatar", width_scale=1), seed=0, **{**kwargs, "learning_starts": 10})  # fmt: skip
    layer = model.q_net.head.advantage[0]
    assert th.allclose(layer.weight_sigma, th.full_like(layer.weight_sigma, 0.1 / math.sqrt(layer.in_features)))
    assert model.exploration_rate == 0.0
    model.learn(40)
    assert model.exploration_rate == 0.0  # zero_epsilon: also after warm-up


def test_noisy_zoo_sections_set_dopamine_sigma():
    for conf_file in ("rainbow.yml", "der.yml"):
        sections = yaml.safe_load((ZOO_CONFIG_DIR / conf_file).read_text())
        noisy = [name for name, section in sections.items() if section.get("noisy")]
        assert noisy and all(sections[name]["sigma0"] == 0.1 for name in noisy), conf_file


def test_noisy_makes_psi_dense_layers_noisy_for_conv_extractor_and_nature_cnn():
    env = make_vec_env("MinAtar/Breakout-v1", n_envs=1)
    model = Rainbow(
        "CnnPolicy", env, noisy=True, buffer_size=100, policy_kwargs=policy_kwargs(encoder="minatar_impala", width_scale=1, psi_depth=1), seed=0
    )
    ext = model.q_net.features_extractor
    assert isinstance(ext.bottleneck.connection, NoisyLinear)
    assert sum(isinstance(m, NoisyLinear) for m in ext.bottleneck.psi) == 1
    assert not any(isinstance(m, NoisyLinear) for m in ext.encoder.modules())  # the torso stays deterministic
    assert parameter_report(model).connection == 16 * 512  # μ weights
    obs = th.as_tensor(env.reset()).float()
    noisy_q, mean_q = model.q_net.q_values(obs), model.q_net.q_values(obs, noise=False)
    assert not th.allclose(noisy_q, mean_q)
    ext.bottleneck.connection.reset_noise()
    th.testing.assert_close(model.q_net.q_values(obs, noise=False), mean_q)  # deterministic: μ only, everywhere
    atari_like = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    nature = Rainbow("CnnPolicy", DummyVecEnv([lambda: _ImageEnv(atari_like)]), noisy=True, buffer_size=100, seed=0)
    assert isinstance(nature.q_net.features_extractor, NatureCNN)
    assert isinstance(nature.q_net.features_extractor.linear[0], NoisyLinear)  # Dopamine's noisy 512-unit layer


class _ImageEnv(gym.Env):
    def __init__(self, space: gym.spaces.Box) -> None:
        self.observation_space, self.action_space = space, gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_noise_is_resampled_every_acting_step_including_warm_up():
    model = Rainbow("MlpPolicy", "CartPole-v1", noisy=True, buffer_size=100, learning_starts=1_000, seed=0)
    layer = model.q_net.head.advantage[0]
    seen = set()

    def record(_locals, _globals):
        seen.add(tuple(layer.eps_in.tolist()))
        return True

    model.learn(20, callback=record)  # warm-up only: no gradient update happens
    assert model._n_updates == 0
    assert len(seen) == 20  # a new noise sample for each of the 20 acting steps


def test_noisy_agents_act_with_the_network_during_warm_up(monkeypatch):
    model = Rainbow("MlpPolicy", "CartPole-v1", noisy=True, buffer_size=100, learning_starts=1_000, seed=0)
    calls = []
    original = model.policy.predict
    monkeypatch.setattr(model.policy, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    model.learn(10)
    assert len(calls) == model.num_timesteps > 0  # Dopamine's zero_epsilon: no uniform-random warm-up


# ----------------------------------------------------------------------------- encoders for MinAtar
@pytest.mark.parametrize("encoder, hw, channels", [("minatar", 10, 16), ("minatar_impala", 5, 16), ("minatar_deep", 5, 32), ("impala", 2, 32)])
def test_minatar_encoders_connection_counts(encoder, hw, channels):
    for scale in (1, 4):
        width = 512 * scale
        flat = sb3_gap.ConvExtractor(MINATAR, encoder=encoder, bottleneck="flatten", width_scale=scale)
        gap = sb3_gap.ConvExtractor(MINATAR, encoder=encoder, bottleneck="gap", width_scale=scale)
        assert flat.encoder_out_shape == (channels, hw, hw)
        assert parameter_report(flat).connection == hw * hw * channels * width
        assert parameter_report(gap).connection == channels * width


def test_minatar_deep_is_the_papers_impala_phi():
    """Three stacks of conv + 2 residual blocks (15 convolutions), channels 16-32-32, pooling in the first stack only."""
    enc = sb3_gap.ENCODERS["minatar_deep"](4)
    convs = [m for m in enc.modules() if isinstance(m, th.nn.Conv2d)]
    pools = [m for m in enc.modules() if isinstance(m, th.nn.MaxPool2d)]
    assert len(convs) == 15 and len(pools) == 1
    assert [c.out_channels for c in convs[::5]] == [16, 32, 32]
    assert enc(th.zeros(2, 4, 10, 10)).shape == (2, 32, 5, 5)


def test_minatar_encoder_is_dopamines_network_torso():
    enc = sb3_gap.MinAtarEncoder(4)
    (conv,) = [m for m in enc.modules() if isinstance(m, th.nn.Conv2d)]
    assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (16, (3, 3), (1, 1), (1, 1))
    assert th.count_nonzero(conv.bias) == 0  # flax's zero bias init


# ----------------------------------------------------------------------------- init="dopamine": Dopamine's initializers
# Dopamine's formulas written out (jax.nn.initializers.variance_scaling), independent of sb3_gap.initializers:
# (bound, variance) of xavier_uniform, lecun_normal (flax's default: normal truncated at ±2σ) and RainbowNetwork's
# variance_scaling(1/√3, fan_in, uniform).
def _xavier(fan_in: int, fan_out: int) -> tuple[float, float]:
    return math.sqrt(6 / (fan_in + fan_out)), 2 / (fan_in + fan_out)


def _lecun(fan_in: int, fan_out: int) -> tuple[float, float]:
    return 2 * math.sqrt(1 / fan_in) / 0.87962566103423978, 1 / fan_in


def _scaled(fan_in: int, fan_out: int) -> tuple[float, float]:
    return math.sqrt(3 / math.sqrt(3) / fan_in), 1 / math.sqrt(3) / fan_in


def _layer_fans(layer: th.nn.Module) -> tuple[int, int]:
    if isinstance(layer, th.nn.Conv2d):
        area = layer.kernel_size[0] * layer.kernel_size[1]
        return layer.in_channels * area, layer.out_channels * area
    return layer.in_features, layer.out_features


def _assert_drawn_by(layer: th.nn.Module, formula, where: str) -> None:
    bound, var = formula(*_layer_fans(layer))
    w = layer.weight.detach().double()
    assert w.abs().max() <= bound * (1 + 1e-6), where
    assert w.var().item() == pytest.approx(var, rel=0.2), where  # ≥ 576 weights per layer: the estimate is within ~7%
    assert w.mean().item() == pytest.approx(0.0, abs=4 * math.sqrt(var / w.numel())), where
    assert th.count_nonzero(layer.bias) == 0, where


# (encoder, image space, bottleneck, first convs, residual convs, dense layers)
DOPAMINE_INIT_CASES = [
    ("nature", gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), "flatten", _scaled, None, _scaled),  # RainbowNetwork
    ("impala", gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), "gap", _xavier, _lecun, _xavier),  # Stack, ImpalaDQNNetwork
    ("minatar_impala", MINATAR, "flatten", _xavier, _lecun, _xavier),  # Stack
    ("minatar", MINATAR, "flatten", _xavier, None, _xavier),  # MinatarRainbowNetwork (labs/environments/minatar)
]


@pytest.mark.parametrize("encoder, space, bottleneck, conv, residual, dense", DOPAMINE_INIT_CASES)
def test_dopamine_init_layer_statistics_match_dopamines_formulas(encoder, space, bottleneck, conv, residual, dense):
    ext = sb3_gap.ConvExtractor(space, encoder=encoder, bottleneck=bottleneck, psi_depth=1, init="dopamine")
    in_blocks = {id(c) for b in ext.encoder.modules() if isinstance(b, sb3_gap.encoders.ResidualBlock) for c in (b.conv0, b.conv1)}
    convs = [m for m in ext.encoder.modules() if isinstance(m, th.nn.Conv2d)]
    assert convs and (residual is None) == (not in_blocks)
    for i, layer in enumerate(convs):
        _assert_drawn_by(layer, residual if id(layer) in in_blocks else conv, f"{encoder} conv {i}")
    linears = [m for m in ext.bottleneck.modules() if isinstance(m, th.nn.Linear)]
    assert len(linears) == 2  # the connection and ψ's second layer
    for i, layer in enumerate(linears):
        _assert_drawn_by(layer, dense, f"{encoder} dense {i}")


def test_default_init_is_torchs_and_the_residual_psi_keeps_its_orthogonal_init():
    torch_ext = sb3_gap.ConvExtractor(MINATAR, encoder="minatar_impala", bottleneck="gap")
    assert torch_ext.init == "torch"
    assert th.count_nonzero(torch_ext.bottleneck.connection.bias) > 0  # nn.Linear's U(±1/√fan_in) bias, PyTorch's default
    th.manual_seed(0)
    residual = sb3_gap.ConvExtractor(MINATAR, encoder="minatar_impala", bottleneck="gap", psi="residual", psi_depth=1, init="dopamine")
    w = residual.bottleneck.connection.weight.detach()
    th.testing.assert_close(w.T @ w, 2.0 * th.eye(16), atol=1e-4, rtol=0)  # orthonormal columns, gain √2 (Castanyer et al.)
    with pytest.raises(ValueError, match=r"Unknown init 'jax'; valid choices: \['dopamine', 'torch'\]"):
        policy_kwargs(encoder="minatar", init="jax")


def test_rainbow_head_follows_the_extractor_init_unless_head_init_is_given():
    env = make_vec_env("MinAtar/Breakout-v1", n_envs=1)
    pk = policy_kwargs(encoder="minatar", bottleneck="gap", init="dopamine")
    for dueling in (False, True):
        model = Rainbow("CnnPolicy", env, buffer_size=100, dueling=dueling, policy_kwargs=pk, seed=0)
        heads = [model.q_net.head.advantage[0]] + ([model.q_net.head.value[0]] if dueling else [])
        for layer in heads:  # MinatarRainbowNetwork's output layer: xavier_uniform, zero bias
            _assert_drawn_by(layer, _xavier, f"head dueling={dueling}")
        th.testing.assert_close(model.q_net_target.head.advantage[0].weight, heads[0].weight)
    torch_head = Rainbow("CnnPolicy", env, buffer_size=100, head_init="torch", policy_kwargs=pk, seed=0).q_net.head.advantage[0]
    assert th.count_nonzero(torch_head.bias) > 0
    nature_head = Rainbow(
        "CnnPolicy", DummyVecEnv([lambda: _ImageEnv(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))]), buffer_size=100, head_init="dopamine"
    ).q_net.head.advantage[0]
    _assert_drawn_by(nature_head, _scaled, "NatureCNN head: RainbowNetwork's initializer")
    noisy = Rainbow("CnnPolicy", env, buffer_size=100, noisy=True, policy_kwargs=pk, seed=0).q_net
    connection = noisy.features_extractor.bottleneck.connection
    assert isinstance(connection, NoisyLinear) and th.count_nonzero(connection.bias_mu) > 0  # NoisyNetwork's own init
    with pytest.raises(ValueError, match=r"Unknown head_init 'xavier'; valid choices"):
        Rainbow("CnnPolicy", env, buffer_size=100, head_init="xavier", policy_kwargs=pk)


def test_init_is_reachable_from_the_sweep_and_the_zoo_yaml(tmp_path):
    spec = _spec(tmp_path, fixed={"init": "dopamine", "head_init": "torch"})
    _, kwargs, pk, overrides = resolve_run(spec, CELL)
    assert pk["features_extractor_kwargs"]["init"] == "dopamine" and kwargs["head_init"] == "torch"
    assert overrides == {"init": "dopamine", "head_init": "torch"}
    pk = parse_kwargs_string("dict(policy_kwargs(encoder='impala', bottleneck='gap', init='dopamine'))")
    assert pk["features_extractor_kwargs"]["init"] == "dopamine"


# ----------------------------------------------------------------------------- evaluation ε
class _FixedDraws:
    """Stands in for a model's evaluation generator: every uniform draw is ``u``; counts the random actions drawn."""

    def __init__(self, u: float) -> None:
        self.u, self.random_actions = u, 0

    def random(self) -> float:
        return self.u

    def integers(self, high: int, size: int | None = None) -> np.ndarray:
        self.random_actions += 1 if size is None else size
        return np.zeros(size, dtype=np.int64) if size is not None else np.int64(0)


def test_evaluate_policy_acts_with_the_models_eval_epsilon():
    env = make_vec_env("CartPole-v1", n_envs=1)
    model = Rainbow("MlpPolicy", env, buffer_size=100, seed=0)
    assert model.eval_epsilon is None
    just_below, just_above = np.nextafter(DOPAMINE_EVAL_EPSILON, 0), np.nextafter(DOPAMINE_EVAL_EPSILON, 1)
    model._eval_rng = draws = _FixedDraws(just_below)  # every draw falls under ε = 0.001
    evaluate_policy(model, env, n_eval_episodes=2)
    assert draws.random_actions == 0  # default: greedy
    model.eval_epsilon = DOPAMINE_EVAL_EPSILON
    _, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True)
    assert draws.random_actions == sum(lengths)  # ε = 0.001 reached evaluate_policy: every action random
    model._eval_rng = draws = _FixedDraws(just_above)
    evaluate_policy(model, env, n_eval_episodes=2)
    assert draws.random_actions == 0  # ... and exactly 0.001


def test_eval_epsilon_set_on_a_model_is_checked_as_the_constructor_checks_it():
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0)
    for bad in (1.5, -0.1, "0.1", float("nan")):
        with pytest.raises(Refused) as built:
            Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, eval_epsilon=bad)
        with pytest.raises(Refused) as set_later:
            model.eval_epsilon = bad
        assert str(set_later.value) == str(built.value) and "eval_epsilon must be in [0, 1]" in str(built.value)
    assert model.eval_epsilon is None  # the refused values were not kept
    model.eval_epsilon = 0.001
    assert model.eval_epsilon == 0.001


def _trained_parameters(eval_epsilon: float | None, evaluate: bool = True) -> dict[str, th.Tensor]:
    """A small Rainbow's parameters after 600 steps of CartPole, evaluated every 100 steps (when ``evaluate``)."""
    model = Rainbow("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), buffer_size=1_000, learning_starts=100,
                    batch_size=16, target_update_interval=100, exploration_steps=300, eval_epsilon=eval_epsilon, seed=0,
                    policy_kwargs=dict(net_arch=[32]))  # fmt: skip
    callback = EvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=1), eval_freq=100, n_eval_episodes=2, verbose=0) if evaluate else None
    model.learn(600, callback=callback)
    assert model._n_updates > 0
    return {name: tensor.clone() for name, tensor in model.policy.state_dict().items()}


def test_training_with_evaluation_epsilon_is_bit_identical_to_training_without():
    """Evaluation draws its ε from its own generator, so evaluating with ε > 0 changes nothing training samples."""
    with_epsilon = _trained_parameters(eval_epsilon=0.5)
    for other in (_trained_parameters(eval_epsilon=None), _trained_parameters(eval_epsilon=0.5, evaluate=False)):
        assert with_epsilon.keys() == other.keys()
        assert all(th.equal(with_epsilon[name], other[name]) for name in with_epsilon)


def test_evaluation_generator_is_seeded_again_on_load_and_made_for_a_model_without_one(tmp_path):
    """The evaluation generator is not saved: a loaded model draws again from its seed, and a model pickled whole
    before it existed (a sweep checkpoint) gets one from its seed."""
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, eval_epsilon=1.0, seed=3)
    obs = np.zeros((64, 4), dtype=np.float32)
    first = model.predict(obs, deterministic=True)[0]  # ε = 1: every action drawn from the evaluation generator
    assert len(set(first.tolist())) == 2  # both actions drawn
    model.save(tmp_path / "m")
    assert "_eval_rng" not in json.loads(zipfile.ZipFile(tmp_path / "m.zip").read("data"))
    loaded = Rainbow.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], first)
    del loaded.__dict__["_eval_rng"]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], first)


def test_predict_epsilon_rate_override_and_errors(tmp_path):
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, eval_epsilon=0.3, seed=0)
    obs = np.zeros((4, 4), dtype=np.float32)
    greedy = model.predict(obs, deterministic=True, epsilon=0.0)[0]
    np.random.seed(0)
    model.action_space.seed(0)
    differs = [np.any(model.predict(obs, deterministic=True)[0] != greedy) for _ in range(2_000)]
    assert np.mean(differs) == pytest.approx(0.3 * (1 - 0.5**4), abs=0.04)  # random with prob. 0.3; 1/16 match greedy
    model.save(tmp_path / "m")
    assert Rainbow.load(tmp_path / "m").eval_epsilon == 0.3
    for bad in dict(eval_epsilon=1.5), dict(eval_epsilon="0.1"):
        with pytest.raises(ValueError, match=r"eval_epsilon must be in \[0, 1\]"):
            Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, **bad)
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\] \(e\.g\. 0\.001.*got -0\.1"):
        model.predict(obs, epsilon=-0.1)
