"""The window's layout: the image keeps its room, every tool's name is whole, one page in view."""

from __future__ import annotations

import pytest

from tests.conftest import wait_prediction


def _settle(qtbot, window, size):
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() == size[0], timeout=5_000)
    qtbot.wait(50)  # the dock layout follows the resize on the next pass


@pytest.mark.parametrize(("size", "share"), [((1024, 700), 0.45), ((1280, 800), 0.55)])
def test_canvas_keeps_its_share_of_the_width(qtbot, window, size, share):
    from maskviewer.gui.demo_gallery import open_demo

    open_demo(window, "counting")  # a model with three inputs: the tallest pages
    wait_prediction(qtbot, window, timeout=60_000)
    for title in list(window.tool_pages.pages):
        window.show_panel(title)
        _settle(qtbot, window, size)
        got = window.canvas.width() / window.width()
        assert got >= share, f"{title} page in front at {size}: canvas {got:.2f} of the width"


def test_every_tool_name_is_whole_in_the_selector(qtbot, window):
    from PySide6.QtWidgets import QToolButton

    _settle(qtbot, window, (1024, 700))
    pages = window.tool_pages
    assert {"Model", "Predictions", "Layers", "Masks", "Kernels", "Patches", "Binarise"} <= set(pages.pages)
    for title, page in pages.pages.items():
        button = pages.selector.widgetForAction(page.action)
        assert isinstance(button, QToolButton) and button.text() == title
        needed = button.fontMetrics().horizontalAdvance(title)
        assert button.isVisible() and button.width() >= needed, f"{title!r} clipped: {button.width()} < {needed}"
        assert button.geometry().bottom() <= pages.selector.height(), f"{title!r} below the column"


def test_one_page_in_front_follows_the_selector_and_keys(qtbot, window):
    pages = window.tool_pages
    seen = []
    pages.page_changed.connect(seen.append)
    layers, masks = window.docks["Layers"], window.docks["Masks"]
    window.show_panel("Layers")
    assert layers.isVisible() and not masks.isVisible()
    masks.toggleViewAction().trigger()  # the selector's button and View → Panels share it
    assert masks.isVisible() and not layers.isVisible()
    assert window.tool_pages.dock.windowTitle() == "Masks"
    assert seen[-2:] == ["Layers", "Masks"]
    shortcut = layers.toggleViewAction().shortcut().toString()
    assert shortcut.startswith("Ctrl+")
    # closing the column and asking for a page brings it back
    pages.dock.close()
    assert not layers.isVisible()
    window.show_panel("Layers")
    assert layers.isVisible()


def test_overlays_show_only_with_their_page(qtbot, window):
    import pyqtgraph as pg

    item = pg.ImageItem()
    window.add_panel_overlay("Patches", item)
    window.show_panel("Patches")
    assert item.parentItem().isVisible()
    window.show_panel("Layers")
    assert not item.parentItem().isVisible()
    window.show_panel("Patches")
    assert item.parentItem().isVisible()
