"""Safe model loading: files that carry code are refused, explained, and run only on consent.

The models here hold a Lambda layer whose function writes a marker file when it is called (Keras
calls it while rebuilding the model), so "did the file's code run?" is a plain file check.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from maskviewer.core.errors import ModelLoadError, UnsafeModelError
from maskviewer.inference import loading
from maskviewer.inference.loading import file_sha256, load_model
from maskviewer.inference.runner import ModelHost

ROOT = Path(__file__).resolve().parent.parent


def _code_model(keras, marker: Path, seed: int = 0, name: str = "sneaky"):
    """A model whose Lambda layer writes ``marker`` whenever it is called."""
    keras.utils.set_random_seed(seed)
    # built from source text so the serialised bytecode holds the marker path as a constant
    fn = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")  # noqa: S307
    inp = keras.Input((4,), name="x")
    out = keras.layers.Lambda(fn, name=name)(inp)
    out = keras.layers.Dense(2, name="dense")(out)
    return keras.Model(inp, out, name="code_model")


def _save_code_models(keras, folder: Path, marker: Path, seed: int = 0) -> dict[str, Path]:
    model = _code_model(keras, marker, seed)
    paths = {"keras": folder / "code.keras", "h5": folder / "code.h5"}
    for path in paths.values():
        model.save(path)
    marker.unlink(missing_ok=True)  # building the model above called the lambda once
    return paths


@pytest.fixture
def code_models(tmp_path, keras_mod):
    marker = tmp_path / "marker.txt"
    paths = _save_code_models(keras_mod, tmp_path, marker)
    assert not marker.exists()
    return paths, marker


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_code_model_is_refused_without_consent(code_models, fmt):
    paths, marker = code_models
    with pytest.raises(UnsafeModelError) as info:
        ModelHost().load(paths[fmt])
    assert not marker.exists(), "the file's code ran although safe mode was on"
    assert info.value.layers == ["sneaky (Lambda)"]
    text = str(info.value)
    assert paths[fmt].name in text and "sneaky (Lambda)" in text
    assert "Python code" in text and "permissions" in text and "trust" in text


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_keras_refuses_too_with_safe_mode_passed_explicitly(code_models, fmt, monkeypatch):
    """With our own config check switched off, Keras's safe mode still refuses the file, even on
    a thread where unsafe deserialisation was enabled (Keras keeps that setting per thread)."""
    import keras

    paths, marker = code_models
    monkeypatch.setattr(loading, "find_code_layers", lambda config: [])
    outcome: list[BaseException | None] = []

    def on_a_thread() -> None:
        keras.config.enable_unsafe_deserialization()  # this thread's default is now unsafe
        try:
            load_model(paths[fmt], safe_mode=True)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=on_a_thread)
    thread.start()
    thread.join(60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], UnsafeModelError), outcome[0]
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_consent_loads_the_model_on_a_fresh_thread(code_models, fmt, keras_mod):
    """``safe_mode=False`` works on a thread that never enabled unsafe deserialisation."""
    paths, marker = code_models
    result: dict = {}

    def on_a_thread() -> None:
        host = ModelHost()
        result["info"] = host.load(paths[fmt], safe_mode=False)
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        result["ours"] = host.predict({"x": x})["dense"]
        result["x"] = x

    thread = threading.Thread(target=on_a_thread)
    thread.start()
    thread.join(60)
    assert "ours" in result
    assert marker.exists(), "consented load did not run the model's own code"
    ref = keras_mod.saving.load_model(paths[fmt], compile=False, safe_mode=False)
    np.testing.assert_allclose(result["ours"], np.asarray(ref(result["x"])), rtol=1e-6)
    assert [layer.name for layer in result["info"].layers] == ["x", "sneaky", "dense"]


def test_module_outside_keras_is_never_imported(tmp_path, monkeypatch, model_files):
    """A config naming a non-Keras module must not import it (the import alone runs its code)."""
    marker = tmp_path / "imported.txt"
    gadget = tmp_path / "gadget_mod_for_maskviewer_test.py"
    gadget.write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = zipfile.ZipFile(model_files["sequential"])
    config = json.loads(src.read("config.json"))
    dense = config["config"]["layers"][-1]
    dense["config"]["activation"] = {
        "module": "gadget_mod_for_maskviewer_test",
        "class_name": "function",
        "config": "run",
        "registered_name": "run",
    }
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(crafted, "w") as dst:
        for item in src.infolist():
            data = json.dumps(config).encode() if item.filename == "config.json" else src.read(item)
            dst.writestr(item, data)
    for safe in (True, False):
        with pytest.raises(ModelLoadError):
            load_model(crafted, safe_mode=safe)
    assert not marker.exists()
    assert "gadget_mod_for_maskviewer_test" not in sys.modules


def test_keras_is_pinned_at_a_fixed_version():
    import keras
    from packaging.version import Version

    assert Version(keras.__version__) >= Version("3.13.2")
    pins = re.findall(r'^\s*"keras\s*>=\s*([0-9.]+)', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pins and all(Version(v) >= Version("3.13.2") for v in pins)


# -- through the window ------------------------------------------------------------------------


class _Answer:
    """Stands in for the confirmation dialog; records what it was asked."""

    def __init__(self, answer: bool, before=None) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []
        self.before = before

    def __call__(self, title: str, text: str) -> bool:
        self.asked.append((title, text))
        if self.before is not None:
            self.before(len(self.asked))
        return self.answer


def _loads(window) -> list:
    seen: list = []
    window.state.model_changed.connect(seen.append)
    return seen


def test_window_refusal_explains_and_runs_nothing(qtbot, window, code_models):
    paths, marker = code_models
    answer = _Answer(False)
    window.controller.confirm = answer
    window.controller.open_model(paths["keras"])
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert len(answer.asked) == 1
    title, text = answer.asked[0]
    assert title == "Model contains code"
    assert "sneaky (Lambda)" in text and "runs the code" in text and "SHA-256" in text
    assert window.last_error[0] == "Model not loaded" and "sneaky (Lambda)" in window.last_error[1]
    assert window.state.model_info is None and not marker.exists()
    assert window.controller.prefs.trusted() == []
    assert window.controller.worker.running


def test_window_consent_is_remembered_by_sha256(qtbot, window, code_models, keras_mod, monkeypatch):
    paths, marker = code_models
    path = paths["keras"]
    calls: list[tuple[str, bool]] = []
    original = keras_mod.saving.load_model

    def recording_load(*args, **kwargs):
        assert "safe_mode" in kwargs, "safe_mode must be passed explicitly"
        calls.append((threading.current_thread().name, kwargs["safe_mode"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(keras_mod.saving, "load_model", recording_load)
    answer = _Answer(True)
    window.controller.confirm = answer
    loads = _loads(window)

    window.controller.open_model(path)
    qtbot.waitUntil(lambda: len(loads) == 1, timeout=30_000)
    assert len(answer.asked) == 1 and marker.exists()
    assert window.state.model_info.name == "code.keras"
    first_sha = file_sha256(path)
    assert window.controller.prefs.trusted() == [first_sha]
    # the refusal came from our config check; the consented load ran on the inference thread
    assert calls == [("maskviewer-inference", False)]

    marker.unlink()
    window.controller.open_model(path)
    qtbot.waitUntil(lambda: len(loads) == 2, timeout=30_000)
    assert len(answer.asked) == 1, "consent for the same file was asked again"
    assert marker.exists()

    # the same name with other contents is another file: ask again
    marker.unlink()
    _save_code_models(keras_mod, path.parent, marker, seed=5)
    answer.answer = False
    window.controller.open_model(path)
    qtbot.waitUntil(lambda: len(answer.asked) == 2 and window.last_error is not None, timeout=30_000)
    assert not marker.exists() and len(loads) == 2
    assert window.state.model_info.name == "code.keras"  # the previously loaded model stays
    assert window.controller.prefs.trusted() == [first_sha]


def test_file_swapped_during_the_question_is_asked_about_again(qtbot, window, code_models, keras_mod):
    """Consent covers the file that was shown to the user, not whatever is at the path later."""
    paths, marker = code_models
    path = paths["keras"]
    other_marker = path.parent / "other_marker.txt"
    other = path.parent / "other"
    other.mkdir()
    _save_code_models(keras_mod, other, other_marker, seed=9)

    def swap(n_asked: int) -> None:
        if n_asked == 1:  # while the dialog is open, the file changes under it
            shutil.copy(other / "code.keras", path)

    answer = _Answer(True, before=swap)
    sha_before = file_sha256(path)
    window.controller.confirm = answer
    loads = _loads(window)
    window.controller.open_model(path)
    qtbot.waitUntil(lambda: len(loads) == 1, timeout=30_000)
    assert len(answer.asked) == 2, "the swapped file was loaded without asking"
    assert other_marker.exists() and not marker.exists()
    assert set(window.controller.prefs.trusted()) == {sha_before, file_sha256(path)}


# -- command line ------------------------------------------------------------------------------


def test_cli_info_needs_trust(code_models, capsys):
    from maskviewer.cli import main

    paths, marker = code_models
    assert main(["info", str(paths["h5"])]) == 2
    err = capsys.readouterr().err
    assert "sneaky (Lambda)" in err and "--trust" in err and "Traceback" not in err
    assert not marker.exists()
    assert main(["info", str(paths["h5"]), "--trust"]) == 0
    out = capsys.readouterr().out
    assert "sneaky" in out and "Lambda" in out
    assert marker.exists()


# -- legacy .h5 --------------------------------------------------------------------------------


def _as_keras2_nested_h5(src: Path, dst: Path) -> None:
    """Rewrite a Keras 3 .h5 of a nested model the way Keras 2 (tf.keras) stored it.

    Keras 2 counted the inner model's own construction as its node 0, so the outer graph calls
    node 1, and wrote inbound nodes as ``[[name, node, tensor, kwargs]]`` lists.
    """
    shutil.copy(src, dst)

    def convert(layers: list[dict], inner: set[str]) -> None:
        for layer in layers:
            nodes = []
            for node in layer["inbound_nodes"]:
                refs = []
                for arg in node["args"]:
                    name, index, tensor = arg["config"]["keras_history"]
                    refs.append([name, index + 1 if name in inner else index, tensor, {}])
                nodes.append(refs)
            layer["inbound_nodes"] = nodes
            if layer["class_name"] == "Functional":
                convert(layer["config"]["layers"], set())
                for key in ("input_layers", "output_layers"):
                    layer["config"][key] = [layer["config"][key]]

    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        inner = {la["name"] for la in config["config"]["layers"] if la["class_name"] == "Functional"}
        convert(config["config"]["layers"], inner)
        for key in ("input_layers", "output_layers"):
            config["config"][key] = [config["config"][key]]
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"


def test_legacy_nested_h5_is_explained(tmp_path, keras_mod, monkeypatch):
    keras_mod.utils.set_random_seed(4)
    inner_in = keras_mod.Input((16, 16, 3))
    inner = keras_mod.Model(inner_in, keras_mod.layers.Conv2D(4, 3, name="c")(inner_in), name="bb")
    inp = keras_mod.Input((16, 16, 3), name="img")
    x = keras_mod.layers.GlobalAveragePooling2D(name="gap")(inner(inp))
    model = keras_mod.Model(inp, keras_mod.layers.Dense(3, name="probs")(x))
    model.save(tmp_path / "keras3.h5")
    assert ModelHost().load(tmp_path / "keras3.h5").name == "keras3.h5"  # Keras 3's own file loads
    _as_keras2_nested_h5(tmp_path / "keras3.h5", tmp_path / "keras2.h5")
    with pytest.raises(Exception) as plain:  # what Keras itself says
        keras_mod.saving.load_model(tmp_path / "keras2.h5", compile=False)
    assert "disconnected nodes" in str(plain.value)
    with pytest.raises(ModelLoadError) as info:
        ModelHost().load(tmp_path / "keras2.h5")
    text = str(info.value)
    assert text.startswith("keras2.h5:") and "Keras 2" in text and "nested" in text
    assert ".keras" in text  # what to do
    assert len(text) < 700, "the explanation should not dump the model configuration"
    assert "tf_keras" not in text  # not installed here: not offered

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "tf_keras" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelLoadError, match=r"tf_keras\.models\.load_model\(\) can read it"):
        ModelHost().load(tmp_path / "keras2.h5")
