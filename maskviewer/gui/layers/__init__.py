"""The Layers tool: activation maps, attention maps and Grad-CAM of a layer over the image."""


def install(window):
    from maskviewer.gui.layers.tool import install as _install

    return _install(window)
