"""Token layers for the probe: the model's patch grid and ``(B, N, C)`` tokens reshaped to a grid.

The patch grid is read from the model (the grid rules themselves are in
:mod:`maskviewer.core.tokens`):

1. a layer with a ``patch_size`` attribute (the keras.io ``Patches`` layer, keras-hub's
   patching layers): the image input's size divided by it;
2. otherwise the last layer with a spatial ``(B, h, w, C)`` output before the first token
   layer (a patch-embedding ``Conv2D`` with stride = kernel, or a CNN stem of a hybrid,
   followed by a ``Reshape``): its ``h × w``.

Only models with an image input (``(B, H, W, C)``) have token layers: a sequence model's
``(B, N, C)`` outputs are not maps. The reshape runs with ``keras.ops`` on the device.
"""

from __future__ import annotations

from typing import Any

from maskviewer.core.tokens import TokenGrid, TokenGridError, TokenOverride, detect_grid


def image_hw(model: Any) -> tuple[int, int] | None:
    """The first image input's static ``(H, W)`` (``(0, 0)`` when its size is free), or None
    when the model has no ``(B, H, W, C)`` input."""
    for t in list(getattr(model, "inputs", None) or []):
        shape = tuple(getattr(t, "shape", ()) or ())
        if len(shape) == 4:
            h, w = shape[1], shape[2]
            return (int(h or 0), int(w or 0))
    return None


def _as_pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _all_layers(model: Any) -> list[Any]:
    try:
        return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]
    except (AttributeError, TypeError):
        return list(getattr(model, "layers", None) or [])


def _static_shape(layer: Any) -> tuple | None:
    from maskviewer.inference.describe import _layer_output_shape

    shape = _layer_output_shape(layer)
    if shape is None or (shape and isinstance(shape[0], tuple)):
        return None
    return shape


def model_grid(model: Any, hw: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The model's patch grid for an image of size ``hw`` (the model's own size by default)."""
    hw = hw or image_hw(model)
    layers = _all_layers(model)
    if hw and min(hw) > 0:
        for layer in layers:
            patch = _as_pair(getattr(layer, "patch_size", None))
            if patch is not None:
                return (hw[0] // patch[0], hw[1] // patch[1])
    last_spatial = None
    for layer in layers:
        shape = _static_shape(layer)
        if shape is None:
            continue
        if len(shape) == 4 and shape[1] and shape[2]:
            last_spatial = (int(shape[1]), int(shape[2]))
        elif len(shape) == 3 and last_spatial is not None and type(layer).__name__ != "InputLayer":
            return last_spatial
    return None


class TokenGrids:
    """The token grids of one model's layers: found once per token count, with the user's override.

    Parameters
    ----------
    model : keras.Model
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.hw = image_hw(model)
        self._model_grid: tuple[int, int] | None | bool = False  # False: not read yet
        self.override: TokenOverride | None = None

    @property
    def has_image_input(self) -> bool:
        return self.hw is not None

    def patch_grid(self) -> tuple[int, int] | None:
        if self._model_grid is False:
            try:
                self._model_grid = model_grid(self.model, self.hw)
            except Exception:  # an unusual model: the grid is then found from N
                self._model_grid = None
        return self._model_grid  # type: ignore[return-value]

    def grid_for(
        self, shape: tuple | None, hw: tuple[int, int] | None = None, *, strict: bool = True
    ) -> TokenGrid | None:
        """The grid of a layer with output ``shape`` (batch axis included), or None.

        ``hw`` is the actual image size when the model's own is free. The user's override
        must fit the layer (:class:`~maskviewer.core.tokens.TokenGridError` otherwise); with
        ``strict`` False a layer it does not fit (another sequence: the patch tokens before
        the class token is added) gets the grid found without it.
        """
        if shape is None or len(shape) != 3 or shape[1] is None or not self.has_image_input:
            return None
        hw = self.hw if self.hw and min(self.hw) > 0 else hw
        n, grid = int(shape[1]), self.patch_grid()
        try:
            return detect_grid(n, model_grid=grid, image_hw=hw, override=self.override)
        except TokenGridError:
            if strict:
                raise
            return detect_grid(n, model_grid=grid, image_hw=hw)


def to_grid(x: Any, grid: TokenGrid) -> Any:
    """``(B, N, C)`` tokens -> ``(B, grid_h, grid_w, C)`` on the device (extra tokens dropped)."""
    from keras import ops

    c = int(x.shape[-1])
    return ops.reshape(x[:, grid.extra:, :], (-1, grid.grid_h, grid.grid_w, c))


def input_hw(inputs: Any) -> tuple[int, int] | None:
    """The ``(H, W)`` of the first 4-D array among packed model inputs."""
    import keras

    for t in keras.tree.flatten(inputs):
        shape = tuple(getattr(t, "shape", ()) or ())
        if len(shape) == 4:
            return (int(shape[1]), int(shape[2]))
    return None
