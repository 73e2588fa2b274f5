"""Reading an untrusted HDF5 (legacy ``.h5``) model in a separate process first.

HDF5's C library can crash the whole process (a segmentation fault, no Python exception) on a
malformed file: hypothesis found byte mutations of a legacy model that do. A crash of the
viewer is what a hostile or damaged file must never cause, so the first read of an ``.h5``
happens in a helper process: it walks every group, attribute and dataset (what Keras will
read) and hands back the ``model_config`` attribute. A helper that dies means the file is
damaged; the viewer refuses it and keeps running. Only files that passed this walk are opened
in-process (by Keras).

The helper is started on first use and kept (a fresh Python with h5py costs ~0.3 s; a request
to a running one costs what the walk costs); one that died is started again on the next file.
"""

from __future__ import annotations

import atexit
import select
import struct
import subprocess
import sys
import threading

from maskviewer.core.errors import ModelLoadError

#: the helper: requests are ``<u64 length><bytes>`` on stdin, answers ``<u8 status><u64 length>
#: <bytes>`` on stdout: 0 the model_config, 1 no config, 2 h5py's error message
_HELPER = r"""
import io, struct, sys
import h5py

def walk(data):
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            def visit(_name, obj):
                for key in obj.attrs:
                    obj.attrs[key]
                if isinstance(obj, h5py.Dataset):
                    obj[()]
            for key in f.attrs:
                f.attrs[key]
            f.visititems(visit)
            raw = f.attrs.get("model_config")
    except Exception as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return 2, detail.encode("utf-8", "replace")
    if raw is None:
        return 1, b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes):
        return 2, ("the configuration is stored as %s, not text" % type(raw).__name__).encode()
    return 0, raw

inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    (n,) = struct.unpack("<Q", head)
    status, payload = walk(inp.read(n))
    out.write(struct.pack("<BQ", status, len(payload)) + payload)
    out.flush()
"""

#: a walk that takes longer than this is treated as a damaged file (a loop in the file's links)
TIMEOUT_S = 300.0

_lock = threading.Lock()
_helper: subprocess.Popen | None = None


def read_h5_config(data: bytes, name: str) -> bytes | None:
    """The ``model_config`` attribute of the HDF5 file ``data``, read in the helper process.

    Returns None when the file has no configuration.

    Raises
    ------
    ModelLoadError
        Reading it crashed or hung the HDF5 library (the file is damaged).
    ValueError
        h5py could not read it (its message).
    """
    with _lock:
        try:
            status, payload = _ask(data)
        except _HelperDied as exc:
            raise ModelLoadError(
                f"{name}: the HDF5 library {exc} reading this file; the file is damaged. It was "
                "read in a separate process, so nothing else was affected."
            ) from None
    if status == 0:
        return payload
    if status == 1:
        return None
    raise ValueError(payload.decode("utf-8", "replace") or "unreadable")


class _HelperDied(Exception):
    pass


def _ask(data: bytes) -> tuple[int, bytes]:
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen(
            [sys.executable, "-c", _HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    proc = _helper
    try:
        proc.stdin.write(struct.pack("<Q", len(data)) + data)
        proc.stdin.flush()
        head = _read(proc, 9)
        status, n = struct.unpack("<BQ", head)
        return status, _read(proc, n)
    except (OSError, _HelperDied) as exc:
        _helper = None
        reason = exc if isinstance(exc, _HelperDied) else None
        code = proc.poll()
        if code is None:
            proc.kill()
            code = proc.wait()
        raise _HelperDied(str(reason) if reason and str(reason) else f"crashed (exit {code})") from None


def _read(proc: subprocess.Popen, n: int) -> bytes:
    """``n`` bytes from the helper, or :class:`_HelperDied` when it ends or takes too long."""
    chunks, got = [], 0
    fd = proc.stdout.fileno()
    while got < n:
        ready, _, _ = select.select([fd], [], [], TIMEOUT_S)
        if not ready:
            proc.kill()
            raise _HelperDied(f"did not finish in {TIMEOUT_S:.0f} s")
        chunk = proc.stdout.read1(n - got)
        if not chunk:
            raise _HelperDied("")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@atexit.register
def _stop() -> None:
    if _helper is not None and _helper.poll() is None:
        _helper.kill()
        _helper.wait()
