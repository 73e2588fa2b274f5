"""The layers tool (being moved here from maskviewer.gui.layers_tool)."""

from maskviewer.gui.layers_tool import install  # noqa: F401
