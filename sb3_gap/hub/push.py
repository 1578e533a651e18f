"""``sb3-gap push`` entry (the CLI dispatches by module)."""

from sb3_gap.hub.cli import push_main as main

__all__ = ["main"]
