"""Scaling sweeps (Optuna grid over bottleneck × width × env × seed) and their reports."""

from sb3_gap.sweep.protocols import PROTOCOLS, EnvProtocol, protocol_for, register_protocol
from sb3_gap.sweep.sweep import SweepSpec, open_study, run_sweep, run_worker, train_cell

__all__ = ["PROTOCOLS", "EnvProtocol", "SweepSpec", "open_study", "protocol_for", "register_protocol", "run_sweep", "run_worker", "train_cell"]
