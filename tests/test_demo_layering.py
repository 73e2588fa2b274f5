"""The demo index is Qt-free, and the GUI depends on it, never the other way round; the
command line package imports neither Qt nor TensorFlow until a command runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import maskviewer

PKG = Path(maskviewer.__file__).parent
HEAVY = ("PySide6", "shiboken6", "pyqtgraph", "tensorflow", "keras", "jax")


def _module_file(name: str) -> Path | None:
    """The source file of the maskviewer module ``name`` (None if it is not a module)."""
    base = PKG.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str) -> set[str]:
    """The maskviewer modules ``name`` imports anywhere, inside functions too (lazy imports)."""
    path = _module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("maskviewer"):
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # a submodule import runs its packages first
                prefix = ".".join(parts[:i])
                if _module_file(prefix) is not None:
                    found.add(prefix)
    found.discard(name)
    return found


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for dep in _imports(name) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_demo_index_reaches_nothing_of_the_gui_even_lazily():
    reached = _reachable("maskviewer.demo")
    assert not {m for m in reached if m == "maskviewer.gui" or m.startswith("maskviewer.gui.")}
    assert "maskviewer.demo" not in reached  # no circle through another module either


def test_the_gallery_depends_on_the_demo_index():
    assert "maskviewer.demo" in _imports("maskviewer.gui.demo_gallery")


def test_the_command_line_reaches_no_gui_module_at_import():
    # the window's launcher is the only way into the GUI, and it imports it inside gui_main
    top_level = set()
    for name in ("maskviewer.cli", "maskviewer.cli.args", "maskviewer.cli.info", "maskviewer.cli.export"):
        tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
        top_level |= {
            n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module
        }
    assert not {m for m in top_level if m.startswith("maskviewer.gui")}


@pytest.mark.parametrize("module", ["maskviewer.demo", "maskviewer.cli", "maskviewer.cli.export",
                                    "maskviewer.cli.info", "maskviewer.cli.gui"])
def test_importing_imports_neither_qt_nor_tensorflow(module):
    code = f"import {module}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert module in out
    assert not {m for m in out if m.split(".")[0] in HEAVY}
