"""PNG files decoded by the backend's input pipeline, in order, ahead of use.

For a data set of small PNG files, Pillow spends most of its time in Python (a third of a
millisecond a 28×28 file), and Python's per-file work holds the GIL; ``tf.data`` reads and
decodes in C++ threads while the model runs. Only files every decoder reads alike go this way
— 8-bit grey, RGB or RGBA, not interlaced, no transparency chunk, within the pixel budget —
checked from the bytes inside the pipeline; anything else (and any file the decoder refuses) is
left out of the stream and read by :func:`maskviewer.io.images.load_image`, which reports errors
in its own words.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SIGNATURE = (137, 80, 78, 71, 13, 10, 26, 10)


class PngStream:
    """Decoded pictures of ``paths`` by their index in ``indices``, pulled in order."""

    def __init__(self, indices: list[int], paths: list[str], max_pixels: int) -> None:
        import tensorflow as tf

        def decode(i: Any, path: Any) -> tuple[Any, Any, Any]:
            data = tf.io.read_file(path)
            head = tf.io.decode_raw(tf.strings.substr(data, 0, 29), tf.uint8)  # short file: left out
            b = tf.cast(head, tf.int64)
            width = b[16] * 2**24 + b[17] * 2**16 + b[18] * 2**8 + b[19]
            height = b[20] * 2**24 + b[21] * 2**16 + b[22] * 2**8 + b[23]
            simple = (
                tf.reduce_all(tf.equal(b[:8], tf.constant(_SIGNATURE, tf.int64)))
                & tf.equal(tf.strings.substr(data, 12, 4), "IHDR")
                & tf.equal(b[24], 8) & tf.reduce_any(tf.equal(b[25], [0, 2, 6])) & tf.equal(b[28], 0)
                & (width * height > 0) & (width * height <= max_pixels)
                & tf.logical_not(tf.strings.regex_full_match(data, "(?s).*tRNS.*"))
            )
            image = tf.cond(simple, lambda: tf.io.decode_png(data, channels=0, dtype=tf.uint8),
                            lambda: tf.zeros([0, 0, 1], tf.uint8))
            return i, simple, image

        ds = tf.data.Dataset.from_tensor_slices((np.asarray(indices, np.int64), list(paths)))
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors(log_warning=False).prefetch(tf.data.AUTOTUNE)
        self._it = iter(ds)
        self._next: tuple[int, bool, np.ndarray] | None = None
        self._done = False

    def take(self, below: int) -> dict[int, np.ndarray]:
        """Every decoded picture whose index is below ``below`` (those not taken before)."""
        out: dict[int, np.ndarray] = {}
        while not self._done:
            if self._next is None:
                try:
                    i, ok, image = next(self._it)
                except StopIteration:
                    self._done = True
                    break
                self._next = (int(i), bool(ok), image.numpy())
            i, ok, image = self._next
            if i >= below:
                break
            if ok:
                out[i] = image
            self._next = None
        return out


def png_stream(indices: list[int], paths: list[str]) -> PngStream | None:
    """A stream over ``paths`` (``indices``: their places in the caller's list), or None when
    the backend has no input pipeline (JAX) or there is nothing to stream."""
    from maskviewer.inference.backend import backend_name

    if backend_name() != "tensorflow" or not paths:
        return None
    from maskviewer.io.images import MAX_PIXELS

    return PngStream(indices, paths, MAX_PIXELS)
