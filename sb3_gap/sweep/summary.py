"""The Markdown summary of a sweep report: studies and normalization, aggregates per configuration, the final score
per game, the diagnostics, the figures and what each configuration ran with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sb3_gap.sweep.aggregates import METRICS, diagnostics_table
from sb3_gap.sweep.database import display_url


def format_ci(row: pd.Series, metric: str) -> str:
    """``metric``'s point estimate and 95% CI in ``row`` of an aggregate table, or ``missing``."""
    if pd.isna(row[metric]):
        return "missing"
    return f"{row[metric]:.3g} [{row[f'{metric} low']:.3g}, {row[f'{metric} high']:.3g}]"


def format_value(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec``, or a dash when it is None or NaN."""
    return "–" if value is None or pd.isna(value) else format(value, spec)


def markdown_summary(df: pd.DataFrame, agg: pd.DataFrame, sources: Sequence[tuple[str, str]], figures: list[str], gamma: float = 1.0) -> str:
    """
    The report's ``summary.md``.

    :param df: The runs (:func:`~sb3_gap.sweep.runs.load_runs`)
    :param agg: Their aggregates (:func:`~sb3_gap.sweep.aggregates.aggregate_table`)
    :param sources: ``(storage_url, study_name)`` pairs the runs came from
    :param figures: File names of the figures written next to it
    :param gamma: Optimality-gap threshold the aggregates used
    :return: The Markdown text
    """
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
        cells = [format_ci(row, m) for m in METRICS]
        lines.append(
            f"| {row['config']} | {runs} | "
            + " | ".join(cells)
            + f" | {format_value(row['wall_h'], '.3f')} | {format_value(row['params_bottleneck'], ',.0f')} "
            f"| {format_value(row.get('params_effective_psi', np.nan), ',.0f')} |"
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
                f"| {r['config']} | {r['runs']} | {format_value(r['dormant_psi'], '.3f')} | {format_value(r['dormant_psi@0.1'], '.3f')} | "
                f"{format_value(r['dormant_phi'], '.3f')} | {format_value(r['feature_norm_phi'], '.3g')} | {format_value(r['feature_norm_out'], '.3g')} | "
                f"{format_value(100 * r['overhead'], '.2f')}% |"
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
