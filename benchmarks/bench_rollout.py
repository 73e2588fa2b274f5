"""Attention rollout cost against one compiled forward pass, on a ViT-Tiny-sized model (CPU).

The model: 224x224 input, 16x16 patches (14x14 grid + a class token: 197 tokens), 12
pre-norm blocks of 3-head MultiHeadAttention with 192 dims and a 768-wide MLP, random
weights. Measured in one run (medians; the ratios are what count on a shared machine):

* plain        one compiled forward pass (``tf.function`` around ``model(x, training=False)``)
* rollout      the attention weights of all 12 blocks captured in one compiled probe pass,
               copied to the host, then rolled out in numpy (Abnar & Zuidema, mean fusion)
               and turned into the class token's 14x14 map — what the window and the export do
* per-head     one block's per-head maps (one compiled capture of that block)
* attribution  gradient-weighted rollout (Chefer et al.): one traced pass under a gradient
               tape (for reference; no target)

Target: rollout / plain <= 2.0. Run: ``python benchmarks/bench_rollout.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402


def vit_tiny(size: int = 224, patch: int = 16, dim: int = 192, heads: int = 3, blocks: int = 12, classes: int = 1000):
    """A ViT-Tiny-shaped classifier of built-in layers (its class token is a learned projection
    of the mean patch, so no custom layer is needed)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    g = size // patch
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embedding")(inp)
    x = layers.Reshape((g * g, dim), name="patch_tokens")(x)
    x = layers.LayerNormalization(axis=(1, 2), name="position_embedding")(x)
    cls = layers.Reshape((1, dim), name="class_token")(layers.Dense(dim, name="class_proj")(layers.GlobalAveragePooling1D()(x)))
    x = layers.Concatenate(axis=1, name="tokens")([cls, x])
    for i in range(blocks):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        y = layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_mha")(y, y)
        x = layers.Add(name=f"block{i}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        y = layers.Dense(dim * 4, activation="gelu", name=f"block{i}_fc1")(y)
        y = layers.Dense(dim, name=f"block{i}_fc2")(y)
        x = layers.Add(name=f"block{i}_out")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.Flatten(name="cls")(layers.Cropping1D((0, g * g), name="cls_token")(x))
    return keras.Model(inp, layers.Dense(classes, name="head")(x), name="vit_tiny")


def _paired(fn, base, repeats: int) -> tuple[float, float, float]:
    """Median times of ``fn`` and ``base`` run alternately, and the median of their ratios."""
    fn(), base()  # warm-up (tracing)
    a, b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        base()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        b.append(t1 - t0)
        a.append(t2 - t1)
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import tensorflow as tf

    from maskviewer.core import rollout as rec
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import attribution_maps, head_maps, rollout_maps
    from maskviewer.inference.probe import ActivationProbe

    model = vit_tiny()
    x = np.random.default_rng(0).uniform(0, 1, (1, 224, 224, 3)).astype("float32")
    plain_fn = tf.function(lambda t: model(t, training=False))

    def plain_call():
        return plain_fn(x).numpy()

    capture = AttentionCapture(ActivationProbe(model))
    roll, plain, roll_ratio = _paired(lambda: rollout_maps(capture, x), plain_call, args.repeats)
    heads, _, heads_ratio = _paired(lambda: head_maps(capture, x, "block11_mha"), plain_call, args.repeats)
    attr, _, attr_ratio = _paired(lambda: attribution_maps(capture, x, class_index=0), plain_call, max(2, args.repeats // 2))
    weights = capture.capture(x).weights
    one = [w[0] for w in weights.values()]
    numpy_row, _, _ = _paired(lambda: rec.rollout_row(one, extra=1), plain_call, args.repeats)

    print(f"ViT-Tiny-sized: 12 blocks, 3 heads, 192 dims, 224x224, 197 tokens; {len(weights)} attention layers; CPU")
    print("medians of runs alternating with the plain pass; ratios are medians of the paired ratios")
    print(f"plain forward (compiled)  {plain * 1e3:8.1f} ms")
    print(f"rollout, all blocks       {roll * 1e3:8.1f} ms   ratio {roll_ratio:5.2f}  (target <= 2.0)")
    print(f"  of which numpy (1 row)  {numpy_row * 1e3:8.1f} ms")
    print(f"per-head maps, 1 block    {heads * 1e3:8.1f} ms   ratio {heads_ratio:5.2f}")
    print(f"attribution (traced tape) {attr * 1e3:8.1f} ms   ratio {attr_ratio:5.2f}")


if __name__ == "__main__":
    main()
