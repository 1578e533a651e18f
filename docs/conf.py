"""Sphinx configuration of the sb3_gap documentation site (``make docs``; CONTRIBUTING.md, "Building the docs").

The source folder is the repository root, so that the Markdown pages keep the links and image paths that GitHub
shows: ``docs/*.md`` (the guides), ``CONTRIBUTING.md`` and the studies' ``results/*/README.md`` and ``summary.md``
with their figures. The API reference (``docs/api/``) is generated from the docstrings by autodoc. Nothing is
fetched at build time (no intersphinx), and no code or notebook runs beyond importing ``sb3_gap``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.util.nodes import make_refnode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package as checked out, also when it is not installed in editable mode

project = "sb3_gap"
author = "sb3_gap contributors"
copyright = "sb3_gap contributors"  # noqa: A001  (Sphinx's name)
release = version = "0.1.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.autosummary"]
root_doc = "docs/index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
include_patterns = ["docs/*.md", "docs/api/*.rst", "CONTRIBUTING.md", "results/*/README.md", "results/*/summary.md"]
exclude_patterns = ["docs/_build", ".venv", ".git", "runs", "logs", "build", "results/*/*-v1", "results/*/MinAtar*"]
templates_path = ["_templates"]

# Every reference must resolve (warnings are errors in `make docs`). No inventory of other projects is downloaded,
# so references into the packages below, the standard library and the builtins are not checked.
nitpicky = True
_EXTERNAL = (
    "torch", "th", "nn", "numpy", "np", "gymnasium", "gym", "stable_baselines3", "sb3_contrib", "optuna", "pandas", "pd",
    "huggingface_hub", "rl_zoo3", "kron_torch", "matplotlib", "envpool", "minatar", "ale_py", "safetensors", "yaml",
    "sqlalchemy", "rliable", "typing_extensions",
    "spaces", "Schedule", "GymEnv", "VecEnv", "ReplayBuffer", "BaseFeaturesExtractor",
    *sorted(sys.stdlib_module_names),
)  # fmt: skip
_BUILTINS = ("int", "float", "str", "bool", "bytes", "dict", "list", "tuple", "set", "frozenset", "type", "object", "None",
             "Ellipsis", "callable", "Exception", "ValueError", "TypeError", "KeyError", "RuntimeError", "OSError")  # fmt: skip
nitpick_ignore_regex = [
    ("py:.*", rf"({'|'.join(_EXTERNAL)})(\..+)?"),
    ("py:.*", "|".join(_BUILTINS)),
]

myst_heading_anchors = 3

autodoc_typehints = "description"
# Only what sb3_gap documents: a method without a docstring of its own (forward, step, ...) is not listed with the
# docstring of the torch / SB3 / gymnasium method it overrides.
autodoc_inherit_docstrings = False
autodoc_member_order = "groupwise"  # classes, then functions, then constants
autosummary_generate = False

html_theme = "furo"
html_title = "sb3_gap"
html_copy_source = False
# The root document is docs/index (the source folder is the repository root), so index.html at the top of the
# output only forwards there.
html_additional_pages = {"index": "redirect.html"}


# ------------------------------------------------------------------------------------------------ references
# Docstrings name objects by the path a reader imports them from (``sb3_gap.ConvExtractor``) or relative to their
# own module (``:data:`MAX_WIDTH_SCALE```), and some name helpers that the reference does not document. A reference
# that Sphinx cannot resolve is looked up here: the Python object it names is imported, and the reference links to
# the documented entry of that same object, or, when the object exists but is not documented, stays as code
# without a link. A name that imports nothing (a typo, a removed function) is left unresolved: nitpicky reports it.
_MISSING = object()


def _import(path: str) -> Any:
    """The object at dotted ``path`` (a module, or attributes of the longest importable module prefix)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _instance_attribute(path: str) -> bool:
    """Whether ``path`` names an attribute that instances of an sb3_gap class have (annotated, or set on ``self``)."""
    owner_path, _, name = path.rpartition(".")
    owner = _import(owner_path) if owner_path else _MISSING
    if not inspect.isclass(owner):
        return False
    for cls in owner.__mro__:
        if not cls.__module__.startswith("sb3_gap"):
            continue
        if name in getattr(cls, "__annotations__", {}) or re.search(rf"\bself\.{name}\b\s*(:[^=\n]+)?=", inspect.getsource(cls)):
            return True
    return False


def _documented_by_identity(env: Any) -> dict[int, tuple[Any, str, str]]:
    """``id(object) -> (object, docname, anchor)`` of every documented sb3_gap object (built once per build)."""
    cache = getattr(env, "_sb3_gap_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            obj = _import(name) if name.startswith("sb3_gap") and not entry.aliased else _MISSING
            if obj is not _MISSING and not isinstance(obj, (int, float, str, bool)) and obj is not None:
                cache.setdefault(id(obj), (obj, entry.docname, entry.node_id))
        env._sb3_gap_documented = cache
    return cache


def _context_modules(node: nodes.Element) -> list[str]:
    """Modules a relative name may be relative to: the reference's module, then that of each enclosing object."""
    modules = [node.get("py:module") or ""]
    parent = node.parent
    while parent is not None:
        for sig in parent.findall(nodes.Element) if parent.tagname == "desc" else ():
            if sig.tagname == "desc_signature" and sig.get("module"):
                obj = _import(f"{sig['module']}.{sig['fullname']}")
                modules.append(getattr(obj, "__module__", None) or sig["module"])
                break
        parent = parent.parent
    return [m for m in dict.fromkeys(modules) if m]


def resolve_by_object(app: Any, env: Any, node: nodes.Element, contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    cls = node.get("py:class")
    for module in _context_modules(node):
        for candidate in (f"{module}.{cls}.{target}" if cls else None, f"{module}.{target}", target):
            obj = _import(candidate) if candidate else _MISSING
            if obj is _MISSING and candidate and node.get("reftype") in ("attr", "meth") and _instance_attribute(candidate):
                return contnode
            if obj is _MISSING or not (candidate.startswith("sb3_gap") or getattr(obj, "__module__", "").startswith("sb3_gap")):
                continue
            documented = _documented_by_identity(env).get(id(obj))
            if documented is not None and documented[0] is obj:
                return make_refnode(app.builder, node["refdoc"], documented[1], documented[2], contnode, candidate)
            return contnode
    return None


# A registry's value shows its names (``ENCODERS = {'impala': ...}``); the value of a large table (every Atari game,
# every protocol) would fill the screen, so values longer than this are left out of the signature.
MAX_VALUE_CHARS = 400


def drop_long_values(app: Any, doctree: nodes.document) -> None:
    for annotation in list(doctree.findall(addnodes.desc_annotation)):
        text = annotation.astext().strip()
        if text.startswith("=") and len(text) > MAX_VALUE_CHARS:
            annotation.parent.remove(annotation)


def setup(app: Any) -> None:
    app.connect("missing-reference", resolve_by_object)
    app.connect("doctree-read", drop_long_values)
