"""``sb3-gap`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {
        "demo": "sb3_gap.sweep.demo",
        "train": "sb3_gap.train",
        "sweep": "sb3_gap.sweep.cli",
        "report": "sb3_gap.sweep.report",
        "gradcam": "sb3_gap.diagnostics.gradcam",
        "push": "sb3_gap.hub.push",
        "pull": "sb3_gap.hub.pull",
    }
    if not argv or argv[0] not in commands:
        bad = f"unknown command {argv[0]!r}; " if argv and argv[0] not in ("-h", "--help") else ""
        print(f"{bad}usage: sb3-gap {{{','.join(commands)}}} [args...]", file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import importlib

    importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
