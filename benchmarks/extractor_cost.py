"""Update cost of ConvExtractor: forward + backward + Adam step at batch 32 on 4×84×84.

Runs {impala, nature} × {flatten, gap, gmp, tokenize} × {1, 2, 4, 8} side by side, each in the
naive memory format (``channels_last=False``) and in sb3_gap's default (``channels_last=True``),
interleaved so that machine noise hits both alike, and writes a markdown table.

    python benchmarks/extractor_cost.py --out docs/benchmarks.md

``--out`` replaces only the file's "## Extractor update cost" section (up to the next ``## `` heading), so
the other sections of docs/benchmarks.md stay; a missing file or section is created.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import gymnasium as gym
import numpy as np
import torch as th

from sb3_gap import ConvExtractor, parameter_report


def build(encoder: str, bottleneck: str, scale: int, channels_last: bool, device: th.device):
    th.manual_seed(0)
    ext = ConvExtractor(
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), encoder=encoder, bottleneck=bottleneck, width_scale=scale, channels_last=channels_last
    )
    head = th.nn.Linear(ext.features_dim, 18)  # an Atari-sized Q head
    model = th.nn.Sequential(ext, head).to(device)
    return ext, model, th.optim.Adam(model.parameters(), lr=6.25e-5, eps=1.5e-4)


def step_time(model: th.nn.Module, opt: th.optim.Optimizer, x: th.Tensor) -> float:
    start = time.perf_counter()
    loss = model(x).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if x.is_cuda:
        th.cuda.synchronize()
    return time.perf_counter() - start


SECTION_HEADING = "## Extractor update cost (`benchmarks/extractor_cost.py`)"


def replace_section(text: str, heading: str, body: str) -> str:
    """
    ``text`` with the section under ``heading`` (up to the next ``## `` heading or the end) replaced by
    ``body``; the section is appended when ``text`` has none, after a ``# Benchmarks`` title when empty.

    :param text: The markdown file's content ("" for a new file)
    :param heading: The section's heading line, e.g. ``"## Extractor update cost (...)"``
    :param body: The section's new content, without the heading
    :return: The new content
    """
    section = f"{heading}\n\n{body.strip()}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        head = text.rstrip("\n") + "\n\n" if text.strip() else "# Benchmarks\n\n"
        return head + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def write_section(path: str, body: str) -> None:
    """Replace this benchmark's section of the markdown file ``path`` (atomically), keeping the rest."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(replace_section(text, SECTION_HEADING, body))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["impala", "nature"])
    parser.add_argument("--bottlenecks", nargs="+", default=["flatten", "gap", "gmp", "tokenize"])
    parser.add_argument("--scales", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=15, help="timed updates per variant (after 3 warm-up updates)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if th.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="update this markdown file's extractor-cost section with the table")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    device = th.device(args.device)
    x = th.rand(32, 4, 84, 84, device=device)

    rows = []
    for encoder in args.encoders:
        for scale in args.scales:
            for neck in args.bottlenecks:
                variants = {cl: build(encoder, neck, scale, cl, device) for cl in (False, True)}
                times: dict[bool, list[float]] = {False: [], True: []}
                for i in range(args.repeats + 3):
                    for cl, (_, model, opt) in variants.items():
                        t = step_time(model, opt, x)
                        if i >= 3:
                            times[cl].append(t)
                naive, ours = (statistics.median(times[cl]) * 1e3 for cl in (False, True))
                rep = parameter_report(variants[True][0])
                rows.append(dict(encoder=encoder, scale=scale, neck=neck, naive=naive, ours=ours, rep=rep))
                print(f"{encoder:6s} x{scale} {neck:8s} naive {naive:7.1f} ms  sb3_gap {ours:7.1f} ms  connection {rep.connection:>10,}", flush=True)

    def ms(enc: str, scale: int, neck: str, key: str) -> float | None:
        return next((r[key] for r in rows if (r["encoder"], r["scale"], r["neck"]) == (enc, scale, neck)), None)

    lines = [
        f"Device: {device} ({platform.processor() or platform.machine()}, {args.threads} threads), torch {th.__version__}; "
        f"median of {args.repeats} updates (batch 32, 4×84×84, Adam, 18-action linear head).",
        "",
        "| encoder | ψ scale | bottleneck | φ params | connection | ψ params | naive ms/update | sb3_gap ms/update | speed-up | /flatten (sb3_gap) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flat = ms(r["encoder"], r["scale"], "flatten", "ours")
        ratio = f"{r['ours'] / flat:.2f}" if flat else "–"
        rep = r["rep"]
        lines.append(
            f"| {r['encoder']} | ×{r['scale']} | {r['neck']} | {rep.phi:,} | {rep.connection:,} | {rep.psi:,} | "
            f"{r['naive']:.1f} | {r['ours']:.1f} | {r['naive'] / r['ours']:.2f}× | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        write_section(
            args.out,
            f"Command: `python benchmarks/extractor_cost.py --out {args.out}`\n\n"
            '"naive" is the same network with `channels_last=False` (plain NCHW PyTorch); "sb3_gap" is the default.\n\n' + table,
        )


if __name__ == "__main__":
    main()
