"""Evaluation protocols: how a sweep builds training/evaluation envs for an env id, and how
its returns are normalized in reports.

A sweep takes env ids exactly as ``gym.make`` does. The first registered
:class:`EnvProtocol` whose :meth:`~EnvProtocol.matches` accepts the id decides how envs are
built and normalized; ``register_protocol`` puts a new one in front, so another module (for
instance a dedicated Atari or Procgen protocol) can override the defaults below without
touching the sweep.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack

from sb3_gap.checks import Refused, check_env_id_form
from sb3_gap.envs.atari import is_sb3_gap_atari, make_atari_vec_env
from sb3_gap.envs.scores import ATARI_HUMAN, ATARI_RANDOM, PROCGEN_MIN_MAX

# (env_id, n_envs, seed, training, env_kwargs=None, env_wrapper=None) -> VecEnv
EnvFactory = Callable[..., VecEnv]
# env_id -> (low, high) for (x - low) / (high - low), or None for raw scores
Reference = Callable[[str], "tuple[float, float] | None"]

#: Dopamine's evaluation ε (``epsilon_eval=0.001`` in ``dopamine/jax/agents/dqn/dqn_agent.py`` and the Rainbow agents).
DOPAMINE_EVAL_EPSILON = 0.001


class EpsilonGreedyActions(VecEnvWrapper):
    """
    Replace each env's action by a uniformly random one with probability ``epsilon``: ε-greedy
    evaluation (Dopamine's ``epsilon_eval``) for any SB3 algorithm that evaluates greedily
    (``deterministic=True``), without touching the model.

    :param venv: The evaluation VecEnv (discrete actions)
    :param epsilon: Probability of a random action per env step
    :param seed: Seed of the wrapper's own random stream
    """

    def __init__(self, venv: VecEnv, epsilon: float, seed: int | None = None) -> None:
        super().__init__(venv)
        if not 0.0 <= epsilon <= 1.0:
            raise Refused(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.array(actions, copy=True)
        explore = self.rng.random(self.num_envs) < self.epsilon
        if explore.any():
            n = int(self.action_space.n)  # type: ignore[attr-defined]
            actions[explore] = self.rng.integers(0, n, size=int(explore.sum()))
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        return self.venv.step_wait()

    def __getstate__(self) -> dict[str, Any]:
        # SB3's VecEnvWrapper keeps its class's members (``class_attributes``), which cannot be pickled; they are
        # recomputed on unpickling (a sweep run's checkpoint pickles its evaluation env).
        return {k: v for k, v in self.__dict__.items() if k != "class_attributes"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.class_attributes = dict(inspect.getmembers(self.__class__))

    def reset(self) -> Any:
        return self.venv.reset()


def zoo_wrapper_class(env_wrapper: Any) -> Any:
    """The wrapper class (or chain) of a Zoo ``env_wrapper`` entry, built by rl_zoo3's own ``get_wrapper_class``."""
    if not env_wrapper:
        return None
    from rl_zoo3.utils import get_wrapper_class

    return get_wrapper_class({"env_wrapper": env_wrapper})


def make_plain_env(env_id: str, n_envs: int, seed: int, training: bool, env_kwargs: dict[str, Any] | None = None, env_wrapper: Any = None) -> VecEnv:
    """
    ``gym.make(env_id, **env_kwargs)`` in a Monitor-wrapped ``DummyVecEnv`` (MinAtar and any other id).
    A Zoo ``env_wrapper`` is applied outside the Monitor, in training only, as rl_zoo3 does (so logged
    and evaluated returns stay raw game scores).
    """
    wrapper = zoo_wrapper_class(env_wrapper) if training else None
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper)


def _no_zoo_env_settings(factory: Callable[[str, int, int, bool], VecEnv]) -> EnvFactory:
    # Atari protocols build their own wrappers (reward clipping, life loss, 4-frame stack), which are what
    # the Zoo's atari sections list in env_wrapper/frame_stack; other env kwargs have no place there.
    def make(env_id: str, n_envs: int, seed: int, training: bool, env_kwargs: dict[str, Any] | None = None, env_wrapper: Any = None) -> VecEnv:
        if env_kwargs:
            raise Refused(f"env_kwargs {env_kwargs!r} are not supported for the Atari id {env_id!r} (its protocol fixes the env)")
        return factory(env_id, n_envs, seed, training)

    make.__name__ = factory.__name__
    make.__doc__ = factory.__doc__
    return make


def register_ale_ids() -> None:
    """Register ale-py's ids (``ALE/Pong-v5``, ``PongNoFrameskip-v4``) if ale-py is installed: gymnasium 1.x leaves
    that to ``import ale_py``, so a fresh process (a sweep worker, ``sb3-gap gradcam``) would not know them."""
    import gymnasium as gym

    if any(key.startswith("ALE/") for key in gym.registry):
        return
    try:
        import ale_py  # noqa: F401 - its first import registers the ids
        from ale_py.registration import register_v0_v4_envs, register_v5_envs
    except ImportError:
        return
    if not any(key.startswith("ALE/") for key in gym.registry):  # imported before the registry lost them
        register_v0_v4_envs()
        register_v5_envs()


def check_env_registered(env_id: Any) -> str:
    """
    Check that ``env_id`` has an env id's form (:func:`~sb3_gap.checks.check_env_id_form`: it may name a folder) and
    is registered with Gymnasium (ale-py's ids included); return it.

    :param env_id: The env id, e.g. ``MinAtar/Breakout-v1``
    :raises Refused: ``"Unknown env id 'X' (...); close registered ids: [...]"``
    """
    import difflib

    import gymnasium as gym

    check_env_id_form(env_id)
    register_ale_ids()
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        raise Refused(f"Unknown env id {env_id!r} ({e}); close registered ids: {close}") from None
    return env_id


def make_atari_protocol_env(env_id: str, n_envs: int, seed: int, training: bool) -> VecEnv:
    """
    SB3's ``AtariWrapper`` + 4-frame stack (Mnih et al. 2015 preprocessing). Training clips rewards
    and ends episodes on life loss; evaluation sees full games and raw scores. ``ALE/*-v5`` ids
    already skip 4 frames with sticky actions, so the wrapper does not skip again for them.
    """
    register_ale_ids()
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
    """Human-normalized score: ``(x - random) / (human - random)`` (see :mod:`sb3_gap.envs.scores`)."""
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
    :param make_env: ``(env_id, n_envs, seed, training, env_kwargs=None, env_wrapper=None) -> VecEnv``
    :param reference: ``env_id -> (low, high)`` for normalized scores, or ``None`` for raw scores
    :param normalization: One line saying what the normalized score means, for reports
    :param eval_epsilon: ε of the evaluation policy (0: greedy; Dopamine's protocols use 0.001)
    """

    name: str
    matches: Callable[[str], bool]
    make_env: EnvFactory = make_plain_env
    reference: Callable[[str], tuple[float, float] | None] = field(default=lambda env_id: None)
    normalization: str = "raw return"
    eval_epsilon: float = 0.0

    def make_eval_env(self, env_id: str, seed: int, env_kwargs: dict[str, Any] | None = None) -> VecEnv:
        """One evaluation env, with ε-greedy actions when :attr:`eval_epsilon` > 0."""
        venv = self.make_env(env_id, 1, seed, False, env_kwargs=env_kwargs)
        return EpsilonGreedyActions(venv, self.eval_epsilon, seed=seed) if self.eval_epsilon > 0 else venv


#: The registered protocols, in the order they are tried (:func:`register_protocol` puts one in front).
ENV_PROTOCOLS: list[EnvProtocol] = [
    EnvProtocol(
        "atari",
        is_sb3_gap_atari,
        _no_zoo_env_settings(make_sb3_gap_atari_env),
        atari_reference,
        "human-normalized (random/human scores of Mnih et al. 2015; Badia et al. 2020)",
        eval_epsilon=DOPAMINE_EVAL_EPSILON,
    ),
    EnvProtocol(
        "atari",
        lambda env_id: atari_game(env_id) is not None,
        _no_zoo_env_settings(make_atari_protocol_env),
        atari_reference,
        "human-normalized (random/human scores of Mnih et al. 2015; Badia et al. 2020)",
    ),
    # MinAtar as Dopamine runs it (dopamine/labs/environments/minatar): evaluation ε 0.001; the zoo's
    # minatar section adds the full action set (env_kwargs) and reward clipping (env_wrapper).
    EnvProtocol("minatar", lambda env_id: env_id.startswith("MinAtar/"), make_plain_env, eval_epsilon=DOPAMINE_EVAL_EPSILON),
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
    ENV_PROTOCOLS.insert(0, protocol)


def protocol_for(env_id: str) -> EnvProtocol:
    """The first registered protocol that matches ``env_id``."""
    return next(p for p in ENV_PROTOCOLS if p.matches(env_id))


def load_reference(path: str | Path) -> dict[str, tuple[float, float]]:
    """
    A user's reference table: a JSON object ``{env_id: [low, high]}`` (e.g. random and
    best-known MinAtar returns) used instead of the protocol's table for those ids.
    """
    data = json.loads(Path(path).read_text())
    table = {}
    for env_id, pair in data.items():
        finite = isinstance(pair, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
        if not (finite and len(pair) == 2 and pair[1] != pair[0]):
            raise Refused(f"Reference for {env_id!r} in {path} must be [low, high], two finite numbers with low != high, got {pair!r}")
        table[env_id] = (float(pair[0]), float(pair[1]))
    return table
