"""The runs of sweep studies as one table: a row per grid cell, finished or not, with its score normalized by its
env's protocol and its configuration's label (every grid parameter but env and seed).

Several studies are merged (the same configuration in several studies = more seeds / more games): a cell that
finished in an earlier-listed study is kept.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from sb3_gap.checks import Refused
from sb3_gap.envs.protocols import protocol_for
from sb3_gap.sweep.database import check_holds_optuna_studies, check_sqlite_storage, check_storage_url, display_url, rdb_storage
from sb3_gap.sweep.spec import HP_PREFIX, cell_key
from sb3_gap.sweep.storage import best_trials


def _grid_cells(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """Every cell of every grid ever run in the study (GridSampler search spaces + trials' own params)."""
    spaces = {json.dumps(t.system_attrs["search_space"], sort_keys=True) for t in trials if "search_space" in t.system_attrs}
    spaces |= {json.dumps(space, sort_keys=True) for space in study.user_attrs.get("grids", [])}
    cells = {cell_key(t.params): t.params for t in trials if t.params}
    for space in map(json.loads, spaces):
        for values in itertools.product(*space.values()):
            params = dict(zip(space, values))
            cells.setdefault(cell_key(params), params)
    return list(cells.values())


def load_runs(sources: Sequence[tuple[str, str]], reference: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """
    One row per grid cell of the given studies, finished or not.

    :param sources: ``(storage_url, study_name)`` pairs; configurations shared between studies are merged (a cell
        that finished in an earlier-listed study is kept), refused when the studies fix other settings
    :param reference: ``{env_id: (low, high)}`` overriding the protocols' normalization
    :return: Columns: grid parameters, ``study``, ``state`` (``COMPLETE``, ``RUNNING``, ``FAIL``, ...,
        ``missing``), ``score``, ``normalized``, ``normalization``, ``wall_h``, parameter counts, ``curve``
    """
    reference = reference or {}
    rows: dict[str, dict[str, Any]] = {}
    first_study: dict[str, tuple[str, dict[str, Any]]] = {}  # cell key -> the first study holding it, and its fixed settings
    for storage, name in sources:
        study = _load_study(storage, name)
        trials = study.get_trials(deepcopy=False)
        best = best_trials([t for t in trials if t.params])  # queued trials without params: cells still "missing"
        training = study.user_attrs.get("training_config", {})
        fixed = training.get("fixed") or {}
        cells = _grid_cells(study, trials)
        foreign = [sorted(c) for c in cells if "env" not in c or "seed" not in c]
        if foreign:
            raise Refused(
                f"Study {name!r} in {display_url(storage)} was not made by `sb3-gap sweep`: its trials have parameters {foreign[0]}, "
                "without 'env' and 'seed'; pass the --study of a sweep"
            )
        for params in cells:
            key = cell_key(params)
            if key in first_study:
                check_same_fixed(params, *first_study[key], name, fixed)
            else:
                first_study[key] = (name, fixed)
            if key in rows and rows[key]["state"] == "COMPLETE":
                continue  # the same cell finished in an earlier-listed study
            rows[key] = _cell_row(params, name, training.get("steps"), best.get(key))
    df = pd.DataFrame(list(rows.values()))
    if df.empty:
        return df
    for col in ("score", "wall_h", "params_total", "params_bottleneck", "params_connection", "params_effective_psi", "curve", "settings",
                "diagnostics", "diag_overhead"):  # fmt: skip
        if col not in df:
            df[col] = None if col in ("curve", "settings", "diagnostics") else np.nan
    df["score"] = df["score"].astype(float)
    normalized, notes = [], []
    for env_id, score in zip(df["env"], df["score"]):
        protocol = protocol_for(env_id)
        ref = reference.get(env_id) or protocol.reference(env_id)
        note = "user reference" if env_id in reference else protocol.normalization
        normalized.append(score if ref is None else (score - ref[0]) / (ref[1] - ref[0]))
        notes.append(note if ref is not None else "raw return")
    df["normalized"] = normalized
    df["normalization"] = notes
    df["config"] = [config_label(r) for r in df.to_dict("records")]
    return df.sort_values(config_columns(df) + ["env", "seed"], kind="stable", ignore_index=True)


def _load_study(storage: str, name: str) -> optuna.Study:
    """Study ``name`` of an existing ``storage``, read only; refused in one line naming the studies there when absent."""
    check_storage_url(storage)
    check_sqlite_storage(storage, must_exist=True, write=False)  # a mistyped path is an error, never a new empty database
    check_holds_optuna_studies(storage)  # never create Optuna's tables in another program's database
    rdb = rdb_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
        raise Refused(f"No study {name!r} in {display_url(storage)}; studies there: {names}") from None


def check_same_fixed(params: dict[str, Any], study_a: str, fixed_a: dict[str, Any], study_b: str, fixed_b: dict[str, Any]) -> None:
    """
    Refuse to merge a cell that two studies hold when they fix other settings: the same grid parameters would then
    stand for two configurations, and the report would keep one of them under a label that names neither setting.

    :param params: The cell's grid parameters
    :param study_a: The first study holding it, and its fixed settings (``SweepSpec.fixed``)
    :param fixed_a: The first study's fixed settings
    :param study_b: The other study, and its fixed settings
    :param fixed_b: The other study's fixed settings
    :raises ValueError: One line naming both studies and each setting they fix differently
    """
    differing = sorted(k for k in set(fixed_a) | set(fixed_b) if k not in fixed_a or k not in fixed_b or fixed_a[k] != fixed_b[k])
    if differing:

        def value(fixed: dict[str, Any], k: str) -> str:
            return repr(fixed[k]) if k in fixed else "unset"

        settings = ", ".join(f"{k} ({value(fixed_a, k)} in {study_a!r}, {value(fixed_b, k)} in {study_b!r})" for k in differing)
        raise Refused(
            f"Cannot merge studies {study_a!r} and {study_b!r}: both hold the cell {cell_key(params)} but fix other settings: "
            f"{settings}; make such a setting a grid axis of the studies (--hyperparams) so that their cells differ, or "
            "report them separately"
        )


def _cell_row(params: dict[str, Any], study: str, steps: int | None, trial: optuna.trial.FrozenTrial | None) -> dict[str, Any]:
    """A cell's row: its grid parameters, study, budget and state, and for a complete trial its score and records."""
    row: dict[str, Any] = dict(params, study=study, steps=steps, state="missing" if trial is None else trial.state.name)
    if trial is not None and trial.state == TrialState.COMPLETE:
        attrs = trial.user_attrs
        row.update(
            score=trial.value,
            wall_h=attrs.get("wall_s", np.nan) / 3600,
            params_total=attrs.get("params_total"),
            params_bottleneck=(attrs.get("params_connection") or 0) + (attrs.get("params_psi") or 0),
            params_connection=attrs.get("params_connection"),
            params_effective_psi=_effective_psi(attrs),
            curve=dict(sorted(trial.intermediate_values.items())),
            settings=attrs.get("settings"),
            diagnostics=attrs.get("diagnostics"),  # per evaluation; None for runs that recorded none
            diag_overhead=attrs.get("diagnostics_s", np.nan) / attrs["wall_s"] if attrs.get("wall_s") else np.nan,
        )
    return row


def _effective_psi(attrs: dict[str, Any]) -> float | None:
    """A run's effective ψ parameters (``ParameterReport.effective_psi``); for runs recorded before that count
    existed, ``effective_total − phi`` (the same unless φ or deeper ψ layers were sparse)."""
    if attrs.get("params_effective_psi") is not None:
        return attrs["params_effective_psi"]
    if attrs.get("params_effective_total") is not None and attrs.get("params_phi") is not None:
        return attrs["params_effective_total"] - attrs["params_phi"]
    return None


def config_columns(df: pd.DataFrame) -> list[str]:
    """Columns that define a configuration (every grid parameter but env and seed)."""
    cols = ["algo", "encoder", "bottleneck", "width_scale"] + sorted(c for c in df.columns if c.startswith(HP_PREFIX))
    if df["steps"].nunique(dropna=False) > 1:
        cols.append("steps")
    return cols


def config_label(row: dict[str, Any]) -> str:
    """A configuration's name in tables and legends: algo, encoder, bottleneck, width scale and its hyperparameters."""
    hps = " ".join(f"{k[len(HP_PREFIX) :]}={row[k]}" for k in sorted(row) if k.startswith(HP_PREFIX) and not pd.isna(row[k]))
    label = f"{row['algo']} {row['encoder']} {row['bottleneck']} ×{row['width_scale']}"
    return f"{label} {hps}".strip()
