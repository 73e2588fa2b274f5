"""``MaskedConv2D``: a Conv2D whose kernel is multiplied by a spatial mask given as an input.

Importing this module registers the layer with Keras (``"maskviewer>MaskedConv2D"``), so models
using it save and load like any other.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="maskviewer")
class MaskedConv2D(keras.layers.Conv2D):
    """A 2-D convolution taking ``(x, mask)`` whose kernel is multiplied by the mask.

    The mask has the kernel's spatial shape and is broadcast over input and output channels:
    the effective kernel is ``kernel * mask[:, :, None, None]``. A mask of shape
    ``(kh, kw)`` applies to the whole batch; a batched mask ``(batch, kh, kw)`` (e.g. from a
    ``keras.Input((kh, kw))``) gives each sample its own masked kernel. Everything else
    (filters, strides, padding, activation, bias) is :class:`keras.layers.Conv2D`'s, and so is
    the configuration, so the layer serialises with ``get_config``.

    Examples
    --------
    >>> x = keras.Input((32, 32, 3))
    >>> m = keras.Input((3, 3))
    >>> y = MaskedConv2D(8, 3, padding="same")([x, m])
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.input_spec = None  # two inputs: the base class's spec only describes x

    def build(self, input_shape):
        x_shape, mask_shape = self._split_shapes(input_shape)
        super().build(x_shape)
        self.input_spec = None  # two inputs: the base class's spec only describes x
        kh, kw = self.kernel_size
        if mask_shape is not None and tuple(mask_shape[-2:]) != (kh, kw) and None not in mask_shape[-2:]:
            raise ValueError(
                f"MaskedConv2D: the mask's last two dimensions {tuple(mask_shape[-2:])} must equal "
                f"the kernel size {(kh, kw)}."
            )

    @staticmethod
    def _split_shapes(input_shape):
        if isinstance(input_shape, list | tuple) and input_shape and isinstance(
            input_shape[0], list | tuple
        ):
            return tuple(input_shape[0]), tuple(input_shape[1])
        return tuple(input_shape), None  # built from x alone (e.g. by a summary tool)

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        return super().compute_output_shape(x_shape)

    def _finish(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, self.filters))
                              if self.data_format == "channels_last"
                              else ops.reshape(self.bias, (1, self.filters, 1, 1)))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def call(self, inputs):
        x, mask = inputs
        mask = ops.cast(mask, self.kernel.dtype)
        if len(mask.shape) == 2:
            kernel = self.kernel * mask[:, :, None, None]
            return self._finish(self.convolution_op(x, kernel))
        if len(mask.shape) != 3:
            raise ValueError(
                f"MaskedConv2D: a mask of shape {tuple(mask.shape)}; expected (kh, kw) or "
                "(batch, kh, kw)."
            )
        kernel = self.kernel

        def one(args):
            xi, mi = args
            return self.convolution_op(xi[None], kernel * mi[:, :, None, None])[0]

        return self._finish(ops.map(one, (x, mask)))
