"""Large 8-bit PNGs decoded a band of rows at a time, straight into the image's array.

Pillow decodes a whole PNG into its own buffer (4 bytes a pixel for RGB) before numpy can copy
it: at 14,000² that is 784 MB on top of the 588 MB array. Here the compressed stream is
inflated a band at a time, and each band is unfiltered by Pillow's own PNG decoder (the "zip"
codec PngImagePlugin uses), so the pixels are Pillow's, byte for byte, and the peak is the
array plus a few bands.

A band's first row may refer to the row above it (the Up, Average and Paeth filters): the band
is handed to the decoder behind that row, already unfiltered and marked filter 0 (None), so it
is the same context the whole-image decode had. Anything this reader does not expect
(interlacing, other bit depths, a truncated or corrupt stream, animation) gives ``None`` and
the caller decodes the file the usual way, which reports the error in its own words.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

#: PNG colour type (8 bits a sample) → Pillow mode, and its bytes a pixel
_MODES = {0: ("L", 1), 2: ("RGB", 3), 6: ("RGBA", 4)}
#: pixel bytes inflated per band (a few bands' worth of temporaries live at once)
BAND_BYTES = 1 << 21
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(fh):
    """``(type, data)`` for each chunk, the CRC checked; stops at IEND or a broken chunk."""
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        data = fh.read(length)
        crc = fh.read(4)
        if len(data) < length or len(crc) < 4:
            return
        if zlib.crc32(data, zlib.crc32(kind)) != struct.unpack(">I", crc)[0]:
            return
        yield kind, data
        if kind == b"IEND":
            return


def _header(fh) -> tuple[int, int, str, int] | None:
    """Width, height, Pillow mode and bytes a pixel, if this reader handles the file."""
    if fh.read(8) != _SIGNATURE:
        return None
    first = next(_chunks(fh), None)
    if first is None or first[0] != b"IHDR" or len(first[1]) != 13:
        return None
    width, height, depth, colour, method, filt, interlace = struct.unpack(">IIBBBBB", first[1])
    if depth != 8 or colour not in _MODES or method or filt or interlace:
        return None
    mode, nbytes = _MODES[colour]
    return width, height, mode, nbytes


def _unfilter(lines: bytearray, mode: str, width: int, rows: int) -> np.ndarray | None:
    """``rows`` filtered scanlines as pixels; ``lines`` starts with the (unfiltered) row above."""
    from PIL import Image

    try:
        im = Image.frombytes(mode, (width, rows + 1), zlib.compress(lines, 0), "zip", mode)
    except (ValueError, OSError):  # a bad filter byte or a short stream
        return None
    return np.asarray(im)[1:]


def read_png_banded(path: Path, expect_mode: str) -> np.ndarray | None:
    """An 8-bit grey, RGB or RGBA non-interlaced PNG as ``(H, W)`` or ``(H, W, C)`` uint8.

    The caller has checked the size against the pixel budget; ``expect_mode`` is the mode
    Pillow opened the file in (a file Pillow reads otherwise is left to Pillow). Returns
    ``None`` for a file this reader does not take (see the module notes); the pixels equal
    Pillow's when it returns.
    """
    with open(path, "rb") as fh:
        head = _header(fh)
        if head is None or head[2] != expect_mode:
            return None
        width, height, mode, nbytes = head
        line = width * nbytes + 1  # a filter byte, then the row
        out = np.empty((height, width, nbytes) if nbytes > 1 else (height, width), np.uint8)
        step = max(1, BAND_BYTES // line)
        inflate = zlib.decompressobj()
        # the row above the band, unfiltered, as a row with filter 0; zeros above the first
        lines = bytearray(line)
        row = 0
        for kind, data in _chunks(fh):
            if kind in (b"acTL", b"fdAT"):
                return None  # animated: Pillow's frame handling decides what is shown
            if kind != b"IDAT":
                continue
            while row < height:
                target = (min(step, height - row) + 1) * line
                got = inflate.decompress(data, target - len(lines))
                data = inflate.unconsumed_tail
                lines += got
                if len(lines) < target:
                    if data or got:
                        continue
                    break  # this chunk is used up: inflate the next
                rows = target // line - 1
                pixels = _unfilter(lines, mode, width, rows)
                if pixels is None:
                    return None
                out[row : row + rows] = pixels
                row += rows
                lines = bytearray(b"\x00") + pixels[-1].tobytes()
            if row >= height:
                return out
    return None
