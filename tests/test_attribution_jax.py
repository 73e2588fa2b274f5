"""Every attribution method gives the same maps on Keras's JAX backend as on TensorFlow (where
JAX is installed): the JAX run is a child process (a process has one Keras backend)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed"),
    pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning"),
]

#: the maps of every method (traced and eager) for a saved model, written to an .npz
SCRIPT = """
import sys
import numpy as np
import keras
from maskviewer.inference.attribution import METHOD_NAMES, AttributionOptions, attribution_function

model = keras.saving.load_model(sys.argv[1])
x = np.random.default_rng(0).random((2, 20, 20, 3), dtype=np.float32)
opts = AttributionOptions(smooth_samples=4, ig_steps=5, ig_baseline="blurred", batch=3)
maps = {}
for method in METHOD_NAMES:
    for compiled in (True, False):
        fn = attribution_function(model, method, "conv2", options=opts, compiled=compiled)
        maps[f"{method}_{compiled}"] = fn(x, [1, 2]).maps
np.savez(sys.argv[2], **maps)
print("OK backend=" + keras.backend.backend())
"""


def _model():
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((20, 20, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    f = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(4, name="logits")(f))


def test_every_method_on_jax_equals_tensorflow(tmp_path):
    path = tmp_path / "m.keras"
    _model().save(path)
    runs = {}
    for backend in ("tensorflow", "jax"):
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
        out = tmp_path / f"{backend}.npz"
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(out)], capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"OK backend={backend}" in done.stdout
        runs[backend] = np.load(out)
    tf_maps, jax_maps = runs["tensorflow"], runs["jax"]
    assert sorted(tf_maps.files) == sorted(jax_maps.files)
    for key in tf_maps.files:
        scale = max(float(np.abs(tf_maps[key]).max()), 1e-12)
        assert scale > 1e-9, key  # a map, not zeros against zeros
        np.testing.assert_allclose(jax_maps[key] / scale, tf_maps[key] / scale, atol=1e-5, err_msg=key)
