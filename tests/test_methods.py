"""The paper's comparison methods beyond sparse training (docs/methods.md): weight decay, the multi-skip residual ψ
of Castanyer et al. (2025) and the Kron optimizer, with DQN, QR-DQN, PPO and Rainbow from Python, rl_zoo3 YAML
and a sweep; the report's Fig. 10 and Fig. 5 (right) plots. Tiny networks and budgets throughout."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import optuna
import pytest
import torch as th
import yaml
from optuna.distributions import CategoricalDistribution
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.envs import FakeImageEnv

from sb3_gap import ConvExtractor, parameter_report, policy_kwargs
from sb3_gap.bottlenecks import RESIDUAL_OUT, MultiSkipResidual
from sb3_gap.diagnostics import dormant_fractions, neuron_layers
from sb3_gap.optim import Kron, optimizer_policy_kwargs
from sb3_gap.params import find_extractor
from sb3_gap.rainbow import Rainbow
from sb3_gap.sweep import SweepSpec, open_study, run_sweep
from sb3_gap.sweep.cell import resolve_run
from sb3_gap.sweep.report import build_report, load_runs
from sb3_gap.zoo_config import parse_kwargs_string

SPACE = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)  # MinAtar-shaped
BOTTLENECKS = ["flatten", "gap", "gmp", "sparse", "softmoe", "tokenize"]
TINY_OFF_POLICY = dict(learning_starts=16, buffer_size=200, batch_size=8, train_freq=4, target_update_interval=50)
TINY = {
    DQN: TINY_OFF_POLICY,
    QRDQN: TINY_OFF_POLICY,
    Rainbow: dict(TINY_OFF_POLICY, n_atoms=11, exploration_steps=20),
    PPO: dict(n_steps=16, batch_size=8, n_epochs=1),
}
ALGOS = list(TINY)
# Kron keeps a triangular preconditioner per dimension up to this size and a diagonal one above (kron-torch's
# max_size_triangular): 64 keeps both kinds in the tests and the updates cheap (512-wide ψ layers go diagonal).
KRON_SMALL = dict(max_size_triangular=64)


def env() -> FakeImageEnv:
    return FakeImageEnv(action_dim=3, screen_height=10, screen_width=10, n_channels=4, discrete=True, channel_first=True)


def net(**kw):
    kw.setdefault("encoder", "minatar")
    return policy_kwargs(**kw)


def make(cls, pk: dict, **kw):
    return cls("CnnPolicy", env(), policy_kwargs=pk, seed=0, device="cpu", **{**TINY[cls], **kw})


# ----------------------------------------------------------------------------- residual ψ
def test_residual_psi_is_the_reference_multi_skip_network():
    """h_0 = LN(W_in g); h_l = h_{l−1} + LN(W₁ ReLU(LN(W₀ ReLU(h_{l−1})))) + h_0; out = ReLU(LN(W_out h_N)),
    every linear layer orthogonal with gain √2 and zero bias (roger-creus/stable-deep-rl-at-scale src/models/mlp.py)."""
    ext = ConvExtractor(SPACE, encoder="minatar", bottleneck="gap", psi="residual", psi_depth=2, width_scale=1)
    neck = ext.bottleneck
    ln_in, stream, out, ln_out, _ = neck.psi
    assert isinstance(stream, MultiSkipResidual) and len(stream.blocks) == 2 and ext.features_dim == RESIDUAL_OUT
    with th.no_grad():  # break the LayerNorm affine identities so that their placement matters
        for m in ext.modules():
            if isinstance(m, th.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = th.rand(5, *SPACE.shape)
    relu = th.relu
    h0 = ln_in(neck.connection(ext.encode(x).mean(dim=(2, 3))))
    h = h0
    for b in stream.blocks:
        h = h + b.ln1(b.linear1(relu(b.ln0(b.linear0(relu(h)))))) + h0
    expected = relu(ln_out(out(h)))
    assert th.allclose(ext(x), expected, atol=1e-5)
    for layer in (stream.blocks[0].linear0, stream.blocks[1].linear1):  # square: W Wᵀ = 2 I
        w = layer.weight.detach()
        assert th.allclose(w @ w.T, 2 * th.eye(w.shape[0]), atol=1e-4) and not layer.bias.any()
    w = neck.connection.weight.detach()  # 512 × 16: orthonormal columns, scaled by √2
    assert th.allclose(w.T @ w, 2 * th.eye(w.shape[1]), atol=1e-4)


def test_residual_psi_layer_norm_default_and_reference_sizes():
    # Castanyer et al.'s small / medium / large / xlarge ψ (src/utils/utils.py), built on the meta device (no memory).
    for width, blocks in ((512, 1), (1536, 3), (2560, 5), (5120, 10)):
        with th.device("meta"):
            ext = ConvExtractor(SPACE, encoder="minatar", bottleneck="gap", psi="residual", psi_depth=blocks, width_scale=width // 512)
        stream = ext.bottleneck.psi[1]
        assert ext.bottleneck.connection.out_features == width and len(stream.blocks) == blocks
        assert stream.blocks[0].linear0.weight.shape == (width, width) and ext.features_dim == RESIDUAL_OUT
        assert sum(isinstance(m, th.nn.LayerNorm) for m in ext.modules()) == 2 + 2 * blocks
    plain = ConvExtractor(SPACE, encoder="minatar", bottleneck="gap", psi="residual", psi_depth=1, layer_norm=False)
    assert not any(isinstance(m, th.nn.LayerNorm) for m in plain.modules())
    dense = ConvExtractor(SPACE, encoder="minatar", bottleneck="gap", psi_depth=1)  # the dense ψ keeps its default
    assert not any(isinstance(m, th.nn.LayerNorm) for m in dense.modules())
    with pytest.raises(ValueError, match=r"Unknown psi 'resnet'; valid choices: \['dense', 'residual'\]"):
        policy_kwargs(psi="resnet")


@pytest.mark.parametrize("bottleneck", BOTTLENECKS)
def test_residual_psi_with_every_bottleneck(bottleneck):
    options = {"sparse": {"sparse_scope": "all"}, "softmoe": {"num_experts": 2}}.get(bottleneck, {})
    ext = ConvExtractor(SPACE, encoder="minatar", bottleneck=bottleneck, psi="residual", psi_depth=1, **options)
    y = ext(th.rand(3, *SPACE.shape))
    assert y.shape == (3, ext.features_dim)
    y.pow(2).mean().backward()
    block = next(m for m in ext.modules() if isinstance(m, MultiSkipResidual)).blocks[0]
    assert block.linear0.weight.grad.abs().sum() > 0  # the blocks are in the graph
    report = parameter_report(ext)
    assert report.psi > 2 * 512 * 512  # two block layers at least
    if bottleneck == "sparse":  # sparse_scope="all": the blocks' layers are masked and left out of effective ψ
        assert hasattr(block.linear0, "weight_mask")
        assert report.effective_psi < report.effective_connection + report.psi
    else:
        assert report.effective_psi == report.connection + report.psi
    names = [layer.name for layer in neuron_layers(ext)]
    assert any(n.endswith("blocks.0.linear0") for n in names) and any(n.endswith("blocks.0.linear1") for n in names)


def test_diagnostics_measure_and_reset_residual_blocks():
    model = make(DQN, net(bottleneck="gap", psi="residual", psi_depth=1))
    ext = find_extractor(model)
    layers = {layer.name: layer for layer in neuron_layers(ext)}
    assert layers["bottleneck.psi.1.blocks.0.linear0"].resettable and not layers["bottleneck.psi.1.blocks.0.linear1"].resettable
    report = dormant_fractions(model, np.stack([env().observation_space.sample() for _ in range(8)]))
    per_layer = {la.name: la for la in report.layers}
    assert "bottleneck.psi.1.blocks.0.linear0" in per_layer and 0.0 <= report.fraction("psi") <= 1.0


# ----------------------------------------------------------------------------- optimizers
def test_weight_decay_makes_adamw_and_keeps_each_algorithms_settings():
    pk = net(weight_decay=0.1)
    assert pk["optimizer_class"] is th.optim.AdamW and pk["optimizer_kwargs"] == {"weight_decay": 0.1}
    rainbow = make(Rainbow, pk)
    group = rainbow.policy.optimizer.param_groups[0]
    assert type(rainbow.policy.optimizer) is th.optim.AdamW and group["weight_decay"] == 0.1
    assert group["eps"] == 1.5e-4  # Dopamine's ε, as with Adam
    dqn = make(DQN, net(weight_decay=0.05, optimizer_kwargs=dict(eps=1.5e-4)))
    assert type(dqn.policy.optimizer) is th.optim.AdamW and dqn.policy.optimizer.param_groups[0]["eps"] == 1.5e-4
    # Decoupled decay: with zero gradients AdamW still shrinks every weight by lr · wd.
    w = th.nn.Parameter(th.ones(3))
    opt = pk["optimizer_class"]([w], lr=0.1, **pk["optimizer_kwargs"])
    w.grad = th.zeros(3)
    opt.step()
    assert th.allclose(w.detach(), th.full((3,), 1 - 0.1 * 0.1))
    for bad, words in ((dict(weight_decay=-1), "weight_decay must be a finite number >= 0"),
                       (dict(optimizer="sgdx"), "Unknown optimizer 'sgdx'; valid choices: ['adam', 'adamw', 'kron']"),
                       (dict(optimizer="kron", optimizer_kwargs=dict(eps=1e-8)), "Kron does not take ['eps']")):  # fmt: skip
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
            net(**bad)


def test_zoo_section_optimizer_settings_carry_over_where_they_apply():
    base = {"optimizer_kwargs": {"eps": 3.125e-4}}
    assert optimizer_policy_kwargs(weight_decay=0.1, base=base) == {
        "optimizer_class": th.optim.AdamW, "optimizer_kwargs": {"eps": 3.125e-4, "weight_decay": 0.1}}  # fmt: skip
    assert optimizer_policy_kwargs(optimizer="kron", base=base) == {"optimizer_class": Kron, "optimizer_kwargs": {}}
    assert optimizer_policy_kwargs(weight_decay=0.1, base={"optimizer_class": Kron})["optimizer_class"] is Kron


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.__name__)
def test_kron_trains_saves_loads_and_resumes(cls, tmp_path):
    """SB3 loads optimizer states with torch.load(weights_only=True): Kron's state must be plain (the known trap)."""
    model = make(cls, net(bottleneck="gap", optimizer="kron", weight_decay=0.01, optimizer_kwargs=KRON_SMALL))
    assert type(model.policy.optimizer) is Kron
    model.learn(24)
    opt = model.policy.optimizer
    assert int(opt._prob_step) > 0
    path = tmp_path / "kron.zip"
    model.save(path)
    loaded = cls.load(path, env=env(), device="cpu")
    new = loaded.policy.optimizer
    assert type(new) is Kron and int(new._prob_step) == int(opt._prob_step) and new.rng.getstate() == opt.rng.getstate()
    for p_old, p_new in zip(model.policy.parameters(), loaded.policy.parameters()):
        s_old, s_new = opt.state[p_old], new.state[p_new]
        assert s_old.keys() == s_new.keys() and s_old.get("exprs") == s_new.get("exprs")
        if "momentum_buffer" in s_old:
            assert th.equal(s_old["momentum_buffer"], s_new["momentum_buffer"])
            assert all(th.equal(a, b) for a, b in zip(s_old["Q"], s_new["Q"]))
    schedule = new.param_groups[0]["preconditioner_update_probability"]
    assert schedule.__reduce__()[1] == pytest.approx((1.0, 0.03, 0.001, 500.0))  # kron-torch's default schedule, rebuilt
    before = [p.detach().clone() for p in loaded.policy.parameters()]
    loaded.learn(16, reset_num_timesteps=False)  # continue training with the restored state
    assert int(new._prob_step) > int(opt._prob_step)
    assert any(not th.equal(a, b) for a, b in zip(before, loaded.policy.parameters()))


def test_kron_state_dict_loads_weights_only():
    layer = th.nn.Linear(6, 5)
    opt = Kron(layer.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        layer(th.rand(4, 6)).pow(2).sum().backward()
        opt.step()
    buffer = io.BytesIO()
    th.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = th.load(buffer, weights_only=True)  # raises on any non-allow-listed object
    copy = Kron(th.nn.Linear(6, 5).parameters(), lr=1e-3)
    copy.load_state_dict(state)
    assert int(copy._prob_step) == 3 and all(
        th.equal(a, b) for a, b in zip(opt.state[layer.weight]["Q"], copy.state[copy.param_groups[0]["params"][0]]["Q"])
    )


# ----------------------------------------------------------------------------- rl_zoo3 YAML
def test_yaml_names_kron_and_methods():
    pk = parse_kwargs_string("dict(policy_kwargs(encoder='minatar', psi='residual', psi_depth=2, optimizer='kron'), n_quantiles=5)")
    assert pk["optimizer_class"] is Kron and pk["features_extractor_kwargs"]["psi"] == "residual" and pk["n_quantiles"] == 5
    assert parse_kwargs_string("dict(policy_kwargs(encoder='minatar'), optimizer_class=Kron)")["optimizer_class"] is Kron
    pk = parse_kwargs_string("dict(optimizer_class=th.optim.AdamW, optimizer_kwargs=dict(weight_decay=0.1))")
    assert pk["optimizer_class"] is th.optim.AdamW
    with pytest.raises(ValueError, match="'os.system' is not allowed"):
        parse_kwargs_string("dict(optimizer_class=os.system)")
    import rl_zoo3.exp_manager as exp_manager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()  # rl_zoo3 eval()s YAML strings in its module namespace, where the hook put the names
    assert eval("dict(optimizer_class=Kron)", vars(exp_manager))["optimizer_class"] is Kron


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo", "rainbow"])
def test_rl_zoo3_yaml_trains_every_method(algo, tmp_path):
    """rl_zoo3's ExperimentManager reads (and eval()s) the YAML as `python -m rl_zoo3.train --conf-file` does."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    off_policy = dict(learning_starts=16, buffer_size=200, batch_size=8)
    tiny = {"ppo": dict(n_steps=16, batch_size=8, n_epochs=1), "rainbow": dict(off_policy, n_atoms=11, exploration_steps=20)}
    tiny = tiny.get(algo, off_policy)
    section = dict(
        policy="CnnPolicy", n_timesteps=32, **tiny,
        policy_kwargs="policy_kwargs(encoder='minatar', bottleneck='gap', psi='residual', psi_depth=1, weight_decay=0.01, "
                      "optimizer='kron', optimizer_kwargs=dict(max_size_triangular=64))",
    )  # fmt: skip
    conf = tmp_path / f"{algo}.yml"
    conf.write_text(yaml.safe_dump({"MinAtar/Breakout-v1": section}))
    manager = ExperimentManager(argparse.Namespace(), algo, "MinAtar/Breakout-v1", str(tmp_path), eval_freq=-1, device="cpu",
                                verbose=0, seed=0, config=str(conf), n_timesteps=32)  # fmt: skip
    model, _ = manager.setup_experiment()
    try:
        assert type(model.policy.optimizer) is Kron and model.policy.optimizer.param_groups[0]["weight_decay"] == 0.01
        ext = find_extractor(model)
        assert isinstance(ext.bottleneck.psi[1], MultiSkipResidual)
        before = ext.bottleneck.psi[1].blocks[0].linear0.weight.detach().clone()
        model.learn(32)
        assert int(model.policy.optimizer._prob_step) > 0 and not th.equal(before, ext.bottleneck.psi[1].blocks[0].linear0.weight)
    finally:
        model.env.close()


# ----------------------------------------------------------------------------- sweeps and report
def _spec(tmp_path, algos, fixed, **kw) -> SweepSpec:
    fields = dict(envs=["MinAtar/Breakout-v1"], algos=algos, encoders=["minatar"], bottlenecks=["gap"], width_scales=[1],
                  seeds=1, steps=48, eval_freq=48, eval_episodes=1, final_evals=1, storage=f"sqlite:///{tmp_path / 's.db'}",
                  study="methods", out_dir=str(tmp_path / "runs"), save_models=False, fixed=fixed)  # fmt: skip
    fields.update(kw)
    return SweepSpec(**fields)


def test_sweep_axes_reach_every_algorithm(tmp_path):
    off = dict(learning_starts=16, buffer_size=200, batch_size=8)
    spec = _spec(tmp_path, ["dqn", "qrdqn", "rainbow"], off, bottlenecks=["gap", "sparse"],
                 hyperparams={"optimizer": ["adam", "kron"], "weight_decay": [0, 0.1], "psi": ["dense", "residual"]})  # fmt: skip
    spec.validate()
    for params in spec.cells():
        _, _, pk, _ = resolve_run(spec, params)
        want = {"kron": Kron, "adam": th.optim.AdamW}[params["hp:optimizer"]]  # weight_decay given: Adam → AdamW
        assert pk["optimizer_class"] is want and pk["optimizer_kwargs"]["weight_decay"] == params["hp:weight_decay"]
        assert ("eps" in pk["optimizer_kwargs"]) == (want is th.optim.AdamW)  # the Zoo section's Adam ε carries over to AdamW only
        assert pk["features_extractor_kwargs"]["psi"] == params["hp:psi"]
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
        _spec(tmp_path, ["dqn"], off, hyperparams={"optimizer": ["lion"]}).validate()


@pytest.mark.slow
def test_sweep_trains_each_algorithm_with_the_methods_and_reports(tmp_path):
    """Two gradient updates per run (Kron on 512-wide residual layers is slow on CPU: docs/methods.md, "Cost per update")."""
    methods = {"psi": ["residual"], "psi_depth": [1], "optimizer": ["kron"], "weight_decay": [0.01]}
    run_sweep(_spec(tmp_path, ["dqn", "qrdqn", "rainbow"], dict(learning_starts=24, buffer_size=200, batch_size=8),
                    hyperparams=methods, study="off", steps=32, eval_freq=32), progress=False)  # fmt: skip
    run_sweep(_spec(tmp_path, ["ppo"], dict(n_steps=16, batch_size=16, n_epochs=1), hyperparams=methods, study="ppo", steps=32, eval_freq=32),
              progress=False)  # fmt: skip
    storage = f"sqlite:///{tmp_path / 's.db'}"
    df = load_runs([(storage, "off"), (storage, "ppo")])
    assert (df["state"] == "COMPLETE").all() and sorted(df["algo"]) == ["dqn", "ppo", "qrdqn", "rainbow"]
    for settings in df["settings"]:  # what each run trained with (settings.json)
        assert settings["policy_kwargs"]["optimizer_class"] == "sb3_gap.optim.Kron"
        assert settings["policy_kwargs"]["features_extractor_kwargs"]["psi"] == "residual"
    assert (df["params_effective_psi"] > 3 * 512 * 512).all()


def _fake(study: optuna.Study, spec: SweepSpec, params: dict, value: float, effective: int) -> None:
    dists = {k: CategoricalDistribution(v) for k, v in spec.search_space().items()}
    attrs = dict(wall_s=36.0, params_connection=1000, params_psi=10, params_total=5000, params_effective_psi=effective)
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value, intermediate_values={48: value}, user_attrs=attrs))


@pytest.mark.slow
def test_report_draws_method_comparison_and_effective_psi(tmp_path):
    spec = _spec(tmp_path, ["dqn"], {}, envs=["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"], bottlenecks=["flatten", "gap", "sparse"], seeds=3)
    study = open_study(spec)
    effective = {"flatten": 819_712, "gap": 8_704, "sparse": 82_432}
    for params in spec.cells():
        score = {"flatten": 1.0, "gap": 5.0, "sparse": 3.0}[params["bottleneck"]] + params["seed"]
        _fake(study, spec, params, score, effective[params["bottleneck"]])
    summary = build_report([(spec.storage, "methods")], tmp_path / "report", reps=200)
    text = summary.read_text()
    for name in ("methods.png", "effective_psi.png"):
        assert (tmp_path / "report" / name).stat().st_size > 10_000 and f"]({name})" in text
    gap_row = next(line for line in text.splitlines() if line.startswith("| dqn minatar gap ×1 |"))
    assert gap_row.rstrip(" |").endswith("8,704")
    # An old run without the count falls back to effective_total − phi.
    old = _spec(tmp_path, ["dqn"], {}, study="old")
    old_study = open_study(old)
    dists = {k: CategoricalDistribution(v) for k, v in old.search_space().items()}
    old_study.add_trial(optuna.trial.create_trial(params=old.cells()[0], distributions=dists, value=1.0,
                                                  user_attrs=dict(params_effective_total=700, params_phi=200)))  # fmt: skip
    assert load_runs([(old.storage, "old")])["params_effective_psi"].tolist() == [500]
    assert not math.isnan(load_runs([(spec.storage, "methods")])["params_effective_psi"].iloc[0])


def test_kron_options_are_checked_at_construction():
    from kron_torch import precond_update_prob_schedule

    from sb3_gap.optim import Kron

    params = [th.nn.Parameter(th.zeros(3, 3))]
    for bad, name in ((dict(b1=float("nan")), "b1"), (dict(b1=1.0), "b1"), (dict(lr=-1.0), "lr"), (dict(precond_lr=0.0), "precond_lr"),
                      (dict(max_size_triangular=0), "max_size_triangular"), (dict(memory_save_mode="some"), "memory_save_mode"),
                      (dict(preconditioner_update_probability=1.5), "preconditioner_update_probability")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"^(Unknown )?Kron {name}"):
            Kron(params, **bad)
        if name != "lr":  # (the learning rate comes from the algorithm) policy_kwargs refuses it before any model is built
            with pytest.raises(ValueError, match=rf"Kron {name}"):
                policy_kwargs(encoder="nature", optimizer="kron", optimizer_kwargs=bad)
    # a callable other than kron-torch's schedule could not be saved with the model: refused when built
    with pytest.raises(ValueError, match=r"callable other than kron-torch's schedule"):
        Kron(params, preconditioner_update_probability=lambda n: 0.5)
    # kron_torch's exported schedule is dist_kron's ProbScheduler: accepted, and the optimizer's state dict saves with it
    assert Kron(params, preconditioner_update_probability=precond_update_prob_schedule(min_prob=0.1)).state_dict()["kron"]
    Kron(params, preconditioner_update_probability=0.5, b1=0.0)
