"""Probe cost against one plain forward pass, on a ResNet-like 224x224 model (random weights).

Measured in one run (the figures are noisy on a shared machine; the ratios are what count):

* plain      one compiled forward pass (``tf.function`` around ``model(x, training=False)``)
* mean maps  the mean-over-channels map of EVERY spatial layer: one compiled probe pass with
             the reductions on the device, only the maps copied to the host
* full copy  the same pass returning every layer's full output, all copied to the host
* eager one  the GUI's request: one layer, eager pass, reduced on the device

Peak memory (resident set, reset between phases where Linux allows) and the activation
cache's byte cap are reported too. Run: ``python benchmarks/bench_probe.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def resnet_like(size: int = 224, classes: int = 10):
    """Stem, four stages of two residual blocks (64..512 channels), head: 66 layers, 20 convs."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(64, 7, strides=2, padding="same", name="stem_conv")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, filters in enumerate((64, 128, 256, 512)):
        for b in range(2):
            stride = 2 if (b == 0 and s > 0) else 1
            name = f"s{s}b{b}"
            shortcut = x
            y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
            y = layers.BatchNormalization(name=f"{name}_bn1")(y)
            y = layers.Activation("relu", name=f"{name}_relu1")(y)
            y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
            y = layers.BatchNormalization(name=f"{name}_bn2")(y)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(shortcut)
            x = layers.Add(name=f"{name}_add")([y, shortcut])
            x = layers.Activation("relu", name=f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="resnet_like")


def peak_rss_reset() -> bool:
    """Reset the peak resident set size (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cache-mib", type=int, default=8)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from maskviewer.inference.probe import ActivationProbe, Reduction, tensor_nbytes

    model = resnet_like()
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    probe = ActivationProbe(model, max_cache_bytes=args.cache_mib * 2**20)
    runnable = [p for p in probe.paths() if type(probe.layer(p)).__name__ != "InputLayer"]
    spatial = [p for p in runnable if len(probe.layer(p).output.shape) == 4]
    print(
        f"model: {len(model.layers)} layers ({sum(type(layer).__name__ == 'Conv2D' for layer in model.layers)} "
        f"convs), {model.count_params():,} parameters; {len(spatial)} spatial layers probed; "
        f"{tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()} CPU threads, "
        f"backend {keras.backend.backend()}"
    )

    plain_fn = tf.function(lambda t: model(t, training=False))
    mean = Reduction("mean")

    def plain():
        return plain_fn(x).numpy()

    def mean_maps():
        return probe.reduce_all(x, spatial, mean)

    def full_copy():
        out = probe.run(x, runnable)
        return {p: t.numpy() for p, t in out.items()}

    def eager_one():
        probe.cache.clear()
        return probe.reduce(x, "s2b1_out", mean)

    phases = {"plain": plain, "mean maps": mean_maps, "full copy": full_copy, "eager one": eager_one}
    for fn in phases.values():  # trace and warm up
        fn()
        fn()

    # the numbers are the model's: the probe's maps equal the full outputs reduced in numpy
    maps = mean_maps()
    full = full_copy()
    worst = max(float(np.abs(maps[p].map - full[p][0].mean(-1)).max()) for p in spatial)
    print(f"check: max |probe mean map - numpy mean of full output| = {worst:.2e}")

    times: dict[str, list[float]] = {k: [] for k in phases}
    for _ in range(args.repeats):  # interleaved, so load changes hit every phase alike
        for name, fn in phases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"\n{'phase':<11} {'median ms':>10} {'min ms':>8} {'ratio':>7}   (to one plain forward pass)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<11} {med * 1e3:>10.1f} {min(ts) * 1e3:>8.1f} {med / base:>7.2f}")
    print("target: mean maps / plain <= 1.5 on CPU")

    full_bytes = sum(tensor_nbytes(t) for t in probe.run(x, runnable).values())
    map_bytes = sum(m.map.nbytes + m.channel_means.nbytes + m.rank_scores.nbytes for m in maps.values())
    print(f"\ncopied to the host per pass: mean maps {map_bytes / 2**20:.2f} MiB, full copy {full_bytes / 2**20:.1f} MiB")

    # peak memory of each phase above the resident set before it
    if peak_rss_reset():
        for name in ("plain", "mean maps", "full copy"):
            import gc

            gc.collect()
            peak_rss_reset()
            before = rss_mib("VmRSS")
            phases[name]()
            print(f"peak RSS during {name:<10}: +{rss_mib('VmHWM') - before:7.1f} MiB over {before:.0f} MiB")
    else:
        print("(peak RSS cannot be reset here; skipped)")

    # the byte cap: ask for every layer's full output, one after another
    probe.cache.clear()
    probe.cache.peak_bytes = probe.cache.evictions = 0
    for p in runnable:
        probe.activations(x, [p])
    print(
        f"\nactivation cache: cap {probe.cache.max_bytes / 2**20:.0f} MiB, all layers' outputs "
        f"{full_bytes / 2**20:.1f} MiB; held at most {probe.cache.peak_bytes / 2**20:.1f} MiB, "
        f"{len(probe.cache)} kept, {probe.cache.evictions} evicted"
    )
    assert probe.cache.peak_bytes <= probe.cache.max_bytes


if __name__ == "__main__":
    main()
