"""``sb3-gap sweep``: the command line of the sweeps (its parser, the presets, and ``main``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from sb3_gap.algos import ALGOS
from sb3_gap.bottlenecks import BOTTLENECKS
from sb3_gap.extractor import ENCODERS
from sb3_gap.sweep import workers as sweep_workers
from sb3_gap.sweep.database import cli_errors, cli_message, display_url
from sb3_gap.sweep.report import build_report
from sb3_gap.sweep.spec import SweepSpec, parse_value
from sb3_gap.sweep.workers import WORKERS_PER_GPU, SweepWorkersFailed, check_workers, parse_workers, run_sweep


def _parse_assignments(items: Sequence[str], grid: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            form = "name=v1,v2,..." if grid else "name=value"
            raise ValueError(f"Expected {form}, got {item!r}")
        name, values = item.split("=", 1)
        out[name.strip()] = [parse_value(v) for v in values.split(",")] if grid else parse_value(values)
    return out


# Presets list every change from the Zoo configs explicitly (``fixed``); nothing is rescaled silently.
# ``workers`` and ``report`` are CLI defaults, not part of the SweepSpec.
SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    # The MinAtar scaling study (issue 11; results/minatar_scaling/, README "Results"): Rainbow with Dopamine's
    # MinAtar settings (zoo_configs/rainbow.yml, minatar section), the study encoder, flatten vs GAP at ψ x1 and
    # x4, 2 games x 3 seeds x 150k steps. Budget override: ε decays over 25k steps instead of Dopamine's 250k
    # (which would never finish within 150k steps). Committed runs resume with the same command.
    "minatar-scaling": dict(
        envs=["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"],
        algos=["rainbow"],
        encoders=["minatar_impala"],
        bottlenecks=["flatten", "gap"],
        width_scales=[1, 4],
        seeds=3,
        steps=150_000,
        eval_freq=10_000,
        eval_episodes=10,
        final_evals=3,
        fixed={"exploration_steps": 25_000},
        storage="sqlite:///results/minatar_scaling/study.db",
        study="minatar_scaling",
        out_dir="results",
        save_models=False,
        workers=2,  # one torch thread each
        report="results/minatar_scaling",
    ),
    # The second MinAtar study (issue 27; results/minatar_deep/README.md, pre-registered there): is it the encoder?
    # The first study's settings (Dopamine's MinAtar Rainbow, ε over 25k steps, an update every 4 steps) with the
    # paper's deep φ (minatar_deep: 3 Impala stacks, 15 convolutions, 16-32-32) and ψ x1 vs x8; dormancy and feature
    # norms recorded at every evaluation. 100k steps per run: the timed pilot put the 150k grid over the 7-hour budget
    # (README). Budget override as in the first study: ε decays over 25k steps instead of Dopamine's 250k.
    "minatar-deep": dict(
        envs=["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"],
        algos=["rainbow"],
        encoders=["minatar_deep"],
        bottlenecks=["flatten", "gap"],
        width_scales=[1, 8],
        seeds=3,
        steps=100_000,
        eval_freq=10_000,
        eval_episodes=10,
        final_evals=3,
        fixed={"exploration_steps": 25_000},
        storage="sqlite:///results/minatar_deep/study.db",
        study="minatar_deep",
        out_dir="results",
        save_models=False,
        workers=2,  # one torch thread each
        report="results/minatar_deep",
    ),
    # The README's main job (`make demo`; wall time in docs/benchmarks_sweeps.md): the study's network and settings, flatten x4 vs
    # GAP x4 on MinAtar Breakout, one seed each, 30k steps. Budget override: ε decays over 10k steps.
    "demo": dict(
        envs=["MinAtar/Breakout-v1"],
        algos=["rainbow"],
        encoders=["minatar_impala"],
        bottlenecks=["flatten", "gap"],
        width_scales=[4],
        seeds=1,
        steps=30_000,
        eval_freq=5_000,
        eval_episodes=10,
        final_evals=2,
        fixed={"exploration_steps": 10_000},
        storage="sqlite:///runs/demo.db",
        study="demo",
        out_dir="runs",
        workers=2,  # one torch thread each (see docs/benchmarks_sweeps.md)
        report="runs/demo_report",
    ),
}

#: CLI-only preset keys (not SweepSpec fields).
PRESET_CLI_KEYS = ("workers", "report")


def _workers_arg(text: str) -> int | str:
    try:
        return parse_workers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: " + str(e).split(": ", 1)[1]) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sb3-gap sweep", description=sweep_workers.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(SWEEP_PRESETS), help="start from a preset (other flags override it)")
    p.add_argument("--algo", "--algos", dest="algos", nargs="+", help=f"algorithms, of {sorted(ALGOS)} (default qrdqn)")
    p.add_argument("--envs", nargs="+", help="env ids as given to gym.make")
    p.add_argument("--bottlenecks", nargs="+", help=f"of {sorted(BOTTLENECKS)} (default flatten gap)")
    p.add_argument("--width-scales", nargs="+", type=int, help="ψ width multipliers (default 1)")
    p.add_argument("--encoders", nargs="+", help=f"of {sorted(ENCODERS)} (default impala)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..n-1 (default 1)")
    p.add_argument("--seed-list", nargs="+", type=int, help="explicit seeds instead of --seeds")
    p.add_argument("--hyperparams", nargs="+", default=[], metavar="NAME=V1,V2", help="extra grid axes")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="hyperparameters fixed for all runs")
    p.add_argument("--steps", type=int, help="env steps per run (default 100000)")
    p.add_argument("--eval-freq", type=int, help="env steps between evaluations (default steps/10)")
    p.add_argument("--eval-episodes", type=int)
    p.add_argument("--final-evals", type=int, help="final score = mean of the last N evaluations")
    p.add_argument("--n-envs", type=int)
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/sweep.db)")
    p.add_argument("--study", help="study name (default sweep)")
    p.add_argument("--out", dest="out_dir", help="root of run folders (default runs)")
    p.add_argument(
        "--workers",
        type=_workers_arg,
        help="local worker processes (default 1, or the preset's), or 'auto': one "
        f"per core on CPU, {WORKERS_PER_GPU} per GPU with --device cuda, each with cores/workers torch threads",
    )
    p.add_argument("--heartbeat-interval", type=int)
    p.add_argument("--grace-period", type=int)
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--device", help="torch device (default auto)")
    p.add_argument("--conf-dir", help="folder of the Zoo configs <algo>.yml the runs' hyperparameters come from (default: zoo_configs/)")
    p.add_argument("--no-wait", action="store_true", help="exit when no cell is left to start instead of waiting for other workers")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report", metavar="DIR", help="write the report to DIR when the sweep ends (default for presets: runs/<study>_report)")
    return p


def preset_fields(args: argparse.Namespace) -> dict[str, Any]:
    """
    The preset's fields with its paths following the user's ``--out`` and ``--study``, so that a preset run with
    other folders never writes into the preset's own (e.g. the committed ``results/minatar_scaling/``):

    * ``--out DIR``: the preset's SQLite storage and report under its ``out_dir`` move to ``DIR`` (``runs/demo.db`` ->
      ``DIR/demo.db``; ``results/minatar_scaling/study.db`` -> ``DIR/minatar_scaling/study.db``);
    * ``--study NAME`` (or ``--storage`` with ``--out``): the report goes to ``<out>/<NAME>_report``;
    * ``--storage`` alone is refused: the runs would land in the run folders of the preset's own study.

    :raises ValueError: ``--storage`` without ``--out`` for a preset
    """
    if not args.preset:
        return {}
    preset = SWEEP_PRESETS[args.preset]
    fields = dict(preset)
    old_out = str(preset["out_dir"]).rstrip("/")
    new_out = args.out_dir.rstrip("/") if args.out_dir is not None else old_out
    if new_out != old_out:
        sqlite = "sqlite:///"
        storage = str(preset["storage"])
        if storage.startswith(f"{sqlite}{old_out}/"):
            fields["storage"] = f"{sqlite}{new_out}/{storage[len(sqlite) + len(old_out) + 1 :]}"
        report = str(preset.get("report", ""))
        if report.startswith(f"{old_out}/"):
            fields["report"] = f"{new_out}/{report[len(old_out) + 1 :]}"
    elif args.storage is not None and args.storage != preset["storage"]:
        raise ValueError(
            f"--storage {display_url(args.storage)} with --preset {args.preset}: the runs would go to the preset's own folders "
            f"({old_out}/{args.study or preset['study']}/...), which belong to {display_url(preset['storage'])}; give --out DIR too"
        )
    if (args.study is not None and args.study != preset["study"]) or (args.storage is not None and args.storage != preset["storage"]):
        fields["report"] = f"{new_out}/{args.study or preset['study']}_report"
    return fields


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    fields = preset_fields(args)
    for key in PRESET_CLI_KEYS:
        fields.pop(key, None)
    for name in ("algos", "envs", "bottlenecks", "width_scales", "encoders", "steps", "eval_freq", "eval_episodes", "final_evals",
                 "n_envs", "storage", "study", "out_dir", "heartbeat_interval", "grace_period", "device", "conf_dir"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.seed_list is not None:
        fields["seeds"] = args.seed_list
    elif args.seeds is not None:
        fields["seeds"] = args.seeds
    if args.hyperparams:
        fields["hyperparams"] = _parse_assignments(args.hyperparams, grid=True)
    if args.set:
        fields["fixed"] = {**fields.get("fixed", {}), **_parse_assignments(args.set, grid=False)}
    if args.no_save_models:
        fields["save_models"] = False
    if "envs" not in fields:
        raise ValueError("--envs is required (or a --preset), e.g. --envs MinAtar/Breakout-v1")
    return SweepSpec(**fields)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    storage = args.storage
    try:
        spec = spec_from_args(args)
        storage = spec.storage
        spec.validate()
        preset = preset_fields(args)
        workers = args.workers if args.workers is not None else preset.get("workers", 1)
        check_workers(workers)
        start = time.perf_counter()
        run_sweep(spec, workers=workers, progress=not args.no_progress, wait=not args.no_wait)
        wall = time.perf_counter() - start
        report_dir = args.report or preset.get("report") or (f"{spec.out_dir}/{spec.study}_report" if args.preset else None)
        print(f"sweep {spec.study}: {wall:.1f} s wall ({display_url(spec.storage)})", file=sys.stderr)
        if report_dir:
            build_report([(spec.storage, spec.study)], report_dir, print_table=True)
    except cli_errors(SweepWorkersFailed) as e:
        raise SystemExit(cli_message("sweep", e, storage)) from None


if __name__ == "__main__":
    main()
