"""The Kernels tool: view a Conv2D layer's kernels and mask them in a copy of the model."""


def install(window):
    from maskviewer.gui.kernels.tool import install as _install

    return _install(window)
