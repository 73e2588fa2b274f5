"""Attacks on every file the app reads back: sessions, autosaves, labels, saved mappings,
complex-valued images and masks, huge declared sizes, models it cannot feed.

Each crafted file must end in one message naming the file and the field (a ``SessionError``,
``ValueError`` or a shown error), never in a ``RecursionError``, ``OverflowError`` or
``AttributeError``, and never in gigabytes read before the refusal.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskviewer.core.errors import ImageLoadError
from maskviewer.core.schema import SchemaError
from maskviewer.gui.session_model import AUTOSAVE_PREFIX, DAMAGED_PREFIX, SessionModel, pid_alive
from maskviewer.io import session as session_io
from maskviewer.io.masks import MaskLoadError, load_mask
from maskviewer.io.session import (
    Session,
    SessionError,
    SessionImage,
    SessionMask,
    load_session,
    save_session,
)

HEADER = '{"format": "maskviewer-session", "version": 1'


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(tmp_path: Path, kind: str, text: str, name: str = "work") -> Path:
    """A session holding ``text`` as its session.json: a ``.mvsession`` zip or a folder."""
    if kind == "zip":
        path = tmp_path / f"{name}.mvsession"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("session.json", text)
        return path
    path = tmp_path / name
    path.mkdir()
    (path / "session.json").write_text(text)
    return path


def _doc(**fields) -> str:
    doc = {"format": "maskviewer-session", "version": 1, **fields}
    return json.dumps(doc)


# -- sessions: each reproduction ends in one message naming the file and the field ------------

CASES = {
    # the issue's reproductions
    "deep": (HEADER + ', "view": ' + "[" * 100_000 + "]" * 100_000 + "}", "session.json is not valid JSON: nested too deeply"),
    "version_1e400": (HEADER.replace('"version": 1', '"version": 1e400') + "}", "version must be an integer"),
    "mappings_list": (_doc(mappings=[1, 2]), "mappings must be an object of input name → mapping, got a list"),
    # more of the same family
    "deep_view_inside_the_parser_limit": (_doc(view={"layers": json.loads("[" * 500 + "]" * 500)}), "nested more than 8 levels deep"),
    "mapping_not_object": (_doc(mappings={"x": 3}), "mappings.x must be a mapping object"),
    "mean_inf": (_doc(mappings={"x": {"mean": [1e400]}}).replace("Infinity", "1e400"), "mappings.x.mean[0] must be a number"),
    "scale_unknown": (_doc(mappings={"x": {"scale": "0..7"}}), "mappings.x.scale must be one of"),
    "height_text": (_doc(images=[{"path": "/a.png", "height": "12", "width": 9}]), "images[0].height must be an integer"),
    "height_huge": (_doc(images=[{"path": "/a.png", "height": 10**30, "width": 9}]), "images[0].height must be an integer from 1"),
    "color_out_of_range": (_doc(images=[{"path": "/a.png", "height": 2, "width": 2, "masks": [{"name": "m", "file": "masks/a.npy", "color": [300, 0, 0]}]}]), "images[0].masks[0].color[0]"),
    "masks_object": (_doc(images=[{"path": "/a.png", "height": 2, "width": 2, "masks": {"m": 1}}]), "images[0].masks must be a list of masks, got an object"),
    "labels_nested": (_doc(labels=[["a"]]), "labels[0] must be a text, got a list"),
    "image_number": (_doc(image=5), "image must be a path"),
    "model_list": (_doc(model=["a"]), "model must be an object"),
    "pid_text": (_doc(autosave={"pid": "x"}), "autosave.pid must be an integer"),
    "pid_huge": (_doc(autosave={"pid": 10**30}), "autosave.pid must be an integer"),
    "not_utf8": (None, "not UTF-8"),
    "top_level_list": ("[1, 2]", "not a maskviewer session"),
}


@pytest.mark.parametrize("kind", ["zip", "folder"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_session_json_is_one_message_naming_file_and_field(tmp_path, kind, case):
    text, expected = CASES[case]
    if text is None:
        path = _write(tmp_path, kind, "")
        target = path / "session.json" if kind == "folder" else None
        if target is not None:
            target.write_bytes(b'{"format": "\xff\xfe"}')
        else:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("session.json", b'{"format": "\xff\xfe"}')
    else:
        path = _write(tmp_path, kind, text)
    with pytest.raises(SessionError) as info:
        load_session(path)
    message = str(info.value)
    assert message.startswith(f"{path.name}: "), message
    assert expected in message, message
    assert "Traceback" not in message and len(message) < 400


def test_the_issue_message_for_list_mappings_is_exact(tmp_path):
    path = _write(tmp_path, "zip", _doc(mappings=[]))
    with pytest.raises(SessionError) as info:
        load_session(path)
    assert str(info.value) == "work.mvsession: mappings must be an object of input name → mapping, got a list."


def test_a_valid_session_still_round_trips_through_the_schema(tmp_path):
    img = tmp_path / "pic.png"
    Image.fromarray(np.zeros((4, 3), np.uint8)).save(img)
    mask = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
    s = Session(image=str(img), images=[SessionImage(str(img), 4, 3, [SessionMask("m", mask, (1, 2, 3), False)], "m")],
                mappings={"in": {"source": "image", "resize": "crop", "scale": "mean/std", "mean": [0.1], "std": [0.2]}},
                labels=["a", "b"], view={"layers": {"colormap": "magma", "k": 3}})
    for name in ("s.mvsession", "s_folder"):
        back = load_session(save_session(tmp_path / name, s))
        assert back.mappings == s.mappings and back.labels == s.labels and back.view == s.view
        np.testing.assert_array_equal(back.images[0].masks[0].data, mask)
        assert back.images[0].masks[0].color == (1, 2, 3) and back.images[0].masks[0].visible is False


def test_window_shows_one_message_for_a_crafted_session_and_keeps_working(window, tmp_path):
    tool = window.tools["session"]
    for case in ("deep", "version_1e400", "mappings_list"):
        path = _write(tmp_path, "zip", CASES[case][0], name=case)
        window.last_error = None
        assert tool.open_session(path) is False
        title, message = window.last_error
        assert title == "Cannot open session" and message.startswith(f"{case}.mvsession: ")
        assert CASES[case][1] in message
    good = save_session(tmp_path / "good.mvsession", Session(labels=["x", "y"]))
    assert tool.open_session(good) is True
    assert list(window.state.labels) == ["x", "y"]


# -- autosaves: a damaged one is skipped, reported once, and a real crash autosave is offered ---


def _autosave(folder: Path, pid, t: float) -> Path:
    mask = np.zeros((4, 5), np.float32)
    mask[1:3, 1:4] = 1.0
    s = Session(image="/data/a.png", images=[SessionImage("/data/a.png", 4, 5, [SessionMask("m", mask)])])
    s.autosave = {"pid": 1, "clean": False, "time": t}
    save_session(folder, s)
    doc = json.loads((folder / "session.json").read_text())
    doc["autosave"]["pid"] = pid  # written as a crash would leave it, or as crafted
    (folder / "session.json").write_text(json.dumps(doc))
    return folder


def test_a_damaged_autosave_is_skipped_reported_once_and_a_valid_one_still_offered(tmp_path):
    dead = _dead_pid()
    bad = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}{dead}-1", "x", 300.0)
    huge = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}{dead}-2", 10**30, 200.0)
    good = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}{dead}-3", dead, 100.0)
    m = SessionModel(tmp_path)
    found = m.recoverable()
    assert [f for f, _s in found] == [good]
    assert len(m.skipped) == 2 and all("autosave.pid must be an integer" in s for s in m.skipped)
    assert not bad.exists() and (tmp_path / f"{DAMAGED_PREFIX}{bad.name}").is_dir()  # kept, put aside
    assert not huge.exists()
    again = SessionModel(tmp_path)
    assert [f for f, _s in again.recoverable()] == [good] and again.skipped == []  # said once


def test_a_damaged_autosave_of_a_running_window_is_left_alone(tmp_path):
    import os

    live = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}{os.getppid()}-1", "x", 1.0)
    m = SessionModel(tmp_path)
    assert m.recoverable() == [] and m.skipped == [] and live.exists()


def test_pid_alive_never_raises_for_absurd_pids():
    assert pid_alive(10**30) is False and pid_alive(-5) is False


def test_window_reports_the_damaged_autosave_and_offers_the_good_one(qtbot, settings, tmp_path, monkeypatch):
    from maskviewer.gui.app import create_window

    recovery = tmp_path / "recovery"
    recovery.mkdir()
    monkeypatch.setenv("MASKVIEWER_RECOVERY_DIR", str(recovery))
    dead = _dead_pid()
    _autosave(recovery / f"{AUTOSAVE_PREFIX}{dead}-1", "x", 300.0)
    good = _autosave(recovery / f"{AUTOSAVE_PREFIX}{dead}-2", dead, 100.0)
    win = create_window(settings)
    qtbot.addWidget(win)
    tool = win.tools["session"]
    asked = []
    tool.ask_recover = lambda text: asked.append(text) or False
    try:
        qtbot.waitUntil(lambda: bool(asked), timeout=20_000)
        assert win.last_error[0] == "Damaged autosave skipped" and "autosave.pid" in win.last_error[1]
        assert "1 mask(s)" in asked[0]
        assert not good.exists()  # declined: offered once
    finally:
        win.close()


# -- zip bombs: declared sizes are checked before a byte is inflated ----------------------------

ZERO_MIB = bytes(2**20)


def _deflated_zeros(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros (~1 KB per MiB) and its CRC, made quickly:
    after a full flush each MiB compresses to the same bytes."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    chunk = c.compress(ZERO_MIB) + c.flush(zlib.Z_FULL_FLUSH)
    stream = chunk * mib + zlib.compressobj(6, zlib.DEFLATED, -15).flush()  # an empty final block
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(ZERO_MIB, crc)
    return stream, crc


def _raw_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> None:
    """Write a zip by hand: ``(name, payload, method, crc, declared size)`` per entry, so a
    declared size can be anything (what a crafted file does)."""
    out, central = bytearray(), bytearray()
    for name, payload, method, crc, size in entries:
        offset = len(out)
        fname = name.encode()
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(payload), size, len(fname), 0)
        out += fname + payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(payload), size,
                               len(fname), 0, 0, 0, 0, 0, offset) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


@pytest.fixture(scope="module")
def zero_stream():
    return _deflated_zeros(4095)  # 4095 MiB of zeros in ~4 MB (a 32-bit declared size)


def _bomb_session(path: Path, stream: bytes, crc: int, declared: int, h: int, w: int) -> Path:
    doc = _doc(images=[{"path": "/a.png", "height": h, "width": w,
                        "masks": [{"name": "m", "file": "masks/m.npy"}]}]).encode()
    _raw_zip(path, [("session.json", doc, 0, zlib.crc32(doc), len(doc)),
                    ("masks/m.npy", stream, 8, crc, declared)])
    return path


def _peak_while(fn) -> tuple[Exception, int, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        error = exc
    else:
        error = None
    seconds = time.perf_counter() - t0
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return error, peak, seconds


def test_a_4gib_zero_mask_entry_in_a_4mb_session_is_refused_before_reading(tmp_path, zero_stream):
    stream, crc = zero_stream
    # the session claims a real 14000×14000 image (inside the pixel budget): its mask entry may
    # hold at most 14000²×8 bytes, and 4 GiB is refused from the zip directory alone
    path = _bomb_session(tmp_path / "bomb.mvsession", stream, crc, 4095 * 2**20, 14000, 14000)
    assert path.stat().st_size < 5 * 2**20
    error, peak, seconds = _peak_while(lambda: load_session(path))
    assert isinstance(error, SessionError) and "declares 4,293,918,720 bytes" in str(error), error
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"
    assert seconds < 5.0


def test_a_zip_directory_that_understates_the_size_is_read_only_that_far(tmp_path, zero_stream):
    stream, crc = zero_stream
    # the directory says 528 bytes (a 10×10 float32 mask); the stream inflates to 4 GiB
    path = _bomb_session(tmp_path / "liar.mvsession", stream, crc, 528, 10, 10)
    error, peak, seconds = _peak_while(lambda: load_session(path))
    assert isinstance(error, SessionError) and "masks/m.npy" in str(error), error
    assert peak < 100 * 2**20 and seconds < 5.0


def test_an_npy_header_declaring_a_huge_shape_is_refused_before_allocation(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (10**6, 10**6)
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    blob = buf.getvalue() + bytes(400)
    doc = _doc(images=[{"path": "/a.png", "height": 10, "width": 10, "masks": [{"name": "m", "file": "masks/m.npy"}]}])
    path = tmp_path / "shape.mvsession"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("session.json", doc)
        zf.writestr("masks/m.npy", blob)
    error, peak, _s = _peak_while(lambda: load_session(path))
    assert isinstance(error, SessionError) and "(1000000, 1000000)" in str(error)
    assert peak < 20 * 2**20


def test_masks_declared_beyond_the_memory_budget_are_refused_before_any_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(session_io, "MAX_MASK_BYTES", 10 * 2**20)
    masks = [{"name": f"m{i}", "file": f"masks/m{i}.npy"} for i in range(3)]
    doc = _doc(images=[{"path": "/a.png", "height": 1000, "width": 1000, "masks": masks}])
    path = _write(tmp_path, "zip", doc)  # no mask entries at all: the budget speaks first
    with pytest.raises(SessionError, match=r"work.mvsession: its masks would take 0.0 GiB"):
        load_session(path)
    doc = _doc(images=[{"path": "/a.png", "height": 20000, "width": 20000, "masks": masks[:1]}])
    with pytest.raises(SessionError, match=r"images\[0\] is 20000×20000 pixels"):
        load_session(_write(tmp_path, "folder", doc))


def test_a_complex_mask_in_a_session_is_refused(tmp_path):
    s = Session(images=[SessionImage("/a.png", 2, 2, [SessionMask("m", np.zeros((2, 2), np.float32))])])
    folder = save_session(tmp_path / "s", s)
    np.save(folder / "masks" / "image000_mask000.npy", np.zeros((2, 2), np.complex64))
    with pytest.raises(SessionError, match="complex64"):
        load_session(folder)


# -- labels files ---------------------------------------------------------------------------------


LABELS = {
    "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "nested.json": ('[["cat"], "dog"]', "labels[0] must be a class name (text), got a list"),
    "object_label.json": ('{"0": {"x": 1}}', "labels.0 must be a class name (text), got an object"),
    "bad_key.json": ('{"cat": "x"}', "keys must be class indices"),
    "huge_index.json": ('{"99999999": "x"}', "keys must be class indices"),
    "inf.json": ('["a", 1e400]', "labels[1] must be a class name"),
    "broken.json": ('["a", ', "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(LABELS))
def test_a_crafted_labels_file_is_one_value_error(tmp_path, name):
    from maskviewer.cli.args import UsageError
    from maskviewer.cli.export_plan import _read_labels
    from maskviewer.core.predictions import read_labels

    text, expected = LABELS[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(expected)):
        read_labels(str(path))
    with pytest.raises(UsageError) as info:  # the CLI's one line on stderr, exit 2
        _read_labels(argparse.Namespace(labels=str(path)))
    assert str(info.value).startswith(f"--labels {path}: ") and expected in str(info.value)


def test_labels_files_that_are_fine(tmp_path):
    from maskviewer.core.predictions import read_labels

    cases = {"a.txt": ("cat\n\n dog \n", ["cat", "dog"]), "b.json": ('["cat", 3, 2.5]', ["cat", "3", "2.5"]),
             "c.json": ('{"0": "cat", "2": "dog"}', ["cat", "1", "dog"])}
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert read_labels(str(tmp_path / name)) == want


def test_window_reports_a_nested_labels_file(window, tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("[" * 50_000 + "]" * 50_000)
    assert window.controller.load_labels(path) is False
    assert window.last_error[0] == "Cannot read labels" and window.last_error[1].startswith("labels.json: ")


# -- saved mappings in the settings -----------------------------------------------------------


def test_unreadable_saved_mappings_are_forgotten_not_raised():
    from maskviewer.core.mapping import InputMapping
    from maskviewer.gui.settings import AppSettings, model_key

    class Store(dict):
        def value(self, key, default=None):
            return self.get(key, default)

        def setValue(self, key, value):  # noqa: N802
            self[key] = value

    prefs = AppSettings(Store())
    prefs.save_mappings("/m.keras", {"in": InputMapping(scale="-1..1")})
    assert prefs.saved_mappings("/m.keras")["in"].scale == "-1..1"
    key = f"mappings/{model_key('/m.keras')}"
    for raw in ("[" * 100_000 + "]" * 100_000, "[1, 2]", '{"in": [1]}', '{"in": {"mean": [1e400]}}',
                '{"in": {"std": "abc"}}', ["a", "b"], 42, b"\xff"):
        prefs.store[key] = raw
        assert prefs.saved_mappings("/m.keras") == {}


# -- complex values and constant images -------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_complex_images_and_masks_are_refused(tmp_path, suffix):
    from maskviewer.io.images import load_image

    data = np.full((6, 5), 0.5 + 0.25j, np.complex64)
    path = tmp_path / f"c{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    else:
        tifffile.imwrite(path, data)
    with pytest.raises(ImageLoadError, match=r"complex numbers \(complex64\)"):
        load_image(path)
    with pytest.raises(MaskLoadError, match=r"complex numbers \(complex64\)"):
        load_mask(path)


@pytest.mark.parametrize("value", [-3.5, -1e6, -3.0e38])
def test_a_constant_float_tiff_displays_flat_grey_without_nan(tmp_path, value):
    from maskviewer.gui.image_canvas import display_array
    from maskviewer.io.export.pictures import image_rgb
    from maskviewer.io.images import load_image

    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.full((6, 5), value, np.float32))
    image = load_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an invalid-value warning is the NaN on its way
        shown = display_array(image)
        exported = image_rgb(image)
    assert shown.dtype == np.uint8 and np.all(shown == 128)
    assert np.all(exported == 128)


def test_display_keeps_the_contrast_of_real_images():
    from maskviewer.core.image import display_range, display_uint8

    a = np.array([[-1.0, 0.0, 1.0]], np.float32)
    assert display_uint8(a, *display_range(a, 1.0)).tolist() == [[0, 128, 255]]
    wide = np.array([[-3.4e38, 0.0, 3.4e38]], np.float32)
    assert display_uint8(wide, *display_range(wide, 1.0)).tolist() == [[0, 128, 255]]
    u16 = np.array([[0, 65535]], np.uint16)
    assert display_uint8(u16, *display_range(u16, 65535.0)).tolist() == [[0, 255]]


# -- a model the export cannot feed is refused before any image -------------------------------


def test_export_refuses_a_model_with_a_non_image_input_before_reading_images(tmp_path, capsys, monkeypatch):
    import keras

    from maskviewer.cli.export import export_main
    from maskviewer.io import images as images_io

    inp_img = keras.Input((8, 8, 3), name="pixels")
    inp_vec = keras.Input((4,), name="metadata")
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(inp_img), inp_vec])
    model = keras.Model([inp_img, inp_vec], keras.layers.Dense(2, name="scores")(x))
    model_path = tmp_path / "two.keras"
    model.save(model_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"im{i}.png")
    opened = []
    real = images_io.load_image
    monkeypatch.setattr(images_io, "load_image", lambda p, *a, **k: opened.append(p) or real(p, *a, **k))
    out = tmp_path / "out"
    rc = export_main([str(folder), "--model", str(model_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "metadata (None, 4)" in err or "metadata" in err and "not an image" in err, err
    assert opened == []  # refused before the first image
    assert not list(out.rglob("*.png")) if out.exists() else True


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)


# -- the demo index ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, field", [
    ('{"demos": {"a": 1}}', "demos must be a list of demos, got an object"),
    ('{"demos": [{"name": "a", "title": "t", "model": 3, "images": [], "description": ""}]}', "demos[0].model must be a text"),
    ('{"demos": [{"name": "a", "title": "t", "model": "m", "images": [[]], "description": ""}]}', "demos[0].images[0]"),
    ('{"demos": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
])
def test_a_damaged_demo_index_is_one_message(tmp_path, monkeypatch, text, field):
    import maskviewer.demo as demo
    from maskviewer.core.errors import MaskviewerError

    (tmp_path / "demos.json").write_text(text)
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path)
    with pytest.raises(MaskviewerError, match=re.escape(field)) as info:
        demo.list_demos()
    assert "is not a valid demo index" in str(info.value)
