"""Evaluating a model on a data set: formats, rows, aggregates against plain Keras + numpy,
shards and merge, reuse of an earlier table, a corrupt image failing its row only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskviewer.core import evaluation as ev
from maskviewer.core.dataset import DatasetError, shard
from maskviewer.io.dataset import PictureReader, demo_dataset, open_dataset
from maskviewer.io.images import save_image
from maskviewer.io.results_table import read_table, write_table


def _evaluate(argv):
    from maskviewer.cli import main

    return main(["evaluate", *argv, "--quiet"])


def _summary(table):
    return json.loads((table.parent / (table.name + ".json")).read_text())["summary"]




# -- formats ---------------------------------------------------------------------------------------


def test_folder_with_class_subfolders_masks_and_references(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            save_image(tmp_path / cls / f"{cls}{i}.png", np.full((8, 8), 10 * i, np.uint8))
    (tmp_path / "masks").mkdir()
    save_image(tmp_path / "masks" / "dog1.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "references").mkdir()
    save_image(tmp_path / "references" / "cat0.png", np.zeros((8, 8), np.uint8))
    index = open_dataset(tmp_path)
    assert index.classes == ["cat", "dog"]  # masks/ and references/ are not classes
    assert [e.key for e in index.entries] == ["cat/cat0.png", "cat/cat1.png", "dog/dog0.png", "dog/dog1.png"]
    assert [e.label for e in index.entries] == ["cat", "cat", "dog", "dog"]
    by_key = {e.key: e for e in index.entries}
    assert by_key["dog/dog1.png"].mask is not None and by_key["dog/dog0.png"].mask is None
    assert by_key["cat/cat0.png"].reference is not None


def test_csv_json_npz_and_npy_lists(tmp_path):
    save_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "list.csv").write_text("image,label,mask,input:other\na.png,3,,a.png\n")
    e = open_dataset(tmp_path / "list.csv").entries[0]
    assert e.label == "3" and e.image.path.endswith("a.png") and set(e.inputs) == {"other"}
    (tmp_path / "list.json").write_text(json.dumps({"items": [{"image": "a.png", "label": "cat"}], "classes": ["dog", "cat"]}))
    index = open_dataset(tmp_path / "list.json")
    assert index.classes == ["dog", "cat"] and ev.class_row("softmax", np.array([0.2, 0.8]), "cat", index.classes)["correct"] == 1
    x = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    np.savez(tmp_path / "arr.npz", x=x, y=np.array([0, 1, 2]))
    index = open_dataset(tmp_path / "arr.npz")
    assert len(index) == 3 and index.entries[2].label == "2"
    np.testing.assert_array_equal(PictureReader().picture(index.entries[1].image).array[..., 0], x[1])
    np.save(tmp_path / "set_x.npy", x)
    np.save(tmp_path / "set_y.npy", np.array([5, 6, 7]))
    assert [e.label for e in open_dataset(tmp_path / "set_x.npy").entries] == ["5", "6", "7"]
    (tmp_path / "bad.csv").write_text("label\n1\n")
    with pytest.raises(DatasetError, match="no image column"):
        open_dataset(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match="no such"):
        open_dataset(tmp_path / "nothing")


def test_shards_cover_every_entry_once():
    entries = list(range(10))
    parts = [shard(entries, (i, 3)) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == entries and [len(p) for p in parts] == [4, 3, 3]


def test_table_round_trip_csv_and_parquet(tmp_path):
    rows = [{"key": "a", "label": "7", "pred": 7, "confidence": 0.5, "correct": 1},
            {"key": "b", "label": "1", "error_message": "broken"}]
    for name in ("t.csv", "t.parquet"):
        write_table(tmp_path / name, rows, {"fingerprint": "x"})
        back, meta = read_table(tmp_path / name)
        assert meta["fingerprint"] == "x"
        assert back[0] == rows[0] and back[1] == rows[1]


# -- numbers: the rows and aggregates equal plain numpy --------------------------------------------


def test_dice_curve_equals_a_threshold_by_threshold_loop(rng):
    v = rng.random((20, 30))
    ref = rng.random((20, 30)) > 0.6
    curve = ev.dice_curve(v, ref)
    for t, d in zip(ev.DICE_GRID, curve, strict=True):
        p = v > t
        tp = np.sum(p & ref)
        want = (2 * tp + 1e-7) / (p.sum() + ref.sum() + 1e-7)
        assert d == pytest.approx(want, abs=1e-9)
    inv = ev.dice_curve(v, ref, invert=True)
    p = v <= 0.3
    assert inv[30] == pytest.approx((2 * np.sum(p & ref) + 1e-7) / (p.sum() + ref.sum() + 1e-7))


def test_aggregates_and_wilson_interval():
    rows = [ev.class_row("softmax", np.array(p), str(t), None) for p, t in
            [([0.9, 0.1], 0), ([0.2, 0.8], 1), ([0.6, 0.4], 1), ([0.3, 0.7], 0)]]
    rows.append({"key": "x", "error_message": "corrupt"})
    s = ev.aggregate(rows, 2)
    assert s["images"] == 5 and s["failed"] == 1
    assert s["classes"]["accuracy"] == 0.5 and s["classes"]["confusion"] == [[1, 1], [1, 1]]
    want_loss = -np.mean(np.log([0.9, 0.8, 0.4, 0.3]))
    assert s["classes"]["mean_loss"] == pytest.approx(want_loss)
    lo, hi = ev.wilson(2, 4)
    # the Wilson interval for 2/4 (textbook value 0.150..0.850)
    assert lo == pytest.approx(0.1500, abs=1e-3) and hi == pytest.approx(0.8500, abs=1e-3)


# -- the demos' held-out sets, against plain Keras ------------------------------------------------


def _plain(model_path, x):
    import keras

    model = keras.saving.load_model(model_path)
    out = model(x, training=False)
    return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else np.asarray(out)


@pytest.mark.slow
def test_digits_accuracy_confusion_and_loss_equal_plain_keras(tmp_path):
    from maskviewer.demo import get_demo

    demo = get_demo("digits")
    table = tmp_path / "r.csv"
    assert _evaluate(["--demo", "digits", "--out", str(table)]) == 0
    x = np.load(demo.path("digits_test_x.npy")).astype(np.float32) / 255
    y = np.load(demo.path("digits_test_y.npy")).astype(int)
    p = _plain(str(demo.path(demo.model)), x)
    s = _summary(table)["classes"]
    assert s["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12)
    assert s["mean_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-4)
    want = np.zeros((10, 10), int)
    np.add.at(want, (y, p.argmax(1)), 1)
    assert s["confusion"] == want.tolist()
    rows, _ = read_table(table)
    assert [r["pred"] for r in rows] == p.argmax(1).tolist()


@pytest.mark.slow
def test_mask_ablation_accuracies_equal_plain_keras(tmp_path):
    from maskviewer.core.mask_feed import ablation_masks
    from maskviewer.demo import get_demo

    demo = get_demo("mask_channel")
    table = tmp_path / "r.parquet"
    assert _evaluate(["--demo", "mask_channel", "--ablation", "--out", str(table)]) == 0
    data = np.load(demo.path(demo.score["data"]))
    x, y = data["x"].astype(np.float32) / 255, data["y"].astype(int)
    got = _summary(table)["ablation"]
    names = {"painted": "mask", "zeros": "none", "ones": "ones", "random": "random", "inverted": "inverted"}
    for variant, name in names.items():
        masks = np.stack([ablation_masks(m, 0)[variant] for m in x[..., 1]])
        p = _plain(str(demo.path(demo.model)), np.stack([x[..., 0], masks], axis=-1))
        assert got[name]["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12), name
    assert got["mask"]["accuracy"] > 0.9 > 0.3 > got["random"]["accuracy"]  # the answer comes from the mask


@pytest.mark.slow
def test_counting_mae_and_binary_dice_curve_equal_plain_keras(tmp_path):
    from maskviewer.demo import get_demo

    reader = PictureReader()
    for name in ("counting", "binary"):
        demo = get_demo(name)
        table = tmp_path / f"{name}.csv"
        assert _evaluate(["--demo", name, "--out", str(table)]) == 0
        index = demo_dataset(demo)
        s = _summary(table)
        if name == "counting":
            x = {n: np.stack([reader.picture(e.inputs.get(n, e.image)).as_unit_float() for e in index.entries])
                 for n in ("rgb", "density_a", "density_b")}
            p = _plain(str(demo.path(demo.model)), x)
            p = p["count"] if isinstance(p, dict) else p
            truth = np.array([float(e.label) for e in index.entries])
            assert s["regression"]["mae"] == pytest.approx(np.mean(np.abs(p[:, 0] - truth)), rel=1e-5)
        else:
            x = np.stack([reader.picture(e.image).as_unit_float() for e in index.entries])
            ref = np.stack([reader.reference(e.reference) for e in index.entries])
            p = _plain(str(demo.path(demo.model)), x)["mark"][..., 0]
            curves = []
            for t in ev.DICE_GRID:
                b = p > t
                tp = np.sum(b & ref, axis=(1, 2))
                curves.append(np.mean((2 * tp + 1e-7) / (b.sum((1, 2)) + ref.sum((1, 2)) + 1e-7)))
            np.testing.assert_allclose(s["binary"]["mean_dice_curve"], curves, atol=1e-4)
            assert s["binary"]["best_threshold"] == pytest.approx(ev.DICE_GRID[int(np.argmax(curves))])
            tp = np.sum((p > 0.5) & ref)
            assert s["binary"]["pooled_dice"] == pytest.approx(2 * tp / (np.sum(p > 0.5) + ref.sum()), abs=1e-4)


@pytest.mark.slow
def test_patch_rules_accuracy_equals_plain_keras(tmp_path):
    from maskviewer.demo import get_demo

    demo = get_demo("patches")
    table = tmp_path / "r.csv"
    assert _evaluate(["--demo", "patches", "--out", str(table)]) == 0
    x = np.load(demo.path("digits_test_x.npy")).astype(np.float32) / 255
    y = np.load(demo.path("digits_test_y.npy")).astype(int)
    corners = [(0, 0), (0, 10), (10, 0), (10, 10)]
    p = np.stack([_plain(str(demo.path(demo.model)), x[:, r:r + 18, c:c + 18]) for r, c in corners], axis=1)
    want = {
        "mean": p.mean(1), "max": p.max(1),
        "vote": np.stack([(p.argmax(2) == k).mean(1) for k in range(p.shape[2])], axis=1),
        "geometric": np.exp(np.log(np.clip(p, 1e-12, None)).mean(1)),
    }
    got = _summary(table)["patches"]
    for rule, scores in want.items():
        assert got[rule]["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == y), abs=2.5e-3), rule


# -- shards, reuse, failures -----------------------------------------------------------------------


@pytest.mark.slow
def test_shards_merged_equal_one_run_and_reuse_skips_unchanged(tmp_path, capsys):
    from maskviewer.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for cls in ("0", "1", "2"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            save_image(data / cls / f"{cls}_{i}.png", rng.integers(0, 255, (28, 28), dtype=np.uint8))
    (data / "2" / "2_3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # fails its row only
    model = str(__import__("maskviewer.demo", fromlist=["get_demo"]).get_demo("digits").path("digits_cnn.keras"))
    whole = tmp_path / "whole.csv"
    assert _evaluate([str(data), "--model", model, "--out", str(whole)]) == 1
    rows, meta = read_table(whole)
    failed = [r for r in rows if r.get("error_message")]
    assert [r["key"] for r in failed] == ["2/2_3.png"] and len(rows) == 12
    for i in (1, 2, 3):
        _evaluate([str(data), "--model", model, "--shard", f"{i}/3", "--out", str(tmp_path / "sh")])
    assert main(["merge", str(tmp_path / "sh"), "--quiet"]) == 0
    merged, mmeta = read_table(tmp_path / "sh" / "results.csv")
    assert [r["key"] for r in merged] == [r["key"] for r in rows]
    for a, b in zip(merged, rows, strict=True):
        assert a.get("pred") == b.get("pred") and a.get("correct") == b.get("correct")
        if "confidence" in a:
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
    assert mmeta["summary"]["classes"]["accuracy"] == pytest.approx(meta["summary"]["classes"]["accuracy"])
    # a second run reuses every unchanged row; a changed file is scored again
    save_image(data / "0" / "0_0.png", np.zeros((28, 28), np.uint8))
    capsys.readouterr()
    from maskviewer.cli import main as run

    run(["evaluate", str(data), "--model", model, "--out", str(whole)])
    err = capsys.readouterr().err
    assert "evaluating 2 of 12 entries" in err and "10 unchanged, reused" in err  # the changed and the failed
    # a missing shard is named
    (tmp_path / "sh" / "results-shard-2-of-3.csv").unlink()
    assert main(["merge", str(tmp_path / "sh"), "--quiet"]) == 2


def test_numeric_class_folders_are_the_class_indices_even_with_one_missing():
    from maskviewer.core.dataset import class_index

    classes = ["0", "1", "2", "3", "4", "5", "7", "8", "9"]  # no "6"
    assert class_index("7", classes) == 7 and class_index("0", classes) == 0
    assert class_index("dog", ["cat", "dog"]) == 1 and class_index("x", ["cat"]) is None


@pytest.mark.slow
def test_worker_processes_threads_and_the_png_stream_read_the_same_rows(tmp_path, monkeypatch):
    import maskviewer.cli.evaluate_run as run
    from maskviewer.demo import get_demo

    data = tmp_path / "data"
    (data / "3").mkdir(parents=True)
    x = np.load(get_demo("digits").path("digits_test_x.npy"))[:40]
    for i, img in enumerate(x):
        save_image(data / "3" / f"d{i:02d}.png", img)
    (data / "3" / "broken.png").write_bytes(b"not a png")
    model = str(get_demo("digits").path("digits_cnn.keras"))
    by = {}
    for name, minimum in (("stream", 10**9), ("threads", 10**9), ("processes", 1)):
        monkeypatch.setattr(run, "PROCESS_MIN", minimum)
        if name != "stream":  # PNG files read by Pillow, in threads or worker processes
            monkeypatch.setattr(run.Evaluator, "_png_stream", lambda self, entries: None)
        table = tmp_path / f"{name}.csv"
        _evaluate([str(data), "--model", model, "--out", str(table), "--batch-size", "16"])
        by[name] = read_table(table)[0]
    for other in ("stream", "processes"):
        assert [r["key"] for r in by["threads"]] == [r["key"] for r in by[other]]
        for a, b in zip(by["threads"], by[other], strict=True):
            assert a.get("pred") == b.get("pred") and a.get("error_message") == b.get("error_message")
            assert a.get("confidence", 0) == pytest.approx(b.get("confidence", 0), abs=1e-6)
    assert sum(1 for r in by["processes"] if r.get("error_message")) == 1


def test_scores_that_cannot_be_computed_are_written_as_none(tmp_path):
    rows = [{"key": "a", **ev.binary_row(np.zeros((4, 4)), np.zeros((4, 4), bool), 0.5)}]
    summary = ev.aggregate(rows)
    write_table(tmp_path / "t.csv", rows, {"summary": summary})
    _back, meta = read_table(tmp_path / "t.csv")
    assert meta["summary"]["binary"]["pooled_dice"] is None
