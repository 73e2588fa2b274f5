"""The Compare tool: attribution methods side by side, scored for faithfulness and sanity."""


def install(window):
    from maskviewer.gui.compare.tool import install as _install

    return _install(window)
