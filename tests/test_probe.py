"""The activation probe: one pass, every kind of model, equal to plain Keras; reductions equal numpy."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo

RTOL, ATOL = 1e-5, 1e-6


def _inputs(model, rng):
    """Batched random inputs packed as the model's call expects them."""
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return {k: rng.random((1, *t.shape[1:]), dtype=np.float32) for k, t in struct.items()}
    if isinstance(struct, list) and len(struct) > 1:
        return [rng.random((1, *t.shape[1:]), dtype=np.float32) for t in struct]
    return rng.random((1, *model.inputs[0].shape[1:]), dtype=np.float32)


def _host(model):
    from maskviewer.inference.loading import describe_model
    from maskviewer.inference.runner import ModelHost

    host = ModelHost()
    host.loaded = describe_model(model, f"{model.name}.keras")
    return host


def list_inputs():
    import keras

    keras.utils.set_random_seed(8)
    a = keras.Input((12, 12, 3), name="left")
    b = keras.Input((12, 12, 1), name="right")
    x = keras.layers.Concatenate(name="cat")(
        [keras.layers.Conv2D(3, 3, name="conv_l")(a), keras.layers.Conv2D(2, 3, name="conv_r")(b)]
    )
    out = keras.layers.Dense(2, name="out")(keras.layers.GlobalMaxPooling2D(name="gmp")(x))
    return keras.Model([a, b], out, name="two_list_inputs")


GRAPH_MODELS = {
    "sequential": model_zoo.sequential,
    "three_named_inputs_two_outputs": model_zoo.three_inputs,
    "two_list_outputs": model_zoo.two_outputs,
    "list_inputs": list_inputs,
    "custom_layer": model_zoo.custom_layer,
}


def _input_struct(model):
    """The model's symbolic inputs as its call takes them (a single tensor, a list or a dict)."""
    struct = getattr(model, "_functional", None)
    struct = (struct or model)._inputs_struct
    return struct[0] if isinstance(struct, list) and len(struct) == 1 else struct


def _reference(model, path, x):
    """``keras.Model(inputs, layer.output)`` on the same input; nested: the inner model's own graph."""
    import keras

    parts = path.split("/")
    if len(parts) == 1:
        layer = model.get_layer(parts[0])
        ref = keras.Model(_input_struct(model), layer.output)
        return np.asarray(ref(x, training=False))
    outer = model.get_layer(parts[0])
    inner = outer.get_layer(parts[1])
    # the nested model's input is the outer input here (tests/model_zoo.nested)
    return np.asarray(keras.Model(_input_struct(outer), inner.output)(x, training=False))


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_graph_models_one_pass_equals_keras_model(name, rng, keras_mod):
    from maskviewer.inference.probe import ActivationProbe

    model = GRAPH_MODELS[name]()
    probe = ActivationProbe(model)
    x = _inputs(model, rng)
    paths = [p for p in probe.paths() if type(probe.layer(p)).__name__ != "InputLayer"]
    captured, outputs = probe.forward(x, paths)
    assert set(captured) == set(paths)
    for p in paths:
        np.testing.assert_allclose(np.asarray(captured[p]), _reference(model, p, x), rtol=RTOL, atol=ATOL, err_msg=p)
    # the model's own outputs come out of the same pass
    ref_out = model(x, training=False)
    for ours, ref in zip(keras_mod.tree.flatten(outputs), keras_mod.tree.flatten(ref_out), strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=RTOL, atol=ATOL)
    # and the traced (compiled) pass gives the same numbers
    compiled = probe.run(x, paths)
    for p in paths:
        np.testing.assert_allclose(np.asarray(compiled[p]), np.asarray(captured[p]), rtol=RTOL, atol=ATOL)


def test_nested_model_inner_layers_in_the_same_pass(rng):
    from maskviewer.inference.probe import ActivationProbe

    model = model_zoo.nested()
    probe = ActivationProbe(model)
    assert probe.paths() == ["img", "backbone", "backbone/inner_conv", "gap", "probs"]
    x = _inputs(model, rng)
    inner = model.get_layer("backbone").get_layer("inner_conv")
    calls = []
    original = inner.call

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    inner.call = counting
    try:
        captured, out = probe.forward(x, ["backbone/inner_conv", "backbone", "probs"])
    finally:
        del inner.call
    assert len(calls) == 1, "the inner layer must run once, in the outer pass"
    ref_inner = np.asarray(inner(np.asarray(x)))  # the layer's own call on the nested model's input
    np.testing.assert_allclose(np.asarray(captured["backbone/inner_conv"]), ref_inner, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(captured["backbone/inner_conv"]), _reference(model, "backbone/inner_conv", x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(captured["backbone"]), _reference(model, "backbone", x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(out), np.asarray(model(x)), rtol=RTOL, atol=ATOL)


def test_subclassed_model_captured_during_the_call_and_restored(rng):
    from maskviewer.inference.probe import ActivationProbe

    model = model_zoo.subclassed()
    probe = ActivationProbe(model)
    assert probe.kind == "subclassed"
    assert probe.paths() == ["conv", "gate", "pool", "head"]
    x = rng.random((1, 20, 20, 3), dtype=np.float32)
    captured, out = probe.forward(x, probe.paths())
    # the layers' own calls, chained as the model's call does
    conv = np.asarray(model.conv(x))
    gate = np.asarray(model.gate(conv))
    pooled = np.asarray(model.pool(conv * gate))
    head = np.asarray(model.head(pooled))
    for path, ref in (("conv", conv), ("gate", gate), ("pool", pooled), ("head", head)):
        np.testing.assert_allclose(np.asarray(captured[path]), ref, rtol=RTOL, atol=ATOL, err_msg=path)
    np.testing.assert_allclose(np.asarray(out), np.asarray(model(x)), rtol=RTOL, atol=ATOL)
    for layer in (model.conv, model.gate, model.pool, model.head):
        assert "call" not in layer.__dict__, "wrapped call left on the layer"
    compiled = probe.run(x, ["conv", "gate"])  # traced with the wrappers in place
    np.testing.assert_allclose(np.asarray(compiled["gate"]), gate, rtol=RTOL, atol=ATOL)
    assert "call" not in model.gate.__dict__


def test_probe_does_not_change_the_model(rng):
    from maskviewer.inference.probe import ActivationProbe, Reduction

    model = model_zoo.nested()
    x = _inputs(model, rng)
    before = np.asarray(model(x))
    weights = [w.copy() for w in model.get_weights()]
    all_layers = [model.get_layer("backbone").get_layer("inner_conv"), *model.layers]
    nodes = {layer.name: len(layer._inbound_nodes) for layer in all_layers}
    probe = ActivationProbe(model)
    probe.forward(x, probe.paths()[1:])
    probe.reduce_all(x, ["backbone", "backbone/inner_conv"], Reduction("max"))
    assert {layer.name: len(layer._inbound_nodes) for layer in all_layers} == nodes
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(model(x)), before)


def _numpy_reduction(a, method, k=5, channel=0, weights=None):
    """The reference: the same reductions written in numpy on the full activation (H, W, C)."""
    means = a.mean(axis=(0, 1))
    scores = means if weights is None else (a * weights[:, :, None]).sum(axis=(0, 1)) / weights.sum()
    if method == "mean":
        return a.mean(axis=-1), None, scores
    if method == "max":
        return a.max(axis=-1), None, scores
    if method == "topk":
        order = np.argsort(-scores, kind="stable")[:k]
        return a[:, :, order].mean(axis=-1), order, scores
    return a[:, :, channel], None, scores


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("method", ["mean", "max", "topk", "channel", "grid"])
def test_reductions_equal_numpy(method, compiled, rng):
    from maskviewer.inference.probe import ActivationProbe, Reduction

    model = model_zoo.three_inputs()
    probe = ActivationProbe(model)
    x = _inputs(model, rng)
    full = np.asarray(probe.forward(x, ["merge"])[0]["merge"])[0]
    red = Reduction(method, k=4, channel=7)
    if compiled:
        lm = probe.reduce_all(x, ["merge", "attend"], red)["merge"]
    else:
        lm = probe.reduce(x, "merge", red)
    ref_map, order, scores = _numpy_reduction(full, method, 4, 7)
    assert lm.spatial and lm.shape == (24, 24, 12) and lm.method == method
    np.testing.assert_allclose(lm.map, ref_map, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lm.channel_means, full.mean(axis=(0, 1)), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lm.rank_scores, scores, rtol=RTOL, atol=ATOL)
    assert lm.value_range == (pytest.approx(full.min()), pytest.approx(full.max()))
    if method == "topk":
        np.testing.assert_array_equal(lm.channels, order)
        np.testing.assert_allclose(lm.maps, np.moveaxis(full[:, :, order], -1, 0), rtol=RTOL, atol=ATOL)
    if method == "grid":
        np.testing.assert_allclose(lm.maps, np.moveaxis(full, -1, 0), rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(lm.channels, np.arange(12))


def test_rank_inside_mask_equals_numpy(rng):
    from maskviewer.core.heatmap import mask_to_grid
    from maskviewer.core.mapping import Frame
    from maskviewer.inference.probe import ActivationProbe, Reduction

    model = model_zoo.two_outputs()
    probe = ActivationProbe(model)
    x = _inputs(model, rng)
    full = np.asarray(probe.forward(x, ["conv2"])[0]["conv2"])[0]  # (8, 8, 8)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 30:60] = True
    frame = Frame(0, 0, 64, 64)
    lm = probe.reduce(x, "conv2", Reduction("topk", k=3), weights=lambda h, w: mask_to_grid(mask, frame, h, w))
    weights = mask_to_grid(mask, frame, 8, 8)
    ref_map, order, scores = _numpy_reduction(full, "topk", 3, weights=weights)
    np.testing.assert_allclose(lm.rank_scores, scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(lm.channels, order)
    np.testing.assert_allclose(lm.map, ref_map, rtol=RTOL, atol=ATOL)
    # an empty mask falls back to the whole map, and says so
    lm = probe.reduce(x, "conv2", Reduction("topk", k=3), weights=np.zeros((8, 8), np.float32))
    np.testing.assert_allclose(lm.rank_scores, full.mean(axis=(0, 1)), rtol=RTOL, atol=ATOL)
    assert any("mask" in n for n in lm.notes)


def test_non_spatial_layers_are_vectors(rng):
    from maskviewer.inference.probe import ActivationProbe, Reduction

    model = model_zoo.sequential()
    probe = ActivationProbe(model)
    x = _inputs(model, rng)
    lm = probe.reduce(x, "gap", Reduction("mean"))
    assert not lm.spatial and lm.map is None and lm.shape == (6,)
    ref = np.asarray(probe.forward(x, ["gap"])[0]["gap"])[0]
    np.testing.assert_allclose(lm.vector, ref, rtol=RTOL, atol=ATOL)


def test_activation_cache_is_byte_capped_and_reused(rng):
    from maskviewer.inference.probe import ActivationProbe, tensor_nbytes

    model = model_zoo.three_inputs()
    probe = ActivationProbe(model, max_cache_bytes=24 * 24 * 12 * 4 + 24 * 24 * 4 * 4)
    x = _inputs(model, rng)
    paths = ["stream_rgb", "stream_a", "stream_b", "merge", "attend", "attention"]
    for p in paths:
        probe.activations(x, [p])
        assert probe.cache.nbytes <= probe.cache.max_bytes
    assert probe.cache.evictions > 0 and probe.cache.peak_bytes <= probe.cache.max_bytes
    # the latest one is served from the cache: the same tensor, no new pass
    cached = probe.activations(x, ["attention"])["attention"]
    assert probe.activations(x, ["attention"])["attention"] is cached
    # a new input is a new key
    other = {k: v + 1 for k, v in x.items()}
    assert probe.activations(other, ["attention"])["attention"] is not cached
    # a tensor bigger than the cap is used but not kept
    tiny = ActivationProbe(model, max_cache_bytes=100)
    act = tiny.activations(x, ["merge"])["merge"]
    assert tensor_nbytes(act) > 100 and len(tiny.cache) == 0


def test_clear_errors_for_what_cannot_be_probed(rng, tmp_path, model_files, keras_mod):
    from maskviewer.inference.probe import ActivationProbe, ProbeError, Reduction, get_probe
    from maskviewer.inference.runner import ModelHost

    model = model_zoo.three_inputs()
    probe = ActivationProbe(model)
    x = _inputs(model, rng)
    with pytest.raises(ProbeError, match="no layer 'nope'"):
        probe.forward(x, ["nope"])
    with pytest.raises(ProbeError, match="channel 12 does not exist"):
        probe.reduce(x, "merge", Reduction("channel", channel=12))
    with pytest.raises(ProbeError, match="single-channel"):
        probe.reduce(x, "merge", Reduction("attention"))
    # a layer that is in the model but not on the path from its inputs
    class Skips(keras_mod.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.used = keras_mod.layers.Dense(2, name="used")
            self.spare = keras_mod.layers.Dense(2, name="spare")  # defined, never called

        def build(self, shape):
            self.used.build(shape)
            self.spare.build(shape)

        def call(self, x):
            return self.used(x)

    skips = Skips()
    skips(np.zeros((1, 3), np.float32))
    with pytest.raises(ProbeError, match="spare did not run"):
        ActivationProbe(skips).forward(np.zeros((1, 3), np.float32), ["spare"])
    # a SavedModel has no layers
    folder = tmp_path / "exported"
    keras_mod.saving.load_model(model_files["rgb"], compile=False).export(str(folder))
    host = ModelHost()
    host.load(folder, safe_mode=False)  # a SavedModel is a program: it runs only on consent
    with pytest.raises(ProbeError, match="cannot be probed"):
        get_probe(host)
    with pytest.raises(ProbeError, match="no layers to probe"):
        ActivationProbe(host.model)


def test_layer_list_marks_spatial_and_attention_layers():
    from maskviewer.inference.probe import describe_layers

    entries = {e.path: e for e in describe_layers(_host(model_zoo.three_inputs()))}
    assert entries["attention"].attention and entries["seg"].attention
    assert not entries["merge"].attention and entries["merge"].spatial
    assert not entries["gap"].spatial and entries["gap"].shape == (None, 12)

    entries = {e.path: e for e in describe_layers(_host(model_zoo.custom_layer()))}
    assert entries["gate"].attention and not entries["gate_logits"].attention
    assert entries["scale"].class_name == "ChannelScale" and entries["scale"].spatial

    # sub-classed: shapes are measured by a run
    entries = {e.path: e for e in describe_layers(_host(model_zoo.subclassed()))}
    assert entries["conv"].shape == (None, 20, 20, 6) and entries["conv"].spatial
    assert entries["gate"].attention
    assert entries["head"].shape == (None, 4) and not entries["head"].spatial
