"""The Data set tool: a model scored on a whole data set, its rows browsed and opened."""


def install(window):
    from maskviewer.gui.dataset.tool import install as _install

    return _install(window)
