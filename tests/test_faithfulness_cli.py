"""``maskviewer export --faithfulness``: the curves and AUCs in the manifest, and their plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.io.export import load_npy, read_manifest

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _run(argv, capsys):
    rc = export_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_curves_and_aucs_reach_the_manifest_with_a_plot(tmp_path, capsys):
    import keras

    images = tmp_path / "in"
    images.mkdir()
    for d in (3, 7):
        shutil.copy(DEMO / f"digit_{d}.png", images / f"digit_{d}.png")
    out = tmp_path / "out"
    rc, err = _run([images, "--model", DEMO / "digits_cnn.keras", "--out", out, "--cam", "gradcam",
                    "--layer", "conv3", "--faithfulness", "--faithfulness-steps", "8", "--npy-layout", "files"],
                   capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    assert manifest["settings"]["faithfulness"] == {
        "steps": 8, "baselines": {"deletion": "black", "insertion": "blur"}}
    cams = [e for e in manifest["artifacts"] if e["kind"] == "cam"]
    preds = {e["image"]: e for e in manifest["artifacts"] if e["kind"] == "prediction"}
    model = keras.saving.load_model(DEMO / "digits_cnn.keras")
    assert len(cams) == 2
    for entry in cams:
        f = entry["faithfulness"]
        dele, ins = f["deletion"], f["insertion"]
        assert dele["baseline"] == "black" and ins["baseline"] == "blur" and f["input"] == "digit"
        np.testing.assert_allclose(dele["fractions"], np.arange(9) / 8)
        # nothing deleted yet, everything inserted: the model's own score of the image
        score = float(load_npy(out, preds[entry["image"]])[entry["class"]])
        assert dele["scores"][0] == pytest.approx(score, rel=1e-5)
        assert ins["scores"][-1] == pytest.approx(score, rel=1e-5)
        # everything deleted: the model on a black (zero) input
        black = float(np.asarray(model(np.zeros((1, 28, 28, 1), np.float32)))[0, entry["class"]])
        assert dele["scores"][-1] == pytest.approx(black, rel=1e-5, abs=1e-7)
        for curve, key in ((dele, "deletion_auc"), (ins, "insertion_auc")):
            assert curve["auc"] == f[key] == pytest.approx(np.trapezoid(curve["scores"], curve["fractions"]))
        plot = out / entry["files"]["plot"]["path"]
        assert plot.name.endswith("_plot.png") and plot.is_file()
        assert np.asarray(Image.open(plot)).shape == (300, 420, 3)


def test_faithfulness_needs_cam(tmp_path, capsys):
    rc, err = _run([DEMO / "digit_3.png", "--model", DEMO / "digits_cnn.keras", "--out", tmp_path / "o",
                    "--faithfulness"], capsys)
    assert rc == 2 and "--faithfulness" in err and "--cam" in err


def test_the_plot_draws_each_curve_in_its_colour():
    from maskviewer.io.export.plots import COLOURS, _plot_box, curves_plot, to_pixels

    f = np.linspace(0, 1, 5)
    rgb = curves_plot({"deletion": (f, 1 - f, 0.5), "insertion": (f, np.full(5, 0.25), 0.25)})
    box = _plot_box(rgb.shape[1], rgb.shape[0])
    cols, rows = to_pixels(np.array([0.5]), np.array([0.25]), box, (0.0, 1.0))
    assert tuple(rgb[int(round(rows[0])), int(round(cols[0]))]) == COLOURS["insertion"]
    cols, rows = to_pixels(np.array([0.3]), np.array([0.7]), box, (0.0, 1.0))
    assert tuple(rgb[int(round(rows[0])), int(round(cols[0]))]) == COLOURS["deletion"]
