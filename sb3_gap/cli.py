"""``sb3-gap`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import importlib
import sys

# sub-command -> "module:function" taking argv; imported on demand so that a missing optional piece breaks only its command.
COMMANDS: dict[str, str] = {
    "demo": "sb3_gap.sweep.demo:main",
    "train": "sb3_gap.train:main",
    "sweep": "sb3_gap.sweep.cli:main",
    "report": "sb3_gap.sweep.report:main",
    "gradcam": "sb3_gap.diagnostics.gradcam:main",
    "push": "sb3_gap.hub.cli:push_main",
    "pull": "sb3_gap.hub.cli:pull_main",
}


def main(argv: list[str] | None = None) -> None:
    """
    Run ``sb3-gap <command> [args...]``: the command's function gets the remaining arguments.

    :param argv: The arguments after ``sb3-gap`` (default: ``sys.argv[1:]``)
    :raises SystemExit: 0 for ``-h`` / ``--help``, 2 (with the usage line) for a missing or unknown command
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        bad = f"unknown command {argv[0]!r}; " if argv and argv[0] not in ("-h", "--help") else ""
        print(f"{bad}usage: sb3-gap {{{','.join(COMMANDS)}}} [args...]", file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    module, function = COMMANDS[argv[0]].split(":")
    getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    main()
