"""Attention rollout and transformer attribution equal plain numpy implementations of the papers'
recipes, on random matrices and on the weights of real models."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core import rollout as rec
from maskviewer.core.tokens import TokenGrid


def _random_attention(rng, layers=3, heads=2, n=5):
    a = rng.random((layers, heads, n, n))
    return list(a / a.sum(-1, keepdims=True))


def _paper_rollout(atts, fusion="mean", discard=0.0):
    """Abnar & Zuidema as in the vit-explain recipe, written out with explicit loops."""
    n = atts[0].shape[-1]
    result = np.eye(n)
    for att in atts:
        fused = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](att, axis=0)
        if discard:
            flat = fused.flatten()
            k = int(flat.size * discard)
            order = np.argsort(flat, kind="stable")[:k]
            for idx in order:
                if idx != 0:
                    flat[idx] = 0
            fused = flat.reshape(n, n)
        a = 0.5 * fused + 0.5 * np.eye(n)
        for i in range(n):
            a[i] = a[i] / a[i].sum()
        result = a @ result
    return result


def _chefer(atts, grads):
    n = atts[0].shape[-1]
    r = np.eye(n)
    for a, g in zip(atts, grads, strict=True):
        cam = np.zeros((n, n))
        for h in range(a.shape[0]):
            cam += np.clip(g[h] * a[h], 0, None)
        cam /= a.shape[0]
        r = r + cam @ r
    return r


@pytest.mark.parametrize("fusion", rec.HEAD_FUSIONS)
@pytest.mark.parametrize("discard", [0.0, 0.3])
def test_rollout_equals_the_paper_recipe(fusion, discard):
    rng = np.random.default_rng(0)
    atts = _random_attention(rng)
    np.testing.assert_allclose(rec.rollout(atts, fusion, discard), _paper_rollout(atts, fusion, discard), atol=1e-12)
    # rows of the rolled-out attention still sum to 1
    np.testing.assert_allclose(rec.rollout(atts, fusion, discard).sum(-1), 1.0, atol=1e-12)


@pytest.mark.parametrize("token", [None, 3])
@pytest.mark.parametrize("extra", [0, 1])
def test_rollout_row_is_the_row_of_the_full_rollout(token, extra):
    rng = np.random.default_rng(2)
    atts = _random_attention(rng, 4, 3, 7)
    full = _paper_rollout(atts, "min", 0.25)
    want = full[token] if token is not None else (full[0] if extra else full.mean(0))
    np.testing.assert_allclose(rec.rollout_row(atts, "min", 0.25, token, extra), want, atol=1e-12)


def test_rollout_of_one_layer_of_identity_heads_is_identity_and_bad_input_refused():
    eye = np.stack([np.eye(4)] * 3)[None]
    np.testing.assert_allclose(rec.rollout(list(eye)), np.eye(4))
    with pytest.raises(ValueError, match="discard"):
        rec.rollout(list(eye), discard=1.0)
    with pytest.raises(ValueError, match="fusion"):
        rec.rollout(list(eye), "median")
    with pytest.raises(ValueError, match="at least one"):
        rec.rollout([])


def test_gradient_rollout_equals_chefer():
    rng = np.random.default_rng(1)
    atts = _random_attention(rng, 4, 3, 6)
    grads = [rng.normal(size=a.shape) for a in atts]
    np.testing.assert_allclose(rec.gradient_rollout(atts, grads), _chefer(atts, grads), atol=1e-12)


def test_token_row_uses_the_class_token_or_the_mean():
    m = np.arange(25, dtype=float).reshape(5, 5)
    np.testing.assert_array_equal(rec.token_row(m, TokenGrid(2, 2, 1)), m[0, 1:].reshape(2, 2))
    np.testing.assert_array_equal(rec.token_row(m, TokenGrid(2, 2, 1), token=3), m[3, 1:].reshape(2, 2))
    m4 = m[:4, :4]
    np.testing.assert_allclose(rec.token_row(m4, TokenGrid(2, 2, 0)), m4.mean(0).reshape(2, 2))


@pytest.fixture(scope="module")
def cls_vit():
    from tests import vit_zoo

    return vit_zoo.cls_vit()


def test_model_rollout_and_attribution_equal_numpy_on_reference_weights(cls_vit):
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import attribution_maps, head_maps, rollout_maps
    from maskviewer.inference.probe import ActivationProbe
    from tests.test_attention import _reference_weights, _tape_gradients
    from tests.vit_zoo import image

    x = np.concatenate([image(seed=1), image(seed=2)])
    cap = AttentionCapture(ActivationProbe(cls_vit))
    ref = _reference_weights(cls_vit, x)
    layers = list(ref)
    got = rollout_maps(cap, x, fusion="max", discard=0.2)
    for i in range(2):
        want = _paper_rollout([ref[p][i] for p in layers], "max", 0.2)[0, 1:].reshape(8, 8)
        np.testing.assert_allclose(got.maps[i], want, atol=1e-5)
    heads = head_maps(cap, x, layers[1], token=10)
    np.testing.assert_allclose(heads.heads[1], ref[layers[1]][1][:, 10, 1:].reshape(3, 8, 8), atol=1e-5)
    np.testing.assert_allclose(heads.maps[0], ref[layers[1]][0][:, 10, 1:].mean(0).reshape(8, 8), atol=1e-5)
    attr = attribution_maps(cap, x[:1], class_index=4)
    w, g = _tape_gradients(cls_vit, cap.layers, x[:1], 4)
    want = _chefer([w[p][0] for p in layers], [g[p][0] for p in layers])[0, 1:].reshape(8, 8)
    np.testing.assert_allclose(attr.maps[0], want, rtol=1e-4, atol=1e-6)
    assert int(attr.classes[0]) == 4 and attr.grid.extra == 1
