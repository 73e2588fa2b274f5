"""Right by default on real architectures: variable input sizes, the CAM layer, layer names,
float16 reductions, shapes of sub-classed models, no retracing on every call."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.cli.export_plan import suggest_layers
from maskviewer.core.heatmap import default_cam_layer, is_one_by_one
from maskviewer.io.export import read_manifest
from tests import model_zoo, real_zoo


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Build and save a model of ``real_zoo`` once per module: ``saved(name) -> path``."""
    import keras  # noqa: F401

    folder = tmp_path_factory.mktemp("real_defaults")
    paths = {}

    def get(name):
        if name not in paths:
            paths[name] = folder / f"{name}.keras"
            getattr(real_zoo, name)().save(paths[name])
        return paths[name]

    return get


_HOSTS: dict = {}


def _host(path):
    """The model at ``path`` loaded once per session (loading traces the model)."""
    from maskviewer.inference.runner import ModelHost

    if path not in _HOSTS:
        _HOSTS[path] = ModelHost()
        _HOSTS[path].load(path)
    return _HOSTS[path]


def test_variable_size_model_loads_and_runs(saved):
    host = _host(saved("inception_v3_variable"))  # the warm-up used to refuse it at 32×32
    (spec,) = host.info.inputs
    x = np.random.default_rng(0).random((1, 75, 75, 3), dtype=np.float32)
    (out,) = host.predict({spec.name: x}).values()
    assert out.shape == (1, 1, 1, 2048)


def test_variable_size_export_keeps_each_image_at_its_size(saved, tmp_path, capsys):
    from maskviewer.inference.warm_up import smallest_size

    host = _host(saved("variable_cnn"))
    assert smallest_size(host.loaded, host.pack_inputs) == 32  # 32 is accepted: no search
    rng = np.random.default_rng(1)
    images = tmp_path / "images"
    images.mkdir()
    sizes = {"wide": (40, 61), "tall": (52, 44)}
    for stem, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{stem}.png")
    out_dir = tmp_path / "out"
    rc = export_main(["--model", str(saved("variable_cnn")), "--out", str(out_dir), "--layer", "conv2d",
                      "--quiet", str(images)])
    assert rc == 0, capsys.readouterr().err
    shapes = {
        a["image"].rsplit("/", 1)[-1][:-4]: tuple(a["files"]["npy"]["shape"])
        for a in read_manifest(out_dir)["artifacts"] if a.get("layer") == "conv2d"
    }
    # a 3×3 VALID convolution with stride 2 on each image at its own size
    assert shapes == {s: ((h - 3) // 2 + 1, (w - 3) // 2 + 1) for s, (h, w) in sizes.items()}


def test_smallest_accepted_size_is_found_without_running(saved):
    import keras

    from maskviewer.inference.warm_up import sample_inputs

    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(1, 9, strides=3)(keras.layers.Conv2D(1, 7)(inp))
    x = keras.layers.Conv2D(1, 11)(keras.layers.MaxPooling2D(2)(x))
    from maskviewer.inference.describe import describe_model
    from maskviewer.inference.runner import ModelHost

    loaded = describe_model(keras.Model(inp, x), "m.keras")
    (arr,) = sample_inputs(loaded, ModelHost().pack_inputs).values()
    # out 1 <- 11 <- pool 22 <- (22-1)*3+9 = 72 <- 72+6 = 78
    assert arr.shape == (1, 78, 78, 1)


def test_default_cam_layer_feeds_the_explained_output(saved, tmp_path, capsys):
    host = _host(saved("two_outputs"))
    info = host.info
    cls, aux = default_cam_layer(info, "cls"), default_cam_layer(info, "aux")
    assert cls.path == "cls_conv" and "cls" in cls.feeds
    assert aux.path == "late" and aux.feeds == ("aux",)
    assert default_cam_layer(info).path == "cls_conv"  # the first output by default
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(image)
    rc = export_main(["--model", str(saved("two_outputs")), "--out", str(tmp_path / "o"), "--cam", "gradcam",
                      "--quiet", str(image)])
    err = capsys.readouterr().err
    assert rc == 0 and "failed" not in err.lower(), err
    rc = export_main(["--model", str(saved("two_outputs")), "--out", str(tmp_path / "o2"), "--cam", "gradcam",
                      "--layer", "late", "--output", "cls", str(image)])
    err = capsys.readouterr().err
    assert rc == 2 and "not computed from layer late" in err


def test_default_cam_layer_of_mobilenet_v3_is_larger_than_one_pixel(saved):
    info = _host(saved("mobilenet_v3_small")).info
    layer = default_cam_layer(info)
    assert layer is not None and not is_one_by_one(layer)
    assert layer.output_shape[1] > 1 and info.outputs[0].name in layer.feeds
    # the old default was the last spatial layer: a 1×1 map after the global pooling
    spatial = [entry for entry in info.iter_layers() if entry.is_spatial]
    assert is_one_by_one(spatial[-1])


def test_cam_on_a_one_by_one_layer_is_warned_of(saved, tmp_path, capsys):
    info = _host(saved("mobilenet_v3_small")).info
    flat = [entry.path for entry in info.iter_layers() if is_one_by_one(entry)][-2]
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    rc = export_main(["--model", str(saved("mobilenet_v3_small")), "--out", str(tmp_path / "o"), "--cam", "gradcam",
                      "--layer", flat, "--no-predictions", str(image)])
    err = capsys.readouterr().err
    assert rc == 0 and f"layer {flat} is 1×1" in err


def test_unknown_layer_suggests_the_nested_path_and_stays_short(saved, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    rc = export_main(["--model", str(saved("nested_backbone")), "--out", str(tmp_path / "o"),
                      "--layer", "block_13_expand", str(image)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mobilenetv2_1.00_96/block_13_expand" in err and "lists all layers" in err
    many = [f"cell_{i}/conv_{j}" for i in range(200) for j in range(20)]
    hints = suggest_layers("conv_3", many)
    assert 0 < len(hints) <= 5 and all(h.endswith("/conv_3") for h in hints)
    assert suggest_layers("cell_7/conv_3x", many)[0] == "cell_7/conv_3"


def test_float16_channel_means_equal_a_float32_mean(saved):
    from maskviewer.inference.probe import Reduction, get_probe

    host = _host(saved("mixed_float16"))
    probe = get_probe(host)
    x = np.random.default_rng(3).random((1, 64, 64, 3), dtype=np.float32)
    act = probe.activations(x, ["conv"])["conv"]
    assert "float16" in str(act.dtype)
    want = np.asarray(act, dtype=np.float32)[0].mean(axis=(0, 1), dtype=np.float64)
    for compiled in (True, False):
        maps = probe.reduce_all(x, ["conv"], Reduction("mean"), compiled=compiled)["conv"]
        np.testing.assert_allclose(maps.channel_means, want, rtol=1e-6)
        np.testing.assert_allclose(maps.map, np.asarray(act, np.float32)[0].mean(axis=-1), rtol=1e-6)


def test_subclassed_model_layer_shapes_are_measured_at_load(tmp_path):
    from maskviewer.inference.describe import describe_model
    from maskviewer.inference.runner import ModelHost
    from maskviewer.inference.warm_up import warm_up

    loaded = describe_model(model_zoo.subclassed(), tmp_path / "net.keras")
    assert all(layer.output_shape is None for layer in loaded.info.iter_layers())
    warm_up(ModelHost(), loaded)
    shapes = {layer.name: layer.output_shape for layer in loaded.info.iter_layers()}
    assert shapes == {"conv": (None, 20, 20, 6), "gate": (None, 20, 20, 1), "pool": (None, 6), "head": (None, 4)}
    assert loaded.info.outputs[0].shape == (None, 4)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_runs_of_a_convnext_do_not_retrace(saved):
    import tensorflow as tf

    handler = _Records()
    tf.get_logger().addHandler(handler)
    try:
        host = _host(saved("convnext_tiny"))  # grouped (depthwise) convolutions
        name = host.info.inputs[0].name
        x = np.random.default_rng(4).random((1, 64, 64, 3), dtype=np.float32) * 255
        first = host.predict({name: x})
        for _ in range(3):
            again = host.predict({name: x})
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in handler.messages if "retracing" in m], handler.messages
    for key in first:
        np.testing.assert_allclose(again[key], first[key], rtol=1e-5, atol=1e-6)
