"""``maskviewer export --cam METHOD``: every method name is accepted, the maps written equal
the attribution API's (checked against GradientTape and numpy in tests/test_attribution*.py),
the method's parameters reach the maps and the manifest, bad values are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.io.export import load_npy, read_manifest
from tests import model_zoo

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attribution_cli")
    model = folder / "rgb.keras"
    model_zoo.rgb_classifier().save(model)
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):  # 32×32: the model's size, so the input is the image / 255
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
        images.append(p)
    return model, images


def _inputs(images):
    return np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in images])


def _run(argv, capsys):
    rc = export_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_method_choices_are_the_apis():
    from maskviewer.cli.export_methods import CAM_CHOICES, INPUT_CHOICES
    from maskviewer.inference.attribution import INPUT_METHODS, METHOD_NAMES

    assert CAM_CHOICES == METHOD_NAMES and INPUT_CHOICES == INPUT_METHODS


@pytest.mark.parametrize("method,extra,opts", [
    ("scorecam", ["--layer", "conv2"], {}),
    ("layercam", ["--layer", "conv1"], {}),
    ("smoothgrad", ["--smooth-samples", "5", "--smooth-noise", "0.3"], {"smooth_samples": 5, "smooth_noise": 0.3}),
    ("ig", ["--ig-steps", "6", "--ig-baseline", "blurred"], {"ig_steps": 6, "ig_baseline": "blurred"}),
    ("occlusion", ["--occlusion-window", "12", "--occlusion-stride", "5"], {"occlusion_window": 12, "occlusion_stride": 5}),
    ("occlusion", [], {}),
    ("scorecam", ["--layer", "conv2", "--score-channels", "3"], {"score_channels": 3}),
])
def test_export_writes_the_apis_maps(files, tmp_path, capsys, method, extra, opts):
    import keras

    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model_path, images = files
    out = tmp_path / "out"
    rc, err = _run([*images, "--model", model_path, "--out", out, "--cam", method, "--batch-size", "2",
                    "--scale", "0..1", *extra], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    entries = sorted((e for e in manifest["artifacts"] if e["kind"] == "cam"), key=lambda e: e["image"])
    assert len(entries) == 3 and all(e["method"] == method for e in entries)
    layer = extra[1] if extra and extra[0] == "--layer" else None
    model = keras.saving.load_model(model_path)
    ref = attribution_function(model, method, layer, options=AttributionOptions(**opts))(_inputs(images))
    for i, entry in enumerate(entries):
        assert entry["layer"] == (layer or "image")
        np.testing.assert_allclose(load_npy(out, entry), ref.item(i).heatmap, rtol=1e-4, atol=1e-5)
    wanted = {"smoothgrad": {"samples": 5, "noise": 0.3, "seed": 0},
              "ig": {"steps": 6, "baseline": "blurred", "rule": "trapezoid"},
              "occlusion": {"window": 12, "stride": 5} if opts else None,
              "scorecam": {"channels": 3} if opts else None}.get(method)
    assert manifest["settings"]["cam_params"] == wanted
    if opts:  # the options change the map (else the comparison above proves nothing about them)
        plain = attribution_function(model, method, layer)(_inputs(images))
        assert not np.allclose(plain.item(0).heatmap, ref.item(0).heatmap, atol=1e-4)


def test_bad_values_are_refused(files, tmp_path, capsys):
    model_path, images = files
    for extra, said in ((["--cam", "ig", "--ig-steps", "1"], "--ig-steps 1"),
                        (["--cam", "smoothgrad", "--smooth-samples", "0"], "--smooth-samples 0"),
                        (["--cam", "ig", "--ig-baseline", "grey"], "--ig-baseline grey"),
                        (["--cam", "occlusion", "--occlusion-window", "0"], "--occlusion-window 0"),
                        (["--cam", "occlusion", "--occlusion-stride", "-2"], "--occlusion-stride -2"),
                        (["--cam", "scorecam", "--score-channels", "0"], "--score-channels 0"),
                        (["--cam", "occlusionish"], "invalid choice")):
        try:
            rc, err = _run([images[0], "--model", model_path, "--out", tmp_path / "o", *extra], capsys)
        except SystemExit as exc:  # argparse's own refusal
            rc, err = exc.code, capsys.readouterr().err
        assert rc == 2 and said in err, err
