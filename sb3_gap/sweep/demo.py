"""The main job: ``python -m sb3_gap.sweep.demo`` (= ``sb3-gap sweep --preset demo``).

Rainbow with Dopamine's MinAtar settings (``zoo_configs/rainbow.yml``) on MinAtar Breakout, the
study encoder (``minatar_impala``) with a flatten or a GAP bottleneck at ψ ×4, one seed each,
30k steps (wall time in docs/benchmarks_sweeps.md): the full sweep machinery (Optuna study in ``runs/demo.db``,
run folders in ``runs/demo/``), then the report with learning curves in ``runs/demo_report/`` and its
table printed. Extra flags are passed on, e.g. ``--seeds 2 --study demo2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sb3_gap.sweep.cli import main as sweep_main

STUDY_REPORT = Path(__file__).resolve().parents[2] / "results" / "minatar_scaling" / "summary.md"


def main(argv: list[str] | None = None) -> None:
    sweep_main(["--preset", "demo", *(sys.argv[1:] if argv is None else argv)])
    where = STUDY_REPORT if STUDY_REPORT.is_file() else "results/minatar_scaling/summary.md in the source repository"
    print(f"The full MinAtar scaling study (2 games x 3 seeds x 150k steps, flatten vs GAP at x1 and x4): {where}")


if __name__ == "__main__":
    main()
