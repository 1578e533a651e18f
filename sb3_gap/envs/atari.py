"""Atari under the paper's two protocols, built from ale-py, gymnasium and SB3 pieces.

Two families of ids are registered on ``import sb3_gap`` (one per ALE game, e.g. ``Pong``):

``Dopamine/<Game>-v5`` (the paper's 200M-frame Rainbow setting, Castro et al. 2018; Machado et al. 2018)
    ALE game with ``frameskip=1`` and sticky actions (``repeat_action_probability=0.25``), then
    gymnasium's :class:`~gymnasium.wrappers.AtariPreprocessing`: frame skip 4 with a max over the
    last two frames, 84×84 grayscale, no no-op starts; episodes end at game over; 108,000 frames
    (27,000 agent steps) at most per episode.

``Atari100k/<Game>-v5`` (DER, van Hasselt et al. 2019; Kaiser et al. 2020)
    No sticky actions, no no-op starts (as Dopamine's Atari-100k: ``labs/atari_100k`` runs
    ``atari_lib.create_atari_environment`` with ``sticky_actions=False`` and no no-ops), the same
    frame processing and cap.
    Training ends an episode on life loss (see :data:`TRAIN_WRAPPERS`); evaluation plays whole games.

The ids return the *evaluation* env: one channel-first ``uint8`` frame ``(1, 84, 84)``, raw game
rewards, whole games. What only training does is added outside SB3's ``Monitor`` so that logged
episode returns stay game scores, exactly like SB3's ``make_atari_env``/``AtariWrapper`` and the RL
Zoo's ``env_wrapper``: reward clipping (SB3 :class:`~stable_baselines3.common.atari_wrappers.ClipRewardEnv`,
both protocols) and, for Atari-100k only, life loss as terminal (SB3
:class:`~stable_baselines3.common.atari_wrappers.EpisodicLifeEnv`, which continues the game on reset,
unlike gymnasium's ``terminal_on_life_loss`` which restarts it).

Frame stacking (4 frames) is SB3's :class:`~stable_baselines3.common.vec_env.VecFrameStack` by
default (``frame_stack: 4`` in a Zoo YAML, or :func:`make_atari_vec_env`): Rainbow's replay detects it
and stores each frame once. A plain ``gym.make(id, frame_stack=4)`` stacks inside the env instead
(gymnasium's ``FrameStackObservation``), giving ``(4, 84, 84)``; never do both.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from sb3_gap.checks import MAX_FRAME_STACK, MissingPackage, Refused, check_int

# Frames per agent step (AtariPreprocessing's frame_skip) and the per-episode frame cap.
FRAME_SKIP = 4
MAX_FRAMES = 108_000


@dataclass(frozen=True)
class AtariProtocol:
    """
    One evaluation protocol for Atari.

    :param repeat_action_probability: Sticky-action probability of the ALE (Machado et al. 2018)
    :param noop_max: Most random no-op actions at reset (0: none)
    :param terminal_on_life_loss: Training ends an episode when a life is lost
    :param clip_reward: Training clips rewards to {-1, 0, 1}
    """

    repeat_action_probability: float
    noop_max: int
    terminal_on_life_loss: bool
    clip_reward: bool


#: The two Atari protocols by name: ``"Dopamine"`` (``Dopamine/<Game>-v5``) and ``"Atari100k"`` (``Atari100k/<Game>-v5``).
ATARI_PROTOCOLS: dict[str, AtariProtocol] = {
    # Paper Table 1, "Rainbow" column: sticky actions True, reward clipping True; 200M frames.
    "Dopamine": AtariProtocol(0.25, 0, False, True),
    # Paper Table 1, "DER" column: sticky actions False, reward clipping True; 100k agent steps. No no-op
    # starts: Dopamine's Atari-100k (labs/atari_100k/configs/DER.gin, discrete_domains/atari_lib.py) has none.
    "Atari100k": AtariProtocol(0.0, 0, True, True),
}

#: The 26 games of the Atari-100k benchmark (paper appendix A).
ATARI_100K_GAMES = (
    "Alien Amidar Assault Asterix BankHeist BattleZone Boxing Breakout ChopperCommand CrazyClimber "
    "DemonAttack Freeway Frostbite Gopher Hero Jamesbond Kangaroo Krull KungFuMaster MsPacman Pong "
    "PrivateEye Qbert RoadRunner Seaquest UpNDown"
).split()
# The 20 games of the paper's main analysis (appendix A).
ATARI_20_GAMES = (
    "Asterix SpaceInvaders Breakout Pong Qbert DemonAttack Seaquest WizardOfWor RoadRunner BeamRider "
    "Frostbite CrazyClimber Assault Krull Boxing Jamesbond Kangaroo UpNDown Gopher Hero"
).split()
# The full suite of 60 games (paper Fig. 6 right): Dopamine's Atari suite, google/dopamine dopamine/colab/utils.py
# ALL_GAMES (the games of baselines/atari/data/).
ATARI_60_GAMES = (
    "AirRaid Alien Amidar Assault Asterix Asteroids Atlantis BankHeist BattleZone BeamRider Berzerk Bowling Boxing "
    "Breakout Carnival Centipede ChopperCommand CrazyClimber DemonAttack DoubleDunk ElevatorAction Enduro FishingDerby "
    "Freeway Frostbite Gopher Gravitar Hero IceHockey Jamesbond JourneyEscape Kangaroo Krull KungFuMaster "
    "MontezumaRevenge MsPacman NameThisGame Phoenix Pitfall Pong Pooyan PrivateEye Qbert Riverraid RoadRunner Robotank "
    "Seaquest Skiing Solaris SpaceInvaders StarGunner Tennis TimePilot Tutankham UpNDown Venture VideoPinball "
    "WizardOfWor YarsRevenge Zaxxon"
).split()


def _rom_ids() -> list[str]:
    """ROM ids shipped with ale-py (``"space_invaders"``), found without importing ale-py (slow to import)."""
    spec = importlib.util.find_spec("ale_py")
    if spec is None or not spec.submodule_search_locations:
        return []
    roms = os.path.join(list(spec.submodule_search_locations)[0], "roms")
    if not os.path.isdir(roms):
        return []
    return sorted(f[: -len(".bin")] for f in os.listdir(roms) if f.endswith(".bin"))


def _game_name(rom_id: str) -> str:
    # Same rule as ale_py.registration.rom_id_to_name: "space_invaders" -> "SpaceInvaders".
    return rom_id.title().replace("_", "")


#: Every game the installed ale-py ships, by name (``"SpaceInvaders"``) -> ROM id (``"space_invaders"``).
ATARI_GAMES: dict[str, str] = {_game_name(r): r for r in _rom_ids()}


def _check_protocol(protocol: str) -> AtariProtocol:
    if protocol not in ATARI_PROTOCOLS:
        raise Refused(f"Unknown Atari protocol {protocol!r}; valid choices: {sorted(ATARI_PROTOCOLS)}")
    return ATARI_PROTOCOLS[protocol]


def _check_game(game: str) -> str:
    """The ale-py ROM id for ``game`` (``"Pong"`` or ``"pong"``)."""
    rom = ATARI_GAMES.get(game, game)
    if rom not in ATARI_GAMES.values():
        if not ATARI_GAMES:
            raise MissingPackage("No Atari ROMs found: install ale-py>=0.9 (ROMs included): pip install 'ale-py>=0.9'")
        raise Refused(f"Unknown Atari game {game!r}; valid games: {sorted(ATARI_GAMES)}")
    return rom


def make_atari(
    game: str,
    protocol: str = "Dopamine",
    frame_stack: int = 1,
    noop_max: int | None = None,
    repeat_action_probability: float | None = None,
    max_frames: int = MAX_FRAMES,
    full_action_space: bool = False,
    render_mode: str | None = None,
) -> gym.Env:
    """
    An Atari game preprocessed for one protocol (the evaluation env: raw rewards, whole games).

    :param game: ALE game name, e.g. ``"Pong"`` or ``"space_invaders"``
    :param protocol: ``"Dopamine"`` (sticky actions, no no-ops) or ``"Atari100k"`` (no sticky actions, no no-ops)
    :param frame_stack: Frames stacked inside the env; keep 1 when SB3's ``VecFrameStack`` stacks (Zoo, Rainbow)
    :param noop_max: Override the protocol's random no-ops at reset
    :param repeat_action_probability: Override the protocol's sticky-action probability
    :param max_frames: Emulator frames per episode before truncation (108,000 = 27,000 agent steps)
    :param full_action_space: All 18 actions instead of the game's minimal set
    :param render_mode: Passed to the ALE (``"rgb_array"`` or ``"human"``)
    :return: An env with ``Box(0, 255, (frame_stack, 84, 84), uint8)`` observations
    """
    spec = _check_protocol(protocol)
    rom = _check_game(game)
    frame_stack = check_int("frame_stack", frame_stack, 1, MAX_FRAME_STACK, example="1, or 4 without VecFrameStack")
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(
        "ALE/" + _game_name(rom) + "-v5",
        # v5 ids skip 4 frames by default: the skip (with max-pooling) happens once, in AtariPreprocessing.
        frameskip=1,
        repeat_action_probability=spec.repeat_action_probability if repeat_action_probability is None else repeat_action_probability,
        max_num_frames_per_episode=max_frames,
        full_action_space=full_action_space,
        render_mode=render_mode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=spec.noop_max if noop_max is None else noop_max,
        frame_skip=FRAME_SKIP,
        screen_size=84,
        terminal_on_life_loss=False,  # life loss is a training-only signal: see TRAIN_WRAPPERS
        grayscale_obs=True,
        scale_obs=False,
    )
    # (84, 84) -> (k, 84, 84): channel-first, so that SB3 needs no VecTransposeImage and
    # VecFrameStack stacks along the first axis, like envpool's Atari frames.
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def atari_training_wrapper(env: gym.Env, protocol: str = "Dopamine") -> gym.Env:
    """
    Add the protocol's training-only wrappers (reward clipping; life loss as terminal for Atari-100k).

    Apply it *outside* ``Monitor`` (``make_vec_env(wrapper_class=...)`` does) so episode returns
    stay game scores. The RL Zoo YAMLs list the same SB3 wrappers under ``env_wrapper``.

    :param env: An env from :func:`make_atari` (possibly inside a ``Monitor``)
    :param protocol: ``"Dopamine"`` or ``"Atari100k"``
    """
    spec = _check_protocol(protocol)
    if spec.terminal_on_life_loss:
        env = EpisodicLifeEnv(env)
    if spec.clip_reward:
        env = ClipRewardEnv(env)
    return env


# Zoo YAML ``env_wrapper`` lists, by protocol (kept here so docs and tests share one source).
TRAIN_WRAPPERS: dict[str, list[str]] = {
    "Dopamine": ["stable_baselines3.common.atari_wrappers.ClipRewardEnv"],
    "Atari100k": [
        "stable_baselines3.common.atari_wrappers.EpisodicLifeEnv",
        "stable_baselines3.common.atari_wrappers.ClipRewardEnv",
    ],
}


def make_atari_vec_env(
    game: str,
    protocol: str = "Dopamine",
    n_envs: int = 1,
    train: bool = True,
    frame_stack: int = 4,
    seed: int | None = None,
    backend: str = "gymnasium",
    **kwargs: Any,
) -> VecEnv:
    """
    A ready-to-train (or evaluate) Atari ``VecEnv``: protocol env, ``Monitor``, training wrappers, ``VecFrameStack``.

    :param game: ALE game name
    :param protocol: ``"Dopamine"`` or ``"Atari100k"``
    :param n_envs: Parallel games
    :param train: Add the training-only wrappers (reward clipping, life loss for Atari-100k)
    :param frame_stack: Frames stacked by SB3's ``VecFrameStack`` (4 in the paper)
    :param seed: Seed of the first game (game ``i`` gets ``seed + i``)
    :param backend: ``"gymnasium"`` (SB3 ``DummyVecEnv`` of :func:`make_atari` envs) or
        ``"envpool"`` (one C++ thread pool, :class:`sb3_gap.envs.envpool_vec.EnvPoolVecEnv`; faster)
    :param kwargs: Passed to :func:`make_atari` (gymnasium) or envpool (envpool)
    :return: A ``VecEnv`` with ``(frame_stack, 84, 84)`` uint8 observations
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
        raise Refused(f"n_envs must be a positive integer (the number of parallel games, e.g. 1 or 8), got {n_envs!r}")
    n_envs = int(n_envs)
    spec = _check_protocol(protocol)
    if backend == "gymnasium":
        venv = make_vec_env(
            make_atari,
            n_envs=n_envs,
            seed=seed,
            env_kwargs=dict(game=game, protocol=protocol, **kwargs),
            wrapper_class=atari_training_wrapper if train else None,
            wrapper_kwargs=dict(protocol=protocol) if train else None,
        )
    elif backend == "envpool":
        from sb3_gap.envs.envpool_vec import EnvPoolVecEnv

        rom = _check_game(game)
        task = _game_name(rom) + "-v5"
        options = dict(
            repeat_action_probability=spec.repeat_action_probability,
            # envpool draws 0..noop_max-1 no-ops (1: none; gymnasium's AtariPreprocessing draws 1..noop_max)
            noop_max=max(spec.noop_max, 1),
            episodic_life=train and spec.terminal_on_life_loss,
            reward_clip=train and spec.clip_reward,
            use_fire_reset=False,  # neither Dopamine nor DER press FIRE at reset
            frame_skip=FRAME_SKIP,
            stack_num=1,
            img_height=84,
            img_width=84,
            gray_scale=True,
            max_episode_steps=MAX_FRAMES // FRAME_SKIP,
        )
        options.update(kwargs)
        venv = EnvPoolVecEnv(task, n_envs, seed=0 if seed is None else seed, **options)
    else:
        raise Refused(f"Unknown backend {backend!r}; valid choices: ['envpool', 'gymnasium']")
    return VecFrameStack(venv, frame_stack) if frame_stack > 1 else venv


def register_atari() -> None:
    """Register ``Dopamine/<Game>-v5`` and ``Atari100k/<Game>-v5`` for every ROM ale-py ships."""
    for name in ATARI_GAMES:
        for protocol in ATARI_PROTOCOLS:
            gym.register(
                f"{protocol}/{name}-v5",
                entry_point="sb3_gap.envs.atari:make_atari",
                kwargs=dict(game=name, protocol=protocol),
            )


def is_sb3_gap_atari(env_id: str) -> bool:
    """Whether ``env_id`` is one of this module's Atari ids (the RL Zoo's ``atari`` YAML section applies)."""
    namespace = env_id.split("/", 1)[0] if "/" in env_id else ""
    return namespace in ATARI_PROTOCOLS and env_id in gym.envs.registry


__all__ = [
    "ATARI_100K_GAMES",
    "ATARI_20_GAMES",
    "ATARI_60_GAMES",
    "ATARI_GAMES",
    "ATARI_PROTOCOLS",
    "TRAIN_WRAPPERS",
    "AtariProtocol",
    "atari_training_wrapper",
    "is_sb3_gap_atari",
    "make_atari",
    "make_atari_vec_env",
    "register_atari",
]
