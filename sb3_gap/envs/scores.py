"""Reference scores used to normalize returns across games, as data, with their sources.

* **Atari** (human-normalized score ``(x - random) / (human - random)``): the random and human
  scores of the 57 Atari games of Mnih et al. 2015 ("Human-level control through deep
  reinforcement learning", Nature, Extended Data Table 2), extended to Defender, Phoenix,
  Pitfall, Skiing, Solaris, Surround, Yars' Revenge and Berzerk by van Hasselt et al. 2016
  ("Deep RL with Double Q-learning", Table S3) and Badia et al. 2020 (Agent57, Table H.4).
  This is the table of DeepMind's DQN Zoo (``dqn_zoo/atari_data.py``); Dopamine's copy is the
  same except Video Pinball's random score (0.0 there, 16256.9 in Mnih et al. 2015 and here).
* **Procgen** (min-max normalized score ``(x - R_min) / (R_max - R_min)``): the per-game
  constants of Cobbe et al. 2020 ("Leveraging Procedural Generation to Benchmark Reinforcement
  Learning", ICML, Appendix C, Table 4), for the ``easy`` and ``hard`` distribution modes.
* **MinAtar** (Young & Tian 2019) has no published reference table: scores are reported raw
  unless a user supplies ``{env_id: [low, high]}`` (see :func:`sb3_gap.envs.protocols.load_reference`).
"""

from __future__ import annotations

ATARI_RANDOM: dict[str, float] = {
    "Alien": 227.8, "Amidar": 5.8, "Assault": 222.4, "Asterix": 210.0, "Asteroids": 719.1,
    "Atlantis": 12850.0, "BankHeist": 14.2, "BattleZone": 2360.0, "BeamRider": 363.9,
    "Berzerk": 123.7, "Bowling": 23.1, "Boxing": 0.1, "Breakout": 1.7, "Centipede": 2090.9,
    "ChopperCommand": 811.0, "CrazyClimber": 10780.5, "Defender": 2874.5, "DemonAttack": 152.1,
    "DoubleDunk": -18.6, "Enduro": 0.0, "FishingDerby": -91.7, "Freeway": 0.0, "Frostbite": 65.2,
    "Gopher": 257.6, "Gravitar": 173.0, "Hero": 1027.0, "IceHockey": -11.2, "Jamesbond": 29.0,
    "Kangaroo": 52.0, "Krull": 1598.0, "KungFuMaster": 258.5, "MontezumaRevenge": 0.0,
    "MsPacman": 307.3, "NameThisGame": 2292.3, "Phoenix": 761.4, "Pitfall": -229.4, "Pong": -20.7,
    "PrivateEye": 24.9, "Qbert": 163.9, "Riverraid": 1338.5, "RoadRunner": 11.5, "Robotank": 2.2,
    "Seaquest": 68.4, "Skiing": -17098.1, "Solaris": 1236.3, "SpaceInvaders": 148.0,
    "StarGunner": 664.0, "Surround": -10.0, "Tennis": -23.8, "TimePilot": 3568.0, "Tutankham": 11.4,
    "UpNDown": 533.4, "Venture": 0.0, "VideoPinball": 16256.9, "WizardOfWor": 563.5,
    "YarsRevenge": 3092.9, "Zaxxon": 32.5,
}  # fmt: skip

ATARI_HUMAN: dict[str, float] = {
    "Alien": 7127.7, "Amidar": 1719.5, "Assault": 742.0, "Asterix": 8503.3, "Asteroids": 47388.7,
    "Atlantis": 29028.1, "BankHeist": 753.1, "BattleZone": 37187.5, "BeamRider": 16926.5,
    "Berzerk": 2630.4, "Bowling": 160.7, "Boxing": 12.1, "Breakout": 30.5, "Centipede": 12017.0,
    "ChopperCommand": 7387.8, "CrazyClimber": 35829.4, "Defender": 18688.9, "DemonAttack": 1971.0,
    "DoubleDunk": -16.4, "Enduro": 860.5, "FishingDerby": -38.7, "Freeway": 29.6, "Frostbite": 4334.7,
    "Gopher": 2412.5, "Gravitar": 3351.4, "Hero": 30826.4, "IceHockey": 0.9, "Jamesbond": 302.8,
    "Kangaroo": 3035.0, "Krull": 2665.5, "KungFuMaster": 22736.3, "MontezumaRevenge": 4753.3,
    "MsPacman": 6951.6, "NameThisGame": 8049.0, "Phoenix": 7242.6, "Pitfall": 6463.7, "Pong": 14.6,
    "PrivateEye": 69571.3, "Qbert": 13455.0, "Riverraid": 17118.0, "RoadRunner": 7845.0,
    "Robotank": 11.9, "Seaquest": 42054.7, "Skiing": -4336.9, "Solaris": 12326.7,
    "SpaceInvaders": 1668.7, "StarGunner": 10250.0, "Surround": 6.5, "Tennis": -8.3,
    "TimePilot": 5229.2, "Tutankham": 167.6, "UpNDown": 11693.2, "Venture": 1187.5,
    "VideoPinball": 17667.9, "WizardOfWor": 4756.5, "YarsRevenge": 54576.9, "Zaxxon": 9173.3,
}  # fmt: skip

# Cobbe et al. 2020, Appendix C: (R_min, R_max) per game and distribution mode.
PROCGEN_MIN_MAX: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {
        "coinrun": (5, 10), "starpilot": (2.5, 64), "caveflyer": (3.5, 12), "dodgeball": (1.5, 19),
        "fruitbot": (-1.5, 32.4), "chaser": (0.5, 13), "miner": (1.5, 13), "jumper": (3, 10),
        "leaper": (3, 10), "maze": (5, 10), "bigfish": (1, 40), "heist": (3.5, 10),
        "climber": (2, 12.6), "plunder": (4.5, 30), "ninja": (3.5, 10), "bossfight": (0.5, 13),
    },
    "hard": {
        "coinrun": (5, 10), "starpilot": (1.5, 35), "caveflyer": (2, 13.4), "dodgeball": (1.5, 19),
        "fruitbot": (-0.5, 27.2), "chaser": (0.5, 14.2), "miner": (1.5, 20), "jumper": (1, 10),
        "leaper": (1.5, 10), "maze": (4, 10), "bigfish": (0, 40), "heist": (2, 10),
        "climber": (1, 12.6), "plunder": (3, 30), "ninja": (2, 10), "bossfight": (0.5, 13),
    },
}  # fmt: skip
