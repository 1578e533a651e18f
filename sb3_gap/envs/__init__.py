"""Environments of the paper's protocols, registered with gymnasium on ``import sb3_gap``.

* ``MinAtar/<Game>-v1``: MinAtar as uint8 (k, 10, 10) images (:mod:`sb3_gap.envs.minatar`)
* ``Dopamine/<Game>-v5`` and ``Atari100k/<Game>-v5``: Atari protocols (:mod:`sb3_gap.envs.atari`)
* ``Procgen/<Game>-v0``: Procgen through envpool (:mod:`sb3_gap.envs.procgen`)

See ``docs/environments.md``.
"""

from sb3_gap.envs.atari import (
    ATARI_100K_GAMES,
    ATARI_GAMES,
    ATARI_PROTOCOLS,
    atari_training_wrapper,
    make_atari,
    make_atari_vec_env,
    register_atari,
)
from sb3_gap.envs.envpool_vec import EnvPoolVecEnv
from sb3_gap.envs.minatar import MINATAR_GAMES, MinAtarImage, make_minatar, register_minatar
from sb3_gap.envs.procgen import PROCGEN_GAMES, ProcgenEnv, make_procgen_vec_env, register_procgen

register_minatar()
register_atari()
register_procgen()

__all__ = [
    "ATARI_100K_GAMES",
    "ATARI_GAMES",
    "MINATAR_GAMES",
    "PROCGEN_GAMES",
    "ATARI_PROTOCOLS",
    "EnvPoolVecEnv",
    "MinAtarImage",
    "ProcgenEnv",
    "atari_training_wrapper",
    "make_atari",
    "make_atari_vec_env",
    "make_minatar",
    "make_procgen_vec_env",
    "register_atari",
    "register_minatar",
    "register_procgen",
]
