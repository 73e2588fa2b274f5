"""Build the bundled demo models and sample inputs into resources/demo/ (CPU, fixed seeds).

    python scripts/build_demos.py                    # full build (all demos)
    python scripts/build_demos.py --quick            # a reduced budget, for tests
    python scripts/build_demos.py --only counting    # rebuild some demos, keep the others

Data comes from packages that ship it (scikit-learn's 8x8 digits, scikit-image's bundled
photographs), so nothing is downloaded. Each demo is trained on one part of its data and scored
on a held-out part that ships with it; the score goes into resources/demo/demos.json and into
the demo's explanation. Inputs are quantised to 8 bits *before* training and scoring, so the
shipped PNG/uint8 files reproduce the recorded score exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the build is CPU-only, for reproducibility
ROOT = Path(__file__).resolve().parents[1]
SEED = 1234


# ---------------------------------------------------------------------------------------------
# shared helpers


def q8(x: np.ndarray) -> np.ndarray:
    """Values in 0..1 as uint8 (how every shipped input is stored)."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def dq8(x: np.ndarray) -> np.ndarray:
    """uint8 back to float32 0..1: what the app feeds for a PNG with the 0..1 scaling."""
    return x.astype(np.float32) / np.float32(255.0)


def save_png(path: Path, array: np.ndarray) -> None:
    from maskviewer.io.images import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, array)


def d4(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of ``(..., H, W, C)`` arrays (k in 0..7)."""
    x = np.rot90(x, k % 4, axes=(-3, -2))
    return np.flip(x, axis=-2) if k >= 4 else x


def crops(image: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` crops of ``image`` (H, W, C) at ``corners`` (N, 2) as (y, x)."""
    return np.stack([image[y : y + size, x : x + size] for y, x in corners])


def grid_corners(y_max: int, x_lo: int, x_max: int, step: int) -> np.ndarray:
    ys = list(range(0, y_max + 1, step))
    xs = list(range(x_lo, x_max + 1, step))
    if xs[-1] != x_max:
        xs.append(x_max)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64)


def digits_28(seed: int = SEED):
    """scikit-learn's 1,797 8x8 digits, upsampled to 28x28 in 0..1, split 75/25."""
    from sklearn.datasets import load_digits

    from maskviewer.core.image import resize_bilinear

    d = load_digits()
    imgs = d.images.astype(np.float32) / 16.0
    x = np.stack([resize_bilinear(im[:, :, None], 28, 28) for im in imgs])
    x = np.clip(x, 0.0, 1.0)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 4
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def _compile_fit(model, x, y, *, epochs: int, batch: int, lr: float, loss, metrics=None,
                 loss_weights=None) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics or [],
                  loss_weights=loss_weights)
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, shuffle=True)


def predict(model, x, batch: int = 256) -> np.ndarray | dict:
    """``model(x, training=False)`` in batches, as numpy (what the app and the tests run)."""
    if isinstance(x, dict):
        n = len(next(iter(x.values())))
        parts = [model({k: v[i : i + batch] for k, v in x.items()}, training=False)
                 for i in range(0, n, batch)]
    else:
        n = len(x)
        parts = [model(x[i : i + batch], training=False) for i in range(0, n, batch)]
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def save_model(model, path: Path) -> None:
    """Save the trained model without its optimizer state (a third of the file size)."""
    import keras

    bare = keras.Model.from_config(model.get_config())  # clone_model would keep the optimizer
    bare.set_weights(model.get_weights())
    bare.save(path)


def write_labels(path: Path, n: int = 10) -> None:
    path.write_text("\n".join(str(i) for i in range(n)) + "\n")


# ---------------------------------------------------------------------------------------------
# digits: the plain classifier (kept as the first, simplest demo)


def build_digits(out: Path, quick: bool) -> dict:
    import keras

    keras.utils.set_random_seed(SEED)
    (xtr, ytr), (xte, yte) = digits_28()
    inp = keras.Input((28, 28, 1), name="digit")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, probs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=2 if quick else 30, batch_size=32, verbose=0, shuffle=True)
    # scored on the shipped 8-bit test digits, so the files reproduce the number
    xte_q = q8(xte)
    p = predict(model, dq8(xte_q))
    acc = float(np.mean(p.argmax(1) == yte))
    loss = float(np.mean(-np.log(np.clip(p[np.arange(len(yte)), yte], 1e-7, 1.0))))
    save_model(model, out / "digits_cnn.keras")

    images = []
    for digit in range(10):
        i = int(np.flatnonzero(yte == digit)[0])
        name = f"digit_{digit}.png"
        save_png(out / name, xte_q[i, :, :, 0])
        images.append(name)
    np.save(out / "digits_test_x.npy", xte_q)
    np.save(out / "digits_test_y.npy", yte.astype(np.uint8))
    write_labels(out / "digits_labels.txt")
    return {
        "name": "digits",
        "title": "Digit classifier (28×28 grey)",
        "view": "Predictions",
        "model": "digits_cnn.keras",
        "images": images,
        "labels": "digits_labels.txt",
        "description": (
            "A small CNN trained on scikit-learn's handwritten digits (8×8, upsampled to 28×28). "
            f"Held-out accuracy {acc:.3f} on {len(yte)} digits (loss {loss:.3f}). Open any "
            "digit image to see its class probabilities; the sample set is in "
            "digits_test_x.npy / digits_test_y.npy."
        ),
        "score": {"metric": "accuracy", "value": round(acc, 4), "loss": round(loss, 4),
                  "n": int(len(yte)), "test_x": "digits_test_x.npy", "test_y": "digits_test_y.npy"},
    }


# ---------------------------------------------------------------------------------------------
# 1. mask as a channel: four digits on a 56x56 canvas, the mask says which one to classify

CANVAS = 56
CELL = 28
SMALL = 22  # digit size inside its 28x28 cell, so it can sit anywhere in the cell


def four_digit_canvases(digits: np.ndarray, labels: np.ndarray, n: int, rng) -> tuple:
    """``n`` canvases (n, 56, 56, 2) in 0..1: channel 0 four digits, channel 1 the mask.

    Each digit sits at a random offset in its quadrant; the mask is a rectangle over the
    marked digit's box with a 1-3 pixel random margin, the way a user paints one.
    """
    from maskviewer.core.image import resize_bilinear

    small = np.stack([resize_bilinear(d, SMALL, SMALL) for d in digits])
    x = np.zeros((n, CANVAS, CANVAS, 2), np.float32)
    y = np.zeros(n, np.int64)
    marked = np.zeros(n, np.int64)
    for i in range(n):
        idx = rng.integers(0, len(digits), 4)
        target = int(rng.integers(4))
        for cell in range(4):
            oy = (cell // 2) * CELL + int(rng.integers(0, CELL - SMALL + 1))
            ox = (cell % 2) * CELL + int(rng.integers(0, CELL - SMALL + 1))
            x[i, oy : oy + SMALL, ox : ox + SMALL, 0] = small[idx[cell], :, :, 0]
            if cell == target:
                m = rng.integers(1, 4, 4)
                x[i, max(0, oy - m[0]) : oy + SMALL + m[1], max(0, ox - m[2]) : ox + SMALL + m[3], 1] = 1.0
        y[i] = labels[idx[target]]
        marked[i] = target
    return x, y, marked


def shuffled_masks(x: np.ndarray, rng) -> np.ndarray:
    """The same canvases with masks taken from other canvases (marking a random digit)."""
    out = x.copy()
    out[..., 1] = x[rng.permutation(len(x)), :, :, 1]
    return out


def build_mask_channel(out: Path, quick: bool) -> dict:
    import keras

    keras.utils.set_random_seed(SEED)
    folder = out / "mask_channel"
    folder.mkdir(parents=True, exist_ok=True)
    (dtr, ltr), (dte, lte) = digits_28()
    rng = np.random.default_rng(SEED + 1)
    xtr, ytr, _ = four_digit_canvases(dtr, ltr, 600 if quick else 6000, rng)
    xte, yte, marked = four_digit_canvases(dte, lte, 100 if quick else 400, np.random.default_rng(SEED + 2))
    xtr = dq8(q8(xtr))
    xte_q = q8(xte)

    inp = keras.Input((CANVAS, CANVAS, 2), name="canvas_and_mask")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.MaxPooling2D(name="pool3")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, probs, name="mask_channel_cnn")
    _compile_fit(model, xtr, ytr, epochs=1 if quick else 16, batch=64, lr=2e-3,
                 loss="sparse_categorical_crossentropy")
    save_model(model, folder / f"{model.name}.keras")

    p = predict(model, dq8(xte_q))
    acc = float(np.mean(p.argmax(1) == yte))
    loss = float(np.mean(-np.log(np.clip(p[np.arange(len(yte)), yte], 1e-7, 1.0))))
    # the app's mask ablation: a random mask of the same coverage, one seed per canvas
    x_rand = random_masks(xte_q)
    acc_random = float(np.mean(predict(model, dq8(x_rand)).argmax(1) == yte))
    x_shuf = shuffled_masks(xte_q, np.random.default_rng(SEED + 3))
    acc_shuffled = float(np.mean(predict(model, dq8(x_shuf)).argmax(1) == yte))
    np.savez_compressed(folder / "heldout.npz", x=xte_q, y=yte.astype(np.uint8),
                        marked=marked.astype(np.uint8))

    images, masks, samples = [], [], []
    for k in range(4):
        i = int(np.flatnonzero(marked == k)[0])  # one sample per marked quadrant
        np.save(folder / f"sample_{k}.npy", dq8(xte_q[i]))  # exactly the model input
        save_png(folder / f"canvas_{k}.png", xte_q[i, :, :, 0])
        save_png(folder / f"mask_{k}.png", xte_q[i, :, :, 1])
        images.append(f"mask_channel/canvas_{k}.png")
        masks.append(f"mask_channel/mask_{k}.png")
        samples.append(f"mask_channel/sample_{k}.npy")
    write_labels(folder / "labels.txt")
    return {
        "name": "mask_channel",
        "title": "Mask as a channel: which of four digits?",
        "view": "Masks",
        "model": "mask_channel/mask_channel_cnn.keras",
        "images": images,
        "masks": masks,
        "samples": samples,
        "focus": {"feed": "channel"},
        "labels": "mask_channel/labels.txt",
        "description": (
            "Four handwritten digits (scikit-learn's digits) sit on a 56×56 canvas; the mask, "
            "fed as a second input channel, is painted over one of them, and the CNN names the "
            f"marked digit. On {len(yte)} held-out canvases built from unseen digits it is right "
            f"{acc:.1%} of the time (loss {loss:.3f}). With a random mask of the same coverage "
            f"(the Mask ablation's 'Random') accuracy falls to {acc_random:.1%}, and with each "
            f"canvas's mask moved onto another canvas to {acc_shuffled:.1%}: the answer comes from "
            "the mask. Paint over another digit, or run Model → Mask Ablation. The samples also "
            "come as (56, 56, 2) arrays (sample_*.npy) that are fed as they are."
        ),
        "score": {"metric": "accuracy", "value": round(acc, 4), "loss": round(loss, 4),
                  "random_mask_accuracy": round(acc_random, 4),
                  "shuffled_mask_accuracy": round(acc_shuffled, 4), "n": int(len(yte)),
                  "data": "mask_channel/heldout.npz"},
    }


def random_masks(x_u8: np.ndarray) -> np.ndarray:
    """Canvases whose mask is replaced by the app's ablation 'random' mask (seed = index)."""
    from maskviewer.core.mask_feed import ablation_masks

    out = x_u8.copy()
    for i in range(len(x_u8)):
        out[i, :, :, 1] = q8(ablation_masks(dq8(x_u8[i, :, :, 1]), seed=i)["random"])
    return out


# ---------------------------------------------------------------------------------------------
# 2. masked kernels: a CNN built with the package's MaskedConv2D


def kernel_mask_variants(k: int) -> dict[str, np.ndarray]:
    """The kernel masks the demo is scored with: all taps, centre 3x3, bottom rows, centre tap."""
    full = np.ones((k, k), np.float32)
    centre = np.zeros((k, k), np.float32)
    centre[k // 2 - 1 : k // 2 + 2, k // 2 - 1 : k // 2 + 2] = 1.0
    bottom = full.copy()
    bottom[:2] = 0.0
    dot = np.zeros((k, k), np.float32)
    dot[k // 2, k // 2] = 1.0
    return {"full": full, "centre": centre, "bottom": bottom, "dot": dot}


def build_masked_kernels(out: Path, quick: bool) -> dict:
    import keras

    from maskviewer.inference.masked_conv import MaskedConv2D

    keras.utils.set_random_seed(SEED)
    folder = out / "masked_kernels"
    folder.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = digits_28()
    if quick:
        xtr, ytr = xtr[:300], ytr[:300]
    xtr = dq8(q8(xtr))
    xte_q = q8(xte)
    k = 5
    image = keras.Input((28, 28, 1), name="image")
    kmask = keras.Input((k, k), name="kernel_mask")
    x = MaskedConv2D(16, k, padding="same", activation="relu", name="masked_conv")([image, kmask])
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model({"image": image, "kernel_mask": kmask}, probs, name="masked_kernels_cnn")
    # half the training digits see the full kernel, half a random mask keeping ~70% of the
    # taps, so switching taps off degrades the model gracefully instead of breaking it
    masks = np.ones((len(xtr), k, k), np.float32)
    rng_masks = np.random.default_rng(SEED + 7)
    half = rng_masks.random(len(xtr)) < 0.5
    masks[half] = (rng_masks.random((int(half.sum()), k, k)) < 0.7).astype(np.float32)
    _compile_fit(model, {"image": xtr, "kernel_mask": masks}, ytr, epochs=1 if quick else 25,
                 batch=32, lr=3e-3, loss="sparse_categorical_crossentropy")
    save_model(model, folder / f"{model.name}.keras")
    variants = kernel_mask_variants(k)
    accs = {}
    for key, m in variants.items():
        batch = np.broadcast_to(m, (len(xte), k, k)).copy()
        p = predict(model, {"image": dq8(xte_q), "kernel_mask": batch})
        accs[key] = float(np.mean(p.argmax(1) == yte))
        if key == "full":
            loss = float(np.mean(-np.log(np.clip(p[np.arange(len(yte)), yte], 1e-7, 1.0))))
    acc = accs["full"]
    # the held-out digits are the 'digits' demo's test set (digits_test_x.npy), same split
    np.save(out / "digits_test_x.npy", xte_q)
    np.save(out / "digits_test_y.npy", yte.astype(np.uint8))
    for key, m in variants.items():
        np.save(folder / f"kernel_mask_{key}.npy", m)
    images = []
    for digit in range(10):
        i = int(np.flatnonzero(yte == digit)[0])
        save_png(folder / f"digit_{digit}.png", xte_q[i, :, :, 0])
        images.append(f"masked_kernels/digit_{digit}.png")
    write_labels(folder / "labels.txt")
    return {
        "name": "masked_kernels",
        "title": "Masked kernels: switch off parts of the first 5×5 kernels",
        "view": "Kernels",
        "model": "masked_kernels/masked_kernels_cnn.keras",
        "images": images,
        "inputs": {"kernel_mask": "masked_kernels/kernel_mask_full.npy"},
        "labels": "masked_kernels/labels.txt",
        "description": (
            "A digit classifier whose first layer is the package's MaskedConv2D: its 5×5 kernels "
            "are multiplied by a kernel mask given as a second input ('kernel_mask', 5×5), so "
            "you can switch kernel taps off and watch the prediction change. Trained on "
            "scikit-learn's digits (upsampled to 28×28), half of them with random kernel masks "
            "keeping about 70% of the taps; held-out accuracy "
            f"{acc:.1%} on {len(yte)} digits (loss {loss:.3f}) with the full mask; with only the "
            f"centre 3×3 taps {accs['centre']:.1%}, with the top two rows off "
            f"{accs['bottom']:.1%}, with only the centre tap {accs['dot']:.1%}. The masks are "
            "in masked_kernels/kernel_mask_*.npy; the Kernels view masks any Conv2D the same "
            "way in a copy of the model."
        ),
        "score": {"metric": "accuracy", "value": round(acc, 4), "loss": round(loss, 4),
                  "by_kernel_mask": {key: round(v, 4) for key, v in accs.items()},
                  "kernel_size": k, "n": int(len(yte)),
                  "test_x": "digits_test_x.npy", "test_y": "digits_test_y.npy"},
    }


# ---------------------------------------------------------------------------------------------
# 3. three inputs and attention: counting galaxies in the Hubble deep field

COUNT_SIZE = 128
COUNT_SPLIT = 700  # columns left of this train, right of it are held out


def hubble_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Hubble deep field and two density-like maps derived from it, each (H, W, 3) uint8.

    ``density_a`` is the image blurred (sigma 2), a smooth light density; ``density_b`` a
    difference of Gaussians (sigma 1 minus sigma 4), which picks out compact sources. Both are
    stretched by their 99.5th percentile.
    """
    from skimage import data, filters

    rgb = data.hubble_deep_field().astype(np.float32) / 255.0
    blur = filters.gaussian(rgb, sigma=2, channel_axis=-1)
    dog = np.clip(filters.gaussian(rgb, sigma=1, channel_axis=-1)
                  - filters.gaussian(rgb, sigma=4, channel_axis=-1), 0, None)
    return (q8(rgb), q8(blur / np.percentile(blur, 99.5)), q8(dog / np.percentile(dog, 99.5)))


def hubble_sources(rgb_u8: np.ndarray) -> np.ndarray:
    """Centres (N, 2) as (row, col) of the sources: blurred brightness > 0.2, >= 6 pixels."""
    from skimage import color, filters, measure

    lum = filters.gaussian(color.rgb2gray(rgb_u8), sigma=1.5)
    regions = measure.regionprops(measure.label(lum > 0.2))
    return np.array([r.centroid for r in regions if r.area >= 6], dtype=np.float64)


def count_in(centres: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    cy, cx = centres[:, 0][None], centres[:, 1][None]
    y0, x0 = corners[:, :1], corners[:, 1:]
    inside = (cy >= y0) & (cy < y0 + size) & (cx >= x0) & (cx < x0 + size)
    return inside.sum(1).astype(np.float32)


def build_counting(out: Path, quick: bool) -> dict:
    import keras

    keras.utils.set_random_seed(SEED)
    folder = out / "counting"
    folder.mkdir(parents=True, exist_ok=True)
    maps = hubble_inputs()
    names = ("rgb", "density_a", "density_b")
    centres = hubble_sources(maps[0])
    h, w, _ = maps[0].shape
    s = COUNT_SIZE
    rng = np.random.default_rng(SEED + 4)
    n_train = 300 if quick else 2000
    corners = np.stack([rng.integers(0, h - s + 1, n_train),
                        rng.integers(0, COUNT_SPLIT - s + 1, n_train)], axis=1)
    ytr = count_in(centres, corners, s)
    flips = rng.integers(0, 8, n_train)  # counts do not change under flips and rotations
    xtr = {n: dq8(np.stack([d4(c, f) for c, f in zip(crops(m, corners, s), flips, strict=True)]))
           for n, m in zip(names, maps, strict=True)}

    # held out: the right-hand strip, shipped as three PNGs; crops on a 32-pixel grid
    region = [m[:, COUNT_SPLIT:] for m in maps]
    test_corners = grid_corners(h - s, 0, w - COUNT_SPLIT - s, 32 if not quick else 96)
    yte = count_in(centres, test_corners + np.array([0, COUNT_SPLIT]), s)
    xte = {n: dq8(crops(r, test_corners, s)) for n, r in zip(names, region, strict=True)}

    inputs = {n: keras.Input((s, s, 3), name=n) for n in names}
    streams = []
    for n in names:
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name=f"{n}_conv1")(inputs[n])
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name=f"{n}_conv2")(x)
        streams.append(x)
    x = keras.layers.Concatenate(name="merge")(streams)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="fuse")(x)
    attention = keras.layers.Conv2D(1, 1, activation="sigmoid", name="attention")(x)
    x = keras.layers.Multiply(name="attend")([x, attention])
    x = keras.layers.Conv2D(16, 1, activation="relu", name="density")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    count = keras.layers.Dense(1, name="count")(x)
    model = keras.Model(inputs, count, name="galaxy_counter")
    _compile_fit(model, xtr, ytr, epochs=1 if quick else 25, batch=32, lr=2e-3, loss="huber")
    save_model(model, folder / f"{model.name}.keras")

    pred = predict(model, xte)[:, 0]
    mae = float(np.mean(np.abs(pred - yte)))
    baseline = float(np.mean(np.abs(float(ytr.mean()) - yte)))
    for n, r in zip(names, region, strict=True):
        save_png(folder / f"heldout_{n}.png", r)
    np.savez_compressed(folder / "heldout.npz", corners=test_corners, y=yte, size=np.int64(s),
                        train_mean=np.float32(ytr.mean()))
    # the sample: one held-out crop with a typical count
    i = int(np.argsort(yte)[len(yte) // 2])
    y0, x0 = test_corners[i]
    inputs_files = {}
    for n, r in zip(names, region, strict=True):
        save_png(folder / f"sample_{n}.png", r[y0 : y0 + s, x0 : x0 + s])
        inputs_files[n] = f"counting/sample_{n}.png"
    return {
        "name": "counting",
        "title": "Three inputs and attention: counting galaxies",
        "view": "Layers",
        "model": "counting/galaxy_counter.keras",
        "images": ["counting/sample_rgb.png"],
        "inputs": {k: v for k, v in inputs_files.items() if k != "rgb"},
        "focus": {"layer": "attention"},
        "description": (
            "Counts the sources in a 128×128 crop of scikit-image's Hubble deep field. The "
            "model has three named inputs: the RGB crop ('rgb'), the crop blurred ('density_a') "
            "and a difference of Gaussians ('density_b'); each has its own convolution stream, "
            "the streams merge, and a 1×1 sigmoid 'attention' layer weighs every position "
            "before the count is read out. Trained on crops from the left 70% of the image "
            "against a classical detector's count (blurred brightness > 0.2, at least 6 pixels); "
            f"on {len(yte)} held-out crops from the right-hand strip the mean absolute error is "
            f"{mae:.2f} sources (counts {yte.min():.0f}–{yte.max():.0f}; always guessing the "
            f"training mean gives {baseline:.2f}). Open the Layers view to see the attention map "
            "and the strongest channels."
        ),
        "score": {"metric": "mae", "value": round(mae, 4), "baseline_mae": round(baseline, 4),
                  "n": int(len(yte)), "data": "counting/heldout.npz",
                  "regions": {n: f"counting/heldout_{n}.png" for n in names}},
    }


# ---------------------------------------------------------------------------------------------
# 4. binary output: an autoencoder with a second, binary "mark" output (coins)

AE_SIZE = 96
AE_SPLIT = 256  # columns left of this train, right of it are held out


def coins_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's coins and their mask, as in scikit-image's region-based segmentation
    example: watershed of the Sobel elevation from dark/bright markers, holes filled."""
    from scipy import ndimage
    from skimage import data, filters, segmentation

    coins = data.coins()
    markers = np.zeros_like(coins, dtype=np.int32)
    markers[coins < 30] = 1
    markers[coins > 150] = 2
    seg = segmentation.watershed(filters.sobel(coins), markers)
    mask = ndimage.binary_fill_holes(seg == 2)
    return coins, mask.astype(np.uint8) * 255


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays, pooled over all pixels."""
    inter = np.logical_and(pred, truth).sum()
    total = pred.sum() + truth.sum()
    return float(2.0 * inter / total) if total else 1.0


def build_binary(out: Path, quick: bool) -> dict:
    import keras

    keras.utils.set_random_seed(SEED)
    folder = out / "binary"
    folder.mkdir(parents=True, exist_ok=True)
    coins, mask = coins_and_mask()
    h, w = coins.shape
    s = AE_SIZE
    rng = np.random.default_rng(SEED + 5)
    n_train = 300 if quick else 1200
    corners = np.stack([rng.integers(0, h - s + 1, n_train),
                        rng.integers(0, AE_SPLIT - s + 1, n_train)], axis=1)
    flips = rng.integers(0, 8, n_train)
    both = np.stack([coins, mask], axis=-1)
    train = np.stack([d4(c, f) for c, f in zip(crops(both, corners, s), flips, strict=True)])
    xtr = dq8(train[..., :1])
    ytr_mark = (train[..., 1:] > 127).astype(np.float32)

    region_img, region_mask = coins[:, AE_SPLIT:], mask[:, AE_SPLIT:]
    test_corners = grid_corners(h - s, 0, w - AE_SPLIT - s, 16 if not quick else 48)
    xte = dq8(crops(region_img[:, :, None], test_corners, s))
    yte = crops(region_mask[:, :, None], test_corners, s) > 127

    L = keras.layers
    inp = keras.Input((s, s, 1), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="enc1")(inp)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="enc2")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="code")(x)
    x = L.UpSampling2D(name="up1")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="dec1")(x)
    x = L.UpSampling2D(name="up2")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="dec2")(x)
    x = L.UpSampling2D(name="up3")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="dec3")(x)
    recon = L.Conv2D(1, 3, padding="same", activation="sigmoid", name="reconstruction")(x)
    mark = L.Conv2D(1, 3, padding="same", activation="sigmoid", name="mark")(x)
    model = keras.Model(inp, {"reconstruction": recon, "mark": mark}, name="coins_autoencoder")
    _compile_fit(model, xtr, {"reconstruction": xtr, "mark": ytr_mark},
                 epochs=1 if quick else 15, batch=32, lr=2e-3,
                 loss={"reconstruction": "mse", "mark": "binary_crossentropy"},
                 loss_weights={"reconstruction": 1.0, "mark": 0.5})
    save_model(model, folder / f"{model.name}.keras")

    pred = predict(model, xte)
    d = dice(pred["mark"] > 0.5, yte)
    mse = float(np.mean((pred["reconstruction"] - xte) ** 2))
    psnr = float(10 * np.log10(1.0 / mse))
    save_png(folder / "heldout_image.png", region_img)
    save_png(folder / "heldout_mark.png", region_mask)
    np.savez_compressed(folder / "heldout.npz", corners=test_corners, size=np.int64(s))
    images = []
    for k, (y0, x0) in enumerate(((0, 0), (h - s, w - AE_SPLIT - s), ((h - s) // 2, 16))):
        save_png(folder / f"sample_{k}.png", region_img[y0 : y0 + s, x0 : x0 + s])
        save_png(folder / f"sample_{k}_mark.png", region_mask[y0 : y0 + s, x0 : x0 + s])
        images.append(f"binary/sample_{k}.png")
    return {
        "name": "binary",
        "title": "Binary output: coins autoencoder with a mark image",
        "view": "Binarise",
        "model": "binary/coins_autoencoder.keras",
        "images": images,
        "masks": [p.replace(".png", "_mark.png") for p in images],
        "focus": {"output": "mark"},
        "description": (
            "An autoencoder on 96×96 crops of scikit-image's coins photograph with two outputs: "
            "'reconstruction', the input rebuilt through a 12×12 bottleneck, and 'mark', a "
            "sigmoid image that is 1 on coins. It was trained on the left two thirds of the "
            "photograph against the coin mask of scikit-image's watershed segmentation example. "
            f"On {len(yte)} held-out crops from the right third, the mark binarised at 0.5 has a "
            f"Dice of {d:.3f} with that mask, and the reconstruction a PSNR of {psnr:.1f} dB "
            f"(MSE {mse:.4f}). Binarise 'mark' (try Otsu) and compare it with the sample's "
            "*_mark.png."
        ),
        "score": {"metric": "dice", "value": round(d, 4), "threshold": 0.5,
                  "reconstruction_mse": round(mse, 6), "n": int(len(yte)),
                  "data": "binary/heldout.npz",
                  "regions": {"image": "binary/heldout_image.png", "mark": "binary/heldout_mark.png"}},
    }


# ---------------------------------------------------------------------------------------------
# 5. patches: a digit classifier on 18x18 patches, four corners voting

PATCH = 18
PATCH_SIZES = (12, 14, 18, 22, 28)


def corner_patches(digits: np.ndarray, size: int) -> np.ndarray:
    """The four corner ``size`` x ``size`` patches of 28x28 digits, resized to 18x18.

    Returns (4, N, 18, 18, 1) in the order top-left, top-right, bottom-left, bottom-right.
    """
    from maskviewer.core.image import resize_bilinear

    far = 28 - size
    out = []
    for y0, x0 in ((0, 0), (0, far), (far, 0), (far, far)):
        out.append(np.stack([resize_bilinear(d[y0 : y0 + size, x0 : x0 + size], PATCH, PATCH)
                             for d in digits]))
    return np.stack(out)


def build_patches(out: Path, quick: bool) -> dict:
    import keras

    from maskviewer.core.image import resize_bilinear

    keras.utils.set_random_seed(SEED)
    folder = out / "patches"
    folder.mkdir(parents=True, exist_ok=True)
    (dtr, ltr), (dte, lte) = digits_28()
    dtr = dq8(q8(dtr))
    rng = np.random.default_rng(SEED + 6)
    per = 2 if quick else 12
    xs, ys = [], []
    for d, label in zip(dtr, ltr, strict=True):
        for size in rng.integers(PATCH_SIZES[0], 29, per):  # patches of every size, anywhere
            y0, x0 = rng.integers(0, 28 - size + 1, 2)
            xs.append(resize_bilinear(d[y0 : y0 + size, x0 : x0 + size], PATCH, PATCH))
            ys.append(label)
    xtr, ytr = np.stack(xs), np.array(ys)

    L = keras.layers
    inp = keras.Input((PATCH, PATCH, 1), name="patch")
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    probs = L.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, probs, name="patch_digits")
    _compile_fit(model, xtr, ytr, epochs=1 if quick else 12, batch=64, lr=2e-3,
                 loss="sparse_categorical_crossentropy")
    save_model(model, folder / f"{model.name}.keras")

    # scored on the shipped 8-bit test digits (digits_test_x.npy, shared with 'digits')
    xte_q = q8(dte)
    by_size, single = {}, {}
    for size in PATCH_SIZES:
        patches = corner_patches(dq8(xte_q), size)
        p = np.stack([predict(model, c) for c in patches])  # (4, N, 10)
        by_size[str(size)] = round(float(np.mean(p.mean(0).argmax(1) == lte)), 4)
        single[str(size)] = round(float(np.mean(p.argmax(2) == lte[None])), 4)
    np.save(out / "digits_test_x.npy", xte_q)
    np.save(out / "digits_test_y.npy", lte.astype(np.uint8))
    images = []
    for digit in range(10):
        i = int(np.flatnonzero(lte == digit)[0])
        save_png(folder / f"digit_{digit}.png", xte_q[i, :, :, 0])
        images.append(f"patches/digit_{digit}.png")
    write_labels(folder / "labels.txt")
    table = ", ".join(f"{s}×{s}: {by_size[str(s)]:.1%}" for s in PATCH_SIZES)
    return {
        "name": "patches",
        "title": "Patches: four corners vote on the digit",
        "view": "Patches",
        "model": "patches/patch_digits.keras",
        "images": images,
        "labels": "patches/labels.txt",
        "focus": {"size": PATCH, "preset": "corners", "combine": "mean", "run": True},
        "description": (
            "A digit classifier that sees only an 18×18 patch (scikit-learn's digits, upsampled "
            "to 28×28); it was trained on patches of 12 to 28 pixels cut anywhere in the digit "
            "and resized to 18×18. In the Patches view, the four-corner preset cuts a patch at "
            "each corner of the 28×28 digit and the mean of the four predictions decides. "
            f"Held-out accuracy of that vote on {len(lte)} digits, by patch size: {table} "
            f"(one corner alone at 18×18: {single[str(PATCH)]:.1%}). Bigger patches see more "
            "of the digit and do better."
        ),
        "score": {"metric": "accuracy", "value": by_size[str(PATCH)], "n": int(len(lte)),
                  "patch_size": PATCH, "combine": "mean of four corner patches",
                  "by_size": by_size, "single_corner_by_size": single,
                  "test_x": "digits_test_x.npy", "test_y": "digits_test_y.npy"},
    }


# ---------------------------------------------------------------------------------------------

from build_vit_demo import build_vit  # noqa: E402  (the vision transformer, in its own module)

BUILDERS: dict[str, Callable[[Path, bool], dict]] = {
    "digits": build_digits,
    "mask_channel": build_mask_channel,
    "masked_kernels": build_masked_kernels,
    "counting": build_counting,
    "binary": build_binary,
    "patches": build_patches,
    "vit": build_vit,
}


def masked_conv_available() -> bool:
    return (ROOT / "maskviewer" / "inference" / "masked_conv.py").exists()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "demo")
    ap.add_argument("--quick", action="store_true", help="reduced budget (tests)")
    ap.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="build only these demos")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    args.out.mkdir(parents=True, exist_ok=True)
    index = args.out / "demos.json"
    previous = {}
    if args.only and index.exists():
        previous = {d["name"]: d for d in json.loads(index.read_text(encoding="utf-8"))["demos"]}
    t_all = time.perf_counter()
    demos = []
    for name, build in BUILDERS.items():
        if args.only and name not in args.only:
            if name in previous:
                demos.append(previous[name])
            continue
        if name == "masked_kernels" and not masked_conv_available():
            print(f"{name}: skipped (maskviewer/inference/masked_conv.py is missing)")
            continue
        t0 = time.perf_counter()
        entry = build(args.out, args.quick)
        entry["build_seconds"] = round(time.perf_counter() - t0, 1)
        demos.append(entry)
        extra = {k: v for k, v in entry["score"].items() if k not in ("metric", "value", "data", "regions")}
        print(f"{name}: {entry['score']['metric']} {entry['score']['value']}  {extra}  "
              f"({entry['build_seconds']} s)", flush=True)
    index.write_text(json.dumps({"demos": demos}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"built {len(demos)} demo(s) in {time.perf_counter() - t_all:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
