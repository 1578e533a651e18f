"""``sb3-gap pull`` entry (the CLI dispatches by module)."""

from sb3_gap.hub.cli import pull_main as main

__all__ = ["main"]
