"""The figures of a sweep report (PNG, written whole or not at all): score vs ψ width scale (Fig. 6 left), cost vs
score (Fig. 9), the methods compared (Fig. 10: median, IQM and mean with CIs per configuration), score vs effective ψ
parameters (Fig. 5 right), performance profiles, learning curves and ψ's dormancy vs env steps (Fig. 7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.lines

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rliable import library as rly  # noqa: E402

from sb3_gap.files import atomic_save_figure  # noqa: E402
from sb3_gap.sweep.aggregates import DIAGNOSTICS  # noqa: E402
from sb3_gap.sweep.spec import HP_PREFIX  # noqa: E402


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
