"""Scaling sweeps (Optuna grid over bottleneck × width × env × seed) and their reports.

* :mod:`~sb3_gap.sweep.spec`: the grid (:class:`SweepSpec`), cell keys, run names and folders, checks
* :mod:`~sb3_gap.sweep.database`: storage URLs, ``RDBStorage``, SQLite probes, secrets masked in messages
* :mod:`~sb3_gap.sweep.storage`: the Optuna study, its grid sampler, the best trial per cell
* :mod:`~sb3_gap.sweep.cell`: one run (its settings, model, evaluation callback, :func:`train_cell`)
* :mod:`~sb3_gap.sweep.workers`: the worker loop and local worker processes (:func:`run_sweep`)
* :mod:`~sb3_gap.sweep.cli`: ``sb3-gap sweep`` (parser, presets, ``main``)
* :mod:`~sb3_gap.sweep.report`: reports (``sb3-gap report``), from :mod:`~sb3_gap.sweep.runs` (the runs table),
  :mod:`~sb3_gap.sweep.aggregates` (metrics per configuration), :mod:`~sb3_gap.sweep.plots` and
  :mod:`~sb3_gap.sweep.summary` (``summary.md``)

Env protocols (how envs are built, evaluated and normalized) are in :mod:`sb3_gap.envs.protocols`.
"""

from sb3_gap.envs.protocols import ENV_PROTOCOLS, EnvProtocol, protocol_for, register_protocol
from sb3_gap.sweep.cell import train_cell
from sb3_gap.sweep.spec import SweepSpec
from sb3_gap.sweep.storage import open_study
from sb3_gap.sweep.workers import run_sweep, run_worker

PROTOCOLS = ENV_PROTOCOLS  # the name this package exported before the protocols moved to sb3_gap.envs

__all__ = [
    "ENV_PROTOCOLS",
    "PROTOCOLS",
    "EnvProtocol",
    "SweepSpec",
    "open_study",
    "protocol_for",
    "register_protocol",
    "run_sweep",
    "run_worker",
    "train_cell",
]
