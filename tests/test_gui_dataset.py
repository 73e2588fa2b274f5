"""The Data set page in the real window: a folder of digit PNGs scored on the worker (accuracy
equal to the headless evaluator's and to plain Keras, a corrupt image failing its row only,
reopening reusing the saved table), rows opening their image and mask, sorting by Dice putting
the worst first, Cancel keeping the rows done; the table's rules Qt-free."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from maskviewer.io.images import save_image

#: the first 16 held-out digits and 4 the model gets wrong
SOME_DIGITS = [*range(16), 21, 77, 140, 171]


def _digits(which=SOME_DIGITS):
    from maskviewer.demo import get_demo

    demo = get_demo("digits")
    x = np.load(demo.path("digits_test_x.npy"))[which]
    y = np.load(demo.path("digits_test_y.npy"))[which].astype(int)
    return demo, x, y


def _folder(tmp_path, x, y, broken=True):
    data = tmp_path / "data"
    keys = []
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        save_image(data / str(label) / f"d{i:02d}.png", np.asarray(img, np.uint8).reshape(28, 28))
        keys.append(f"{label}/d{i:02d}.png")
    if broken:
        (data / "9").mkdir(exist_ok=True)
        (data / "9" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    return data, keys


def _plain(model_path, x):
    import keras

    model = keras.saving.load_model(str(model_path))
    out = model(np.asarray(x, np.float32), training=False)
    return np.asarray(out)


def _open_demo(qtbot, window, name):
    from maskviewer.gui.demo_gallery import open_demo

    demo = open_demo(window, name)
    qtbot.waitUntil(lambda: window.state.model_info is not None and window.state.prediction is not None, timeout=60_000)
    return demo


def _run_done(qtbot, tool, open_path=None, start=True, timeout=120_000):
    """Open ``open_path`` (which runs it), or run the open data set again (``start``); wait
    for the end of the run."""
    if open_path is not None:
        tool.outcome = None
        tool.open(open_path)
    elif start:
        tool.outcome = None
        assert tool.run() is not None
    qtbot.waitUntil(lambda: tool.outcome is not None and not tool.jobs.is_running(), timeout=timeout)
    qtbot.waitUntil(lambda: not tool.timer.isActive() or not tool.sink.take(), timeout=10_000)
    return tool.outcome


def test_folder_run_equals_headless_and_plain_keras_reopen_reuses_and_a_row_opens(qtbot, window, tmp_path):
    from maskviewer.cli import main
    from maskviewer.core.evaluation import aggregate
    from maskviewer.io.results_table import read_table

    demo, x, y = _digits()
    data, keys = _folder(tmp_path, x, y)
    _open_demo(qtbot, window, "digits")
    tool = window.tools["dataset"]
    tool.app_dir = tmp_path / "app"
    from maskviewer.gui.dialogs import ScriptedDialogs

    window.dialogs = ScriptedDialogs(str(data))
    tool.outcome = None
    tool.open_action.trigger()  # File → Open Data Set Folder…: opened, then run (a model is loaded)
    assert window.dialogs.asked == [("folder", "Open Data Set Folder")]
    out = _run_done(qtbot, tool, start=False)
    rows = {r["key"]: r for r in tool.table.rows}
    assert len(rows) == 21 and out.scored == 21 and out.reused == 0
    assert [k for k, r in rows.items() if r.get("error_message")] == ["9/broken.png"]  # fails its row only

    # the page's accuracy is the headless evaluator's, and plain Keras's
    # (the window has the demo's labels; the folders alone would name only the classes present)
    assert main(["evaluate", str(data), "--model", str(demo.path(demo.model)), "--out", str(tmp_path / "cli.csv"),
                 "--labels", str(demo.path(demo.labels)), "--quiet"]) == 1  # one failed entry
    cli_rows, _meta = read_table(tmp_path / "cli.csv")
    headless = aggregate(cli_rows, 10)["classes"]
    shown = tool.table.summary["classes"]
    assert shown["accuracy"] == headless["accuracy"] and shown["confusion"] == headless["confusion"]
    p = _plain(demo.path(demo.model), x / 255.0)
    assert shown["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12)
    assert [rows[k]["pred"] for k in keys] == p.argmax(1).tolist() and 0.5 < shown["accuracy"] < 1
    assert "Accuracy" in tool.panel.aggregates.text.text() and not tool.panel.aggregates.empty.is_empty()
    assert (data / ".maskviewer-results.csv").exists()  # saved beside the data set

    # a click on a row opens that image in the views
    tool.table.sort_by("key")
    from PySide6.QtCore import Qt

    first = tool.table.view_row(0)["key"]
    tool.poll()
    qtbot.waitUntil(lambda: tool.thumbs.get(first) is not None, timeout=10_000)  # read off the GUI thread
    thumb = tool.panel.adapter.data(tool.panel.adapter.index(0, 0), Qt.ItemDataRole.DecorationRole)
    assert thumb is not None and (thumb.width(), thumb.height()) == (28, 28)  # small pictures stay as they are
    target = 5
    key = tool.table.view_row(target)["key"]
    tool.panel.view.clicked.emit(tool.panel.adapter.index(target, 1))
    assert window.state.image.path.endswith(key)
    want = x[keys.index(key)].reshape(28, 28)
    np.testing.assert_array_equal(window.state.image.array[..., 0], want)
    shown = np.asarray(window.canvas.image_item.image)
    np.testing.assert_array_equal(shown.reshape(28, 28, -1)[..., 0], want)  # the canvas draws it
    # J opens the next row of the view
    tool.next_action.trigger()
    assert window.state.image.path.endswith(tool.table.view_row(target + 1)["key"])

    # reopening uses the saved table: only the failed entry and a changed file run again
    save_image(data / keys[0], np.zeros((28, 28), np.uint8))
    out = _run_done(qtbot, tool, data)
    assert (out.reused, out.scored) == (19, 2)
    assert len(tool.table.rows) == 21
    out = _run_done(qtbot, tool, data)
    assert (out.reused, out.scored) == (20, 1)


def test_array_rows_open_with_their_mask_and_the_ablation_fills_its_column(qtbot, window, tmp_path):
    _open_demo(qtbot, window, "mask_channel")
    tool = window.tools["dataset"]
    tool.app_dir = tmp_path
    tool.panel.ablation.setChecked(True)
    qtbot.waitUntil(lambda: window.tools["masks"].feed().mode == "channel", timeout=10_000)
    tool.batch_size = 64
    out = _run_done(qtbot, tool, "demo:mask_channel", timeout=240_000)
    assert out.scored == 400 and "ablation" in tool.table.columns()
    ab = tool.table.summary["ablation"]
    assert ab["mask"]["accuracy"] > 0.9 > 0.3 > ab["random"]["accuracy"]  # the answer comes from the mask
    assert "ablation" in tool.table.filters()
    tool.table.set_filter("ablation")
    assert tool.table.sort_key == "ablation" and 0 < len(tool.table.view) < 400
    # the row opens its picture and its mask (the array's two channels)
    data = np.load(window.tools["demos"].demo.path("mask_channel/heldout.npz"))["x"]
    key = tool.step(1)
    i = int(key.split("[")[1].rstrip("]"))
    np.testing.assert_array_equal(window.state.image.array[..., 0], data[i, ..., 0])
    mask = window.tools["masks"].current_mask()
    np.testing.assert_allclose(mask, data[i, ..., 1] / 255.0, atol=1e-6)
    assert not window.tools["masks"].model.dirty_sets()  # the data set's mask: nothing to save on closing
    window.tools["masks"].ask_unsaved = lambda: "discard"
    qtbot.waitUntil(lambda: window.state.prediction is not None, timeout=30_000)
    row = tool.table.row(key)
    fed = window.state.prediction.inputs
    assert np.asarray(next(iter(fed.values())))[..., 1].max() > 0  # the mask reached the model
    pred = int(np.argmax(next(iter(window.state.prediction.outputs.values()))))
    assert pred == row["pred"]


def test_sorting_by_dice_puts_the_worst_first_and_opens_it_with_its_reference(qtbot, window, tmp_path):
    from maskviewer.io.dataset import PictureReader, demo_dataset

    demo = _open_demo(qtbot, window, "binary")
    tool = window.tools["dataset"]
    tool.app_dir = tmp_path
    out = _run_done(qtbot, tool, "demo:binary", timeout=240_000)
    assert out.scored == 39 and "dice" in tool.table.columns()
    header = tool.panel.view.horizontalHeader()
    header.sectionClicked.emit(6)  # the Dice column: worst first
    dice = [tool.table.view_row(i)["dice"] for i in range(len(tool.table.view))]
    assert dice == sorted(dice) and len(dice) == 39
    shown = tool.panel.adapter.data(tool.panel.adapter.index(0, 6))
    assert shown == f"{dice[0]:.3f}"
    # the worst row's Dice, from plain Keras and numpy
    worst = tool.table.view_row(0)["key"]
    entry = next(e for e in demo_dataset(demo).entries if e.key == worst)
    reader = PictureReader()
    x = reader.picture(entry.image).as_unit_float()[None]
    ref = reader.reference(entry.reference)
    import keras

    p = np.asarray(keras.saving.load_model(str(demo.path(demo.model)))(x, training=False)["mark"])[0, ..., 0]
    b = p > tool.table.view_row(0)["threshold"]
    want = (2 * np.sum(b & ref) + 1e-7) / (b.sum() + ref.sum() + 1e-7)
    assert dice[0] == pytest.approx(want, abs=1e-4)
    # a click opens the worst image with its reference in the Binarise tool
    tool.panel.view.clicked.emit(tool.panel.adapter.index(0, 1))
    np.testing.assert_allclose(window.state.image.as_unit_float(), x[0])
    np.testing.assert_array_equal(window.tools["binarise"].reference, ref)
    header.sectionClicked.emit(6)  # again: best first
    assert tool.table.view_row(0)["dice"] == max(dice)
    b = tool.table.summary["binary"]
    assert tool.panel.aggregates.best.data["x"][0] == b["best_threshold"]
    # Dice follows the Binarise threshold: at 0.30 the worst image's Dice is plain Keras's there
    binarise = window.tools["binarise"].model
    run_t = tool.table.view_row(0)["threshold"]
    binarise.set_threshold(0.3, "spin")
    qtbot.waitUntil(lambda: "dice_at" in tool.table.row(worst), timeout=5_000)
    row = tool.table.row(worst)
    b3 = p > 0.3
    assert row["dice_at"] == pytest.approx((2 * np.sum(b3 & ref) + 1e-7) / (b3.sum() + ref.sum() + 1e-7), abs=1e-4)
    assert row["iou_at"] == pytest.approx(row["dice_at"] / (2 - row["dice_at"]))
    assert tool.table.title("dice") == "Dice @0.30" and "0.30" in tool.panel.aggregates.text.text()
    column = [tool.table.view_row(i)["dice_at"] for i in range(len(tool.table.view))]
    assert column == sorted(column, reverse=True)  # still best first, by the Dice shown
    assert tool.panel.adapter.data(tool.panel.adapter.index(0, 6)) == f"{column[0]:.3f}"
    binarise.set_threshold(0.305, "spin")  # between the curve's samples: said so
    qtbot.waitUntil(lambda: tool.table.title("dice") == "Dice @0.30≈", timeout=5_000)
    assert "nearest" in tool.table.tip("dice")
    binarise.set_invert(True)  # the other side: the curves do not say, the run's numbers stay
    qtbot.waitUntil(lambda: tool.table.title("dice") == "Dice", timeout=5_000)
    assert "dice_at" not in tool.table.row(worst)
    binarise.set_invert(False)
    binarise.set_threshold(run_t, "spin")
    qtbot.waitUntil(lambda: not tool.follow_timer.isActive(), timeout=5_000)
    assert "dice_at" not in tool.table.row(worst)


def test_cancel_stops_the_run_and_keeps_the_rows_done(qtbot, window, tmp_path, monkeypatch):
    from maskviewer.cli import evaluate_run

    demo, x, y = _digits(list(range(40)))
    data, _keys = _folder(tmp_path, x, y, broken=False)
    _open_demo(qtbot, window, "digits")
    tool = window.tools["dataset"]
    tool.app_dir = tmp_path
    tool.batch_size = 4
    gate = threading.Event()
    seen = []
    prepare = evaluate_run.Preparer.prepare_many

    # the batch read after the first rows are out waits until the test has pressed Cancel
    hold_after = (evaluate_run.AHEAD + evaluate_run.MODEL_AHEAD) * tool.batch_size

    def held(self, entries, images=None):
        seen.extend(e.key for e in entries)
        if len(seen) > hold_after:
            gate.wait(30)
        return prepare(self, entries, images)

    monkeypatch.setattr(evaluate_run.Preparer, "prepare_many", held)
    with qtbot.waitSignal(tool.jobs.progress, timeout=60_000, check_params_cb=lambda kind, done, total: done >= 4):
        tool.open(data)
    assert tool.panel.cancel.isEnabled()
    with qtbot.waitSignal(tool.jobs.cancelled, timeout=10_000):
        tool.panel.cancel.click()
    gate.set()
    qtbot.waitUntil(lambda: not window.controller.worker.busy(), timeout=30_000)
    qtbot.waitUntil(lambda: (data / ".maskviewer-results.csv").exists(), timeout=10_000)
    tool.poll()
    done = len(tool.table.rows)
    assert 4 <= done < 40 and "Cancelled" in tool.panel.message.text()
    assert tool.panel.run.isEnabled() and not tool.panel.cancel.isEnabled()
    monkeypatch.setattr(evaluate_run.Preparer, "prepare_many", prepare)
    out = _run_done(qtbot, tool)  # Run goes on from the rows done
    assert out.reused + out.scored == 40 and out.reused >= done


# -- the table's rules, without Qt ----------------------------------------------------------------


def _rows():
    return [
        {"key": "a", "pred": 1, "confidence": 0.9, "truth": 1, "correct": 1, "loss": 0.1, "dice": 0.8},
        {"key": "b", "pred": 0, "confidence": 0.6, "truth": 1, "correct": 0, "loss": 0.9, "dice": 0.2},
        {"key": "c", "error_message": "broken"},
        {"key": "d", "pred": 1, "confidence": 0.7, "truth": 1, "correct": 1, "loss": 0.36, "dice": 0.5},
    ]


def test_table_sorts_worst_first_with_missing_values_last_and_filters():
    from maskviewer.gui.dataset.model import DatasetTable, cell_text

    t = DatasetTable()
    t.set_classes(["cat", "dog"])
    t.add_rows(_rows())
    t.sort_by("dice")
    assert [t.view_row(i)["key"] for i in range(4)] == ["b", "d", "a", "c"]
    t.sort_by("dice")  # again: reversed, the failed row still last
    assert [t.view_row(i)["key"] for i in range(4)] == ["a", "d", "b", "c"]
    t.sort_by("loss")
    assert [t.view_row(i)["key"] for i in range(3)] == ["b", "d", "a"]
    assert cell_text(t.view_row(0), "prediction", t.classes) == "cat (60%)"
    assert cell_text(t.view_row(0), "truth", t.classes) == "dog" and cell_text(t.view_row(0), "correct", None) == "✗"
    t.set_filter("misclassified")
    assert [r["key"] for r in (t.view_row(i) for i in range(len(t.view)))] == ["b"]
    t.set_filter("failed")
    assert len(t.view) == 1 and t.view_row(0)["key"] == "c"
    assert set(t.filters()) == {"all", "misclassified", "lowest_dice", "failed"}
    t.set_filter("all")
    t.sort_by("key", descending=False)
    assert t.step(1) == "a" and t.step(1) == "b" and t.step(-1) == "a" and t.step(-1) is None
    t.add_rows([{"key": "b", "pred": 1, "confidence": 0.99, "truth": 1, "correct": 1}])  # replaced by key
    assert len(t.rows) == 4 and t.row("b")["correct"] == 1 and t.current == "a"
    t.refresh_summary()
    assert t.summary["classes"]["accuracy"] == 1.0 and t.summary["failed"] == 1


def test_results_beside_the_data_set_and_the_window_options_as_command_line(tmp_path):
    from maskviewer.cli.evaluate import build_parser
    from maskviewer.core.dataset import DatasetIndex
    from maskviewer.core.patches import PatchSpec
    from maskviewer.gui.dataset.jobs import results_path, thumbnail, window_argv

    folder = DatasetIndex("d", str(tmp_path), "folder", [])
    assert results_path(folder, str(tmp_path), "/app") == tmp_path / ".maskviewer-results.csv"
    assert results_path(folder, str(tmp_path / "list.csv"), "/app") == tmp_path / "list.csv.maskviewer-results.csv"
    demo = DatasetIndex("digits", "/installed/demo", "demo", [])
    assert str(results_path(demo, "demo:digits", tmp_path)).startswith(str(tmp_path))  # never beside installed files
    argv = window_argv("fit", "-1..1", "channel", PatchSpec((18, 18), (10, 10)), 0.35, True)
    args = build_parser().parse_args(argv)
    assert (args.resize, args.mask_mode, args.patch_size, args.patch_stride) == ("fit", "channel", "18x18", "10x10")
    assert args.threshold == "0.35" and args.invert and args.scale is not None
    t = thumbnail(np.linspace(0, 1, 100 * 50 * 1, dtype=np.float32).reshape(100, 50, 1))
    assert t.shape == (36, 18, 3) and t.dtype == np.uint8 and t[0, 0, 0] == 0 and t[-1, -1, 0] > 240


def test_another_model_scores_the_open_data_set_with_it(qtbot, window, tmp_path, model_files):
    demo, x, y = _digits(list(range(12)))
    data, keys = _folder(tmp_path, x, y, broken=False)
    _open_demo(qtbot, window, "digits")
    tool = window.tools["dataset"]
    tool.app_dir = tmp_path / "app"
    first = _run_done(qtbot, tool, str(data))
    assert first.scored == 12 and tool.table.row(keys[0])["pred"] is not None
    tool.outcome = None
    window.controller.open_model(str(demo.path(demo.model)))  # the model again, as another file
    qtbot.waitUntil(lambda: tool.outcome is not None and not tool.jobs.is_running(), timeout=120_000)
    assert len(tool.table.rows) == 12 and tool.outcome.reused == 12  # its saved rows: nothing changed
