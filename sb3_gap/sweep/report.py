"""Reports of scaling sweeps, as in the paper: final scores, normalized scores, aggregate metrics
with stratified-bootstrap CIs (Agarwal et al. 2021, via ``rliable``), performance profiles, and
plots of score vs width scale (Fig. 6 left), cost vs score (Fig. 9), a comparison of methods (Fig. 10:
median, IQM and mean with CIs per configuration), score vs effective ψ parameters (Fig. 5 right) and
learning curves.

Works on finished and partial studies (missing or unfinished cells are marked) and on several
studies merged (same configuration in several studies = more seeds / more games).

* A run's **final score** is the mean of its last ``final_evals`` evaluations (the sweep records it).
* **Normalization** follows each env's protocol (:mod:`sb3_gap.envs.protocols`): Atari
  human-normalized, Procgen min-max normalized, anything else (MinAtar) raw unless a reference
  table ``{env_id: [low, high]}`` is given.
* **Aggregates** per configuration (every grid parameter except env and seed) over its games:
  IQM, median, mean and optimality gap, with 95% stratified bootstrap CIs. The bootstrap needs the
  same number of runs on every game, so a configuration uses its ``m`` lowest complete seeds per
  game, ``m`` being the smallest count of complete runs over its games; it is *missing* while
  some game has none.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.lines

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from rliable import library as rly  # noqa: E402
from rliable import metrics  # noqa: E402

from sb3_gap.checks import Refused, check_int, is_number  # noqa: E402
from sb3_gap.envs.protocols import load_reference, protocol_for  # noqa: E402
from sb3_gap.files import atomic_save_figure, atomic_write_text  # noqa: E402
from sb3_gap.sweep.database import (  # noqa: E402
    check_holds_optuna_studies,
    check_sqlite_storage,
    check_storage_url,
    cli_message,
    display_url,
    is_refusal,
    rdb_storage,
)
from sb3_gap.sweep.spec import HP_PREFIX, cell_key  # noqa: E402
from sb3_gap.sweep.storage import best_trials  # noqa: E402

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


# --------------------------------------------------------------------------------- loading
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

    :param sources: ``(storage_url, study_name)`` pairs; configurations shared between studies are merged
    :param reference: ``{env_id: (low, high)}`` overriding the protocols' normalization
    :return: Columns: grid parameters, ``study``, ``state`` (``COMPLETE``, ``RUNNING``, ``FAIL``, ...,
        ``missing``), ``score``, ``normalized``, ``normalization``, ``wall_h``, parameter counts, ``curve``
    """
    reference = reference or {}
    rows: dict[str, dict[str, Any]] = {}
    for storage, name in sources:
        check_storage_url(storage)
        check_sqlite_storage(storage, must_exist=True, write=False)  # a mistyped path is an error, never a new empty database
        check_holds_optuna_studies(storage)  # never create Optuna's tables in another program's database
        rdb = rdb_storage(storage)
        try:
            study = optuna.load_study(study_name=name, storage=rdb)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
            raise Refused(f"No study {name!r} in {display_url(storage)}; studies there: {names}") from None
        trials = study.get_trials(deepcopy=False)
        best = best_trials([t for t in trials if t.params])  # queued trials without params: cells still "missing"
        steps = study.user_attrs.get("training_config", {}).get("steps")
        cells = _grid_cells(study, trials)
        foreign = [sorted(c) for c in cells if "env" not in c or "seed" not in c]
        if foreign:
            raise Refused(
                f"Study {name!r} in {display_url(storage)} was not made by `sb3-gap sweep`: its trials have parameters {foreign[0]}, "
                "without 'env' and 'seed'; pass the --study of a sweep"
            )
        for params in cells:
            key = cell_key(params)
            if key in rows and rows[key]["state"] == "COMPLETE":
                continue  # the same cell finished in an earlier-listed study
            t = best.get(key)
            row: dict[str, Any] = dict(params, study=name, steps=steps, state="missing" if t is None else t.state.name)
            if t is not None and t.state == TrialState.COMPLETE:
                attrs = t.user_attrs
                row.update(
                    score=t.value,
                    wall_h=attrs.get("wall_s", np.nan) / 3600,
                    params_total=attrs.get("params_total"),
                    params_bottleneck=(attrs.get("params_connection") or 0) + (attrs.get("params_psi") or 0),
                    params_connection=attrs.get("params_connection"),
                    params_effective_psi=_effective_psi(attrs),
                    curve=dict(sorted(t.intermediate_values.items())),
                    settings=attrs.get("settings"),
                    diagnostics=attrs.get("diagnostics"),  # per evaluation (sweep runs since issue 27); None for older runs
                    diag_overhead=attrs.get("diagnostics_s", np.nan) / attrs["wall_s"] if attrs.get("wall_s") else np.nan,
                )
            rows[key] = row
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
    hps = " ".join(f"{k[len(HP_PREFIX) :]}={row[k]}" for k in sorted(row) if k.startswith(HP_PREFIX) and not pd.isna(row[k]))
    label = f"{row['algo']} {row['encoder']} {row['bottleneck']} ×{row['width_scale']}"
    return f"{label} {hps}".strip()


# --------------------------------------------------------------------------------- aggregates
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


# --------------------------------------------------------------------------------- plots
def _series_key(row: pd.Series, cols: list[str]) -> str:
    return " ".join(f"{c[len(HP_PREFIX) :]}={row[c]}" if c.startswith(HP_PREFIX) else str(row[c]) for c in cols)


def _plot_points_with_ci(ax: Any, data: pd.DataFrame, x: str, metric: str, log_x: bool = True) -> None:
    """One point per configuration (row of ``data``) at column ``x``, with the metric's 95% CI as error bar;
    log-scaled x when ``log_x`` and every x is positive."""
    for _, row in data.iterrows():
        yerr = [[row[metric] - row[f"{metric} low"]], [row[f"{metric} high"] - row[metric]]]
        ax.errorbar(row[x], row[metric], yerr=yerr, marker="o", capsize=3, label=row["config"])
    if log_x and len(data) and data[x].min() > 0:
        ax.set_xscale("log")


def _save(fig: Any, path: Path, bbox_inches: str | None = None) -> None:
    """``fig`` laid out (or cropped, with ``bbox_inches="tight"``), written whole or not at all to ``path`` (120 dpi) and closed."""
    if bbox_inches is None:
        fig.tight_layout()
    try:
        atomic_save_figure(fig, path, dpi=120, bbox_inches=bbox_inches)
    finally:
        plt.close(fig)


def plot_scaling(agg: pd.DataFrame, path: Path, metric: str = "IQM", score_label: str = "normalized score") -> None:
    """Aggregate score vs ψ width scale, one line per bottleneck (and other config axes), 95% CI shaded (Fig. 6 left)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    others = [c for c in agg.columns if c in ("algo", "encoder", "bottleneck", "steps") or c.startswith(HP_PREFIX)]
    for _key, group in agg.dropna(subset=[metric]).groupby(others, sort=False):
        group = group.sort_values("width_scale")
        label = _series_key(group.iloc[0], others)
        ax.plot(group["width_scale"], group[metric], marker="o", label=label)
        ax.fill_between(group["width_scale"], group[f"{metric} low"], group[f"{metric} high"], alpha=0.2)
    ax.set_xscale("log", base=2)
    scales = sorted(agg["width_scale"].unique())
    ax.set_xticks(scales, [f"×{s}" for s in scales])
    ax.set_xlabel("ψ width scale")
    ax.set_ylabel(f"{metric} ({score_label})")
    ax.set_title(f"{metric} vs width (95% stratified bootstrap CI)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_cost(agg: pd.DataFrame, path: Path, metric: str = "IQM", score_label: str = "normalized score") -> None:
    """Cost vs aggregate score: wall-clock hours per run and bottleneck parameters (Fig. 9)."""
    data = agg.dropna(subset=[metric])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, col, xlabel in ((axes[0], "wall_h", "wall-clock hours per run"), (axes[1], "params_bottleneck", "bottleneck + ψ parameters")):
        _plot_points_with_ci(ax, data, col, metric, log_x=col == "params_bottleneck")
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(f"{metric} ({score_label})")
    axes[1].legend(fontsize=6)
    fig.suptitle("Cost vs performance")
    _save(fig, path)


#: The metrics of Fig. 10 of Sokar & Castro (2025), in its order.
METHOD_METRICS = ("Median", "IQM", "Mean")


def plot_methods(agg: pd.DataFrame, path: Path, score_label: str = "normalized score") -> None:
    """Median, IQM and mean with 95% CIs, one row per configuration (Fig. 10 style), via ``rliable``'s
    ``plot_interval_estimates``; configurations without an aggregate are left out."""
    from rliable import plot_utils

    data = agg.dropna(subset=list(METHOD_METRICS))
    points = {row["config"]: np.array([row[m] for m in METHOD_METRICS]) for _, row in data.iterrows()}
    intervals = {
        row["config"]: np.array([[row[f"{m} low"] for m in METHOD_METRICS], [row[f"{m} high"] for m in METHOD_METRICS]]) for _, row in data.iterrows()
    }
    fig, _ = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=list(METHOD_METRICS), algorithms=list(points), xlabel=score_label,
        subfigure_width=3.4, row_height=0.45, xlabel_y_coordinate=-0.25 if len(points) < 4 else -0.1,
    )  # fmt: skip
    _save(fig, path, bbox_inches="tight")


def plot_effective_psi(agg: pd.DataFrame, path: Path, metric: str = "IQM", score_label: str = "normalized score") -> None:
    """Aggregate score vs the effective number of ψ parameters (masked weights left out), one point per
    configuration with its 95% CI (Fig. 5 right)."""
    data = agg.dropna(subset=[metric, "params_effective_psi"])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    _plot_points_with_ci(ax, data, "params_effective_psi", metric)
    ax.set_xlabel("effective ψ parameters (non-zero, connection included)")
    ax.set_ylabel(f"{metric} ({score_label})")
    ax.set_title(f"{metric} vs effective ψ parameters (95% CI)")
    ax.legend(fontsize=6)
    _save(fig, path)


def plot_curves(df: pd.DataFrame, path: Path) -> None:
    """Evaluation return vs env steps per game: mean over complete runs, shaded ± 1 standard error."""
    envs = sorted(df["env"].unique())
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.4), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        done = df[(df["env"] == env_id) & (df["state"] == "COMPLETE")]
        for label, group in done.groupby("config", sort=False):
            curves = [pd.Series(c) for c in group["curve"] if isinstance(c, dict) and c]
            if not curves:
                continue
            table = pd.concat(curves, axis=1).sort_index()
            mean = table.mean(axis=1)
            sem = table.std(axis=1, ddof=0).fillna(0) / np.sqrt(table.count(axis=1))
            ax.plot(mean.index, mean, label=f"{label} (n={len(curves)})")
            ax.fill_between(mean.index, mean - sem, mean + sem, alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=6)
    _save(fig, path)


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
    if "diagnostics" not in df:  # a table built by hand (or runs from before diagnostics were recorded)
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


def plot_dormancy(df: pd.DataFrame, path: Path) -> bool:
    """
    ψ's dormant fractions and φ's feature norm vs env steps (paper Fig. 7), one column per game, one line per
    configuration: mean over complete runs, shaded ± 1 standard error. Returns ``False`` (no file) when no run recorded them.
    """
    done = df[(df["state"] == "COMPLETE") & df["diagnostics"].map(lambda d: isinstance(d, dict) and bool(d.get("timesteps")))]
    if done.empty:
        return False
    envs = sorted(done["env"].unique())
    fig, axes = plt.subplots(len(DIAGNOSTICS), len(envs), figsize=(4.5 * len(envs), 2.8 * len(DIAGNOSTICS)), squeeze=False)
    for col, env_id in enumerate(envs):
        for label, group in done[done["env"] == env_id].groupby("config", sort=False):
            for row, (key, title) in enumerate(DIAGNOSTICS.items()):
                series = [pd.Series(d[key], index=d["timesteps"]) for d in group["diagnostics"] if d.get(key)]
                if not series:
                    continue
                table = pd.concat(series, axis=1).sort_index()
                mean = table.mean(axis=1)
                sem = table.std(axis=1, ddof=0).fillna(0) / np.sqrt(table.count(axis=1))
                ax = axes[row][col]
                ax.plot(mean.index, mean, label=f"{label} (n={len(series)})")
                ax.fill_between(mean.index, mean - sem, mean + sem, alpha=0.2)
                ax.set_title(f"{env_id}: {title}", fontsize=8)
                ax.set_xlabel("env steps")
        axes[0][col].legend(fontsize=6)
    _save(fig, path)
    return True


def plot_profiles(matrices: dict[str, np.ndarray], path: Path, reps: int = 2000, seed: int = 0, score_label: str = "normalized score") -> None:
    """Performance profiles (fraction of runs above τ) with 95% CIs, via ``rliable``."""
    from rliable import plot_utils

    values = np.concatenate([m.ravel() for m in matrices.values()])
    low, high = float(values.min()), float(values.max())
    taus = np.linspace(low, high if high > low else low + 1.0, 81)
    np.random.seed(seed)
    profiles, cis = rly.create_performance_profile(matrices, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    colors = dict(zip(matrices, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, colors=colors, xlabel=f"{score_label} τ", ax=ax)
    handles = [matplotlib.lines.Line2D([], [], color=colors[k], label=k) for k in matrices]
    ax.legend(handles=handles, fontsize=6)
    _save(fig, path)


# --------------------------------------------------------------------------------- markdown
def _ci(row: pd.Series, metric: str) -> str:
    if pd.isna(row[metric]):
        return "missing"
    return f"{row[metric]:.3g} [{row[f'{metric} low']:.3g}, {row[f'{metric} high']:.3g}]"


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None or pd.isna(value) else format(value, spec)


def markdown_summary(df: pd.DataFrame, agg: pd.DataFrame, sources: Sequence[tuple[str, str]], figures: list[str], gamma: float = 1.0) -> str:
    done = (df["state"] == "COMPLETE").sum()
    lines = [
        "# Sweep report",
        "",
        f"Studies: {', '.join(f'`{n}` ({display_url(s)})' for s, n in sources)}. Complete runs: {done}/{len(df)}.",
        "",
        "Normalization: "
        + "; ".join(f"`{e}`: {n}" for e, n in df.groupby("env")["normalization"].first().items())
        + ". A run's score is the mean of its last evaluations. CIs: 95% stratified bootstrap (Agarwal et al. 2021, `rliable`)."
        + f" The optimality gap is the mean shortfall below γ = {gamma:g}, meaningful for normalized scores only.",
        "",
        "## Aggregates per configuration",
        "",
        "| configuration | runs/game × games | IQM | Median | Mean | Optimality gap | wall h/run | bottleneck+ψ params | effective ψ params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in agg.iterrows():
        runs = f"{row['runs_per_task']} × {row['tasks']} ({row['complete']}/{row['cells']} done)"
        cells = [_ci(row, m) for m in METRICS]
        lines.append(
            f"| {row['config']} | {runs} | " + " | ".join(cells) + f" | {_fmt(row['wall_h'], '.3f')} | {_fmt(row['params_bottleneck'], ',.0f')} "
            f"| {_fmt(row.get('params_effective_psi', np.nan), ',.0f')} |"
        )
    missing = agg[agg["missing"] != ""]
    if len(missing):
        lines += ["", "Missing aggregates: " + "; ".join(f"{r['config']}: {r['missing']}" for _, r in missing.iterrows()) + "."]
    envs = sorted(df["env"].unique())
    lines += ["", "## Final score per game (mean over complete seeds; n = complete/cells; raw return)", ""]
    lines += ["| configuration | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
    for label, group in df.groupby("config", sort=False):
        cells = []
        for env_id in envs:
            g = group[group["env"] == env_id]
            ok = g[g["state"] == "COMPLETE"]
            if len(ok) == 0:
                states = ", ".join(f"{s.lower()}: {c}" for s, c in g["state"].value_counts().items())
                cells.append(f"missing ({states})" if len(g) else "not in grid")
            else:
                cells.append(f"{ok['score'].mean():.3g} (n={len(ok)}/{len(g)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    diag = diagnostics_table(df)
    if len(diag) and (diag["runs"] > 0).any():
        lines += [
            "",
            "## Diagnostics at the last evaluation (mean over complete runs and games)",
            "",
            "τ-dormant fractions of ψ and φ (Sokar et al. 2023; τ = 0.001 as in the paper's appendix, 0.1 as in ReDo) and feature "
            "norms (paper Fig. 7), measured on each run's last 256 training observations; overhead = their share of the run's wall time.",
            "",
            "| configuration | runs | ψ dormant τ=0.001 | ψ dormant τ=0.1 | φ dormant τ=0.001 | φ feature norm | output feature norm | overhead |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in diag.iterrows():
            lines.append(
                f"| {r['config']} | {r['runs']} | {_fmt(r['dormant_psi'], '.3f')} | {_fmt(r['dormant_psi@0.1'], '.3f')} | "
                f"{_fmt(r['dormant_phi'], '.3f')} | {_fmt(r['feature_norm_phi'], '.3g')} | {_fmt(r['feature_norm_out'], '.3g')} | "
                f"{_fmt(100 * r['overhead'], '.2f')}% |"
            )
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    lines += settings_section(df, sources)
    return "\n".join(lines) + "\n"


def _settings_key(settings: dict[str, Any]) -> str:
    # What a configuration trains with, without what differs per run (env, seed) by construction.
    # (The Zoo section's name differs per env even when its content is shared through a YAML anchor.)
    return json.dumps({k: v for k, v in settings.items() if k not in ("env", "seed", "zoo_source")}, sort_keys=True)


def settings_section(df: pd.DataFrame, sources: Sequence[tuple[str, str]]) -> list[str]:
    """
    Markdown listing what each configuration ran with: the Zoo section the hyperparameters came
    from, the overrides, and the resolved hyperparameters and network (from each run's ``settings.json``,
    stored with its trial). Runs of one configuration that differ are listed separately.
    """
    lines = ["", "## Settings per configuration", ""]
    done = df[(df["state"] == "COMPLETE") & df["settings"].notna()]
    if done.empty:
        return lines + ["No complete run recorded its settings."]
    for label, group in done.groupby("config", sort=False):
        variants: dict[str, list[str]] = {}
        zoo_sources: dict[str, set[str]] = {}
        for _, row in group.iterrows():
            key = _settings_key(row["settings"])
            variants.setdefault(key, []).append(f"{row['env']} s{row['seed']}")
            zoo_sources.setdefault(key, set()).add(str(row["settings"].get("zoo_source")))
        for key, runs in variants.items():
            settings = json.loads(key)
            scope = "all its runs" if len(variants) == 1 else ", ".join(runs)
            lines += [
                f"**{label}** ({scope}): hyperparameters from `{'`, `'.join(sorted(zoo_sources[key]))}`, "
                f"overrides `{json.dumps(settings.get('overrides', {}), sort_keys=True)}`, {settings.get('steps')} steps, "
                f"evaluation {json.dumps(settings.get('eval', {}), sort_keys=True)}.",
                "",
                "```json",
                json.dumps({k: settings.get(k) for k in ("hyperparameters", "policy_kwargs", "env_settings")}, indent=1, sort_keys=True),
                "```",
                "",
            ]
    return lines


def check_gamma(gamma: Any) -> float:
    """
    Check the optimality-gap threshold (``--gamma``): a finite number.

    :raises ValueError: Naming the value (NaN or infinite would make every optimality gap NaN or infinite)
    """
    if not is_number(gamma) or not math.isfinite(gamma):
        raise Refused(f"--gamma (the optimality-gap threshold) must be a finite number (e.g. 1 for normalized scores), got {gamma!r}")
    return float(gamma)


def check_reps(reps: Any) -> int:
    """
    Check the bootstrap replications (``--reps``): a positive integer.

    :raises ValueError: Naming the value (0 or fewer replications leave no interval to estimate)
    """
    return check_int("--reps (bootstrap replications)", reps, example="2000; 200 for a quick look")


def build_report(
    sources: Sequence[tuple[str, str]],
    out_dir: str | Path,
    reference: dict[str, tuple[float, float]] | None = None,
    reps: int = 2000,
    seed: int = 0,
    gamma: float = 1.0,
    print_table: bool = False,
) -> Path:
    """
    Write ``summary.md``, ``runs.csv``, ``aggregates.csv`` and PNG plots for the given studies.

    :param sources: ``(storage_url, study_name)`` pairs
    :param out_dir: Report folder (created)
    :param reference: ``{env_id: (low, high)}`` normalization overriding the protocols
    :param reps: Bootstrap replications
    :param seed: Bootstrap seed
    :param gamma: Optimality-gap threshold
    :param print_table: Print the aggregate table to the console
    :return: Path of ``summary.md``
    """
    if not sources:
        raise Refused("No study given; pass at least one (storage, study) pair")
    check_gamma(gamma)
    check_reps(reps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = load_runs(sources, reference)
    if df.empty:
        raise Refused(f"The studies {[n for _, n in sources]} have no trials yet; run `sb3-gap sweep` first")
    agg = aggregate_table(df, reps=reps, seed=seed, gamma=gamma)
    atomic_write_text(out / "runs.csv", df.drop(columns=["curve", "settings", "diagnostics"]).to_csv(index=False))
    atomic_write_text(out / "aggregates.csv", agg.to_csv(index=False))
    figures = []
    label = "raw return" if (df["normalization"] == "raw return").all() else "normalized score"
    if agg["IQM"].notna().any():
        plot_scaling(agg, out / "scaling.png", score_label=label)
        plot_cost(agg, out / "cost.png", score_label=label)
        plot_profiles(score_matrices(df)[0], out / "profiles.png", reps=min(reps, 1000), seed=seed, score_label=label)
        plot_methods(agg, out / "methods.png", score_label=label)
        figures += ["scaling.png", "cost.png", "profiles.png", "methods.png"]
        if agg.dropna(subset=["IQM", "params_effective_psi"]).shape[0]:
            plot_effective_psi(agg, out / "effective_psi.png", score_label=label)
            figures.append("effective_psi.png")
    if (df["state"] == "COMPLETE").any():
        plot_curves(df, out / "curves.png")
        figures.append("curves.png")
        if plot_dormancy(df, out / "dormancy.png"):
            figures.append("dormancy.png")
    summary = out / "summary.md"
    atomic_write_text(summary, markdown_summary(df, agg, sources, figures, gamma))
    if print_table:
        _print_table(agg)
        print(f"report: {summary.resolve()}")
    return summary


def _print_table(agg: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Aggregates (95% stratified bootstrap CIs)")
    for col in ("configuration", "runs", "IQM", "Mean", "wall h/run", "bottleneck+ψ params"):
        table.add_column(col, justify="left" if col == "configuration" else "right", no_wrap=True)
    for _, row in agg.iterrows():
        table.add_row(row["config"], f"{row['runs_per_task']}×{row['tasks']}", _ci(row, "IQM"), _ci(row, "Mean"),
                      _fmt(row["wall_h"], ".4f"), _fmt(row["params_bottleneck"], ",.0f"))  # fmt: skip
    Console(width=max(120, Console().width)).print(table)


def read_reference(path: str | Path) -> dict[str, tuple[float, float]]:
    """:func:`~sb3_gap.envs.protocols.load_reference` with errors that name the file (missing, not JSON, wrong shape)."""
    form = '{"<env id>": [low, high], ...}'
    try:
        return load_reference(path)
    except FileNotFoundError:
        raise Refused(f"--reference {path} does not exist; it should hold JSON {form}") from None
    except json.JSONDecodeError as e:
        raise Refused(f"--reference {path} is not JSON ({e.msg} at line {e.lineno} column {e.colno}); it should hold {form}") from None
    except UnicodeDecodeError:
        raise Refused(f"--reference {path} is not a text (JSON) file; it should hold {form}") from None
    except (AttributeError, TypeError):
        raise Refused(f"--reference {path} holds JSON of another shape; it should hold {form}") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="sb3-gap report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, nargs="+", help="Optuna storage URL(s); one, or one per --study")
    p.add_argument("--study", required=True, nargs="+", help="study name(s) to merge")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--reference", help="JSON {env_id: [low, high]} normalizing envs without a published table (MinAtar)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gamma", type=float, default=1.0, help="optimality-gap threshold")
    args = p.parse_args(argv)
    try:
        if len(args.storage) not in (1, len(args.study)):
            raise Refused(f"Give one --storage or one per --study ({len(args.study)}), got {len(args.storage)}")
        storages = args.storage * len(args.study) if len(args.storage) == 1 else args.storage
        check_gamma(args.gamma)
        check_reps(args.reps)
        reference = read_reference(args.reference) if args.reference else None
        for storage in storages:
            check_storage_url(storage)
            check_sqlite_storage(storage, must_exist=True, write=False)
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Refused(f"--out {args.out}: cannot create the report folder ({e.strerror or e})") from None
        build_report(list(zip(storages, args.study)), args.out, reference, args.reps, args.seed, args.gamma, print_table=True)
    except Exception as e:
        if not is_refusal(e):
            raise  # a bug: its traceback
        raise SystemExit(cli_message("report", e, args.storage)) from None


if __name__ == "__main__":
    main()
