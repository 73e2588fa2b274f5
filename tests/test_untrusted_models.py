"""Attacks on consent: SavedModel graphs, planted trust, files swapped between hash and load.

Each model here writes a marker file when its code runs, so "did it run?" is a file check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from maskviewer.core.errors import ModelLoadError, UnsafeModelError
from maskviewer.inference.loading import file_sha256, load_custom_objects
from maskviewer.inference.runner import ModelHost
from tests.test_safe_loading import _Answer, _loads, _save_code_models


def _marker_savedmodel(folder: Path, marker: Path) -> Path:
    """A SavedModel whose serving graph writes ``marker`` (tf.io.write_file) on every call."""
    import tensorflow as tf

    class Writer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return {"y": tf.matmul(x, tf.ones([4, 3])) * self.w}

    module = Writer()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="session")
def graph_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("graph")
    marker = base / "graph_ran.txt"
    return _marker_savedmodel(base / "writer", marker), marker


@pytest.fixture
def sm(graph_model):
    folder, marker = graph_model
    marker.unlink(missing_ok=True)
    yield folder, marker
    marker.unlink(missing_ok=True)


@pytest.fixture
def no_tf_loading(monkeypatch):
    """Fail loudly if anything restores a SavedModel (that may run its init ops)."""
    import keras
    import tensorflow as tf

    def refuse(*args, **kwargs):
        raise AssertionError("the SavedModel was loaded through TensorFlow")

    monkeypatch.setattr(keras.layers, "TFSMLayer", refuse)
    monkeypatch.setattr(tf.saved_model, "load", refuse)


# -- SavedModels are programs --------------------------------------------------------------------


def test_info_lists_signatures_without_loading_or_running(sm, no_tf_loading, capsys):
    from maskviewer.cli import main

    folder, marker = sm
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "x" in out and "(?, 4)" in out and "float32" in out and "(?, 3)" in out
    assert "--trust" in out and "serving_default" in out and "cannot be probed" in out
    assert main(["info", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert data["outputs"] == [{"name": "y", "shape": [None, 3], "dtype": "float32"}]
    assert set(data["signatures"]) == {"serving_default"}
    assert not marker.exists()


def test_savedmodel_without_consent_is_not_touched(sm, no_tf_loading):
    folder, marker = sm
    with pytest.raises(UnsafeModelError) as refused:
        ModelHost().load(folder)
    text = str(refused.value)
    assert "SavedModel" in text and "any operation" in text and "inference only" in text
    assert refused.value.sha256 == file_sha256(folder)
    assert not marker.exists()


def test_savedmodel_runs_with_trust(sm, capsys):
    from maskviewer.cli import main

    folder, marker = sm
    assert main(["info", str(folder), "--trust"]) == 0
    assert marker.exists(), "--trust should load and warm up the model"
    assert "'y'" not in capsys.readouterr().err
    marker.unlink()
    host = ModelHost()
    info = host.load(folder, safe_mode=False)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (y,) = host.predict({info.inputs[0].name: x}).values()
    np.testing.assert_allclose(y, x @ np.ones((4, 3), np.float32) * 2.0, rtol=1e-6)
    assert marker.exists()


def test_export_cli_refuses_savedmodel_without_trust(sm, tmp_path, capsys):
    from maskviewer.cli import main

    folder, marker = sm
    image = Path(__file__).resolve().parent.parent / "resources" / "demo" / "digit_1.png"
    rc = main(["export", str(image), "--model", str(folder), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "SavedModel" in err and "--trust" in err and "Traceback" not in err
    assert not marker.exists()


def test_window_asks_before_running_a_savedmodel(qtbot, window, sm):
    folder, marker = sm
    answer = _Answer(False)
    window.controller.confirm = answer
    window.controller.open_model(folder)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert len(answer.asked) == 1 and "SavedModel" in answer.asked[0][1]
    assert window.state.model_info is None and not marker.exists()

    answer.answer = True
    loads = _loads(window)
    window.controller.open_model(folder)
    qtbot.waitUntil(lambda: len(loads) == 1, timeout=60_000)
    assert marker.exists() and window.state.model_info.kind == "savedmodel"
    assert window.controller.prefs.trusted() == [file_sha256(folder)]


# -- the trust list cannot be written by someone else --------------------------------------------


def test_planted_trust_entries_are_ignored(qtbot, window, settings, code_models, sm):
    paths, marker = code_models
    folder, graph_marker = sm
    planted = [file_sha256(paths["keras"]), file_sha256(folder)]
    # what a graph with tf.io.write_file did: a hash list written into the settings file
    settings.setValue("trusted_sha256", planted)
    settings.sync()
    assert window.controller.prefs.trusted() == []
    answer = _Answer(False)
    window.controller.confirm = answer
    for target in (paths["keras"], folder):
        window.last_error = None
        window.controller.open_model(target)
        qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert len(answer.asked) == 2, "a planted entry was taken as consent"
    assert not marker.exists() and not graph_marker.exists()


def test_trust_is_signed_with_a_private_key(tmp_path):
    from PySide6.QtCore import QSettings

    from maskviewer.gui.settings import AppSettings

    ini = tmp_path / "s.ini"
    prefs = AppSettings(QSettings(str(ini), QSettings.Format.IniFormat))
    sha = "ab" * 32
    prefs.trust(sha)
    assert prefs.trusted() == [sha]
    key = tmp_path / "s-trust.key"
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    prefs.store.sync()
    assert key.read_bytes() not in ini.read_bytes()  # never in the settings file itself
    # the same settings read again with the same key: still trusted
    assert AppSettings(QSettings(str(ini), QSettings.Format.IniFormat)).trusted() == [sha]
    # copied beside another key (another user, or a forged list): not trusted
    other = tmp_path / "other"
    other.mkdir()
    (other / "s.ini").write_bytes(ini.read_bytes())
    assert AppSettings(QSettings(str(other / "s.ini"), QSettings.Format.IniFormat)).trusted() == []
    # a key file others can read is no secret: its signatures are not trusted
    key.chmod(0o644)
    assert AppSettings(QSettings(str(ini), QSettings.Format.IniFormat)).trusted() == []


# -- consent covers the bytes that run -----------------------------------------------------------


@pytest.fixture
def code_models(tmp_path, keras_mod):
    marker = tmp_path / "marker.txt"
    paths = _save_code_models(keras_mod, tmp_path, marker)
    return paths, marker


@pytest.fixture
def swap_pair(tmp_path, keras_mod):
    """A consented code model A at the path, and an unconsented one B ready to be swapped in."""
    a_marker, b_marker = tmp_path / "a_ran.txt", tmp_path / "b_ran.txt"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _save_code_models(keras_mod, tmp_path / "a", a_marker)["keras"]
    b = _save_code_models(keras_mod, tmp_path / "b", b_marker, seed=3)["keras"]
    return a, b, a_marker, b_marker


@pytest.mark.parametrize("moment", ["after_hash", "before_keras_opens", "symlink_swap"])
def test_file_swapped_between_hash_and_load_never_runs(swap_pair, moment, monkeypatch, keras_mod):
    a, b, a_marker, b_marker = swap_pair
    path = a.parent / "model.keras"
    if moment == "symlink_swap":
        path.symlink_to(a)
    else:
        os.link(a, path)
    consented = file_sha256(path)

    def swap() -> None:
        if moment == "symlink_swap":
            tmp = path.with_suffix(".tmp")
            tmp.symlink_to(b)
            os.replace(tmp, path)
        else:
            os.replace(b, path)  # renamed over the path

    if moment == "after_hash":
        from maskviewer.io import untrusted

        real = untrusted.digest
        monkeypatch.setattr(untrusted, "digest", lambda files: (real(files), swap())[0])
    else:
        real_load = keras_mod.saving.load_model
        monkeypatch.setattr(keras_mod.saving, "load_model", lambda *a, **k: (swap(), real_load(*a, **k))[1])
    from maskviewer.gui.model_loading import load_job

    class Ctx:
        host = ModelHost()

        def check(self) -> None:
            pass

    info, sha = load_job(str(path), [], False, {consented})(Ctx())
    assert not b_marker.exists(), "a file swapped in after the hash ran without consent"
    assert sha == consented and info.name == "model.keras"
    assert a_marker.exists(), "the consented model should have loaded"


def test_custom_objects_changed_after_consent_are_refused(qtbot, window, model_files, tmp_path):
    marker = tmp_path / "custom_ran.txt"
    custom = tmp_path / "custom.py"
    custom.write_text("import keras\n")

    def rewrite(n_asked: int) -> None:  # the file changes once the user said yes
        custom.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")

    answer = _Answer(True, before=rewrite)
    window.controller.confirm = answer
    loads = _loads(window)
    window.controller.open_model(model_files["sequential"], [str(custom)])
    qtbot.waitUntil(lambda: window.last_error is not None or bool(loads), timeout=30_000)
    assert not loads and "changed after you agreed" in window.last_error[1]
    assert not marker.exists(), "the changed custom objects file ran"
    assert window.state.model_info is None


def test_custom_objects_run_the_bytes_hashed(tmp_path):
    import hashlib

    marker = tmp_path / "ran.txt"
    custom = tmp_path / "custom.py"
    custom.write_text("def double(x):\n    return 2 * x\n")
    sha = hashlib.sha256(custom.read_bytes()).hexdigest()
    objects = load_custom_objects([custom], {str(custom): sha})
    assert objects["double"](3) == 6
    custom.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ModelLoadError, match="changed after you agreed"):
        load_custom_objects([custom], {str(custom): sha})
    assert not marker.exists()
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_custom_objects([fifo])


def test_savedmodel_with_a_symlink_inside_is_refused(sm, tmp_path):
    import shutil

    folder, _marker = sm
    copy = tmp_path / "linked"
    shutil.copytree(folder, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (copy / "assets").mkdir(exist_ok=True)
    (copy / "assets" / "vocab.txt").symlink_to(secret)
    with pytest.raises(ModelLoadError, match="symbolic link"):
        ModelHost().load(copy, safe_mode=False)
