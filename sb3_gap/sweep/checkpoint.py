"""
Resumable sweep runs: a run's whole training state, written after each evaluation, so that a run stopped by a
crash, a kill or the end of a working session resumes from its last evaluation instead of from step 0.

A checkpoint is taken at the first rollout boundary after an evaluation (SB3's ``on_rollout_start``: the previous
rollout is stored and trained on, the next has not started), as Dopamine's ``Runner`` checkpoints at the end of each
iteration (``dopamine/discrete_domains/run_experiment.py``, ``_checkpoint_experiment``). It holds, in one pickle:

* the algorithm object itself (network, target network, optimizer, replay buffer, training env mid-episode,
  counters and schedules; SB3's own ``save`` leaves out the env and the replay buffer) without its logger;
* the evaluation env and the evaluation callback's record (curve, SB3's evaluation arrays, diagnostics buffer);
* Python's, NumPy's and torch's global random states.

Resuming restores all of it and calls ``learn`` for the remaining steps, so a resumed run continues bit for bit as
the uninterrupted run would (tested on CPU for Rainbow, DQN and PPO). Differences: the wall time lost between the
checkpoint and the stop is not counted in ``wall_s``; algorithms that redraw gSDE noise before ``on_rollout_start``
(SAC/TD3 with ``use_sde``) draw it again after a resume. A run whose envs cannot be pickled (envpool's C++ envs) is
not checkpointed: it restarts from step 0, as before.

A checkpoint is local data written by this machine's own run (never downloaded), read back only for the same run
folder and only if its resolved settings equal the run's; a checkpoint that differs or cannot be read is set aside
(``checkpoint.unusable.pkl``) and the run starts from step 0. It is deleted when the run's ``result.json`` is written.
"""

from __future__ import annotations

import logging
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from sb3_gap.files import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pkl"
UNUSABLE_NAME = "checkpoint.unusable.pkl"
#: Version of the checkpoint's layout; a checkpoint of another version is set aside.
CHECKPOINT_FORMAT = 1

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What a resumed run continues from (see the module docstring)."""

    model: BaseAlgorithm
    eval_env: Any
    evaluator: dict[str, Any]
    rng: dict[str, Any]


def global_rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global random states (CUDA's where present)."""
    state: dict[str, Any] = dict(python=random.getstate(), numpy=np.random.get_state(), torch=th.get_rng_state())
    if th.cuda.is_available():
        state["cuda"] = th.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    th.set_rng_state(state["torch"])
    if "cuda" in state and th.cuda.is_available():
        th.cuda.set_rng_state_all(state["cuda"])


def dump_run_state(model: BaseAlgorithm, eval_env: Any, evaluator: dict[str, Any], settings: dict[str, Any]) -> bytes | None:
    """
    The checkpoint's bytes, or ``None`` when the model's envs cannot be pickled (the run is then not checkpointed).

    The model is pickled without its logger (a TensorBoard writer holds open files and a thread); ``learn`` makes a
    new one on resume. Nothing is changed or drawn: the random states are read, not advanced.
    """
    logger = model.__dict__.pop("_logger", None)
    try:
        payload = dict(format=CHECKPOINT_FORMAT, settings=settings, model=model, eval_env=eval_env, evaluator=evaluator, rng=global_rng_state())
        return cloudpickle.dumps(payload)
    except Exception as e:  # an env or object that cannot be pickled (envpool, compiled functions): TypeError and others
        log.warning("Run not checkpointed (its state cannot be pickled: %s); a stopped run restarts from step 0", e, exc_info=e)
        return None
    finally:
        if logger is not None:
            model.__dict__["_logger"] = logger


def load_run_state(path: Path, settings: dict[str, Any]) -> RunState | None:
    """
    The state saved at ``path`` if it belongs to a run with these resolved ``settings``; else ``None`` (no file), or
    ``None`` after setting the file aside as :data:`UNUSABLE_NAME` with a warning naming why.
    """
    if not path.is_file():
        return None
    error: Exception | None = None
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)
        problem = None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            problem = f"is not a checkpoint of format {CHECKPOINT_FORMAT}"
        elif payload["settings"] != settings:
            problem = "has settings other than this run's"
    except Exception as e:  # written by other code (an older sb3_gap, other library versions) or cut short
        problem, error = f"cannot be read ({type(e).__name__}: {e})", e
    if problem is not None:
        aside = path.with_name(UNUSABLE_NAME)
        path.replace(aside)
        log.warning("Checkpoint %s %s: set aside as %s; the run starts from step 0", path, problem, aside.name, exc_info=error)
        return None
    return RunState(model=payload["model"], eval_env=payload["eval_env"], evaluator=payload["evaluator"], rng=payload["rng"])


class RunCheckpoint(BaseCallback):
    """
    Writes the run's state to ``path`` (atomically) at the first rollout boundary after each new evaluation of
    ``evaluator``.

    :param path: The checkpoint file (``<run folder>/checkpoint.pkl``)
    :param evaluator: The run's :class:`~sb3_gap.sweep.cell.SweepEvalCallback`
    :param settings: The run's resolved settings; a checkpoint resumes only a run with the same
    """

    def __init__(self, path: Path, evaluator: Any, settings: dict[str, Any]) -> None:
        super().__init__()
        self.path = Path(path)
        self.evaluator = evaluator
        self.settings = settings
        self.saved_evaluations = len(evaluator.curve["timesteps"])
        self.enabled = True

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        evaluations = len(self.evaluator.curve["timesteps"])
        if not self.enabled or evaluations == self.saved_evaluations:
            return
        data = dump_run_state(self.model, self.evaluator.eval_env, self.evaluator.state(), self.settings)
        if data is None:
            self.enabled = False
            return
        atomic_write_bytes(self.path, data)
        self.saved_evaluations = evaluations
