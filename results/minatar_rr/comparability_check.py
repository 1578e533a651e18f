"""Does this code reproduce study 2's GAP x8 Breakout seed 0 run up to its first evaluation (10k steps), bit for bit?

Run from the repository root on one core (about 3 minutes alone); prints JSON (committed as comparability_check.json)::

    PYTHONPATH=. python results/minatar_rr/comparability_check.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch as th

from sb3_gap.sweep import SweepSpec, cell
from sb3_gap.sweep.cli import PRESET_CLI_KEYS, SWEEP_PRESETS

REFERENCE = Path("results/minatar_deep/MinAtar-Breakout-v1/rainbow-minatar_deep-gap-x8-s0/curve.json")


class _FirstEvaluationDone(Exception):
    pass


def main() -> None:
    th.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    fields = {k: v for k, v in SWEEP_PRESETS["minatar-deep"].items() if k not in PRESET_CLI_KEYS}
    fields.update(out_dir=str(tmp / "runs"), storage=f"sqlite:///{tmp}/s.db")
    spec = SweepSpec(**fields)
    params = next(c for c in spec.cells() if (c["bottleneck"], c["width_scale"], c["seed"], c["env"]) == ("gap", 8, 0, "MinAtar/Breakout-v1"))
    record = cell.SweepEvalCallback.record_evaluation

    def record_then_stop(self: cell.SweepEvalCallback) -> None:
        record(self)
        raise _FirstEvaluationDone

    cell.SweepEvalCallback.record_evaluation = record_then_stop  # type: ignore[method-assign]
    try:
        cell.train_cell(spec, params, checkpoints=False)
    except _FirstEvaluationDone:
        pass
    mine = json.loads((cell.run_dir_for(spec, params) / "curve.json").read_text())
    ref = json.loads(REFERENCE.read_text())
    out = {k: (mine[k][0], ref[k][0], mine[k][0] == ref[k][0]) for k in mine if k != "wall_s"}
    print(json.dumps(dict(params=params, first_evaluation=out, identical=all(v[2] for v in out.values())), indent=1))


if __name__ == "__main__":
    main()
