"""One layer tree: the Layers panel's tree is the one list of layers and where a layer is chosen.

Checked: the Model page lists no layers; nested models are rows with their layers as children
(as Keras nests them); a row picked drives the Layers view (the map is the layer's real output);
the columns fit a 380 px page; the selected layer stays in view; grid tiles carry their channel
numbers; the ablation table puts the largest effect first and sorts by a clicked column.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtWidgets import QApplication, QScrollArea, QTreeWidget

from maskviewer.core.mask_feed import AblationRow
from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo
from maskviewer.inference.probe import LayerEntry
from tests import model_zoo

PAGE = 380


@pytest.fixture
def image_file(tmp_path):
    from PIL import Image

    path = tmp_path / "picture.png"
    Image.fromarray(model_zoo.random_image(30, 36, 3, seed=5)).save(path)
    return path


def _wait_outcome(qtbot, tool, path, method):
    def done():
        o = tool.outcome
        return o is not None and o.request.path == path and o.request.method == method and (
            o.error or tool.overlay.isVisible())

    qtbot.waitUntil(done, timeout=30_000)
    return tool.outcome


def _resnet_like(n_blocks: int = 40) -> tuple[list[LayerEntry], ModelInfo]:
    """Entries and a model description with ResNet-like names, a nested backbone, and a head."""
    layers, entries = [], []
    inner = []
    for b in range(n_blocks):
        for name, c in ((f"conv{b // 10 + 2}_block{b % 10 + 1}_1_conv", 64), (f"conv{b // 10 + 2}_block{b % 10 + 1}_out", 256)):
            path = f"resnet50/{name}"
            inner.append(LayerInfo(name, path, "Conv2D", (None, 56, 56, c), params=c * 577))
            entries.append(LayerEntry(path, "Conv2D", (None, 56, 56, c), spatial=True))
    backbone = LayerInfo("resnet50", "resnet50", "Functional", (None, 7, 7, 2048), params=23_587_712, children=inner)
    entries.insert(0, LayerEntry("resnet50", "Functional", (None, 7, 7, 2048), spatial=True))
    head = LayerInfo("predictions", "predictions", "Dense", (None, 1000), params=2_049_000)
    layers = [backbone, head]
    entries.append(LayerEntry("predictions", "Dense", (None, 1000), spatial=False))
    info = ModelInfo(
        name="resnet_like", path="", kind="functional",
        inputs=[TensorInfo("input_layer_with_a_long_name", (None, 224, 224, 3))],
        outputs=[TensorInfo("predictions", (None, 1000))], layers=layers, total_params=25_636_712,
    )
    return entries, info


def _panel(qtbot, height=600, show=True):
    from maskviewer.gui.layers.model import LayersModel
    from maskviewer.gui.layers.panel import LayersPanel

    model = LayersModel()
    panel = LayersPanel(model)
    qtbot.addWidget(panel)
    panel.resize(PAGE, height)
    if show:
        panel.show()
    entries, info = _resnet_like()
    assert model.set_model(info)
    model.set_layers(entries, info)
    return panel, model, entries, info


def _fits(tree) -> None:
    """Every shown column lies inside the viewport, none cut below what its content needs."""
    header = tree.header()
    shown = [c for c in range(header.count()) if not header.isSectionHidden(c)]
    assert sum(header.sectionSize(c) for c in shown) <= tree.viewport().width()
    assert tree.horizontalScrollBar().maximum() == 0
    for c in shown:
        assert header.sectionSize(c) >= tree.sizeHintForColumn(c), (c, header.sectionSize(c))


# -- the real window ----------------------------------------------------------------------------


def test_one_tree_nested_children_and_a_picked_row_drives_the_view(
    qtbot, window, model_files, image_file, keras_mod
):
    from tests.conftest import wait_prediction

    win = window
    win.resize(1024, 700)
    win.show_panel("Layers")
    win.controller.open_image(image_file)
    win.controller.open_model(model_files["nested"])
    pred = wait_prediction(qtbot, win)
    tool = win.tools["layers"]
    qtbot.waitUntil(lambda: bool(tool.entries) and tool.panel.current_path() is not None, timeout=30_000)
    panel = tool.panel

    # one list of layers in the whole window: the Layers tree ("gap" is a layer of the model)
    lists = [t for t in win.findChildren(QTreeWidget) if t.findItems("gap", Qt.MatchFlag.MatchRecursive)]
    assert lists == [panel.layer_list]
    assert win.model_panel.findChildren(QTreeWidget) == [win.model_panel.io_tree]
    # the Model page points to it: its link brings the Layers page in front
    win.show_panel("Model")
    assert not win.docks["Layers"].isVisible()
    win.model_panel.summary.linkActivated.emit("layers")
    assert win.docks["Layers"].isVisible()

    # nested as Keras nests them
    model = keras_mod.saving.load_model(model_files["nested"], compile=False)
    tree = panel.layer_list
    top = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert top == [layer.name for layer in model.layers]
    backbone = panel.layer_tree.item("backbone")
    inner = model.get_layer("backbone")
    assert [backbone.child(i).text(0) for i in range(backbone.childCount())] == [la.name for la in inner.layers]
    assert panel.layer_tree.item("backbone/inner_conv").parent() is backbone

    # a row picked is the layer drawn: the mean of the inner layer's real output
    panel.set_method("mean")
    tree.setCurrentItem(panel.layer_tree.item("backbone/inner_conv"))
    assert tool.model.selected == "backbone/inner_conv"
    o = _wait_outcome(qtbot, tool, "backbone/inner_conv", "mean")
    x = pred.inputs["img"][None]
    ref = np.asarray(keras_mod.Model(inner.inputs, inner.get_layer("inner_conv").output)([x]))[0]
    np.testing.assert_allclose(o.maps.map, ref.mean(axis=-1), rtol=1e-5, atol=1e-6)
    # and the other way: a layer chosen elsewhere (a session, a demo) is the row selected
    tool.select_layer("gap")
    assert panel.layer_tree.selected_path() == "gap"
    tool.select_layer("backbone/inner_conv")

    # the channel grid's tiles carry the channels they show
    panel.set_method("grid")
    o = _wait_outcome(qtbot, tool, "backbone/inner_conv", "grid")
    qtbot.waitUntil(lambda: len(panel.grid.numbers.labels) == 4)
    assert [t for _x, _y, t in panel.grid.numbers.labels] == [str(int(c)) for c in o.maps.channels]

    # at 1024×700 the result (colour bar, ranking) is in view without scrolling the page
    qtbot.waitUntil(lambda: panel.isVisible())
    holder = panel.parentWidget()
    while holder is not None and not isinstance(holder, QScrollArea):
        holder = holder.parentWidget()
    assert holder is not None
    view = holder.viewport()
    for widget in (panel.colorbar, panel.ranking):
        top_left = widget.mapTo(view, QPoint(0, 0))
        assert 0 <= top_left.y() and top_left.y() + min(widget.height(), 60) <= view.height(), widget


# -- the panel alone ------------------------------------------------------------------------------


def test_columns_fit_a_380_px_page_and_type_and_params_are_at_hand(qtbot):
    panel, _model, entries, info = _panel(qtbot)
    tree, lt = panel.layer_list, panel.layer_tree
    qtbot.waitUntil(lambda: tree.viewport().width() > 0)
    assert [tree.headerItem().text(c) for c in range(3)] == ["Layer", "Output", "Shown as"]
    _fits(tree)
    row = lt.item("resnet50/conv2_block3_out")
    assert [row.text(c) for c in range(3)] == ["conv2_block3_out", "56×56×256", "map"]
    assert lt.item("predictions").text(2) == "bars"
    # type and parameter count: in the tooltip, and in columns the header's menu shows
    assert "Conv2D" in row.toolTip(0) and f"{256 * 577:,} parameters" in row.toolTip(0)
    menu = lt.column_menu()
    assert [a.text() for a in menu.actions()] == ["Type", "Params"]
    assert not any(a.isChecked() for a in menu.actions())
    menu.actions()[0].setChecked(True)
    lt.set_column_shown("Params", True)
    assert not tree.isColumnHidden(3) and not tree.isColumnHidden(4)
    assert (row.text(3), row.text(4)) == ("Conv2D", f"{256 * 577:,}")
    assert tree.header().sectionSize(0) > 0
    with pytest.raises(ValueError):
        lt.set_column_shown("Layer", False)


def test_the_selected_layer_stays_in_view(qtbot):
    # loaded while the page is not in front (laid out later): in view once shown
    panel, model, entries, info = _panel(qtbot, height=500, show=False)
    tree, lt = panel.layer_list, panel.layer_tree
    last = entries[-2].path  # the last spatial layer, far down the list
    assert model.selected == last  # the default: the last spatial layer

    def in_view(path):
        rect = tree.visualItemRect(lt.item(path))
        return rect.isValid() and tree.viewport().rect().contains(rect)

    panel.show()
    qtbot.waitUntil(lambda: in_view(last))
    # the tree made shorter (its splitter dragged): the row stays in view
    panel.splitter.setSizes([60, 440])
    qtbot.waitUntil(lambda: tree.viewport().height() < 80)
    assert in_view(last)
    panel.splitter.setSizes([250, 250])
    tree.scrollToTop()
    assert not in_view(last)
    model.select_layer(entries[1].path)
    qtbot.waitUntil(lambda: in_view(entries[1].path))
    model.select_layer(last)
    qtbot.waitUntil(lambda: in_view(last))
    # a reload (the same model read again) keeps the chosen row in view
    tree.scrollToTop()
    model.set_layers(entries, info)
    qtbot.waitUntil(lambda: in_view(model.selected))
    # the filter keeps matching rows, the models around them, and the selected one
    lt.filter.setText("block3_out")
    chosen = model.selected
    assert lt.visible_paths() == ["resnet50"] + [
        e.path for e in entries[1:] if "block3_out" in e.path or e.path == chosen]
    assert len(lt.visible_paths()) == 6 and lt.item("predictions").isHidden()
    lt.filter.setText("")
    assert len(lt.visible_paths()) == len(entries)


def test_model_panel_lists_no_layers_and_its_table_fits(qtbot):
    from maskviewer.gui.model_panel import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.resize(PAGE, 400)
    panel.show()
    _entries, info = _resnet_like(3)
    panel.set_model(info)
    assert panel.findChildren(QTreeWidget) == [panel.io_tree]
    assert "1 input, 1 output, 8 layers" in panel.summary.text()
    qtbot.waitUntil(lambda: panel.io_tree.viewport().width() > 0)
    tree = panel.io_tree
    header = tree.header()
    assert sum(header.sectionSize(c) for c in range(3)) <= tree.viewport().width()
    assert tree.horizontalScrollBar().maximum() == 0
    for c in (1, 2):  # shape and dtype whole; a long tensor name elides (its tooltip is whole)
        assert header.sectionSize(c) >= tree.sizeHintForColumn(c)
    assert tree.verticalScrollBar().maximum() == 0  # as tall as its rows
    panel.set_model(None)
    assert panel.io_tree.isHidden() and "Open Model" in panel.title.text()


def test_layers_and_model_pages_fit_the_narrowest_page(qtbot):
    from maskviewer.core.mapping import InputMapping
    from maskviewer.gui.mapping_panel import MappingPanel
    from maskviewer.gui.model_panel import ModelPanel

    narrowest = 260  # a page is never made narrower (gui/tool_pages.PAGE_MIN_WIDTH)
    layers, _model, _entries, info = _panel(qtbot)
    model_panel, mapping = ModelPanel(), MappingPanel()
    for w in (model_panel, mapping):
        qtbot.addWidget(w)
    model_panel.set_model(info)
    mapping.set_model(info, {"input_layer_with_a_long_name": InputMapping()})
    QApplication.processEvents()  # the layouts settle
    for w in (layers, model_panel, mapping):
        assert w.minimumSizeHint().width() <= narrowest, (type(w).__name__, w.minimumSizeHint())


def test_grid_tiles_show_their_channel_numbers(qtbot):
    from maskviewer.core.heatmap import channel_grid, colorize
    from maskviewer.gui.layers.widgets import GridView

    view = GridView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    maps = np.random.default_rng(0).random((9, 12, 12)).astype(np.float32)
    grid, layout = channel_grid(maps)
    rgba = colorize(np.nan_to_num(grid), "grey")
    channels = np.array([7, 3, 0, 8, 1, 2, 6, 5, 4])
    view.show_grid(rgba, None, layout, channels)
    view.view.autoRange(padding=0)
    assert [t for _x, _y, t in view.numbers.labels] == [str(c) for c in channels]
    assert view.numbers.labels[4][:2] == tuple(float(v) for v in layout.tile_origin(4))

    def picture():
        QApplication.processEvents()
        return view.grab().toImage()

    with_numbers = picture()
    view.numbers.hide()
    without = picture()
    assert with_numbers != without  # the digits are drawn
    view.numbers.show()
    # tiles too small on screen to hold a number: none drawn
    many = np.random.default_rng(1).random((400, 2, 2)).astype(np.float32)
    grid, layout = channel_grid(many)
    view.show_grid(colorize(np.nan_to_num(grid), "grey"), None, layout, np.arange(400))
    view.view.autoRange(padding=0)
    with_numbers = picture()
    view.numbers.hide()
    assert picture() == with_numbers
    assert not view.numbers.drawn(300 / (layout.cols * 3))
    assert view.numbers.boundingRect() == QRectF(0, 0, grid.shape[1], grid.shape[0])


def test_ablation_table_puts_the_largest_effect_first_and_sorts_by_a_clicked_column(qtbot):
    from maskviewer.gui.masks.panel import AblationPanel

    rng = np.random.default_rng(3)
    variants = ("painted", "zeros", "ones", "random", "inverted")
    values = rng.random((12, 5))
    values[9, 3] = 3.0  # class 9: the random mask moves it most
    rows = [AblationRow("probs", str(i), dict(zip(variants, map(float, v), strict=True))) for i, v in enumerate(values)]
    panel = AblationPanel()
    qtbot.addWidget(panel)
    panel.show_rows(rows, "summary")
    t = panel.table
    effect = np.abs(values[:, 1:] - values[:, :1]).max(axis=1)  # numpy, beside the panel's code
    expected = [str(i) for i in np.argsort(-effect, kind="stable")]
    assert [t.item(r, 1).text() for r in range(t.rowCount())] == expected
    assert expected[0] == "9" and t.columnCount() == 7
    # a click on "Entry" sorts by number (2 before 10), again the other way
    entry = t.horizontalHeader()
    qtbot.mouseClick(entry.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(entry.sectionViewportPosition(1) + 5, entry.height() // 2))
    got = [t.item(r, 1).text() for r in range(t.rowCount())]
    assert got in ([str(i) for i in range(12)], [str(i) for i in reversed(range(12))])
    # a variant column sorts by its Δ
    assert t.horizontalHeaderItem(5).text().startswith("Random")
    t.sortByColumn(5, Qt.SortOrder.AscendingOrder)
    deltas = values[:, 3] - values[:, 0]
    assert [t.item(r, 1).text() for r in range(t.rowCount())] == [str(i) for i in np.argsort(deltas, kind="stable")]
    t.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # "Painted": by value
    assert [t.item(r, 1).text() for r in range(t.rowCount())] == [str(i) for i in np.argsort(-values[:, 0], kind="stable")]


def test_the_optional_columns_are_remembered(qtbot, settings):
    from maskviewer.gui.app import create_window
    from maskviewer.gui.layers.tree import COLUMNS

    win = create_window(settings, start_backend=False)
    qtbot.addWidget(win)
    lt = win.tools["layers"].panel.layer_tree
    assert lt.tree.isColumnHidden(COLUMNS.index("Params"))
    lt.set_column_shown("Params", True)
    win.close()
    again = create_window(settings, start_backend=False)  # the next start: as it was left
    qtbot.addWidget(again)
    lt = again.tools["layers"].panel.layer_tree
    assert not lt.tree.isColumnHidden(COLUMNS.index("Params")) and lt.tree.isColumnHidden(COLUMNS.index("Type"))
    lt.set_column_shown("Params", False)
    again.close()
    third = create_window(settings, start_backend=False)
    qtbot.addWidget(third)
    assert third.tools["layers"].panel.layer_tree.tree.isColumnHidden(COLUMNS.index("Params"))
    third.close()
