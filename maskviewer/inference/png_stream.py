"""Small PNG files decoded by the backend's input pipeline, in order, a batch at a time, ahead of use.

For a data set of small PNG files, Pillow spends most of its time in Python (a sixth of a
millisecond a 28×28 file, holding the GIL); ``tf.data`` reads and decodes them in C++ threads
while the model runs, and hands them over a batch at a time (one Python step per batch, not
per file). Only files every decoder reads alike are kept — 8-bit grey, RGB or RGBA, not
interlaced (checked from each file's first bytes), at most :data:`STREAM_MAX_PIXELS` pixels
(checked inside the pipeline, before decoding) — anything else, and any file the decoder
refuses, is left out of the stream and read by :func:`maskviewer.io.images.load_image`, which
reports errors in its own words. A transparency chunk is ignored, as Pillow's grey and RGB
pictures are read.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: the PNG signature and the IHDR chunk's length and type (the first 16 bytes of every PNG file)
_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
#: bit depth, colour type (grey, RGB, RGBA), compression, filter, interlace
_LAYOUTS = (b"\x08\x00\x00\x00\x00", b"\x08\x02\x00\x00\x00", b"\x08\x06\x00\x00\x00")
#: larger pictures are left to Pillow (its decoding releases the GIL, and a padded batch of
#: large pictures would hold batch × the largest)
STREAM_MAX_PIXELS = 1 << 16
#: decoded batches held ready ahead of the caller
PREFETCH = 2
#: files whose first bytes are checked together
_GUARD_BATCH = 256
_CHANNELS = {0: 1, 2: 3, 6: 4}


class PngStream:
    """Decoded pictures of ``paths`` by their index in ``indices`` (increasing), pulled in order."""

    def __init__(self, indices: list[int], paths: list[str], batch: int, max_pixels: int = STREAM_MAX_PIXELS) -> None:
        import tensorflow as tf

        dnc = tf.autograph.experimental.do_not_convert  # plain ops: nothing for AutoGraph to rewrite

        def read(i: Any, path: Any) -> tuple[Any, Any]:
            return i, tf.io.read_file(path)

        def guard(i: Any, data: Any) -> tuple[Any, Any, Any]:
            """A batch of files: their first bytes, and nothing to decode for those declaring
            more than ``max_pixels`` pixels (checked before any decoding)."""
            head = tf.strings.substr(tf.strings.join([data, b"\0" * 29]), 0, 29)
            size = tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.int32, little_endian=False)
            small = tf.reduce_prod(tf.cast(size, tf.int64), axis=1) <= max_pixels
            return i, head, tf.where(small, data, "")  # "" fails to decode: left to Pillow

        def decode(i: Any, head: Any, data: Any) -> tuple[Any, Any, Any]:
            return i, head, tf.io.decode_png(data, channels=0, dtype=tf.uint8)

        # one op per file where it must be (reading, decoding); the checks a batch at a time;
        # on threads of its own, half the machine's: the model keeps the other half (sharing
        # all of them, both wait on each other: measured 10% slower on two cores)
        threads = max(1, (os.cpu_count() or 1) // 2)
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(indices, np.int64), np.asarray(paths, dtype=object)))
        # (a file that cannot be read fails its whole batch of checks: an error dropped here
        # would slow every file down, and such files are few)
        ds = ds.map(dnc(read), num_parallel_calls=threads, deterministic=True)
        ds = ds.batch(_GUARD_BATCH).map(dnc(guard)).unbatch()
        ds = ds.map(dnc(decode), num_parallel_calls=threads, deterministic=True).ignore_errors(log_warning=False)
        ds = ds.padded_batch(max(1, batch)).prefetch(PREFETCH)
        # no tuning thread: a tuned pipeline's iterator takes up to a second to let go of its
        # threads when dropped
        options = tf.data.Options()
        options.autotune.enabled = False
        options.threading.private_threadpool_size = threads
        self._it = iter(ds.with_options(options))
        self._held: dict[int, np.ndarray] = {}
        self._last = -1  # the largest index pulled so far
        self._done = not indices
        self._final = indices[-1] if indices else -1

    def take(self, below: int) -> dict[int, np.ndarray]:
        """Every decoded picture whose index is below ``below`` (those not taken before)."""
        # past the last index: read to the end, so the pipeline's threads finish by themselves
        while not self._done and (self._last < below - 1 or below > self._final):
            try:
                index, heads, pictures = (t.numpy() for t in next(self._it))
            except StopIteration:
                self._done = True
                break
            self._hold(index.tolist(), heads.tolist(), pictures)
            self._last = int(index[-1])
        return {k: self._held.pop(k) for k in sorted(k for k in self._held if k < below)}

    def _hold(self, index: list[int], heads: list[bytes], pictures: np.ndarray) -> None:
        """Keep the batch's pictures that every decoder reads alike (from their first bytes),
        cut to their own size (the batch is padded to its largest)."""
        shapes = [_shape(h) for h in heads]
        if all(sh == pictures.shape[1:] for sh in shapes):  # one size: the batch as it is
            self._held.update(zip(index, pictures, strict=True))
            return
        for i, sh, picture in zip(index, shapes, pictures, strict=True):
            if sh is not None:
                self._held[i] = picture[: sh[0], : sh[1], : sh[2]]


def _shape(head: bytes) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` of a PNG file every decoder reads alike, from its first
    29 bytes; None for any other file."""
    if head[:16] != _HEAD or head[24:29] not in _LAYOUTS:
        return None
    return (int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), _CHANNELS[head[25]])


def png_stream(indices: list[int], paths: list[str], batch: int) -> PngStream | None:
    """A stream over ``paths`` (``indices``: their places in the caller's list), or None when
    the backend has no input pipeline (JAX) or there is nothing to stream."""
    from maskviewer.inference.backend import backend_name

    if backend_name() != "tensorflow" or not paths:
        return None
    return PngStream(indices, paths, batch)
