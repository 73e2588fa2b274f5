"""Importing Keras and finding the device: the only backend-specific code besides gradients.

Keras runs on TensorFlow by default; with ``KERAS_BACKEND=jax`` the same code runs on JAX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DeviceInfo:
    backend: str  # "tensorflow" or "jax"
    kind: str  # "GPU" or "CPU"
    name: str  # e.g. "NVIDIA H100 80GB HBM3" or "CPU"
    version: str = ""

    def describe(self) -> str:
        where = f"GPU: {self.name}" if self.kind == "GPU" else "CPU"
        return f"{where} · {self.backend} {self.version}".strip()


def backend_name() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def init_backend() -> DeviceInfo:
    """Import the backend and Keras, enable GPU memory growth, and name the device.

    Must run before the first tensor is created (memory growth cannot change afterwards).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name = backend_name()
    if name == "jax":
        import jax
        import keras  # noqa: F401

        dev = jax.devices()[0]
        kind = "GPU" if dev.platform in ("gpu", "cuda", "rocm") else "CPU"
        return DeviceInfo("jax", kind, getattr(dev, "device_kind", str(dev)), jax.__version__)

    import keras  # noqa: F401
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth cannot change any more
            pass
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return DeviceInfo("tensorflow", "GPU", details.get("device_name", gpus[0].name), tf.__version__)
    return DeviceInfo("tensorflow", "CPU", "CPU", tf.__version__)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the backends' out-of-memory errors (and Python's own)."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}"
    return any(
        key in text
        for key in ("ResourceExhausted", "OOM when allocating", "RESOURCE_EXHAUSTED", "out of memory")
    )
