"""Per-update cost of each comparison method against ``gap`` (docs/methods.md): SB3 DQN gradient updates,
batch 32, Impala ×4 (ψ of 2048 units).

Methods: ``flatten``, ``gap``, ``softmoe`` (4 experts), ``sparse`` static / gmp / rigl (bottleneck scope, the
paper's schedules), weight decay (AdamW, 0.1), the multi-skip residual ψ (one block, LayerNorm) and Kron, each
on top of ``gap`` unless it is a bottleneck itself. Each method's update is SB3's ``DQN.train`` (target
computation, Huber loss, backward, gradient clipping, optimizer step and, for sparse training, the masking
hooks) on a replay buffer of random transitions. The methods are timed in interleaved rounds, so that machine
noise hits all alike, and the ratios come from the same run.

    OMP_NUM_THREADS=2 python benchmarks/method_cost.py                 # Atari input 4×84×84, Impala ×4
    python benchmarks/method_cost.py --obs minatar                      # MinAtar input 4×10×10, minatar_impala ×4
    python benchmarks/method_cost.py --quick                            # a smoke run (MinAtar input, ψ ×1, 1 round)

The periodic mask updates of GMP (every ``prune_every`` = 1,000 updates) and RigL (every ``rigl_interval`` =
5,000) are amortised to nothing over a short run; what is measured is the per-update masking overhead.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import DQN

from sb3_gap import parameter_report, policy_kwargs

#: Extra ``policy_kwargs`` of each method (on top of encoder and width); ``gap`` is the reference.
METHODS: dict[str, dict[str, Any]] = {
    "gap": dict(bottleneck="gap"),
    "flatten": dict(bottleneck="flatten"),
    "softmoe": dict(bottleneck="softmoe", num_experts=4),
    "sparse static": dict(bottleneck="sparse", sparse_method="static", sparsity=0.9),
    "sparse gmp": dict(bottleneck="sparse", sparse_method="gmp", sparsity=0.9, prune_start=0, prune_end=1_000_000),
    "sparse rigl": dict(bottleneck="sparse", sparse_method="rigl", sparsity=0.9, rigl_end=1_000_000),
    "weight decay": dict(bottleneck="gap", weight_decay=0.1),
    "residual ψ": dict(bottleneck="gap", psi="residual", psi_depth=1),
    "kron": dict(bottleneck="gap", optimizer="kron"),
}
INPUTS = {"atari": ((4, 84, 84), "impala", 18), "minatar": ((4, 10, 10), "minatar_impala", 6)}


class _Env(gym.Env):
    """An env with the right spaces; never stepped (the replay is filled directly)."""

    def __init__(self, shape: tuple[int, int, int], n_actions: int) -> None:
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, False, False, {}


def build(method: str, obs: str, width_scale: int, device: str, buffer_size: int) -> DQN:
    shape, encoder, n_actions = INPUTS[obs]
    th.manual_seed(0)
    pk = policy_kwargs(encoder=encoder, width_scale=width_scale, **METHODS[method])
    model = DQN("CnnPolicy", _Env(shape, n_actions), policy_kwargs=pk, buffer_size=buffer_size, batch_size=32,
                learning_starts=0, device=device, seed=0)  # fmt: skip
    rng = np.random.default_rng(0)
    rb = model.replay_buffer
    rb.observations[:] = rng.integers(0, 256, rb.observations.shape, dtype=np.uint8)
    rb.next_observations[:] = rng.integers(0, 256, rb.next_observations.shape, dtype=np.uint8)
    rb.actions[:] = rng.integers(0, n_actions, rb.actions.shape)
    rb.rewards[:] = rng.standard_normal(rb.rewards.shape).astype(np.float32)
    rb.full = True
    model._setup_learn(1)  # logger and progress, as learn() would; no env step is taken
    return model


def time_updates(model: DQN, n: int) -> float:
    """Seconds per gradient update over ``n`` updates (``DQN.train``)."""
    if model.device.type == "cuda":
        th.cuda.synchronize()
    start = time.perf_counter()
    model.train(gradient_steps=n, batch_size=32)
    if model.device.type == "cuda":
        th.cuda.synchronize()
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obs", choices=sorted(INPUTS), default="atari", help="input shape (default: atari, 4×84×84)")
    p.add_argument("--width-scale", type=int, default=4, help="ψ width scale (default 4: the paper's ×4)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--updates", type=int, default=20, help="timed updates per method per round")
    p.add_argument("--device", default="auto", help="torch device (auto: CUDA when present)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--quick", action="store_true", help="smoke run: MinAtar input, ψ ×1, 1 round of 2 updates (not a measurement)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.obs, args.width_scale, args.rounds, args.updates = "minatar", 1, 1, 2
    device = ("cuda" if th.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    methods = ["gap"] + [m for m in args.methods if m != "gap"]
    models = {m: build(m, args.obs, args.width_scale, device, buffer_size=64 if args.quick else 1_000) for m in methods}
    for model in models.values():  # warm-up: first-step allocations, Kron's preconditioner setup
        time_updates(model, 1)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            times[m].append(time_updates(models[m], args.updates))
    ms = {m: 1000 * statistics.median(t) for m, t in times.items()}
    shape, encoder, _ = INPUTS[args.obs]
    print(f"DQN updates, batch 32, {encoder} ×{args.width_scale} on {'×'.join(map(str, shape))}, {device} "
          f"({platform.processor() or platform.machine()}, {th.get_num_threads()} torch threads), "
          f"median of {args.rounds} rounds × {args.updates} updates\n")  # fmt: skip
    print("| method | ms / update | × gap | ψ parameters (effective) |")
    print("|---|---|---|---|")
    rows = []
    for m in methods:
        report = parameter_report(models[m])
        psi = report.connection + report.psi
        rows.append(dict(method=m, ms=ms[m], ratio=ms[m] / ms["gap"], psi=psi, effective_psi=report.effective_psi))
        print(f"| {m} | {ms[m]:.2f} | {ms[m] / ms['gap']:.2f} | {psi:,} ({report.effective_psi:,}) |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(obs=args.obs, encoder=encoder, width_scale=args.width_scale, device=device, rounds=args.rounds,
                           updates=args.updates, threads=th.get_num_threads(), results=rows), f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
