"""Does the pre-registration commit's code reproduce study 2's GAP x8 Breakout seed 0 run up to its first evaluation?"""

import json, sys, tempfile
from pathlib import Path
import torch as th

th.set_num_threads(1)
from sb3_gap.sweep import SweepSpec
from sb3_gap.sweep import cell
from sb3_gap.sweep.cli import SWEEP_PRESETS


class Stop(Exception):
    pass


tmp = Path(tempfile.mkdtemp())
pr = SWEEP_PRESETS["minatar-deep"]
fields = {k: v for k, v in pr.items() if k not in ("workers", "report", "description")}
fields.update(out_dir=str(tmp / "runs"), storage=f"sqlite:///{tmp}/s.db")
spec = SweepSpec(**fields)
params = next(c for c in spec.cells() if c["bottleneck"] == "gap" and c["width_scale"] == 8 and c["seed"] == 0 and "Breakout" in c["env"])
orig = cell.SweepEvalCallback.record_evaluation


def record_then_stop(self):
    orig(self)
    raise Stop


cell.SweepEvalCallback.record_evaluation = record_then_stop
try:
    cell.train_cell(spec, params, checkpoints=False)
except Stop:
    pass
mine = json.loads((cell.run_dir_for(spec, params) / "curve.json").read_text())
ref = json.loads(Path("results/minatar_deep/MinAtar-Breakout-v1/rainbow-minatar_deep-gap-x8-s0/curve.json").read_text())
out = {k: (mine[k][0], ref[k][0], mine[k][0] == ref[k][0]) for k in mine if k != "wall_s"}
print(json.dumps(dict(params=params, first_evaluation=out, identical=all(v[2] for v in out.values())), indent=1))
