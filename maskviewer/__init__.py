"""maskviewer: see what a Keras model does with an image and a mask."""

__version__ = "0.1.0"
