"""Keeping TensorFlow's start-up chatter off the terminal of a command-line run.

Importing TensorFlow prints, from C++ and before any of its log settings apply, lines such as
``WARNING: All log messages before absl::InitializeLog() ...``, ``I0000 ... cudart_stub.cc:
Could not find cuda drivers`` and ``E0000 ... failed call to cuInit``. A normal run prints only
its own messages: :func:`install` (called by each command once its arguments are read)

1. sets ``TF_CPP_MIN_LOG_LEVEL=3`` before the backend is imported (later log lines are not
   made at all) and quiets the ``absl`` and ``tensorflow`` Python loggers;
2. points the process's C-level standard error (file descriptor 2) at a pipe, and a thread
   copies what comes through to the terminal without the chatter (:func:`is_chatter`): a
   real error from a library still shows;
3. points Python's ``sys.stderr`` and :mod:`faulthandler` at the terminal itself, so the
   command's own messages and a crash report never wait on, or are lost in, the pipe.

``--verbose`` leaves everything as it was. When ``sys.stderr`` is not the process's own (a
test capturing it) nothing is changed either.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

#: lines TensorFlow, XLA, CUDA and absl print on their own (glog/absl prefixes ``I0000 ...``,
#: TF's dated ``2024-01-01 10:00:00.000000: I tensorflow/...``, and their usual sentences)
CHATTER = re.compile(
    r"^\s*(?:[IWEF]\d{4} \d\d:\d\d:\d\d"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|WARNING:absl:"
    r"|To enable the following instructions:"
    r"|This TensorFlow binary is optimized"
    r")"
    r"|cuInit|absl::|oneDNN custom operations|TF-TRT Warning|Unable to register cu(?:DNN|FFT|BLAS)"
    r"|computation_placer|rebuild TensorFlow with the appropriate compiler flags"
)

_installed: dict = {}


def is_chatter(line: str) -> bool:
    """Whether ``line`` is one of the backend's own start-up or log lines."""
    return CHATTER.search(line) is not None


def quiet_environment(verbose: bool = False) -> None:
    """Set the backend's log level before it is imported: ``3`` (errors raised, not logged)
    for a normal run, ``0`` (everything) with ``--verbose``; a level the user set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if not verbose:
        import logging

        for name in ("absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)


def install(verbose: bool = False) -> bool:
    """Filter the backend's chatter out of this process's standard error (see the module's
    notes); returns whether the filter is on. Safe to call more than once."""
    quiet_environment(verbose)
    if verbose or _installed:
        return bool(_installed)
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return False  # someone else holds stderr (a test's capture): leave it
    try:
        fd = sys.stderr.fileno()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        return False
    terminal = os.dup(fd)  # the real standard error, for our own messages
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    thread = threading.Thread(target=_copy, args=(read_end, terminal), name="stderr-filter", daemon=True)
    thread.start()
    # a text stream on the terminal's descriptor (a stream, no file is written)
    own = io.TextIOWrapper(io.FileIO(terminal, "w", closefd=False), line_buffering=True,
                           encoding=getattr(sys.stderr, "encoding", None) or "utf-8", errors="backslashreplace")
    _installed.update(fd=fd, terminal=terminal, thread=thread, stream=own, previous=sys.stderr)
    sys.stderr = own
    import faulthandler

    if faulthandler.is_enabled():
        faulthandler.enable(file=own)
    atexit.register(uninstall)
    return True


def uninstall() -> None:
    """Give file descriptor 2 back to the terminal and let the filter copy what is left."""
    if not _installed:
        return
    state = dict(_installed)
    _installed.clear()
    os.dup2(state["terminal"], state["fd"])  # the pipe's last writer is gone: the copy ends
    state["thread"].join(timeout=2.0)
    sys.stderr = state["previous"]
    state["stream"].flush()


def _copy(read_end: int, terminal: int) -> None:
    """Copy lines from the pipe to the terminal, less the chatter, until the pipe closes."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        _write(terminal, lines)
    if pending:
        _write(terminal, [pending])
    os.close(read_end)


def _write(terminal: int, lines: list[bytes]) -> None:
    kept = [line for line in lines if not is_chatter(line.decode("utf-8", "replace"))]
    if kept:
        try:
            os.write(terminal, b"\n".join(kept) + b"\n")
        except OSError:
            pass
