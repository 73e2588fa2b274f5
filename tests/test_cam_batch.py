"""Batched, traced CAMs equal one image at a time and the keras-io recipe; the export runs one pass."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests import model_zoo
from tests.test_cam import gradcam_pp_reference, keras_io_gradcam

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def varied():
    """A small classifier and 8 images whose top classes differ (the head is centred on them)."""
    import keras

    keras.utils.set_random_seed(7)
    inp = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    f = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="probs")(f))
    rng = np.random.default_rng(0)
    images = rng.random((8, 24, 24, 3), dtype=np.float32) * rng.random((8, 1, 1, 3), dtype=np.float32) * 2
    # 8-bit values, so that PNGs of them give the same inputs back
    images = np.round(np.clip(images, 0, 1) * 255).astype(np.float32) / 255
    feats = keras.Model(inp, f)(images).numpy()
    k = rng.normal(0, 1, (8, 4)).astype(np.float32) / (feats.std(0)[:, None] + 1e-3)
    model.get_layer("probs").set_weights([k, (-feats.mean(0) @ k).astype(np.float32)])
    top = model(images).numpy().argmax(axis=1)
    assert len(set(top.tolist())) >= 3, top  # the point of this batch
    return model, images


def _check_recipe(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Ours equals the recipe's map; True when the recipe's map is defined (it divides by 0
    when the CAM is all negative, where ours is all zeros)."""
    if np.isfinite(ref).all():
        np.testing.assert_allclose(ours, ref, atol=1e-5)
        return True
    assert not ours.any()
    return False


def _probe(model):
    from maskviewer.inference.probe import ActivationProbe

    return ActivationProbe(model)


@pytest.mark.parametrize("plus", [False, True])
def test_batch_equals_one_at_a_time_and_the_recipe(varied, plus):
    from maskviewer.inference.cam import cam_function, grad_cam

    model, x = varied
    probe = _probe(model)
    fn = cam_function(probe, "conv2", plus=plus)
    assert cam_function(probe, "conv2", plus=plus) is fn  # made once, kept
    batch = fn(x)
    assert batch.heatmaps.shape == (8, 24, 24) and batch.weights.shape == (8, 8)
    np.testing.assert_array_equal(batch.classes, model(x).numpy().argmax(axis=1))
    defined = 0
    for i in range(len(x)):
        one = grad_cam(probe, x[i : i + 1], "conv2", plus=plus)
        item = batch.item(i)
        assert item.class_index == one.class_index and item.method == one.method
        np.testing.assert_allclose(item.heatmap, one.heatmap, atol=1e-5)
        np.testing.assert_allclose(item.raw, one.raw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(item.weights, one.weights, rtol=1e-4, atol=1e-6)
        assert item.score == pytest.approx(one.score, rel=1e-5)
        ref, grads, act, top = keras_io_gradcam(x[i : i + 1], model, "conv2")
        assert top == item.class_index
        if plus:
            with np.errstate(invalid="ignore", divide="ignore"):
                ref = gradcam_pp_reference(act, grads)
        defined += _check_recipe(item.heatmap, ref)
    assert defined >= 5, defined


def test_chosen_classes_one_for_all_or_one_per_image(varied):
    from maskviewer.inference.cam import cam_function
    from maskviewer.inference.probe import ProbeError

    model, x = varied
    fn = cam_function(_probe(model), "conv2")
    per_image = [i % 4 for i in range(len(x))]
    batch = fn(x, per_image)
    np.testing.assert_array_equal(batch.classes, per_image)
    for i, cls in enumerate(per_image):
        _check_recipe(batch.heatmaps[i], keras_io_gradcam(x[i : i + 1], model, "conv2", pred_index=cls)[0])
    assert (fn(x, 2).classes == 2).all()
    with pytest.raises(ProbeError, match="Class 4 does not exist"):
        fn(x, 4)
    with pytest.raises(ProbeError, match="Class 7 does not exist"):
        fn(x, [0, 1, 2, 3, 7, 0, 0, 0])


def test_one_trace_per_batch_shape_and_at_most_one_more_for_a_short_batch(varied):
    from maskviewer.inference.cam import CamFunction

    model, x = varied
    fn = CamFunction(_probe(model), "conv2", plus=True)
    first = fn(x)
    fn(x[::-1].copy(), 1)
    assert fn.traces == 1
    short = fn(x[:3])
    fn(x[3:6])
    assert fn.traces <= 2
    np.testing.assert_allclose(short.heatmaps, first.heatmaps[:3], atol=1e-5)


def test_predictions_come_from_the_same_pass(varied):
    from maskviewer.inference.cam import CamFunction

    model, x = varied
    with_outputs = CamFunction(_probe(model), "conv2", predictions=True)
    np.testing.assert_allclose(np.asarray(with_outputs(x).outputs), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert CamFunction(_probe(model), "conv2")(x).outputs is None


def test_batches_of_nested_and_multi_input_models():
    from maskviewer.inference.cam import cam_function, grad_cam

    model = model_zoo.nested()
    x = np.random.default_rng(1).random((3, *model.inputs[0].shape[1:]), dtype=np.float32)
    probe = _probe(model)
    batch = cam_function(probe, "backbone/inner_conv")(x)
    for i in range(3):
        np.testing.assert_allclose(batch.heatmaps[i], grad_cam(probe, x[i : i + 1], "backbone/inner_conv").heatmap, atol=1e-5)

    model = model_zoo.three_inputs()
    rng = np.random.default_rng(2)
    x = {k: rng.random((3, *t.shape[1:]), dtype=np.float32) for k, t in model._inputs_struct.items()}
    probe = _probe(model)
    keys = ["count", "seg"]
    batch = cam_function(probe, "attend", output_keys=keys, output="seg", plus=True)(x)
    assert batch.output == "seg"
    for i in range(3):
        one = grad_cam(probe, {k: v[i : i + 1] for k, v in x.items()}, "attend", output_keys=keys, output="seg", plus=True)
        assert batch.item(i).class_index == one.class_index
        np.testing.assert_allclose(batch.heatmaps[i], one.heatmap, atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_export_runs_one_pass_per_batch_and_equals_one_at_a_time(varied, tmp_path, monkeypatch, capsys, method):
    """No second forward pass (the mapper and predict refuse to run); maps as one image at a time."""
    from maskviewer.cli.export import export_main
    from maskviewer.inference import batch_maps, runner
    from maskviewer.inference.cam import grad_cam
    from maskviewer.io.export import load_npy, read_manifest

    model, x = varied
    model_path = tmp_path / "varied.keras"
    model.save(model_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(x[:6]):
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"im{i}.png")

    def refuse(*_a, **_k):
        raise AssertionError("a second forward pass ran")

    monkeypatch.setattr(batch_maps.BatchMapper, "run", refuse)
    monkeypatch.setattr(runner.ModelHost, "predict", refuse)
    out = tmp_path / "out"
    rc = export_main([str(folder), "--model", str(model_path), "--out", str(out), "--cam", method,
                      "--layer", "conv2", "--no-predictions", "--scale", "0..1", "--batch-size", "4", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    entries = sorted((e for e in read_manifest(out)["artifacts"] if e["kind"] == "cam"), key=lambda e: e["image"])
    assert len(entries) == 6
    assert not [e for e in read_manifest(out)["artifacts"] if e["kind"] == "prediction"]
    probe = _probe(model)
    for i, entry in enumerate(entries):
        one = grad_cam(probe, x[i : i + 1], "conv2", plus=method == "gradcam++")
        assert entry["class"] == one.class_index and entry["method"] == method
        np.testing.assert_allclose(load_npy(out, entry), one.heatmap, atol=1e-5)

    # with predictions: they come from the CAM's own pass and equal the model's
    out = tmp_path / "out_pred"
    rc = export_main([str(folder), "--model", str(model_path), "--out", str(out), "--cam", method,
                      "--layer", "conv2", "--scale", "0..1", "--batch-size", "4", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    preds = sorted((e for e in read_manifest(out)["artifacts"] if e["kind"] == "prediction"), key=lambda e: e["image"])
    np.testing.assert_allclose(np.stack([load_npy(out, e) for e in preds]), model(x[:6]).numpy(), rtol=1e-5, atol=1e-6)
