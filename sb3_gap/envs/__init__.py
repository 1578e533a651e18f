"""Environments of the paper's protocols, registered with gymnasium on ``import sb3_gap``."""

from sb3_gap.envs.minatar import MINATAR_GAMES, MinAtarImage, make_minatar, register_minatar

register_minatar()

__all__ = ["MINATAR_GAMES", "MinAtarImage", "make_minatar", "register_minatar"]
