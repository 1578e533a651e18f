"""Per-configuration tables of a sweep's runs: aggregate metrics with stratified-bootstrap CIs (Agarwal et al. 2021,
via ``rliable``) and the diagnostics at each run's last evaluation.

The bootstrap needs the same number of runs on every game, so a configuration uses its ``m`` lowest complete seeds
per game, ``m`` being the smallest count of complete runs over its games; it is *missing* while some game has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

from sb3_gap.sweep.runs import config_columns

#: The aggregate metrics of every configuration, in the tables' order.
METRICS = ("IQM", "Median", "Mean", "Optimality gap")


def aggregate_metrics(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """IQM, median, mean and optimality gap (threshold ``gamma``) of a (runs × tasks) score matrix."""
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_optimality_gap(scores, gamma),
        ]
    )


def compute_aggregates(
    score_dict: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, gamma: float = 1.0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """
    Point estimates and 95% stratified bootstrap CIs of :data:`METRICS` for each configuration.

    :param score_dict: ``{config: scores}`` with ``scores`` of shape (runs, tasks)
    :param reps: Bootstrap replications
    :param seed: Seed of numpy's global generator, which ``rliable``'s bootstrap draws from
    :param gamma: Optimality-gap threshold (1 = human / max level for normalized scores)
    :return: ``{config: {metric: (point, low, high)}}``
    """
    np.random.seed(seed)
    points, intervals = rly.get_interval_estimates(score_dict, lambda x: aggregate_metrics(x, gamma), reps=reps)
    return {
        key: {m: (float(points[key][i]), float(intervals[key][0, i]), float(intervals[key][1, i])) for i, m in enumerate(METRICS)}
        for key in score_dict
    }


def score_matrices(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """
    ``{config: (m × tasks) normalized scores}`` for configurations with ≥ 1 complete run on every
    game, and ``{config: reason}`` for the others.
    """
    matrices, missing = {}, {}
    for label, group in df.groupby("config", sort=False):
        envs = sorted(group["env"].unique())
        done = group[group["state"] == "COMPLETE"]
        per_env = [done[done["env"] == e].sort_values("seed")["normalized"].to_numpy() for e in envs]
        m = min(len(s) for s in per_env)
        if m == 0:
            lacking = [e for e, s in zip(envs, per_env) if len(s) == 0]
            missing[label] = f"no complete run on {', '.join(lacking)} ({len(done)}/{len(group)} runs complete)"
            continue
        matrices[label] = np.stack([s[:m] for s in per_env], axis=1)
    return matrices, missing


def aggregate_table(df: pd.DataFrame, reps: int = 2000, seed: int = 0, gamma: float = 1.0) -> pd.DataFrame:
    """One row per configuration: metrics with CIs, runs used, cost and bottleneck size."""
    matrices, missing = score_matrices(df)
    estimates = compute_aggregates(matrices, reps=reps, seed=seed, gamma=gamma) if matrices else {}
    rows = []
    for label, group in df.groupby("config", sort=False):
        done = group[group["state"] == "COMPLETE"]
        row: dict[str, Any] = {c: group[c].iloc[0] for c in config_columns(df)}
        row.update(
            config=label,
            tasks=group["env"].nunique(),
            complete=len(done),
            cells=len(group),
            runs_per_task=matrices[label].shape[0] if label in matrices else 0,
            wall_h=done["wall_h"].mean() if len(done) else np.nan,
            params_bottleneck=done["params_bottleneck"].max() if len(done) else np.nan,
            params_total=done["params_total"].max() if len(done) else np.nan,
            params_effective_psi=pd.to_numeric(done["params_effective_psi"]).mean() if len(done) else np.nan,
            missing=missing.get(label, ""),
        )
        for metric in METRICS:
            point, low, high = estimates[label][metric] if label in estimates else (np.nan, np.nan, np.nan)
            row[metric], row[f"{metric} low"], row[f"{metric} high"] = point, low, high
        rows.append(row)
    return pd.DataFrame(rows)


#: Diagnostics recorded per evaluation by sweep runs (:class:`~sb3_gap.sweep.cell.SweepEvalCallback`), as plotted and tabulated.
DIAGNOSTICS = {
    "dormant_psi": "ψ dormant fraction (τ = 0.001)",
    "dormant_psi@0.1": "ψ dormant fraction (τ = 0.1)",
    "feature_norm_phi": "φ feature norm",
}


def diagnostics_table(df: pd.DataFrame) -> pd.DataFrame:
    """
    Final diagnostics per configuration: the mean over its complete runs (all games) of each run's value at its
    last evaluation, with the number of runs that recorded them and the share of wall time they cost.
    """
    rows: list[dict[str, Any]] = []
    if "diagnostics" not in df:  # a table built by hand, without the diagnostics column
        return pd.DataFrame(rows)
    for label, group in df[df["state"] == "COMPLETE"].groupby("config", sort=False):
        recorded = [d for d in group["diagnostics"] if isinstance(d, dict) and d.get("timesteps")]
        row: dict[str, Any] = dict(config=label, runs=len(recorded))
        for key in list(DIAGNOSTICS) + ["dormant_phi", "feature_norm_out"]:
            finals = [d[key][-1] for d in recorded if d.get(key)]
            row[key] = float(np.nanmean(finals)) if finals and not np.all(np.isnan(finals)) else np.nan
        row["overhead"] = float(pd.to_numeric(group.get("diag_overhead", pd.Series(dtype=float))).mean()) if recorded else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
