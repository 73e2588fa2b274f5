"""The byte-capped cache of full activations kept between probe requests, and its keys."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np

#: default byte cap for full activations kept between requests
DEFAULT_CACHE_BYTES = 256 * 2**20


def input_key(inputs: Any) -> str:
    """A fingerprint of model inputs (shapes, dtypes and bytes) for the activation cache."""
    import keras

    h = hashlib.sha1()
    for a in keras.tree.flatten(inputs):
        arr = np.ascontiguousarray(np.asarray(a))
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.data)
    return h.hexdigest()


def tensor_nbytes(t: Any) -> int:
    """Bytes held by a tensor (shape times item size)."""
    import keras

    n = 1
    for d in t.shape:
        n *= int(d)
    return n * np.dtype(keras.backend.standardize_dtype(t.dtype)).itemsize


class ActivationCache:
    """Least-recently-used device tensors, capped in bytes.

    A tensor larger than the cap is not kept (it is used once and dropped), so what the cache
    holds never exceeds ``max_bytes``.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self.peak_bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, tensor: Any) -> bool:
        """Keep ``tensor`` (evicting the oldest as needed); False if it alone exceeds the cap."""
        size = tensor_nbytes(tensor)
        if key in self._items:
            self.nbytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return False
        while self._items and self.nbytes + size > self.max_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self.nbytes -= old
            self.evictions += 1
        self._items[key] = (tensor, size)
        self.nbytes += size
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        return True

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0
