"""Evaluation protocols: how a sweep builds training/evaluation envs for an env id, and how
its returns are normalized in reports.

A sweep takes env ids exactly as ``gym.make`` does. The first registered
:class:`EnvProtocol` whose :meth:`~EnvProtocol.matches` accepts the id decides how envs are
built and normalized; ``register_protocol`` puts a new one in front, so another module (for
instance a dedicated Atari or Procgen protocol) can override the defaults below without
touching the sweep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from sb3_gap.envs.atari import is_sb3_gap_atari, make_atari_vec_env
from sb3_gap.sweep.scores import ATARI_HUMAN, ATARI_RANDOM, PROCGEN_MIN_MAX

# (env_id, n_envs, seed, training) -> VecEnv
EnvFactory = Callable[[str, int, int, bool], VecEnv]
# env_id -> (low, high) for (x - low) / (high - low), or None for raw scores
Reference = Callable[[str], "tuple[float, float] | None"]


def make_plain_env(env_id: str, n_envs: int, seed: int, training: bool) -> VecEnv:
    """``gym.make(env_id)`` in a Monitor-wrapped ``DummyVecEnv`` (MinAtar and any other id)."""
    return make_vec_env(env_id, n_envs=n_envs, seed=seed)


def make_atari_protocol_env(env_id: str, n_envs: int, seed: int, training: bool) -> VecEnv:
    """
    SB3's ``AtariWrapper`` + 4-frame stack (Mnih et al. 2015 preprocessing). Training clips rewards
    and ends episodes on life loss; evaluation sees full games and raw scores. ``ALE/*-v5`` ids
    already skip 4 frames with sticky actions, so the wrapper does not skip again for them.
    """
    wrapper_kwargs: dict = {} if training else dict(terminal_on_life_loss=False, clip_reward=False)
    if env_id.startswith("ALE/"):
        wrapper_kwargs["frame_skip"] = 1
    return VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=seed, wrapper_kwargs=wrapper_kwargs), n_stack=4)


def make_sb3_gap_atari_env(env_id: str, n_envs: int, seed: int, training: bool) -> VecEnv:
    """
    ``Dopamine/<Game>-v5`` and ``Atari100k/<Game>-v5`` (:mod:`sb3_gap.envs.atari`): the protocol env,
    its training-only wrappers when ``training`` (reward clipping; life-loss terminal for Atari-100k)
    and SB3's ``VecFrameStack(4)``, which Rainbow's replay detects.
    """
    protocol, game = env_id.split("/", 1)
    return make_atari_vec_env(game.rsplit("-v", 1)[0], protocol=protocol, n_envs=n_envs, train=training, seed=seed)


def atari_game(env_id: str) -> str | None:
    """``"ALE/Pong-v5"``, ``"Dopamine/Pong-v5"``, ``"PongNoFrameskip-v4"`` → ``"Pong"`` (``None`` if not an Atari id)."""
    m = re.fullmatch(r"(?:ALE/|Dopamine/|Atari100k/)?([A-Za-z]+?)(?:NoFrameskip|Deterministic)?-v\d+", env_id)
    if m is None:
        return None
    key = {k.lower(): k for k in ATARI_RANDOM}.get(m.group(1).lower())
    return key


def atari_reference(env_id: str) -> tuple[float, float] | None:
    """Human-normalized score: ``(x - random) / (human - random)`` (see :mod:`sb3_gap.sweep.scores`)."""
    game = atari_game(env_id)
    return None if game is None else (ATARI_RANDOM[game], ATARI_HUMAN[game])


def procgen_game(env_id: str) -> str | None:
    """The Procgen game named in an id such as ``"procgen:procgen-coinrun-v0"`` or ``"procgen/coinrun-hard"``."""
    low = env_id.lower()
    if "procgen" not in low:
        return None
    for game in PROCGEN_MIN_MAX["easy"]:
        if re.search(rf"(?<![a-z]){game}(?![a-z])", low):
            return game
    return None


def procgen_reference(env_id: str) -> tuple[float, float] | None:
    """Min-max normalization of Cobbe et al. 2020 (``hard`` constants when the id says ``hard``, else ``easy``)."""
    game = procgen_game(env_id)
    if game is None:
        return None
    return PROCGEN_MIN_MAX["hard" if "hard" in env_id.lower() else "easy"][game]


@dataclass(frozen=True)
class EnvProtocol:
    """
    How to build and score one family of environments.

    :param name: Short name shown in reports (``"atari"``, ``"procgen"``, ``"default"``)
    :param matches: Whether this protocol handles an env id
    :param make_env: ``(env_id, n_envs, seed, training) -> VecEnv``
    :param reference: ``env_id -> (low, high)`` for normalized scores, or ``None`` for raw scores
    :param normalization: One line saying what the normalized score means, for reports
    """

    name: str
    matches: Callable[[str], bool]
    make_env: EnvFactory = make_plain_env
    reference: Callable[[str], tuple[float, float] | None] = field(default=lambda env_id: None)
    normalization: str = "raw return"


PROTOCOLS: list[EnvProtocol] = [
    EnvProtocol(
        "atari",
        is_sb3_gap_atari,
        make_sb3_gap_atari_env,
        atari_reference,
        "human-normalized (random/human scores of Mnih et al. 2015; Badia et al. 2020)",
    ),
    EnvProtocol(
        "atari",
        lambda env_id: atari_game(env_id) is not None,
        make_atari_protocol_env,
        atari_reference,
        "human-normalized (random/human scores of Mnih et al. 2015; Badia et al. 2020)",
    ),
    EnvProtocol(
        "procgen",
        lambda env_id: procgen_game(env_id) is not None,
        make_plain_env,
        procgen_reference,
        "min-max normalized (R_min/R_max of Cobbe et al. 2020, App. C)",
    ),
    EnvProtocol("default", lambda env_id: True),
]


def register_protocol(protocol: EnvProtocol) -> None:
    """Put ``protocol`` in front of the others (it wins for every id it matches)."""
    PROTOCOLS.insert(0, protocol)


def protocol_for(env_id: str) -> EnvProtocol:
    """The first registered protocol that matches ``env_id``."""
    return next(p for p in PROTOCOLS if p.matches(env_id))


def load_reference(path: str | Path) -> dict[str, tuple[float, float]]:
    """
    A user's reference table: a JSON object ``{env_id: [low, high]}`` (e.g. random and
    best-known MinAtar returns) used instead of the protocol's table for those ids.
    """
    data = json.loads(Path(path).read_text())
    table = {}
    for env_id, pair in data.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair) and pair[1] != pair[0]):
            raise ValueError(f"Reference for {env_id!r} in {path} must be [low, high] with low != high, got {pair!r}")
        table[env_id] = (float(pair[0]), float(pair[1]))
    return table
