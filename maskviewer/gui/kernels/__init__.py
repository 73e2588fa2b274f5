"""The kernels tool (being moved here from maskviewer.gui.kernel_tool)."""

from maskviewer.gui.kernel_tool import install  # noqa: F401
