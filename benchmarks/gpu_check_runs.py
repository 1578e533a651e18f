"""
Short Rainbow runs for ``benchmarks/gpu_check.sh``: MinAtar Breakout and Pong (Nature; Impala ×4 GAP and flatten),
each eagerly and with ``compile=True``, printing env steps/s, ms per update and peak GPU memory.

Each run: ``--learning-starts`` random steps and ``--warmup`` learning steps (compiling happens here, not timed;
its time is printed from ``model.compile_times``), then ``--steps`` timed env steps (``--pong-steps`` on Pong)
with one update every 4 steps, batch 32, ε fixed at 0.01. A run that fails prints its error and the script goes
on; the exit status is 1 if any failed.

    python benchmarks/gpu_check_runs.py --device cuda                 # what gpu_check.sh runs
    python benchmarks/gpu_check_runs.py --device cpu --quick          # dry run of this script on CPU
"""

from __future__ import annotations

import argparse
import time
import traceback
from typing import Any

import torch as th
from rainbow_throughput import NETWORKS, make_env  # same envs and networks as the throughput benchmarks

import sb3_gap
from sb3_gap import Rainbow

RUNS = [
    ("minatar-breakout", "minatar_impala-x4-gap"),
    ("pong", "nature-x1-flatten"),
    ("pong", "impala-x4-gap"),
    ("pong", "impala-x4-flatten"),
]
EXTRA_NETWORKS = {"minatar_impala-x4-gap": dict(encoder="minatar_impala", bottleneck="gap", width_scale=4)}


def run(env_name: str, network: str, compiled: bool, args: argparse.Namespace) -> dict[str, float]:
    """One short run; returns steps/s, ms/update, compile seconds and peak GPU memory (GB)."""
    cuda = th.device(args.device).type == "cuda"
    if cuda:
        th.cuda.empty_cache()
        th.cuda.reset_peak_memory_stats()
    env = make_env(env_name, seed=0)
    steps = args.pong_steps if env_name == "pong" else args.steps
    model = Rainbow(
        "CnnPolicy",
        env,
        buffer_size=args.learning_starts + args.warmup + steps + 100,
        learning_starts=args.learning_starts,
        exploration_steps=0,
        exploration_initial_eps=0.01,
        exploration_final_eps=0.01,
        policy_kwargs=sb3_gap.policy_kwargs(**{**NETWORKS, **EXTRA_NETWORKS}[network]),
        compile=compiled,
        compile_mode=args.compile_mode if compiled else None,
        seed=0,
        device=args.device,
    )
    clock = {"train": 0.0}
    train = model.train

    def timed_train(*a: Any, **kw: Any) -> None:
        start = time.perf_counter()
        train(*a, **kw)
        if cuda:
            th.cuda.synchronize()
        clock["train"] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    model.learn(args.learning_starts + args.warmup)  # replay warm-up, then the first updates (and compiling)
    clock["train"], updates = 0.0, model._n_updates
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    if cuda:
        th.cuda.synchronize()
    wall = time.perf_counter() - start
    env.close()
    return {
        "steps_per_s": steps / wall,
        "ms_per_update": 1000 * clock["train"] / max(model._n_updates - updates, 1),
        "compile_s": sum(model.compile_times.values()),
        "gpu_gb": th.cuda.max_memory_allocated() / 1e9 if cuda else 0.0,
        "gpu_reserved_gb": th.cuda.max_memory_reserved() / 1e9 if cuda else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode of the compiled runs (default: "
                        "'reduce-overhead' on CUDA, torch's default elsewhere)")  # fmt: skip
    parser.add_argument("--learning-starts", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100, help="untimed learning steps (compiling happens here)")
    parser.add_argument("--steps", type=int, default=2000, help="timed env steps on MinAtar")
    parser.add_argument("--pong-steps", type=int, default=600, help="timed env steps on Pong")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-compile", action="store_true", help="eager runs only")
    parser.add_argument("--runs", nargs="+", default=None, metavar="ENV:NETWORK", help=f"default: all of {RUNS}")
    parser.add_argument("--quick", action="store_true", help="dry run: MinAtar only, 100 + 20 + 100 steps")
    args = parser.parse_args()
    if th.device(args.device).type == "cuda" and not th.cuda.is_available():
        raise SystemExit(f"gpu_check_runs: --device {args.device}: no CUDA device is available (torch {th.__version__})")
    if args.compile_mode is None and th.device(args.device).type == "cuda":
        args.compile_mode = "reduce-overhead"
    runs = [tuple(r.split(":", 1)) for r in args.runs] if args.runs else RUNS
    for env_name, network in runs:
        if env_name not in ("minatar-breakout", "pong") or network not in {**NETWORKS, **EXTRA_NETWORKS}:
            parser.error(f"unknown run {env_name}:{network}; valid: {[f'{e}:{n}' for e, n in RUNS]}")
    if args.quick:
        runs = [r for r in runs if r[0] != "pong"][:1] or RUNS[:1]
        args.learning_starts, args.warmup, args.steps = 100, 20, 100
    if args.threads:
        th.set_num_threads(args.threads)
    device_name = th.cuda.get_device_name(args.device) if th.device(args.device).type == "cuda" else "cpu"
    print(f"torch {th.__version__}, device {args.device} ({device_name}), compile mode {args.compile_mode!r}")
    print("| env | network | compile | steps/s | ms/update | compile s | GPU max allocated GB | GPU max reserved GB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    failed = []
    for env_name, network in runs:
        for compiled in (False,) if args.no_compile else (False, True):
            try:
                r = run(env_name, network, compiled, args)
            except Exception as e:  # report and go on: one broken configuration should not hide the others
                traceback.print_exc()
                failed.append(f"{env_name}:{network} compile={compiled}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                print(f"| {env_name} | {network} | {compiled} | FAILED | | | | |", flush=True)
                continue
            print(
                f"| {env_name} | {network} | {compiled} | {r['steps_per_s']:.1f} | {r['ms_per_update']:.2f} | "
                f"{r['compile_s']:.1f} | {r['gpu_gb']:.2f} | {r['gpu_reserved_gb']:.2f} |",
                flush=True,
            )
    if failed:
        raise SystemExit("gpu_check_runs: failed runs:\n  " + "\n  ".join(failed))


if __name__ == "__main__":  # guard: SubprocVecEnv re-imports __main__
    main()
