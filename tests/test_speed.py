"""Speed features: compiled updates (Rainbow ``compile=True``, ``compile_policy``), the replay on the device,
``sb3-gap sweep --workers auto``, and the CUDA checks (skipped without a GPU; benchmarks/gpu_check.sh runs them)."""

from __future__ import annotations

import copy
import functools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import Logger

from sb3_gap import Rainbow, compile_policy, policy_kwargs
from sb3_gap.compile import compiler_problem
from sb3_gap.rainbow.buffers import RainbowReplayBuffer
from sb3_gap.sweep import workers as sweep_mod
from sb3_gap.sweep.cli import build_parser

CUDA = th.cuda.is_available()
# Inductor's first C++ build takes minutes on 2 busy CPU cores (docs/benchmarks_speed.md, "Compile time"), too
# long for the suite: on CPU the compile tests trace with Dynamo + AOT autograd (backend "aot_eager",
# the same graphs and backward, no code generation) unless SB3_GAP_INDUCTOR_TESTS=1 (the CUDA cases always use Inductor).
INDUCTOR_ON_CPU = os.environ.get("SB3_GAP_INDUCTOR_TESTS") == "1"


@pytest.fixture
def cpu_compile_backend(monkeypatch):
    """On CPU without SB3_GAP_INDUCTOR_TESTS=1, make ``torch.compile`` use the ``aot_eager`` backend."""
    if not INDUCTOR_ON_CPU:
        monkeypatch.setattr(th, "compile", functools.partial(th.compile, backend="aot_eager"))


needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (benchmarks/gpu_check.sh runs these on a GPU machine)")


def _compile_marks(device: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.timeout(300)]  # Inductor's first build of a tiny graph: ~15-30 s on 2 busy cores
    if device == "cuda":
        marks.append(needs_cuda)
    if device == "cpu" or CUDA:
        problem = compiler_problem(device)
        marks.append(pytest.mark.skipif(problem is not None, reason=str(problem)))
    return marks


COMPILE_CASES = [
    pytest.param("cpu", None, marks=_compile_marks("cpu"), id="cpu"),
    pytest.param("cuda", None, marks=_compile_marks("cuda"), id="cuda"),
    pytest.param("cuda", "reduce-overhead", marks=_compile_marks("cuda"), id="cuda-graphs"),
]
# A tiny network and few atoms so that compiling takes seconds (C51 + 3-step + PER: Rainbow's defaults).
TINY = dict(buffer_size=600, learning_starts=300, batch_size=16, n_atoms=11, policy_kwargs=dict(net_arch=[16]), seed=0)


def _logged_loss(model: Rainbow | DQN) -> float:
    return float(model.logger.name_to_value["train/loss"])


def _twin(model: Rainbow, **changes: object) -> Rainbow:
    """A model of the same settings with ``changes``, the same weights, optimizer state and replay."""
    twin = Rainbow("MlpPolicy", model.env, device=model.device, **{**TINY, **changes})
    twin.policy.load_state_dict(model.policy.state_dict())
    twin.policy.optimizer.load_state_dict(model.policy.optimizer.state_dict())
    twin.replay_buffer = copy.deepcopy(model.replay_buffer)
    twin.set_logger(Logger(folder=None, output_formats=[]))
    return twin


@pytest.mark.parametrize("device, mode", COMPILE_CASES)
@pytest.mark.slow
def test_rainbow_compile_matches_eager(device, mode, tmp_path, request):
    if device == "cpu":
        request.getfixturevalue("cpu_compile_backend")
    eager = Rainbow("MlpPolicy", gym.make("CartPole-v1"), device=device, **TINY)
    eager.learn(TINY["learning_starts"])  # fills the replay; no update yet
    compiled = _twin(eager, compile=True, compile_mode=mode)
    assert compiled._compiled_update is not None
    tol = dict(rtol=1e-4, atol=1e-5) if device == "cpu" else dict(rtol=2e-3, atol=1e-4)
    for step in range(3):
        for model in (eager, compiled):
            np.random.seed(step)  # the same PER batch for both
            model.train(gradient_steps=1, batch_size=TINY["batch_size"])
        np.testing.assert_allclose(_logged_loss(compiled), _logged_loss(eager), **tol)
    for (name, p_eager), p_compiled in zip(eager.policy.named_parameters(), compiled.policy.parameters()):
        np.testing.assert_allclose(p_compiled.detach().cpu(), p_eager.detach().cpu(), err_msg=name, **tol)
    np.testing.assert_allclose(compiled.replay_buffer.tree.nodes, eager.replay_buffer.tree.nodes, **tol)

    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(compiled.predict(obs, deterministic=True)[0], eager.predict(obs, deterministic=True)[0])
    # The compile time of both functions is kept and logged.
    assert set(compiled.compile_times) == {"update", "act"} and all(t > 0 for t in compiled.compile_times.values())
    compiled.train(gradient_steps=1, batch_size=TINY["batch_size"])
    assert compiled.logger.name_to_value["train/compile_s"] == pytest.approx(sum(compiled.compile_times.values()))

    # Saved as plain modules; loading compiles again (lazily), or not when overridden.
    compiled.save(tmp_path / "m")
    assert not any("_orig_mod" in key for key in compiled.policy.state_dict())
    loaded = Rainbow.load(tmp_path / "m", device=device)
    assert loaded.compile and loaded.compile_mode == mode and loaded._compiled_update is not None
    assert loaded.compile_times == {}
    eager_load = Rainbow.load(tmp_path / "m", device=device, compile=False)
    assert eager_load._compiled_update is None and eager_load.policy._compiled_act is None


@pytest.mark.timeout(300)
@pytest.mark.skipif(compiler_problem("cpu") is not None, reason=str(compiler_problem("cpu")))
@pytest.mark.slow
def test_compile_policy_dqn_matches_eager(cpu_compile_backend):
    kwargs = dict(buffer_size=600, learning_starts=300, batch_size=16, policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu")
    eager = DQN("MlpPolicy", gym.make("CartPole-v1"), **kwargs)
    eager.learn(300)
    compiled = DQN("MlpPolicy", gym.make("CartPole-v1"), **kwargs)
    compiled.policy.load_state_dict(eager.policy.state_dict())
    compiled.replay_buffer = copy.deepcopy(eager.replay_buffer)
    compiled.set_logger(Logger(folder=None, output_formats=[]))
    keys = list(compiled.policy.state_dict())
    assert compile_policy(compiled) == ["q_net", "q_net_target"]
    assert list(compiled.policy.state_dict()) == keys  # modules compiled in place, no _orig_mod wrapper
    for step in range(3):
        for model in (eager, compiled):
            np.random.seed(step)
            model.train(gradient_steps=1, batch_size=16)
        np.testing.assert_allclose(_logged_loss(compiled), _logged_loss(eager), rtol=1e-4, atol=1e-6)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(compiled.predict(obs, deterministic=True)[0], eager.predict(obs, deterministic=True)[0])


def test_compile_arguments_are_checked(monkeypatch):
    with pytest.raises(ValueError, match=r"compile_mode 'fast'.*valid choices"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, compile=True, compile_mode="fast")
    with pytest.raises(ValueError, match=r"compile must be True or False, got 'yes'"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, compile="yes")
    with pytest.raises(ValueError, match=r"'reduce-overhead' captures CUDA graphs.*device=cpu"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, compile=True, compile_mode="reduce-overhead", device="cpu")
    with pytest.raises(ValueError, match=r"'reduce-overhead' captures CUDA graphs"):
        compile_policy(DQN("MlpPolicy", "CartPole-v1", buffer_size=100, device="cpu"), mode="reduce-overhead")
    # Without a C++ compiler: a one-line error when asked for, eager with a warning when a saved model asks for it.
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in compiler_problem("cpu")
    with pytest.raises(ValueError, match=r"compile=True: torch.compile needs a C\+\+ compiler"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, compile=True, device="cpu")
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, device="cpu")
    model.compile = True
    with pytest.warns(UserWarning, match="runs eagerly"):
        model._setup_compile()
    assert model._compiled_update is None and model.policy._compiled_act is None


# ---------------------------------------------------------------------------------------------
# The replay on the device


def _filled_buffer(device: str) -> RainbowReplayBuffer:
    space = gym.spaces.Box(0, 255, (4, 10, 10), np.uint8)
    buffer = RainbowReplayBuffer(200, space, gym.spaces.Discrete(3), device=device, n_steps=3, frame_stack=4)
    rng = np.random.default_rng(0)
    obs = np.zeros((1, 4, 10, 10), np.uint8)
    for t in range(60):
        frame = rng.integers(0, 255, (1, 1, 10, 10), dtype=np.uint8)
        next_obs = np.concatenate([obs[:, 1:], frame], axis=1)
        done = np.array([t % 17 == 16])
        buffer.add(obs, next_obs, np.array([[t % 3]]), np.array([float(t)]), done, [{}])
        obs = np.zeros_like(obs) if done[0] else next_obs
    return buffer


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_replay_samples_land_on_device(device):
    reference, buffer = _filled_buffer("cpu"), _filled_buffer(device)
    np.random.seed(0)
    expected = reference.sample(16, beta=0.5)
    np.random.seed(0)
    got = buffer.sample(16, beta=0.5)
    for name, want, have in zip(got._fields, expected, got):
        if isinstance(have, th.Tensor):
            assert have.device.type == device, name
            assert have.dtype == want.dtype, name
            np.testing.assert_array_equal(have.cpu().numpy(), want.numpy(), err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)


@needs_cuda
def test_rainbow_trains_on_cuda():
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    model = Rainbow("CnnPolicy", env, buffer_size=400, learning_starts=100, batch_size=16, train_freq=4,
                    policy_kwargs=policy_kwargs(encoder="nature", bottleneck="gap"), seed=0, device="cuda")  # fmt: skip
    model.learn(400)
    assert model._n_updates == 75
    assert all(p.is_cuda for p in model.policy.parameters())
    assert np.isfinite(model.logger.name_to_value["train/loss"])
    assert model.replay_buffer.sample(8, beta=0.5).observations.is_cuda


# ---------------------------------------------------------------------------------------------
# sb3-gap sweep --workers auto


def test_parse_workers():
    assert sweep_mod.parse_workers("auto") == "auto" and sweep_mod.parse_workers("3") == 3
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match=rf"--workers {bad}"):
            sweep_mod.parse_workers(bad)
    args = build_parser().parse_args(["--envs", "CartPole-v1", "--workers", "auto"])
    assert args.workers == "auto"


@pytest.mark.parametrize(
    "device, cpus, gpus, cells, expected",
    [
        ("auto", 2, 0, 8, (2, 1)),  # one worker per core, one thread each
        ("cpu", 16, 0, 8, (8, 2)),  # no more workers than cells: the spare cores become threads
        ("cpu", 1, 0, 8, (1, 1)),
        ("cuda", 16, 1, 8, (sweep_mod.WORKERS_PER_GPU, 16 // sweep_mod.WORKERS_PER_GPU)),
        ("auto", 16, 2, 100, (2 * sweep_mod.WORKERS_PER_GPU, 16 // (2 * sweep_mod.WORKERS_PER_GPU))),
        ("cuda", 2, 1, 8, (2, 1)),  # never more workers than cores
        ("cuda:0", 16, 2, 100, (sweep_mod.WORKERS_PER_GPU, 16 // sweep_mod.WORKERS_PER_GPU)),  # one named GPU
    ],
)
def test_auto_workers(monkeypatch, device, cpus, gpus, cells, expected):
    monkeypatch.setattr(sweep_mod, "available_cpus", lambda: cpus)
    monkeypatch.setattr(th.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(th.cuda, "device_count", lambda: gpus)
    assert sweep_mod.auto_workers(device, n_cells=cells) == expected


def test_auto_workers_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"--workers auto with device='cuda'.*no CUDA device"):
        sweep_mod.auto_workers("cuda", n_cells=4)


def test_sweep_workers_auto_spawns_counted_workers(monkeypatch, tmp_path):
    """``run_sweep(workers="auto")`` starts the computed number of processes with the computed threads."""
    started = []

    class FakeProcess:
        def __init__(self, target, args, name):
            started.append((target, args, name))
            self.name, self.exitcode = name, 0

        def start(self):
            pass

        def is_alive(self):
            return False

        def join(self):
            pass

    class FakeContext:
        Process = FakeProcess

    monkeypatch.setattr(sweep_mod, "available_cpus", lambda: 4)
    monkeypatch.setattr(sweep_mod.mp, "get_context", lambda method: FakeContext())
    spec = sweep_mod.SweepSpec(envs=["MinAtar/Breakout-v1"], algos=["qrdqn"], bottlenecks=["flatten", "gap"], width_scales=[1, 2],
                               steps=200, eval_freq=100, storage=f"sqlite:///{tmp_path}/s.db", out_dir=str(tmp_path / "runs"),
                               save_models=False, device="cpu")  # fmt: skip
    sweep_mod.run_sweep(spec, workers="auto", progress=False)
    assert len(started) == 4  # 4 cells, 4 cores
    assert all(args[1] == 1 and args[0].device == "cpu" for _, args, _ in started)
