"""Small PNG files decoded by the backend's input pipeline, in order, a batch at a time, ahead of use.

For a data set of small PNG files, Pillow spends most of its time in Python (a sixth of a
millisecond a 28×28 file, holding the GIL); ``tf.data`` reads and decodes them in C++ threads
while the model runs, and hands them over a batch at a time (one Python step per batch, not
per file). The stream takes the files that share one *head* — the first 29 bytes of a PNG
file: signature, size, bit depth, colour type, interlacing — chosen among a sample of the
files: 8-bit grey, RGB or RGBA, not interlaced, at most :data:`STREAM_MAX_PIXELS` pixels, which
every decoder reads alike. Those are decoded to one shape, a group of files per call, so
batches are plain arrays; each file's head is compared before it is decoded, so nothing larger
is ever decoded. Every other file, and the group of any file that cannot be read or decoded,
is left out of the stream and read by :func:`maskviewer.io.images.load_image`, which reports
errors in its own words. A transparency chunk is ignored, as Pillow's grey and RGB pictures
are read.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

#: the PNG signature and the IHDR chunk's length and type (the first 16 bytes of every PNG file)
_SIGNATURE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
#: bit depth, colour type (grey, RGB, RGBA), compression, filter, interlace
_LAYOUTS = (b"\x08\x00\x00\x00\x00", b"\x08\x02\x00\x00\x00", b"\x08\x06\x00\x00\x00")
HEAD_BYTES = 29
#: larger pictures are left to Pillow (its decoding releases the GIL)
STREAM_MAX_PIXELS = 1 << 16
#: decoded batches held ready ahead of the caller
PREFETCH = 2
#: files whose heads are read to choose the stream's
SAMPLE = 16
#: groups decoded by direct calls while the pipeline for the rest is built (it takes about as
#: long as the model takes for these)
DIRECT_GROUPS = 4


class PngStream:
    """Decoded pictures of the ``paths`` whose first bytes are ``head``, by their index in
    ``indices`` (increasing), pulled in order.

    The first :data:`DIRECT_GROUPS` groups are decoded by calling the loader on the caller's
    thread when asked for, while the input pipeline for the rest is built on a thread of its
    own (building it takes about a tenth of a second: the first pictures are ready at once).
    """

    def __init__(self, indices: list[int], paths: list[str], batch: int, head: bytes) -> None:
        self._load = _loader(head)
        batch = max(1, batch)
        first = min(len(indices), DIRECT_GROUPS * batch)
        self._direct = deque((indices[s : s + batch], paths[s : s + batch]) for s in range(0, first, batch))
        self._it: Any = None
        self._building: Future | None = None
        if first < len(indices):
            builder = ThreadPoolExecutor(1, thread_name_prefix="png-stream")
            self._building = builder.submit(_pipeline, self._load, indices[first:], paths[first:], batch)
            builder.shutdown(wait=False)  # its thread ends when the pipeline is built
        self._held: dict[int, np.ndarray] = {}
        self._last = -1  # the largest index pulled so far
        self._done = not indices
        self._final = indices[-1] if indices else -1

    def take(self, below: int) -> dict[int, np.ndarray]:
        """Every decoded picture whose index is below ``below`` (those not taken before)."""
        # past the last index: read to the end, so the pipeline's threads finish by themselves
        while not self._done and (self._last < below - 1 or below > self._final):
            if self._direct:
                self._keep(*self._call(*self._direct.popleft()))
                self._done = not self._direct and self._building is None
                continue
            if self._it is None:
                assert self._building is not None
                self._it = self._building.result()
            try:
                self._keep(*(t.numpy() for t in next(self._it)))
            except StopIteration:
                self._done = True
        return {k: self._held.pop(k) for k in sorted(k for k in self._held if k < below)}

    def _call(self, indices: list[int], paths: list[str]) -> tuple[np.ndarray, ...]:
        """A group decoded now (none of it when a file cannot be read or decoded)."""
        import tensorflow as tf

        index = np.asarray(indices, np.int64)
        try:
            return tuple(t.numpy() for t in self._load(index, np.asarray(paths, dtype=object)))
        except tf.errors.OpError:  # its files go to Pillow, each failing in its own words
            return index, np.zeros((len(index), 1), np.uint8), np.zeros(len(index), bool)

    def _keep(self, index: np.ndarray, pictures: np.ndarray, same: np.ndarray) -> None:
        self._last = int(index[-1])
        if not same.all():
            index, pictures = index[same], pictures[same]
        self._held.update(zip(index.tolist(), pictures, strict=True))


def _pipeline(load: Any, indices: list[int], paths: list[str], batch: int) -> Any:
    """An iterator over ``load``'s groups of the files, made by the backend's input pipeline
    on threads of its own, ahead of use."""
    import tensorflow as tf

    # a group of files per call: a call per file costs tf.data about a tenth of a
    # millisecond more than reading and decoding a small file (measured: 10,000 files in
    # 1.5 CPU-s one by one, 0.55 CPU-s in groups of 128). A group with a file that cannot
    # be read or decoded is dropped whole: its files go to Pillow, each failing in its own
    # words. Threads of its own, half the machine's: the model keeps the other half
    # (sharing all of them, both wait on each other: measured 10% slower on two cores);
    # with one thread, the groups are made in the prefetching thread itself.
    threads = max(1, (os.cpu_count() or 1) // 2)
    parallel = {"num_parallel_calls": threads, "deterministic": True} if threads > 1 else {}
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(indices, np.int64), np.asarray(paths, dtype=object)))
    ds = ds.batch(batch).map(load, **parallel).ignore_errors(log_warning=False)
    ds = ds.prefetch(PREFETCH)
    # no tuning thread: a tuned pipeline's iterator takes up to a second to let go of its
    # threads when dropped
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = threads
    return iter(ds.with_options(options))


#: the traced group loader of each head met (one per picture size and kind), the newest last
_LOADERS: dict[bytes, Any] = {}
_LOADERS_KEPT = 8


def _loader(head: bytes) -> Any:
    """The function reading and decoding a group of files of ``head``: traced once per head,
    not at every run (tracing took a tenth of a second, before the first batch)."""
    fn = _LOADERS.pop(head, None)
    if fn is None:
        import tensorflow as tf

        shape = head_shape(head)
        # decoded in place of a file of another head: the same shape, marked as not the file
        blank = tf.io.encode_png(tf.zeros(shape, tf.uint8))
        picture = tf.TensorSpec(shape, tf.uint8)

        def decode(data: Any) -> Any:
            return tf.ensure_shape(tf.io.decode_png(data, channels=0, dtype=tf.uint8), shape)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string)],
                     autograph=False)  # plain ops: nothing for AutoGraph to rewrite
        def fn(i: Any, group: Any) -> tuple[Any, Any, Any]:
            """A group of files read and decoded in one call: its indices, pictures, and
            whether each file has the head (a file of another head is never decoded)."""
            data = tf.map_fn(tf.io.read_file, group, fn_output_signature=tf.string)
            same = tf.equal(tf.strings.substr(data, 0, HEAD_BYTES), head)
            return i, tf.map_fn(decode, tf.where(same, data, blank), fn_output_signature=picture), same

    _LOADERS[head] = fn
    while len(_LOADERS) > _LOADERS_KEPT:
        del _LOADERS[next(iter(_LOADERS))]
    return fn


def head_shape(head: bytes) -> tuple[int, int, int]:
    """Height, width and channels of the pictures of a simple head."""
    channels = {0: 1, 2: 3, 6: 4}[head[25]]
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), channels


def simple_head(head: bytes, max_pixels: int = STREAM_MAX_PIXELS) -> bool:
    """Whether a PNG file with these first bytes is one every decoder reads alike and small
    enough for the stream."""
    if len(head) != HEAD_BYTES or head[:16] != _SIGNATURE or head[24:29] not in _LAYOUTS:
        return False
    height, width, _channels = head_shape(head)
    return 0 < width * height <= max_pixels


def common_head(paths: list[str], sample: int = SAMPLE) -> bytes | None:
    """The most common simple head among up to ``sample`` files spread over ``paths``."""
    step = max(1, len(paths) // sample)
    heads: Counter = Counter()
    for path in paths[::step][:sample]:
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
        except OSError:
            continue
        if simple_head(head):
            heads[head] += 1
    return heads.most_common(1)[0][0] if heads else None


def png_stream(indices: list[int], paths: list[str], batch: int) -> PngStream | None:
    """A stream over ``paths`` (``indices``: their places in the caller's list), or None when
    the backend has no input pipeline (JAX) or no sampled file is one the stream takes."""
    from maskviewer.inference.backend import backend_name

    if backend_name() != "tensorflow" or not paths:
        return None
    head = common_head(paths)
    return PngStream(indices, paths, batch, head) if head is not None else None
