"""Small Keras models of every kind the app must handle, saved to files for tests.

Each builder returns the model; :func:`build_all` saves them and returns ``{name: path}``.
Seeds are fixed so weights are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sequential():
    import keras

    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="pixels"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(6, 3, activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="seq",
    )


def rgb_classifier():
    """Functional, RGB 32x32 input, 5 classes."""
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="rgb_classifier")


def three_inputs():
    """Functional with 3 named inputs (a three-stream density model) and 2 outputs."""
    import keras

    keras.utils.set_random_seed(3)
    rgb = keras.Input((24, 24, 3), name="rgb")
    d1 = keras.Input((24, 24, 1), name="density_a")
    d2 = keras.Input((24, 24, 1), name="density_b")
    streams = [
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"stream_{n}")(t)
        for n, t in (("rgb", rgb), ("a", d1), ("b", d2))
    ]
    x = keras.layers.Concatenate(name="merge")(streams)
    att = keras.layers.Conv2D(1, 1, activation="sigmoid", name="attention")(x)
    x = keras.layers.Multiply(name="attend")([x, att])
    count = keras.layers.Dense(1, name="count")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    seg = keras.layers.Conv2D(1, 1, activation="sigmoid", name="seg")(x)
    return keras.Model({"rgb": rgb, "density_a": d1, "density_b": d2}, {"count": count, "seg": seg}, name="three")


def nested():
    import keras

    keras.utils.set_random_seed(4)
    inner = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="inner_conv")],
        name="backbone",
    )
    inp = keras.Input((16, 16, 3), name="img")
    x = inner(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="nested")


def build_all(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    paths = {}
    for name, builder in (
        ("sequential", sequential),
        ("rgb", rgb_classifier),
        ("three", three_inputs),
        ("nested", nested),
    ):
        model = builder()
        path = folder / f"{name}.keras"
        model.save(path)
        paths[name] = path
    seq = sequential()
    seq.save(folder / "sequential.h5")
    paths["sequential_h5"] = folder / "sequential.h5"
    return paths


def random_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def subclassed():
    """A sub-classed ``keras.Model`` (no graph): conv, a 1x1 sigmoid attention, a head. Built."""
    import keras

    keras.utils.set_random_seed(5)

    class AttentionNet(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")
            self.gate = keras.layers.Conv2D(1, 1, activation="sigmoid", name="gate")
            self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
            self.head = keras.layers.Dense(4, activation="softmax", name="head")

        def call(self, x, training=False):
            f = self.conv(x)
            f = f * self.gate(f)
            return self.head(self.pool(f))

    model = AttentionNet(name="attention_net")
    model(np.zeros((1, 20, 20, 3), np.float32))
    return model


def custom_layer():
    """Functional with a custom layer (a learned per-channel scale) and an Activation('sigmoid') gate."""
    import keras

    keras.utils.set_random_seed(6)

    class ChannelScale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="scale")

        def call(self, x):
            return x * self.scale

    inp = keras.Input((18, 18, 2), name="x")
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv")(inp)
    x = ChannelScale(name="scale")(x)
    g = keras.layers.Conv2D(1, 1, name="gate_logits")(x)
    g = keras.layers.Activation("sigmoid", name="gate")(g)
    x = keras.layers.Multiply(name="gated")([x, g])
    out = keras.layers.Dense(3, name="logits")(keras.layers.Flatten(name="flat")(x))
    return keras.Model(inp, out, name="custom")


def two_outputs():
    """Functional, one input, two outputs given as a list: class scores and a spatial map."""
    import keras

    keras.utils.set_random_seed(7)
    inp = keras.Input((16, 16, 3), name="img")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    cls = keras.layers.Dense(4, activation="softmax", name="cls")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x)
    )
    seg = keras.layers.Conv2D(2, 1, activation="softmax", name="seg")(x)
    return keras.Model(inp, [cls, seg], name="two_outputs")


def mask_channel():
    """Functional, RGB plus a mask channel (16x16x4), 3 classes, and a seg map output."""
    import keras

    keras.utils.set_random_seed(8)
    inp = keras.Input((16, 16, 4), name="image_and_mask")
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    seg = keras.layers.Conv2D(1, 1, activation="sigmoid", name="seg")(x)
    return keras.Model(inp, {"cls": cls, "seg": seg}, name="mask_channel")
