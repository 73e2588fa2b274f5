"""The bundled demos: each model loads with the app's loader, its inputs map as they should,
and the held-out score recorded by the build script is reproduced from the shipped files with
plain Keras / TensorFlow / numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maskviewer.core.mapping import prepare_input, propose_mapping
from maskviewer.demo import Demo, get_demo, list_demos
from maskviewer.io.images import load_image

ROOT = Path(__file__).resolve().parents[1]
REQUESTED = ("mask_channel", "masked_kernels", "counting", "binary", "patches")


@pytest.fixture(scope="module")
def loaded():
    """Each demo's model loaded once by the app's loader (safe mode, no custom objects)."""
    from maskviewer.inference.runner import ModelHost

    cache = {}

    def get(name: str):
        if name not in cache:
            demo = get_demo(name)
            host = ModelHost()
            host.load(demo.path(demo.model))
            cache[name] = (demo, host)
        return cache[name]

    return get


def run(host, arrays: dict[str, np.ndarray], batch: int = 128) -> dict[str, np.ndarray]:
    """The loaded Keras model called directly, ``model(x, training=False)``, in batches."""
    model = host.model
    n = len(next(iter(arrays.values())))
    parts = []
    for i in range(0, n, batch):
        chunk = {k: v[i : i + batch] for k, v in arrays.items()}
        x = chunk if len(chunk) > 1 else next(iter(chunk.values()))
        out = model(x, training=False)
        parts.append({k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else {"out": np.asarray(out)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def png01(path) -> np.ndarray:
    """A PNG as float32 in 0..1, read by Pillow (not by the app)."""
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return a[:, :, None] if a.ndim == 2 else a


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(-1) == y))


# -- the index -------------------------------------------------------------------------------


def test_the_requested_five_demos_are_listed_complete_and_small():
    demos = {d.name: d for d in list_demos()}
    assert set(REQUESTED) <= set(demos)
    assert list_demos()[0].name == "digits"  # the plain demo stays the default
    views = {demos[n].view for n in REQUESTED}
    assert views == {"Masks", "Kernels", "Layers", "Binarise", "Patches"}
    for demo in demos.values():
        assert demo.missing_files() == [], demo.name
        assert demo.score["metric"] in ("accuracy", "mae", "dice")
        assert demo.score["n"] >= 20
        # the explanation shows the score the build measured
        v = demo.score["value"]
        shown = f"{v:.1%}" if demo.score["metric"] == "accuracy" else None
        if demo.name == "digits":
            shown = f"{v:.3f}"
        elif demo.score["metric"] == "mae":
            shown = f"{v:.2f}"
        elif demo.score["metric"] == "dice":
            shown = f"{v:.3f}"
        assert shown in demo.description, (demo.name, shown)
    folder = list_demos()[0].folder
    tracked = subprocess.run(
        ["git", "ls-files", "--", str(folder)], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    files = [ROOT / p for p in tracked] or [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files if p.exists()) < 5_000_000


def test_unknown_demo_names_the_available_ones():
    from maskviewer.core.errors import MaskviewerError

    with pytest.raises(MaskviewerError, match="Available: digits"):
        get_demo("no-such-demo")


def test_extra_keys_in_the_index_are_kept_not_fatal(tmp_path, monkeypatch):
    import maskviewer.demo as demo_mod

    (tmp_path / "demo").mkdir()
    entry = {"name": "x", "title": "X", "model": "m.keras", "images": ["a.png"],
             "description": "d", "future_field": 3}
    (tmp_path / "demo" / "demos.json").write_text(json.dumps({"demos": [entry]}))
    monkeypatch.setattr(demo_mod, "resources_dir", lambda: tmp_path)
    (demo,) = demo_mod.list_demos()
    assert demo.extra == {"future_field": 3} and demo.view == "Predictions"
    assert demo.missing_files() == ["m.keras", "a.png"]
    assert "no held-out score" in demo.score_text()


# -- loading and input mapping --------------------------------------------------------------


def test_digits_and_patches_take_a_digit_png_stretched_to_0_1(loaded):
    for name, size in (("digits", 28), ("patches", 18)):
        demo, host = loaded(name)
        (spec,) = host.info.inputs
        assert spec.shape == (None, size, size, 1)
        image = load_image(demo.path(demo.images[0]))
        m = propose_mapping(spec.shape, image, host.info.expects_0_255)
        assert (m.resize, m.scale) == ("stretch", "0..1")
        x, _ = prepare_input(image, m, spec.shape)
        if size == 28:
            np.testing.assert_array_equal(x, png01(demo.path(demo.images[0])))
        else:  # the whole 28x28 digit squeezed into the patch, as tf.image.resize does
            import tensorflow as tf

            want = tf.image.resize(png01(demo.path(demo.images[0])), (18, 18), "bilinear").numpy()
            np.testing.assert_allclose(x, want, atol=1e-5)


def test_mask_channel_feeds_canvas_plus_mask_or_the_raw_sample(loaded):
    from maskviewer.core.mask_feed import prepare_masked_input, propose_mask_mode

    demo, host = loaded("mask_channel")
    (spec,) = host.info.inputs
    assert spec.shape == (None, 56, 56, 2)
    for k, (img, mask, sample) in enumerate(zip(demo.images, demo.masks, demo.samples, strict=True)):
        raw = load_image(demo.path(sample))
        m = propose_mapping(spec.shape, raw)
        assert (m.resize, m.scale) == ("none", "raw")  # the .npy is the model input, as stored
        x_raw, _ = prepare_input(raw, m, spec.shape)
        np.testing.assert_array_equal(x_raw, np.load(demo.path(sample)))
        # the canvas PNG with the mask PNG fed as a channel gives the same input
        canvas = load_image(demo.path(img))
        feed = propose_mask_mode(host.info, image_channels=1)
        assert (feed.mode, feed.input_name) == ("channel", "canvas_and_mask")
        m2 = propose_mapping(spec.shape, canvas)
        m2.source = f"image+mask:{k}"
        x, _ = prepare_masked_input(canvas, m2, spec.shape, {str(k): png01(demo.path(mask))[:, :, 0]})
        np.testing.assert_array_equal(x, x_raw)


def test_masked_kernels_takes_an_image_and_a_raw_kernel_mask(loaded):
    demo, host = loaded("masked_kernels")
    shapes = {t.name: t.shape for t in host.info.inputs}
    assert shapes == {"image": (None, 28, 28, 1), "kernel_mask": (None, 5, 5)}
    assert host.info.find_layer("masked_conv").class_name == "MaskedConv2D"
    km = load_image(demo.path(demo.inputs["kernel_mask"]))
    m = propose_mapping(shapes["kernel_mask"], km)
    assert m.scale == "raw"
    x, _ = prepare_input(km, m, shapes["kernel_mask"])
    np.testing.assert_array_equal(x, np.ones((5, 5), np.float32))


def test_counting_has_three_named_rgb_inputs_and_a_sigmoid_attention(loaded):
    demo, host = loaded("counting")
    assert [(t.name, t.shape) for t in host.info.inputs] == [
        (n, (None, 128, 128, 3)) for n in ("rgb", "density_a", "density_b")
    ]
    att = host.model.get_layer("attention")
    assert type(att).__name__ == "Conv2D" and att.kernel_size == (1, 1) and att.filters == 1
    assert att.get_config()["activation"] == "sigmoid"
    for name, rel in {"rgb": demo.images[0], **demo.inputs}.items():
        image = load_image(demo.path(rel))
        m = propose_mapping((None, 128, 128, 3), image)
        x, _ = prepare_input(image, m, (None, 128, 128, 3))
        np.testing.assert_array_equal(x, png01(demo.path(rel)))
        assert name in {t.name for t in host.info.inputs}


def test_binary_has_a_reconstruction_and_a_sigmoid_mark(loaded):
    demo, host = loaded("binary")
    assert [t.shape for t in host.info.inputs] == [(None, 96, 96, 1)]
    assert {t.name: t.shape for t in host.info.outputs} == {
        "reconstruction": (None, 96, 96, 1), "mark": (None, 96, 96, 1)}
    assert host.model.get_layer("mark").get_config()["activation"] == "sigmoid"
    image = load_image(demo.path(demo.images[0]))
    m = propose_mapping(host.info.inputs[0].shape, image)
    assert (m.resize, m.scale) == ("stretch", "0..1")


# -- the recorded held-out scores, recomputed -----------------------------------------------


def test_digits_score(loaded):
    demo, host = loaded("digits")
    x = np.load(demo.path(demo.score["test_x"])).astype(np.float32) / 255.0
    y = np.load(demo.path(demo.score["test_y"])).astype(np.int64)
    assert len(y) == demo.score["n"]
    assert accuracy(run(host, {"digit": x})["out"], y) == pytest.approx(demo.score["value"], abs=1e-4)


def test_mask_channel_score_and_the_ablation_drop(loaded):
    from maskviewer.core.mask_feed import ablation_masks

    demo, host = loaded("mask_channel")
    data = np.load(demo.path(demo.score["data"]))
    x, y = data["x"].astype(np.float32) / 255.0, data["y"].astype(np.int64)
    assert x.shape == (demo.score["n"], 56, 56, 2)
    acc = accuracy(run(host, {"canvas_and_mask": x})["out"], y)
    assert acc == pytest.approx(demo.score["value"], abs=1e-4)
    # the app's ablation 'Random' mask (same coverage, seeded) in place of each painted one
    xr = x.copy()
    for i in range(len(x)):
        xr[i, :, :, 1] = ablation_masks(x[i, :, :, 1], seed=i)["random"]
    acc_random = accuracy(run(host, {"canvas_and_mask": xr})["out"], y)
    assert acc_random == pytest.approx(demo.score["random_mask_accuracy"], abs=1e-4)
    # masks moved onto other canvases (each then marks some digit, usually another)
    xs = x.copy()
    xs[..., 1] = x[np.random.default_rng(7).permutation(len(x)), :, :, 1]
    acc_shuffled = accuracy(run(host, {"canvas_and_mask": xs})["out"], y)
    assert acc > 0.9
    assert acc - acc_random > 0.5 and acc - acc_shuffled > 0.5


def test_masked_kernels_score_by_kernel_mask(loaded):
    import tensorflow as tf

    demo, host = loaded("masked_kernels")
    x = np.load(demo.path(demo.score["test_x"])).astype(np.float32) / 255.0
    y = np.load(demo.path(demo.score["test_y"])).astype(np.int64)
    recorded = demo.score["by_kernel_mask"]
    assert recorded["full"] == demo.score["value"]
    for key, want in recorded.items():
        mask = np.load(demo.path(f"masked_kernels/kernel_mask_{key}.npy"))
        batch = np.broadcast_to(mask, (len(x), 5, 5)).astype(np.float32)
        got = accuracy(run(host, {"image": x, "kernel_mask": batch})["out"], y)
        assert got == pytest.approx(want, abs=1e-4), key
    assert recorded["full"] > 0.9 and recorded["dot"] < recorded["centre"] < recorded["full"]
    # the masked layer is a plain convolution with the masked kernel (tf.nn.conv2d)
    layer = host.model.get_layer("masked_conv")
    mask = np.load(demo.path("masked_kernels/kernel_mask_centre.npy"))
    kernel = np.asarray(layer.kernel) * mask[:, :, None, None]
    want = tf.nn.relu(tf.nn.conv2d(x[:4], kernel, 1, "SAME") + np.asarray(layer.bias)).numpy()
    got = np.asarray(layer([x[:4], mask]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _region_crops(demo: Demo, key: str, corners: np.ndarray, size: int) -> np.ndarray:
    region = png01(demo.path(demo.score["regions"][key]))
    return np.stack([region[y : y + size, x : x + size] for y, x in corners])


def test_counting_score(loaded):
    demo, host = loaded("counting")
    data = np.load(demo.path(demo.score["data"]))
    corners, y, size = data["corners"], data["y"], int(data["size"])
    assert len(y) == demo.score["n"]
    arrays = {n: _region_crops(demo, n, corners, size) for n in ("rgb", "density_a", "density_b")}
    pred = run(host, arrays)["out"][:, 0]
    mae = float(np.mean(np.abs(pred - y)))
    assert mae == pytest.approx(demo.score["value"], abs=1e-3)
    baseline = float(np.mean(np.abs(float(data["train_mean"]) - y)))
    assert baseline == pytest.approx(demo.score["baseline_mae"], abs=1e-3)
    assert mae < 0.6 * baseline  # it counts, it does not guess the mean
    # the shipped sample is one of the held-out crops
    sample = png01(demo.path(demo.images[0]))
    assert any(np.array_equal(sample, c) for c in arrays["rgb"])


def test_binary_score_dice_and_reconstruction(loaded):
    from skimage.filters import threshold_otsu

    demo, host = loaded("binary")
    data = np.load(demo.path(demo.score["data"]))
    corners, size = data["corners"], int(data["size"])
    x = _region_crops(demo, "image", corners, size)
    truth = _region_crops(demo, "mark", corners, size) > 0.5
    assert len(x) == demo.score["n"]
    out = run(host, {"image": x})
    pred = out["mark"] > demo.score["threshold"]
    dice = 2 * np.logical_and(pred, truth).sum() / (pred.sum() + truth.sum())
    assert dice == pytest.approx(demo.score["value"], abs=1e-4)
    assert float(np.mean((out["reconstruction"] - x) ** 2)) == pytest.approx(
        demo.score["reconstruction_mse"], rel=1e-3)
    # the mark really is binary-like: Otsu's threshold on it does about as well as 0.5
    otsu = out["mark"] > threshold_otsu(out["mark"])
    assert 2 * np.logical_and(otsu, truth).sum() / (otsu.sum() + truth.sum()) > dice - 0.02


def test_patches_score_four_corners_mean_and_bigger_is_better(loaded):
    import tensorflow as tf

    from maskviewer.core.patches import extract_patches, make_grid, preset_corners

    demo, host = loaded("patches")
    x = np.load(demo.path(demo.score["test_x"])).astype(np.float32) / 255.0
    y = np.load(demo.path(demo.score["test_y"])).astype(np.int64)
    by_size = demo.score["by_size"]
    for size_text, want in by_size.items():
        s = int(size_text)
        far = 28 - s
        probs = []
        for y0, x0 in ((0, 0), (0, far), (far, 0), (far, far)):
            patch = tf.image.resize(x[:, y0 : y0 + s, x0 : x0 + s], (18, 18), "bilinear").numpy()
            probs.append(run(host, {"patch": patch})["out"])
        assert accuracy(np.mean(probs, axis=0), y) == pytest.approx(want, abs=1e-4), s
    assert by_size["18"] == demo.score["value"]
    sizes = sorted(by_size, key=int)
    assert by_size["12"] < by_size["14"] < by_size["18"] <= by_size["28"]
    assert by_size[sizes[-1]] - by_size[sizes[0]] > 0.3
    # the patch view's four-corner preset cuts exactly these patches
    grid = make_grid(preset_corners(28, 28, 18), 28, 28)
    patches = extract_patches(x[0], grid)
    assert len(patches) == 4
    np.testing.assert_array_equal(patches[3], x[0, 10:28, 10:28])


# -- the build script ------------------------------------------------------------------------


@pytest.mark.slow
def test_build_script_quick_builds_every_demo(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_demos.py"), "--quick", "--out", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=180,
    )
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    assert seconds < 60, f"the quick build took {seconds:.0f} s"
    import maskviewer.demo as demo_mod

    monkeypatch.setattr(demo_mod, "resources_dir", lambda: tmp_path)
    demos = {d.name: d for d in demo_mod.list_demos()}
    assert set(demos) == {"digits", "vit", *REQUESTED}
    for d in demos.values():
        assert d.missing_files() == [], d.name
        assert d.score["n"] > 0 and np.isfinite(d.score["value"])
    # and what it wrote loads with the app's loader
    from maskviewer.inference.runner import ModelHost

    info = ModelHost().load(demos["counting"].path(demos["counting"].model))
    assert [t.name for t in info.inputs] == ["rgb", "density_a", "density_b"]
