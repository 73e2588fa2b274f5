"""Errors the user can act on. Their message is shown as is, so it says what was wrong and what to do."""


class MaskviewerError(Exception):
    """Base class for errors whose message is meant for the user."""


class ImageLoadError(MaskviewerError):
    """An image file could not be read."""


class ModelLoadError(MaskviewerError):
    """A model file could not be loaded."""


class UnsafeModelError(ModelLoadError):
    """A model contains Python code and safe mode refused it.

    Attributes
    ----------
    layers : list of str
        Names (and classes) of the layers that carry code, where they could be read.
    """

    def __init__(self, message: str, layers: list[str] | None = None) -> None:
        super().__init__(message)
        self.layers = list(layers or [])


class InputMappingError(MaskviewerError):
    """The image cannot be turned into the model's input."""


class InferenceError(MaskviewerError):
    """The model failed while running."""


class Cancelled(MaskviewerError):
    """A job was cancelled by the user or superseded by a newer request."""
