"""Startup hook: register sb3_gap with the RL Zoo the moment ``rl_zoo3`` is imported.

Installed as a top-level module with ``sb3_gap_zoo.pth`` (site-packages), which runs
``install()`` at every Python start. That must stay cheap: ``install()`` only puts a
meta-path finder in front of ``sys.meta_path`` (no torch, no sb3_gap import). When, and only
when, ``rl_zoo3`` is imported, the finder lets the real import run and then calls
:func:`sb3_gap.zoo.register_with_zoo`, before ``rl_zoo3.train`` builds its ``--algo`` choices.

Why a hook: rl_zoo3 builds ``--algo`` choices from ``rl_zoo3.utils.ALGOS`` before its
``--gym-packages`` imports run, and ``eval``s string ``policy_kwargs`` in ``rl_zoo3.exp_manager``'s
namespace, so a plain ``import sb3_gap`` comes too late (see docs/zoo.md).
Set ``SB3_GAP_NO_ZOO_HOOK=1`` to disable it.
"""

from __future__ import annotations

import os
import sys

# Only os and sys (already loaded at startup) are imported here: importlib.abc/typing would add ~10 ms
# to every Python start, so the finder and loader follow the import protocols by duck typing.
_TARGET = "rl_zoo3"
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any


def _register() -> None:
    try:
        from sb3_gap.zoo import register_with_zoo

        register_with_zoo()
    except Exception as e:  # never break rl_zoo3 because of sb3_gap
        import warnings

        warnings.warn(
            f"sb3_gap could not register with rl_zoo3 ({type(e).__name__}: {e}); run `python -m sb3_gap.train` instead or fix the sb3_gap install",
            stacklevel=2,
        )


class _RegisteringLoader:
    """Runs the real loader of ``rl_zoo3``, then registers sb3_gap."""

    def __init__(self, loader: Loader, finder: ZooHookFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if self._finder in sys.meta_path:  # rl_zoo3 is imported now: the finder's work is done
            sys.meta_path.remove(self._finder)
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class ZooHookFinder:
    """
    Finder that wraps the loader of ``rl_zoo3``; it leaves ``sys.meta_path`` when ``rl_zoo3`` is imported, not on a
    mere look-up (``importlib.util.find_spec("rl_zoo3")`` imports nothing, and the import that follows must still register).
    """

    _looking = False

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != _TARGET or self._looking:
            return None
        import importlib.util

        self._looking = True  # the look-up below asks every finder, this one too
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisteringLoader(spec.loader, self)  # type: ignore[assignment]  # a Loader wrapper, typed as its base
        return spec


def install() -> None:
    """Put the finder first in ``sys.meta_path`` (or register right away if rl_zoo3 is already imported)."""
    if os.environ.get("SB3_GAP_NO_ZOO_HOOK"):
        return
    if _TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, ZooHookFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, ZooHookFinder())
