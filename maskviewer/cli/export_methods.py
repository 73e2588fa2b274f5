"""``maskviewer export --cam METHOD``: every attribution method, its options and its batches.

Grad-CAM and Grad-CAM++ keep :func:`maskviewer.inference.cam.cam_function` (the model's
outputs come from the same pass); the other methods run through
:func:`maskviewer.inference.attribution.attribution_function`, one traced function per layer
(or one for the input's pixels), reused by every batch; when the outputs are wanted too, one
traced forward pass gives them.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from maskviewer.cli.args import UsageError

#: every ``--cam`` method (as :data:`maskviewer.inference.attribution.METHOD_NAMES`)
CAM_CHOICES = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam",
               "saliency", "smoothgrad", "ig", "occlusion")
#: the methods drawn on the input's pixels (no layer)
INPUT_CHOICES = ("saliency", "smoothgrad", "ig", "occlusion")


def add_method_options(g: Any) -> None:
    """``--smooth-samples``, ``--smooth-noise``, ``--ig-steps``, ``--ig-baseline``,
    ``--occlusion-window``, ``--occlusion-stride``, ``--score-channels``."""
    g.add_argument("--smooth-samples", type=int, default=16, metavar="N",
                   help="--cam smoothgrad: noisy copies averaged (default 16)")
    g.add_argument("--smooth-noise", type=float, default=0.15, metavar="F",
                   help="--cam smoothgrad: noise sigma as a fraction of each image's value range (default 0.15)")
    g.add_argument("--ig-steps", type=int, default=32, metavar="N",
                   help="--cam ig: points on the path from the baseline, trapezoid rule (default 32)")
    g.add_argument("--ig-baseline", default="black", metavar="B",
                   help="--cam ig: black (zeros in model units), blurred (Gaussian blur of the input) "
                        "or FILE.npy (an array of the input's shape, in model units) (default black)")
    g.add_argument("--occlusion-window", type=int, default=None, metavar="PX",
                   help="--cam occlusion: the square window's side in input pixels (default: an eighth "
                        "of the input's shorter side)")
    g.add_argument("--occlusion-stride", type=int, default=None, metavar="PX",
                   help="--cam occlusion: the window's step in input pixels (default: half the window)")
    g.add_argument("--score-channels", type=int, default=None, metavar="N",
                   help="--cam scorecam: only the N channels of largest spatial spread, as tf-keras-vis' "
                        "max_N (default: every channel; a pass per channel)")


def method_params(args: argparse.Namespace) -> dict:
    """The ``--cam`` method's parameters as the manifest records them ({} for the others)."""
    method = args.cam
    if method == "smoothgrad":
        if args.smooth_samples < 1:
            raise UsageError(f"--smooth-samples {args.smooth_samples}: use at least 1 sample.")
        if not args.smooth_noise >= 0:
            raise UsageError(f"--smooth-noise {args.smooth_noise}: use 0 or more (a fraction of the value range).")
        return {"samples": args.smooth_samples, "noise": args.smooth_noise, "seed": 0}
    if method == "ig":
        if args.ig_steps < 2:
            raise UsageError(f"--ig-steps {args.ig_steps}: use at least 2 steps.")
        base = args.ig_baseline
        if base not in ("black", "blurred") and not str(base).lower().endswith(".npy"):
            raise UsageError(f"--ig-baseline {base}: use black, blurred or a .npy file of the input's shape.")
        return {"steps": args.ig_steps, "baseline": base, "rule": "trapezoid"}
    if method == "occlusion":
        for flag, value in (("--occlusion-window", args.occlusion_window), ("--occlusion-stride", args.occlusion_stride)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: use at least 1 pixel.")
        given = {"window": args.occlusion_window, "stride": args.occlusion_stride}
        return {k: v for k, v in given.items() if v is not None}  # the defaults are not named
    if method == "scorecam":
        if args.score_channels is not None and args.score_channels < 1:
            raise UsageError(f"--score-channels {args.score_channels}: use at least 1 channel.")
        return {"channels": args.score_channels} if args.score_channels is not None else {}
    return {}


def default_input(info: Any) -> str:
    """The input the input-space methods explain: the first image input."""
    from maskviewer.core.mapping import is_image_input

    names = [t.name for t in info.inputs if is_image_input(t.shape)] or [t.name for t in info.inputs]
    return names[0]


def _baseline(path: str, info: Any, name: str) -> np.ndarray:
    """A ``.npy`` baseline, checked against the input's shape."""
    from maskviewer.core.errors import MaskviewerError
    from maskviewer.io.images import load_image

    try:
        arr = load_image(path).raw
    except MaskviewerError as exc:
        raise UsageError(f"--ig-baseline: {exc}") from exc
    spec = next(t for t in info.inputs if t.name == name)
    want = tuple(spec.shape[1:])
    arr = np.asarray(arr, np.float32)
    while arr.ndim > len(want) and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != len(want) or any(w is not None and w != a for w, a in zip(want, arr.shape, strict=True)):
        raise UsageError(f"--ig-baseline {path}: an array of shape {arr.shape}; the input {name} is {want}.")
    return arr


class MethodFunction:
    """``fn(packed, class_index) -> AttributionBatch`` of ``plan.cam`` on one layer (or the input).

    ``outputs``: also fill the batch's ``outputs`` with the model's outputs (one traced forward).
    """

    def __init__(self, host: Any, plan: Any, layer: str, outputs: bool) -> None:
        from maskviewer.inference.attribution import AttributionOptions, attribution_function
        from maskviewer.inference.input_parts import packed_key
        from maskviewer.inference.probe import compile_function, get_probe

        p = plan.cam_params or {}
        opts = AttributionOptions()
        if plan.cam == "smoothgrad":
            opts.smooth_samples, opts.smooth_noise, opts.seed = p["samples"], p["noise"], p["seed"]
        if plan.cam == "ig":
            base = p["baseline"]
            opts.ig_steps = p["steps"]
            opts.ig_baseline = base if base in ("black", "blurred") else _baseline(base, host.info, layer)
        if plan.cam == "occlusion":
            opts.occlusion_window, opts.occlusion_stride = p.get("window"), p.get("stride")
        if plan.cam == "scorecam":
            opts.score_channels = p.get("channels")
        input_space = plan.cam in INPUT_CHOICES
        if input_space:
            opts.input = packed_key(host.loaded, layer)
        probe = get_probe(host)
        self.fn = attribution_function(probe, plan.cam, None if input_space else layer, plan.output, opts,
                                       output_keys=list(host.loaded.output_keys))
        self.layer, self.input_space = layer, input_space
        self._forward = compile_function(lambda x: probe.forward(x, [])[1]) if outputs else None

    def __call__(self, packed: Any, class_index: int | None = None) -> Any:
        batch = self.fn(packed, class_index)
        if self.input_space:
            batch.layer = self.layer
        if self._forward is not None:
            batch.outputs = self._forward(packed)
        return batch
