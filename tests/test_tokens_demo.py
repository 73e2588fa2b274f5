"""The vision-transformer demo: its held-out score reproduces from the shipped files, its token
layers are maps on the 8x8 patch grid, and its attention rollout follows the digit."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.demo import list_demos

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def vit():
    demos = {d.name: d for d in list_demos()}
    if "vit" not in demos:
        pytest.skip("the vision-transformer demo is not built")
    import keras

    demo = demos["vit"]
    model = keras.saving.load_model(demo.path(demo.model))  # safe mode: Keras layers only
    x = np.load(demo.path(demo.score["test_x"])).astype(np.float32)[..., None] / 255.0
    y = np.load(demo.path(demo.score["test_y"]))
    return demo, model, x, y


def test_score_reproduces_and_tokens_are_an_8x8_grid_after_the_class_token(vit):
    from maskviewer.inference.probe import ActivationProbe

    demo, model, x, y = vit
    probs = np.concatenate([np.asarray(model(x[i : i + 128], training=False)) for i in range(0, len(x), 128)])
    acc = float(np.mean(probs.argmax(1) == y))
    assert acc == pytest.approx(demo.score["value"], abs=1e-4) and acc > 0.9
    probe = ActivationProbe(model)
    grid = probe.token_grid("block2_output")
    assert (grid.grid, grid.extra, grid.source) == ((8, 8), 1, "model")
    assert len(probe.paths()) > 0 and f"{demo.score['value']:.1%}" in demo.description


def test_rollout_follows_the_digit(vit):
    """Where the digit is (its ink, on faint noise) and where rollout puts the class token's
    attention agree: positive correlation on the patch grid for most held-out digits, and the
    patches with the most rollout hold far more ink than the average patch."""
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import rollout_maps
    from maskviewer.inference.probe import ActivationProbe

    _, model, x, _ = vit
    cap = AttentionCapture(ActivationProbe(model))
    xs = x[:100]
    maps = np.concatenate([rollout_maps(cap, xs[i : i + 50]).maps for i in range(0, len(xs), 50)])
    ink = (xs[..., 0] > 0.35).reshape(len(xs), 8, 4, 8, 4).mean((2, 4))
    cors = np.array([np.corrcoef(m.ravel(), k.ravel())[0, 1] for m, k in zip(maps, ink, strict=True)])
    assert np.mean(cors > 0) > 0.8 and np.median(cors) > 0.3, np.round(cors, 2)
    top = np.argsort(-maps.reshape(len(xs), -1), axis=1)[:, :8]
    ink_top = np.take_along_axis(ink.reshape(len(xs), -1), top, axis=1).mean()
    assert ink_top > 2 * ink.mean()
