"""The masks tool (being moved here from maskviewer.gui.mask_tool)."""

from maskviewer.gui.mask_tool import install  # noqa: F401
