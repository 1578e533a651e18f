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

The pieces: :mod:`~sb3_gap.sweep.runs` (the runs table), :mod:`~sb3_gap.sweep.aggregates` (metrics and
diagnostics per configuration), :mod:`~sb3_gap.sweep.plots` (figures), :mod:`~sb3_gap.sweep.summary`
(``summary.md``); this module writes the report (:func:`build_report`) and is ``sb3-gap report``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sb3_gap.checks import Refused, check_int, check_range
from sb3_gap.envs.protocols import load_reference
from sb3_gap.files import atomic_write_text
from sb3_gap.sweep.aggregates import (
    DIAGNOSTICS,
    METRICS,
    aggregate_metrics,
    aggregate_table,
    compute_aggregates,
    diagnostics_table,
    score_matrices,
)
from sb3_gap.sweep.database import check_sqlite_storage, check_storage_url, cli_message, is_refusal
from sb3_gap.sweep.plots import (
    METHOD_METRICS,
    plot_cost,
    plot_curves,
    plot_dormancy,
    plot_effective_psi,
    plot_methods,
    plot_profiles,
    plot_scaling,
)
from sb3_gap.sweep.runs import config_columns, config_label, load_runs
from sb3_gap.sweep.summary import format_ci, format_value, markdown_summary, settings_section


def check_gamma(gamma: Any) -> float:
    """
    Check the optimality-gap threshold (``--gamma``): a finite number.

    :raises ValueError: Naming the value (NaN or infinite would make every optimality gap NaN or infinite)
    """
    return check_range("--gamma (the optimality-gap threshold)", gamma, example="1 for normalized scores")


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
        table.add_row(row["config"], f"{row['runs_per_task']}×{row['tasks']}", format_ci(row, "IQM"), format_ci(row, "Mean"),
                      format_value(row["wall_h"], ".4f"), format_value(row["params_bottleneck"], ",.0f"))  # fmt: skip
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
    """
    ``sb3-gap report``: build the report of one or more studies (:func:`build_report`).

    :param argv: The command line's arguments (``sys.argv[1:]`` when None)
    """
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


__all__ = [
    "DIAGNOSTICS",
    "METHOD_METRICS",
    "METRICS",
    "aggregate_metrics",
    "aggregate_table",
    "build_report",
    "check_gamma",
    "check_reps",
    "compute_aggregates",
    "config_columns",
    "config_label",
    "diagnostics_table",
    "load_runs",
    "main",
    "markdown_summary",
    "plot_cost",
    "plot_curves",
    "plot_dormancy",
    "plot_effective_psi",
    "plot_methods",
    "plot_profiles",
    "plot_scaling",
    "read_reference",
    "score_matrices",
    "settings_section",
]

if __name__ == "__main__":
    main()
