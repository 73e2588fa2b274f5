"""Build the bundled demo models and sample inputs into resources/demo/ (CPU, fixed seeds).

    python scripts/build_demos.py            # full build
    python scripts/build_demos.py --quick    # a reduced budget, for tests

Data comes from packages that ship it (scikit-learn's 8x8 digits), so nothing is downloaded.
Each demo records its held-out score in resources/demo/demos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SEED = 1234


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


def build_digits(out: Path, epochs: int) -> dict:
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
    model.fit(xtr, ytr, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    loss, acc = model.evaluate(xte, yte, verbose=0)
    model.save(out / "digits_cnn.keras")

    from maskviewer.io.images import save_image

    images = []
    for digit in range(10):
        i = int(np.flatnonzero(yte == digit)[0])
        name = f"digit_{digit}.png"
        save_image(out / name, (xte[i, :, :, 0] * 255 + 0.5).astype(np.uint8))
        images.append(name)
    np.save(out / "digits_test_x.npy", (xte * 255 + 0.5).astype(np.uint8))
    np.save(out / "digits_test_y.npy", yte.astype(np.uint8))
    (out / "digits_labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    return {
        "name": "digits",
        "title": "Digit classifier (28×28 grey)",
        "model": "digits_cnn.keras",
        "images": images,
        "labels": "digits_labels.txt",
        "description": (
            "A small CNN trained on scikit-learn's handwritten digits (8×8, upsampled to 28×28). "
            f"Held-out accuracy {acc:.3f} on {len(yte)} digits (loss {loss:.3f}). Open any "
            "digit image to see its class probabilities; the sample set is in "
            "digits_test_x.npy / digits_test_y.npy."
        ),
        "score": {"metric": "accuracy", "value": round(float(acc), 4), "n": int(len(yte)),
                  "test_x": "digits_test_x.npy", "test_y": "digits_test_y.npy"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "demo")
    ap.add_argument("--quick", action="store_true", help="reduced budget (tests)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    demos = [build_digits(args.out, epochs=2 if args.quick else 30)]
    (args.out / "demos.json").write_text(json.dumps({"demos": demos}, indent=2) + "\n")
    for d in demos:
        print(f"{d['name']}: {d['score']['metric']} {d['score']['value']}")
    print(f"built {len(demos)} demo(s) in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
