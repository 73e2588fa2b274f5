"""Real architectures for tests: keras.applications models (weights=None, small inputs) and
hand-built models carrying their own preprocessing.

A plain module of builder functions: each returns a Keras model (imported lazily, seeds fixed).
Tests build only what they need, once per session (see the fixtures in the tests using it).
:data:`EXPECTED` says, per builder, what the model expects as documented by its architecture:
the ``--scale`` it should be fed, and how plain Keras preprocesses a 0..255 image for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIZE = 64  # small, and at least the minimum every architecture below accepts


def _app(name: str, **kw):
    import keras

    keras.utils.set_random_seed(7)
    build = getattr(keras.applications, name)
    return build(weights=None, input_shape=(SIZE, SIZE, 3), classes=5, **kw)


def _app_at(name: str, size: int, **kw):
    """``keras.applications.<name>`` at ``size``×``size`` (the smallest it accepts, to build fast)."""
    import keras

    keras.utils.set_random_seed(7)
    build = getattr(keras.applications, name)
    return build(weights=None, input_shape=(size, size, 3), classes=5, **kw)


def efficientnet_b0():
    """Rescaling 1/255 + Normalization inside: fed 0..255 (the input-scale bug's example)."""
    return _app("EfficientNetB0")


def mobilenet_v3_small():
    """Rescaling 1/127.5 offset -1 inside: fed 0..255."""
    return _app("MobileNetV3Small")


def convnext_tiny():
    """A Normalization with 0..255 ImageNet statistics inside: fed 0..255 (32×32, ~2 s)."""
    return _app_at("ConvNeXtTiny", 32)


def resnet50():
    """"caffe" outside the model: BGR, 0..255 minus the ImageNet mean."""
    return _app("ResNet50")


def mobilenet_v2():
    """"tf" outside the model: -1..1 (width 0.35: the same layers, fewer weights)."""
    return _app("MobileNetV2", alpha=0.35)


def densenet121():
    """"torch" outside the model: 0..1, ImageNet mean/std."""
    return _app("DenseNet121")


def vgg16():
    """"caffe" outside the model (32×32: the smallest VGG accepts)."""
    return _app_at("VGG16", 32)


def vgg19():
    """"caffe" outside the model."""
    return _app_at("VGG19", 32)


def xception():
    """"tf" outside the model: -1..1 (71×71: the smallest Xception accepts)."""
    return _app_at("Xception", 71)


def inception_v3():
    """"tf" outside the model (75×75)."""
    return _app_at("InceptionV3", 75)


def inception_resnet_v2():
    """"tf" outside the model (75×75; ~7 s to build here, the slowest of the zoo)."""
    return _app_at("InceptionResNetV2", 75)


def nasnet_mobile():
    """"tf" outside the model (32×32; ~7 s to build here)."""
    return _app_at("NASNetMobile", 32)


def resnet50_v2():
    """"tf" outside the model: -1..1, unlike ResNet50's "caffe"."""
    return _app_at("ResNet50V2", 32)


def efficientnet_v2_b0():
    """Rescaling 1/255 + Normalization (ImageNet mean/std) inside: fed 0..255."""
    return _app_at("EfficientNetV2B0", 32)


def mobilenet_v3_small_bare():
    """:func:`mobilenet_v3_small` with ``include_preprocessing=False``: fed -1..1."""
    return _app("MobileNetV3Small", include_preprocessing=False)


def convnext_tiny_bare():
    """:func:`convnext_tiny` with ``include_preprocessing=False``: fed ImageNet mean/std."""
    return _app_at("ConvNeXtTiny", 32, include_preprocessing=False)


def efficientnet_v2_b0_bare():
    """:func:`efficientnet_v2_b0` with ``include_preprocessing=False``: fed ImageNet mean/std."""
    return _app_at("EfficientNetV2B0", 32, include_preprocessing=False)


#: a model built without its preprocessing layers -> (the same model with them, the --scale
#: that reproduces what those layers make of 0..255 pixels)
BARE = {
    "mobilenet_v3_small_bare": ("mobilenet_v3_small", "-1..1"),
    "convnext_tiny_bare": ("convnext_tiny", "mean=0.485,0.456,0.406,std=0.229,0.224,0.225"),
    "efficientnet_v2_b0_bare": ("efficientnet_v2_b0", "mean=0.485,0.456,0.406,std=0.229,0.224,0.225"),
}


def _head(inp, x, name: str):
    import keras

    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def rescale_functional():
    """Functional, Rescaling(1/255) after the Input: ``model.layers[0]`` is the InputLayer."""
    import keras

    keras.utils.set_random_seed(11)
    inp = keras.Input((32, 32, 3), name="image")
    return _head(inp, keras.layers.Rescaling(1 / 255, name="rescale")(inp), "rescaled")


def normalization_unit():
    """A Normalization adapted on 0..1 data (mean ~0.45, std ~0.25): fed 0..1."""
    import keras

    keras.utils.set_random_seed(12)
    inp = keras.Input((32, 32, 3), name="image")
    norm = keras.layers.Normalization(mean=[0.5, 0.45, 0.4], variance=[0.07, 0.06, 0.05], name="norm")
    return _head(inp, norm(inp), "normalised_unit")


def normalization_255():
    """A Normalization with 0..255 statistics behind a padding layer: fed 0..255."""
    import keras

    keras.utils.set_random_seed(13)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.ZeroPadding2D(1, name="pad")(inp)
    norm = keras.layers.Normalization(mean=[120.0, 115.0, 100.0], variance=[3600.0, 3500.0, 3400.0], name="norm")
    return _head(inp, norm(x), "normalised_255")


def sequential_tf_scale():
    """Sequential, Rescaling(1/127.5, offset=-1) first: fed 0..255."""
    import keras

    keras.utils.set_random_seed(14)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1, name="to_pm1"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="seq_scaled",
    )


def nested_rescale():
    """The Rescaling lives inside a nested model (a preprocessing block)."""
    import keras

    keras.utils.set_random_seed(15)
    block = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255, name="inner_rescale")], name="prep"
    )
    inp = keras.Input((32, 32, 3), name="image")
    return _head(inp, block(inp), "nested_rescaled")


def transfer_mobilenet_v2(base_name: str | None = None):
    """A transfer model: MobileNetV2 (no top) nested as the backbone, a new head after it.

    ``base_name`` renames the backbone, so only its layer names tell what it is.
    """
    import keras

    keras.utils.set_random_seed(16)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3),
                                          alpha=0.35)
    if base_name:
        base.name = base_name
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inp))
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="transfer")


def transfer_renamed():
    """:func:`transfer_mobilenet_v2` with the backbone renamed ``"backbone"``."""
    return transfer_mobilenet_v2("backbone")


def plain_cnn():
    """No preprocessing and no known architecture: nothing to read (0..1, to be checked)."""
    import keras

    keras.utils.set_random_seed(17)
    inp = keras.Input((32, 32, 3), name="image")
    return _head(inp, inp, "plain")


def _keras_pre(module: str) -> Callable[[np.ndarray], np.ndarray]:
    """``keras.applications.<module>.preprocess_input`` on a float32 copy of 0..255 pixels."""

    def pre(x: np.ndarray) -> np.ndarray:
        import keras

        fn = getattr(keras.applications, module).preprocess_input
        return np.asarray(fn(np.array(x, dtype=np.float32)))

    return pre


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) / np.float32(255.0)


def _as_is(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


#: builder name -> (the --scale the architecture documents, plain Keras preprocessing of 0..255
#: pixels, how the proposal is known: "read" from layers, "high" by name, "medium" by layers, "")
EXPECTED: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray], str]] = {
    "efficientnet_b0": ("0..255", _keras_pre("efficientnet"), "read"),
    "mobilenet_v3_small": ("0..255", _keras_pre("mobilenet_v3"), "read"),
    "resnet50": ("caffe", _keras_pre("resnet50"), "high"),
    "mobilenet_v2": ("-1..1", _keras_pre("mobilenet_v2"), "high"),
    "densenet121": ("mean=0.485,0.456,0.406,std=0.229,0.224,0.225", _keras_pre("densenet"), "high"),
    "rescale_functional": ("0..255", _as_is, "read"),
    "normalization_unit": ("0..1", _unit, "read"),
    "normalization_255": ("0..255", _as_is, "read"),
    "sequential_tf_scale": ("0..255", _as_is, "read"),
    "nested_rescale": ("0..255", _as_is, "read"),
    "transfer_mobilenet_v2": ("-1..1", _keras_pre("mobilenet_v2"), "high"),
    "transfer_renamed": ("-1..1", _keras_pre("mobilenet_v2"), "medium"),
    "plain_cnn": ("0..1", _unit, ""),
    "vgg16": ("caffe", _keras_pre("vgg16"), "high"),
    "vgg19": ("caffe", _keras_pre("vgg19"), "high"),
    "xception": ("-1..1", _keras_pre("xception"), "high"),
    "inception_v3": ("-1..1", _keras_pre("inception_v3"), "high"),
    "inception_resnet_v2": ("-1..1", _keras_pre("inception_resnet_v2"), "high"),
    "nasnet_mobile": ("-1..1", _keras_pre("nasnet"), "high"),
    "resnet50_v2": ("-1..1", _keras_pre("resnet_v2"), "high"),
    "convnext_tiny": ("0..255", _keras_pre("convnext"), "read"),
    "efficientnet_v2_b0": ("0..255", _keras_pre("efficientnet_v2"), "read"),
}

#: the keras.applications builders above (not the hand-built models), for the checks on
#: renamed models: a renamed one is known by its layer names only ("medium", shown "likely"),
#: unless it carries its preprocessing ("read" either way)
APPLICATIONS = ["efficientnet_b0", "mobilenet_v3_small", "resnet50", "mobilenet_v2", "densenet121",
                "vgg16", "vgg19", "xception", "inception_v3", "inception_resnet_v2", "nasnet_mobile",
                "resnet50_v2", "convnext_tiny", "efficientnet_v2_b0"]


# -- models whose defaults are easy to get wrong: variable input size, several outputs, 1×1
# maps after pooling (mobilenet_v3_small above), mixed precision, no graph

def inception_v3_variable():
    """InceptionV3 without its head on a ``(None, None, 3)`` input: accepts 75×75 and up."""
    import keras

    keras.utils.set_random_seed(8)
    return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))


def two_outputs():
    """Two heads on two branches: ``late`` (the last spatial layer) feeds only ``aux``."""
    import keras

    keras.utils.set_random_seed(9)
    inp = keras.Input((24, 24, 3), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="trunk")(inp)
    b = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="cls_conv")(a)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(keras.layers.GlobalAveragePooling2D(name="gap_cls")(b))
    c = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="late")(a)
    aux = keras.layers.Dense(2, name="aux")(keras.layers.GlobalAveragePooling2D(name="gap_aux")(c))
    return keras.Model(inp, [cls, aux], name="two_outputs")


def mixed_float16():
    """A model under the ``mixed_float16`` policy: layer outputs are float16."""
    import keras

    keras.utils.set_random_seed(10)
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inp = keras.Input((64, 64, 3), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same", activation="sigmoid", name="conv")(inp)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        out = keras.layers.Dense(2, dtype="float32", name="probs")(x)
        return keras.Model(inp, out, name="mixed")
    finally:
        keras.config.set_dtype_policy(old)


def nested_backbone():
    """A MobileNetV2-like nesting: the backbone's layers are ``backbone/...`` paths."""
    import keras

    keras.utils.set_random_seed(11)
    b_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="block_13_expand")(b_in)
    x = keras.layers.Conv2D(4, 3, padding="same", name="block_13_project")(x)
    backbone = keras.Model(b_in, x, name="mobilenetv2_1.00_96")
    inp = keras.Input((32, 32, 3), name="image")
    y = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inp))
    return keras.Model(inp, keras.layers.Dense(2, name="probs")(y), name="nested_backbone")


def variable_cnn():
    """A small ``(None, None, 3)`` model: a 3×3 VALID stride-2 convolution, then pooling."""
    import keras

    keras.utils.set_random_seed(12)
    inp = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv2d")(inp)
    x = keras.layers.Conv2D(4, 5, name="conv_valid")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(2, name="probs")(x), name="variable_cnn")
