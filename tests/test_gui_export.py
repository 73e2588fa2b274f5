"""Exporting from the window: the same NPY as the command line, every tool's view, the menu,
the right-click, the remembered folder, and no overwriting without asking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QKeySequence

from maskviewer.cli.export import export_main
from maskviewer.gui.dialogs import ScriptedDialogs
from maskviewer.io.export import iter_files, load_npy, read_manifest
from tests.conftest import wait_prediction

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _open_demo(qtbot, win, digit=3):
    win.controller.open_image(str(DEMO / f"digit_{digit}.png"))
    win.controller.open_model(str(DEMO / "digits_cnn.keras"))
    assert wait_prediction(qtbot, win) is not None


def _show(qtbot, win, layer, method):
    tool = win.tools["layers"]
    win.show_panel("Layers")
    qtbot.waitUntil(lambda: layer in tool.entries and tool.panel.current_path() is not None, timeout=30_000)
    tool.select_layer(layer)
    tool.panel.set_method(method)
    tool.request()

    def shown():
        o = tool.outcome
        return (o is not None and o.request.path == layer and o.request.method == method
                and not o.error and tool.overlay.isVisible())

    qtbot.waitUntil(shown, timeout=30_000)
    return tool.outcome


def _entries(manifest, kind):
    return [e for e in manifest["artifacts"] if e["kind"] == kind]


def test_gui_and_cli_export_of_the_same_view_give_the_same_npy(window, qtbot, tmp_path, capsys):
    _open_demo(qtbot, window)
    export = window.tools["export"]
    gui_out, cli_out = tmp_path / "gui", tmp_path / "cli"
    image = str(DEMO / "digit_3.png")
    for layer, method, cli_args in (
        ("conv2", "mean", ["--layer", "conv2", "--reduce", "mean"]),
        ("conv3", "gradcam", ["--layer", "conv3", "--cam", "gradcam"]),
    ):
        _show(qtbot, window, layer, method)
        manifest = export.export_to(gui_out / layer)
        assert manifest is not None
        rc = export_main([image, "--model", str(DEMO / "digits_cnn.keras"), "--out", str(cli_out / layer),
                          *cli_args, "--no-predictions"])
        assert rc == 0, capsys.readouterr().err
        kind = "cam" if method == "gradcam" else "activation"
        gui = _entries(read_manifest(gui_out / layer), kind)[0]
        cli = _entries(read_manifest(cli_out / layer), kind)[0]
        # the same view gets the same name and stored the same way...
        # (the window writes one .npy per view, the command line a row of a stacked array)
        assert Path(gui["npy"]).name == Path(cli["npy"]).name
        assert gui["method"] == cli["method"] and gui["class"] == cli["class"]
        assert gui["files"]["npy"]["shape"] == cli["files"]["npy"]["shape"]
        a, b = load_npy(gui_out / layer, gui), load_npy(cli_out / layer, cli)
        # ...and equal numbers (one image eagerly vs a traced batch: float32 rounding apart)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(b).max())))
        # the picture at image resolution is the same too (28×28 enlarged ten times by default)
        pa = np.asarray(Image.open(gui_out / layer / gui["png"])).astype(int)
        pb = np.asarray(Image.open(cli_out / layer / cli["png"])).astype(int)
        assert pa.shape == pb.shape == (280, 280, 4) and np.abs(pa - pb).max() <= 1


def test_export_everything_shown_from_the_menu(window, qtbot, tmp_path):
    _open_demo(qtbot, window, digit=7)
    _show(qtbot, window, "conv1", "grid")
    masks = window.tools["masks"]
    masks.ask_unsaved = lambda: "discard"  # closing the window must not wait for an answer
    masks.maskset.rectangle(3, 4, 12, 20, 1.0)
    patches = window.tools["patches"]
    from maskviewer.core.patches import PatchSpec

    assert patches.set_spec(PatchSpec((14, 14), (7, 7)))
    gen = patches.run_all()
    qtbot.waitUntil(lambda: patches.probs is not None and window.controller.is_latest("patches", gen)
                    or patches.probs is not None, timeout=60_000)
    export = window.tools["export"]
    assert export.action.shortcut() == QKeySequence("Ctrl+E")
    assert export.action in window.file_menu.actions()
    assert export.action in export.context_menu().actions()  # the right-click on the image
    def answer(dialog):  # every item, with legends, into tmp_path/out
        dialog.set_folder(str(tmp_path / "out"))
        dialog.legend.setChecked(True)

    window.dialogs = ScriptedDialogs(answer)
    export.action.trigger()
    assert window.dialogs.asked == [("run", "Export")]
    manifest = read_manifest(tmp_path / "out")
    assert {e["kind"] for e in manifest["artifacts"]} >= {"activation", "mask", "patch"}
    for entry in manifest["artifacts"]:
        for _role, rec in iter_files(entry):
            path = tmp_path / "out" / rec["path"]
            arr = np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))
            assert list(arr.shape) == rec["shape"] and str(arr.dtype) == rec["dtype"]
    grid = _entries(manifest, "activation")[0]
    assert grid["method"] == "grid" and grid["files"]["grid"]["path"].endswith("_grid.png")
    assert np.load(tmp_path / "out" / grid["npy"]).shape == (16, 28, 28)
    mask = _entries(manifest, "mask")[0]
    assert np.array_equal(np.load(tmp_path / "out" / mask["npy"]), masks.maskset.active.data)
    patch = _entries(manifest, "patch")[0]
    np.testing.assert_allclose(np.asarray(patch["patch_probabilities"]), patches.probs)
    assert patch["grid"]["count"] == 9 and patch["combined"]["class"] == patches.combined.label
    assert manifest["model"]["sha256"] == window.controller.model_sha256
    assert export.last_folder() == str(tmp_path / "out")  # remembered for the next export


def test_never_overwrites_without_asking(window, qtbot, tmp_path):
    _open_demo(qtbot, window)
    _show(qtbot, window, "conv3", "max")
    export = window.tools["export"]
    window.dialogs = ScriptedDialogs(False, True)  # "no" to the first question, then "yes"
    assert export.export_to(tmp_path) is not None and not window.dialogs.asked
    entry = _entries(read_manifest(tmp_path), "activation")[0]
    before = (tmp_path / entry["png"]).read_bytes()
    window.tools["layers"].panel.set_colormap("turbo")  # a different picture of the same map
    assert export.export_to(tmp_path) is None
    assert window.dialogs.asked == [("question", "Overwrite files?")]
    assert (tmp_path / entry["png"]).read_bytes() == before
    assert export.export_to(tmp_path) is not None
    assert len(window.dialogs.asked) == 2
    assert (tmp_path / entry["png"]).read_bytes() != before


def test_binary_output_export(window, qtbot, tmp_path, model_files, rng):
    from tests.model_zoo import random_image

    Image.fromarray(random_image(24, 24, 3, seed=5)).save(tmp_path / "rgb.png")
    window.controller.open_image(str(tmp_path / "rgb.png"))
    window.controller.open_model(str(model_files["three"]))
    wait_prediction(qtbot, window)
    binarise = window.tools["binarise"]
    qtbot.waitUntil(lambda: binarise.binary_mask() is not None, timeout=30_000)
    binarise.set_threshold(0.5)
    export = window.tools["export"]
    manifest = read_manifest(export.export_to(tmp_path / "out"))
    entry = _entries(manifest, "binary")[0]
    seg = window.state.prediction.outputs[entry["output"]]
    expected = np.asarray(seg).reshape(seg.shape[:2]) > 0.5
    assert np.array_equal(np.load(tmp_path / "out" / entry["npy"]), expected)
    assert entry["threshold"] == pytest.approx(0.5)


def test_nothing_to_export_is_explained(window, tmp_path):
    assert window.tools["export"].export_to(tmp_path) is None
    assert window.last_error[0] == "Nothing to export"
