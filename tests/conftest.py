"""Shared fixtures: offscreen Qt, isolated settings, small models built on the fly."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    """The real main window with its inference thread running; closed (and the thread joined) after."""
    from maskviewer.gui.app import create_window

    win = create_window(settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.controller.worker.device is not None, timeout=60_000)
    yield win
    win.close()
    assert not win.controller.worker.running, "the inference thread outlived the window"


def wait_prediction(qtbot, win, timeout=30_000):
    """Wait for the next prediction (or a prediction error) and return it."""
    qtbot.waitUntil(
        lambda: win.state.prediction is not None or bool(win.controller.last_prediction_error),
        timeout=timeout,
    )
    return win.state.prediction


@pytest.fixture(scope="session")
def keras_mod():
    import keras

    return keras


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, keras_mod):
    """Small saved models of each kind, built once per test session (seconds, CPU)."""
    from tests import model_zoo

    folder = tmp_path_factory.mktemp("models")
    return model_zoo.build_all(folder)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
