"""Model loading and description: every format and kind, predictions equal model(x), bad files."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.errors import ModelLoadError, UnsafeModelError
from maskviewer.inference.runner import ModelHost


def _load(path, **kw):
    host = ModelHost()
    info = host.load(path, **kw)
    return host, info


def test_sequential_keras_and_h5(model_files, keras_mod):
    for key in ("sequential", "sequential_h5"):
        host, info = _load(model_files[key])
        assert info.kind == "sequential"
        assert [t.shape for t in info.inputs] == [(None, 28, 28, 1)]
        assert [(t.name, t.shape) for t in info.outputs] == [("probs", (None, 10))]
        names = [layer.name for layer in info.layers]
        assert names == ["conv_a", "pool", "conv_b", "gap", "probs"]
        assert info.find_layer("conv_a").output_shape == (None, 26, 26, 4)
        assert info.find_layer("conv_a").params == 3 * 3 * 1 * 4 + 4
        assert info.total_params == host.model.count_params()
        x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
        ref = keras_mod.saving.load_model(model_files[key], compile=False)(x, training=False)
        np.testing.assert_allclose(host.predict({info.inputs[0].name: x})["probs"], np.asarray(ref), rtol=1e-6)


def test_three_named_inputs_two_outputs(model_files, keras_mod):
    host, info = _load(model_files["three"])
    assert info.kind == "functional"
    assert {t.name: t.shape for t in info.inputs} == {
        "rgb": (None, 24, 24, 3),
        "density_a": (None, 24, 24, 1),
        "density_b": (None, 24, 24, 1),
    }
    assert {t.name for t in info.outputs} == {"count", "seg"}
    rng = np.random.default_rng(1)
    arrays = {t.name: rng.random((1,) + t.shape[1:], dtype=np.float32) for t in info.inputs}
    ours = host.predict(arrays)
    ref = keras_mod.saving.load_model(model_files["three"], compile=False)(arrays, training=False)
    for k in ("count", "seg"):
        np.testing.assert_allclose(ours[k], np.asarray(ref[k]), rtol=1e-5, atol=1e-6)


def test_nested_model_layers_are_expandable(model_files):
    _host, info = _load(model_files["nested"])
    backbone = info.find_layer("backbone")
    assert backbone is not None and backbone.class_name == "Sequential"
    assert [c.path for c in backbone.children] == ["backbone/inner_conv"]
    assert info.find_layer("backbone/inner_conv").output_shape == (None, 14, 14, 4)
    assert backbone.params == info.find_layer("backbone/inner_conv").params == 3 * 3 * 3 * 4 + 4


def test_subclassed_model_with_custom_objects_file(tmp_path, keras_mod):
    from maskviewer.inference.loading import load_custom_objects

    src = tmp_path / "custom.py"
    src.write_text(
        "import keras\n"
        "@keras.saving.register_keras_serializable(package='testpkg')\n"
        "class Scale(keras.layers.Layer):\n"
        "    def __init__(self, factor=2.0, **kw):\n"
        "        super().__init__(**kw); self.factor = factor\n"
        "    def call(self, x):\n"
        "        return x * self.factor\n"
        "    def get_config(self):\n"
        "        return {**super().get_config(), 'factor': self.factor}\n"
        "@keras.saving.register_keras_serializable(package='testpkg')\n"
        "class Net(keras.Model):\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(**kw)\n"
        "        self.conv = keras.layers.Conv2D(3, 3, name='conv')\n"
        "        self.scale = Scale(3.0, name='scale')\n"
        "        self.pool = keras.layers.GlobalAveragePooling2D()\n"
        "    def call(self, x):\n"
        "        return self.pool(self.scale(self.conv(x)))\n"
    )
    objects = load_custom_objects([src])
    net = objects["Net"]()
    x = np.random.default_rng(2).random((1, 12, 12, 2), dtype=np.float32)
    expected = np.asarray(net(x))
    path = tmp_path / "sub.keras"
    net.save(path)
    host, info = _load(path, custom_objects=objects)
    assert info.kind == "subclassed"
    assert info.inputs[0].shape == (None, 12, 12, 2)
    assert info.outputs[0].shape == (None, 3)
    np.testing.assert_allclose(host.predict({info.inputs[0].name: x})[info.outputs[0].name], expected, rtol=1e-6)


def test_missing_custom_layer_says_how_to_fix(tmp_path, keras_mod):
    @keras_mod.saving.register_keras_serializable(package="only_here")
    class Twice(keras_mod.layers.Layer):
        def call(self, x):
            return 2 * x

    m = keras_mod.Sequential([keras_mod.Input((4,)), Twice(name="twice")])
    path = tmp_path / "custom.keras"
    m.save(path)
    keras_mod.saving.get_custom_objects().pop("only_here>Twice")
    with pytest.raises(ModelLoadError, match="Custom Objects"):
        _load(path)


def test_savedmodel_is_inference_only(tmp_path, model_files, keras_mod):
    model = keras_mod.saving.load_model(model_files["rgb"], compile=False)
    folder = tmp_path / "exported"
    model.export(str(folder))
    with pytest.raises(UnsafeModelError, match="SavedModel"):  # a program: consent first
        _load(folder)
    host, info = _load(folder, safe_mode=False)
    assert info.kind == "savedmodel" and not info.probe_supported and info.layers == []
    assert "cannot be probed" in info.note and "inference only" in info.note
    assert info.inputs[0].shape[1:] == (32, 32, 3)
    x = np.random.default_rng(3).random((1, 32, 32, 3), dtype=np.float32)
    out = host.predict({info.inputs[0].name: x})
    (value,) = out.values()
    np.testing.assert_allclose(value, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("junk.keras", b"this is not a zip", "not a Keras model file"),
        ("junk.h5", b"\x00" * 64, "not an HDF5 file"),
        ("notes.txt", b"hello", "not a model file"),
    ],
)
def test_bad_model_files_get_clear_messages(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        _load(path)


def test_truncated_keras_file(tmp_path, model_files):
    data = model_files["sequential"].read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        _load(path)


def test_folder_that_is_not_a_savedmodel(tmp_path):
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        _load(tmp_path)


def test_models_with_the_packages_own_layers_load_without_custom_objects(tmp_path, keras_mod):
    import subprocess
    import sys

    # build and save in another process, so this one has not imported the layer module yet
    code = (
        "import keras, numpy as np\n"
        "from maskviewer.inference.masked_conv import MaskedConv2D\n"
        "x = keras.Input((6, 6, 1), name='img'); m = keras.Input((3, 3), name='kmask')\n"
        "y = MaskedConv2D(2, 3, name='mconv')([x, m])\n"
        f"keras.Model([x, m], y).save({str(tmp_path / 'masked.keras')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    # and load it in a fresh process too, where nothing but the loader could register the layer
    load = (
        "from maskviewer.inference.runner import ModelHost\n"
        f"info = ModelHost().load({str(tmp_path / 'masked.keras')!r})\n"
        "print(info.find_layer('mconv').class_name)\n"
    )
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("MaskedConv2D")
