"""Speed of every attribution method against one compiled forward pass, in one run.

The model is ResNet-like at 224×224 (a 7×7/2 stem and max pooling, four stages of two basic
residual blocks of widths 32, 64, 128, 256, batch normalisation, global pooling, 10 classes;
seeded random weights, batch-norm statistics set from the images so that maps and classes
differ as in a trained model). On the CPU it reports, best of ``--repeats`` after a warm-up
call (tracing excluded; Score-CAM and Occlusion once):

* ``forward``: one compiled forward pass on one image (``tf.function`` of ``model(x)``),
  timed alternately with each method (the machine may be shared) and divided into it;
* each method on one image through :func:`maskviewer.inference.attribution.attribution_function`
  (CAMs on the last stage's output, 7×7×256; Occlusion with a 28-pixel window, stride 14:
  225 occluded inputs), and its time ÷ forward;
* Grad-CAM ÷ forward (target ≤ 3), and the window's old eager Grad-CAM
  (:func:`maskviewer.inference.cam.grad_cam`) ÷ forward, for the before/after;
* the first Grad-CAM on a layer not asked before, eager and traced (tracing included);
* SmoothGrad with 16 samples ÷ one compiled forward+backward pass (the gradient of each
  row's top score with respect to the input) on a batch of 16, and IG with 32 steps ÷ the same
  on a batch of 32 (targets ≤ 1.3).
* Grad-CAM's deletion and insertion curves (32 steps each) and its sanity check (6 steps of
  cascading randomisation on a copy of the model) ÷ forward.

Run: ``PYTHONPATH=. python benchmarks/bench_methods.py [--repeats 5] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIZE = 224
LAYER = "stage4_out"


def resnet_like(images: np.ndarray):
    """The benchmark's model (see the module docs)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)

    def block(x, width: int, stride: int, name: str):
        y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_c1")(x)
        y = layers.ReLU()(layers.BatchNormalization(name=f"{name}_bn1")(y))
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_c2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        if stride != 1 or x.shape[-1] != width:
            x = layers.BatchNormalization(name=f"{name}_bns")(
                layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_cs")(x))
        return layers.ReLU(name=f"{name}_out")(layers.Add()([x, y]))

    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Conv2D(32, 7, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(layers.ReLU()(layers.BatchNormalization()(x)))
    for s, width in enumerate((32, 64, 128, 256), start=1):
        x = block(x, width, 1 if s == 1 else 2, f"stage{s}a")
        x = block(x, width, 1, f"stage{s}" if s < 4 else "stage4")
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(10, name="logits")(x))
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)  # batch-norm statistics from the images
    for layer in norms:
        layer.momentum = 0.99
    return model


def images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((n, 8, 8, 3))
    smooth = np.kron(base, np.ones((1, SIZE // 8, SIZE // 8, 1)))
    return (smooth * 0.7 + rng.random((n, SIZE, SIZE, 3)) * 0.3).astype(np.float32)


def paired(a, b, repeats: int) -> tuple[float, float]:
    """The best times of ``a`` and ``b`` run alternately (after a warm-up call of each: tracing
    excluded), so that a busy machine slows both alike."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return min(ta), min(tb)


def compiled_forward_backward(model):
    """One compiled pass: the gradient of each row's top score with respect to the input."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
            total = tf.reduce_sum(tf.reduce_max(y, axis=-1))
        return tape.gradient(total, x)

    return lambda x: run(tf.constant(x)).numpy()


def faithfulness_figures(model, x: np.ndarray, run_forward, repeats: int, fig: dict) -> None:
    """Grad-CAM's deletion + insertion curves (32 steps each, batches of 16) and its sanity
    check (a copy randomised in 6 steps, the map recomputed at each) ÷ one compiled forward."""
    from maskviewer.inference.faithfulness import faithfulness_curves, method_maps
    from maskviewer.inference.sanity import sanity_check

    cam = method_maps(model, "gradcam", LAYER)(x, None)
    cls = int(cam.classes[0])
    curves = lambda: faithfulness_curves(model, lambda d: d["image"], {"image": x}, "image",  # noqa: E731
                                         cam.maps[0], cls, steps=32)
    t, fwd = paired(curves, run_forward, repeats)
    fig["curves_32_s"], fig["curves_32_ratio"] = t, t / fwd
    print(f"deletion + insertion, 2 x 33 inputs: {t * 1e3:.0f} ms, {t / fwd:.1f}x forward")
    check = lambda: sanity_check(model, x, lambda m: method_maps(m, "gradcam", LAYER), cls, max_steps=6)  # noqa: E731
    t, fwd = paired(check, run_forward, 1)
    fig["sanity_6_s"], fig["sanity_6_ratio"] = t, t / fwd
    print(f"sanity check, 6 steps (copy + 7 Grad-CAMs): {t * 1e3:.0f} ms, {t / fwd:.1f}x forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import tensorflow as tf

    from maskviewer.inference.attribution import (
        METHOD_NAMES,
        AttributionOptions,
        attribution_function,
    )
    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import ActivationProbe

    data = images(32)
    model = resnet_like(data)
    x = data[:1]
    forward = tf.function(lambda t: model(t, training=False), reduce_retracing=True, autograph=False)
    run_forward = lambda: forward(tf.constant(x)).numpy()  # noqa: E731
    probe = ActivationProbe(model)
    opts = AttributionOptions(smooth_samples=16, ig_steps=32, batch=32)
    fig: dict[str, float] = {}
    forwards = []
    for method in METHOD_NAMES:
        fn = attribution_function(probe, method, LAYER, options=opts)
        t, fwd = paired(lambda fn=fn: fn(x), run_forward, 1 if method in ("scorecam", "occlusion") else args.repeats)
        forwards.append(fwd)
        fig[f"{method}_s"], fig[f"{method}_ratio"] = t, t / fwd
        print(f"{method:11s} {t * 1e3:9.1f} ms  {t / fwd:7.2f}x forward ({fwd * 1e3:.1f} ms beside it)")
    eager, fwd = paired(lambda: grad_cam(probe, x, LAYER), run_forward, args.repeats)
    forwards.append(fwd)
    fig["forward_s"] = min(forwards)
    fig["gradcam_eager_ratio"] = eager / fwd
    print(f"compiled forward, 1 image: {fig['forward_s'] * 1e3:.1f} ms (best of all)")
    print(f"Grad-CAM ÷ forward: {fig['gradcam_ratio']:.2f} (target <= 3); "
          f"the eager one-image path before: {eager / fwd:.2f}")
    t0 = time.perf_counter()
    attribution_function(probe, "gradcam", "stage3_out", compiled=False)(x)
    t1 = time.perf_counter()
    attribution_function(probe, "gradcam", "stage3_out")(x)
    t2 = time.perf_counter()
    fig["first_call_eager_s"], fig["first_call_traced_s"] = t1 - t0, t2 - t1
    print(f"first Grad-CAM on a new layer: eager {(t1 - t0) * 1e3:.0f} ms, traced {(t2 - t1) * 1e3:.0f} ms "
          "(tracing included; the window runs a request eagerly first, traced when asked again)")
    fb = compiled_forward_backward(model)
    for method, n in (("smoothgrad", 16), ("ig", 32)):
        fn = attribution_function(probe, method, options=opts)
        t, ref = paired(lambda fn=fn: fn(x), lambda n=n: fb(data[:n]), args.repeats)
        fig[f"fwd_bwd_{n}_s"], fig[f"{method}_vs_fwd_bwd"] = ref, t / ref
        print(f"{method} ({t * 1e3:.0f} ms) ÷ compiled forward+backward on a batch of {n} "
              f"({ref * 1e3:.0f} ms): {t / ref:.2f} (target <= 1.3)")
    faithfulness_figures(model, x, run_forward, args.repeats, fig)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1)


if __name__ == "__main__":
    main()
