"""The Patches tool: cut the image into patches, step through them, run them all, combine."""


def install(window):
    from maskviewer.gui.patches.tool import install as _install

    return _install(window)
