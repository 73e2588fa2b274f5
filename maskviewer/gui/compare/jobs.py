"""The Compare tool's work on the inference thread (Qt-free): each chosen method's map of the
current image, its deletion and insertion curves and, when asked, its sanity check.

Imports the attribution, faithfulness and sanity code only when the job runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import Cancelled, MaskviewerError
from maskviewer.core.mapping import Frame


@dataclass
class CompareRequest:
    """What to compare: the methods, where (layer, output, class, input) and how."""

    methods: list[str]
    layer: str | None = None
    output: str | None = None
    class_index: int | None = None
    input_name: str | None = None
    steps: int = 16
    baselines: dict[str, str] = field(default_factory=lambda: {"deletion": "black", "insertion": "blur"})
    sanity: bool = True
    sanity_steps: int | None = 6


@dataclass
class MethodResult:
    """One method's row: its map, curves and sanity check, or why there are none."""

    method: str
    label: str
    map: np.ndarray | None = None  # (h, w): layer grid or input pixels
    space: str = "layer"
    class_index: int | None = None
    deletion: Any = None  # core.faithfulness.Curve
    insertion: Any = None
    sanity: Any = None  # inference.sanity.SanityResult
    error: str = ""


@dataclass
class CompareOutcome:
    """What the job sends back."""

    request: CompareRequest
    rows: list[MethodResult] = field(default_factory=list)
    frame: Frame | None = None
    image: np.ndarray | None = None  # the model input explained, (H, W, C), for thumbnails
    error: str = ""


def _message(exc: Exception) -> str:
    if isinstance(exc, MaskviewerError):
        return str(exc)
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"


def run_compare(ctx: Any, info: Any, build: Callable, req: CompareRequest) -> CompareOutcome:
    """The ``"compare"`` job: every method of ``req`` in turn (a failing method fails alone)."""
    from maskviewer.inference.faithfulness import faithfulness_curves, method_labels, method_maps
    from maskviewer.inference.sanity import sanity_check

    ctx.require_model(info)
    out = CompareOutcome(req)
    arrays, frames = build()
    ctx.check()
    name = req.input_name if req.input_name in arrays else next(iter(arrays))
    out.frame = frames.get(name) or (next(iter(frames.values())) if frames else None)
    out.image = np.asarray(arrays[name])[0]
    host, model = ctx.host, ctx.host.model
    keys = list(host.loaded.output_keys)
    packed = host.pack_inputs(arrays)
    labels = method_labels()
    n = len(req.methods)
    curve_units = 2 * (req.steps + 1)
    sanity_units = (req.sanity_steps or 8) if req.sanity else 0
    per = curve_units + sanity_units
    names = [t.name for t in info.inputs]
    image_index = names.index(name) if name in names else 0
    for i, method in enumerate(req.methods):
        row = MethodResult(method, labels.get(method, method))
        out.rows.append(row)

        def report(done: int, _total: int, base: int = i * per) -> None:
            ctx.progress(base + done, n * per)

        def sanity_report(done: int, total: int, base: int = i * per + curve_units) -> None:
            ctx.progress(base + done * sanity_units // max(total, 1), n * per)

        def make(m: Any, method: str = method) -> Callable:
            return method_maps(m, method, req.layer, output=req.output, output_keys=keys, image_index=image_index)

        try:
            got = make(model)(packed, req.class_index, ctx.check)
            row.map, row.space = np.asarray(got.maps[0], np.float32), got.space
            cls = req.class_index if req.class_index is not None else int(got.classes[0])
            if cls < 0:  # a model-independent map explains no class: score the model's top class
                cls = _top_class(host, packed, req.output, keys)
            row.class_index = cls
            curves = faithfulness_curves(
                model, host.pack_inputs, arrays, name, row.map, cls, output=req.output, output_keys=keys,
                steps=req.steps, baselines=req.baselines, progress=report,
            )
            row.deletion, row.insertion = curves["deletion"], curves["insertion"]
            if req.sanity:
                row.sanity = sanity_check(model, packed, make, cls, method=method,
                                          max_steps=req.sanity_steps, progress=sanity_report, check=ctx.check)
        except Cancelled:
            raise
        except Exception as exc:  # one method that cannot run here: say why, go on with the others
            row.error = _message(exc)
    return out


def _top_class(host: Any, packed: Any, output: str | None, keys: list[str]) -> int:
    from maskviewer.inference.cam import select_output
    from maskviewer.inference.runner import to_numpy
    from maskviewer.inference.traced_call import call_traced

    _name, y = select_output(call_traced(host.model, packed), keys, output)
    y = to_numpy(y)
    return int(np.argmax(y.reshape(y.shape[0], -1, y.shape[-1]).mean(axis=1)[0])) if y.ndim > 1 else 0
