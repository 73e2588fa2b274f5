"""The house rules that keep the GUI thin, checked on the source (see docs/ARCHITECTURE.md).

- every tool is a package under ``maskviewer/gui/`` with a Qt-free ``model.py``;
- tools ask the user through the window's dialog service, never through ``QFileDialog`` or
  ``QMessageBox.question`` themselves;
- files are written only under ``maskviewer/io/`` (exports only by ``maskviewer/io/export/``);
- module, class and function sizes stay readable.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import maskviewer

PKG = Path(maskviewer.__file__).parent
TOOLS = ("masks", "patches", "binarise", "layers", "kernels")
HEAVY = ("PySide6", "shiboken6", "pyqtgraph", "tensorflow", "keras", "jax")


def _modules(root: Path = PKG):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _rel(path: Path) -> str:
    return path.relative_to(PKG.parent).as_posix()


def test_every_tool_is_a_package_with_a_model_panel_and_install():
    for tool in TOOLS:
        folder = PKG / "gui" / tool
        assert (folder / "model.py").is_file(), f"{tool}: no model.py"
        assert (folder / "panel.py").is_file(), f"{tool}: no panel.py"
        init = ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "install" for n in init.body), tool


def test_tool_models_import_no_qt_and_no_backend():
    code = "\n".join(f"import maskviewer.gui.{t}.model" for t in TOOLS)
    code += "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert {f"maskviewer.gui.{t}.model" for t in TOOLS} <= set(out)
    assert not {m for m in out if m.split(".")[0] in HEAVY}


def _attribute_uses(tree: ast.AST, owner: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == owner:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and any(a.name == owner for a in node.names):
            found.append((node.lineno, "import"))
    return found


def test_only_the_dialog_service_opens_file_dialogs_and_asks_questions():
    offenders = []
    for path, tree in _modules():
        if _rel(path) == "maskviewer/gui/dialogs.py":
            continue
        for picker in ("QFileDialog", "QInputDialog", "QColorDialog"):
            offenders += [f"{_rel(path)}:{ln} {picker}" for ln, _ in _attribute_uses(tree, picker)]
        offenders += [
            f"{_rel(path)}:{ln} QMessageBox.{attr}"
            for ln, attr in _attribute_uses(tree, "QMessageBox")
            if attr == "question"
        ]
    assert offenders == []


#: calls that put bytes in a file
_WRITERS = {"save", "savez", "savez_compressed", "tofile", "write_bytes", "write_text", "fdopen",
            "imwrite", "imsave", "replace", "rename", "writev", "dump"}


def _writes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name == "open" and len(node.args) >= 2:
            mode = node.args[1]
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
                lines.append(node.lineno)
        elif name == "open" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "os":
            lines.append(node.lineno)
        elif name == "replace" and isinstance(f, ast.Name):
            continue  # dataclasses.replace (os.replace is called as an attribute)
        elif name in _WRITERS and not (isinstance(f, ast.Attribute) and _is_benign(f)):
            lines.append(node.lineno)
    return lines


def _is_benign(f: ast.Attribute) -> bool:
    """Calls named like writers that write no file (str.replace, QSettings…, grabbed pixmaps)."""
    if f.attr == "replace":
        return not (isinstance(f.value, ast.Name) and f.value.id == "os")
    if f.attr == "rename":
        return not (isinstance(f.value, ast.Name) and f.value.id == "os")
    if f.attr == "dump":
        return not (isinstance(f.value, ast.Name) and f.value.id in ("json", "pickle"))
    return False


def test_files_are_written_only_under_io_and_exports_only_by_io_export():
    outside = []
    for path, tree in _modules():
        rel = _rel(path)
        if rel.startswith("maskviewer/io/"):
            continue
        outside += [f"{rel}:{ln}" for ln in _writes(tree)]
    assert outside == [], "write files through maskviewer.io (atomic writes), not here"
    export_pkg = PKG / "io" / "export"
    assert export_pkg.is_dir() and (export_pkg / "writing.py").is_file()
    for path, tree in _modules(PKG / "io"):
        rel = _rel(path)
        if rel.startswith("maskviewer/io/export/") or not _writes(tree):
            continue
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.startswith("maskviewer.io.export") for m in imported if "naming" not in m), (
            f"{rel} writes files and uses export internals: export files belong to io/export"
        )


def test_artifact_names_are_made_in_one_place():
    makers = [
        _rel(path)
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in ("safe_name", "artifact_name")
    ]
    assert makers and set(makers) == {"maskviewer/io/export/naming.py"}, makers


@pytest.mark.parametrize(("kind", "limit"), [("module", 520), ("class", 310), ("function", 65)])
def test_sizes_stay_readable(kind, limit):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from size_report import measure
    finally:
        sys.path.pop(0)
    modules, classes, functions = measure(PKG)
    rows = {"module": modules, "class": classes, "function": functions}[kind]
    too_big = sorted((size, name) for size, name in rows if size > limit)
    assert too_big == [], f"{kind}s over {limit} lines: split them by job"
