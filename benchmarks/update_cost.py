"""
Cost of one gradient update: Rainbow (C51 + 3-step + PER, the defaults) against SB3's DQN (its defaults) on the
same network and batch, in one process and interleaved, so that machine noise hits all variants alike.

Each variant is a model whose replay was filled with ``--fill`` random env steps; then ``--rounds`` rounds each
time ``--n`` calls of ``model.train(gradient_steps=1, batch_size=32)`` per variant (as ``learn()`` calls it:
replay sample, loss, backward, optimizer step, priority write-back, logging), the variants in a rotating order.
Reported: the median over rounds of the mean ms per update, and the ratio to DQN's. ``bare`` is the floor of
``throughput_floor.py`` (Rainbow's network and optimizer, a fixed batch, no replay, no loss bookkeeping).
``end-to-end`` steps/s are ``rainbow_throughput.py``'s job; this script isolates the update.

    flock /tmp/sb3gap.cpu python benchmarks/update_cost.py --threads 2          # the table in docs/benchmarks_speed.md
    python benchmarks/update_cost.py --quick                                    # smoke run, < 30 s after imports
    python benchmarks/update_cost.py --compile                                  # + Rainbow(compile=True), compiled DQN
    python benchmarks/update_cost.py --profile --cases minatar-breakout:minatar_impala-x4-gap
    python benchmarks/update_cost.py --parts                                    # + Rainbow without its replay sample / write-back

``--profile`` prints, per case, a ``torch.profiler`` table of the top ops of ``--n`` Rainbow updates, with the
update's parts labelled (``rainbow/sample``, ``rainbow/loss``, ``rainbow/backward`` and so on).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch as th
from rainbow_throughput import NETWORKS as THROUGHPUT_NETWORKS
from rainbow_throughput import make_env  # same envs as the throughput benchmarks
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from throughput_floor import bare_update

import sb3_gap
from sb3_gap import Rainbow, compile_policy

NETWORKS: dict[str, dict[str, Any]] = {
    **THROUGHPUT_NETWORKS,
    "minatar_impala-x4-gap": dict(encoder="minatar_impala", bottleneck="gap", width_scale=4),  # the MinAtar study's ×4 GAP
    "minatar-x4-gap": dict(encoder="minatar", bottleneck="gap", width_scale=4),  # Dopamine's MinAtar torso
}
#: (env, network) pairs measured by default: the MinAtar and Pong configurations of docs/benchmarks_speed.md.
DEFAULT_CASES = [
    "minatar-breakout:impala-x4-gap",
    "minatar-breakout:minatar_impala-x4-gap",
    "minatar-breakout:minatar-x4-gap",
    "pong:nature-x1-flatten",
]
QUICK_CASES = ["minatar-breakout:minatar_impala-x4-gap"]
BATCH = 32


def parse_case(text: str) -> tuple[str, str]:
    """``env:network`` → (env, network), checked against the known envs and networks."""
    env_name, _, network = text.partition(":")
    if env_name not in ("minatar-breakout", "pong") or network not in NETWORKS:
        raise ValueError(f"Unknown case {text!r}; expected env:network with env in ['minatar-breakout', 'pong'] and network in {sorted(NETWORKS)}")
    if env_name != "pong" and network.startswith("nature"):
        raise ValueError(f"Case {text!r}: the Nature network needs >= 36 px images; use it with pong")
    return env_name, network


def build(algo: str, env_name: str, network: str, fill: int, device: str, compiled: bool) -> BaseAlgorithm:
    """A model whose replay holds ``fill`` random steps (``learning_starts`` not reached: no update yet)."""
    env = make_env(env_name, seed=0)
    kwargs: dict[str, Any] = dict(
        buffer_size=fill + 100,
        learning_starts=fill + 1,
        batch_size=BATCH,
        policy_kwargs=sb3_gap.policy_kwargs(**NETWORKS[network]),
        seed=0,
        device=device,
    )
    if algo == "rainbow":
        model: BaseAlgorithm = Rainbow("CnnPolicy", env, compile=compiled, **kwargs)  # C51 + 3-step + PER: the defaults
    else:
        model = DQN("CnnPolicy", env, **kwargs)  # SB3's defaults: 1-step, Huber, grad clip 10, Adam
        if compiled:
            compile_policy(model)
    model.learn(fill)
    return model


def _sync(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def _train_fn(model: BaseAlgorithm) -> Callable[[], None]:
    return lambda: model.train(gradient_steps=1, batch_size=BATCH)


def measure_case(env_name: str, network: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """ms per update of each variant for one (env, network), interleaved."""
    variants: dict[str, Callable[[], None]] = {}
    compile_s: dict[str, float] = {}
    models: dict[str, BaseAlgorithm] = {}
    names = [("rainbow", False), ("dqn", False)] + ([("rainbow", True), ("dqn", True)] if args.compile else [])
    for algo, compiled in names:
        label = algo + ("+compile" if compiled else "")
        model = build(algo, env_name, network, args.fill, args.device, compiled)
        models[label], variants[label] = model, _train_fn(model)
        start = time.perf_counter()
        variants[label]()  # warm-up; compiles the compiled variants
        _sync(model.device)
        if compiled:
            compile_s[label] = time.perf_counter() - start
    variants["bare"] = bare_update(models["rainbow"], BATCH)  # type: ignore[arg-type]
    if args.parts:  # Rainbow's train() with parts taken out: the differences are what those parts cost inside it
        for label, write_back in (("rainbow, fixed batch", True), ("rainbow, fixed batch, no write-back", False)):
            model = build("rainbow", env_name, network, args.fill, args.device, False)
            model.train(gradient_steps=1, batch_size=BATCH)  # the first update, as for the others
            buffer: Any = model.replay_buffer
            fixed = buffer.sample(BATCH)
            buffer.sample = lambda *a, _batch=fixed, **k: _batch
            if not write_back:
                buffer.update_priorities = lambda *a, **k: None
            models[label], variants[label] = model, _train_fn(model)
    device = models["rainbow"].device
    for fn in variants.values():  # warm-up: allocator, caches
        for _ in range(3):
            fn()
    _sync(device)

    times: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for r in range(args.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:  # rotate the order
            fn = variants[label]
            start = time.perf_counter()
            for _ in range(args.n):
                fn()
            _sync(device)
            times[label].append(1000 * (time.perf_counter() - start) / args.n)
    out = {}
    for label, ms in times.items():
        row = {"ms": statistics.median(ms), "min": min(ms), "max": max(ms)}
        if label in compile_s:
            row["compile_s"] = compile_s[label]
        out[label] = row
    if args.profile:
        profile_rainbow(models["rainbow"], args.n, args.top)  # type: ignore[arg-type]
        if args.compile:
            profile_rainbow(models["rainbow+compile"], args.n, args.top)  # type: ignore[arg-type]
    for model in models.values():
        model.env.close()  # type: ignore[union-attr]
    return out


@contextmanager
def _labelled(model: Rainbow):
    """Wrap the parts of Rainbow's update in ``torch.profiler.record_function`` ranges, for the profile only."""
    buffer, optimizer = model.replay_buffer, model.policy.optimizer
    originals = {
        (buffer, "sample"): "rainbow/sample",
        (buffer, "update_priorities"): "rainbow/update_priorities",
        (optimizer, "step"): "rainbow/optimizer_step",
        (optimizer, "zero_grad"): "rainbow/zero_grad",
    }
    saved = {key: getattr(*key) for key in originals}
    own = {key: key[1] in key[0].__dict__ for key in originals}  # instance attributes (else the class's methods)

    def wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapped(*a: Any, **kw: Any) -> Any:
            with th.profiler.record_function(name):
                return fn(*a, **kw)

        return wrapped

    # train() calls _compiled_update when compiled, else _update_loss
    loss_attr = "_update_loss" if model._compiled_update is None else "_compiled_update"
    originals[(model, loss_attr)] = "rainbow/loss"
    saved[(model, loss_attr)], own[(model, loss_attr)] = getattr(model, loss_attr), loss_attr in model.__dict__
    for (obj, attr), name in originals.items():
        setattr(obj, attr, wrap(saved[(obj, attr)], name))
    backward = th.Tensor.backward
    th.Tensor.backward = wrap(backward, "rainbow/backward")  # type: ignore[method-assign]
    try:
        yield
    finally:
        th.Tensor.backward = backward  # type: ignore[method-assign]
        for (obj, attr), fn in saved.items():
            if own[(obj, attr)]:
                setattr(obj, attr, fn)
            else:
                delattr(obj, attr)


def profile_rainbow(model: Rainbow, n: int, top: int) -> None:
    """Print the top ops of ``n`` Rainbow updates (``torch.profiler``), parts of the update labelled."""
    activities = [th.profiler.ProfilerActivity.CPU]
    cuda = model.device.type == "cuda"
    if cuda:
        activities.append(th.profiler.ProfilerActivity.CUDA)
    with _labelled(model), th.profiler.profile(activities=activities) as prof:
        for _ in range(n):
            model.train(gradient_steps=1, batch_size=BATCH)
        _sync(model.device)
    title = f"Rainbow{' (compile=True)' if model.compile else ''}: {n} updates"
    events = prof.key_averages()
    parts = sorted((e for e in events if e.key.startswith("rainbow/")), key=lambda e: -e.cpu_time_total)
    print(f"\n### {title}: parts of the update (CPU ms per update, inclusive)\n")
    for e in parts:
        print(f"- {e.key}: {e.cpu_time_total / 1000 / n:.2f} ms")
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"\n### {title}: top {top} ops by {sort_by}\n")
    print(events.table(sort_by=sort_by, row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=None, metavar="ENV:NETWORK", help=f"default: {DEFAULT_CASES}")
    parser.add_argument("--fill", type=int, default=None, help="random env steps in each replay before timing (default 1000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds, median reported (default 15)")
    parser.add_argument("--n", type=int, default=None, help="updates per variant per round (default 20)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also Rainbow(compile=True) and compile_policy(DQN)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the Rainbow update")
    parser.add_argument(
        "--parts", action="store_true", help="also Rainbow with one fixed batch (no replay sample), and without the priority write-back"
    )
    parser.add_argument("--top", type=int, default=25, help="rows of the profiler table")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_CASES}, --fill 200 --rounds 3 --n 5 by default")
    args = parser.parse_args()
    if args.quick:
        args.cases = args.cases or QUICK_CASES
    for name, full, quick in (("fill", 1000, 200), ("rounds", 15, 3), ("n", 20, 5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("fill", "rounds", "n", "threads", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        cases = [parse_case(c) for c in args.cases or DEFAULT_CASES]
    except ValueError as e:
        parser.error(str(e))
    th.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"torch {th.__version__}, {args.threads} threads, device {args.device}, batch {BATCH}, {args.rounds} rounds x {args.n} updates")
    print("| env | network | variant | ms/update (median) | min..max | vs DQN | vs eager | compile s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for env_name, network in cases:
        rows = measure_case(env_name, network, args)
        for label, r in rows.items():
            # compiled variants against compiled DQN, and against their own eager run
            base = rows["dqn+compile" if label.endswith("+compile") else "dqn"]["ms"]
            eager = rows[label.removesuffix("+compile")]["ms"] if label.endswith("+compile") else None
            vs_eager = f"{r['ms'] / eager:.2f}x" if eager else ""
            compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
            print(
                f"| {env_name} | {network} | {label} | {r['ms']:.2f} | {r['min']:.2f}..{r['max']:.2f} | {r['ms'] / base:.2f}x "
                f"| {vs_eager} | {compile_s} |",
                flush=True,
            )
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":  # guard: SubprocVecEnv re-imports __main__
    main()
