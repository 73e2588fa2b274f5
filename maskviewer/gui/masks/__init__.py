"""The masks tool: paint, load and save masks, feed them to the model, run the mask ablation."""


def install(window):
    from maskviewer.gui.masks.tool import install as _install

    return _install(window)
