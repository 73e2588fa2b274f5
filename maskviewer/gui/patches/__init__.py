"""The patches tool (being moved here from maskviewer.gui.patch_tool)."""

from maskviewer.gui.patch_tool import install  # noqa: F401
