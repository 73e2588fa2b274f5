"""Throughput of ``maskviewer export`` against a plain Keras loop computing the same maps.

A folder of 200 digit images (28x28 PNG, from the demo's sample set) goes through the demo
model (resources/demo/digits_cnn.keras). Both sides compute, for every image, the mean-over-
channels map of every spatial layer (conv1, pool1, conv2, pool2, conv3) and the class
probabilities, in batches of 32:

* export     ``maskviewer export FOLDER --model digits_cnn.keras --out DIR`` with its defaults,
             run in this process (TensorFlow already imported; model loading and the layer
             check excluded: the images-per-second figure is the manifest's own timing of the
             image loop). Besides computing the maps it writes, per image and layer, a colour-
             mapped PNG and an overlay PNG (10 pictures per image), the maps and class scores as
             rows of one stacked ``.npy`` per layer, and the manifest.
* keras      a plain loop: PIL loads the PNGs, /255, one compiled ``tf.function`` returns the
             layers' channel means and the probabilities, copied to numpy. Nothing is written.

A second plain loop also computes, in the same traced function, the pixels of the pictures the
export writes (normalised, stretched, colour-mapped heatmaps and their overlays; see
``keras_pictures_loop``), so that its ratio shows the cost of encoding and writing alone.

Both timings include their first call's tracing (each traces the batch of 32 and the last
batch of 8). The ratio export / keras is the figure of merit (target >= 0.7). More export
runs show where the time goes: one ``.npy`` file per image and map (16 files per image),
pictures only, raw maps only, and the whole pipeline with the file writing skipped (the
writer replaced by a no-op in this process). The whole command line as a fresh process
(TensorFlow import and model loading included) is timed too. ``--tmp /dev/shm`` puts the
files on a RAM disk, to tell the disk's share from the program's.

``--encoders`` times only the PNG encoding: the export's own encoder
(:func:`maskviewer.io.export.encoding.encode_png`) against Pillow's on the pictures an export
writes (heatmaps, overlays and legends of the same folder), at equal output (the same decoded
pixels; Pillow both at the same zlib levels and at its default), and reports the ratio.
Figures are noisy on a shared machine. Run: ``python benchmarks/bench_export.py [--images N]
[--encoders]``.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"
MODEL = DEMO / "digits_cnn.keras"
LAYERS = ["conv1", "pool1", "conv2", "pool2", "conv3"]


def make_folder(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    digits = np.load(DEMO / "digits_test_x.npy")
    paths = []
    for i in range(n):
        p = folder / f"digit_{i:04d}.png"
        Image.fromarray(digits[i % len(digits), :, :, 0]).save(p)
        paths.append(p)
    return paths


def _plain_model():
    import keras

    model = keras.saving.load_model(MODEL, compile=False)
    return keras.Model(model.inputs, [model.get_layer(n).output for n in LAYERS] + [model.output])


def _run_plain(paths: list[Path], batch: int, fn) -> tuple[float, list[np.ndarray], int]:
    """Time ``fn`` over ``paths`` in batches (PIL loads, /255): seconds, the first batch's
    results, and how many result rows came back."""
    from PIL import Image

    t0 = time.perf_counter()
    kept, first = 0, []
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        x = np.stack([np.asarray(Image.open(p).convert("L"), np.float32)[:, :, None] / 255.0 for p in chunk])
        result = [r.numpy() for r in fn(x)]
        kept += sum(r.shape[0] for r in result)
        first = first or result
    return time.perf_counter() - t0, first, kept


def keras_loop(paths: list[Path], batch: int) -> float:
    """Seconds for the plain loop over ``paths`` (maps computed, nothing written)."""
    import tensorflow as tf

    sub = _plain_model()

    @tf.function
    def maps(x):
        outs = sub(x, training=False)
        return [tf.reduce_mean(o, axis=-1) for o in outs[:-1]] + [outs[-1]]

    seconds, _first, kept = _run_plain(paths, batch, maps)
    assert kept == len(paths) * (len(LAYERS) + 1)
    return seconds


def keras_pictures_loop(paths: list[Path], batch: int, check_against: Path | None = None) -> float:
    """Seconds for a plain loop that also makes the export's pictures, in TensorFlow, unwritten.

    Per image and layer: the channel mean normalised to its own min..max, stretched to the
    image (``tf.image.resize``), looked up in the viridis table, and blended over the image at
    opacity 0.5: the heatmap and overlay pixels the export writes as PNG, computed on the
    device in the same traced function as the maps, copied to numpy, not encoded or written.
    """
    import tensorflow as tf
    from PIL import Image

    from maskviewer.core.heatmap import colormap_lut

    sub = _plain_model()
    lut = tf.constant(colormap_lut("viridis"), tf.float32)

    @tf.function
    def pictures(x):
        outs = sub(x, training=False)
        size = tf.shape(x)[1:3]
        rgb = tf.repeat(tf.round(x * 255.0), 3, axis=-1)
        result = [outs[-1]]
        for o in outs[:-1]:
            m = tf.reduce_mean(o, axis=-1, keepdims=True)
            lo = tf.reduce_min(m, axis=(1, 2, 3), keepdims=True)
            hi = tf.reduce_max(m, axis=(1, 2, 3), keepdims=True)
            unit = tf.math.divide_no_nan(m - lo, hi - lo)
            big = tf.image.resize(unit, size, method="bilinear")[..., 0]
            heat = tf.gather(lut, tf.cast(tf.clip_by_value(big, 0.0, 1.0) * 255.0 + 0.5, tf.int32))
            over = tf.cast(tf.clip_by_value(rgb * 0.5 + heat * 0.5 + 0.5, 0.0, 255.0), tf.uint8)
            result += [m[..., 0], tf.cast(heat, tf.uint8), over]
        return result

    seconds, first, kept = _run_plain(paths, batch, pictures)
    assert kept == len(paths) * (3 * len(LAYERS) + 1)
    if check_against is not None:  # the same pixels as the export's PNGs (float rounding apart)
        for k, layer in enumerate(LAYERS):
            base = check_against / paths[0].stem / f"activation_{layer}_mean"
            heat = np.asarray(Image.open(f"{base}.png"))[..., :3].astype(int)
            over = np.asarray(Image.open(f"{base}_overlay.png")).astype(int)
            assert np.abs(heat - first[2 + 3 * k][0]).max() <= 1, layer
            assert np.abs(over - first[3 + 3 * k][0]).max() <= 1, layer
    return seconds


def export_in_process(folder: Path, out: Path, batch: int, *extra: str) -> tuple[float, float, dict]:
    """(image-loop seconds from the manifest, wall seconds of the whole call, manifest)."""
    from maskviewer.cli.export import export_main

    t0 = time.perf_counter()
    rc = export_main([str(folder), "--model", str(MODEL), "--out", str(out), "--batch-size", str(batch), "--quiet", *extra])
    wall = time.perf_counter() - t0
    assert rc == 0, rc
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["seconds"], wall, manifest


def encoder_comparison(folder: Path, out: Path, batch: int, repeats: int) -> None:
    """Time the export's PNG encoder against Pillow's on the pictures of an export of ``folder``."""
    from PIL import Image

    from maskviewer.io.export.encoding import encode_png, encode_png_pillow

    export_in_process(folder, out, batch, "--legend")
    pictures = [np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))]
    encoders = {
        "export's encoder": encode_png,
        "Pillow, same zlib levels": encode_png_pillow,
        "Pillow, default level 6": lambda a: encode_png_pillow(a, 6),
    }
    groups: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    for a in pictures:
        groups[f"{a.shape[1]}x{a.shape[0]}x{a.shape[2] if a.ndim == 3 else 1}"].append(a)
    groups["all"] = pictures
    sizes = {}
    for name, encode in encoders.items():  # equal output: every picture decodes to its pixels
        data = [encode(a) for a in pictures]
        sizes[name] = sum(len(b) for b in data)
        for a, b in zip(pictures, data, strict=True):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(b))), a), name
    print(f"PNG encoding of {len(pictures)} export pictures, best of {repeats}; time / export's encoder")
    for kind, group in groups.items():
        times: dict[str, list[float]] = {name: [] for name in encoders}
        for _ in range(repeats):  # alternate, so all see the same machine load
            for name, encode in encoders.items():
                t0 = time.perf_counter()
                for a in group:
                    encode(a)
                times[name].append(time.perf_counter() - t0)
        base = min(times["export's encoder"])
        print(f"  {len(group)} pictures {kind}:")
        for name, runs in times.items():
            best = min(runs)
            size = f"{sizes[name] / 1024:6.0f} KiB" if kind == "all" else " " * 10
            print(f"    {name:26s} {best / len(group) * 1e6:8.1f} us/picture {size}  ratio {best / base:5.2f}"
                  "   runs (ms): " + ", ".join(f"{t * 1e3:.1f}" for t in runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side; the best is reported")
    ap.add_argument("--tmp", default=None, help="folder for the images and exports (default: the system's temporary folder)")
    ap.add_argument("--encoders", action="store_true", help="only compare the PNG encoders (the export's and Pillow's)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_export_", dir=args.tmp))
    try:
        folder = tmp / "images"
        folder.mkdir()
        paths = make_folder(folder, args.images)
        if args.encoders:
            encoder_comparison(folder, tmp / "out_encoders", args.batch, max(args.repeats, 5))
            return
        from maskviewer.inference.backend import init_backend

        device = init_backend()
        keras_times, picture_times, export_times, export_walls = [], [], [], []
        manifest = {}
        for r in range(args.repeats):  # alternate, so both see the same machine load
            keras_times.append(keras_loop(paths, args.batch))
            picture_times.append(keras_pictures_loop(paths, args.batch))
            loop, wall, manifest = export_in_process(folder, tmp / f"out{r}", args.batch)
            export_times.append(loop)
            export_walls.append(wall)
        keras_s, export_s = min(keras_times), min(export_times)
        n = args.images
        files = len({rec["path"] for e in manifest["artifacts"] for rec in e["files"].values()})
        pictures_s = min(picture_times)
        keras_pictures_loop(paths, args.batch, check_against=tmp / "out0")
        print(f"device: {device.describe()}; {n} images 28x28, batch {args.batch}, best of {args.repeats}")
        print(f"keras loop (maps, no files)    {keras_s:7.3f} s  {n / keras_s:8.1f} images/s   runs: "
              + ", ".join(f"{t:.3f}" for t in keras_times))
        print(f"maskviewer export (image loop) {export_s:7.3f} s  {n / export_s:8.1f} images/s   runs: "
              + ", ".join(f"{t:.3f}" for t in export_times))
        print(f"  export call incl. model load {min(export_walls):7.3f} s")
        print(f"  wrote {manifest['artifact_count']} artifacts, {files} files, for {manifest['images']['exported']} images")
        print(f"ratio export / keras (images per second): {keras_s / export_s:.2f}  (target >= 0.7)")
        print(f"keras loop making the same pictures (unwritten) {pictures_s:7.3f} s  {n / pictures_s:8.1f} images/s  "
              f"ratio export / it: {pictures_s / export_s:.2f}")

        # where the time goes: other outputs, and the same run with the file writing skipped
        def best(name: str, *extra: str) -> float:
            return min(export_in_process(folder, tmp / f"{name}{r}", args.batch, *extra)[0] for r in range(args.repeats))

        variants = [
            ("one .npy per image and map (--npy-layout files)", best("files", "--npy-layout", "files")),
            ("pictures only, no overlays (--format png --no-overlay)", best("png", "--format", "png", "--no-overlay")),
            ("raw maps only (--format npy --no-overlay)", best("npy", "--format", "npy", "--no-overlay")),
        ]
        from maskviewer.io import export as export_mod

        real_write = export_mod.ArtifactWriter.write_batch
        export_mod.ArtifactWriter.write_batch = lambda self, jobs: [{"files": {}} for _ in jobs]
        try:
            variants.append(("files not written (writer skipped)", best("nofiles")))
        finally:
            export_mod.ArtifactWriter.write_batch = real_write
        for label, seconds in variants:
            print(f"  {label:56s} {seconds:6.3f} s {n / seconds:8.1f} images/s  ratio {keras_s / seconds:.2f}")

        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "maskviewer", "export", str(folder), "--model", str(MODEL),
             "--out", str(tmp / "out_cli"), "--quiet"],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        cli = time.perf_counter() - t0
        assert done.returncode == 0, done.stderr[-2000:]
        print(f"fresh process 'maskviewer export' (TF import, model load, {n} images): {cli:.2f} s "
              f"= {n / cli:.1f} images/s overall")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
