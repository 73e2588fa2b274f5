"""The command line as a person meets it: --input per model input (the count the window
shows), unknown demos refused with the names, --help listing subcommands and demos, a missing
model refused before TensorFlow starts, no TensorFlow chatter on stderr, readable PNGs of small
maps (--png-scale), and one default overlay opacity for the window and the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.io.export import load_npy, read_manifest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"
COUNTING = DEMO / "counting"
#: what TensorFlow, CUDA and absl print on their own
CHATTER = re.compile(r"^[IWEF]\d{4} |cuInit|absl")


def _env(**extra: str) -> dict:
    """The environment of a user's shell: no log level set for TensorFlow, no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _maskviewer(*args, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskviewer", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=_env(), cwd=str(ROOT))


def _chatter(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CHATTER.search(line)]


def _count_by_keras(rgb: Path, density_a: Path, density_b: Path) -> float:
    """The counting model's output computed independently: PIL, /255, tf.image.resize, Keras."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(COUNTING / "galaxy_counter.keras")

    def prepared(path: Path) -> np.ndarray:
        arr = np.asarray(Image.open(path).convert("RGB"), np.float32)[None] / 255.0
        return tf.image.resize(arr, (128, 128), method="bilinear", antialias=False).numpy()

    feeds = {"rgb": prepared(rgb), "density_a": prepared(density_a), "density_b": prepared(density_b)}
    return float(np.asarray(model(feeds, training=False)).reshape(-1)[0])


def _count(out: Path) -> float:
    manifest = read_manifest(out)
    entry = next(e for e in manifest["artifacts"] if e["kind"] == "prediction")
    return float(np.asarray(load_npy(out, entry)).reshape(-1)[0])


def test_each_input_fed_from_its_own_file_gives_the_windows_count(tmp_path):
    rgb, a, b = COUNTING / "sample_rgb.png", COUNTING / "sample_density_a.png", COUNTING / "sample_density_b.png"
    common = ["--model", COUNTING / "galaxy_counter.keras", "--layer", "attention", "--format", "npy"]
    done = _maskviewer("export", rgb, *common, "--out", tmp_path / "fed", "--input", f"density_a={a}",
                       "--input", f"density_b={b}")
    assert done.returncode == 0, done.stderr
    assert _count(tmp_path / "fed") == pytest.approx(_count_by_keras(rgb, a, b), rel=1e-4, abs=1e-4)
    # the run says what each input was fed, on stderr and in the manifest
    assert f"density_a <- {a}" in done.stderr and f"density_b <- {b}" in done.stderr
    assert "rgb <- each image" in done.stderr
    attention = next(e for e in read_manifest(tmp_path / "fed")["artifacts"] if e["kind"] == "attention")
    assert Path(attention["npy"]).name == "attention.npy"  # not attention_attention_attention
    inputs = read_manifest(tmp_path / "fed")["settings"]["inputs"]
    assert (inputs["rgb"]["fed_from"], inputs["density_a"]["fed_from"]) == ("image", str(a))
    # without --input every input gets the image: a different count, and the run says so
    plain = _maskviewer("export", rgb, *common, "--out", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert "are all fed the same image" in plain.stderr and "--input NAME=FILE" in plain.stderr
    assert _count(tmp_path / "plain") == pytest.approx(_count_by_keras(rgb, rgb, rgb), rel=1e-4, abs=1e-4)
    assert abs(_count(tmp_path / "plain") - _count(tmp_path / "fed")) > 1.0


def test_input_mistakes_are_refused_with_the_inputs_named(tmp_path):
    model = ["--model", COUNTING / "galaxy_counter.keras", "--out", tmp_path / "o"]
    done = _maskviewer("export", COUNTING / "sample_rgb.png", *model, "--input", f"nosuch={COUNTING / 'sample_rgb.png'}")
    assert done.returncode == 2 and "rgb, density_a, density_b" in done.stderr and "Traceback" not in done.stderr
    done = _maskviewer("export", COUNTING / "sample_rgb.png", *model, "--input", "density_a")
    assert done.returncode == 2 and "NAME=FILE" in done.stderr


def test_unknown_demo_fails_with_the_names_on_stderr():
    from maskviewer.demo import list_demos

    done = _maskviewer("--demo", "nosuch", timeout=60)
    assert done.returncode != 0
    assert "nosuch" in done.stderr
    assert all(d.name in done.stderr for d in list_demos())


def test_help_lists_subcommands_and_demos():
    from maskviewer.demo import list_demos

    done = _maskviewer("--help", timeout=60)
    assert done.returncode == 0
    assert "maskviewer info" in done.stdout and "maskviewer export" in done.stdout
    names = [d.name for d in list_demos()]
    assert names and all(name in done.stdout for name in names)


@pytest.mark.parametrize("command", ["info", "export"])
def test_a_missing_model_fails_at_once_without_tensorflow(tmp_path, command):
    missing = tmp_path / "nosuch.keras"
    args = [str(missing)] if command == "info" else [str(DEMO / "digit_1.png"), "--model", str(missing),
                                                      "--out", str(tmp_path / "o")]
    code = (
        "import sys, time, json\n"
        "from maskviewer.cli import main\n"
        "t = time.perf_counter()\n"
        f"rc = main({[command, *args]!r})\n"
        "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t,\n"
        "                  'backend': sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=_env(), cwd=str(ROOT))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rc"] != 0 and result["backend"] == []
    assert str(missing) in done.stderr and "no such file" in done.stderr
    if command == "info":  # checked before any backend import (which takes seconds)
        assert result["seconds"] < 1.0


def test_info_and_export_print_no_tensorflow_chatter(tmp_path):
    info = _maskviewer("info", DEMO / "digits_cnn.keras")
    assert info.returncode == 0, info.stderr
    assert "conv1" in info.stdout and _chatter(info.stderr) == [], info.stderr
    out = tmp_path / "out"
    export = _maskviewer("export", DEMO / "digit_3.png", "--model", DEMO / "digits_cnn.keras", "--out", out,
                         "--layer", "conv3")
    assert export.returncode == 0, export.stderr
    assert _chatter(export.stderr) == [], export.stderr
    assert "maskviewer export: " in export.stderr  # our own summary still reaches stderr
    # small maps come out readable: the 28×28 digit's pictures are enlarged (nearest) to 280×280
    entry = next(e for e in read_manifest(out)["artifacts"] if e["kind"] == "activation")
    png = np.asarray(Image.open(out / entry["png"]))
    assert png.shape == (280, 280, 4) and entry["files"]["png"]["shape"] == [280, 280, 4]
    verbose = _maskviewer("info", DEMO / "digits_cnn.keras", "--verbose")
    assert verbose.returncode == 0
    if not _chatter(verbose.stderr):
        pytest.skip("this TensorFlow printed nothing to hide, so the filter was not exercised")


def test_png_scale_is_nearest_neighbour_and_leaves_masks_alone(tmp_path):
    from maskviewer.core.image import ImageData
    from maskviewer.core.mapping import Frame
    from maskviewer.io.export import ArtifactWriter, ExportItem, ExportStyle
    from maskviewer.io.export import pictures as pics

    rng = np.random.default_rng(3)
    image = ImageData(rng.integers(0, 256, (28, 20, 3), dtype=np.uint8), path="x.png")
    frame = Frame(0.0, 0.0, 20.0, 28.0)
    heat = ExportItem("activation", "conv", rng.random((7, 5)).astype(np.float32), frame, "mean", image="x.png")
    mask = ExportItem("mask", "m", (rng.random((28, 20)) > 0.5).astype(np.float32), frame, "none", image="x.png")
    written = {}
    for scale in (1, 3, "auto"):
        folder = tmp_path / str(scale)
        folder.mkdir()
        writer = ArtifactWriter(folder, ExportStyle(formats=("png",), scale=scale))
        entries = [writer.write(item, image) for item in (heat, mask)]
        written[scale] = [{role: np.asarray(Image.open(folder / rec["path"])) for role, rec in e["files"].items()}
                          for e in entries]
    base, three, auto = written[1], written[3], written["auto"]
    for role in ("png", "overlay"):  # every pixel a 3×3 block of the image-sized picture
        np.testing.assert_array_equal(three[0][role], np.repeat(np.repeat(base[0][role], 3, 0), 3, 1))
    assert auto[0]["png"].shape[:2] == (28 * 13, 20 * 13)  # short side 20 -> at least 256 px
    np.testing.assert_array_equal(three[1]["png"], base[1]["png"])  # a mask stays data, exact size
    assert three[1]["overlay"].shape[:2] == (84, 60)
    # large pictures are made band by band: the same pixels
    old = pics.BAND_ABOVE
    try:
        pics.BAND_ABOVE = 10
        folder = tmp_path / "banded"
        folder.mkdir()
        entry = ArtifactWriter(folder, ExportStyle(formats=("png",), scale=3)).write(heat, image)
        for role in ("png", "overlay"):
            np.testing.assert_array_equal(np.asarray(Image.open(folder / entry["files"][role]["path"])), three[0][role])
    finally:
        pics.BAND_ABOVE = old


def test_one_default_overlay_opacity_for_window_and_command_line():
    from maskviewer.cli.export_options import build_parser
    from maskviewer.core.heatmap import DEFAULT_OPACITY
    from maskviewer.gui.layers.model import LayersModel
    from maskviewer.io.export import ExportStyle

    args = build_parser().parse_args(["x.png", "--model", "m.keras", "--out", "o"])
    window = LayersModel().opacity / 100.0
    assert args.alpha == ExportStyle().alpha == window == DEFAULT_OPACITY


def test_file_names_say_each_word_once():
    from maskviewer.io.export.naming import item_stem

    assert item_stem("attention", "attention", "attention") == "attention"
    assert item_stem("mask", "mask", "none") == "mask" and item_stem("mask", "tumour", "channel") == "mask_tumour_channel"
    assert item_stem("activation", "conv2", "mean") == "activation_conv2_mean"
    assert item_stem("cam", "conv3", "gradcam", 2) == "cam_conv3_gradcam_class2"
    assert item_stem("activation", "Attention", "attention") == "activation_Attention"
