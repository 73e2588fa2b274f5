"""Canvas modes in the real window: pan/zoom by default, painting only in a paint mode, Space to
pan, keys and the bar and the Masks panel in step, the brush outline, the empty canvas's hint."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from maskviewer.gui.mode_state import EDIT_MODES, MODES, PAN, CanvasModes, mode_for_key

# -- the Qt-free state ----------------------------------------------------------------------------


def test_mode_state_defaults_keys_and_space():
    modes = CanvasModes()
    seen, held = [], []
    modes.changed.connect(seen.append)
    modes.held_changed.connect(held.append)
    assert modes.mode == PAN and modes.panning and not modes.shows_brush
    modes.set_mode("brush")
    modes.set_mode("brush")  # the same mode again: no event
    assert seen == ["brush"] and not modes.panning and modes.shows_brush
    modes.hold(True)
    modes.hold(True)  # auto-repeat of a held key: no event
    assert modes.panning and not modes.shows_brush and modes.mode == "brush"
    modes.hold(False)
    assert held == [True, False] and not modes.panning and modes.mode == "brush"
    with pytest.raises(ValueError):
        modes.set_mode("spray")
    assert not modes.press_key("q") and modes.mode == "brush"
    assert modes.press_key("z") and modes.mode == PAN
    # napari-like letters, and the digits in the bar's order
    assert [mode_for_key(k) for k in "PEFROL"] == ["brush", "eraser", "fill", "rectangle", "ellipse", "lasso"]
    assert [mode_for_key(str(i + 1)) for i in range(len(MODES))] == [m.name for m in MODES]
    keys = [k for m in MODES for k in m.keys]
    assert len(keys) == len(set(keys))  # no key chooses two modes
    assert PAN not in EDIT_MODES and set(EDIT_MODES) == {m.name for m in MODES} - {PAN}
    for m in MODES:  # the tooltips name the keys
        assert all(k in m.tooltip() for k in m.keys)


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _discard_on_close(request):
    if "window" in request.fixturenames:
        request.getfixturevalue("window").tools["masks"].ask_unsaved = lambda: "discard"


@pytest.fixture
def image_path(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


def view_pos(win, x, y):
    """Viewport position of image point (x, y)."""
    return win.canvas.mapFromScene(win.canvas.view.mapViewToScene(QPointF(x, y)))


def image_point(win, pos):
    """The image point under viewport position ``pos``."""
    p = win.canvas.view.mapSceneToView(win.canvas.mapToScene(pos))
    return p.x(), p.y()


def drag(qtbot, win, start, end, steps=6):
    """A left drag from image point ``start`` to ``end``; returns the viewport positions."""
    vp = win.canvas.viewport()
    a, b = view_pos(win, *start), view_pos(win, *end)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=a)
    for i in range(1, steps + 1):
        t = i / steps
        qtbot.mouseMove(vp, QPoint(round(a.x() + (b.x() - a.x()) * t), round(a.y() + (b.y() - a.y()) * t)))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=b)
    return a, b


def masks_snapshot(tool):
    ms = tool.maskset
    return [(m.name, m.data.copy(), m.dirty) for m in ms.masks]


def assert_masks_untouched(tool, snapshot):
    ms = tool.maskset
    assert len(ms.masks) == len(snapshot)
    for m, (name, data, dirty) in zip(ms.masks, snapshot, strict=True):
        assert m.name == name and m.dirty == dirty
        np.testing.assert_array_equal(m.data, data)
    assert not tool.model.dirty_sets()


def open_image(qtbot, win, path):
    win.controller.open_image(path)
    qtbot.waitUntil(lambda: win.tools["masks"].maskset is not None, timeout=10_000)
    return win.tools["masks"]


# -- pan/zoom is the default; painting needs a paint mode --------------------------------------------


def test_drag_in_pan_mode_moves_the_view_and_no_mask(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    tool.add_mask("second")
    assert window.canvas.modes.mode == PAN and tool.tool == PAN
    assert tool.mode_bar.actions[PAN].isChecked()
    before = masks_snapshot(tool)
    assert not any(dirty for _n, _d, dirty in before)
    x_range = window.canvas.view.viewRange()[0]
    vp = window.canvas.viewport()
    assert vp.cursor().shape() == Qt.CursorShape.OpenHandCursor
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=view_pos(window, 10.0, 10.0))
    assert vp.cursor().shape() == Qt.CursorShape.ClosedHandCursor  # the image is grabbed
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=view_pos(window, 10.0, 10.0))
    assert vp.cursor().shape() == Qt.CursorShape.OpenHandCursor
    _a, b = drag(qtbot, window, (10.0, 10.0), (30.0, 25.0))
    # the image followed the mouse: under the release lies the point that was pressed
    assert window.canvas.view.viewRange()[0][0] == pytest.approx(x_range[0] - 20.0, abs=0.5)
    x, y = image_point(window, b)
    assert x == pytest.approx(10.0, abs=0.5) and y == pytest.approx(10.0, abs=0.5)
    assert_masks_untouched(tool, before)
    assert "•" not in tool.panel.mask_list.item(0).text()
    assert not tool.cursor.isVisible()


def test_the_same_drag_paints_only_in_paint_mode(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    tool.mode_bar.actions["brush"].trigger()
    assert tool.tool == "brush" and window.canvas.modes.mode == "brush"
    rng = window.canvas.view.viewRange()
    drag(qtbot, window, (10.0, 10.0), (30.0, 25.0))
    mask = tool.current_mask()
    assert mask[10, 10] == 1.0 and mask[24, 29] == 1.0 and mask[0, 47] == 0.0
    assert tool.maskset.active.dirty and tool.model.dirty_sets()
    np.testing.assert_allclose(window.canvas.view.viewRange(), rng)  # the view stayed


def test_space_held_pans_in_paint_mode_and_its_release_returns(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    canvas = window.canvas
    tool.mode_bar.actions["eraser"].trigger()
    tool.mode_bar.actions["brush"].trigger()
    assert QApplication.focusWidget() in (canvas, None)  # choosing a mode gives the image the keys
    before = masks_snapshot(tool)
    x0 = canvas.view.viewRange()[0][0]
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    assert canvas.modes.panning and canvas.viewport().cursor().shape() == Qt.CursorShape.OpenHandCursor
    drag(qtbot, window, (20.0, 20.0), (5.0, 12.0))
    assert_masks_untouched(tool, before)
    assert canvas.view.viewRange()[0][0] == pytest.approx(x0 + 15.0, abs=0.5)
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert tool.tool == "brush" and not canvas.modes.panning
    assert canvas.viewport().cursor().shape() == Qt.CursorShape.CrossCursor
    drag(qtbot, window, (20.0, 20.0), (30.0, 20.0))  # painting again
    assert tool.current_mask()[20, 25] == 1.0


def test_wheel_zooms_in_a_paint_mode(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    tool.mode_bar.actions["fill"].trigger()
    vp = window.canvas.viewport()
    width = np.diff(window.canvas.view.viewRange()[0])[0]
    pos = QPointF(view_pos(window, 24.0, 20.0))
    event = QWheelEvent(pos, QPointF(vp.mapToGlobal(pos.toPoint())), QPoint(), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, event)
    assert np.diff(window.canvas.view.viewRange()[0])[0] < 0.9 * width
    assert not tool.current_mask().any()


# -- the keys, the bar and the Masks panel choose one mode -----------------------------------------


def test_keys_bar_and_panel_stay_in_step(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    bar, panel = tool.mode_bar, tool.panel
    for key, name in ((Qt.Key.Key_P, "brush"), (Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"),
                      (Qt.Key.Key_R, "rectangle"), (Qt.Key.Key_O, "ellipse"), (Qt.Key.Key_L, "lasso"),
                      (Qt.Key.Key_Z, PAN), (Qt.Key.Key_2, "brush"), (Qt.Key.Key_1, PAN)):
        qtbot.keyClick(window, key)
        assert tool.tool == name and window.canvas.modes.mode == name
        assert bar.actions[name].isChecked() and panel.tool_buttons[name].isChecked()
    panel.tool_buttons["ellipse"].click()
    assert window.canvas.modes.mode == "ellipse" and bar.actions["ellipse"].isChecked()
    bar.actions[PAN].trigger()
    assert tool.tool == PAN and panel.tool_buttons[PAN].isChecked()
    # the brush size: the bar, the panel and [ ] are one setting
    bar.size.setValue(13)
    assert tool.brush.radius == 6.5 and panel.size.value() == 13
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert bar.size.value() == panel.size.value() > 13
    # every mode's keys are shown in its tooltip
    for m in MODES:
        assert m.key in bar.actions[m.name].toolTip()


def test_brush_outline_follows_the_mouse_and_the_zoom(qtbot, window, image_path):
    tool = open_image(qtbot, window, image_path)
    canvas, vp = window.canvas, window.canvas.viewport()
    qtbot.mouseMove(vp, view_pos(window, 20.5, 20.5))
    assert not tool.cursor.isVisible()  # pan/zoom: no outline
    qtbot.keyClick(window, Qt.Key.Key_P)
    tool.mode_bar.size.setValue(10)
    qtbot.mouseMove(vp, view_pos(window, 19.5, 20.5))  # (a move to the same place is no move)
    assert tool.cursor.isVisible() and tool.cursor.rect().width() == pytest.approx(10.0)
    on_screen = canvas.mapFromScene(tool.cursor.mapToScene(tool.cursor.rect())).boundingRect().width()
    canvas.view.scaleBy((0.5, 0.5))  # zoom in twice
    qtbot.mouseMove(vp, view_pos(window, 21.5, 20.5))
    zoomed = canvas.mapFromScene(tool.cursor.mapToScene(tool.cursor.rect())).boundingRect().width()
    assert zoomed == pytest.approx(2 * on_screen, rel=0.05)
    assert tool.cursor.rect().center().x() == pytest.approx(21.5, abs=0.6)
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    assert not tool.cursor.isVisible()
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    qtbot.keyClick(window, Qt.Key.Key_F)  # fill: a cross, no outline
    qtbot.mouseMove(vp, view_pos(window, 22.5, 20.5))
    assert not tool.cursor.isVisible()


# -- the empty canvas says how to start ------------------------------------------------------------


def test_empty_canvas_shows_how_to_start(qtbot, window, image_path):
    hint = window.canvas.empty_hint
    assert hint.isVisible()
    text = hint.text()
    # it names the real menu entries and the shortcut of File → Open Image…
    open_action = next(a for a in window.file_menu.actions() if a.text().replace("&", "") == "Open Image…")
    assert "File → Open Image…" in text and open_action.shortcut().toString() in text
    assert any(a.text().replace("&", "") == "Demos…" for a in window.help_menu.actions())
    assert "Help → Demos…" in text and "drop" in text
    # centred over the canvas
    canvas_centre = window.canvas.rect().center()
    assert abs(hint.geometry().center().x() - canvas_centre.x()) <= 2
    assert abs(hint.geometry().center().y() - canvas_centre.y()) <= 2
    open_image(qtbot, window, image_path)
    assert not hint.isVisible()
    window.state.set_image(None)  # no image again: the hint is back
    assert hint.isVisible()


def test_the_bar_shows_the_mask_painted_on(qtbot, window, image_path):
    bar = window.tools["masks"].mode_bar
    chip = window.findChild(type(bar._extra[0]), "active_mask_button")
    assert chip is not None and not chip.isVisible()  # no image: nothing to paint on
    tool = open_image(qtbot, window, image_path)
    assert chip.isVisible() and chip.toolTip().startswith("Painting on mask 'mask'")
    tool.add_mask("tumour")
    assert "'tumour'" in chip.toolTip()
    chip.menu().aboutToShow.emit()
    names = [a.text() for a in chip.menu().actions()]
    assert names == ["mask", "tumour"]
    chip.menu().actions()[0].trigger()  # paint on the first mask again
    assert tool.maskset.active.name == "mask" and "'mask'" in chip.toolTip()
    tool.mode_bar.actions["brush"].trigger()
    drag(qtbot, window, (10.0, 10.0), (20.0, 10.0))
    assert tool.maskset.get("mask").data.any() and not tool.maskset.get("tumour").data.any()


def _shown_modes(bar):
    """The modes whose buttons are on the bar (not in its overflow menu) and not cut off."""
    shown = []
    for m in MODES:
        button = bar.toolbar.widgetForAction(bar.actions[m.name])
        if button is not None and button.isVisible():
            right = button.mapTo(bar, button.rect().topRight()).x()
            if right <= bar.width():
                shown.append(m.name)
    return shown


@pytest.mark.parametrize("width", [1200, 700, 470])
def test_the_bar_keeps_every_mode_in_view_when_narrow(qtbot, width):
    from maskviewer.gui.canvas_modes import ModeBar

    bar = ModeBar(CanvasModes())
    qtbot.addWidget(bar)
    bar.resize(width, 40)
    bar.show()
    qtbot.waitUntil(lambda: bar.width() == width)
    qtbot.waitUntil(lambda: _shown_modes(bar) == [m.name for m in MODES], timeout=3000)
    size_right = bar.size.mapTo(bar, bar.size.rect().topRight()).x()
    assert size_right <= width
    keys_on_buttons = all(bar.actions[m.name].iconText().endswith(f"  {m.key}") for m in MODES)
    if width >= 1200:
        assert keys_on_buttons and bar.hint.isVisible() and bar.size.prefix() == "Brush "
    if width < 500:  # short names, the brush size without its word
        assert not keys_on_buttons and not bar.hint.isVisible() and bar.size.prefix() == ""


def test_the_bar_at_1024_by_700(qtbot, window, image_path):
    window.resize(1024, 700)
    open_image(qtbot, window, image_path)
    bar = window.tools["masks"].mode_bar
    qtbot.waitUntil(lambda: bar.width() < 700)
    # once laid out, every mode's button is on the bar, none in the overflow menu
    qtbot.waitUntil(lambda: _shown_modes(bar) == [m.name for m in MODES], timeout=3000)
    chip = bar._extra[0]
    assert chip.isVisible() and chip.mapTo(bar, chip.rect().topRight()).x() <= bar.width()


def test_space_pans_while_the_pointer_is_over_the_image_whatever_has_the_keys(qtbot, window, image_path):
    from PySide6.QtCore import QEvent

    tool = open_image(qtbot, window, image_path)
    canvas = window.canvas
    tool.mode_bar.actions["brush"].trigger()
    ds = window.tools["dataset"].panel
    window.show_panel("Data set")
    box, line = ds.ablation, window.tools["layers"].panel.layer_tree.filter
    window.activateWindow()
    box.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is box)
    QApplication.sendEvent(canvas, QEvent(QEvent.Type.Enter))  # the pointer over the image
    ticked = box.isChecked()
    qtbot.keyPress(box, Qt.Key.Key_Space)
    assert canvas.modes.panning and box.isChecked() == ticked  # the image pans; the box is left alone
    x0 = canvas.view.viewRange()[0][0]
    drag(qtbot, window, (20.0, 20.0), (5.0, 12.0))
    assert canvas.view.viewRange()[0][0] == pytest.approx(x0 + 15.0, abs=0.5)
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)  # the canvas holds the keys until the release
    assert not canvas.modes.panning and tool.tool == "brush"
    # a text field keeps its spaces, pointer over the image or not
    window.show_panel("Layers")
    line.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is line)
    qtbot.keyClick(line, Qt.Key.Key_Space)
    assert line.text() == " " and not canvas.modes.panning
    line.clear()
    # the pointer elsewhere: Space is the focused widget's again
    QApplication.sendEvent(canvas, QEvent(QEvent.Type.Leave))
    window.show_panel("Data set")
    box.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is box)
    qtbot.keyClick(box, Qt.Key.Key_Space)
    assert box.isChecked() != ticked and not canvas.modes.panning
