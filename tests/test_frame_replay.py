"""FrameReplayBuffer against SB3's own buffers: fed the same stream of transitions (what SB3's
``OffPolicyAlgorithm._store_transition`` passes, from real ``VecFrameStack`` envs), it returns the same
batches as ``ReplayBuffer`` (n_steps=1) and ``NStepReplayBuffer`` (n_steps > 1) for the same indices,
including episode ends, truncations, frame stacks padded at resets, wrap-around and several envs;
then in SB3's DQN and sb3-contrib's QR-DQN, through save/load, and at Atari scale. An n-step buffer discounts
with the algorithm's gamma, and a loaded buffer with other n-step settings is refused."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from helpers import frame_dqn  # tests/ is on sys.path (pytest's rootdir-relative import)
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

from sb3_gap.rainbow.buffers import RainbowReplayBuffer
from sb3_gap.replay import FrameReplayBuffer, infer_frame_stack


class ImageEnv(gym.Env):
    """Tiny channel-last image env: every frame is distinct, random rewards and terminations."""

    def __init__(self, seed: int, channels: int = 1, p_term: float = 0.1) -> None:
        self.observation_space = spaces.Box(0, 255, shape=(6, 7, channels), dtype=np.uint8)
        self.action_space = spaces.Discrete(3)
        self.rng = np.random.default_rng(seed)
        self.p_term = p_term

    def _frame(self) -> np.ndarray:
        return self.rng.integers(1, 256, size=self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        if seed is not None:  # VecEnv.seed(s) gives env i the seed s + i
            self.rng = np.random.default_rng(seed)
        return self._frame(), {}

    def step(self, action):
        return self._frame(), float(self.rng.normal()), bool(self.rng.uniform() < self.p_term), False, {}


def make_venv(n_envs: int, frame_stack: int, channels: int = 1) -> DummyVecEnv:
    """Episodes end by termination or by a 7-step time limit; frames stacked the Atari way (last, then transposed)."""
    venv = DummyVecEnv([lambda i=i: gym.wrappers.TimeLimit(ImageEnv(i, channels), 7) for i in range(n_envs)])
    if frame_stack > 1:
        venv = VecFrameStack(venv, n_stack=frame_stack)
    return VecTransposeImage(venv)


def feed(venv, buffers, n_adds: int, seed: int = 0) -> None:
    """Add n_adds steps to every buffer, as SB3's _store_transition does (next_obs = terminal_observation)."""
    rng = np.random.default_rng(seed)
    venv.seed(seed)
    obs = venv.reset()
    for _ in range(n_adds):
        action = rng.integers(0, 3, size=venv.num_envs)
        new_obs, reward, done, infos = venv.step(action)
        next_obs = new_obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = infos[i]["terminal_observation"]
        for buffer in buffers:
            buffer.add(obs, next_obs, action, reward, done, infos)
        obs = new_obs


def batch_at(buffer, inds: np.ndarray, envs: np.ndarray, monkeypatch) -> list[np.ndarray | None]:
    """``buffer._get_samples(inds)`` with the env of each row fixed to ``envs`` (SB3 draws it with np.random.randint)."""
    with monkeypatch.context() as m:
        m.setattr(np.random, "randint", lambda *args, **kwargs: envs.copy())
        batch = buffer._get_samples(inds)
    return [None if x is None else x.numpy() for x in batch]


def sampleable(buffer: FrameReplayBuffer) -> np.ndarray:
    """Every step the frame buffer can sample: all stored ones but the frame_stack - 1 oldest of a full buffer."""
    if not buffer.full:
        return np.arange(buffer.pos)
    lost = buffer.frame_stack - 1
    return (buffer.pos + lost + np.arange(buffer.buffer_size - lost)) % buffer.buffer_size


def assert_same_batches(ours: FrameReplayBuffer, sb3: ReplayBuffer, monkeypatch) -> int:
    """Every (step, env) pair: identical observations, actions, next observations, dones, rewards, discounts."""
    steps = sampleable(ours)
    inds, envs = np.repeat(steps, ours.n_envs), np.tile(np.arange(ours.n_envs), len(steps))
    a, b = batch_at(ours, inds, envs, monkeypatch), batch_at(sb3, inds, envs, monkeypatch)
    fields = ("observations", "actions", "next_observations", "dones", "rewards", "discounts")
    for name, x, y in zip(fields, a, b):
        if y is None:
            assert x is None, name
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, y.dtype, x.shape, y.shape)
        np.testing.assert_array_equal(x, y, err_msg=name)
    return len(inds)


@pytest.mark.parametrize("frame_stack", [4, 1])
@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("n_adds", [20, 75])  # 75 > 24 // n_envs slots: wrapped around, full
@pytest.mark.parametrize("n_steps", [1, 3, 5])
def test_batches_equal_sb3_replay_buffers(frame_stack: int, n_envs: int, n_adds: int, n_steps: int, monkeypatch) -> None:
    venv = make_venv(n_envs, frame_stack)
    size = 24 * n_envs
    space, act = venv.observation_space, venv.action_space
    sb3 = (NStepReplayBuffer(size, space, act, "cpu", n_envs, n_steps=n_steps, gamma=0.9) if n_steps > 1
           else ReplayBuffer(size, space, act, "cpu", n_envs))  # fmt: skip
    ours = FrameReplayBuffer(size, space, act, "cpu", n_envs, n_steps=n_steps, gamma=0.9, frame_stack=frame_stack)
    assert ours.frames.shape == (24, n_envs, 1, 6, 7)  # one frame per slot, stacked or not
    feed(venv, [sb3, ours], n_adds, seed=n_envs + n_steps)
    assert ours.timeouts.any() and (ours.dones > ours.timeouts).any()  # truncations and terminations
    assert not ours.dones[ours.pos - 1].all()  # an ongoing episode at the write head (SB3 bootstraps there)
    assert ours.pos == sb3.pos and ours.full == sb3.full and ours.size() == sb3.size()
    assert assert_same_batches(ours, sb3, monkeypatch) >= 20 * n_envs
    # sample() draws SB3's indices too (when nothing has to be left out) and equal batches
    if frame_stack == 1 or not ours.full:
        np.random.seed(1)
        a = ours.sample(16)
        np.random.seed(1)
        b = sb3.sample(16)
        for x, y in zip(a, b):
            assert (x is None and y is None) or th.equal(x, y)


def test_timeouts_as_terminations_equal_sb3(monkeypatch) -> None:
    venv = make_venv(2, 4)
    kwargs = dict(n_steps=3, gamma=0.8, handle_timeout_termination=False)
    sb3 = NStepReplayBuffer(40, venv.observation_space, venv.action_space, "cpu", 2, **kwargs)
    ours = FrameReplayBuffer(40, venv.observation_space, venv.action_space, "cpu", 2, frame_stack=4, **kwargs)
    feed(venv, [sb3, ours], 30)
    assert not ours.timeouts.any()
    assert_same_batches(ours, sb3, monkeypatch)


def test_stack_padding_at_episode_starts() -> None:
    """A stack that reaches back past the episode start is zero-padded, as VecFrameStack does."""
    venv = make_venv(1, 4)
    ours = FrameReplayBuffer(50, venv.observation_space, venv.action_space, "cpu", frame_stack=4)
    feed(venv, [ours], 40)
    starts = np.flatnonzero(ours.episode_steps[: ours.pos, 0] == 0)
    assert len(starts) >= 3
    obs = ours._stacks(starts, np.zeros(len(starts), dtype=np.int64))
    assert not obs[:, :3].any() and obs[:, 3].all()  # three zero frames, then the first frame


def test_sampling_leaves_out_overwritten_history() -> None:
    """Full buffer: sample() never returns the frame_stack - 1 oldest steps, whose stacks lost frames."""
    venv = make_venv(1, 4)
    ours = FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", frame_stack=4)
    feed(venv, [ours], 33)
    assert ours.full and ours.pos == 13
    np.random.seed(0)
    seen = set()
    for _ in range(100):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(ours, "_get_samples", lambda inds, env=None: seen.update(inds.tolist()))
            ours.sample(32)
    assert seen == set(sampleable(ours).tolist()) and not seen & {13, 14, 15}
    with pytest.raises(ValueError, match="empty"):
        FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", frame_stack=4).sample(4)


def test_can_sample_is_true_exactly_when_a_step_can_be_drawn() -> None:
    """can_sample() is the rule sample() refuses by: false while no stored step keeps its stack, true from the first."""
    venv = make_venv(1, 4)
    ours = FrameReplayBuffer(20, venv.observation_space, venv.action_space, "cpu", frame_stack=4)
    assert not ours.can_sample()
    with pytest.raises(ValueError, match="empty"):
        ours.sample(4)
    for steps in range(1, 34):
        feed(venv, [ours], 1)
        assert ours.can_sample() == (len(sampleable(ours)) >= 1), steps
        ours.sample(4)  # never raises once can_sample() says so


def test_shares_the_frame_store_with_rainbow(monkeypatch) -> None:
    """RainbowReplayBuffer is a FrameReplayBuffer: same storage after the same adds, same window arithmetic."""
    venv = make_venv(2, 4)
    ours = FrameReplayBuffer(40, venv.observation_space, venv.action_space, "cpu", 2, n_steps=3, gamma=0.9, frame_stack=4)
    rainbow = RainbowReplayBuffer(40, venv.observation_space, venv.action_space, "cpu", 2, n_steps=3, gamma=0.9, frame_stack=4)
    assert isinstance(rainbow, FrameReplayBuffer)
    feed(venv, [ours, rainbow], 50)
    for name in ("frames", "actions", "rewards", "dones", "timeouts", "episode_steps", "final_index"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(rainbow, name), err_msg=name)
    handles = np.flatnonzero(rainbow.tree.leaves() > 0)  # Rainbow samples complete windows only
    a = rainbow._get_samples(handles)
    b = batch_at(ours, handles // 2, handles % 2, monkeypatch)
    for x, y in zip(a[:6], b):
        np.testing.assert_array_equal(x.numpy(), y)


def test_infer_frame_stack() -> None:
    assert infer_frame_stack(make_venv(1, 4)) == 4 and infer_frame_stack(make_venv(1, 1)) == 1


def test_bad_arguments_raise_value_errors() -> None:
    box, disc = spaces.Box(0, 255, (4, 6, 7), np.uint8), spaces.Discrete(2)
    bad = [
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(gamma=1.5), "gamma"),
        (dict(frame_stack=0), "frame_stack"),
        (dict(frame_stack=3), "divisible"),
        (dict(optimize_memory_usage=True, handle_timeout_termination=False), "optimize_memory_usage"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            FrameReplayBuffer(100, box, disc, **kwargs)
    with pytest.raises(ValueError, match="Dict"):
        FrameReplayBuffer(100, spaces.Dict({"a": box}), disc)
    small = FrameReplayBuffer(4, box, disc, n_steps=3, gamma=0.99)  # built (a model loaded to act), refused when fed
    with pytest.raises(ValueError, match=r"buffer_size // n_envs = 4 must be > n_steps \+ frame_stack = 4"):
        small.add(*[np.zeros((1, *box.shape), np.uint8)] * 2, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    venv = make_venv(1, 2, channels=2)  # 2 frames of 2 channels, the buffer is told 4: the first add() says so
    wrong = FrameReplayBuffer(100, venv.observation_space, venv.action_space, "cpu", frame_stack=4)
    with pytest.raises(ValueError, match="frame_stack=4"):
        feed(venv, [wrong], 3)
    assert wrong.pos == 0 and not wrong.frames.any()  # nothing written


# ----------------------------------------------------------------------------- in SB3's algorithms


def test_model_trained_with_it_loads_to_act_as_rl_zoo3_enjoy_does(tmp_path) -> None:
    """rl_zoo3's enjoy loads off-policy models with ``buffer_size=1`` (rl_zoo3/enjoy.py): a stacked buffer must not refuse it."""
    from stable_baselines3 import DQN

    venv = make_venv(1, 2)
    model = DQN("MlpPolicy", venv, buffer_size=100, learning_starts=10, replay_buffer_class=FrameReplayBuffer,
                replay_buffer_kwargs=dict(frame_stack=2), seed=0, device="cpu")  # fmt: skip
    model.learn(20)
    model.save(tmp_path / "m")
    loaded = DQN.load(tmp_path / "m", env=venv, buffer_size=1, device="cpu")
    action, _ = loaded.predict(venv.reset(), deterministic=True)
    assert action.shape == (1,)
    with pytest.raises(ValueError, match="only serves models loaded to act"):
        loaded.learn(5)


def test_dqn_n_steps_through_buffer_kwargs_and_save_load(tmp_path) -> None:
    """SB3 drops DQN(n_steps=...) when replay_buffer_class is given; replay_buffer_kwargs carry it."""
    from stable_baselines3 import DQN

    env = VecFrameStack(DummyVecEnv([lambda: gym.wrappers.TimeLimit(ImageEnv(0), 7)]), n_stack=4)
    with pytest.warns(UserWarning, match="n_steps=3. is ignored"):
        dropped = DQN("MlpPolicy", env, buffer_size=100, n_steps=3, replay_buffer_class=FrameReplayBuffer,
                      replay_buffer_kwargs=dict(frame_stack=4), device="cpu")  # fmt: skip
    assert dropped.replay_buffer.n_steps == 1
    model = DQN("MlpPolicy", env, buffer_size=100, learning_starts=40, train_freq=4, gamma=0.9, seed=0, device="cpu",
                replay_buffer_class=FrameReplayBuffer, replay_buffer_kwargs=dict(frame_stack=4, n_steps=3, gamma=0.9))  # fmt: skip
    buffer = model.replay_buffer
    assert isinstance(buffer, FrameReplayBuffer) and buffer.n_steps == 3 and buffer.frame_stack == 4
    assert buffer.observation_space.shape == (4, 6, 7)  # SB3's VecTransposeImage on the channel-last stack
    seen = []
    sample = buffer.sample
    buffer.sample = lambda *a, **k: seen.append(sample(*a, **k)) or seen[-1]  # type: ignore[method-assign]
    model.learn(120)
    assert seen and all(b.discounts is not None and b.discounts.max() <= 0.9 + 1e-6 for b in seen)
    assert buffer.size() == 100 and buffer.full
    del buffer.sample
    model.save_replay_buffer(tmp_path / "replay")
    model.load_replay_buffer(tmp_path / "replay")
    loaded = model.replay_buffer
    assert isinstance(loaded, FrameReplayBuffer) and loaded is not buffer
    np.random.seed(3)
    a = buffer.sample(32)
    np.random.seed(3)
    b = loaded.sample(32)
    for x, y in zip(a, b):
        assert th.equal(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # learn() resets the env without a done: the last step is cut
        model.learn(40, reset_num_timesteps=False)


def test_qrdqn_with_several_envs() -> None:
    from sb3_contrib import QRDQN

    env = VecFrameStack(DummyVecEnv([lambda i=i: gym.wrappers.TimeLimit(ImageEnv(i), 7) for i in range(2)]), n_stack=4)
    model = QRDQN("MlpPolicy", env, buffer_size=200, learning_starts=40, train_freq=2, seed=0, device="cpu",
                  policy_kwargs=dict(n_quantiles=5), replay_buffer_class=FrameReplayBuffer,
                  replay_buffer_kwargs=dict(frame_stack=4, n_steps=3, gamma=0.99))  # fmt: skip
    model.learn(100)
    buffer = model.replay_buffer
    assert buffer.frames.shape == (100, 2, 1, 6, 7) and buffer.pos == 50
    assert buffer.dones[:50].sum() >= 4 and (buffer.final_index[:50] >= 0).sum() == buffer.dones[:50].sum()


def test_pickle_keeps_only_the_written_prefix() -> None:
    """A big buffer that is not full pickles its written steps only, and unpickles lazily to full size."""
    venv = make_venv(2, 4)
    buffer = FrameReplayBuffer(200_000, venv.observation_space, venv.action_space, "cpu", 2, n_steps=3, gamma=0.99, frame_stack=4)
    feed(venv, [buffer], 30)
    data = pickle.dumps(buffer)
    assert len(data) < 200_000  # frames alone would be 100k slots x 2 envs x 42 B = 8.4 MB
    copy = pickle.loads(data)
    for name in FrameReplayBuffer._SLOT_ARRAYS:
        np.testing.assert_array_equal(getattr(copy, name), getattr(buffer, name), err_msg=name)
    np.random.seed(0)
    a = buffer.sample(16)
    np.random.seed(0)
    b = copy.sample(16)
    for x, y in zip(a, b):
        assert th.equal(x, y)
    with pytest.warns(UserWarning, match="does not continue"):  # env reset without done: both cut alike
        feed(venv, [buffer, copy], 5, seed=1)
    for name in FrameReplayBuffer._SLOT_ARRAYS:
        np.testing.assert_array_equal(getattr(copy, name), getattr(buffer, name), err_msg=name)


def test_atari_scale_storage_fits_in_7_5_gb() -> None:
    """1M transitions of 4x84x84: np.zeros only reserves address space, so building it here is cheap."""
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not enough memory available" on a small machine
        buffer = FrameReplayBuffer(1_000_000, obs_space, spaces.Discrete(18), "cpu", frame_stack=4, n_steps=3, gamma=0.99)
    assert buffer.frames.nbytes == 1_000_000 * 84 * 84
    assert buffer.storage_nbytes() <= 7.5e9 and buffer.storage_nbytes() - buffer.frames.nbytes < 0.05e9


# ----------------------------------------------------------------------------- n-step settings: the algorithm's gamma, loaded buffers


def test_n_step_buffer_without_gamma_is_refused_when_fed():
    """Direct use: an n-step FrameReplayBuffer discounts with the algorithm's gamma, which it must be given; built
    without it, it is refused when fed (a default would discount with a gamma the algorithm does not use)."""
    box, disc = spaces.Box(0, 255, (4, 6, 7), np.uint8), spaces.Discrete(2)
    no_gamma = FrameReplayBuffer(100, box, disc, n_steps=3)  # built (a model saved that way still loads to act) ...
    with pytest.raises(ValueError, match=r"FrameReplayBuffer\(n_steps=3\) needs gamma") as info:  # ... refused when fed
        no_gamma.add(*[np.zeros((1, *box.shape), np.uint8)] * 2, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    assert "\n" not in str(info.value) and no_gamma.pos == 0
    assert FrameReplayBuffer(100, box, disc, n_steps=3, gamma=0.5).gamma == 0.5
    one_step = FrameReplayBuffer(100, box, disc)  # 1-step: no discount inside the buffer, gamma not needed
    assert one_step.n_steps == 1 and one_step.gamma is None


def test_load_replay_buffer_refuses_other_n_steps_or_gamma_and_keeps_the_models_buffer(tmp_path):
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
