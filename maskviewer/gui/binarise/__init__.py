"""The binarise tool (being moved here from maskviewer.gui.binarise_tool)."""

from maskviewer.gui.binarise_tool import install  # noqa: F401
