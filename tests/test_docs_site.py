"""The documentation site builds without a warning, and its API reference documents every public name.

``make docs`` builds the site of ``docs/conf.py`` into docs/_build/html. Here it is built once per test session into a
temporary folder, with the same flags: warnings are errors and every cross-reference must resolve (``-n``), so a
broken docstring reference, a broken link between pages, a missing figure or a page outside the navigation fails the
suite. Under pytest-xdist the workers share that one build through a file lock.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import posixpath
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

import sb3_gap

REPO = Path(__file__).resolve().parents[1]
#: The packages whose ``__all__`` is their public API.
PACKAGES = ("sb3_gap", "sb3_gap.diagnostics", "sb3_gap.envs", "sb3_gap.hub", "sb3_gap.rainbow", "sb3_gap.sweep")
#: Public names outside those ``__all__`` lists that the guides and docstrings send readers to.
MORE_PUBLIC = {
    "sb3_gap.replay": ("FrameReplayBuffer",),
    "sb3_gap.encoders": ("Encoder", "MinAtarDeepEncoder"),
    "sb3_gap.bottlenecks": ("Bottleneck", "DenseBottleneck", "Flatten", "GAP", "GMP", "Sparse", "Tokenize", "SoftMoE", "PSI"),
    "sb3_gap.extractor": ("estimate_parameters",),
    "sb3_gap.optim": ("OPTIMIZERS", "Kron"),
    "sb3_gap.sparse": ("SparseConfig",),
    "sb3_gap.initializers": ("INITS", "DOPAMINE_NETWORKS"),
    "sb3_gap.sweep.report": ("build_report", "load_runs", "aggregate_table", "compute_aggregates"),
    "sb3_gap.sweep.cli": ("main",),
    "sb3_gap.zoo": ("register_with_zoo",),
    "sb3_gap.cli": ("main",),
}


def _build(out: Path) -> dict:
    """Build the site into ``out/html``; ``{"returncode", "output"}``."""
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", "-c", "docs",
           "-d", str(out / "doctrees"), ".", str(out / "html")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg"})
    return {"returncode": proc.returncode, "output": proc.stdout + proc.stderr}


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> tuple[dict, Path]:
    """The build's result and its html folder, built once for all workers of the session."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        out = tmp_path_factory.mktemp("docs_site")
        return _build(out), out / "html"
    out = tmp_path_factory.getbasetemp().parent / "docs_site"  # the session's folder, shared by its workers
    out.mkdir(exist_ok=True)
    with FileLock(str(out) + ".lock"):
        result_file = out / "result.json"
        if not result_file.exists():
            result_file.write_text(json.dumps(_build(out)))
        return json.loads(result_file.read_text()), out / "html"


@pytest.mark.slow
def test_docs_site_builds_without_warnings(site):
    result, html = site
    assert result["returncode"] == 0, (
        "the documentation site does not build (python -m sphinx -W --keep-going -n; the docs tools come with "
        "pip install -e '.[docs]'):\n" + result["output"][-6000:]
    )
    for page in ("index.html", "docs/index.html", "docs/api/networks.html", "results/minatar_deep/summary.html"):
        assert (html / page).is_file(), f"{page} was not built"


def _resolve(path: str) -> object:
    """The object at dotted ``path``, or None."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def test_every_subpackage_is_checked_for_public_names():
    subpackages = {f"sb3_gap.{m.name}" for m in pkgutil.iter_modules(sb3_gap.__path__) if m.ispkg}
    assert subpackages <= set(PACKAGES), f"add {sorted(subpackages - set(PACKAGES))} to PACKAGES (and an __all__ to them)"
    for package in PACKAGES:
        assert hasattr(importlib.import_module(package), "__all__"), f"{package} has no __all__"


@pytest.mark.slow
def test_api_reference_documents_every_public_name(site):
    from sphinx.util.inventory import InventoryFile

    result, html = site
    if not (html / "objects.inv").is_file():
        pytest.fail("no objects.inv: the site did not build\n" + result["output"][-3000:])
    with open(html / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    documented = {name for kind, objects in inventory.items() if kind.startswith("py:") for name in objects}
    # A name counts as documented under its own path or under the path of the module that defines it (the reference
    # documents an imported object once, where its docstring's relative references resolve), i.e. an entry that
    # resolves to the very same object. Scalars are matched by name too, since equal small values are shared objects.
    by_identity: dict[int, list[str]] = {}
    for name in documented:
        if name.startswith("sb3_gap"):
            by_identity.setdefault(id(_resolve(name)), []).append(name)
    wanted = [(package, name) for package in PACKAGES for name in importlib.import_module(package).__all__]
    wanted += [(module, name) for module, names in MORE_PUBLIC.items() for name in names]
    missing = []
    for module, name in wanted:
        obj = getattr(importlib.import_module(module), name)
        paths = by_identity.get(id(obj), [])
        if isinstance(obj, (int, float, str, bool)):
            paths = [p for p in paths if p.rsplit(".", 1)[1] == name]
        if f"{module}.{name}" not in documented and not paths:
            missing.append(f"{module}.{name}")
    assert not missing, "public names without an entry in the API reference (docs/api/*.rst):\n" + "\n".join(missing)
