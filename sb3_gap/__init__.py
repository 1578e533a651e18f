"""sb3_gap: scale pixel-based deep RL networks in Stable-Baselines3 by minding the bottleneck."""

import sb3_gap.envs  # noqa: F401  (registers MinAtar/* ids)
from sb3_gap.bottlenecks import BOTTLENECKS
from sb3_gap.compile import compile_policy
from sb3_gap.encoders import ENCODERS, ImpalaEncoder, MinAtarEncoder, MinAtarImpalaEncoder, NatureEncoder
from sb3_gap.extractor import ConvExtractor, policy_kwargs
from sb3_gap.params import ParameterReport, parameter_report
from sb3_gap.rainbow import Rainbow

__version__ = "0.1.0"

__all__ = [
    "BOTTLENECKS",
    "ENCODERS",
    "ConvExtractor",
    "ImpalaEncoder",
    "MinAtarEncoder",
    "MinAtarImpalaEncoder",
    "NatureEncoder",
    "ParameterReport",
    "Rainbow",
    "compile_policy",
    "parameter_report",
    "policy_kwargs",
]
