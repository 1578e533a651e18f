"""``sb3-gap sweep``: the command line of the sweeps (its parser, the presets, and ``main``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from sb3_gap.algos import ALGOS
from sb3_gap.bottlenecks import BOTTLENECKS
from sb3_gap.checks import Refused
from sb3_gap.envs import ATARI_100K_GAMES, PROCGEN_GAMES
from sb3_gap.envs.atari import ATARI_20_GAMES, ATARI_60_GAMES
from sb3_gap.extractor import ENCODERS
from sb3_gap.sweep import workers as sweep_workers
from sb3_gap.sweep.database import cli_message, display_url, is_refusal
from sb3_gap.sweep.report import build_report
from sb3_gap.sweep.spec import SweepSpec, parse_value
from sb3_gap.sweep.workers import (
    INTERRUPTED_EXIT,
    WORKERS_PER_GPU,
    RunFailed,
    SweepWorkersFailed,
    check_workers,
    interrupted_message,
    parse_workers,
    run_sweep,
)


def _parse_assignments(items: Sequence[str], grid: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            form = "name=v1,v2,..." if grid else "name=value"
            raise Refused(f"Expected {form}, got {item!r}")
        name, values = item.split("=", 1)
        out[name.strip()] = [parse_value(v) for v in values.split(",")] if grid else parse_value(values)
    return out


# Presets list every change from the Zoo configs explicitly (``fixed``); nothing is rescaled silently.
# ``workers`` and ``report`` are CLI defaults, not part of the SweepSpec.
# The MinAtar scaling study (results/minatar_scaling/, docs/results.md): Rainbow with Dopamine's
# MinAtar settings (zoo_configs/rainbow.yml, minatar section), the study encoder, flatten vs GAP at ψ x1 and
# x4, 2 games x 3 seeds x 150k steps. Budget override: ε decays over 25k steps instead of Dopamine's 250k
# (which would never finish within 150k steps). Committed runs resume with the same command.
_MINATAR_SCALING: dict[str, Any] = dict(
    description="MinAtar study 1 (results/minatar_scaling/): Rainbow, minatar_impala, flatten vs GAP at psi x1/x4, 2 games x 3 seeds, 150k steps",
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
)

# The second MinAtar study (results/minatar_deep/README.md, pre-registered there): is it the encoder? The first
# study's settings (Dopamine's MinAtar Rainbow, ε over 25k steps, an update every 4 steps) with the paper's deep φ
# (minatar_deep: 3 Impala stacks, 15 convolutions, 16-32-32) and ψ x1 vs x8; dormancy and feature norms recorded at
# every evaluation. 100k steps per run: the timed pilot put the 150k grid over the 7-hour budget (README).
_MINATAR_DEEP: dict[str, Any] = {
    **_MINATAR_SCALING,
    "description": "MinAtar study 2 (results/minatar_deep/): the paper's deep phi (minatar_deep), flatten vs GAP at psi x1/x8, 2 games x 3 seeds, 100k steps",
    "encoders": ["minatar_deep"],
    "width_scales": [1, 8],
    "steps": 100_000,
    "storage": "sqlite:///results/minatar_deep/study.db",
    "study": "minatar_deep",
    "report": "results/minatar_deep",
}

SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "minatar-scaling": _MINATAR_SCALING,
    "minatar-deep": _MINATAR_DEEP,
    # The third MinAtar study (results/minatar_rr/README.md, pre-registered there): is it the update count? The
    # second study's ψ x8 arm at replay ratio 1 (one update per env step, ~100k updates per run, DER's count on
    # Atari-100k) instead of 0.25; the target network keeps its period of 1,000 env steps (Dopamine counts it in
    # agent steps). The second study's x8 runs are its ratio-0.25 arm.
    "minatar-rr": {
        **_MINATAR_DEEP,
        "description": "MinAtar study 3 (results/minatar_rr/): study 2's deep phi at psi x8, flatten vs GAP at replay ratio 1, 2 games x 3 seeds, 100k steps",
        "width_scales": [8],
        "fixed": {**_MINATAR_DEEP["fixed"], "replay_ratio": 1},
        "storage": "sqlite:///results/minatar_rr/study.db",
        "study": "minatar_rr",
        "report": "results/minatar_rr",
    },
    # Width alone: the first study's encoder and settings (minatar-scaling) at psi x8, so that with
    # that study's x1 and x4 it answers whether width alone degrades either bottleneck. A study of its own: Optuna fixes
    # an axis' values per study, so x8 cannot join results/minatar_scaling/study.db.
    "minatar-width": {
        **_MINATAR_SCALING,
        "description": "MinAtar study 1 at psi x8 (results/minatar_width/): Rainbow, minatar_impala, flatten vs GAP at x8, 2 games x 3 seeds, 150k steps",
        "width_scales": [8],
        "storage": "sqlite:///results/minatar_width/study.db",
        "study": "minatar_width",
        "report": "results/minatar_width",
    },
    # The README's main job (`make demo`; wall time in docs/benchmarks_sweeps.md): the study's network and settings, flatten x4 vs
    # GAP x4 on MinAtar Breakout, one seed each, 30k steps. Budget override: ε decays over 10k steps.
    "demo": dict(
        description="The README's demo: flatten x4 vs GAP x4 on MinAtar Breakout, 1 seed, 30k steps",
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


# ----------------------------------------------------------------------------- the paper's experiments
# One preset per experiment of Sokar & Castro (2025), named by what it asks; docs/paper.md tabulates them. Each reads
# its hyperparameters from zoo_configs/ (rainbow.yml: `atari` for Dopamine/* ids = paper Table 1's Rainbow column,
# `atari100k` for Atari100k/* ids = Table 1's DER column and Dopamine's DER.gin, `procgen`) and lists every change
# in `fixed` or as a grid axis. Budgets are agent steps (4 frames each): the paper's 200M frames = 50M steps.
_ATARI_20 = [f"Dopamine/{game}-v5" for game in ATARI_20_GAMES]
_ATARI_60 = [f"Dopamine/{game}-v5" for game in ATARI_60_GAMES]
_ATARI_100K = [f"Atari100k/{game}-v5" for game in ATARI_100K_GAMES]
_PROCGEN = [f"Procgen/{game}-v0" for game in PROCGEN_GAMES]
_FRAMES_200M, _FRAMES_100M, _FRAMES_50M = 50_000_000, 25_000_000, 12_500_000
# Sparse training (paper §3.1): 90% sparsity; GMP from 4% to 80% of training (8M to 160M of 200M frames); RigL drop
# fraction 0.2 every 5,000 updates. Schedules count gradient updates (docs/sparse.md): 1 per 4 steps at Dopamine's
# update period. RigL's last mask update is not in the paper: Evci et al. (2020)'s 75% of training.
_SPARSE_200M = dict(sparsity=0.9, prune_start=500_000, prune_end=10_000_000, rigl_interval=5_000, rigl_drop=0.2, rigl_end=9_375_000)
_SPARSE_100M = dict(sparsity=0.9, prune_start=250_000, prune_end=5_000_000, rigl_interval=5_000, rigl_drop=0.2, rigl_end=4_687_500)


def _paper(name: str, description: str, **fields: Any) -> dict[str, Any]:
    """A paper preset: Rainbow, Impala φ, ψ x4, 5 seeds, 200M frames unless ``fields`` say otherwise; storage and report under runs/."""
    study = name.replace("-", "_")
    preset: dict[str, Any] = dict(
        description=description,
        envs=_ATARI_20,
        algos=["rainbow"],
        encoders=["impala"],
        bottlenecks=["flatten", "gap"],
        width_scales=[4],
        seeds=5,
        steps=_FRAMES_200M,
        eval_freq=2_500_000,  # 20 evaluations per run
        eval_episodes=10,
        final_evals=3,
        fixed={},
        storage=f"sqlite:///runs/{study}.db",
        study=study,
        out_dir="runs",
    )
    preset.update(fields)
    preset["report"] = f"runs/{study}_report"
    return preset


PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "atari-width-scaling": _paper(
        "atari-width-scaling",
        "Fig. 6 left: does GAP unlock width scaling? Rainbow, Impala, flatten vs GAP at psi x1/x2/x4/x8, 20 games x 5 seeds, 200M frames",
        width_scales=[1, 2, 4, 8],
    ),
    "atari-replay-ratio": _paper(
        "atari-replay-ratio",
        "Fig. 6 centre left: flatten vs GAP x4 at replay ratios 0.25 (default)/0.5/1/2, 20 games x 5 seeds, 50M frames "
        "(the paper reports ratio 2 at 50M; it names only 0.25 and 2, so 0.5 and 1 are our choice)",
        hyperparams={"replay_ratio": [0.25, 0.5, 1, 2]},
        steps=_FRAMES_50M,
        eval_freq=625_000,
    ),
    "atari-nature-cnn": _paper(
        "atari-nature-cnn",
        "Fig. 6 centre right: does GAP help the Nature CNN phi? flatten vs GAP x4, 20 games x 5 seeds, 200M frames",
        encoders=["nature"],
    ),
    "atari-60-games": _paper(
        "atari-60-games",
        "Fig. 6 right: the full suite, Dopamine's 60 games: flatten vs GAP x4, 5 seeds, 200M frames",
        envs=_ATARI_60,
    ),
    "atari-scale-phi-psi": _paper(
        "atari-scale-phi-psi",
        "Fig. 2 right: scaling phi and psi (encoder_scale 4, psi x4) vs psi alone at matched parameters (psi x17: "
        "33.8M vs 33.3M extractor parameters), flatten, 20 games x 5 seeds, 200M frames (the grid adds phi x4 psi x17)",
        bottlenecks=["flatten"],
        width_scales=[4, 17],
        hyperparams={"encoder_scale": [1, 4]},
    ),
    "atari-deep-phi": _paper(
        "atari-deep-phi",
        "Fig. 4: a deeper phi feeding a scaled psi: flatten x4 with 0 vs 2 extra residual blocks per Impala stack "
        "(appendix A; Dopamine's ImpalaEncoder.num_blocks 2 -> 4), 20 games x 5 seeds, 200M frames",
        bottlenecks=["flatten"],
        hyperparams={"extra_blocks": [0, 2]},
    ),
    "atari-sparse-scope": _paper(
        "atari-sparse-scope",
        "Fig. 5 left: static, GMP and RigL sparsity (90%) on the bottleneck only vs on phi and psi, x4, 20 games x 5 "
        "seeds, 200M frames (RigL's end, 75% of training, from Evci et al. 2020)",
        bottlenecks=["sparse"],
        hyperparams={"sparse_method": ["static", "gmp", "rigl"], "sparse_scope": ["bottleneck", "all"]},
        fixed=dict(_SPARSE_200M),
    ),
    "atari-depth-width": _paper(
        "atari-depth-width",
        "Fig. 8: depth x width: flatten vs GAP at psi x1/x4 with 0 vs 1 extra dense layer in psi, 20 games x 5 seeds, 200M frames",
        width_scales=[1, 4],
        hyperparams={"psi_depth": [0, 1]},
    ),
    "atari-methods-architectures": _paper(
        "atari-methods-architectures",
        "Fig. 10 (1/4): flatten, GAP and SoftMoE-1 (tokenize) at x4, 20 games x 5 seeds, 100M frames",
        bottlenecks=["flatten", "gap", "tokenize"],
        steps=_FRAMES_100M,
        eval_freq=1_250_000,
    ),
    "atari-methods-sparse": _paper(
        "atari-methods-sparse",
        "Fig. 10 (2/4): pruning (GMP), RigL and static sparsity, 90% over phi and psi (the cited papers' scope; "
        "the paper does not say), flatten x4, schedules scaled to 100M frames, 20 games x 5 seeds",
        bottlenecks=["sparse"],
        hyperparams={"sparse_method": ["static", "gmp", "rigl"]},
        fixed=dict(_SPARSE_100M, sparse_scope="all"),
        steps=_FRAMES_100M,
        eval_freq=1_250_000,
    ),
    "atari-methods-weight-decay": _paper(
        "atari-methods-weight-decay",
        "Fig. 10 (3/4): weight decay (AdamW) on flatten x4 at 1e-5/1e-4/1e-3: the paper and Dopamine's code give "
        "no value (Table 1: 0), so it is a grid, 20 games x 5 seeds, 100M frames",
        bottlenecks=["flatten"],
        hyperparams={"weight_decay": [1e-5, 1e-4, 1e-3]},
        steps=_FRAMES_100M,
        eval_freq=1_250_000,
    ),
    "atari-methods-layer-norm": _paper(
        "atari-methods-layer-norm",
        "Fig. 10 (4/4): LayerNorm in psi on flatten x4, 20 games x 5 seeds, 100M frames",
        bottlenecks=["flatten"],
        # A one-value grid axis, not a fixed setting: its cells then differ from the flatten x4 cells of
        # atari-methods-architectures, and the merged Fig. 10 report labels them layer_norm=True.
        hyperparams={"layer_norm": [True]},
        steps=_FRAMES_100M,
        eval_freq=1_250_000,
    ),
    "atari-gmp-vs-gap": _paper(
        "atari-gmp-vs-gap",
        "Fig. 12: global max pooling vs global average pooling at x4, 20 games x 5 seeds, 200M frames",
        bottlenecks=["gap", "gmp"],
    ),
    "procgen-rainbow": _paper(
        "procgen-rainbow",
        "Fig. 11 left: Procgen, 16 games (easy, 200 levels): Rainbow flatten vs GAP x4, 5 seeds, 25M steps "
        "(zoo_configs procgen section; the paper gives no Procgen budget)",
        envs=_PROCGEN,
        steps=25_000_000,
    ),
    "atari100k-der": _paper(
        "atari100k-der",
        "Fig. 11 right: Atari-100k, 26 games: DER (Table 1, Dopamine's DER.gin) flatten vs GAP x4, 5 seeds, 100k "
        "steps, scored on 100 episodes at the end (Dopamine's MaxEpisodeEvalRunner)",
        envs=_ATARI_100K,
        steps=100_000,
        eval_freq=100_000,
        eval_episodes=100,
        final_evals=1,
    ),
}
SWEEP_PRESETS.update(PAPER_PRESETS)

#: CLI-only preset keys (not SweepSpec fields).
#: The folder of the committed studies' results: a preset writing there (its ``out_dir``) takes no new ``--study``
#: without ``--out``, which would add it to the committed database.
COMMITTED_RESULTS = "results"
PRESET_CLI_KEYS = ("workers", "report", "description")


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
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs, env steps, gradient updates, complete cells and a timed wall-time estimate; start nothing",
    )
    p.add_argument("--list-presets", action="store_true", help="print every preset with its description and size")
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

    :raises Refused: ``--storage`` without ``--out`` for a preset, or ``--study`` without ``--out`` for a preset
        whose results are committed (under :data:`COMMITTED_RESULTS`)
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
    elif args.storage is None and args.study not in (None, preset["study"]) and old_out == COMMITTED_RESULTS:
        raise Refused(
            f"--study {args.study} with --preset {args.preset}: the new study would be added to the committed "
            f"{display_url(preset['storage'])} and its runs to {old_out}/; give --out DIR too (its database, runs and report go there)"
        )
    elif args.storage is not None and args.storage != preset["storage"]:
        raise Refused(
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
        raise Refused("--envs is required (or a --preset), e.g. --envs MinAtar/Breakout-v1")
    return SweepSpec(**fields)


def preset_size(name: str) -> tuple[int, int]:
    """A preset's runs and total env steps (its grid as given, not validated)."""
    fields = {k: v for k, v in SWEEP_PRESETS[name].items() if k not in PRESET_CLI_KEYS}
    spec = SweepSpec(**fields)
    runs = len(spec.envs) * len(spec.algos) * len(spec.bottlenecks) * len(spec.width_scales) * len(spec.encoders) * len(spec.seeds)  # type: ignore[arg-type]
    for values in spec.hyperparams.values():
        runs *= len(values)
    return runs, runs * spec.steps


def list_presets() -> str:
    """``--list-presets``: every preset, its description and size, one line each."""
    lines = []
    for name in SWEEP_PRESETS:
        runs, steps = preset_size(name)
        lines.append(f"{name:<28} {runs:>5,} runs {steps:>16,} env steps  {SWEEP_PRESETS[name].get('description', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """
    ``sb3-gap sweep``: train the sweep ``argv`` describes (default: ``sys.argv[1:]``), then write its report when
    ``--report`` or a preset names one; ``--dry-run`` and ``--list-presets`` only print.
    """
    args = build_parser().parse_args(argv)
    if args.list_presets:
        print(list_presets())
        return
    storage = args.storage
    spec: SweepSpec | None = None
    try:
        spec = spec_from_args(args)
        storage = spec.storage
        spec.validate()
        preset = preset_fields(args)
        workers = args.workers if args.workers is not None else preset.get("workers", 1)
        check_workers(workers)
        if args.dry_run:
            from sb3_gap.sweep.dryrun import dry_run_report

            print(dry_run_report(spec, workers=workers))
            return
        start = time.perf_counter()
        run_sweep(spec, workers=workers, progress=not args.no_progress, wait=not args.no_wait)
        wall = time.perf_counter() - start
        report_dir = args.report or preset.get("report") or (f"{spec.out_dir}/{spec.study}_report" if args.preset else None)
        print(f"sweep {spec.study}: {wall:.1f} s wall ({display_url(spec.storage)})", file=sys.stderr)
        if report_dir:
            build_report([(spec.storage, spec.study)], report_dir, print_table=True)
    except Exception as e:
        if not (is_refusal(e) or isinstance(e, (SweepWorkersFailed, RunFailed))):
            raise  # a bug: its traceback
        raise SystemExit(cli_message("sweep", e, storage)) from None
    except KeyboardInterrupt:
        if spec is not None:
            print(interrupted_message(spec), file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT) from None


if __name__ == "__main__":
    main()
