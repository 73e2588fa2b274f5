"""``maskviewer export`` for vision transformers: token layers with --layer, --attention per-head
maps, --cam rollout / attribution, --grid / --extra-tokens; the files equal the inference
functions on plain Keras inputs and the manifest says the grid, the tokens dropped and the head."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli.export import export_main
from maskviewer.io.export import load_npy, read_manifest

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tests import model_zoo, vit_zoo

    folder = tmp_path_factory.mktemp("vit_cli")
    model = folder / "vit.keras"
    vit_zoo.builtin_vit().save(model)
    images = []
    for i in range(2):
        path = folder / f"img{i}.png"
        Image.fromarray(model_zoo.random_image(32, 32, 3, seed=20 + i)).save(path)
        images.append(path)
    return model, images


def _run(argv, capsys):
    rc = export_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _x(path):
    return (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)[None]


def test_attention_rollout_and_token_layers(files, tmp_path, capsys):
    import keras

    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import head_maps, rollout_maps
    from maskviewer.inference.probe import ActivationProbe

    model_path, images = files
    out = tmp_path / "out"
    rc, err = _run([*images, "--model", model_path, "--out", out, "--scale", "0..1", "--layer", "block1_out",
                    "--attention", "block1_mha", "--cam", "rollout", "--discard", "0.1",
                    "--no-predictions"], capsys)
    assert rc == 0, err
    manifest = read_manifest(out)
    model = keras.saving.load_model(model_path)
    cap = AttentionCapture(ActivationProbe(model))
    sub = keras.Model(model.inputs, model.get_layer("block1_out").output)
    for path in images:
        x = _x(path)
        entries = [e for e in manifest["artifacts"] if e["image"] == str(path)]
        heads = {e["head"]: e for e in entries if e["kind"] == "attention"}
        assert set(heads) == {0, 1, "mean"}
        want = head_maps(cap, x, "block1_mha")
        for h in (0, 1):
            np.testing.assert_allclose(load_npy(out, heads[h]), want.heads[0, h], atol=1e-5)
        np.testing.assert_allclose(load_npy(out, heads["mean"]), want.maps[0], atol=1e-5)
        assert heads[0]["grid"] == [8, 8] and heads[0]["tokens_dropped"] == 1
        roll = [e for e in entries if e["kind"] == "cam"][0]
        np.testing.assert_allclose(load_npy(out, roll), rollout_maps(cap, x, discard=0.1).maps[0], atol=1e-5)
        assert roll["method"] == "rollout" and roll["discard"] == 0.1 and roll["head"] == "mean"
        act = [e for e in entries if e["kind"] == "activation"][0]
        tokens = np.asarray(sub(x))[0]
        np.testing.assert_allclose(load_npy(out, act), tokens[1:].reshape(8, 8, -1).mean(-1), rtol=1e-5, atol=1e-5)
        assert act["grid"] == [8, 8] and act["tokens_dropped"] == 1
    assert manifest["settings"]["transformer"]["attention"] == ["block1_mha"]


def test_attribution_with_class_and_grid_override(files, tmp_path, capsys):
    import keras

    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import attribution_maps
    from maskviewer.inference.probe import ActivationProbe

    model_path, images = files
    out = tmp_path / "out"
    rc, err = _run([images[0], "--model", model_path, "--out", out, "--scale", "0..1", "--cam", "attribution",
                    "--class", "3", "--grid", "4x16", "--extra-tokens", "1", "--no-predictions"], capsys)
    assert rc == 0, err
    entry = [e for e in read_manifest(out)["artifacts"] if e["kind"] == "cam"][0]
    assert entry["class"] == 3 and entry["grid"] == [4, 16] and entry["grid_source"] == "user"
    probe = ActivationProbe(keras.saving.load_model(model_path))
    want = attribution_maps(AttentionCapture(probe), _x(images[0]), class_index=3).maps[0]
    np.testing.assert_allclose(load_npy(out, entry), want.reshape(4, 16), rtol=1e-4, atol=1e-6)


def test_bad_transformer_options_are_clear(files, tmp_path, capsys):
    from tests import model_zoo

    model_path, images = files
    rc, err = _run([images[0], "--model", model_path, "--out", tmp_path / "a", "--attention", "block1_fc1"], capsys)
    assert rc == 2 and "not a MultiHeadAttention layer" in err and "block0_mha" in err
    rc, err = _run([images[0], "--model", model_path, "--out", tmp_path / "b", "--grid", "8by8"], capsys)
    assert rc == 2 and "HxW" in err
    rc, err = _run([images[0], "--model", model_path, "--out", tmp_path / "c", "--layer", "block1_out",
                    "--grid", "5x5", "--extra-tokens", "0"], capsys)
    assert rc != 0 and "does not fit a layer of 65 tokens" in err
    cnn = tmp_path / "cnn.keras"
    model_zoo.rgb_classifier().save(cnn)
    rc, err = _run([images[0], "--model", cnn, "--out", tmp_path / "d", "--cam", "rollout"], capsys)
    assert rc == 2 and "no MultiHeadAttention layer" in err
