"""The Binarise tool: threshold an image-shaped output, score it against a reference, export."""


def install(window):
    from maskviewer.gui.binarise.tool import install as _install

    return _install(window)
