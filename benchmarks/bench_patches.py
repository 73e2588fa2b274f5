"""Running all patches of an image through the model in the app's batches, against one call.

For each case the app's runner (:func:`maskviewer.inference.patch_runner.run_patches`: patch
extraction, the batched resize/scaling of every patch, and the model calls in the app's
batches through ``ModelHost.predict``) is timed against one ``model(batch, training=False)``
call on the same stacked, already prepared patches. Target: ratio <= 1.2.

Timings interleave the two and take medians, since these machines are shared and noisy.

    python benchmarks/bench_patches.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def digits_like(keras, size: int, channels: int, classes: int, width: int):
    """A small CNN like the bundled digits model."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, channels), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(width * 2, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(width * 2, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)


def bench_case(name, model, image, spec, mapping, repeats):
    from maskviewer.core.image import ImageData
    from maskviewer.core.patches import extract_patches, make_grid, prepare_patches
    from maskviewer.inference.loading import describe_model
    from maskviewer.inference.patch_runner import plan_feed, run_patches
    from maskviewer.inference.runner import ModelHost

    host = ModelHost()
    host.loaded = describe_model(model, f"{name}.keras")
    img = ImageData(image)
    grid = make_grid(spec, img.height, img.width)
    feed = plan_feed(host.info, {"image": mapping})
    shape = host.info.inputs[0].shape
    batch = prepare_patches(extract_patches(img.array, grid), img.value_max, mapping, shape)

    calls = []

    def predict(arrays):
        calls.append(len(next(iter(arrays.values()))))
        return host.predict(arrays)

    def app_run():
        calls.clear()
        return run_patches(predict, img, grid, feed)

    def one_call():
        return np.asarray(model(batch, training=False))

    ref = one_call()
    run = app_run()  # warm up both paths
    np.testing.assert_allclose(run.outputs["probs"], ref, rtol=1e-4, atol=1e-5)
    t_app, t_one, t_prep = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        app_run()
        t_app.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        one_call()
        t_one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prepare_patches(extract_patches(img.array, grid), img.value_max, mapping, shape)
        t_prep.append(time.perf_counter() - t0)
    app, one, prep = (statistics.median(t) for t in (t_app, t_one, t_prep))
    print(
        f"{name:<34} {grid.count:>5} patches  batches {'+'.join(map(str, calls)):<13}  "
        f"app {app * 1000:8.1f} ms  one model(batch) {one * 1000:8.1f} ms  "
        f"(extract+prepare {prep * 1000:6.1f} ms)  ratio {app / one:5.2f}"
    )
    return app / one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import keras

    from maskviewer.core.mapping import InputMapping
    from maskviewer.core.patches import PatchSpec, preset_corners
    from maskviewer.inference.backend import init_backend

    print(f"device: {init_backend().describe()}")
    rng = np.random.default_rng(0)
    grey = digits_like(keras, 28, 1, 10, 16)
    rgb = digits_like(keras, 64, 3, 20, 32)
    cases = [
        (
            "corners 18 on 28 -> 28x28 grey",
            grey,
            rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
            preset_corners(28, 28, 18),
            InputMapping(resize="stretch", scale="0..1"),
        ),
        (
            "sliding 28/4 on 224 grey",
            grey,
            rng.integers(0, 256, (224, 224, 1), dtype=np.uint8),
            PatchSpec((28, 28), (4, 4)),
            InputMapping(resize="none", scale="0..1"),
        ),
        (
            "sliding 18/6 on 224 -> 28 grey",
            grey,
            rng.integers(0, 256, (224, 224, 1), dtype=np.uint8),
            PatchSpec((18, 18), (6, 6)),
            InputMapping(resize="stretch", scale="0..1"),
        ),
        (
            "SAME 48/16 rate 2 on 512 -> 64 RGB",
            rgb,
            rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
            PatchSpec((48, 48), (16, 16), (2, 2), "SAME"),
            InputMapping(resize="stretch", scale="mean/std"),
        ),
    ]
    ratios = [bench_case(*case, args.repeats) for case in cases]
    print(f"worst ratio {max(ratios):.2f} (target <= 1.2); figures are noisy on a shared machine")


if __name__ == "__main__":
    main()
