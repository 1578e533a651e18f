"""The proposed main job: ``python -m sb3_gap.sweep.demo`` (= ``sb3-gap sweep --preset demo``).

Rainbow on MinAtar Breakout, Impala φ with a flatten or GAP bottleneck at ψ widths ×1 and ×4,
2 seeds, 3k steps each: 8 runs through the full sweep machinery (Optuna study in
``runs/demo.db``, run folders in ``runs/demo/``), then the report in ``runs/demo_report/`` and
its table printed. Extra flags are passed on, e.g. ``--algo qrdqn --study demo_qrdqn``.
"""

from __future__ import annotations

import sys

from sb3_gap.sweep.sweep import main as sweep_main


def main(argv: list[str] | None = None) -> None:
    sweep_main(["--preset", "demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
