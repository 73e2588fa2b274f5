"""A legacy .h5 is first read in a helper process: an HDF5 crash costs that process, not ours."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from maskviewer.core.errors import ModelLoadError
from maskviewer.inference import h5_check
from maskviewer.inference.loading import read_model_config


def _h5(config: str | None) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        if config is not None:
            f.attrs["model_config"] = config
        f["layer/kernel"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    return buf.getvalue()


@pytest.fixture
def crashing_helper(monkeypatch):
    """A helper whose HDF5 library 'crashes' (SIGSEGV) on every request, as a malformed file can."""
    h5_check._stop()
    monkeypatch.setattr(h5_check, "_helper", None)
    monkeypatch.setattr(
        h5_check, "_HELPER", "import os, signal, sys\nsys.stdin.buffer.read(8)\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    yield
    h5_check._stop()
    h5_check._helper = None


def test_config_is_read_in_the_helper(tmp_path):
    path = tmp_path / "m.h5"
    path.write_bytes(_h5('{"class_name": "Sequential", "config": {"layers": []}}'))
    assert read_model_config(path) == {"class_name": "Sequential", "config": {"layers": []}}
    assert h5_check._helper is not None and h5_check._helper.poll() is None
    path.write_bytes(_h5(None))
    assert read_model_config(path) is None


def test_a_crash_while_reading_is_a_clear_refusal(tmp_path, crashing_helper):
    path = tmp_path / "damaged.h5"
    path.write_bytes(_h5('{"a": 1}'))
    with pytest.raises(ModelLoadError, match="damaged.h5: the HDF5 library crashed"):
        read_model_config(path)


def test_the_helper_is_started_again_after_a_crash(tmp_path, crashing_helper, monkeypatch):
    path = tmp_path / "m.h5"
    path.write_bytes(_h5('{"a": 1}'))
    with pytest.raises(ModelLoadError):
        read_model_config(path)
    monkeypatch.undo()  # the real helper again
    h5_check._helper = None
    assert read_model_config(path) == {"a": 1}


def test_h5py_errors_stay_model_load_errors(tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="bad.h5"):
        read_model_config(path)
