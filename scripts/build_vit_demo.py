"""The vision-transformer demo for scripts/build_demos.py: a small ViT on scikit-learn's digits.

Each 8x8 digit, upsampled to 16x16, sits at a random place of a 32x32 canvas of faint noise, so
the model has to find it (and attention rollout can be checked against where it is); the canvas
is cut into 4x4 patches (an 8x8 token grid) with a leading class token; three pre-norm transformer blocks of 4-head
``MultiHeadAttention`` (32 dims) and a head on the class token. Built only from Keras layers,
so the saved model opens in safe mode: the position embedding is a ``LayerNormalization`` over
the whole token map (its learned offset is one vector per position), and the class token is a
learned projection of the mean patch token. CPU-trainable in a few minutes; ``--quick`` does
not train (it checks the script).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE, PATCH, DIM, HEADS, BLOCKS = 32, 4, 32, 4, 3
PLACES, EPOCHS = 6, 24
SEED = 1234


DIGIT = 16  # the digit's size on the canvas


def digits_32(seed: int = SEED):
    """scikit-learn's digits upsampled to 16x16 (0..1), split 75/25 as the other demos split them."""
    from sklearn.datasets import load_digits

    from maskviewer.core.image import resize_bilinear

    d = load_digits()
    imgs = d.images.astype(np.float32) / 16.0
    x = np.stack([resize_bilinear(im[:, :, None], DIGIT, DIGIT) for im in imgs])
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 4
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def on_canvas(digits: np.ndarray, rng) -> np.ndarray:
    """Each 16x16 digit at a random place of a 32x32 canvas of faint noise (0..0.3)."""
    out = rng.uniform(0.0, 0.3, (len(digits), SIZE, SIZE, 1)).astype(np.float32)
    for i, im in enumerate(digits):
        y0, x0 = rng.integers(0, SIZE - DIGIT + 1, 2)
        region = out[i, y0 : y0 + DIGIT, x0 : x0 + DIGIT]
        out[i, y0 : y0 + DIGIT, x0 : x0 + DIGIT] = np.maximum(region, im)
    return out


def vit_model(classes: int = 10):
    import keras
    from keras import layers

    g = SIZE // PATCH
    inp = keras.Input((SIZE, SIZE, 1), name="digit")
    x = layers.Conv2D(DIM, PATCH, strides=PATCH, name="patch_embedding")(inp)
    x = layers.Reshape((g * g, DIM), name="patch_tokens")(x)
    x = layers.LayerNormalization(axis=(1, 2), name="position_embedding")(x)
    cls = layers.Dense(DIM, name="class_projection")(layers.GlobalAveragePooling1D(name="mean_patch")(x))
    x = layers.Concatenate(axis=1, name="tokens")([layers.Reshape((1, DIM), name="class_token")(cls), x])
    for i in range(BLOCKS):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        y = layers.MultiHeadAttention(HEADS, DIM // HEADS, dropout=0.1, name=f"block{i}_attention")(y, y)
        x = layers.Add(name=f"block{i}_residual1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        y = layers.Dense(DIM * 2, activation="gelu", name=f"block{i}_mlp1")(y)
        y = layers.Dense(DIM, name=f"block{i}_mlp2")(y)
        x = layers.Add(name=f"block{i}_output")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.Flatten(name="class_features")(layers.Cropping1D((0, g * g), name="class_output")(x))
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="probs")(x), name="digits_vit")


def build_vit(out: Path, quick: bool) -> dict:
    import keras
    from build_demos import dq8, predict, q8, save_model, save_png, write_labels

    keras.utils.set_random_seed(SEED)
    (dtr, ytr), (dte, yte) = digits_32()
    xte = on_canvas(dte, np.random.default_rng(SEED + 1))
    folder = out / "vit"
    folder.mkdir(parents=True, exist_ok=True)
    model = vit_model()
    if not quick:  # the quick build checks the script and its files, not the score: no training
        rng = np.random.default_rng(SEED)  # every digit at six places, 24 epochs
        xs = dq8(q8(np.concatenate([on_canvas(dtr, rng) for _ in range(PLACES)])))
        steps = EPOCHS * int(np.ceil(len(xs) / 64))
        lr = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=2e-3, warmup_steps=steps // 20)
        model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-4), jit_compile=False,
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(xs, np.tile(ytr, PLACES), epochs=EPOCHS, batch_size=64, verbose=0, shuffle=True)
    xte_q = q8(xte)
    p = predict(model, dq8(xte_q))
    acc = float(np.mean(p.argmax(1) == yte))
    loss = float(np.mean(-np.log(np.clip(p[np.arange(len(yte)), yte], 1e-7, 1.0))))
    save_model(model, folder / "digits_vit.keras")
    images = []
    for digit in range(10):
        i = int(np.flatnonzero(yte == digit)[0])
        save_png(folder / f"digit_{digit}.png", xte_q[i, :, :, 0])
        images.append(f"vit/digit_{digit}.png")
    np.save(folder / "digits_test_x.npy", xte_q)
    np.save(folder / "digits_test_y.npy", yte.astype(np.uint8))
    write_labels(folder / "labels.txt")
    return demo_entry(acc, loss, int(len(yte)), images)


def demo_entry(acc: float, loss: float, n: int, images: list[str]) -> dict:
    """The demo's entry in demos.json."""
    return {
        "name": "vit",
        "title": "Vision transformer: where does it look?",
        "view": "Attention",
        "model": "vit/digits_vit.keras",
        "images": images,
        "labels": "vit/labels.txt",
        "focus": {"method": "rollout"},
        "description": (
            "A small vision transformer finds a handwritten digit (scikit-learn's digits, 16×16) "
            "placed anywhere on a 32×32 canvas of faint noise: 4×4 patches make an 8×8 grid of "
            "tokens, a class token leads them through three blocks of 4-head attention. "
            f"Held-out accuracy {acc:.1%} on {n} digits (loss {loss:.3f}). The Attention view "
            "shows attention rollout from the class token — it follows the digit — and each "
            "head's attention, the heads × layers overview and the class attribution; click a "
            "patch to see where it attends. In the Layers view the token layers are 8×8 maps."
        ),
        "score": {"metric": "accuracy", "value": round(acc, 4), "loss": round(loss, 4), "n": n,
                  "test_x": "vit/digits_test_x.npy", "test_y": "vit/digits_test_y.npy"},
    }
