"""The sanity check (cascading randomisation) on the trained digits demo: Grad-CAM changes as
the model is randomised, a model-independent edge detector does not, and the loaded model is
left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.demo import demo_dir
from maskviewer.inference.faithfulness import EDGES, method_maps


@pytest.fixture(scope="module")
def digits(keras_mod):
    model = keras_mod.models.load_model(str(demo_dir() / "digits_cnn.keras"))
    x = np.load(demo_dir() / "digits_test_x.npy")[:3].astype(np.float32) / 255.0  # the demo feeds 0..1
    return model, x


def sobel_reference(image: np.ndarray) -> np.ndarray:
    """An edge detector written independently of the app (scikit-image's Sobel)."""
    from skimage.filters import sobel

    return sobel(image[..., 0])


def test_gradcam_changes_and_an_edge_detector_does_not(digits):
    from maskviewer.inference.sanity import PASS_BELOW, sanity_check, weighted_layers

    model, x = digits
    before = [w.copy() for w in model.get_weights()]
    names = [layer.name for layer in weighted_layers(model)]
    assert names == ["probs", "conv3", "conv2", "conv1"]  # from the output down
    for i in range(len(x)):
        cam = sanity_check(model, x[i : i + 1], lambda m: method_maps(m, "gradcam", "conv3"), method="gradcam")
        assert [s.layer for s in cam.steps] == names and [s.randomised for s in cam.steps] == [1, 2, 3, 4]
        # once the top layers (the classifier and the CAM's own layer) are random, the map is another
        top = cam.steps[1].spearman
        assert np.isnan(top) or top < PASS_BELOW, [s.spearman for s in cam.steps]
        assert cam.passed and cam.first_change in ("probs", "conv3")

        edges = sanity_check(model, x[i : i + 1], lambda m: method_maps(m, EDGES, None), method=EDGES)
        assert not edges.passed and edges.first_change is None
        assert all(s.spearman > 0.99 and s.ssim > 0.99 for s in edges.steps)
        # and the "method" is what it claims: an edge detector (scikit-image's Sobel, up to scale)
        ours = method_maps(model, EDGES, None)(x[i : i + 1], None).maps[0]
        ref = sobel_reference(x[i])
        inner = (slice(1, -1), slice(1, -1))
        assert np.corrcoef(ours[inner].ravel(), ref[inner].ravel())[0, 1] > 0.999
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_each_step_is_the_map_of_a_copy_randomised_from_scratch(digits):
    """The cascade's maps are those of the randomised weights, not of a function that kept the
    weights it was first traced with."""
    from maskviewer.core.similarity import spearman
    from maskviewer.inference.sanity import (
        copy_model,
        randomise_layer,
        sanity_check,
        weighted_layers,
    )

    model, x = digits
    one = x[1:2]
    ref = method_maps(model, "gradcam", "conv3")(one, None)
    cls = int(ref.classes[0])
    result = sanity_check(model, one, lambda m: method_maps(m, "gradcam", "conv3"), cls, seed=5)
    for step in result.steps[1:]:
        fresh = copy_model(model)
        for i, layer in enumerate(weighted_layers(fresh)[: step.randomised]):
            randomise_layer(layer, 5 + i)
        got = method_maps(fresh, "gradcam", "conv3")(one, cls).maps[0]
        want = spearman(ref.maps[0], got)
        assert (np.isnan(want) and np.isnan(step.spearman)) or step.spearman == pytest.approx(want, abs=1e-4)


def test_the_copy_is_randomised_from_the_top_and_the_model_is_untouched(digits):
    from maskviewer.inference.sanity import copy_model, randomise_layer, weighted_layers

    model, x = digits
    clone = copy_model(model)
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)
    layers = weighted_layers(clone)
    randomise_layer(layers[0], 0)
    randomise_layer(layers[1], 1)
    for layer in weighted_layers(model):
        theirs = clone.get_layer(layer.name).get_weights()
        mine = layer.get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
        assert same == (layer.name not in ("probs", "conv3")), layer.name
    # kernels redrawn from their initializer (glorot uniform: inside its limit, not the trained values)
    k = clone.get_layer("conv3").get_weights()[0]
    limit = np.sqrt(6.0 / (k.shape[0] * k.shape[1] * (k.shape[2] + k.shape[3])))
    assert np.abs(k).max() <= limit + 1e-6 and k.std() > limit / 4


def test_nested_models_are_copied_not_shared(keras_mod):
    from maskviewer.inference.sanity import copy_model, randomise_layer, weighted_layers
    from tests import model_zoo

    model = model_zoo.nested()
    before = [w.copy() for w in model.get_weights()]
    clone = copy_model(model)
    for i, layer in enumerate(weighted_layers(clone)):
        randomise_layer(layer, i)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(before, clone.get_weights(), strict=True))


def test_max_steps_spreads_the_cascade():
    from maskviewer.inference.sanity import cascade_depths

    assert cascade_depths(4, None) == [1, 2, 3, 4]
    assert cascade_depths(50, 5) == [1, 13, 26, 38, 50]
    assert cascade_depths(0, 3) == []


def test_check_reaches_the_method_and_stops_the_cascade(digits):
    from maskviewer.inference.sanity import sanity_check

    model, x = digits

    class Stop(Exception):
        pass

    calls = []

    def check():
        calls.append(len(calls))
        if len(calls) > 2:
            raise Stop

    with pytest.raises(Stop):
        sanity_check(model, x[:1], lambda m: method_maps(m, "smoothgrad", None), method="smoothgrad", check=check)
    assert len(calls) == 3
