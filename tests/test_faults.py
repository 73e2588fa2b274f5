"""Faults at run time, through the real window: each one is reported, the inference thread
survives, and the next request runs and gives the model's own numbers. Atomic writes: a
failure or a kill mid-write never leaves a half-written file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from maskviewer.core.errors import MaskviewerError
from maskviewer.io.atomic import atomic_write
from maskviewer.io.images import save_image
from tests.conftest import wait_prediction

#: What the Tripwire layer does on its next call: None (pass through), "raise", "oom", "block".
TRIP: dict = {"mode": None, "entered": threading.Event(), "release": threading.Event()}


@pytest.fixture(scope="module")
def tripwire_model(tmp_path_factory, keras_mod):
    """A model with a layer the test can make fail, run out of memory, or block."""
    keras = keras_mod

    @keras.saving.register_keras_serializable(package="maskviewer_faults")
    class Tripwire(keras.layers.Layer):
        def call(self, x):
            mode = TRIP["mode"]
            if mode == "raise":
                raise RuntimeError("tripwire: the layer failed")
            if mode == "oom":
                import tensorflow as tf

                raise tf.errors.ResourceExhaustedError(
                    None, None, "OOM when allocating tensor with shape[1,32,32,1] and type float"
                )
            if mode == "block":
                TRIP["entered"].set()
                TRIP["release"].wait(30)
            return x

    keras.utils.set_random_seed(21)
    inp = keras.Input((None, None, 1), name="pixels")
    x = Tripwire(name="tripwire")(inp)
    x = keras.layers.Reshape((32 * 32,), name="flat")(x)  # any size but 32×32 fails in here
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="tripwire_model")
    path = tmp_path_factory.mktemp("faults") / "tripwire.keras"
    model.save(path)
    return path


@pytest.fixture(autouse=True)
def _reset_trip():
    TRIP["mode"] = None
    TRIP["entered"].clear()
    TRIP["release"].clear()
    yield
    TRIP["mode"] = None
    TRIP["release"].set()  # never leave the inference thread waiting


def _image(tmp_path: Path, size: int = 32, seed: int = 0) -> Path:
    path = tmp_path / f"grey_{size}_{seed}.png"
    save_image(path, np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))
    return path


def _ready(qtbot, window, tmp_path, model_path):
    assert window.controller.open_image(_image(tmp_path))
    window.controller.open_model(model_path)
    pred = wait_prediction(qtbot, window)
    assert pred is not None, window.controller.last_prediction_error
    return pred


def _reference(keras_mod, model_path, x):
    model = keras_mod.saving.load_model(model_path, compile=False)
    return np.asarray(model(x[None], training=False))[0]


def _failed(qtbot, window, previous) -> str:
    """Wait for the prediction request just made to fail; return the message shown."""
    c = window.controller
    qtbot.waitUntil(lambda: bool(c.last_prediction_error), timeout=30_000)
    assert window.state.prediction is previous  # the last good prediction stays
    label = window.predictions_panel.error_label
    assert not label.isHidden() and label.text() == c.last_prediction_error
    assert c.worker.running
    return c.last_prediction_error


def _recovers(qtbot, window, keras_mod, model_path):
    """The next request runs, gives the model's numbers, and clears the error."""
    c = window.controller
    before = window.state.prediction
    TRIP["mode"] = None
    assert c.run_prediction() is not None
    qtbot.waitUntil(
        lambda: window.state.prediction is not before and window.state.prediction is not None,
        timeout=30_000,
    )
    pred = window.state.prediction
    assert c.last_prediction_error == "" and window.predictions_panel.error_label.isHidden()
    np.testing.assert_allclose(
        pred.outputs["probs"], _reference(keras_mod, model_path, pred.inputs["pixels"]), rtol=1e-5
    )
    qtbot.waitUntil(lambda: window.progress_bar.isHidden(), timeout=10_000)


def test_exception_inside_a_model_call(qtbot, window, tmp_path, tripwire_model, keras_mod):
    first = _ready(qtbot, window, tmp_path, tripwire_model)
    TRIP["mode"] = "raise"
    window.controller.run_prediction()
    message = _failed(qtbot, window, first)
    assert message == "The model failed while running in layer Tripwire: RuntimeError: tripwire: the layer failed"
    _recovers(qtbot, window, keras_mod, tripwire_model)


def test_device_out_of_memory_inside_the_model(qtbot, window, tmp_path, tripwire_model, keras_mod):
    first = _ready(qtbot, window, tmp_path, tripwire_model)
    TRIP["mode"] = "oom"
    window.controller.run_prediction()
    message = _failed(qtbot, window, first)
    assert "ran out of memory" in message and "smaller image" in message
    _recovers(qtbot, window, keras_mod, tripwire_model)


def test_memory_error_in_the_job(qtbot, window, tmp_path, tripwire_model, keras_mod, monkeypatch):
    first = _ready(qtbot, window, tmp_path, tripwire_model)
    host = window.controller.worker.host
    real_predict = host.predict
    calls = []

    def predict_once_out_of_memory(arrays):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise MemoryError()
        return real_predict(arrays)

    monkeypatch.setattr(host, "predict", predict_once_out_of_memory)
    window.controller.run_prediction()
    message = _failed(qtbot, window, first)
    assert "ran out of memory" in message
    _recovers(qtbot, window, keras_mod, tripwire_model)
    assert calls == ["maskviewer-inference"] * 2


def test_shape_mismatch_inside_the_model(qtbot, window, tmp_path, tripwire_model, keras_mod):
    first = _ready(qtbot, window, tmp_path, tripwire_model)
    window.controller.open_image(_image(tmp_path, size=20))  # Reshape inside needs 32×32
    qtbot.waitUntil(lambda: bool(window.controller.last_prediction_error), timeout=30_000)
    message = window.controller.last_prediction_error
    assert "rejected the input shape in layer Reshape" in message and "(1, 20, 20, 1)" in message
    assert "Adjust the input mapping" in message
    assert window.state.prediction is None or window.state.prediction is not first
    window.controller.open_image(_image(tmp_path, size=32, seed=3))
    _recovers(qtbot, window, keras_mod, tripwire_model)


def test_cancelled_inference(qtbot, window, tmp_path, tripwire_model, keras_mod):
    first = _ready(qtbot, window, tmp_path, tripwire_model)
    cancelled = []
    window.controller.worker.job_cancelled.connect(lambda kind, gen: cancelled.append(kind))
    TRIP["mode"] = "block"
    window.controller.run_prediction()
    assert TRIP["entered"].wait(30), "the model call never started"
    qtbot.waitUntil(lambda: not window.cancel_button.isHidden(), timeout=10_000)
    window.cancel_button.click()
    TRIP["release"].set()  # the call returns; the job sees it was cancelled and drops the result
    # Cancel stops every job: the running prediction, and jobs still waiting (a tool's probe),
    # which are reported cancelled too
    qtbot.waitUntil(lambda: "predict" in cancelled, timeout=30_000)
    assert cancelled.count("predict") == 1
    assert window.state.prediction is first and window.controller.last_prediction_error == ""
    qtbot.waitUntil(lambda: window.cancel_button.isHidden(), timeout=10_000)
    _recovers(qtbot, window, keras_mod, tripwire_model)


@pytest.mark.parametrize(
    "fault,shown",
    [
        (KeyError("no such layer"), "KeyError"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError"),
        (SystemExit(3), "SystemExit"),  # e.g. a custom-objects file calling sys.exit()
    ],
    ids=["KeyError", "ZeroDivisionError", "SystemExit"],
)
def test_exception_in_a_worker_job(qtbot, window, tmp_path, tripwire_model, keras_mod, fault, shown):
    _ready(qtbot, window, tmp_path, tripwire_model)
    c = window.controller
    failures = []
    c.worker.job_failed.connect(lambda kind, gen, message, exc: failures.append((kind, message)))

    def broken_job(ctx):
        raise fault

    c.submit("fault", broken_job)
    qtbot.waitUntil(lambda: bool(failures), timeout=30_000)
    kind, message = failures[0]
    assert kind == "fault" and shown in message and "broken_job" in message
    # a tool's job reports in the status bar (the tool's own panel shows it too)
    assert window.statusBar().currentMessage() == f"Fault failed: {message}"
    assert c.worker.running, "the inference thread died"
    _recovers(qtbot, window, keras_mod, tripwire_model)


def test_failure_while_loading_keeps_the_previous_model(
    qtbot, window, tmp_path, tripwire_model, keras_mod, model_files, monkeypatch
):
    _ready(qtbot, window, tmp_path, tripwire_model)
    from maskviewer.inference import runner

    def broken_load(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(runner, "load_model", broken_load)
    window.last_error = None
    window.controller.open_model(model_files["rgb"])
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert window.last_error[0] == "Cannot open model" and "disk went away" in window.last_error[1]
    assert window.state.model_info.name == "tripwire.keras"
    monkeypatch.undo()
    _recovers(qtbot, window, keras_mod, tripwire_model)


def test_backend_that_cannot_start_is_reported(qtbot, settings, monkeypatch, tmp_path, model_files):
    from maskviewer.gui.app import create_window
    from maskviewer.inference import backend

    def no_backend():
        raise ImportError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(backend, "init_backend", no_backend)
    win = create_window(settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.last_error is not None, timeout=30_000)
    assert win.last_error[0] == "Model backend" and "libcudart" in win.last_error[1]
    assert win.backend_label.text() == "No model backend"
    assert win.controller.open_image(_image(tmp_path))  # the window keeps working
    assert win.state.image is not None
    win.close()
    assert not win.controller.worker.running


# -- atomic writes ------------------------------------------------------------------------------


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != name)


def test_atomic_write_failure_keeps_the_previous_file(tmp_path):
    target = tmp_path / "mask.npy"
    target.write_bytes(b"previous contents")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous contents"
    assert _leftovers(tmp_path, "mask.npy") == []


def test_atomic_write_rename_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "session.json"
    target.write_text("old session")

    def no_rename(src, dst):
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(PermissionError):
        with atomic_write(target, "w") as fh:
            fh.write("new session")
    monkeypatch.undo()
    assert target.read_text() == "old session" and _leftovers(tmp_path, "session.json") == []


def test_atomic_write_success_has_normal_permissions(tmp_path):
    target = tmp_path / "export.png"
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and _leftovers(tmp_path, "export.png") == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_savers_that_fail_midway_keep_the_previous_file(tmp_path):
    from maskviewer.io.masks import save_mask

    image_path = tmp_path / "picture.png"
    save_image(image_path, np.zeros((4, 4), np.uint8))
    before = image_path.read_bytes()
    with pytest.raises((TypeError, ValueError, KeyError)):
        save_image(image_path, np.zeros((4, 4, 7), np.complex64))  # Pillow cannot encode this
    assert image_path.read_bytes() == before and _leftovers(tmp_path, "picture.png") == []

    mask_path = tmp_path / "m.png"
    save_mask(mask_path, np.ones((4, 4), np.float32))
    before = mask_path.read_bytes()
    with pytest.raises(MaskviewerError):
        save_mask(tmp_path / "m.gif", np.ones((4, 4)))  # refused before anything is written
    assert not (tmp_path / "m.gif").exists() and mask_path.read_bytes() == before


def test_killed_during_a_write_leaves_the_previous_file(tmp_path):
    """A process killed mid-write (no cleanup runs at all) cannot damage the target."""
    target = tmp_path / "mask.npy"
    np.save(target, np.zeros((8, 8), np.float32))
    before = target.read_bytes()
    script = (
        "import os, signal, sys\n"
        "from maskviewer.io.atomic import atomic_write\n"
        "with atomic_write(sys.argv[1]) as fh:\n"
        "    fh.write(b'\\x93NUMPY half written')\n"
        "    fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(target)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    np.testing.assert_array_equal(np.load(target), np.zeros((8, 8), np.float32))
    # what the kill left behind is a hidden temporary file, never something under the real name
    assert all(name.startswith(".mask.npy.") and name.endswith(".tmp") for name in _leftovers(tmp_path, "mask.npy"))
