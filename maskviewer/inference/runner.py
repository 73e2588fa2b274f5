"""The model host: owns the loaded model on the inference thread and runs it.

Everything here runs on the one inference thread (see ``maskviewer.gui.worker``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import InferenceError, InputMappingError
from maskviewer.core.model_info import ModelInfo
from maskviewer.inference.backend import is_out_of_memory
from maskviewer.inference.loading import LoadedModel, Snapshot, load_model
from maskviewer.inference.traced_call import call_traced
from maskviewer.inference.warm_up import learn_outputs
from maskviewer.inference.warm_up import warm_up as run_warm_up


def to_numpy(value: Any) -> np.ndarray:
    """A backend tensor (TF, JAX) or array as a numpy array."""
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


class ModelHost:
    """Holds one model and runs it; created and used on the inference thread only."""

    def __init__(self) -> None:
        self.loaded: LoadedModel | None = None

    @property
    def info(self) -> ModelInfo | None:
        return self.loaded.info if self.loaded else None

    @property
    def model(self) -> Any:
        return self.loaded.model if self.loaded else None

    def load(
        self,
        path: str | Path | Snapshot,
        *,
        safe_mode: bool = True,
        custom_objects: dict[str, Any] | None = None,
        warm_up: bool = True,
    ) -> ModelInfo:
        """Load a model (replacing the current one), warm it up, and describe it.

        ``path`` may be what ``loading.snapshot_model`` read: then exactly those bytes load.
        Nothing runs (not even the warm-up) unless safe mode allowed the load: a SavedModel or
        a model with code is refused before, with ``safe_mode`` on.
        """
        loaded = load_model(path, safe_mode=safe_mode, custom_objects=custom_objects)
        if warm_up:  # at a size the model accepts; a failed warm-up never refuses the model
            run_warm_up(self, loaded)
        self.loaded = loaded
        return loaded.info

    def unload(self) -> None:
        self.loaded = None

    def pack_inputs(self, arrays: dict[str, np.ndarray], loaded: LoadedModel | None = None) -> Any:
        """Arrange named input arrays the way the model's call expects them."""
        loaded = loaded or self.loaded
        assert loaded is not None
        names = [t.name for t in loaded.info.inputs]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputMappingError(f"No data for model input(s): {', '.join(missing)}.")
        if loaded.input_structure == "dict":
            return {k: arrays[n] for k, n in zip(loaded.input_keys, names, strict=True)}
        if loaded.input_structure == "list":
            return [arrays[n] for n in names]
        return arrays[names[0]]

    def unpack_outputs(self, result: Any, loaded: LoadedModel | None = None) -> dict[str, np.ndarray]:
        """Name the model's outputs: dict keys, output names, or ``output_i``."""
        loaded = loaded or self.loaded
        keys = loaded.output_keys if loaded else []
        if isinstance(result, dict):
            return {str(k): to_numpy(v) for k, v in result.items()}
        if isinstance(result, list | tuple):
            if len(keys) != len(result):
                keys = [f"output_{i}" for i in range(len(result))]
            return {k: to_numpy(v) for k, v in zip(keys, result, strict=True)}
        key = keys[0] if len(keys) == 1 else "output"
        return {key: to_numpy(result)}

    def _call(self, loaded: LoadedModel, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        packed = self.pack_inputs(arrays, loaded)
        try:
            if loaded.info.kind == "savedmodel":
                result = loaded.model(packed)
            else:  # traced: eager calls re-trace ops Keras wraps in tf.function (ConvNeXt)
                result = call_traced(loaded.model, packed)
        except Exception as exc:
            raise explain_inference_error(exc, loaded.info, arrays) from exc
        return self.unpack_outputs(result, loaded)

    def predict(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on batched inputs (named as in ``info.inputs``) and return numpy outputs."""
        if self.loaded is None:
            raise InferenceError("No model is loaded.")
        outputs = self._call(self.loaded, arrays)
        learn_outputs(self.loaded, outputs)  # when the warm-up could not tell them
        return outputs


def explain_inference_error(
    exc: BaseException, info: ModelInfo, arrays: dict[str, np.ndarray]
) -> InferenceError:
    """Turn a backend exception into a message the user can act on."""
    if is_out_of_memory(exc):
        return InferenceError(
            "The device ran out of memory running the model. Try a smaller image or batch, "
            "close other programs using the GPU, or switch to the CPU."
        )
    layer, core = _unwrap_keras_error(str(exc))
    op, core = _unwrap_graph_error(core)
    text = core.strip().splitlines()
    first = text[0] if text else type(exc).__name__
    where = f" in layer {layer}" if layer else ""
    where += f" at op {op}" if op else ""
    fed = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    want = ", ".join(f"{t.name} {t.shape_text()}" for t in info.inputs)
    if "shape" in core.lower() or "incompatible" in core.lower():
        return InferenceError(
            f"The model rejected the input shape{where}: it expects {want}, it was given {fed}. "
            f"Adjust the input mapping. ({first[:300]})"
        )
    return InferenceError(
        f"The model failed while running{where}: {type(exc).__name__}: {first[:400]}"
    )


def _unwrap_keras_error(text: str) -> tuple[str | None, str]:
    """Keras wraps a layer's exception as "Exception encountered when calling L.call(). <the
    message> Arguments received by L.call(): x=tf.Tensor(shape=...)". Return the layer and the
    message alone, so the arguments' shapes are not mistaken for a shape error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # Keras prints the message in bold
    match = re.match(
        r"\s*Exception encountered when calling (?:layer )?['\"]?([\w.]+?)['\"]?"
        r"(?:\.call\(\))?[.:]?\s*\n",
        text,
    )
    if not match:
        return None, text
    core = text[match.end():].split("Arguments received by", 1)[0]
    return match.group(1), core.strip()


def _unwrap_graph_error(text: str) -> tuple[str | None, str]:
    """TensorFlow reports a failing op as "Graph execution error: Detected at node N defined at
    (most recent call last): <stack> Node: N <the message> [[{{node N}}]] [Op:...]". Return
    the op and its message, so the user sees what failed rather than "Graph execution error:"."""
    if not text.lstrip().startswith("Graph execution error"):
        return None, text
    nodes = re.findall(r"(?:Detected at node|Node:)\s*'?([\w./-]+)'?", text)
    lines = []
    for line in text.strip().splitlines()[1:]:
        bare = line.strip()
        # stack frames and code are indented; the rest is TF's own bookkeeping
        if (not bare or line[:1].isspace() or bare.startswith(("Detected at node", "Node:", "[["))
                or bare == "<stack traces unavailable>"):
            continue
        lines.append(re.sub(r"\s*\[\[.*$|\s*\[Op:[^\]]*\]$", "", bare))
    message = " ".join(x for x in lines if x) or "TensorFlow did not say why"
    return (nodes[-1] if nodes else None), message
