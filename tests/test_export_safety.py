"""Attacks on ``maskviewer export``: it never clobbers one artifact with another, never writes
outside ``--out`` through a planted link, never lets two runs write one folder, refuses an image
whose folder would be its own files, and ``--resume`` after a kill equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.io.export import (
    ArtifactWriter,
    ExportError,
    ExportItem,
    ExportStyle,
    naming,
    read_manifest,
)
from maskviewer.io.export.lock import ExportLock, remove_temp_files
from maskviewer.io.export.stack import NpyStack

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"


def _run(argv, capsys):
    rc = export_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _images(folder: Path, n: int, size=(28, 28), seed=0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def colliding_model(tmp_path_factory):
    """Layers ``inner/conv`` (in a nested model) and ``inner_conv``: one safe file name."""
    import keras

    inner_in = keras.Input((12, 12, 1))
    inner = keras.Model(inner_in, keras.layers.Conv2D(3, 3, padding="same", name="conv")(inner_in), name="inner")
    inp = keras.Input((12, 12, 1), name="img")
    b = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="inner_conv")(inp)
    x = keras.layers.Concatenate(name="cat")([inner(inp), b])
    out = keras.layers.Dense(2, activation="softmax", name="probs")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    path = tmp_path_factory.mktemp("collide") / "collide.keras"
    keras.Model(inp, out).save(path)
    return path


# --- (a) two names, one file ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["stacked", "files"])
def test_layers_whose_names_collide_get_two_files(colliding_model, tmp_path, capsys, layout):
    import keras

    images = _images(tmp_path / "imgs", 2, (12, 12))
    out = tmp_path / "out"
    rc, err = _run([*images, "--model", colliding_model, "--out", out, "--layer", "inner/conv",
                    "--layer", "inner_conv", "--npy-layout", layout, "--overwrite"], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    acts = [e for e in manifest["artifacts"] if e["kind"] == "activation"]
    assert len(acts) == 4
    for image in images:
        mine = {e["layer"]: e for e in acts if e["image"] == image}
        assert set(mine) == {"inner/conv", "inner_conv"}
        a, b = mine["inner/conv"], mine["inner_conv"]
        assert a["png"] != b["png"] and a["npy"] != b["npy"]
        assert a["files"]["overlay"]["path"] != b["files"]["overlay"]["path"]
        assert (out / a["png"]).is_file() and (out / b["png"]).is_file()
    # each file holds its own layer's map: nothing was replaced by the other layer's
    from maskviewer.io.export import load_npy

    model = keras.saving.load_model(colliding_model)
    for image in images:
        x = np.asarray(Image.open(image), np.float32)[None, :, :, None] / 255.0
        want = {name: np.asarray(model.get_layer(layer)(x))[0].mean(-1)
                for name, layer in (("inner/conv", "inner"), ("inner_conv", "inner_conv"))}
        for e in (e for e in acts if e["image"] == image):
            np.testing.assert_allclose(load_npy(out, e), want[e["layer"]], rtol=1e-5, atol=1e-6)
    assert set(manifest["file_names"]) == {"inner/conv", "inner_conv"}
    assert "share files" in err and any("share files" in n for n in manifest["notes"])


def test_name_tokens_are_unique_and_stable():
    names = ["inner/conv", "inner_conv", "Conv", "conv", "plain", "a b"]
    tokens = naming.name_tokens(names)
    assert len({t.casefold() for t in tokens.values()}) == len(names)
    assert tokens["plain"] == "plain" and tokens["a b"] == "a_b"  # no collision: the name as before
    assert naming.name_tokens(reversed(names)) == tokens  # the order does not matter
    assert naming.name_tokens(["inner/conv", "inner_conv", "x"])["inner/conv"] == tokens["inner/conv"]
    # a name crafted to be another's hashed token is refused, not written over
    with pytest.raises(ExportError, match="same files"):
        naming.name_tokens(["inner/conv", "inner_conv", tokens["inner_conv"]])


def test_a_batch_never_writes_two_items_to_one_file(tmp_path, rng):
    """The writer's last line of defence, even with overwriting on: the second is refused."""
    first = ExportItem("activation", "a/b", rng.random((4, 4)).astype(np.float32), None, "mean")
    second = ExportItem("activation", "a_b", rng.random((4, 4)).astype(np.float32), None, "mean")
    writer = ArtifactWriter(tmp_path, ExportStyle(formats=("npy",)), overwrite=True)
    results = writer.write_batch([(first, None, "img/x"), (second, None, "IMG/X")])
    assert isinstance(results[0], dict) and isinstance(results[1], ExportError)
    assert "same files" in str(results[1])
    np.testing.assert_array_equal(np.load(tmp_path / "img" / "x.npy"), first.values)


# --- (b) links planted at temporary names ------------------------------------------------------


def test_links_planted_at_every_predictable_temp_name_are_never_followed(tmp_path, capsys):
    """The old temporary names were ``.NAME.PID.tmp`` (stacks) and ``.NAME.PID.N.tmp``: plant
    links there (and at the lock) to a file outside --out; it stays as it was."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    images = _images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    pid = os.getpid()
    names = {"arrays": ["activation_conv1_mean.npy", "prediction_probs_scores.npy"]}
    for stem in ("img000", "img001"):
        names[stem] = ["activation_conv1_mean.png", "activation_conv1_mean_overlay.png"]
    planted = 0
    for folder, files in names.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in [*files, "manifest.json"]:
            for tmp in [f".{name}.{pid}.tmp", *(f".{name}.{pid}.{n}.tmp" for n in range(64))]:
                os.symlink(victim, out / folder / tmp)
                planted += 1
    for name in ("manifest.json",):
        for n in range(64):
            os.symlink(victim, out / f".{name}.{pid}.{n}.tmp")
    rc, err = _run([*images, "--model", DEMO / "digits_cnn.keras", "--out", out, "--layer", "conv1"], capsys)
    assert rc == 0, err
    assert victim.read_bytes() == b"precious"
    assert read_manifest(out)["images"]["exported"] == 2
    # a link in place of the lock file is refused, not followed
    os.symlink(victim, out / naming.run_file_name("lock"))
    rc, err = _run([*images, "--model", DEMO / "digits_cnn.keras", "--out", out, "--overwrite"], capsys)
    assert rc == 2 and "lock" in err
    assert victim.read_bytes() == b"precious" and planted > 0


def test_a_planted_folder_link_is_not_written_through(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    images = _images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "img001")
    rc, err = _run([*images, "--model", DEMO / "digits_cnn.keras", "--out", out, "--layer", "conv1",
                    "--npy-layout", "files"], capsys)
    assert rc == 1 and "is a link" in err
    assert list(elsewhere.iterdir()) == []
    assert [f["image"] for f in read_manifest(out)["failures"]] == [images[1]]


def test_a_stack_temp_file_swapped_for_a_link_is_not_reopened(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"x" * 4096)
    stack = NpyStack(tmp_path / "s.npy", (2,), np.float32, token="abcdef012345")
    stack.append(np.ones(2, np.float32))
    stack.suspend()
    tmp = NpyStack.temp_path(tmp_path / "s.npy", "abcdef012345")
    os.unlink(tmp)
    os.symlink(victim, tmp)
    assert NpyStack.rows_on_disk(tmp_path / "s.npy", "abcdef012345", (2,), np.float32) == 0
    with pytest.raises(OSError):
        NpyStack.reopen(tmp_path / "s.npy", "abcdef012345", (2,), np.float32, 1)
    assert victim.read_bytes() == b"x" * 4096
    # the clean-up removes the link itself (matching our pattern), never its target
    (tmp_path / ".notes.tmp").write_text("a user's file")
    assert remove_temp_files(tmp_path) == 1
    assert victim.exists() and (tmp_path / ".notes.tmp").exists() and not os.path.lexists(tmp)


# --- (c) two runs, one folder -----------------------------------------------------------------


def test_two_racing_exports_one_is_refused_with_the_others_pid(tmp_path):
    images = _images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "maskviewer", "export", *images, "--model", str(DEMO / "digits_cnn.keras"),
           "--out", str(out), "--layer", "conv1", "--overwrite", "--quiet"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / naming.run_file_name("lock")
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    first_err = first.communicate(timeout=180)[1]
    assert first.returncode == 0, first_err[-2000:]
    if second.returncode == 0:  # the first had finished already: both complete, one after the other
        pytest.skip("the first export finished before the second started")
    assert second.returncode == 2
    assert f"Another maskviewer export (pid {first.pid})" in second.stderr, second.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest["images"]["exported"] == 6 and len(manifest["artifacts"]) == 12
    assert [p.name for p in out.rglob(".*")] == []  # lock and journal gone


def test_an_export_into_a_folder_another_run_holds_is_refused_and_writes_nothing(tmp_path):
    """Deterministic side of the race: this process holds the folder as a running export does."""
    images = _images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"first": "export"}')
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    with ExportLock(out):
        done = subprocess.run([sys.executable, "-m", "maskviewer", "export", *images, "--model",
                               str(DEMO / "digits_cnn.keras"), "--out", str(out), "--overwrite"],
                              env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 2
        assert f"Another maskviewer export (pid {os.getpid()}) is writing into {out}" in done.stderr
        assert sorted(p.name for p in out.iterdir()) == [naming.run_file_name("lock"), "manifest.json"]
    assert (out / "manifest.json").read_text() == '{"first": "export"}'


def test_shards_share_a_folder_but_a_whole_export_waits_for_them(tmp_path):
    one = ExportLock(tmp_path, "manifest.shard-1-of-2.json")
    two = ExportLock(tmp_path, "manifest.shard-2-of-2.json")
    with pytest.raises(ExportError, match=f"pid {os.getpid()}"):
        ExportLock(tmp_path, "manifest.shard-1-of-2.json")
    with pytest.raises(ExportError, match="Another maskviewer export"):
        ExportLock(tmp_path)
    one.release()
    two.release()
    with ExportLock(tmp_path):
        with pytest.raises(ExportError, match=f"pid {os.getpid()}"):
            ExportLock(tmp_path, "manifest.shard-1-of-2.json")
    assert list(tmp_path.iterdir()) == []


# --- (d) an image named like the export's own files --------------------------------------------


@pytest.mark.parametrize("name", ["manifest.json.png", "arrays.png", "Arrays.png", "manifest.shard-1-of-2.json.png"])
def test_an_image_named_like_the_manifest_is_refused_before_any_work(tmp_path, capsys, name):
    image = tmp_path / name
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image, format="PNG")
    out = tmp_path / "out"
    # a model that does not exist: the refusal comes before it is even looked at
    rc, err = _run([DEMO / "digit_1.png", image, "--model", tmp_path / "none.keras", "--out", out], capsys)
    assert rc == 2 and name in err and "Rename" in err and "none.keras" not in err
    assert list(out.iterdir()) == []


# --- (e) --resume after a kill ------------------------------------------------------------------


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("seed", [3])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, seed, monkeypatch, capsys):
    images = _images(tmp_path / "imgs", 48, (96, 80), seed=seed)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    args = [*images, "--model", str(DEMO / "digits_cnn.keras"), "--out", "out", "--layer", "conv1",
            "--layer", "conv3", "--legend", "--batch-size", "3", "--quiet"]
    argv = [sys.executable, "-m", "maskviewer", "export", *args]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    monkeypatch.chdir(whole)  # the same relative --out: the manifests record the same command
    rc, err = _run(args, capsys)
    assert rc == 0, err

    journal = killed / "out" / naming.run_file_name("journal")
    kill_after = random.Random(seed).randint(2, 10)  # header + this many images' lines
    run = subprocess.Popen(argv, cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _lines(journal) < 1 + kill_after and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    run.kill()
    run.communicate(timeout=60)
    assert run.returncode == -9, "the export ended before it was killed"
    assert journal.exists() and not (killed / "out" / "manifest.json").exists()
    assert any(naming.is_temp_name(p.name) for p in (killed / "out").rglob(".*"))  # a killed run's leftovers

    monkeypatch.chdir(killed)
    rc, err = _run(args, capsys)
    assert rc == 2 and "--resume" in err  # refused up front, not failing every image written
    rc, err = _run([*args, "--resume"], capsys)
    assert rc == 0, err

    a, b = _tree(whole / "out"), _tree(killed / "out")
    assert sorted(a) == sorted(b)  # no temporary file, journal or lock left
    ma, mb = json.loads(a.pop("manifest.json")), json.loads(b.pop("manifest.json"))
    for m in (ma, mb):
        del m["seconds"], m["created"]
    assert ma == mb
    assert [k for k in a if a[k] != b[k]] == []  # every file byte for byte, stacked arrays included
    assert ma["images"]["exported"] == 48 and np.load(whole / "out" / "arrays" / "activation_conv1_mean.npy").shape[0] == 48
