"""Diagnostics: dormant/GraMa hand counts, exact resets, Grad-CAM localisation, callbacks in learn(), errors."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from helpers import ENV_ID, disk_full_on, one_line_error, temp_files, tiny_dqn, tiny_rainbow  # tests/ is on sys.path
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import configure

from sb3_gap import ConvExtractor, policy_kwargs
from sb3_gap.cli import main as cli_main
from sb3_gap.diagnostics import (
    DiagnosticsCallback,
    ReDoCallback,
    ReGraMaCallback,
    decision_values,
    dormant_fractions,
    effective_connection_params,
    feature_norms,
    find_head_consumers,
    grad_cam,
    grama_fractions,
    neuron_layers,
    neuron_magnitudes,
    reset_neurons,
)
from sb3_gap.params import find_extractor, parameter_report
from sb3_gap.rainbow import Rainbow

# --------------------------------------------------------------------------------------------
# Hand-built network: every activation is set by a bias, so the dormant / GraMa counts are known.
# --------------------------------------------------------------------------------------------

SPACE = gym.spaces.Box(0.0, 1.0, (1, 36, 36), np.float32)


def hand_built() -> tuple[ConvExtractor, th.Tensor]:
    """Nature φ (32, 64, 64 channels) → GAP → connection (512) → ψ layer (512), weights by hand."""
    ext = ConvExtractor(SPACE, encoder="nature", bottleneck="gap", psi_depth=1, channels_last=False)
    conv0, conv2, conv4 = ext.encoder.net[0], ext.encoder.net[2], ext.encoder.net[4]
    conn, psi = ext.bottleneck.connection, ext.bottleneck.psi[1]
    with th.no_grad():
        for layer in (conv0, conv2, conv4, conn, psi):
            layer.weight.zero_()
        # conv0: channels 0-4 negative bias, 5-7 zero bias (dead); 8 copies the pixel under its
        # kernel's first tap, lit in one image at one position only; the rest constant 1.
        conv0.bias.fill_(1.0)
        conv0.bias[:5] = -1.0
        conv0.bias[5:9] = 0.0
        conv0.weight[8, 0, 0, 0] = 1.0
        conv2.bias.fill_(1.0)
        conv2.bias[:3] = -0.5  # 3 dead channels
        conv4.bias.fill_(2.0)
        conv4.bias[:7] = 0.0  # 7 dead channels
        # connection: 110 dead (bias <= 0), 10 weak (0.01), 392 at 1.
        conn.bias.fill_(1.0)
        conn.bias[:100] = 0.0
        conn.bias[100:110] = -1.0
        conn.bias[110:120] = 0.01
        # ψ layer: 50 dead; reads connection units >= 200 only, with tiny weights that keep signs.
        psi.bias.fill_(2.0)
        psi.bias[:50] = -1.0
        psi.weight[:, 200:] = 0.001
    obs = th.zeros(2, 1, 36, 36)
    obs[0, 0, 0, 0] = 1.0  # seen by conv0 channel 8 at output position (0, 0) of image 0 only
    return ext, obs


def features_sum(features: th.Tensor) -> th.Tensor:
    return features.sum()


@pytest.mark.parametrize(
    "tau, counts",
    [
        # τ = 0: exactly silent neurons only. Channel 8 of conv0 has E|h| = 1/128 > 0.
        (0.0, {"encoder.net.0": 8, "encoder.net.2": 3, "encoder.net.4": 7, "bottleneck.connection": 110, "bottleneck.psi.1": 50}),
        (0.001, {"encoder.net.0": 8, "encoder.net.2": 3, "encoder.net.4": 7, "bottleneck.connection": 110, "bottleneck.psi.1": 50}),
        # τ = 0.025: conv0 channel 8 has score (1/128) / ((23 + 1/128) / 32) = 0.0109; the weak
        # connection units have 0.01 / ((392 + 0.1) / 512) = 0.0131; both now count.
        (0.025, {"encoder.net.0": 9, "encoder.net.2": 3, "encoder.net.4": 7, "bottleneck.connection": 120, "bottleneck.psi.1": 50}),
    ],
)
def test_dormant_fractions_equal_hand_counts(tau, counts):
    ext, obs = hand_built()
    report = dormant_fractions(ext, obs, tau=tau)
    assert {layer.name: layer.inactive for layer in report.layers} == counts
    assert {layer.name: layer.neurons for layer in report.layers} == {
        "encoder.net.0": 32,
        "encoder.net.2": 64,
        "encoder.net.4": 64,
        "bottleneck.connection": 512,
        "bottleneck.psi.1": 512,
    }
    phi = counts["encoder.net.0"] + counts["encoder.net.2"] + counts["encoder.net.4"]
    assert report.fraction("phi") == pytest.approx(phi / 160)
    assert report.fraction("bottleneck") == pytest.approx(counts["bottleneck.connection"] / 512)
    assert report.fraction("psi") == pytest.approx(counts["bottleneck.psi.1"] / 512)
    assert report.fraction() == pytest.approx(sum(counts.values()) / (160 + 1024))
    assert report.as_dict()["dormant/bottleneck"] == report.fraction("bottleneck")


def test_conv_scores_average_over_batch_and_space():
    ext, obs = hand_built()
    _, act, _, _ = neuron_magnitudes(ext, obs, gradients=False)
    # conv0 output is 8x8 per image; channel 8 is 1 at one position of one image: 1 / (2·64).
    assert act["encoder.net.0"][8].item() == pytest.approx(1 / 128)
    assert act["encoder.net.0"][9].item() == pytest.approx(1.0)
    assert act["encoder.net.0"].shape == (32,)


def test_grama_counts_gradients_not_activations():
    ext, obs = hand_built()
    report = grama_fractions(ext, obs, tau=0.001, loss_fn=features_sum)
    got = {layer.name: layer.inactive for layer in report.layers}
    # ψ: ∂L/∂z_j = 1[z_j > 0]: the 50 dead units. Connection: ∂L/∂z_i = 1[b_i > 0]·Σ_j W_ji 1[z_j>0],
    # zero for the 200 units with zero outgoing weights (this includes the 110 dead ones) although
    # 90 of them are active: GraMa sees what dormancy cannot. φ: the connection weights are zero,
    # so no gradient reaches φ, the whole layer is silent and every neuron is inactive.
    assert got == {"encoder.net.0": 32, "encoder.net.2": 64, "encoder.net.4": 64, "bottleneck.connection": 200, "bottleneck.psi.1": 50}
    dormant = dormant_fractions(ext, obs, tau=0.001)
    assert dormant.layers[3].inactive == 110
    # Parameters' .grad are untouched by the measurement.
    assert all(p.grad is None for p in ext.parameters())


def test_grama_gradient_values_on_conv_layer():
    ext, obs = hand_built()
    with th.no_grad():
        ext.bottleneck.connection.weight[:, 10:20] = 0.001  # conv4 channels 10..19 now reach ψ
    layers, _, grads, _ = neuron_magnitudes(ext, obs, loss_fn=features_sum)
    g = grads["encoder.net.4"]
    assert g.shape == (64,)
    # Channels 10..19 are live (bias 2) and read by the 392 + 10 positive connection units through
    # GAP over a 1x1 map. These channels add 10·2·0.001 = 0.02 to every connection unit, so the
    # 100 zero-bias units wake up; only units i ≥ 200 reach ψ (W2 = 0.001 to the 462 live ψ units):
    # ∂L/∂z_c = Σ_{i ≥ 200} W1_ic · 1[z1_i > 0] · Σ_j W2_ji 1[z2_j > 0] = 312 · 0.001 · 0.001 · 462.
    assert th.allclose(g[10:20], th.full((10,), 312 * 0.001 * 0.001 * 462), rtol=1e-4)
    assert th.count_nonzero(g) == 10
    report = grama_fractions(ext, obs, tau=0.001, loss_fn=features_sum)
    assert report.layers[2].inactive == 54


def test_feature_norms_and_effective_params():
    ext, obs = hand_built()
    norms = feature_norms(ext, obs)
    # φ output: 57 channels at 2, 7 at 0, on a 1x1 map → ||·|| = sqrt(57·4).
    assert norms["encoder"] == pytest.approx(np.sqrt(57 * 4), rel=1e-5)
    # ψ output: 50 dead, 462 at 2 + 0.001·Σ_{i≥200} relu(b_i) = 2 + 0.001·312.
    assert norms["bottleneck"] == pytest.approx(np.sqrt(462 * (2 + 0.312) ** 2), rel=1e-5)
    sparse = ConvExtractor(SPACE, encoder="nature", bottleneck="sparse", sparsity=0.75)
    assert effective_connection_params(sparse) == parameter_report(sparse).effective_connection == round(0.25 * 64 * 512)


# --------------------------------------------------------------------------------------------
# Resets touch exactly the flagged neurons' weights and optimizer state
# --------------------------------------------------------------------------------------------


def small_env() -> FakeImageEnv:
    return FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, channel_first=True)


def trained_dqn(**kw):
    kwargs = policy_kwargs(encoder="nature", bottleneck="flatten", psi_depth=1, layer_norm=True, channels_last=False, **kw)
    model = DQN("CnnPolicy", small_env(), buffer_size=64, learning_starts=0, batch_size=8, train_freq=1, policy_kwargs=kwargs, seed=0)
    model.learn(16)
    return model


@pytest.mark.parametrize("scale", [0.0, 0.25])
def test_reset_touches_only_flagged_neurons_and_their_adam_moments(scale):
    model = trained_dqn()
    ext = find_extractor(model)
    head = model.policy.q_net.q_net[0]
    layers = neuron_layers(ext, find_head_consumers(model.policy, ext))
    assert [layer.name for layer in layers if layer.resettable] == [
        "encoder.net.0",
        "encoder.net.2",
        "encoder.net.4",
        "bottleneck.connection",
        "bottleneck.psi.2",
    ]
    flags = {"encoder.net.0": 3, "encoder.net.4": 5, "bottleneck.connection": 7, "bottleneck.psi.2": 9}
    flagged = {}
    for layer in layers:
        if layer.name in flags:
            m = th.zeros(layer.module.weight.shape[0], dtype=th.bool)
            m[flags[layer.name]] = True
            flagged[layer.name] = m

    net, neck = ext.encoder.net, ext.bottleneck
    hw = ext.encoder_out_shape[1] * ext.encoder_out_shape[2]
    opt = model.policy.optimizer
    params = dict(model.policy.named_parameters())
    names = {id(p): n for n, p in params.items()}
    before = {n: p.detach().clone() for n, p in model.policy.state_dict().items()}
    state_before = {names[id(p)]: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}

    # Expected changes, written independently of sb3_gap.diagnostics.layers.
    def sel(t, idx):
        m = th.zeros_like(t, dtype=th.bool)
        m[idx] = True
        return m

    q = "q_net.features_extractor."
    incoming = {
        q + "encoder.net.0.weight": sel(net[0].weight, 3),
        q + "encoder.net.0.bias": sel(net[0].bias, 3),
        q + "encoder.net.4.weight": sel(net[4].weight, 5),
        q + "encoder.net.4.bias": sel(net[4].bias, 5),
        q + "bottleneck.connection.weight": sel(neck.connection.weight, 7),
        q + "bottleneck.connection.bias": sel(neck.connection.bias, 7),
        q + "bottleneck.psi.0.weight": sel(neck.psi[0].weight, 7),
        q + "bottleneck.psi.0.bias": sel(neck.psi[0].bias, 7),
        q + "bottleneck.psi.2.weight": sel(neck.psi[2].weight, 9),
        q + "bottleneck.psi.2.bias": sel(neck.psi[2].bias, 9),
        q + "bottleneck.psi.3.weight": sel(neck.psi[3].weight, 9),
        q + "bottleneck.psi.3.bias": sel(neck.psi[3].bias, 9),
    }
    outgoing = {
        q + "encoder.net.2.weight": sel(net[2].weight, (slice(None), 3)),
        q + "bottleneck.connection.weight": sel(neck.connection.weight, (slice(None), slice(5 * hw, 6 * hw))),
        q + "bottleneck.psi.2.weight": sel(neck.psi[2].weight, (slice(None), 7)),
        "q_net.q_net.0.weight": sel(head.weight, (slice(None), 9)),
    }
    result = reset_neurons(layers, flagged, opt, outgoing_scale=scale)
    assert result.neurons == {k: 1 for k in flags}

    after = model.policy.state_dict()
    for name, old in before.items():
        new = after[name]
        inc = incoming.get(name, th.zeros_like(old, dtype=th.bool))
        out = outgoing.get(name, th.zeros_like(old, dtype=th.bool))
        untouched = ~(inc | out)
        assert th.equal(new[untouched], old[untouched]), f"{name} changed outside the flagged neurons"
        if "target" in name:
            assert not (inc | out).any()
        out_only = out & ~inc
        assert th.equal(new[out_only], old[out_only] * scale), f"{name}: outgoing weights not scaled by {scale}"
        only_in = inc & ~out
        if only_in.any() and name.endswith("weight") and "psi.0" not in name and "psi.3" not in name:
            assert (new[only_in] != old[only_in]).float().mean() > 0.9, f"{name}: incoming weights were not redrawn"
            bound = 1 / np.sqrt(old[0].numel())  # PyTorch default init: |w| <= 1/sqrt(fan_in)
            assert new[only_in].abs().max() <= bound + 1e-6
        if (inc & out).any():
            # A weight between two reset neurons: fresh, then scaled as outgoing.
            assert new[inc & out].abs().max() <= 1 / np.sqrt(old[0].numel()) * scale + 1e-6
    # LayerNorm affine entries of reset neurons are back to (1, 0).
    assert neck.psi[0].weight[7] == 1 and neck.psi[0].bias[7] == 0
    for p, s in opt.state.items():
        name = names[id(p)]
        mask = incoming.get(name, th.zeros_like(p, dtype=th.bool)) | outgoing.get(name, th.zeros_like(p, dtype=th.bool))
        for key in ("exp_avg", "exp_avg_sq"):
            old, new = state_before[name][key], s[key]
            assert th.equal(new[~mask], old[~mask]), f"{name}.{key} changed outside the flagged entries"
            assert th.all(new[mask] == 0), f"{name}.{key} not reset"
        assert th.equal(s["step"], state_before[name]["step"])
    assert result.entries == sum(
        int((incoming.get(n, th.zeros(1, dtype=th.bool)) | outgoing.get(n, th.zeros(1, dtype=th.bool))).sum()) for n in set(incoming) | set(outgoing)
    )


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_redo_reset_of_silent_neurons_preserves_q_values(scale):
    model = DQN("CnnPolicy", small_env(), buffer_size=64, policy_kwargs=policy_kwargs(encoder="nature", bottleneck="gap", psi_depth=1), seed=0)
    ext = find_extractor(model)
    layers = neuron_layers(ext, find_head_consumers(model.policy, ext))
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    obs_t = model.policy.obs_to_tensor(obs)[0]
    _, act, _, _ = neuron_magnitudes(model, obs, gradients=False)
    # Neurons silent on this batch (τ = 0): their old outgoing weights carried nothing, and with
    # ReDo (scale 0) their redrawn incoming weights cannot reach the output either.
    flagged = {layer.name: act[layer.name] == 0 for layer in layers if layer.resettable}
    assert sum(int(f.sum()) for f in flagged.values()) > 50
    with th.no_grad():
        q_before = decision_values(model.policy, obs_t)
        reset_neurons(layers, flagged, model.policy.optimizer, outgoing_scale=scale)
        unchanged = th.allclose(q_before, decision_values(model.policy, obs_t), atol=1e-6)
    # Shrinking instead of zeroing lets the redrawn neurons act on the output.
    assert unchanged == (scale == 0.0)


# --------------------------------------------------------------------------------------------
# Grad-CAM highlights the region the reward depends on
# --------------------------------------------------------------------------------------------


class CornerBanditEnv(gym.Env):
    """
    One-step episodes on a 24x24 image with two 6x6 corner patches, each lit at random.
    The reward is 1 when the action says whether the *informative* corner is lit; the other
    corner is a distractor of the same look that carries no information.
    """

    observation_space = gym.spaces.Box(0, 255, (1, 24, 24), np.uint8)
    action_space = gym.spaces.Discrete(2)
    corners = {"top_left": (slice(0, 6), slice(0, 6)), "bottom_right": (slice(18, 24), slice(18, 24))}

    def __init__(self, informative: str = "top_left") -> None:
        self.informative = self.corners[informative]
        self.distractor = next(v for k, v in self.corners.items() if k != informative)
        self.lit = (0, 0)

    def frame(self, informative_lit: int, distractor_lit: int) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.uint8)
        obs[(0, *self.informative)] = 255 * informative_lit
        obs[(0, *self.distractor)] = 255 * distractor_lit
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.lit = tuple(int(v) for v in self.np_random.integers(0, 2, size=2))
        return self.frame(*self.lit), {}

    def step(self, action):
        reward = float(int(action) == self.lit[0])
        return self.frame(*self.lit), reward, True, False, {}


@pytest.mark.parametrize("informative", ["top_left", "bottom_right"])
@pytest.mark.slow
def test_grad_cam_highlights_the_informative_region(informative):
    env = CornerBanditEnv(informative)
    model = DQN(
        "CnnPolicy",
        env,
        gamma=0.0,
        learning_rate=1e-3,
        buffer_size=2_000,
        learning_starts=64,
        batch_size=32,
        train_freq=1,
        target_update_interval=50,
        exploration_fraction=0.5,
        seed=0,
        policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap"),
    )
    model.learn(400)  # ~340 updates; Q(s, a) = E[r] since γ = 0
    for lit in (0, 1):  # it learned the task, whatever the distractor shows
        for distractor_lit in (0, 1):
            assert model.predict(env.frame(lit, distractor_lit)[None], deterministic=True)[0][0] == lit
    both_lit = env.frame(1, 1)[None]
    cam = grad_cam(model, both_lit)[0]
    assert cam.shape == (24, 24) and 0.0 <= cam.min() and cam.max() == pytest.approx(1.0)
    inside = cam[env.informative].mean()
    distractor = cam[env.distractor].mean()
    assert inside > 2 * distractor, f"Grad-CAM mass: informative {inside:.3f}, distractor {distractor:.3f}"


def test_gradcam_cli_writes_a_png(tmp_path):
    from sb3_gap.cli import main

    env = CornerBanditEnv()
    model = QRDQN("CnnPolicy", env, buffer_size=64, learning_starts=0, batch_size=8, policy_kwargs=policy_kwargs(bottleneck="gap"), seed=0)
    model.save(tmp_path / "m.zip")
    np.save(tmp_path / "obs.npy", env.frame(1, 0)[None])
    out = tmp_path / "figs" / "cam.png"
    main(["gradcam", str(tmp_path / "m.zip"), "--algo", "qrdqn", "--obs", str(tmp_path / "obs.npy"), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out).ndim == 3
    assert not list(out.parent.glob("*.png.*")) and len(list(out.parent.iterdir())) == 1  # no temp file left


def test_gradcam_cli_from_env(tmp_path):
    from sb3_gap.cli import main

    env = gym.make("MinAtar/Breakout-v1")
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=8, policy_kwargs=policy_kwargs(bottleneck="gap"), seed=0)
    model.save(tmp_path / "ppo.zip")
    out = tmp_path / "cam.png"
    main(["gradcam", str(tmp_path / "ppo.zip"), "--algo", "ppo", "--env", "MinAtar/Breakout-v1", "--steps", "3", "--out", str(out)])
    assert out.stat().st_size > 1000


def test_gradcam_cli_from_a_dopamine_atari_id(tmp_path):
    """Atari ids get their protocol's env (4 stacked 84x84 frames), as the sweeps build it."""
    from sb3_gap.cli import main
    from sb3_gap.envs import make_atari_vec_env

    env = make_atari_vec_env("Pong", protocol="Dopamine", n_envs=1, seed=0)
    Rainbow("CnnPolicy", env, buffer_size=100, policy_kwargs=policy_kwargs(encoder="nature", bottleneck="gap"), seed=0).save(tmp_path / "rb.zip")
    out = tmp_path / "cam.png"
    main(["gradcam", str(tmp_path / "rb.zip"), "--algo", "rainbow", "--env", "Dopamine/Pong-v5", "--steps", "3", "--out", str(out)])
    assert out.stat().st_size > 1000


# --------------------------------------------------------------------------------------------
# Callbacks inside learn()
# --------------------------------------------------------------------------------------------


def make_model(algo, bottleneck="gap"):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=2, channel_first=False)
    kw = policy_kwargs(encoder="nature", bottleneck=bottleneck, psi_depth=1)
    if algo is Rainbow:  # full Rainbow: C51, dueling, noisy, double, 3-step, prioritized replay
        return Rainbow("CnnPolicy", env, buffer_size=200, learning_starts=8, batch_size=8, train_freq=1, n_steps=3,
                       target_update_interval=10, dueling=True, noisy=True, double_q=True, policy_kwargs=kw, seed=0)  # fmt: skip
    if algo is PPO:
        return PPO("CnnPolicy", env, n_steps=32, batch_size=8, n_epochs=2, policy_kwargs=kw, seed=0)
    return algo("CnnPolicy", env, buffer_size=200, learning_starts=0, batch_size=8, train_freq=1, target_update_interval=10, policy_kwargs=kw, seed=0)


def expected_updates(model, steps):
    if isinstance(model, PPO):
        return (steps // model.n_steps) * model.n_epochs * (model.n_steps // model.batch_size)
    return model._n_updates  # off-policy: one optimizer step per gradient step


def forward_hooks(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


@pytest.mark.parametrize("algo", [DQN, QRDQN, PPO, Rainbow], ids=lambda a: a.__name__)
@pytest.mark.slow
def test_callbacks_run_inside_learn(tmp_path, algo):
    model = make_model(algo, bottleneck="flatten")
    ext = find_extractor(model)
    target = getattr(model.policy, "q_net_target", None) or getattr(model.policy, "quantile_net_target", None)
    diag = DiagnosticsCallback(every=4, tau=[0.0, 0.025], per_layer=True)
    redo = ReDoCallback(every=8, tau=0.1)
    regrama = ReGraMaCallback(every=8, tau=0.1, modules=["bottleneck", "psi"])
    steps = 64
    model.learn(steps, callback=[diag, redo, regrama])

    n = expected_updates(model, steps)
    assert diag.n_updates == redo.n_updates == n and n >= 16
    assert len(diag.history) == n // 4 and len(redo.resets) == n // 8 == len(regrama.resets)
    last = diag.history[-1]
    for key in (
        "dormant@0/phi",
        "dormant@0.025/bottleneck",
        "grama@0.025/psi",
        "dormant@0/layer/bottleneck.connection",
        "feature_norm/encoder",
        "feature_norm/bottleneck",
        "effective_connection_params",
    ):
        assert key in last, key
    # Zeroed outgoing weights of reset φ channels lower the non-zero connection count.
    assert last["feature_norm/encoder"] > 0 and 0 < last["effective_connection_params"] <= parameter_report(model).connection
    assert all(0.0 <= v <= 1.0 for k, v in last.items() if k.startswith(("dormant", "grama")))
    assert any(r.total > 0 for r in redo.resets), "tau=0.1 on random images should flag some neurons"
    # ReGraMa only touched the modules it was given.
    assert all(name.startswith("bottleneck") for r in regrama.resets for name in r.neurons)
    # Hooks are gone after learn(), the target network is still the algorithm's business.
    assert forward_hooks(model.policy) == 0 and not model.policy.optimizer._optimizer_step_post_hooks
    if target is not None:
        model.learn(10, reset_num_timesteps=False)  # a target sync still works
    # Save / load round trip keeps the (reset) weights.
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert th.equal(a, b)
    assert ext is find_extractor(model)


def test_diagnostics_reach_the_sb3_logger(tmp_path):
    model = make_model(PPO)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(64, callback=DiagnosticsCallback(every=2))
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in (
        "diagnostics/dormant/phi",
        "diagnostics/dormant/bottleneck",
        "diagnostics/dormant/psi",
        "diagnostics/grama/all",
        "diagnostics/feature_norm/bottleneck",
        "diagnostics/effective_connection_params",
    ):
        assert key in header, key


def test_callbacks_from_rl_zoo_yaml_entries():
    from rl_zoo3.utils import get_callback_list

    callbacks = get_callback_list(
        {
            "callback": [
                "sb3_gap.diagnostics.DiagnosticsCallback",
                {"sb3_gap.diagnostics.ReDoCallback": {"every": 8, "tau": 0.1, "modules": ["psi"]}},
                {"sb3_gap.diagnostics.callbacks.ReGraMaCallback": {"every": 16, "outgoing_scale": 0.0}},
            ]
        }
    )
    assert [type(c).__name__ for c in callbacks] == ["DiagnosticsCallback", "ReDoCallback", "ReGraMaCallback"]
    assert callbacks[1].every == 8 and callbacks[1].modules == ("psi",) and callbacks[2].outgoing_scale == 0.0
    model = make_model(DQN)
    model.learn(16, callback=callbacks)
    assert callbacks[1].n_updates == 16 and len(callbacks[1].resets) == 2


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DiagnosticsCallback(every=0), r"every must be a positive integer .* got 0"),
        (lambda: ReDoCallback(every=-5), r"every must be a positive integer .* got -5"),
        (lambda: ReGraMaCallback(every=2.5), r"every must be a positive integer .* got 2.5"),
        (lambda: DiagnosticsCallback(tau=-0.1), r"tau must be a number >= 0 .* got -0.1"),
        (lambda: DiagnosticsCallback(tau=[0.0, -1]), r"tau must be a number >= 0 .* got -1"),
        (lambda: ReDoCallback(tau=float("nan")), r"tau must be a number >= 0 .* got nan"),
        (lambda: ReDoCallback(modules=["phi", "head"]), r"Unknown module name\(s\) \['head'\]; valid choices: \['phi', 'bottleneck', 'psi'\]"),
        (lambda: ReGraMaCallback(modules="encoder"), r"Unknown module name\(s\) \['encoder'\]; valid choices: \['phi', 'bottleneck', 'psi'\]"),
        (lambda: ReGraMaCallback(outgoing_scale=1.5), r"outgoing_scale must be a number in \[0, 1\] .* got 1.5"),
        (lambda: dormant_fractions(hand_built()[0], hand_built()[1], tau=-1), r"tau must be a number >= 0 .* got -1"),
        (lambda: dormant_fractions(hand_built()[0], hand_built()[1]).fraction("head"), r"Unknown module name\(s\) \['head'\]; valid choices"),
        (lambda: grad_cam(hand_built()[0], hand_built()[1]), r"grad_cam needs an SB3 model or policy"),
    ],
)
def test_bad_arguments_name_value_and_choices(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_models_without_sb3_gap_extractor_are_refused():
    model = DQN("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40, n_channels=1), buffer_size=10)
    with pytest.raises(ValueError, match=r"No sb3_gap ConvExtractor found in DQN"):
        model.learn(4, callback=ReDoCallback(every=2))


@pytest.mark.parametrize("algo", [DQN, QRDQN, PPO, Rainbow], ids=lambda a: a.__name__)
def test_grad_cam_explains_the_greedy_action_of_every_algorithm(algo):
    model = make_model(algo)
    obs = np.stack([model.observation_space.sample() for _ in range(3)])
    with th.no_grad():
        values = decision_values(model.policy, model.policy.obs_to_tensor(obs)[0])
    if algo is not PPO:  # value-based: the greedy action is what predict() plays
        assert np.array_equal(values.argmax(-1).cpu().numpy(), model.predict(obs, deterministic=True)[0])
    greedy = grad_cam(model, obs)
    chosen = grad_cam(model, obs, action=values.argmax(-1).cpu().numpy())
    assert greedy.shape == (3, 40, 40) and np.allclose(greedy, chosen)


def test_rainbow_noisy_dueling_head_outgoing_weights():
    model = make_model(Rainbow)
    ext = find_extractor(model)
    heads = find_head_consumers(model.policy, ext)
    assert heads == [model.policy.q_net.head.advantage[0], model.policy.q_net.head.value[0]]
    last = [layer for layer in neuron_layers(ext, heads) if layer.resettable][-1]
    assert last.name == "bottleneck.psi.1"
    assert {id(s.param) for s in last.outgoing} == {id(h.weight_mu) for h in heads} | {id(h.weight_sigma) for h in heads}


# --------------------------------------------------------------------------------------------
# sb3-gap gradcam: the model, --algo and --env must agree; one-line errors
# --------------------------------------------------------------------------------------------


def test_gradcam_missing_model_and_unknown_env_are_one_line(tmp_path, capsys):
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "nope.zip"), "--algo", "dqn", "--env", ENV_ID], "gradcam")
    assert f"model file '{tmp_path / 'nope.zip'}' does not exist" in line and ".zip.zip" not in line
    tiny_dqn().save(tmp_path / "m.zip")
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", "MinAtar/Breakout-v9"], "gradcam")
    assert "Unknown env id 'MinAtar/Breakout-v9'" in line and "MinAtar/Breakout-v1" in line


def test_gradcam_refuses_an_env_other_than_the_models(tmp_path, capsys):
    tiny_dqn().save(tmp_path / "breakout.zip")
    out = tmp_path / "cam.png"
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "breakout.zip"), "--algo", "dqn", "--env", "MinAtar/Asterix-v1",
                                   "--steps", "1", "--out", str(out)], "gradcam")  # fmt: skip
    assert "Discrete(5)" in line and "Discrete(3)" in line and "trained on another env" in line
    assert not out.exists()
    # A sweep run folder records its env: --env must agree with it, and defaults to it.
    run = tmp_path / "run"
    run.mkdir()
    tiny_dqn().save(run / "model.zip")
    (run / "settings.json").write_text(json.dumps({"env": ENV_ID, "env_settings": {}}))
    line = one_line_error(capsys, ["gradcam", str(run / "model.zip"), "--algo", "dqn", "--env", "MinAtar/Asterix-v1"], "gradcam")
    assert f"was trained on '{ENV_ID}'" in line and "settings.json" in line
    cli_main(["gradcam", str(run / "model.zip"), "--algo", "dqn", "--steps", "1", "--out", str(out)])
    assert out.stat().st_size > 1000


def test_gradcam_algo_must_match_the_models(tmp_path, capsys):
    tiny_rainbow().save(tmp_path / "rainbow.zip")
    tiny_dqn().save(tmp_path / "dqn.zip")
    out = tmp_path / "cam.png"
    for path, given, held in ((tmp_path / "rainbow.zip", "dqn", "rainbow"), (tmp_path / "dqn.zip", "rainbow", "dqn")):
        line = one_line_error(capsys, ["gradcam", str(path), "--algo", given, "--env", ENV_ID, "--steps", "1", "--out", str(out)], "gradcam")
        assert f"holds a {held} model" in line and f"--algo {given}" in line and f"--algo {held}" in line, line
    assert not out.exists()
    cli_main(["gradcam", str(tmp_path / "rainbow.zip"), "--algo", "rainbow", "--env", ENV_ID, "--steps", "1", "--out", str(out)])
    assert out.stat().st_size > 1000


def test_gradcam_accepts_ale_ids_before_ale_py_is_imported(fresh_registry, tmp_path):
    from sb3_contrib import QRDQN

    from sb3_gap.envs.protocols import protocol_for

    venv = protocol_for("ALE/Pong-v5").make_env("ALE/Pong-v5", 1, 0, False)
    QRDQN("CnnPolicy", venv, buffer_size=64, batch_size=8, policy_kwargs=policy_kwargs(encoder="nature", bottleneck="gap"), seed=0).save(
        tmp_path / "m.zip"
    )
    venv.close()
    for key in [k for k, s in dict(gym.registry).items() if str(s.entry_point).startswith("ale_py")]:
        del gym.registry[key]  # building the model registered them: back to a fresh process's registry for the CLI
    out = tmp_path / "cam.png"
    cli_main(["gradcam", str(tmp_path / "m.zip"), "--algo", "qrdqn", "--env", "ALE/Pong-v5", "--steps", "2", "--out", str(out)])
    assert out.stat().st_size > 1000


def test_gradcam_on_a_full_disk_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    tiny_dqn().save(tmp_path / "m.zip")
    out = tmp_path / "cam.png"
    disk_full_on(monkeypatch, "cam.png")
    line = one_line_error(
        capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", ENV_ID, "--steps", "1", "--out", str(out)], "gradcam"
    )
    assert "No space left on device" in line and str(out) in line, line
    assert not out.exists() and temp_files(tmp_path) == [] and not list(tmp_path.glob("*.png"))
