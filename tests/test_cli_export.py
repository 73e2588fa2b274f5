"""``maskviewer export``: the files it writes equal plain Keras / tf / scikit-image on the same
inputs, the manifest tells the truth, shards cover a folder once, bad input is explained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.cli.export_options import parse_shard, shard_slice
from maskviewer.io.export import iter_files, load_npy, read_manifest
from tests import model_zoo

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _save_png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    import keras  # noqa: F401

    folder = tmp_path_factory.mktemp("cli_models")
    paths = {}
    for name, builder in (("rgb", model_zoo.rgb_classifier), ("three", model_zoo.three_inputs),
                          ("mask", model_zoo.mask_channel)):
        path = folder / f"{name}.keras"
        builder().save(path)
        paths[name] = path
    return paths


def _run(argv, capsys):
    rc = export_main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def _check_manifest_files(out: Path, manifest: dict) -> int:
    """Every file an entry names exists with the stated shape and dtype; returns the count."""
    n = 0
    for entry in manifest["artifacts"]:
        assert entry["kind"] in ("activation", "cam", "attention", "prediction", "patch", "binary", "mask")
        for role, rec in iter_files(entry):
            path = out / rec["path"]
            assert path.is_file(), (role, rec)
            if path.suffix == ".npy":
                arr = np.load(path, mmap_mode="r")
                if "row" in rec:  # a row of a stacked array
                    assert arr.shape[1:] == tuple(rec["shape"]) and 0 <= rec["row"] < arr.shape[0]
                    arr = arr[rec["row"]]
            else:
                arr = np.asarray(Image.open(path))
            assert list(arr.shape) == rec["shape"], (role, rec, arr.shape)
            assert str(arr.dtype) == rec["dtype"], (role, rec, arr.dtype)
            n += 1
        if entry["npy"]:
            assert entry["files"]["npy"]["path"] == entry["npy"]
            assert entry["shape"] == entry["files"]["npy"]["shape"]
    return n


def _prepared(path, h, w, c):
    """The demo's preprocessing done independently: PIL, tf.image.resize, /255."""
    import tensorflow as tf

    arr = np.asarray(Image.open(path).convert("L" if c == 1 else "RGB"), np.float32)
    arr = arr.reshape(arr.shape[0], arr.shape[1], c)
    return tf.image.resize(arr[None] / 255.0, (h, w), method="bilinear", antialias=False).numpy()


def test_activation_maps_equal_plain_keras(tmp_path, capsys):
    import keras

    images = [str(DEMO / f"digit_{i}.png") for i in (0, 3, 7)]
    out = tmp_path / "out"
    rc, err = _run([*images, "--model", DEMO / "digits_cnn.keras", "--out", out,
                    "--layer", "conv1", "--layer", "conv3", "--legend", "--batch-size", "2"], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    model = keras.saving.load_model(DEMO / "digits_cnn.keras")
    sub = keras.Model(model.inputs, [model.get_layer("conv1").output, model.get_layer("conv3").output, model.output])
    acts = {e["image"]: e for e in manifest["artifacts"] if e["kind"] == "activation"}
    assert len([e for e in manifest["artifacts"] if e["kind"] == "activation"]) == 6
    for path in images:
        x = _prepared(path, 28, 28, 1)
        c1, c3, probs = (t.numpy()[0] for t in sub([x]))
        entries = {e["layer"]: e for e in manifest["artifacts"] if e["image"] == path and e["kind"] == "activation"}
        for layer, act in (("conv1", c1), ("conv3", c3)):
            got = load_npy(out, entries[layer])
            np.testing.assert_allclose(got, act.mean(axis=-1), rtol=1e-5, atol=1e-5 * np.abs(act).max())
            assert entries[layer]["method"] == "mean" and entries[layer]["layer_shape"] == list(act.shape)
        pred = [e for e in manifest["artifacts"] if e["image"] == path and e["kind"] == "prediction"][0]
        np.testing.assert_allclose(load_npy(out, pred), probs, rtol=1e-5, atol=1e-6)
        assert pred["top"][0]["class"] == int(np.argmax(probs))
    assert set(acts) == set(images)
    assert _check_manifest_files(out, manifest) == 6 * 4 + 3  # npy, png, overlay, legend; + scores
    from maskviewer.inference.loading import file_sha256

    assert manifest["model"]["sha256"] == file_sha256(DEMO / "digits_cnn.keras")
    assert manifest["settings"]["layers"] == ["conv1", "conv3"] and manifest["version"]


def test_every_entry_of_a_full_run_points_to_real_files(zoo, tmp_path, rng, capsys):
    """Three inputs, two outputs, attention, top-k, a CAM and a threshold in one run."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _save_png(folder / f"im{i}.png", rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    out = tmp_path / "out"
    rc, err = _run([folder, "--model", zoo["three"], "--out", out, "--reduce", "topk:2", "--cam", "gradcam",
                    "--output", "seg", "--threshold", "0.5", "--layer", "merge", "--layer", "attention",
                    "--legend", "--colormap", "turbo"], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    kinds = {e["kind"] for e in manifest["artifacts"]}
    assert kinds == {"activation", "attention", "cam", "prediction", "binary"}
    assert _check_manifest_files(out, manifest) > 30
    att = [e for e in manifest["artifacts"] if e["kind"] == "attention"]
    assert att and all(e["layer"] == "attention" for e in att)
    topk = [e for e in manifest["artifacts"] if e["kind"] == "activation"][0]
    assert topk["method"] == "top2" and len(topk["channels"]) == 2
    binary = [e for e in manifest["artifacts"] if e["kind"] == "binary"][0]
    assert binary["threshold"] == 0.5 and binary["output"] == "seg"


def test_cam_equals_a_gradient_tape(zoo, tmp_path, rng, capsys):
    import keras
    import tensorflow as tf

    path = _save_png(tmp_path / "a.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    rc, err = _run([path, "--model", zoo["rgb"], "--out", out, "--cam", "gradcam", "--class", "3",
                    "--layer", "conv2"], capsys)
    assert rc == 0, err
    entry = [e for e in read_manifest(out)["artifacts"] if e["kind"] == "cam"][0]
    assert entry["class"] == 3 and entry["layer"] == "conv2" and entry["method"] == "gradcam"
    model = keras.saving.load_model(zoo["rgb"])
    grad_model = keras.Model(model.inputs, [model.get_layer("conv2").output, model.output])
    x = tf.constant(_prepared(path, 32, 32, 3))
    with tf.GradientTape() as tape:
        act, preds = grad_model(x)
        score = preds[:, 3]
    g = tape.gradient(score, act).numpy()[0]
    cam = np.maximum(act.numpy()[0] @ g.mean(axis=(0, 1)), 0)
    np.testing.assert_allclose(load_npy(out, entry), cam / cam.max(), rtol=1e-4, atol=1e-5)


def test_threshold_otsu_and_scores_match_scikit_image(zoo, tmp_path, rng, capsys):
    import keras
    from skimage.filters import threshold_otsu

    path = _save_png(tmp_path / "b.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    ref = rng.random((24, 24)) > 0.5
    ref_path = _save_png(tmp_path / "ref.png", ref.astype(np.uint8) * 255)
    out = tmp_path / "out"
    rc, err = _run([path, "--model", zoo["three"], "--out", out, "--threshold", "otsu", "--output", "seg",
                    "--reference", ref_path, "--no-predictions", "--layer", "merge"], capsys)
    assert rc == 0, err
    entry = [e for e in read_manifest(out)["artifacts"] if e["kind"] == "binary"][0]
    model = keras.saving.load_model(zoo["three"])
    rgb = _prepared(path, 24, 24, 3)
    grey = (rgb[0] @ np.array([0.299, 0.587, 0.114], np.float32))[None, :, :, None]
    seg = model({"rgb": rgb, "density_a": grey, "density_b": grey})["seg"].numpy()[0, :, :, 0]
    t = threshold_otsu(seg)
    assert entry["threshold"] == pytest.approx(t, rel=1e-5)
    binary = load_npy(out, entry)
    assert np.mean(binary != (seg > t)) < 0.01  # a pixel may sit on the threshold
    tp = np.sum(binary & ref)
    dice = 2 * tp / (binary.sum() + ref.sum())
    assert entry["scores"]["dice"] == pytest.approx(dice, rel=1e-5)
    assert entry["scores"]["tp"] == int(tp)


def test_patch_probabilities_equal_the_model_on_each_patch(tmp_path, capsys):
    import keras
    import tensorflow as tf

    from maskviewer.core.patches import PatchSpec, coverage_map, make_grid

    path = DEMO / "digit_5.png"
    out = tmp_path / "out"
    rc, err = _run([path, "--model", DEMO / "digits_cnn.keras", "--out", out, "--patch-size", "14",
                    "--patch-stride", "7", "--combine", "geomean", "--no-predictions", "--layer", "conv3"], capsys)
    assert rc == 0, err
    entry = [e for e in read_manifest(out)["artifacts"] if e["kind"] == "patch"][0]
    img = np.asarray(Image.open(path).convert("L"), np.float32)[:, :, None]
    model = keras.saving.load_model(DEMO / "digits_cnn.keras")
    patches = tf.image.extract_patches(img[None], [1, 14, 14, 1], [1, 7, 7, 1], [1, 1, 1, 1], "VALID")
    patches = tf.reshape(patches, (-1, 14, 14, 1)) / 255.0
    probs = model(tf.image.resize(patches, (28, 28))).numpy()
    got = np.asarray(entry["patch_probabilities"])
    np.testing.assert_allclose(got, probs, rtol=1e-4, atol=1e-6)
    assert entry["grid"]["rows"] == 3 and entry["grid"]["cols"] == 3 and entry["grid"]["count"] == 9
    g = np.exp(np.log(np.clip(probs, 1e-12, None)).mean(axis=0))
    assert entry["combined"]["class"] == int(np.argmax(g)) and entry["method"] == "geometric"
    grid = make_grid(PatchSpec((14, 14), (7, 7)), 28, 28)
    np.testing.assert_allclose(load_npy(out, entry), coverage_map(grid, got[:, entry["class"]]), rtol=1e-6)


def test_mask_fed_as_a_channel(zoo, tmp_path, rng, capsys):
    import keras

    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = _save_png(tmp_path / "c.png", image)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 2:9] = 255
    mask_path = _save_png(tmp_path / "c_mask.png", mask)
    out = tmp_path / "out"
    rc, err = _run([path, "--model", zoo["mask"], "--out", out, "--mask", mask_path, "--mask-mode", "channel",
                    "--layer", "conv2"], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    assert manifest["settings"]["mask_mode"] == "channel"
    entries = {e["kind"]: e for e in manifest["artifacts"]}
    x = np.concatenate([image / 255.0, mask[:, :, None] / 255.0], axis=2).astype(np.float32)[None]
    model = keras.saving.load_model(zoo["mask"])
    sub = keras.Model(model.inputs, model.get_layer("conv2").output)
    np.testing.assert_allclose(load_npy(out, entries["activation"]), sub([x]).numpy()[0].mean(-1), rtol=1e-5, atol=1e-6)
    assert np.array_equal(load_npy(out, entries["mask"]), mask / 255.0)
    assert entries["mask"]["method"] == "channel"


def test_npy_image_of_the_input_shape_is_fed_unchanged(tmp_path, rng, capsys):
    import keras

    raw = rng.normal(size=(28, 28, 1)).astype(np.float32) * 3  # not in any image range
    np.save(tmp_path / "raw.npy", raw)
    out = tmp_path / "out"
    rc, err = _run([tmp_path / "raw.npy", "--model", DEMO / "digits_cnn.keras", "--out", out, "--layer", "conv1"], capsys)
    assert rc == 0, err
    entry = [e for e in read_manifest(out)["artifacts"] if e["kind"] == "activation"][0]
    model = keras.saving.load_model(DEMO / "digits_cnn.keras")
    act = keras.Model(model.inputs, model.get_layer("conv1").output)([raw[None]]).numpy()[0]
    np.testing.assert_allclose(load_npy(out, entry), act.mean(-1), rtol=1e-5, atol=1e-5)


def test_shards_cover_the_folder_exactly_once(tmp_path, rng, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = {str(folder / f"x{i:02d}.png") for i in range(7)}
    for name in names:
        _save_png(name, rng.integers(0, 256, (28, 28), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    seen: list[str] = []
    for i in (1, 2, 3):
        rc, err = _run([folder, "--model", DEMO / "digits_cnn.keras", "--out", out, "--shard", f"{i}/3",
                        "--layer", "conv3", "--format", "npy", "--no-overlay"], capsys)
        assert rc == 0, err
        data = json.loads((out / f"manifest.shard-{i}-of-3.json").read_text())
        assert data["shard"] == {"index": i, "count": 3} and data["images"]["total"] == 7
        images = {e["image"] for e in data["artifacts"]}
        assert len(images) == data["images"]["in_shard"]
        seen.extend(images)
    assert sorted(seen) == sorted(names)
    assert [shard_slice(list(range(10)), (i, 4)) for i in (1, 2, 3, 4)] == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)


def test_a_missing_image_is_reported_and_the_batch_goes_on(tmp_path, capsys):
    images = [DEMO / "digit_1.png", tmp_path / "gone.png", DEMO / "digit_2.png"]
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    rc, err = _run([*images, corrupt, "--model", DEMO / "digits_cnn.keras", "--out", out, "--layer", "conv1"], capsys)
    assert rc == 1
    assert "gone.png: no such file" in err and "bad.png" in err and "Traceback" not in err
    manifest = read_manifest(out)
    assert {f["image"] for f in manifest["failures"]} == {str(tmp_path / "gone.png"), str(corrupt)}
    assert {e["image"] for e in manifest["artifacts"]} == {str(DEMO / "digit_1.png"), str(DEMO / "digit_2.png")}
    assert manifest["images"] == {"total": 4, "in_shard": 4, "exported": 2, "failed": 2}


def test_unknown_layer_lists_the_valid_ones(tmp_path, capsys):
    rc, err = _run([DEMO / "digit_1.png", "--model", DEMO / "digits_cnn.keras", "--out", tmp_path / "o",
                    "--layer", "conv9"], capsys)
    assert rc == 2
    assert "Unknown layer: conv9" in err
    # the closest names are suggested, and where every layer is listed
    assert "did you mean conv3" in err and "maskviewer info" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_unwritable_output_folder_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _run([DEMO / "digit_1.png", "--model", tmp_path / "no-model.keras", "--out", blocker / "sub"], capsys)
    assert rc == 2 and "Cannot write to the output folder" in err
    assert "no-model" not in err  # refused before the model was even looked at


def test_earlier_export_is_not_overwritten(tmp_path, capsys):
    argv = [DEMO / "digit_1.png", "--model", DEMO / "digits_cnn.keras", "--out", tmp_path, "--layer", "conv3"]
    assert _run(argv, capsys)[0] == 0
    rc, err = _run(argv, capsys)
    assert rc == 2 and "--overwrite" in err
    assert _run([*argv, "--overwrite"], capsys)[0] == 0


def test_models_with_code_need_trust(tmp_path, capsys):
    import keras

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp))
    model.save(tmp_path / "code.keras")
    image = _save_png(tmp_path / "i.png", np.zeros((8, 8), np.uint8))
    rc, err = _run([image, "--model", tmp_path / "code.keras", "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "double (Lambda)" in err and "--trust" in err
    rc, err = _run([image, "--model", tmp_path / "code.keras", "--out", tmp_path / "o", "--trust"], capsys)
    assert rc == 0, err


def test_runs_without_a_display_and_without_qt(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code = (
        "import sys\nfrom maskviewer.cli import main\n"
        f"rc = main(['export', {str(DEMO / 'digit_4.png')!r}, '--model', {str(DEMO / 'digits_cnn.keras')!r}, "
        f"'--out', {str(tmp_path / 'o')!r}, '--layer', 'conv2'])\n"
        "assert not any(m.startswith('PySide6') or m == 'pyqtgraph' for m in sys.modules), 'Qt was imported'\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "o" / "manifest.json").exists()


def test_stacked_arrays_hold_the_same_rows_as_per_image_files(tmp_path, rng, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        _save_png(folder / f"d{i}.png", rng.integers(0, 256, (28 + i, 28), dtype=np.uint8))
    _save_png(folder / "grey_wide.png", rng.integers(0, 256, (20, 40), dtype=np.uint8))
    model = DEMO / "digits_cnn.keras"
    args = ["--model", model, "--layer", "conv1", "--layer", "pool2", "--batch-size", "4"]
    rc, err = _run([folder, "--out", tmp_path / "stacked", *args], capsys)
    assert rc == 0, err
    rc, err = _run([folder, "--out", tmp_path / "files", "--npy-layout", "files", *args], capsys)
    assert rc == 0, err
    stacked, files = read_manifest(tmp_path / "stacked"), read_manifest(tmp_path / "files")
    assert stacked["settings"]["npy_layout"] == "stacked" and files["settings"]["npy_layout"] == "files"
    assert len(stacked["artifacts"]) == len(files["artifacts"]) == 6 * 3
    rows: dict[str, set] = {}
    for a, b in zip(stacked["artifacts"], files["artifacts"], strict=True):
        assert (a["image"], a["kind"], a.get("layer"), a.get("output")) == (b["image"], b["kind"], b.get("layer"), b.get("output"))
        assert a["npy"].startswith("arrays/") and "npy_row" in a and "npy_row" not in b
        assert np.array_equal(load_npy(tmp_path / "stacked", a), load_npy(tmp_path / "files", b))
        assert a["shape"] == b["shape"] and a["png"] == b["png"]
        rows.setdefault(a["npy"], set()).add(a["npy_row"])
    # one array per map: a row per image, each row listed once
    for rel, seen in rows.items():
        full = np.load(tmp_path / "stacked" / rel)
        assert full.shape[0] == 6 and seen == set(range(6)), rel
    assert sorted(rows) == ["arrays/activation_conv1_mean.npy", "arrays/activation_pool2_mean.npy",
                            "arrays/prediction_probs_scores.npy"]
    assert _check_manifest_files(tmp_path / "stacked", stacked) == 6 * 2 * 3 + 6
    leftovers = [p.name for p in (tmp_path / "stacked").rglob(".*")]
    assert leftovers == []  # no temporary files
