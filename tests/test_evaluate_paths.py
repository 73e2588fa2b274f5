"""The evaluator's fast paths give the numbers of the slow ones: pictures mapped a batch at a
time, PNG files decoded by the input pipeline, class answers read a batch at a time, model
inputs handed over without a copy, one trace of the model for every batch size."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from maskviewer.core import evaluation as ev
from maskviewer.core import output_kinds as ok
from maskviewer.core.errors import InputMappingError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, prepare_input
from maskviewer.core.patches import prepare_patches
from maskviewer.io.images import load_image, save_image


def test_pictures_of_one_size_map_together_bit_for_bit_as_each_alone(rng):
    n, h, w = 4, 17, 33
    shapes = ((None, h, w, 3), (None, 24, 40, 1), (None, 24, 40), (None, None, None, 3), (None, 24, 40, 4))
    checked = 0
    for c, dtype in itertools.product((1, 3, 4), (np.uint8, np.uint16, np.float32)):
        if dtype == np.float32:
            stack, vmax = rng.random((n, h, w, c), dtype=np.float32) * 3, 3.0
        else:
            vmax = float(np.iinfo(dtype).max)
            stack = rng.integers(0, int(vmax) + 1, (n, h, w, c)).astype(dtype)
        for resize, scale, shape in itertools.product(
            ("none", "stretch", "fit", "crop"), ("0..1", "raw", "0..255", "-1..1", "caffe", "mean/std"), shapes
        ):
            m = InputMapping(resize=resize, scale=scale)
            try:
                x = prepare_patches(stack, vmax, m, shape)
            except InputMappingError as exc:  # refused alike, in the same words
                with pytest.raises(InputMappingError, match=str(exc)[:40].replace("(", r"\(").replace(")", r"\)")):
                    prepare_input(ImageData(stack[0], "p", vmax), m, shape)
                continue
            for i in range(n):
                one, _frame = prepare_input(ImageData(stack[i], "p", vmax), m, shape)
                assert one.dtype == x.dtype and one.shape == x[i].shape
                assert np.array_equal(one, x[i]), (c, dtype, resize, scale, shape)
            checked += 1
    assert checked > 300


def _png_files(tmp_path, rng):
    from PIL import Image

    files = {}
    for i in range(5):  # the common kind: 6×7 grey
        files[f"grey{i}"] = tmp_path / f"grey{i}.png"
        Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8), "L").save(files[f"grey{i}"])
    files["trns"] = tmp_path / "trns.png"  # a transparent grey value: ignored, as Pillow's grey is read
    Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8), "L").save(files["trns"], transparency=3)
    files["rgb"] = tmp_path / "rgb.png"  # another size and kind
    Image.fromarray(rng.integers(0, 256, (5, 8, 3), dtype=np.uint8), "RGB").save(files["rgb"])
    files["deep"] = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65535, (6, 7), dtype=np.uint16)).save(files["deep"])
    files["palette"] = tmp_path / "pal.png"
    Image.fromarray(rng.integers(0, 4, (6, 7), dtype=np.uint8), "P").save(files["palette"])
    files["grey_alpha"] = tmp_path / "la.png"
    Image.fromarray(rng.integers(0, 256, (6, 7, 2), dtype=np.uint8), "LA").save(files["grey_alpha"])
    files["broken"] = tmp_path / "broken.png"  # the common head, then nothing a decoder can read
    files["broken"].write_bytes(files["grey0"].read_bytes()[:40])
    files["short"] = tmp_path / "short.png"
    files["short"].write_bytes(b"\x89PNG")
    return files


@pytest.mark.parametrize("direct", [0, 3, 99], ids=["pipeline", "both", "direct calls"])
def test_the_png_stream_decodes_what_pillow_reads_and_leaves_the_rest(tmp_path, rng, monkeypatch, direct):
    import maskviewer.inference.png_stream as ps

    monkeypatch.setattr(ps, "DIRECT_GROUPS", direct)  # groups decoded before the pipeline runs

    files = _png_files(tmp_path, rng)
    names = list(files) + ["missing"]
    paths = [str(files.get(n, tmp_path / "missing.png")) for n in names]
    head = ps.common_head(paths)
    assert head == files["grey0"].read_bytes()[: ps.HEAD_BYTES]  # the most common simple kind
    # a file that cannot be read or decoded drops its group: a file a group here
    stream = ps.PngStream(list(range(len(paths))), paths, batch=1, head=head)
    got = stream.take(2)
    assert set(got) == {0, 1}
    got.update(stream.take(len(paths)))
    assert {names[i] for i in got} == {"grey0", "grey1", "grey2", "grey3", "grey4", "trns"}
    for i, picture in got.items():
        np.testing.assert_array_equal(picture, load_image(paths[i]).array)
        assert picture.dtype == np.uint8
    assert stream.take(99) == {}


def test_the_stream_takes_only_small_simple_pngs(tmp_path, rng):
    from PIL import Image

    import maskviewer.inference.png_stream as ps

    Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8), "L").save(tmp_path / "large.png")
    Image.fromarray(rng.integers(0, 65535, (6, 7), dtype=np.uint16)).save(tmp_path / "deep.png")
    for name in ("large", "deep"):
        head = (tmp_path / f"{name}.png").read_bytes()[: ps.HEAD_BYTES]
        assert not ps.simple_head(head) and ps.png_stream([0], [str(tmp_path / f"{name}.png")], 4) is None
    lying = bytearray(head)  # a head declaring 40,000² pixels is never decoded
    lying[16:24] = (40_000).to_bytes(4, "big") * 2
    lying[24:29] = b"\x08\x00\x00\x00\x00"
    assert not ps.simple_head(bytes(lying))


@pytest.mark.parametrize("direct", [0, 1, 99], ids=["pipeline", "both", "direct calls"])
def test_an_unreadable_file_leaves_its_group_to_pillow(tmp_path, rng, monkeypatch, direct):
    import maskviewer.inference.png_stream as ps

    monkeypatch.setattr(ps, "DIRECT_GROUPS", direct)

    paths = []
    for i in range(8):
        p = tmp_path / f"{i}.png"
        save_image(p, rng.integers(0, 256, (6, 6), dtype=np.uint8))
        paths.append(str(p))
    head = ps.common_head(paths)
    paths[5] = str(tmp_path / "gone.png")
    paths[7] = str(tmp_path / "5.png")  # the same file twice: both decoded
    got = ps.PngStream(list(range(8)), paths, batch=3, head=head).take(8)
    assert sorted(got) == [0, 1, 2, 6, 7]  # 3..5 are read by Pillow (5 reporting its error)
    np.testing.assert_array_equal(got[7], load_image(paths[7]).array)


@pytest.mark.parametrize("direct", [0, 1, 99], ids=["pipeline", "both", "direct calls"])
def test_a_group_decodes_its_files_of_the_head_and_marks_the_others(tmp_path, rng, monkeypatch, direct):
    """Files of another size or kind inside a group are skipped, not decoded, and the group's
    other files still stream (RGB and RGBA heads too)."""
    from PIL import Image

    import maskviewer.inference.png_stream as ps

    monkeypatch.setattr(ps, "DIRECT_GROUPS", direct)

    for mode, c in (("RGB", 3), ("RGBA", 4), ("L", 1)):
        paths = []
        for i in range(7):
            p = tmp_path / f"{mode}{i}.png"
            size = (5, 9) if i in (1, 4) else (6, 4)
            a = rng.integers(0, 256, (*size, c), dtype=np.uint8)
            Image.fromarray(a[..., 0] if c == 1 else a, mode).save(p)
            paths.append(str(p))
        head = ps.common_head(paths)
        assert ps.head_shape(head) == (6, 4, c)
        got = ps.PngStream(list(range(10, 17)), paths, batch=4, head=head).take(17)
        assert sorted(got) == [10, 12, 13, 15, 16]
        for i, picture in got.items():
            np.testing.assert_array_equal(picture, load_image(paths[i - 10]).array)


def _folder(tmp_path, rng):
    """A folder data set the stream and Pillow must read alike: two sizes, odd files."""
    from PIL import Image

    from maskviewer.demo import get_demo

    x = np.load(get_demo("digits").path("digits_test_x.npy"))[:30]
    for i, img in enumerate(x):
        (tmp_path / "data" / str(i % 3)).mkdir(parents=True, exist_ok=True)
        pic = img if i % 4 else img[4:24, 4:24]  # 28×28 and 20×20 (stretched to the input)
        save_image(tmp_path / "data" / str(i % 3) / f"d{i:02d}.png", pic)
    Image.fromarray((x[0].astype(np.uint16) * 257)[..., 0]).save(tmp_path / "data" / "1" / "deep.png")
    Image.fromarray(x[1][..., 0]).convert("RGB").save(tmp_path / "data" / "2" / "rgb.bmp")
    (tmp_path / "data" / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return tmp_path / "data"


def _rows(folder, stream: bool, batch: int = 8):
    from maskviewer.cli import evaluate as E
    from maskviewer.cli.args import load_model
    from maskviewer.cli.evaluate_run import EvalSettings, Evaluator
    from maskviewer.cli.export_plan import make_plan
    from maskviewer.demo import get_demo
    from maskviewer.io.dataset import open_dataset

    model = str(get_demo("digits").path("digits_cnn.keras"))
    args = E.build_parser().parse_args([str(folder), "--model", model, "--out", str(folder / "t.csv"),
                                        "--resize", "stretch"])
    index = open_dataset(folder)
    host = load_model(args)
    evaluator = Evaluator(host, index, make_plan(E._export_like(args, index), host),
                          EvalSettings(None, None, False, batch))
    evaluator.stream_pngs = stream
    return list(evaluator.rows(index.entries))


def test_streamed_and_pillow_read_data_sets_give_the_same_rows(tmp_path, rng):
    folder = _folder(tmp_path, rng)
    streamed, read = _rows(folder, True), _rows(folder, False)
    assert streamed == read  # every number equal, not close
    assert sum(1 for r in read if r.get("error_message")) == 1 and len(read) == 33


def test_class_answers_read_a_batch_at_a_time_equal_one_at_a_time(rng):
    values = rng.normal(size=(12, 5)) * 4
    labels = [str(i % 6) if i % 5 else None for i in range(12)]  # "5": no such class; None: no truth
    one = rng.random((12, 1))  # one sigmoid: two classes
    for kind, v in ((ok.SOFTMAX, np.abs(values) / np.abs(values).sum(1, keepdims=True)), (ok.LOGITS, values),
                    (ok.SOFTMAX, one), (ok.MULTILABEL, 1 / (1 + np.exp(-values))), (ok.REGRESSION, values[:, :1])):
        batch = ev.answer_rows(kind, v.astype(np.float32), labels, None)
        alone = [ev.answer_row(kind, v[i].astype(np.float32), labels[i], None) for i in range(12)]
        assert json.dumps(batch) == json.dumps(alone)  # NaN (a label naming no class) written alike
    assert any(np.isnan(r.get("loss", 0)) for r in ev.answer_rows(ok.LOGITS, values, labels, None))


def test_model_inputs_mapped_together_are_handed_over_without_a_copy():
    from maskviewer.cli.evaluate_run import EvalItem, _model_batch

    arrays = {"x": np.arange(24, dtype=np.float32).reshape(4, 6)}
    items = [EvalItem(None, arrays={"x": arrays["x"][j]}, stacked=(arrays, j)) for j in range(4)]
    assert _model_batch(items) is arrays
    for part in (items[1:], items[::-1], items[:2] + items[:2]):  # not whole, or out of order: stacked
        got = _model_batch(part)["x"]
        np.testing.assert_array_equal(got, np.stack([it.arrays["x"] for it in part]))
        assert not np.shares_memory(got, arrays["x"])


def test_a_graph_model_is_traced_once_for_every_batch_size(keras_mod, rng):
    from maskviewer.inference.traced_call import _ATTR, call_traced

    keras = keras_mod
    inp = keras.Input((6, 6, 2))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inp))))
    for n in (1, 7, 32, 5):
        x = rng.random((n, 6, 6, 2), dtype=np.float32)
        np.testing.assert_allclose(np.asarray(call_traced(model, x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert model.__dict__[_ATTR].experimental_get_tracing_count() == 1
