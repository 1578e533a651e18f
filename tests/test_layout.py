"""The package's shape: no module or class so long that a newcomer cannot read it in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sb3_gap"
MAX_MODULE_LINES, MAX_CLASS_LINES = 600, 450


def _too_long() -> tuple[list[str], list[str]]:
    modules, classes = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    classes.append(f"{name}: class {node.name} {length} lines")
    return modules, classes


def test_no_module_over_600_lines_and_no_class_over_450():
    modules, classes = _too_long()
    assert not modules and not classes, f"split along their concepts: {modules + classes}"
