"""Run the probe and Grad-CAM on Keras's JAX backend and compare with plain Keras.

Run with ``KERAS_BACKEND=jax`` (tests/test_jax_backend.py does, where JAX is installed); prints
``OK`` and the largest differences, or raises.
"""

from __future__ import annotations

import os

assert os.environ.get("KERAS_BACKEND") == "jax", "run with KERAS_BACKEND=jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from maskviewer.inference.backend import init_backend  # noqa: E402
from maskviewer.inference.cam import cam_function, grad_cam  # noqa: E402
from maskviewer.inference.probe import ActivationProbe, Reduction  # noqa: E402

device = init_backend()
keras.utils.set_random_seed(0)
inner = keras.Sequential(
    [keras.Input((16, 16, 8)), keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner_conv")],
    name="block",
)
inp = keras.Input((16, 16, 3), name="img")
x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
x = inner(x)
last = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(x)
out = keras.layers.Dense(4, activation="softmax", name="probs")(keras.layers.GlobalAveragePooling2D()(last))
model = keras.Model(inp, out)
xb = np.random.default_rng(1).random((1, 16, 16, 3), dtype=np.float32)

probe = ActivationProbe(model)
worst = 0.0
for path, ref_layer_out in (("conv1", "conv1"), ("last_conv", "last_conv")):
    ref = np.asarray(keras.Model(model.inputs, model.get_layer(ref_layer_out).output)(xb))
    got = np.asarray(probe.activations(xb, [path])[path])
    worst = max(worst, float(np.abs(got - ref).max()))
    lm = probe.reduce(xb, path, Reduction("mean"))
    worst = max(worst, float(np.abs(np.asarray(lm.map) - ref[0].mean(axis=-1)).max()))
# the nested layer, against the inner model run on conv1's output
conv1 = keras.Model(model.inputs, model.get_layer("conv1").output)(xb)
ref_inner = np.asarray(inner(conv1))
got_inner = np.asarray(probe.activations(xb, ["block/inner_conv"])["block/inner_conv"])
worst = max(worst, float(np.abs(got_inner - ref_inner).max()))
assert worst < 1e-5, f"probe differs from plain Keras by {worst}"

# Grad-CAM: the keras-io recipe with jax.grad in place of GradientTape
grad_model = keras.Model(model.inputs, [model.get_layer("last_conv").output, model.output])
conv_out, preds = grad_model(xb)
cls = int(np.argmax(np.asarray(preds)[0]))


def score_of_conv(c):
    y = model.get_layer("probs")(jnp.mean(c, axis=(1, 2)))
    return y[0, cls]


grads = jax.grad(score_of_conv)(jnp.asarray(conv_out))
pooled = jnp.mean(grads, axis=(0, 1, 2))
heat = np.asarray(jnp.maximum(jnp.asarray(conv_out)[0] @ pooled, 0))
heat = heat / heat.max()
cam = grad_cam(probe, xb, "last_conv", class_index=cls)
cam_map = np.asarray(cam.heatmap)
cam_err = float(np.abs(cam_map - heat).max())
assert cam_err < 1e-5, f"Grad-CAM differs from the recipe by {cam_err}"

# the traced batch (jax.jit) equals one image at a time, Grad-CAM++ included
xs = np.random.default_rng(2).random((3, 16, 16, 3), dtype=np.float32)
batch_err = 0.0
for plus in (False, True):
    batch = cam_function(probe, "last_conv", plus=plus)(xs)
    for i in range(len(xs)):
        one = grad_cam(probe, xs[i : i + 1], "last_conv", plus=plus)
        assert one.class_index == batch.item(i).class_index
        batch_err = max(batch_err, float(np.abs(np.asarray(batch.heatmaps[i]) - np.asarray(one.heatmap)).max()))
assert batch_err < 1e-5, f"the batched CAM differs from one image at a time by {batch_err}"
print(f"OK backend={device.backend} device={device.kind} probe_err={worst:.2e} gradcam_err={cam_err:.2e} "
      f"batch_err={batch_err:.2e}")
