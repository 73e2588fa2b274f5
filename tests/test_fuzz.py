"""Fuzzing the file loaders: random bytes and mutated valid files.

Every input must either load into something well formed or raise one of the project's own
errors (a :class:`MaskviewerError` subclass, whose message is shown to the user); nothing else
may escape, and no input may hang (each one runs under an alarm). Run with ``-s`` to see how many
inputs each loader was given.

The size limits are lowered while fuzzing so that a mutated header cannot make a test allocate
hundreds of megabytes; the limits themselves are tested in test_image_formats.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from maskviewer.core.errors import MaskviewerError, ModelLoadError
from maskviewer.io import images as images_io
from maskviewer.io import masks as masks_io
from maskviewer.io.images import load_image
from maskviewer.io.masks import load_mask

PER_INPUT_SECONDS = 10
COUNTS: dict[str, int] = {}
# decoders warn about the corrupt files they are fed here; that is expected
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:tifffile.*"),
]

FUZZ = settings(
    max_examples=1000,
    deadline=None,  # the alarm below bounds each input; hypothesis's deadline only reports late
    database=None,  # no example database written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """An input took longer than PER_INPUT_SECONDS."""


@contextlib.contextmanager
def _time_limit(seconds: int = PER_INPUT_SECONDS):
    def on_alarm(_signum, _frame):
        raise Hang(f"an input took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def _small_limits():
    """Keep accepted sizes small so a mutated header cannot allocate much."""
    saved = images_io.MAX_PIXELS, images_io.MAX_VALUES, masks_io.MAX_PIXELS
    images_io.MAX_PIXELS, images_io.MAX_VALUES, masks_io.MAX_PIXELS = 2**20, 2**22, 2**20
    yield
    images_io.MAX_PIXELS, images_io.MAX_VALUES, masks_io.MAX_PIXELS = saved
    print("\nfuzz inputs tried:", ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="maskviewer-fuzz-") as folder:
        yield Path(folder)


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


# -- seeds: small valid files -------------------------------------------------------------------


def _encode(fmt: str, array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    if fmt == "NPY":
        np.save(buf, array)
    elif fmt == "TIFF":
        tifffile.imwrite(buf, array, **kw)
    else:
        Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (12, 10), dtype=np.uint16)
    return {
        "rgb.png": _encode("PNG", rgb),
        "grey16.png": _encode("PNG", grey16),
        "palette.png": _encode("PNG", np.asarray(Image.fromarray(rgb).convert("P"))),
        "rgb.jpg": _encode("JPEG", rgb),
        "rgb.bmp": _encode("BMP", rgb),
        "rgb.tif": _encode("TIFF", rgb, photometric="rgb"),
        "float.tif": _encode("TIFF", rng.random((12, 10), dtype=np.float32)),
        "grey16.tif": _encode("TIFF", grey16),
        "image.npy": _encode("NPY", rgb),
        "batched.npy": _encode("NPY", rng.random((1, 12, 10, 2), dtype=np.float32)),
    }


def _mask_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(12)
    binary = (rng.random((12, 10)) > 0.5).astype(np.uint8) * 255
    return {
        "binary.png": _encode("PNG", binary),
        "soft.png": _encode("PNG", rng.integers(0, 65536, (12, 10), dtype=np.uint16)),
        "soft.npy": _encode("NPY", rng.random((12, 10), dtype=np.float32)),
        "labels.bmp": _encode("BMP", (binary > 0).astype(np.uint8)),
        "soft.tif": _encode("TIFF", rng.random((12, 10), dtype=np.float32)),
    }


IMAGE_SEEDS = _image_seeds()
MASK_SEEDS = _mask_seeds()
SUFFIXES = [".png", ".jpg", ".bmp", ".tif", ".npy"]


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file with a few byte-level edits, mostly near its header."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        n = len(data)
        at = draw(st.one_of(st.integers(0, min(n - 1, 96)), st.integers(0, n - 1)))
        op = draw(st.sampled_from(["set", "flip", "cut", "insert", "delete", "repeat"]))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    suffix = draw(st.sampled_from([Path(name).suffix] * 3 + SUFFIXES))
    return Path(name).stem + suffix, bytes(data)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# -- images ------------------------------------------------------------------------------------


def _check_image(path: Path) -> None:
    _count("image")
    with _time_limit():
        try:
            image = load_image(path)
        except MaskviewerError as exc:
            assert str(exc).strip(), "an error without a message"
            return
    a = image.array
    assert a.ndim == 3 and 1 <= a.shape[2] <= 4 and a.size > 0
    assert a.dtype in (np.uint8, np.uint16, np.float32)
    assert image.value_max > 0
    if a.dtype == np.float32:
        assert np.isfinite(a).all()


@FUZZ
@given(data=st.binary(max_size=1024), suffix=st.sampled_from(SUFFIXES))
def test_image_loader_random_bytes(scratch, data, suffix):
    _check_image(_write(scratch, "random" + suffix, data))


@FUZZ
@given(data=st.binary(max_size=512), seed=st.sampled_from(sorted(IMAGE_SEEDS)))
def test_image_loader_valid_header_random_body(scratch, data, seed):
    """A real format's first bytes followed by garbage reaches deep into each decoder."""
    head = IMAGE_SEEDS[seed][:64]
    _check_image(_write(scratch, "headed" + Path(seed).suffix, head + data))


@settings(FUZZ, max_examples=3000)
@given(case=mutated(IMAGE_SEEDS))
def test_image_loader_mutated_files(scratch, case):
    _check_image(_write(scratch, *case))


# -- masks -------------------------------------------------------------------------------------


def _check_mask(path: Path, shape=None) -> None:
    _count("mask")
    with _time_limit():
        try:
            mask = load_mask(path, shape)
        except MaskviewerError as exc:
            assert str(exc).strip()
            return
    assert mask.ndim == 2 and mask.dtype == np.float32
    assert np.isfinite(mask).all() and mask.min(initial=0) >= 0 and mask.max(initial=0) <= 1
    if shape is not None:
        assert mask.shape == shape


@FUZZ
@given(data=st.binary(max_size=1024), suffix=st.sampled_from(SUFFIXES))
def test_mask_loader_random_bytes(scratch, data, suffix):
    _check_mask(_write(scratch, "random_mask" + suffix, data))


@settings(FUZZ, max_examples=2000)
@given(case=mutated(MASK_SEEDS), sized=st.booleans())
def test_mask_loader_mutated_files(scratch, case, sized):
    _check_mask(_write(scratch, *case), (12, 10) if sized else None)


# -- model files: format detection and configuration reading (no Keras) ------------------------


def _check_model_config(path: Path) -> None:
    from maskviewer.inference.loading import find_code_layers, read_model_config

    _count("model config")
    with _time_limit():
        try:
            config = read_model_config(path)
        except ModelLoadError as exc:
            assert str(exc).strip()
            return
        layers = find_code_layers(config)
    assert all(isinstance(x, str) for x in layers)


MODEL_SUFFIXES = [".keras", ".h5", ".hdf5", ".txt"]


@FUZZ
@given(data=st.binary(max_size=1024), suffix=st.sampled_from(MODEL_SUFFIXES))
def test_model_config_random_bytes(scratch, data, suffix):
    _check_model_config(_write(scratch, "random" + suffix, data))


@pytest.fixture(scope="module")
def model_seeds(model_files) -> dict[str, bytes]:
    return {
        "seq.keras": model_files["sequential"].read_bytes(),
        "seq.h5": model_files["sequential_h5"].read_bytes(),
    }


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_model_config_mutated_files(scratch, model_seeds, data):
    name, blob = data.draw(mutated(model_seeds))
    suffix = data.draw(st.sampled_from([Path(name).suffix] * 4 + MODEL_SUFFIXES))
    _check_model_config(_write(scratch, Path(name).stem + suffix, blob))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["Lambda", "__lambda__", "function", "code", "name", "config"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["class_name", "config", "name", "code", "layers", "function", "x"]),
        children,
        max_size=4,
    ),
    max_leaves=30,
)


def _contains_lambda(node) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") == "Lambda" or any(_contains_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_contains_lambda(v) for v in node)
    return False


@settings(FUZZ, max_examples=500)
@given(config=JSON)
def test_code_finder_on_any_json_never_misses_a_lambda(scratch, config):
    """Whatever shape the JSON has, a Lambda anywhere in it is reported."""
    from maskviewer.inference.loading import find_code_layers, read_model_config

    _count("model config json")
    path = scratch / "config_fuzz.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
    assert read_model_config(path) == config
    found = find_code_layers(config)
    assert all(isinstance(f, str) for f in found)
    if _contains_lambda(config):
        assert any(f.endswith("(Lambda)") for f in found), found


def test_model_files_that_are_not_models(tmp_path, model_files):
    from maskviewer.inference.loading import MAX_CONFIG_BYTES, load_model

    cases = {}
    with zipfile.ZipFile(tmp_path / "no_config.keras", "w") as zf:
        zf.writestr("metadata.json", "{}")
    cases["no_config.keras"] = "configuration cannot be read"
    with zipfile.ZipFile(tmp_path / "deep.keras", "w") as zf:
        zf.writestr("config.json", "[" * 50_000 + "]" * 50_000)
    cases["deep.keras"] = "configuration cannot be read"
    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("config.json", "w", force_zip64=True) as fh:
            fh.write(b'{"pad": "')
            for _ in range(MAX_CONFIG_BYTES // 2**20 + 1):
                fh.write(b" " * 2**20)
            fh.write(b'"}')
    cases["bomb.keras"] = "larger than"
    with zipfile.ZipFile(tmp_path / "list.keras", "w") as zf:
        zf.writestr("config.json", "[1, 2, 3]")
    cases["list.keras"] = "could not be loaded as a Keras model"
    (tmp_path / "random.keras").write_bytes(os.urandom(4096))
    cases["random.keras"] = "not a Keras model file"
    (tmp_path / "random.h5").write_bytes(os.urandom(4096))
    cases["random.h5"] = "not an HDF5 file"
    (tmp_path / "cut.h5").write_bytes(model_files["sequential_h5"].read_bytes()[:3000])
    cases["cut.h5"] = "cut.h5"
    folder = tmp_path / "not_savedmodel"
    folder.mkdir()
    (folder / "variables").mkdir()
    cases["not_savedmodel"] = "not a SavedModel"
    for name, match in cases.items():
        with _time_limit(60), pytest.raises(ModelLoadError, match=match):
            load_model(tmp_path / name)


def _json_mutations(config):
    """Every (path, container) pair in a JSON tree, to pick an edit point from."""
    points = []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            points.extend((node, k) for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            points.extend((node, i) for i in range(len(node)))
            stack.extend(node)
    return points


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_full_keras_load_of_mutated_configs(scratch, model_files, data):
    """A few dozen complete loads through Keras of configs with edited values or missing keys."""
    from maskviewer.inference.loading import load_model

    _count("full model load")
    src = zipfile.ZipFile(model_files["sequential"])
    config = json.loads(src.read("config.json"))
    points = _json_mutations(config)
    for _ in range(data.draw(st.integers(1, 3))):
        container, key = data.draw(st.sampled_from(points))
        if isinstance(container, dict) and data.draw(st.booleans()):
            container.pop(key, None)
        else:
            with contextlib.suppress(IndexError, KeyError):
                container[key] = data.draw(JSON)
        points = _json_mutations(config)
        if not points:
            break
    path = scratch / "mutated_config.keras"
    with zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            blob = json.dumps(config).encode() if item.filename == "config.json" else src.read(item)
            dst.writestr(item.filename, blob)
    with _time_limit(60):
        try:
            loaded = load_model(path)
        except MaskviewerError as exc:
            assert str(exc).strip()
            return
    assert loaded.info.inputs and loaded.info.name == "mutated_config.keras"
    _count("full model load (loaded)")


# -- SavedModel folders ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def savedmodel_seed(tmp_path_factory):
    """A small valid SavedModel (y = x @ W) to break in various ways."""
    import tensorflow as tf

    class Net(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.ones([4, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w)}

    folder = tmp_path_factory.mktemp("sm_seed") / "net"
    net = Net()
    tf.saved_model.save(net, str(folder), signatures={"serving_default": net.serve})
    return folder


def _break_savedmodel(folder: Path, how: str) -> None:
    pb = folder / "saved_model.pb"
    data = pb.read_bytes()
    if how == "garbage_pb":
        pb.write_bytes(np.random.default_rng(7).bytes(len(data)))
    elif how == "truncated_pb":
        pb.write_bytes(data[: len(data) // 3])
    elif how == "empty_pb":
        pb.write_bytes(b"")
    elif how == "missing_variables":
        import shutil

        shutil.rmtree(folder / "variables")
    elif how == "truncated_variables":
        for f in (folder / "variables").glob("variables.data*"):
            f.write_bytes(f.read_bytes()[:5])
    elif how == "pb_is_a_folder":
        pb.unlink()
        pb.mkdir()


@pytest.mark.parametrize(
    "how",
    ["garbage_pb", "truncated_pb", "empty_pb", "missing_variables", "truncated_variables",
     "pb_is_a_folder"],
)
def test_broken_savedmodels_get_clear_errors(tmp_path, savedmodel_seed, how, capsys):
    import shutil

    from maskviewer.cli import main
    from maskviewer.inference.loading import load_model

    folder = tmp_path / "net"
    shutil.copytree(savedmodel_seed, folder)
    _break_savedmodel(folder, how)
    for argv in (["info", str(folder)], ["info", str(folder), "--trust"]):
        with _time_limit(60):
            rc = main(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in err + out
        if rc != 0:
            assert rc == 1 and err.startswith("maskviewer: ") and "net" in err, err
            assert len(err.strip().splitlines()) == 1 and len(err) < 700, err
    with _time_limit(60):
        try:
            load_model(folder, safe_mode=False)
        except ModelLoadError as exc:
            assert "net" in str(exc) and len(str(exc)) < 700
    if how in ("garbage_pb", "truncated_pb", "empty_pb", "pb_is_a_folder"):  # unreadable graph
        with pytest.raises(ModelLoadError):
            load_model(folder, safe_mode=False)


# -- sessions, autosaves and labels files --------------------------------------------------------

#: values that broke the readers before they were checked against a schema
NASTY = st.sampled_from([
    float("inf"), -float("inf"), 10**30, -1, 0, True, "x", "", [], {}, [[[[[]]]]], {"a": {"b": {}}},
    "../../etc/passwd", "/abs.npy", "masks/../../x.npy", 2**63, 1e-300,
])
ANY_JSON = st.one_of(JSON, NASTY.map(lambda v: json.loads(json.dumps(v))))  # a fresh copy: edits stay local


def _session_seed(folder: Path) -> tuple[Path, Path, dict]:
    """A valid session (one image, two masks) as a folder and as a ``.mvsession``, and its JSON."""
    from maskviewer.io.session import Session, SessionImage, SessionMask, save_session

    rng = np.random.default_rng(5)
    masks = [SessionMask("soft", rng.random((6, 4), dtype=np.float32), (1, 2, 3)),
             SessionMask("hard", (rng.random((6, 4)) > 0.5).astype(np.float32), (4, 5, 6), False)]
    s = Session(image="/data/a.png", images=[SessionImage("/data/a.png", 6, 4, masks, "hard")],
                model="/m.keras", model_sha256="ab", custom_objects=["/c.py"],
                mappings={"in": {"source": "image", "resize": "fit", "scale": "mean/std", "mean": [0.5], "std": [0.2]}},
                labels=["a", "b"], view={"layers": {"layer": "conv", "k": 3}, "masks": {"opacity": 0.5}},
                autosave={"pid": 1, "clean": False, "time": 1.0})
    zipped = save_session(folder / "seed.mvsession", s, durable=False)
    plain = save_session(folder / "seed_folder", s, durable=False)
    return plain, zipped, json.loads((plain / "session.json").read_text())


@pytest.fixture(scope="module")
def session_seed(scratch):
    return _session_seed(scratch)


def _check_session(path: Path) -> None:
    """A session either opens with values of the documented types or is one SessionError."""
    from maskviewer.io.session import SessionError, load_session

    with _time_limit():
        try:
            s = load_session(path)
        except SessionError as exc:
            assert str(exc).strip() and "\n" not in str(exc)
            return
    assert all(isinstance(k, str) and isinstance(v, dict) for k, v in s.mappings.items())
    assert s.labels is None or all(isinstance(v, str) for v in s.labels)
    assert isinstance(s.view, dict)
    for im in s.images:
        for m in im.masks:
            assert m.data.shape == (im.height, im.width) and m.data.dtype == np.float32
            assert np.all((m.data >= 0) & (m.data <= 1))
            assert len(m.color) == 3 and all(isinstance(c, int) for c in m.color)
    _count("session (opened)")


def _mutate_json(doc, data) -> object:
    """``doc`` with 1-4 edits: a value replaced (by any JSON or a known-nasty value) or a key dropped."""
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        points = _json_mutations(doc)
        if not points:
            return data.draw(ANY_JSON)
        container, key = data.draw(st.sampled_from(points))
        if isinstance(container, dict) and data.draw(st.booleans()):
            container.pop(key, None)
        else:
            container[key] = data.draw(ANY_JSON)
    return doc


@settings(FUZZ, max_examples=1500)
@given(data=st.data(), as_zip=st.booleans())
def test_session_json_mutations(scratch, session_seed, data, as_zip):
    """Edited session.json (any field any value, keys dropped), in a folder and in a zip."""
    plain, zipped, doc = session_seed
    text = json.dumps(_mutate_json(doc, data))
    _count("session json")
    if as_zip:
        path = scratch / "mutated.mvsession"
        with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(path, "w") as dst:
            for item in src.infolist():
                dst.writestr(item.filename, text if item.filename == "session.json" else src.read(item))
    else:
        path = scratch / "mutated_folder"
        if not path.exists():
            import shutil

            shutil.copytree(plain, path)
        (path / "session.json").write_text(text)
    _check_session(path)


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_session_zip_byte_mutations(scratch, session_seed, data):
    """A .mvsession with bytes edited anywhere (headers, directory, compressed masks)."""
    blob = bytearray(session_seed[1].read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["set", "flip", "cut", "insert"]))
        if op == "set":
            blob[at] = data.draw(st.integers(0, 255))
        elif op == "flip":
            blob[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[at:]
            if not blob:
                break
        else:
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    _count("session zip")
    _check_session(_write(scratch, "bytes.mvsession", bytes(blob)))


@FUZZ
@given(data=st.binary(max_size=2048))
def test_session_random_bytes(scratch, data):
    _count("session zip")
    _check_session(_write(scratch, "random.mvsession", data))


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_autosave_mutations_never_hide_a_valid_crash_autosave(scratch, session_seed, data):
    """Beside a crafted autosave, a genuine crash autosave is always offered, never an exception."""
    import shutil

    from maskviewer.gui.session_model import AUTOSAVE_PREFIX, SessionModel

    _count("autosave")
    plain, _zipped, doc = session_seed
    folder = scratch / "recovery"
    shutil.rmtree(folder, ignore_errors=True)
    good = folder / f"{AUTOSAVE_PREFIX}999999999-1"
    shutil.copytree(plain, good)
    (good / "session.json").write_text(json.dumps({**doc, "autosave": {"pid": 999_999_999, "time": 1.0}}))  # no such process
    bad = folder / f"{AUTOSAVE_PREFIX}999999998-2"
    shutil.copytree(plain, bad)
    crafted = dict(doc)
    edited = _mutate_json({"autosave": doc["autosave"]}, data) if data.draw(st.booleans()) else {}
    crafted["autosave"] = edited.get("autosave") if isinstance(edited, dict) and edited else data.draw(ANY_JSON)
    (bad / "session.json").write_text(json.dumps(crafted))
    model = SessionModel(folder, pid=4)
    with _time_limit():
        found = model.recoverable()
    assert good in [f for f, _s in found]
    assert len(model.skipped) <= 1 and all(str(bad.name) in s or "autosave" in s for s in model.skipped)


LABEL_VALUES = st.one_of(st.text(max_size=6), st.integers(-5, 10**6), st.floats(), ANY_JSON)


@FUZZ
@given(data=st.data())
def test_labels_files(scratch, data):
    """Labels as text, as any JSON list/object, or random bytes: a list of str or a ValueError."""
    from maskviewer.core.predictions import read_labels

    _count("labels")
    kind = data.draw(st.sampled_from(["list", "object", "any", "bytes", "text"]))
    if kind == "list":
        raw = json.dumps(data.draw(st.lists(LABEL_VALUES, max_size=8))).encode()
    elif kind == "object":
        keys = st.one_of(st.integers(0, 20).map(str), st.text(max_size=4), st.just("99999999"))
        raw = json.dumps(data.draw(st.dictionaries(keys, LABEL_VALUES, max_size=6))).encode()
    elif kind == "any":
        raw = json.dumps(data.draw(ANY_JSON)).encode()
    elif kind == "text":
        raw = data.draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    else:
        raw = data.draw(st.binary(max_size=512))
    path = _write(scratch, "labels.json", raw)
    with _time_limit():
        try:
            labels = read_labels(str(path))
        except ValueError as exc:
            assert str(exc).strip()
            return
    assert isinstance(labels, list) and all(isinstance(v, str) for v in labels)
