"""The bytes of the export's files: PNG pictures and NPY arrays, encoded in memory.

PNG stays a small encoder of its own rather than Pillow's: on the export's pictures (maps of a
few thousand pixels each) Pillow's per-call overhead makes it several times slower at equal
output (``python benchmarks/bench_export.py --encoders`` times both on the export's own
pictures; :func:`encode_png_pillow` is the comparison). Decoders read both alike.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import IO

import numpy as np

#: pictures with less pixel data than this are stored in the PNG uncompressed
PNG_STORE_BELOW = 16384


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``(H, W)``, ``(H, W, 1..4)`` uint8 or uint16 array (no row filter).

    Written directly (a few times faster than Pillow for the small pictures of layer maps,
    where Pillow's per-call overhead dominates). Pictures under 16 KiB of pixel data are
    stored without compression (zlib's set-up costs more than the few hundred bytes it would
    save); larger ones are deflated at level 1.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    channels = 1 if a.ndim == 2 else a.shape[2]
    if a.ndim not in (2, 3) or channels not in (1, 2, 3, 4) or a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write an array of shape {a.shape} and dtype {a.dtype} as PNG")
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 8 if a.dtype == np.uint8 else 16
    h, w = a.shape[:2]
    rows = np.ascontiguousarray(a.astype(">u2") if depth == 16 else a).reshape(h, -1).view(np.uint8)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "none" on every row
    raw[:, 1:] = rows

    level = 0 if raw.nbytes < PNG_STORE_BELOW else 1
    data = zlib.compress(raw.data, level)
    return b"".join((
        _png_head(w, h, depth, colour),
        struct.pack(">I", len(data)),
        b"IDAT",
        data,
        struct.pack(">I", zlib.crc32(data, _IDAT_CRC) & 0xFFFFFFFF),
        _PNG_END,
    ))


class PngStream:
    """A PNG written to an open file band of rows by band, deflated as it goes.

    For pictures too large to hold whole (a map drawn on a 14,000² image): memory follows
    one band, and the file is what :func:`encode_png` would make of the whole (up to how the
    deflate stream is cut into IDAT chunks). Rows stay unfiltered, as there: a coloured map's
    horizontal runs deflate well, and the "Up" filter made such files larger, not smaller.

    Parameters
    ----------
    fh : binary file
        Where the bytes go (the writer opens it atomically).
    shape : tuple of int
        The whole picture's ``(H, W)`` or ``(H, W, C)``.
    dtype : numpy dtype
        uint8 or uint16.
    """

    #: deflated bytes are written in IDAT chunks of at least this size
    CHUNK_BYTES = 1 << 20

    def __init__(self, fh: IO[bytes], shape: tuple[int, ...], dtype: np.dtype | type = np.uint8) -> None:
        self.fh = fh
        self.height, self.width = int(shape[0]), int(shape[1])
        self.channels = 1 if len(shape) == 2 else int(shape[2])
        self.dtype = np.dtype(dtype)
        if self.channels not in (1, 2, 3, 4) or self.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"cannot write a picture of shape {shape} and dtype {self.dtype} as PNG")
        depth = 8 if self.dtype == np.uint8 else 16
        fh.write(_png_head(self.width, self.height, depth, {1: 0, 2: 4, 3: 2, 4: 6}[self.channels]))
        self.rows = 0
        self._z = zlib.compressobj(1)
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, band: np.ndarray) -> None:
        """Append rows: ``(r, W)`` or ``(r, W, C)`` of the picture's dtype."""
        a = np.asarray(band)
        if a.ndim == 2 and self.channels == 1:
            a = a[:, :, None]
        if a.shape[1:] != (self.width, self.channels) or a.dtype != self.dtype:
            raise ValueError(f"rows of shape {a.shape} and dtype {a.dtype} do not fit this picture")
        if self.rows + a.shape[0] > self.height:
            raise ValueError(f"more than the picture's {self.height} rows")
        pixels = np.ascontiguousarray(a.astype(">u2") if self.dtype == np.uint16 else a)
        rows = pixels.reshape(a.shape[0], -1).view(np.uint8)
        raw = np.empty((a.shape[0], rows.shape[1] + 1), dtype=np.uint8)
        raw[:, 0] = 0  # filter type "none" on every row
        raw[:, 1:] = rows
        self._emit(self._z.compress(raw.data))
        self.rows += a.shape[0]

    def close(self) -> None:
        """Finish the stream (every row must have been written)."""
        if self.rows != self.height:
            raise ValueError(f"{self.rows} of the picture's {self.height} rows were written")
        self._emit(self._z.flush(), final=True)
        self.fh.write(_PNG_END)

    def _emit(self, data: bytes, final: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= self.CHUNK_BYTES or (final and self._pending):
            chunk = b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            self.fh.write(struct.pack(">I", len(chunk)) + b"IDAT")
            self.fh.write(chunk)
            self.fh.write(struct.pack(">I", zlib.crc32(chunk, _IDAT_CRC) & 0xFFFFFFFF))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=64)
def _png_head(w: int, h: int, depth: int, colour: int) -> bytes:
    """The PNG signature and header chunk for a picture of this size and kind."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))


_IDAT_CRC = zlib.crc32(b"IDAT")
_PNG_END = _png_chunk(b"IEND", b"")


def encode_png_pillow(array: np.ndarray, compress_level: int | None = None) -> bytes:
    """The same picture as :func:`encode_png`, encoded by Pillow (for comparison).

    ``compress_level`` None uses :func:`encode_png`'s choice (stored below
    :data:`PNG_STORE_BELOW` bytes of pixel data, else zlib level 1).
    """
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if compress_level is None:
        compress_level = 0 if a.nbytes + a.shape[0] < PNG_STORE_BELOW else 1
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", compress_level=compress_level, optimize=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=256)
def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The bytes :func:`numpy.save` writes before the data of a C-ordered array."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def npy_padded_header(shape: tuple[int, ...], dtype: np.dtype, size: int | None = None) -> bytes:
    """A version 1.0 ``.npy`` header (magic, length, dict) padded to ``size`` bytes.

    Without ``size``, the smallest multiple of 64 bytes that holds it. A file written row by
    row reserves room for the largest header first and writes the real one at the end.
    """
    text = (
        f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
        f"'shape': {tuple(shape)!r}, }}"
    )
    if size is None:
        size = -(-(10 + len(text) + 1) // 64) * 64
    text = text.ljust(size - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")
