"""The tools the main window installs: one module per feature, each with ``install(window)``.

A tool module owns its panel(s), canvas overlays and controller logic; ``install`` adds its
docks with ``window.add_panel``, its overlays with ``window.canvas.add_overlay``, its menu
actions, and returns the tool object, kept as ``window.tools[name]``.
"""

from __future__ import annotations

import importlib

#: (name, module) in installation order
TOOL_MODULES: list[tuple[str, str]] = [
    ("layers", "maskviewer.gui.layers"),
    ("masks", "maskviewer.gui.masks"),
    ("kernels", "maskviewer.gui.kernels"),
    ("patches", "maskviewer.gui.patches"),
    ("binarise", "maskviewer.gui.binarise"),
    ("compare", "maskviewer.gui.compare"),
    ("attention", "maskviewer.gui.attention"),
    ("dataset", "maskviewer.gui.dataset"),
    ("result", "maskviewer.gui.result_bar"),
    ("demos", "maskviewer.gui.demo_gallery"),
    ("export", "maskviewer.gui.export_tool"),
    ("session", "maskviewer.gui.session_tool"),
]


def install_tools(window) -> dict:
    tools: dict = {}
    window.tools = tools  # a tool may find those installed before it
    for name, module in TOOL_MODULES:
        tools[name] = importlib.import_module(module).install(window)
    return tools
