"""Small vision transformers for the token, attention and rollout tests (built in seconds, CPU).

* :func:`keras_io_vit` — the keras.io "Image classification with Vision Transformer" example:
  a ``Patches`` layer (``ops.image.extract_patches``) and a ``PatchEncoder`` (projection plus a
  position embedding), transformer blocks of graph layers, no class token.
* :func:`conv_vit` — the same with a ``Conv2D`` patch embedding (stride = kernel) and ``Reshape``.
* :func:`cls_vit` — a class-token ViT shaped like keras-hub's ``ViTBackbone`` (keras-hub itself
  is not installed: it needs tensorflow-text): Conv2D patch embedding, a class token and position
  embedding, encoder blocks that are custom layers holding their ``MultiHeadAttention`` (not
  graph nodes), a head on the class token.
* :func:`hybrid_vit` — a CNN stem (convolutions and pooling) followed by transformer blocks.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="vit_zoo")
class Patches(layers.Layer):
    def __init__(self, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, images):
        b = ops.shape(images)[0]
        patches = ops.image.extract_patches(images, size=self.patch_size)
        h, w, c = patches.shape[1], patches.shape[2], patches.shape[3]
        return ops.reshape(patches, (b, h * w, c))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="vit_zoo")
class PatchEncoder(layers.Layer):
    def __init__(self, num_patches: int, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_patches, self.projection_dim = num_patches, projection_dim
        self.projection = layers.Dense(projection_dim)
        self.position_embedding = layers.Embedding(num_patches, projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(0, self.num_patches, 1), axis=0)
        return self.projection(patch) + self.position_embedding(positions)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "projection_dim": self.projection_dim}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassTokenPosition(layers.Layer):
    """A learned class token in front, then a learned position embedding added."""

    def build(self, input_shape):
        n, d = input_shape[1], input_shape[2]
        self.cls = self.add_weight(shape=(1, 1, d), initializer="random_normal", name="cls")
        self.pos = self.add_weight(shape=(1, n + 1, d), initializer="random_normal", name="pos")

    def call(self, x):
        b = ops.shape(x)[0]
        cls = ops.broadcast_to(ops.cast(self.cls, x.dtype), (b, 1, x.shape[-1]))
        return ops.concatenate([cls, x], axis=1) + ops.cast(self.pos, x.dtype)


@keras.saving.register_keras_serializable(package="vit_zoo")
class EncoderBlock(layers.Layer):
    """Pre-norm transformer block holding its attention layer (as keras-hub's ViT encoder does)."""

    def __init__(self, heads: int, dim: int, mlp: int, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.dim, self.mlp = heads, dim, mlp
        self.norm1 = layers.LayerNormalization(epsilon=1e-6)
        self.attention = layers.MultiHeadAttention(heads, dim // heads, name="attention")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6)
        self.fc1 = layers.Dense(mlp, activation="gelu")
        self.fc2 = layers.Dense(dim)

    def call(self, x):
        y = self.norm1(x)
        x = x + self.attention(y, y)
        return x + self.fc2(self.fc1(self.norm2(x)))

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "dim": self.dim, "mlp": self.mlp}


def _block(x, heads: int, dim: int, name: str):
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(heads, dim // heads, dropout=0.1, name=f"{name}_mha")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    y = layers.Dense(dim * 2, activation="gelu", name=f"{name}_fc1")(y)
    y = layers.Dense(dim, name=f"{name}_fc2")(y)
    return layers.Add(name=f"{name}_out")([x, y])


def keras_io_vit(size: int = 32, patch: int = 8, dim: int = 16, heads: int = 2, blocks: int = 2, classes: int = 5):
    keras.utils.set_random_seed(1)
    inp = keras.Input((size, size, 3), name="image")
    n = (size // patch) ** 2
    x = PatchEncoder(n, dim, name="encoder")(Patches(patch, name="patches")(inp))
    for i in range(blocks):
        x = _block(x, heads, dim, f"block{i}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="gelu", name="mlp")(x)
    return keras.Model(inp, layers.Dense(classes, name="logits")(x), name="keras_io_vit")


def conv_vit(size: int = 32, patch: int = 8, dim: int = 16, heads: int = 2, blocks: int = 2, classes: int = 5):
    keras.utils.set_random_seed(2)
    inp = keras.Input((size, size, 3), name="image")
    g = size // patch
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inp)
    x = layers.Reshape((g * g, dim), name="tokens")(x)
    for i in range(blocks):
        x = _block(x, heads, dim, f"block{i}")
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inp, layers.Dense(classes, name="logits")(x), name="conv_vit")


def cls_vit(size: int = 32, patch: int = 4, dim: int = 24, heads: int = 3, blocks: int = 3, classes: int = 10):
    keras.utils.set_random_seed(3)
    inp = keras.Input((size, size, 3), name="images")
    g = size // patch
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embedding")(inp)
    x = layers.Reshape((g * g, dim), name="patch_tokens")(x)
    x = ClassTokenPosition(name="class_token")(x)
    for i in range(blocks):
        x = EncoderBlock(heads, dim, dim * 2, name=f"encoder_block_{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    cls = layers.Flatten(name="flat")(layers.Cropping1D((0, g * g), name="cls_token")(x))
    return keras.Model(inp, layers.Dense(classes, name="head")(cls), name="cls_vit")


def hybrid_vit(size: int = 32, dim: int = 16, heads: int = 2, blocks: int = 2, classes: int = 4):
    keras.utils.set_random_seed(4)
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv1")(inp)
    x = layers.MaxPooling2D(2, name="stem_pool1")(x)
    x = layers.Conv2D(dim, 3, padding="same", activation="relu", name="stem_conv2")(x)
    x = layers.MaxPooling2D(2, name="stem_pool2")(x)  # 8x8
    g = size // 4
    x = layers.Reshape((g * g, dim), name="to_tokens")(x)
    for i in range(blocks):
        x = _block(x, heads, dim, f"block{i}")
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inp, layers.Dense(classes, name="logits")(x), name="hybrid_vit")


def image(size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (1, size, size, 3)).astype("float32")


def builtin_vit(size: int = 32, patch: int = 4, dim: int = 16, heads: int = 2, blocks: int = 2, classes: int = 4):
    """A class-token ViT of Keras layers only (it opens in safe mode), as the demo is built: the
    position embedding is a LayerNormalization over the token map, the class token a learned
    projection of the mean patch token."""
    keras.utils.set_random_seed(5)
    g = size // patch
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embedding")(inp)
    x = layers.Reshape((g * g, dim), name="patch_tokens")(x)
    x = layers.LayerNormalization(axis=(1, 2), name="position_embedding")(x)
    cls = layers.Reshape((1, dim), name="class_token")(layers.Dense(dim, name="class_projection")(
        layers.GlobalAveragePooling1D(name="mean_patch")(x)))
    x = layers.Concatenate(axis=1, name="tokens")([cls, x])
    for i in range(blocks):
        x = _block(x, heads, dim, f"block{i}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.Flatten(name="class_features")(layers.Cropping1D((0, g * g), name="class_output")(x))
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="probs")(x), name="builtin_vit")
