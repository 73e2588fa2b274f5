"""Speed of ``maskviewer export --cam`` against a batched, compiled keras-io Grad-CAM loop.

64 seeded random 96x96 RGB images (PNG) go through MobileNetV2 (``weights=None``, 96x96
input, batch-norm statistics set from the images, saved as ``.keras`` in a temporary folder),
in batches of 32. Both sides compute, for every image, the Grad-CAM (or Grad-CAM++ with
``--plus``) of its top class on ``out_relu``:

* export   ``maskviewer export FOLDER --model m.keras --cam gradcam --layer out_relu
           --no-predictions --scale 0..1`` in this process (TensorFlow imported, the model
           load excluded: the figure is the manifest's own timing of the image loop, which
           includes reading the PNGs, tracing, and writing the heatmap and overlay PNGs and the
           stacked ``.npy``). Also with ``--format npy --no-overlay`` (the raw maps only).
* recipe   the keras-io recipe (https://keras.io/examples/vision/grad_cam/) over the batch:
           PIL loads the PNGs, /255, one ``tf.function`` runs ``Model(inputs, [layer output,
           output])`` under a ``GradientTape``, takes each image's top class, and returns the
           normalised CAMs, copied to numpy. Nothing is written.

Both sides trace afresh in every run (a new model load / a new ``tf.function``), and the best
of ``--repeats`` runs of each (alternated) is reported; the ratio export / recipe is the figure
of merit (target <= 1.3). The export's maps are checked equal to the recipe's (1e-5). The
one-image-at-a-time path (:func:`maskviewer.inference.cam.grad_cam`, eager, the window's
path and what the export ran per image before) is timed once on the same images, for the
before/after. Run: ``PYTHONPATH=. python benchmarks/bench_cam_export.py [--plus]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

LAYER = "out_relu"
SIZE = 96


def make_inputs(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], Path]:
    """``n`` seeded random PNGs and a MobileNetV2 (random weights, seeded) saved as .keras."""
    import keras
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        # smooth blobs plus noise, so that images differ in their top class and CAM
        base = rng.random((6, 6, 3)) * 255
        img = np.kron(base, np.ones((16, 16, 1))) * 0.7 + rng.random((SIZE, SIZE, 3)) * 255 * 0.3
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(img.astype(np.uint8)).save(p)
        paths.append(p)
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), weights=None, classes=10)
    # with fresh batch-norm statistics the activations of random weights fade to ~1e-12 and
    # every image has the same top class: set the statistics from these images (one pass in
    # training mode with momentum 0), so that maps and top classes differ as in a real model
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in paths]), training=True)
    for layer in norms:
        layer.momentum = 0.999
    model_path = folder.parent / "mobilenetv2.keras"
    model.save(model_path)
    return paths, model_path


def recipe_loop(model_path: Path, paths: list[Path], batch: int, plus: bool) -> tuple[float, np.ndarray]:
    """Seconds (tracing included) and the CAMs of the batched, compiled keras-io recipe."""
    import keras
    import tensorflow as tf
    from PIL import Image

    model = keras.saving.load_model(model_path, compile=False)
    grad_model = keras.Model(model.inputs, [model.get_layer(LAYER).output, model.output])

    @tf.function
    def cams(x):
        with tf.GradientTape() as tape:
            conv, preds = grad_model(x, training=False)
            top = tf.argmax(preds, axis=-1)
            score = tf.gather(preds, top, axis=1, batch_dims=1)
        grads = tape.gradient(score, conv)
        if plus:  # Grad-CAM++, exponential-score closed form
            g2 = grads**2
            denom = 2.0 * g2 + tf.reduce_sum(conv, axis=(1, 2), keepdims=True) * g2 * grads
            alpha = tf.math.divide_no_nan(g2, denom)
            weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))
        else:
            weights = tf.reduce_mean(grads, axis=(1, 2))
        heat = tf.nn.relu(tf.einsum("bhwc,bc->bhw", conv, weights))
        return tf.math.divide_no_nan(heat, tf.reduce_max(heat, axis=(1, 2), keepdims=True))

    t0 = time.perf_counter()
    out = []
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        x = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0 for p in chunk])
        out.append(cams(x).numpy())
    return time.perf_counter() - t0, np.concatenate(out)


def export_in_process(folder: Path, model_path: Path, out: Path, batch: int, plus: bool, *extra: str) -> tuple[float, dict]:
    """(the manifest's image-loop seconds, the manifest) of one in-process export."""
    from maskviewer.cli.export import export_main

    rc = export_main([
        str(folder), "--model", str(model_path), "--out", str(out), "--batch-size", str(batch),
        "--cam", "gradcam++" if plus else "gradcam", "--layer", LAYER, "--no-predictions",
        "--scale", "0..1", "--quiet", *extra,
    ])
    assert rc == 0, rc
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["seconds"], manifest


def export_maps(out: Path, manifest: dict) -> np.ndarray:
    """The exported CAMs, in image order."""
    from maskviewer.io.export import load_npy

    entries = [e for e in manifest["artifacts"] if e["kind"] == "cam"]
    entries.sort(key=lambda e: Path(e["image"]).name)
    return np.stack([load_npy(out, e) for e in entries])


def per_image_loop(model_path: Path, paths: list[Path], plus: bool) -> tuple[float, np.ndarray]:
    """Seconds and CAMs of :func:`grad_cam`, one image at a time, eagerly."""
    import keras
    from PIL import Image

    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import ActivationProbe

    probe = ActivationProbe(keras.saving.load_model(model_path, compile=False))
    t0 = time.perf_counter()
    out = []
    for p in paths:
        x = np.asarray(Image.open(p).convert("RGB"), np.float32)[None] / 255.0
        out.append(grad_cam(probe, x, LAYER, plus=plus).heatmap)
    return time.perf_counter() - t0, np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side; the best is reported")
    ap.add_argument("--plus", action="store_true", help="Grad-CAM++ instead of Grad-CAM")
    ap.add_argument("--no-per-image", action="store_true", help="skip the one-image-at-a-time timing")
    ap.add_argument("--atol", type=float, default=1e-5,
                    help="largest difference allowed between the export's maps and the recipe's "
                         "(one image at a time differs from a batch of 32 by about 2e-5 on MobileNetV2)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_cam_"))
    try:
        folder = tmp / "images"
        folder.mkdir()
        from maskviewer.inference.backend import init_backend

        device = init_backend()
        paths, model_path = make_inputs(folder, args.images)
        recipe_t, export_t, npy_t = [], [], []
        ref = got = None
        for r in range(args.repeats):  # alternate, so both see the same machine load
            seconds, ref = recipe_loop(model_path, paths, args.batch, args.plus)
            recipe_t.append(seconds)
            seconds, manifest = export_in_process(folder, model_path, tmp / f"out{r}", args.batch, args.plus)
            export_t.append(seconds)
            got = export_maps(tmp / f"out{r}", manifest)
            npy_t.append(export_in_process(folder, model_path, tmp / f"npy{r}", args.batch, args.plus,
                                           "--format", "npy", "--no-overlay")[0])
        assert ref is not None and got is not None and got.shape == ref.shape, (got, ref)
        err = float(np.abs(got - ref).max())
        assert err <= args.atol, f"the export's CAMs differ from the recipe's by {err}"
        classes = len({e["class"] for e in manifest["artifacts"] if e["kind"] == "cam"})
        n, method = args.images, "Grad-CAM++" if args.plus else "Grad-CAM"
        best_recipe, best_export, best_npy = min(recipe_t), min(export_t), min(npy_t)
        print(f"device: {device.describe()}; {method} of {n} images {SIZE}x{SIZE} on MobileNetV2 {LAYER}, "
              f"batch {args.batch}, best of {args.repeats} (tracing included); {classes} distinct top classes; "
              f"max |export - recipe| = {err:.1e}")
        print(f"keras-io recipe, batched + compiled  {best_recipe:7.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in recipe_t))
        print(f"maskviewer export (png + npy)        {best_export:7.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in export_t))
        print(f"maskviewer export (npy only)         {best_npy:7.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in npy_t))
        print(f"ratio export / recipe: {best_export / best_recipe:.2f} (png + npy), "
              f"{best_npy / best_recipe:.2f} (npy only)  (target <= 1.3)")
        if not args.no_per_image:
            seconds, maps = per_image_loop(model_path, paths, args.plus)
            per_err = float(np.abs(maps - ref).max())
            print(f"one image at a time, eager (grad_cam) {seconds:6.3f} s   ratio to the recipe {seconds / best_recipe:.1f}; "
                  f"max |it - recipe| = {per_err:.1e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
