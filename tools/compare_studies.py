"""The three MinAtar studies side by side at one step: one markdown table per question.

    .venv/bin/python tools/compare_studies.py                      # prints the tables (step 100k)
    .venv/bin/python tools/compare_studies.py --out results/minatar_deep/comparison.md

Reads the committed run folders (``curve.json`` of every run that has a ``result.json``) of
``results/minatar_scaling/`` (one Impala stack, ψ ×1 and ×4, 150k steps), ``results/minatar_deep/``
(the paper's 3-stack φ, ψ ×1 and ×8, 100k steps, replay ratio 0.25) and ``results/minatar_rr/`` (the deep
φ at ψ ×8, replay ratio 1). Each run's score at ``--step`` is the mean of its
last 3 evaluations up to that step (80k, 90k, 100k by default: the second study's final score, and the
first study's runs cut at the same step). Per configuration: IQM with 95% stratified bootstrap CIs over
games × seeds, computed by :func:`sb3_gap.sweep.report.compute_aggregates` (rliable), on raw returns;
configurations with fewer complete runs on one game use the lowest seeds that all games have.
The deep studies' final ψ dormancy and φ feature norm (their runs' last evaluation) are tabulated for their H3.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sb3_gap.sweep.report import compute_aggregates

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {
    "one stack (study 1)": ROOT / "results" / "minatar_scaling",
    "deep φ (study 2)": ROOT / "results" / "minatar_deep",
    "deep φ, ratio 1 (study 3)": ROOT / "results" / "minatar_rr",
}
#: Replay ratio (gradient updates per env step) of each study's runs.
RATIOS = {"one stack (study 1)": 0.25, "deep φ (study 2)": 0.25, "deep φ, ratio 1 (study 3)": 1.0}


def load(step: int, evals: int) -> list[dict]:
    """One row per finished run: study, bottleneck, width, env, seed, score at ``step``, final diagnostics."""
    rows = []
    for study, folder in STUDIES.items():
        for result in sorted(folder.glob("*/*/result.json")):
            params = json.loads(result.read_text())["params"]
            curve = json.loads((result.parent / "curve.json").read_text())
            upto = [i for i, t in enumerate(curve["timesteps"]) if t <= step]
            if not upto or curve["timesteps"][upto[-1]] != step:
                continue  # the run has no evaluation at this step
            score = float(np.mean([curve["mean"][i] for i in upto[-evals:]]))
            diag = {k: curve[k][-1] for k in ("dormant_psi", "dormant_psi@0.1", "feature_norm_phi") if k in curve}
            rows.append(dict(study=study, bottleneck=params["bottleneck"], width=params["width_scale"], env=params["env"],
                             seed=params["seed"], score=score, **diag))  # fmt: skip
    return rows


def matrices(rows: list[dict]) -> dict[str, np.ndarray]:
    """``{configuration: (seeds × games) scores}`` using the seeds complete on every game."""
    out = {}
    for key in sorted({(r["study"], r["bottleneck"], r["width"]) for r in rows}):
        mine = [r for r in rows if (r["study"], r["bottleneck"], r["width"]) == key]
        envs = sorted({r["env"] for r in mine})
        seeds = sorted(set.intersection(*[{r["seed"] for r in mine if r["env"] == e} for e in envs]))
        if len(envs) < 2 or not seeds:
            continue
        table = {(r["env"], r["seed"]): r["score"] for r in mine}
        out[f"{key[0]} | {key[1]} ×{key[2]}"] = np.array([[table[(e, s)] for e in envs] for s in seeds])
    return out


def tables(rows: list[dict], step: int, reps: int) -> str:
    mats = matrices(rows)
    agg = compute_aggregates(mats, reps=reps) if mats else {}
    envs = sorted({r["env"] for r in rows})

    def line(study: str, bottleneck: str, width: int) -> str:
        key = f"{study} | {bottleneck} ×{width}"
        mine = [r for r in rows if (r["study"], r["bottleneck"], r["width"]) == (study, bottleneck, width)]
        per_game = " | ".join(f"{np.mean(s):.2f} (n={len(s)})" if (s := [r["score"] for r in mine if r["env"] == e]) else "–" for e in envs)
        iqm = "incomplete" if key not in agg else "{:.2f} [{:.2f}, {:.2f}]".format(*agg[key]["IQM"])
        return f"| {study} | {bottleneck} ×{width} | {iqm} | {per_game} |"

    head = f"| φ | bottleneck | IQM [95% CI] at {step // 1000}k | " + " | ".join(f"{e} mean" for e in envs) + " |"
    rule = "|---|---|---|" + "---|" * len(envs)
    one, deep, ratio1 = STUDIES
    out = [f"### Encoder depth: one stack vs the paper's deep φ, ψ ×1 (score at {step // 1000}k steps)", "", head, rule]
    out += [line(s, b, 1) for b in ("flatten", "gap") for s in (one, deep)]
    out += ["", f"### Width: ψ ×1 vs the widest ψ of each study (score at {step // 1000}k steps)", "", head, rule]
    out += [line(one, b, w) for b in ("flatten", "gap") for w in (1, 4)]
    out += [line(deep, b, w) for b in ("flatten", "gap") for w in (1, 8)]
    out += ["", f"### Updates: replay ratio 0.25 vs 1, deep φ, ψ ×8 (score at {step // 1000}k steps)", "", head, rule]
    out += [line(s, b, 8) for b in ("flatten", "gap") for s in (deep, ratio1)]
    out += ["", "GAP ×8 − flatten ×8 (D in the third study's pre-registration), IQM and per-game means:", ""]
    out += ["| replay ratio | D (IQM) | " + " | ".join(f"D ({e})" for e in envs) + " |", "|---|---|" + "---|" * len(envs)]
    for study in (deep, ratio1):
        gap, flat = (agg.get(f"{study} | {b} ×8") for b in ("gap", "flatten"))
        d_iqm = f"{gap['IQM'][0] - flat['IQM'][0]:+.2f}" if gap and flat else "incomplete"
        means = {
            (b, e): [r["score"] for r in rows if (r["study"], r["bottleneck"], r["width"], r["env"]) == (study, b, 8, e)]
            for b in ("gap", "flatten")
            for e in envs
        }
        d_game = [
            f"{np.mean(means[('gap', e)]) - np.mean(means[('flatten', e)]):+.2f}" if means[("gap", e)] and means[("flatten", e)] else "–"
            for e in envs
        ]
        out.append(f"| {RATIOS[study]:g} | {d_iqm} | " + " | ".join(d_game) + " |")
    diag = [r for r in rows if r["study"] in (deep, ratio1) and "dormant_psi" in r]
    if diag:
        out += ["", "### Deep φ: ψ dormancy and φ feature norm at each run's last evaluation (mean over runs; per run in brackets)", ""]
        out += ["| configuration | replay ratio | runs | ψ dormant τ=0.001 | ψ dormant τ=0.1 | φ feature norm |", "|---|---|---|---|---|---|"]
        for study, b, w in sorted({(r["study"], r["bottleneck"], r["width"]) for r in diag}, key=lambda k: (k[1], k[2], RATIOS[k[0]])):
            mine = [r for r in diag if (r["study"], r["bottleneck"], r["width"]) == (study, b, w)]

            def cell(key: str, rs: list[dict] = mine) -> str:
                return f"{np.mean([r[key] for r in rs]):.3f} ({', '.join(f'{r[key]:.2f}' for r in rs)})"

            ratio = RATIOS[study]
            out.append(f"| {b} ×{w} | {ratio:g} | {len(mine)} | {cell('dormant_psi')} | {cell('dormant_psi@0.1')} | {cell('feature_norm_phi')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", type=int, default=100_000, help="env step the scores are taken at (default 100000)")
    p.add_argument("--evals", type=int, default=3, help="a score is the mean of the last N evaluations up to --step (default 3)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    p.add_argument("--out", help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    for name in ("step", "evals", "reps"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"compare_studies: --{name} must be a positive integer, got {getattr(args, name)}")
    text = tables(load(args.step, args.evals), args.step, args.reps)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
