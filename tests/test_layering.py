"""The layering rules: core is numpy-only, and nothing but inference imports TensorFlow (lazily)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import maskviewer.core

CORE_MODULES = sorted(
    f"maskviewer.core.{m.name}" for m in pkgutil.iter_modules(maskviewer.core.__path__)
)


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(out.split())


def _heavy(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in ("PySide6", "tensorflow", "keras", "jax", "pyqtgraph")}


def test_core_imports_neither_qt_nor_tensorflow():
    assert CORE_MODULES, "no core modules found"
    mods = _imported_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert set(CORE_MODULES) <= mods
    assert _heavy(mods) == set()


def test_inference_and_io_packages_import_no_backend_until_used():
    code = "\n".join(
        [
            "import maskviewer.inference.loading, maskviewer.inference.runner",
            "import maskviewer.inference.backend",
            "import maskviewer.io.images, maskviewer.cli, maskviewer.demo",
        ]
    )
    mods = _imported_after(code)
    assert not {m for m in mods if m.split(".")[0] in ("tensorflow", "keras", "PySide6")}


def test_window_with_every_tool_shows_before_tensorflow_is_imported():
    code = "\n".join(
        [
            "import os, tempfile",
            "os.environ['QT_QPA_PLATFORM'] = 'offscreen'",
            "from PySide6.QtCore import QSettings",
            "from PySide6.QtWidgets import QApplication",
            "from maskviewer.gui.app import create_window",
            "from maskviewer.gui.tools import TOOL_MODULES",
            "app = QApplication([])",
            "ini = os.path.join(tempfile.mkdtemp(), 's.ini')",
            "w = create_window(QSettings(ini, QSettings.Format.IniFormat), start_backend=False)",
            "w.show(); app.processEvents()",
            "assert set(w.tools) == {name for name, _ in TOOL_MODULES}, w.tools",
            "w.close()",
        ]
    )
    mods = _imported_after(code)
    assert "PySide6" in mods and "maskviewer.gui.layers" in mods
    assert not {m for m in mods if m.split(".")[0] in ("tensorflow", "keras")}
