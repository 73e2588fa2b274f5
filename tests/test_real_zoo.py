"""Real architectures are fed what they expect by default: the preprocessing read from the model
(or its documented keras.applications convention) gives the proposed mapping, and an export
with no mapping options equals plain Keras fed the documented preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from maskviewer.cli import main
from maskviewer.cli.export_items import image_mappings
from maskviewer.cli.export_options import build_parser
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import prepare_input, propose_mapping, read_scale, scale_text
from maskviewer.io.export import iter_files, read_manifest
from tests import real_zoo

ALL = list(real_zoo.EXPECTED)
#: saved and exported through the command line (small files; the big backbones are compared
#: in memory through the same functions the export calls, to keep this file quick)
SAVED = ["rescale_functional", "normalization_unit", "nested_rescale", "sequential_tf_scale", "plain_cnn"]


@pytest.fixture(scope="session")
def real_models():
    """Builder name -> ``(model, loaded description)``, each built once per session, on demand."""
    from maskviewer.inference.describe import describe_model

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            model = getattr(real_zoo, name)()
            cache[name] = (model, describe_model(model, f"{name}.keras").info)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def saved_real(tmp_path_factory, real_models):
    """Builder name -> ``(model file, 8-bit RGB test image file)``, saved once per session."""
    folder = tmp_path_factory.mktemp("real_zoo")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            model, _ = real_models(name)
            path = folder / f"{name}.keras"
            model.save(path)
            h, w = model.input_shape[1:3]
            pixels = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = folder / f"{name}.png"
            Image.fromarray(pixels).save(image)
            cache[name] = (path, image, pixels)
        return cache[name]

    return get


def _plan(**options):
    """What :func:`image_mappings` reads of an export plan: the mapping options and mask feed."""
    return SimpleNamespace(resize=options.get("resize"), scale=options.get("scale"), mask_feed=None)


@pytest.mark.parametrize("name", ALL)
def test_the_proposal_is_the_documented_preprocessing(name, real_models):
    """Each model gets the scaling its architecture documents, with the stated certainty."""
    want, _, confidence = real_zoo.EXPECTED[name]
    _, info = real_models(name)
    spec = info.inputs[0]
    pre = info.preprocessing.get(spec.name)
    mapping = propose_mapping(spec.shape, None, info.expects_0_255, pre)
    assert scale_text(mapping) == want
    proposal = read_scale(pre) if pre is not None else None
    assert (proposal.confidence if proposal else "") == confidence


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "resnet50", "mobilenet_v2",
                                  "densenet121", "transfer_renamed", "normalization_255", "vgg16", "vgg19",
                                  "xception", "inception_v3", "inception_resnet_v2", "nasnet_mobile",
                                  "resnet50_v2", "convnext_tiny", "efficientnet_v2_b0"])
def test_default_inputs_equal_keras_preprocess_input(name, real_models):
    """The export's own mapping (no options) gives the model what preprocess_input gives it."""
    model, info = real_models(name)
    _, keras_pre, _ = real_zoo.EXPECTED[name]
    h, w = model.input_shape[1:3]
    pixels = np.random.default_rng(4).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = ImageData(pixels)
    spec = info.inputs[0]
    ours, _ = prepare_input(image, image_mappings(info, image, _plan())[spec.name], spec.shape)
    expected = keras_pre(pixels)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)
    got = np.asarray(model(ours[None], training=False))
    np.testing.assert_allclose(got, np.asarray(model(expected[None], training=False)), rtol=1e-5, atol=1e-6)


def test_efficientnet_without_the_fix_would_be_fed_0_1(real_models):
    """The bug: ``model.layers[0]`` is the InputLayer, so 1/255 scaling went unnoticed."""
    model, info = real_models("efficientnet_b0")
    assert type(model.layers[0]).__name__ == "InputLayer"
    assert info.expects_0_255
    steps = info.preprocessing[info.inputs[0].name].steps
    assert [s.kind for s in steps] == ["rescaling", "normalization"]
    assert steps[0].scale == pytest.approx([1 / 255])


def _predictions(out: Path) -> np.ndarray:
    manifest = read_manifest(out / "manifest.json")
    for entry in manifest["artifacts"]:
        if entry["kind"] == "prediction":
            for _, rec in iter_files(entry):
                if rec["path"].endswith(".npy"):
                    arr = np.load(out / rec["path"])
                    return arr[rec["row"]] if "row" in rec else arr
    raise AssertionError("no prediction array in the manifest")


def _export(argv: list, capsys) -> dict:
    rc = main(["export", *[str(a) for a in argv], "--format", "npy", "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    out = Path(argv[argv.index("--out") + 1])
    return read_manifest(out / "manifest.json")


@pytest.mark.parametrize("name", SAVED)
def test_export_without_options_equals_keras(name, saved_real, real_models, tmp_path, capsys):
    """``maskviewer export`` with no mapping options: predictions of the documented input."""
    path, image, pixels = saved_real(name)
    model, _ = real_models(name)
    manifest = _export([image, "--model", path, "--out", tmp_path / "out", "--layer", "conv"], capsys)
    want, keras_pre, _ = real_zoo.EXPECTED[name]
    expected = np.asarray(model(keras_pre(pixels)[None], training=False))[0]
    np.testing.assert_allclose(_predictions(tmp_path / "out"), expected, rtol=1e-5, atol=1e-6)
    settings = manifest["settings"]  # the mapping used is recorded though none was given
    assert settings["scale"] == want and settings["resize"] == "stretch"
    assert settings["given"] == {"resize": None, "scale": None}
    (recorded,) = settings["inputs"].values()
    assert recorded["scale_option"] == want and recorded["read_from_model"].startswith("Read from the model")


@pytest.mark.parametrize(("name", "options"), [("rescale_functional", []),
                                                ("plain_cnn", ["--scale", "imagenet", "--resize", "fit"])])
def test_manifests_replay(name, options, saved_real, tmp_path, capsys):
    """An export re-run from its manifest's recorded settings writes the same arrays."""
    path, image, _ = saved_real(name)
    big = tmp_path / "big.png"  # a different size, so the resize mode matters
    Image.open(image).resize((45, 37)).save(big)
    first = _export([big, "--model", path, "--out", tmp_path / "a", "--layer", "conv", *options], capsys)
    s = first["settings"]
    again = [big, "--model", path, "--out", tmp_path / "b", "--resize", s["resize"], "--scale", s["scale"]]
    for layer in s["layers"]:
        again += ["--layer", layer]
    _export(again, capsys)
    for a in sorted((tmp_path / "a" / "arrays").glob("*.npy")):
        np.testing.assert_array_equal(np.load(a), np.load(tmp_path / "b" / "arrays" / a.name))
    assert sorted(p.name for p in (tmp_path / "a" / "arrays").glob("*.npy")) == sorted(
        p.name for p in (tmp_path / "b" / "arrays").glob("*.npy"))


def test_info_says_what_was_read(saved_real, capsys):
    path, _, _ = saved_real("rescale_functional")
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Read from the model: Rescaling 1/255 after the input → feeding 0 … 255" in text
    assert "resize stretch, scale 0..255" in text
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["proposed_mappings"]["image"]["scale"] == "0..255"
    assert "Rescaling 1/255" in data["proposed_mappings"]["image"]["why"]
    step = data["preprocessing"]["image"]["steps"][0]
    assert step["kind"] == "rescaling" and step["layer"] == "rescale"


def test_info_names_the_architecture_of_a_transfer_model(real_models, capsys):
    from maskviewer.cli.info import print_info, proposed_mappings

    _, info = real_models("transfer_mobilenet_v2")
    pre = info.preprocessing["image"]
    assert pre.architecture == "MobileNetV2" and pre.convention == "tf" and pre.confidence == "high"
    proposed = proposed_mappings(info)["image"]
    assert proposed["scale"] == "-1..1" and "(sure)" in proposed["why"]
    print_info(info)
    assert "recognised as keras.applications MobileNetV2 by its model name" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "scale"), [
    (["--scale", "-1..1"], "-1..1"),
    (["--scale=-1..1"], "-1..1"),
    (["--scale", "0..1"], "0..1"),
    (["--scale", "0..255"], "0..255"),
    (["--scale", "imagenet"], "mean=0.485,0.456,0.406,std=0.229,0.224,0.225"),
    (["--scale", "mean=0.5,std=0.25"], "mean=0.5,std=0.25"),
    (["--scale", "caffe"], "caffe"),
])
def test_scale_option_forms(argv, scale):
    args = build_parser().parse_args(["x.png", "-m", "m.keras", "-o", "out", *argv])
    assert args.scale == scale


def test_a_bad_scale_is_explained(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["x.png", "-m", "m.keras", "-o", "out", "--scale", "-2..2"])
    assert exc.value.code == 2
    assert "imagenet" in capsys.readouterr().err


def test_the_input_panel_says_what_was_read(qtbot, real_models):
    from maskviewer.gui.inputs import initial_mappings
    from maskviewer.gui.mapping_panel import MappingPanel

    _, info = real_models("rescale_functional")
    mappings = initial_mappings(info, None, {})
    assert mappings["image"].scale == "0..255"
    panel = MappingPanel()
    qtbot.addWidget(panel)
    panel.set_model(info, mappings)
    text = panel.editors["image"].read.text()
    assert text == "Read from the model: Rescaling 1/255 after the input → feeding 0 … 255"
    assert panel.editors["image"].mapping().scale == "0..255"


def test_a_loaded_sequential_shows_every_step(tmp_path):
    """A Sequential read back from a file repeats its node chain: every step is still read."""
    import keras

    from maskviewer.inference.describe import describe_model

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255, name="unit"),
                              keras.layers.Normalization(mean=[0.4] * 3, variance=[0.05] * 3, name="norm"),
                              keras.layers.Conv2D(2, 3, name="conv")])
    model.save(tmp_path / "s.keras")
    info = describe_model(keras.saving.load_model(tmp_path / "s.keras"), "s.keras").info
    (pre,) = info.preprocessing.values()
    assert [s.layer for s in pre.steps] == ["unit", "norm"]
    assert read_scale(pre).scale == "0..255"


@pytest.mark.parametrize("name", real_zoo.APPLICATIONS)
def test_a_renamed_application_is_known_by_its_layer_names(name, real_models):
    """Renamed (as a fine-tuned model often is), an architecture is still recognised by its
    layer names: the same scaling, said to be "likely"; what the model carries is read as before."""
    from maskviewer.cli.info import proposed_mappings
    from maskviewer.inference.describe import describe_model

    model, info = real_models(name)
    want, _, confidence = real_zoo.EXPECTED[name]
    original = model.name
    model.name = "my_classifier"
    try:
        renamed = describe_model(model, "my_classifier.keras").info
    finally:
        model.name = original
    spec = renamed.inputs[0]
    pre = renamed.preprocessing[spec.name]
    proposed = proposed_mappings(renamed)[spec.name]  # what `maskviewer info --json` prints
    assert proposed["scale_option"] == want
    if confidence == "read":
        assert read_scale(pre).confidence == "read" and proposed["why"].startswith("Read from the model: ")
        return
    assert pre.confidence == "medium" and pre.recognised_by == "layer names"
    assert pre.architecture == info.preprocessing[spec.name].architecture
    assert "by its layer names (likely)" in proposed["why"]


_PREPROCESSING_LAYERS = ("Rescaling", "Normalization")


@pytest.mark.parametrize("bare", list(real_zoo.BARE))
def test_built_without_its_preprocessing_layers(bare, real_models):
    """An architecture that preprocesses inside, built with ``include_preprocessing=False``, is
    fed what the left-out layers would make, not 0..255: the same model with those layers (its
    weights copied) on raw pixels gives what the bare one gives on the proposed input."""
    import keras

    from maskviewer.cli.info import proposed_mappings

    full_name, want = real_zoo.BARE[bare]
    model, info = real_models(bare)
    full, _ = real_models(full_name)
    spec = info.inputs[0]
    proposed = proposed_mappings(info)[spec.name]
    assert proposed["scale_option"] == want
    assert "built without its preprocessing layers" in proposed["why"]
    assert not any(type(layer).__name__ in _PREPROCESSING_LAYERS for layer in model.layers)

    h, w = model.input_shape[1:3]
    pixels = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = ImageData(pixels)
    ours, _ = prepare_input(image, image_mappings(info, image, _plan())[spec.name], spec.shape)
    raw = pixels[None].astype(np.float32)
    last = [layer for layer in full.layers if type(layer).__name__ in _PREPROCESSING_LAYERS][-1]
    by_keras = np.asarray(keras.Model(full.input, last.output)(raw))[0]
    np.testing.assert_allclose(ours, by_keras, rtol=1e-5, atol=1e-5)

    rest = [layer for layer in full.layers if type(layer).__name__ not in (*_PREPROCESSING_LAYERS, "InputLayer")]
    mine = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert [type(a).__name__ for a in rest] == [type(b).__name__ for b in mine]
    for a, b in zip(rest, mine, strict=True):
        b.set_weights(a.get_weights())
    np.testing.assert_allclose(np.asarray(model(ours[None], training=False)),
                               np.asarray(full(raw, training=False)), rtol=1e-4, atol=1e-5)
