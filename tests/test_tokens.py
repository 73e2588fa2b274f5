"""Token layers as maps: the grid found from the model or N, overrides, and every reduction and
Grad-CAM equal to plain Keras sub-model outputs reshaped by hand."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.tokens import (
    TokenGrid,
    TokenGridError,
    TokenOverride,
    detect_grid,
    factor_grid,
    parse_grid,
    patch_of_pixel,
    tokens_to_grid,
)

FAMILIES = ("keras_io_vit", "conv_vit", "cls_vit", "hybrid_vit")
#: (family) -> (last token layer, grid, extra tokens)
EXPECTED = {
    "keras_io_vit": ("block1_out", (4, 4), 0),
    "conv_vit": ("block1_out", (4, 4), 0),
    "cls_vit": ("encoder_block_2", (8, 8), 1),
    "hybrid_vit": ("block1_out", (8, 8), 0),
}


# -- the grid rules (numpy) ---------------------------------------------------------------------


def test_grid_from_token_count_finds_leading_tokens():
    assert detect_grid(197) == TokenGrid(14, 14, 1, "tokens")
    assert detect_grid(196) == TokenGrid(14, 14, 0, "tokens")
    assert detect_grid(201) == TokenGrid(14, 14, 5, "tokens")  # class + 4 registers
    assert detect_grid(7) == TokenGrid(2, 2, 3, "tokens")  # the fewest extra tokens first
    assert detect_grid(3) is None and detect_grid(1) is None  # no grid of at least 2x2
    # a 2:1 image: an 8x16 grid, not the square 11x11 + 7
    assert detect_grid(129, image_hw=(64, 128)) == TokenGrid(8, 16, 1, "tokens")


def test_model_grid_wins_and_overrides_must_fit():
    assert detect_grid(50, model_grid=(7, 7)) == TokenGrid(7, 7, 1, "model")
    # a model grid that does not fit N is ignored (the layer is not on the patch grid)
    assert detect_grid(65, model_grid=(7, 7)) == TokenGrid(8, 8, 1, "tokens")
    assert detect_grid(50, override=TokenOverride(grid=(5, 8))) == TokenGrid(5, 8, 10, "user")
    assert detect_grid(50, override=TokenOverride(extra=1)) == TokenGrid(7, 7, 1, "user")
    with pytest.raises(TokenGridError, match="give the grid too"):
        detect_grid(50, override=TokenOverride(extra=2))  # 48 is no square
    assert detect_grid(197, override=TokenOverride(extra=1)) == TokenGrid(14, 14, 1, "user")
    with pytest.raises(TokenGridError, match="does not fit a layer of 50 tokens"):
        detect_grid(50, override=TokenOverride(grid=(8, 8)))
    with pytest.raises(TokenGridError, match="does not fit"):
        detect_grid(50, override=TokenOverride(grid=(7, 7), extra=2))
    with pytest.raises(TokenGridError):
        TokenOverride(extra=-1)


def test_parse_and_reshape():
    assert parse_grid("14x14") == (14, 14) and parse_grid(" 8×16 ") == (8, 16) and parse_grid("3,5") == (3, 5)
    for bad in ("14", "0x3", "axb", ""):
        with pytest.raises(TokenGridError):
            parse_grid(bad)
    assert factor_grid(12, 4 / 3) == (3, 4) and factor_grid(12, 1.0) is None
    x = np.arange(2 * 13 * 3).reshape(2, 13, 3)
    g = TokenGrid(3, 4, 1)
    out = tokens_to_grid(x, g)
    assert out.shape == (2, 3, 4, 3)
    assert np.array_equal(out[1, 2, 1], x[1, 1 + 2 * 4 + 1])  # row-major after the extra token
    assert patch_of_pixel(0, 0, (30, 40), g) == 1 and patch_of_pixel(29, 39, (30, 40), g) == 12
    assert patch_of_pixel(12, 25, (30, 40), g) == 1 + 1 * 4 + 2


# -- token layers of real models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    from tests import vit_zoo

    return {name: getattr(vit_zoo, name)() for name in FAMILIES}


def _sub_output(model, path, x):
    """The layer's output from a plain Keras sub-model."""
    import keras

    return np.asarray(keras.Model(model.inputs, model.get_layer(path).output)(x))


def _numpy(a, method, k=3, channel=1):
    if method == "mean":
        return a.mean(-1)
    if method == "max":
        return a.max(-1)
    if method == "channel":
        return a[..., channel]
    if method == "topk":
        top = np.argsort(-a.mean((0, 1)), kind="stable")[:k]
        return a[..., top].mean(-1)
    raise AssertionError(method)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_layer_maps_equal_keras_sub_model_reshaped_by_hand(models, family):
    from maskviewer.inference.probe import ActivationProbe, Reduction
    from tests.vit_zoo import image

    model = models[family]
    path, (gh, gw), extra = EXPECTED[family]
    probe = ActivationProbe(model)
    grid = probe.token_grid(path)
    assert (grid.grid_h, grid.grid_w, grid.extra, grid.source) == (gh, gw, extra, "model")
    x = image(seed=5)
    tokens = _sub_output(model, path, x)[0]
    by_hand = tokens[extra:].reshape(gh, gw, tokens.shape[-1])  # row-major patches after the extra ones
    for method in ("mean", "max", "channel", "topk"):
        lm = probe.reduce(x, path, Reduction(method, k=3, channel=1))
        assert lm.spatial and lm.shape == by_hand.shape and lm.tokens == grid
        np.testing.assert_allclose(lm.map, _numpy(by_hand, method), rtol=1e-5, atol=1e-5)
    lm = probe.reduce(x, path, Reduction("grid", channel=2))
    np.testing.assert_allclose(lm.maps, by_hand.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    # the compiled many-layer pass gives the same
    maps = probe.reduce_all(x, [path], Reduction("mean"))
    np.testing.assert_allclose(maps[path].map, by_hand.mean(-1), rtol=1e-5, atol=1e-5)


def test_override_changes_the_grid_and_bad_override_is_a_clear_error(models):
    from maskviewer.core.tokens import TokenGridError
    from maskviewer.inference.probe import ActivationProbe, Reduction
    from tests.vit_zoo import image

    model = models["cls_vit"]
    probe = ActivationProbe(model)
    x = image(seed=1)
    probe.tokens.override = TokenOverride(grid=(4, 16), extra=1)
    lm = probe.reduce(x, "final_norm", Reduction("mean"))
    tokens = _sub_output(model, "final_norm", x)[0]
    np.testing.assert_allclose(lm.map, tokens[1:].reshape(4, 16, -1).mean(-1), rtol=1e-5, atol=1e-5)
    probe.tokens.override = TokenOverride(grid=(8, 8), extra=0)
    with pytest.raises(TokenGridError, match="does not fit a layer of 65 tokens"):
        probe.reduce(x, "final_norm", Reduction("mean"))


def test_batch_export_maps_equal_the_window_maps(models):
    from maskviewer.inference.batch_maps import BatchMapper
    from maskviewer.inference.probe import ActivationProbe, Reduction
    from tests.test_probe import _host
    from tests.vit_zoo import image

    model = models["hybrid_vit"]
    host = _host(model)
    x = np.concatenate([image(seed=2), image(seed=3)])
    mapper = BatchMapper(host, ["block0_out"], Reduction("max"))
    items, _ = mapper.run({host.loaded.input_keys[0] if host.loaded.input_keys else "image": x})
    probe = ActivationProbe(model)
    for i in range(2):
        one = probe.reduce(x[i : i + 1], "block0_out", Reduction("max"))
        np.testing.assert_allclose(items[i]["block0_out"].map, one.map, rtol=1e-5, atol=1e-5)
        assert items[i]["block0_out"].tokens.grid == (8, 8)


def test_layer_list_marks_token_and_attention_layers(models):
    from maskviewer.inference.probe import describe_layers
    from tests.test_probe import _host

    entries = {e.path: e for e in describe_layers(_host(models["conv_vit"]))}
    assert entries["tokens"].spatial and entries["tokens"].tokens.grid == (4, 4)
    assert entries["block0_mha"].heads == 2 and entries["block0_mha"].tokens is not None
    assert not entries["pool"].spatial and entries["pool"].tokens is None
    assert entries["patch_embed"].spatial and entries["patch_embed"].tokens is None


def _keras_io_gradcam(model, path, x, grid, cls, plus=False):
    """The keras-io Grad-CAM recipe, with the tokens and their gradients reshaped to the grid."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(path).output, model.output])
    with tf.GradientTape() as tape:
        conv, preds = grad_model(x)
        score = preds[:, cls]
    grads = tape.gradient(score, conv)
    a = tokens_to_grid(np.asarray(conv), grid)[0].astype(np.float64)
    g = tokens_to_grid(np.asarray(grads), grid)[0].astype(np.float64)
    if plus:
        g2 = g * g
        denom = 2 * g2 + a.sum((0, 1)) * g2 * g
        alpha = np.where(denom != 0, g2 / np.where(denom != 0, denom, 1), 0)
        w = (alpha * np.maximum(g, 0)).sum((0, 1))
    else:
        w = g.mean((0, 1))
    cam = np.maximum(a @ w, 0)
    return cam / cam.max()


@pytest.mark.parametrize("family,plus", [("cls_vit", False), ("keras_io_vit", True), ("hybrid_vit", False)])
def test_token_gradcam_equals_keras_io_recipe_with_the_reshape(models, family, plus):
    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import ActivationProbe
    from tests.vit_zoo import image

    model = models[family]
    # the class-token model's last block feeds the head only through its class token: the block before
    path = "encoder_block_1" if family == "cls_vit" else EXPECTED[family][0]
    probe = ActivationProbe(model)
    x = image(seed=7)
    res = grad_cam(probe, x, path, class_index=1, plus=plus)
    ref = _keras_io_gradcam(model, path, x, probe.token_grid(path), 1, plus)
    assert res.heatmap.shape == EXPECTED[family][1]
    np.testing.assert_allclose(res.heatmap, ref, atol=2e-5)


def test_saved_and_reloaded_model_keeps_its_grid(models, tmp_path):
    import keras

    from maskviewer.inference.probe import ActivationProbe, Reduction
    from tests.vit_zoo import image

    for family in ("keras_io_vit", "cls_vit"):
        path = tmp_path / f"{family}.keras"
        models[family].save(path)
        model = keras.saving.load_model(path)
        probe = ActivationProbe(model)
        layer, grid, extra = EXPECTED[family]
        assert probe.token_grid(layer).grid == grid and probe.token_grid(layer).extra == extra
        x = image(seed=9)
        tokens = _sub_output(model, layer, x)[0]
        lm = probe.reduce(x, layer, Reduction("mean"))
        np.testing.assert_allclose(lm.map, tokens[extra:].reshape(*grid, -1).mean(-1), rtol=1e-5, atol=1e-5)
