"""The paper's environment protocols: Atari (Dopamine, Atari-100k), Procgen (envpool), MinAtar."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv
from stable_baselines3.common.monitor import Monitor

import sb3_gap  # noqa: F401  (registers the ids)
from sb3_gap.envs import PROCGEN_GAMES, EnvPoolVecEnv, atari_training_wrapper, make_atari, make_atari_vec_env
from sb3_gap.envs import envpool_vec as envpool_vec_module
from sb3_gap.envs.atari import ATARI_20_GAMES, ATARI_100K_GAMES, ATARI_GAMES, MAX_FRAMES
from sb3_gap.envs.procgen import ProcgenEnv, make_procgen_vec_env, procgen_task_id


def _ale(env: gym.Env):
    return env.unwrapped.ale


# --------------------------------------------------------------------------- Atari, both protocols


# Episodes start without no-ops in both protocols (Dopamine's Atari-100k has no no-op starts); only Dopamine's has sticky actions.
@pytest.mark.parametrize("protocol, sticky, noops", [("Dopamine", 0.25, 0), ("Atari100k", 0.0, 0)])
def test_atari_protocol_settings(protocol: str, sticky: float, noops: int) -> None:
    env = gym.make(f"{protocol}/Pong-v5")
    obs, _ = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (1, 84, 84), np.uint8)
    assert obs.shape == (1, 84, 84) and obs.dtype == np.uint8
    ale = _ale(env)
    assert ale.getFloat("repeat_action_probability") == pytest.approx(sticky)
    assert ale.getInt("max_num_frames_per_episode") == MAX_FRAMES == 108_000
    # The ALE itself does not skip (v5 ids default to frameskip=4): one agent step = 4 emulator frames.
    assert env.unwrapped._frameskip == 1
    before = ale.getEpisodeFrameNumber()
    env.step(0)
    assert ale.getEpisodeFrameNumber() - before == 4
    assert env.get_wrapper_attr("noop_max") == noops
    env.close()


def test_atari_game_lists_are_registered() -> None:
    for game in set(ATARI_100K_GAMES) | set(ATARI_20_GAMES):
        assert game in ATARI_GAMES
        assert f"Dopamine/{game}-v5" in gym.envs.registry and f"Atari100k/{game}-v5" in gym.envs.registry


def test_atari_frame_stack_inside_env_for_plain_gym_make() -> None:
    env = gym.make("Dopamine/Breakout-v5", frame_stack=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    obs, *_ = env.step(1)
    assert obs.shape == (4, 84, 84)


def test_atari_max_pools_last_two_of_four_frames() -> None:
    """Each observation is max(frame 3, frame 4) of the skip, grayscale, INTER_AREA-resized to 84x84."""
    game, seed = "SpaceInvaders", 3  # Space Invaders flickers: the max differs from the last frame
    env = make_atari(game, "Dopamine", repeat_action_probability=0.0)
    raw = gym.make("ALE/SpaceInvaders-v5", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=seed)
    raw.reset(seed=seed)
    rng = np.random.default_rng(0)
    differs = False
    for _ in range(60):
        action = int(rng.integers(env.action_space.n))
        obs, *_ = env.step(action)
        screens = []
        for _ in range(4):
            raw.step(action)
            screens.append(raw.unwrapped.ale.getScreenGrayscale())
        expected = cv2.resize(np.maximum(screens[2], screens[3]), (84, 84), interpolation=cv2.INTER_AREA)
        last_only = cv2.resize(screens[3], (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs[0], expected)
        differs |= not np.array_equal(expected, last_only)
    assert differs, "max-pooling never mattered: the test game should flicker"


def test_atari_frame_cap_truncates() -> None:
    env = make_atari("Pong", "Dopamine", max_frames=40)  # 40 frames = 10 agent steps
    env.reset(seed=0)
    for step in range(1, 11):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated
        assert truncated == (step == 10)


class _BigReward(gym.Wrapper):
    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, 7.0, terminated, truncated, info


def test_reward_clipping_is_training_only_and_monitor_sees_scores() -> None:
    env = Monitor(_BigReward(make_atari("Pong", "Dopamine")))
    train_env = atari_training_wrapper(env, "Dopamine")
    train_env.reset(seed=0)
    _, reward, *_ = train_env.step(0)
    assert reward == 1.0
    assert env.get_episode_rewards() == [] and env.rewards == [7.0]  # the Monitor below saw the raw score
    eval_env = _BigReward(gym.make("Dopamine/Pong-v5"))  # the id itself never clips
    eval_env.reset(seed=0)
    assert eval_env.step(0)[1] == 7.0
    assert not any(isinstance(w, EpisodicLifeEnv) for w in _chain(atari_training_wrapper(make_atari("Pong"), "Dopamine")))


def _chain(env: gym.Env) -> list[gym.Env]:
    out = [env]
    while isinstance(env, gym.Wrapper):
        env = env.env
        out.append(env)
    return out


def test_life_loss_is_terminal_only_for_atari100k_training() -> None:
    train_env = atari_training_wrapper(make_atari("Breakout", "Atari100k"), "Atari100k")
    assert isinstance(train_env, ClipRewardEnv) and isinstance(train_env.env, EpisodicLifeEnv)
    eval_env = gym.make("Atari100k/Breakout-v5")
    rng = np.random.default_rng(0)
    for env in (train_env, eval_env):
        env.reset(seed=1)
        lives = _ale(env).lives()
        for _ in range(2_000):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if _ale(env).lives() < lives:
                break
        assert _ale(env).lives() == lives - 1 and not truncated
        assert terminated == (env is train_env)  # a game continues: lives > 0
    # EpisodicLifeEnv continues the game on reset (no full restart): lives stay reduced.
    train_env.reset()
    assert _ale(train_env).lives() == lives - 1


def test_atari_bad_input_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r"Unknown Atari game 'Pongg'.*valid games: .*'Pong'"):
        make_atari("Pongg")
    with pytest.raises(ValueError, match=r"Unknown Atari protocol 'dopamine200'.*\['Atari100k', 'Dopamine'\]"):
        make_atari("Pong", protocol="dopamine200")
    with pytest.raises(ValueError, match="frame_stack must be a positive integer"):
        make_atari("Pong", frame_stack=0)
    with pytest.raises(ValueError, match=r"Unknown backend 'ray'"):
        make_atari_vec_env("Pong", backend="ray")


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_atari_vec_env_stacks_with_vecframestack(backend: str) -> None:
    from stable_baselines3.common.vec_env import VecFrameStack

    venv = make_atari_vec_env("Pong", "Dopamine", n_envs=2, seed=0, backend=backend)
    assert isinstance(venv, VecFrameStack)
    obs = venv.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, *_ = venv.step(np.zeros(2, dtype=int))
    assert obs.shape == (2, 4, 84, 84)
    venv.close()


def test_envpool_atari_matches_protocol_and_same_step_autoreset() -> None:
    venv = EnvPoolVecEnv(
        "Breakout-v5", 2, seed=0, repeat_action_probability=0.0, episodic_life=True, reward_clip=True, use_fire_reset=False, noop_max=30, stack_num=1
    )
    cfg = venv.pool.config
    assert cfg["frame_skip"] == 4 and cfg["max_episode_steps"] == 27_000 and cfg["img_height"] == 84
    assert venv.observation_space.shape == (1, 84, 84)
    venv.reset()
    rng = np.random.default_rng(0)
    life_losses, games = 0, 0
    for _ in range(3_000):
        obs, rewards, dones, infos = venv.step(rng.integers(4, size=2))
        assert set(np.unique(rewards)) <= {0.0, 1.0}  # clipped for training
        for i in np.flatnonzero(dones):
            assert infos[i]["terminal_observation"].shape == (1, 84, 84)
            if "episode" in infos[i]:
                games += 1
                assert infos[i]["episode"]["r"] >= 0 and infos[i]["episode"]["l"] > 0
            else:
                life_losses += 1
        if games:
            break
    assert life_losses >= 4 and games >= 1  # Breakout: 5 lives, one "episode" (game score) per game
    venv.close()


# --------------------------------------------------------------------------- Procgen


def test_procgen_ids_obs_and_levels() -> None:
    assert len(PROCGEN_GAMES) == 16 and all(f"Procgen/{g}-v0" in gym.envs.registry for g in PROCGEN_GAMES)
    env = gym.make("Procgen/Coinrun-v0", num_levels=3, start_level=100)
    assert env.observation_space == gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    seeds = {info["level_seed"]}
    for _ in range(6):
        seeds.add(env.reset()[1]["level_seed"])
    assert seeds <= {100, 101, 102}  # training levels: start_level .. start_level + num_levels - 1
    env.close()
    test_env = ProcgenEnv("coinrun", num_levels=0, start_level=0)  # test levels: the full distribution
    test_seeds = {test_env.reset(seed=s)[1]["level_seed"] for s in range(4)}
    assert len(test_seeds) > 1 and not test_seeds <= {100, 101, 102}
    assert ProcgenEnv("bigfish", distribution_mode="hard")._pool.config["distribution_mode"] == 1
    obs, reward, terminated, truncated, info = test_env.step(0)
    assert obs.shape == (3, 64, 64) and isinstance(reward, float) and "level_seed" in info


def test_procgen_vec_env() -> None:
    venv = make_procgen_vec_env("Starpilot", n_envs=3, num_levels=10)
    obs = venv.reset()
    assert obs.shape == (3, 3, 64, 64) and obs.dtype == np.uint8
    obs, rewards, dones, infos = venv.step(np.zeros(3, dtype=int))
    assert obs.shape == (3, 3, 64, 64) and rewards.shape == (3,) and len(infos) == 3
    venv.close()


def test_procgen_bad_input_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r"Unknown Procgen game 'mario'; valid games: \['Bigfish'"):
        procgen_task_id("mario")
    with pytest.raises(ValueError, match=r"distribution_mode 'extreme'.*\['easy', 'hard'\]"):
        procgen_task_id("coinrun", "extreme")
    with pytest.raises(ValueError, match="num_levels must be an integer >= 0"):
        ProcgenEnv("coinrun", num_levels=-1)


def test_missing_qt_runtime_error_says_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import envpool

    def make_without_qt(task_id, **kwargs):
        # What envpool 1.2 raises when libQt5Core/libQt5Gui are missing (envpool/procgen/__init__.py).
        cause = ImportError("libQt5Gui.so.5: cannot open shared object file: No such file or directory")
        try:
            raise cause
        except ImportError as e:
            raise ImportError("EnvPool Procgen requires the system Qt 5 runtime on Linux.") from e

    monkeypatch.setattr(envpool, "make", make_without_qt)
    with pytest.raises(ImportError, match=r"apt-get update && apt-get install -y libqt5gui5"):
        gym.make("Procgen/Bigfish-v0")
    assert envpool_vec_module.QT_FIX == "apt-get update && apt-get install -y libqt5gui5"


# --------------------------------------------------------------------------- MinAtar (unchanged)


def test_minatar_still_registered() -> None:
    env = gym.make("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8


@pytest.mark.parametrize("n_envs", [0, -1, 1.5, True])
def test_make_atari_vec_env_refuses_n_envs_that_is_not_a_positive_integer(n_envs):
    from sb3_gap.envs import make_atari_vec_env

    with pytest.raises(ValueError, match=rf"n_envs must be a positive integer .* got {n_envs!r}"):
        make_atari_vec_env("Pong", n_envs=n_envs)
