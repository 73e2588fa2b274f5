"""One image of an export: loaded and turned into model inputs, then into export items.

:func:`prepare_one` runs on the preparing thread (file reading and resizing); the ``*_items``
functions turn one image's model results into :class:`maskviewer.io.export.ExportItem` s,
one function per kind of artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.cli.export_plan import Plan
from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import Frame, InputMapping


@dataclass
class Prepared:
    """One image, loaded and turned into model inputs (or the reason it could not be)."""

    path: str
    stem: str
    image: ImageData | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # without the batch axis
    frames: dict[str, Frame] = field(default_factory=dict)
    mappings: dict[str, InputMapping] = field(default_factory=dict)
    mask: np.ndarray | None = None
    mask_path: str | None = None
    reference: np.ndarray | None = None
    reference_path: str | None = None
    error: str = ""
    cams: list = field(default_factory=list)  # CamResult per CAM layer, set by CamExport.run

    def shapes(self) -> tuple:
        return tuple((k, v.shape) for k, v in self.arrays.items())


def _companion(base: str | None, image_path: str, what: str) -> str | None:
    """A per-image file: ``base`` itself, or ``base/<image stem>.<png|npy|tif|tiff|bmp>``."""
    if base is None:
        return None
    b = Path(base)
    if not b.is_dir():
        return str(b)
    stem = Path(image_path).stem
    for suffix in (".png", ".npy", ".tif", ".tiff", ".bmp"):
        candidate = b / f"{stem}{suffix}"
        if candidate.exists():
            return str(candidate)
    raise MaskviewerError(f"no {what} for {Path(image_path).name} in {b} (looked for {stem}.png/.npy/.tif/.bmp)")


def image_mappings(info: Any, image: ImageData, plan: Plan) -> dict[str, InputMapping]:
    """The input mappings for one image: proposed as the window does, then the options applied."""
    from maskviewer.core.mapping import is_image_input, parse_scale, propose_mapping
    from maskviewer.core.mask_feed import apply_feed

    mappings: dict[str, InputMapping] = {}
    for spec in info.inputs:
        if not is_image_input(spec.shape):
            continue
        m = propose_mapping(spec.shape, image, info.expects_0_255, info.preprocessing.get(spec.name))
        if plan.resize is not None or plan.scale is not None:
            d = m.to_dict()
            if plan.resize is not None:
                d["resize"] = plan.resize
            if plan.scale is not None:
                d.update(parse_scale(plan.scale))
            m = InputMapping.from_dict(d)
        mappings[spec.name] = m
    if plan.mask_feed is not None and plan.mask_feed.mode != "none":
        mappings = apply_feed(mappings, plan.mask_feed)
    return mappings


def input_settings(info: Any, plan: Plan) -> dict:
    """The mapping every image input gets, as the manifest records it (even when not given).

    ``resize`` and ``scale`` are the ``--resize`` / ``--scale`` values that reproduce the export
    (the ones given, else the resolved ones when all image inputs share them); ``inputs`` holds
    each input's full mapping and why it was chosen; ``given`` what the command line said.
    """
    from maskviewer.core.mapping import explain_mapping, scale_text

    inputs = {}
    for name, m in image_mappings(info, None, plan).items():
        inputs[name] = {
            **m.to_dict(), "scale_option": scale_text(m),
            "read_from_model": explain_mapping(info.preprocessing.get(name)),
            # an .npy of the input's exact shape is fed as is unless a mapping was given
            "npy_of_input_shape": "raw" if plan.resize is None and plan.scale is None else "mapped",
            "fed_from": plan.inputs.get(name, "image"),
        }
    resizes = {d["resize"] for d in inputs.values()}
    scales = {d["scale_option"] for d in inputs.values()}
    return {
        "resize": plan.resize or (resizes.pop() if len(resizes) == 1 else None),
        "scale": plan.scale or (scales.pop() if len(scales) == 1 else None),
        "given": {"resize": plan.resize, "scale": plan.scale},
        "inputs": inputs,
    }


def prepare_one(path: str, stem: str, info: Any, plan: Plan, mask_arg: str | None, ref_arg: str | None) -> Prepared:
    """Load an image (and its mask and reference) and build the model inputs; errors are kept."""
    from maskviewer.core.metrics import reference_to_mask
    from maskviewer.io.images import load_image
    from maskviewer.io.masks import load_mask

    item = Prepared(path, stem)
    try:
        image = load_image(path)
        item.image = image
        item.mask_path = _companion(mask_arg, path, "mask")
        if item.mask_path is not None:
            # compact (uint8 for 8-bit files): 0..1 floats are made where a step needs them
            item.mask = load_mask(item.mask_path, (image.height, image.width), compact=True)
        item.reference_path = _companion(ref_arg, path, "reference mask")
        if item.reference_path is not None:
            item.reference = reference_to_mask(load_image(item.reference_path).array)
        item.mappings = image_mappings(info, image, plan)
        masks = {"mask": item.mask} if item.mask is not None else {}

        def other(name: str) -> ImageData | None:  # --input NAME=FILE: fed from its own file
            if name not in plan.inputs:
                return None
            return load_image(_companion(plan.inputs[name], path, f"image for input {name!r}"))

        item.arrays, item.frames = model_arrays(info, image, item.mappings, masks, other)
    except MaskviewerError as exc:
        item.error = str(exc)
    except OSError as exc:
        item.error = f"{Path(path).name}: {exc.strerror or exc}"
    except MemoryError:  # this image fails, the others are still exported
        item.image, item.arrays = None, {}
        item.error = f"{Path(path).name}: not enough memory to prepare this image for the model."
    return item


def model_arrays(
    info: Any, image: ImageData, mappings: dict[str, InputMapping], masks: dict[str, np.ndarray],
    other: Callable[[str], ImageData | None],
) -> tuple[dict[str, np.ndarray], dict[str, Frame]]:
    """Every model input for one image (without the batch axis) and where it lies on the image.

    ``other(name)`` gives the picture of an input fed from its own file (None: the image).
    """
    from maskviewer.core.mapping import prepare_input
    from maskviewer.core.mask_feed import is_mask_source, prepare_masked_input

    arrays, frames = {}, {}
    for spec in info.inputs:
        m = mappings.get(spec.name)
        if m is None:
            raise MaskviewerError(
                f"the model input {spec.name!r} {spec.shape_text()} is not an image input; "
                "only images are fed."
            )
        if is_mask_source(m.source):
            x, frame = prepare_masked_input(image, m, spec.shape, masks)
        else:
            x, frame = prepare_input(other(spec.name) or image, m, spec.shape)
        dtype = spec.dtype if spec.dtype in ("float16", "float32", "float64") else "float32"
        arrays[spec.name] = x.astype(dtype, copy=False)
        frames[spec.name] = frame
    return arrays, frames


def model_arrays_batch(
    info: Any, stack: np.ndarray, value_max: float, mappings: dict[str, InputMapping]
) -> dict[str, np.ndarray]:
    """:func:`model_arrays` for ``N`` pictures of one size, shape and scale (``stack``:
    ``(N, H, W, C)``), every input fed from the picture itself: each input's array with the
    batch axis, equal to stacking the pictures' own arrays."""
    from maskviewer.core.patches import prepare_patches

    arrays = {}
    for spec in info.inputs:
        m = mappings.get(spec.name)
        if m is None or m.source != "image":
            raise MaskviewerError(f"the model input {spec.name!r} is not fed from the picture alone.")
        x = prepare_patches(stack, value_max, m, spec.shape)  # pictures of one size, as patches are
        dtype = spec.dtype if spec.dtype in ("float16", "float32", "float64") else "float32"
        arrays[spec.name] = x.astype(dtype, copy=False)
    return arrays


def _first_frame(item: Prepared) -> Frame:
    """Where the first input's pixels lie on the image (the whole image if no input maps it)."""
    if item.frames:
        return next(iter(item.frames.values()))
    assert item.image is not None
    return Frame(0.0, 0.0, float(item.image.width), float(item.image.height))


def _kinds(info: Any) -> Any:
    """The output kinds the window would propose for ``info``'s outputs."""
    from maskviewer.core.output_kinds import OutputKinds

    kinds = OutputKinds()
    kinds.set_model(info)
    return kinds


def prediction_items(item: Prepared, outputs: dict[str, np.ndarray], labels: list[str] | None,
                     info: Any = None) -> list:
    """The model's outputs for one image as export items (maps drawn, vectors as NPY), each
    vector read by its output kind: top classes, label probabilities or values by name."""
    from maskviewer.core.output_kinds import export_record
    from maskviewer.core.predictions import output_kind
    from maskviewer.io.export import ExportItem

    items = []
    frame = _first_frame(item)
    kinds = _kinds(info)
    for name, value in outputs.items():
        v = np.asarray(value, dtype=np.float32)
        kind = output_kind(v.shape)
        if kind == "vector":
            flat = v.reshape(-1)
            method, fields = export_record(kinds.kind_of(name, flat), flat, labels)
            items.append(ExportItem("prediction", name, flat, None, method, image=item.path, info=fields))
        elif kind == "image" and (v.ndim == 2 or v.shape[2] == 1):
            items.append(ExportItem("prediction", name, v.reshape(v.shape[:2]), frame, "map", image=item.path))
        else:
            items.append(ExportItem("prediction", name, v, None, "tensor", image=item.path))
    return items


def activation_items(item: Prepared, maps: dict, plan: Plan) -> list:
    """One image's layer maps (``LayerMap`` per layer path) as export items."""
    from maskviewer.io.export import ExportItem

    out = []
    frame = _first_frame(item)
    for path, lm in maps.items():
        kind = "attention" if path in plan.attention else "activation"
        method = "attention" if kind == "attention" and plan.reduce.method in ("mean", "max") else plan.reduce.label
        info: dict[str, Any] = {"layer_shape": list(lm.shape), "value_range": list(lm.value_range)}
        if not lm.spatial:
            out.append(ExportItem(kind, path, lm.vector, None, "vector", image=item.path, info=info))
            continue
        if lm.channels is not None:
            info["channels"] = [int(c) for c in lm.channels]
        if plan.reduce.method == "channel":
            info["channel"] = plan.reduce.channel
        if plan.reduce.method == "grid":
            out.append(ExportItem(kind, path, lm.maps, frame, "grid", image=item.path,
                                  vrange=lm.value_range, tiles=lm.maps, info=info))
        else:
            out.append(ExportItem(kind, path, lm.map, frame, method, image=item.path,
                                  vrange=lm.value_range, info=info, caption=f"{path} · {method}"))
    return out


class CamExport:
    """The plan's CAMs for whole batches: one traced function per CAM layer, reused by every batch.

    Parameters
    ----------
    host : ModelHost
        Holds the loaded model (on this thread).
    plan : Plan
        The layers, method, output and class.
    outputs : bool
        Also return the model's outputs, from the first layer's pass (no second forward pass).
    """

    def __init__(self, host: Any, plan: Plan, outputs: bool) -> None:
        from maskviewer.cli.export_methods import MethodFunction
        from maskviewer.inference.cam import cam_function
        from maskviewer.inference.probe import get_probe

        self.host, self.plan, self.outputs = host, plan, outputs
        probe = get_probe(host)
        keys = list(host.loaded.output_keys)
        self.functions = [
            cam_function(probe, layer, output_keys=keys, output=plan.output, plus=plan.cam == "gradcam++",
                         predictions=outputs and k == 0)
            if plan.cam in ("gradcam", "gradcam++") else MethodFunction(host, plan, layer, outputs and k == 0)
            for k, layer in enumerate(plan.cam_layers)
        ]

    def run(self, group: list[Prepared], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """CAMs of a batch (``arrays`` may hold padding rows after ``group``'s images).

        Each image's CAMs go to its ``cams``; returns the model's outputs (``{}`` unless asked).
        """
        from maskviewer.inference.runner import explain_inference_error

        packed = self.host.pack_inputs(arrays)
        try:
            batches = [fn(packed, self.plan.class_index) for fn in self.functions]
        except MaskviewerError:
            raise
        except Exception as exc:
            raise explain_inference_error(exc, self.host.info, arrays) from exc
        for i, item in enumerate(group):
            item.cams = [b.item(i) for b in batches]
        if not self.outputs or not batches:
            return {}
        return self.host.unpack_outputs(batches[0].outputs)


def cam_items(item: Prepared, plan: Plan) -> list:
    """One image's attribution map on each of the plan's CAM layers (or its input), as export items."""
    from maskviewer.io.export import ExportItem

    first = _first_frame(item)
    return [
        ExportItem(
            "cam", cam.layer, cam.heatmap, item.frames.get(cam.layer, first) if getattr(cam, "space", "") == "input"
            else first, cam.method, cam.class_index, item.path, vrange=(min(0.0, float(cam.heatmap.min())), 1.0),
            info={"output": cam.output, "score": cam.score}, caption=f"{cam.method} class {cam.class_index}",
        )
        for cam in item.cams
    ]


def patch_items(item: Prepared, host: Any, plan: Plan) -> list:
    """Every patch of one image through the model: the combined class's coverage map."""
    from maskviewer.core.patches import (
        COMBINE_BY_KIND,
        as_values,
        combine_values,
        coverage_map,
        kind_family,
        make_grid,
    )
    from maskviewer.inference.patch_runner import check_patch_fits, plan_feed, run_patches
    from maskviewer.io.export import ExportItem

    image = item.image
    assert image is not None
    grid = make_grid(plan.patch_spec, image.height, image.width)
    feed = plan_feed(host.info, item.mappings)
    check_patch_fits(image, grid, feed)
    run = run_patches(host.predict, image, grid, feed)
    name = plan.output or next(iter(run.outputs))
    scores = np.asarray(run.outputs[name])
    kind = _kinds(host.info).kind_of(name, scores[0] if len(scores) else None)
    family = kind_family(kind.kind)
    probs, note = as_values(scores, kind.kind)
    method = plan.combine if plan.combine in COMBINE_BY_KIND[family] else "mean"
    combined = combine_values(probs, method, family)
    cls = plan.class_index if plan.class_index is not None else combined.label
    if not 0 <= cls < probs.shape[1]:
        raise MaskviewerError(f"--class {cls}: the patch output {name} has {probs.shape[1]} entries.")
    values = coverage_map(grid, probs[:, cls]).astype(np.float32)
    spec = grid.spec
    info = {
        "grid": {
            "size": list(spec.size), "stride": list(spec.stride), "rate": list(spec.rate),
            "padding": spec.padding, "rows": grid.rows, "cols": grid.cols, "count": grid.count,
            "rects_xywh": grid.rects().tolist(),
        },
        "output_kind": kind.kind, "output_kind_text": kind.label,
    }
    if family == "values":  # a count stays a count: its values, combined as values
        info["patch_values_read"] = probs.tolist()
        info["combined"] = {"method": combined.method, "values": combined.scores.tolist()}
    else:
        info["patch_probabilities"] = probs.tolist()
        info["probability_note"] = note
        info["combined"] = {
            "method": combined.method, "scores": combined.scores.tolist(),
            ("class" if family == "classes" else "label"): combined.label, "probability": combined.probability,
        }
    frame = Frame(0.0, 0.0, float(image.width), float(image.height))
    caption = {"classes": f"p(class {cls}) per pixel", "labels": f"p(label {cls}) per pixel",
               "values": f"{kind.name} per pixel"}[family]
    return [ExportItem("patch", name, values, frame, combined.method, None if family == "values" else cls,
                       item.path, vrange=None if family == "values" else (0.0, 1.0), info=info, caption=caption)]


def binary_items(item: Prepared, outputs: dict[str, np.ndarray], plan: Plan) -> list:
    """One image's output binarised, scored against its reference mask if there is one."""
    from maskviewer.core.metrics import mask_scores, resize_nearest, sample_on_frame
    from maskviewer.core.threshold import ThresholdCache, binarise
    from maskviewer.io.export import ExportItem

    name = plan.binarise_output
    v = np.asarray(outputs[name])
    channel = None
    if v.ndim == 3:
        channel = plan.class_index if plan.class_index is not None else 0
        if not 0 <= channel < v.shape[2]:
            raise MaskviewerError(f"--class {channel}: the output {name} has {v.shape[2]} channels.")
        v = v[:, :, channel]
    method, value = plan.threshold
    cache = ThresholdCache(v, display=False)
    t = float(value) if method == "value" else cache.threshold(method)
    binary = binarise(cache.values, t, plan.invert)
    frame = _first_frame(item)
    info: dict[str, Any] = {
        "threshold": t, "threshold_method": method, "invert": plan.invert, "channel": channel,
        "foreground": "value <= threshold" if plan.invert else "value > threshold",
        "foreground_fraction": float(binary.mean()) if binary.size else 0.0,
        "scores": None, "reference": item.reference_path,
    }
    if item.reference is not None:
        ref = item.reference
        if ref.shape != binary.shape:
            if item.image is not None and ref.shape == (item.image.height, item.image.width):
                ref = sample_on_frame(ref, (frame.x, frame.y, frame.width, frame.height), binary.shape)
            else:
                ref = resize_nearest(ref, binary.shape)
        scores = mask_scores(binary, ref).to_dict()
        info["scores"] = {k: v for k, v in scores.items() if k != "eps"}
    return [ExportItem("binary", name, binary, frame, method, channel, item.path, info=info)]


def mask_item(item: Prepared, plan: Plan) -> list:
    """The image's mask as an export item (none without ``--mask``)."""
    from maskviewer.core.mask_values import as_float_mask
    from maskviewer.io.export import ExportItem

    if item.mask is None or item.image is None:
        return []
    frame = Frame(0.0, 0.0, float(item.image.width), float(item.image.height))
    feed = plan.mask_feed.label if plan.mask_feed is not None else "none"
    return [ExportItem("mask", "mask", as_float_mask(item.mask), frame, feed, image=item.path,
                       info={"file": item.mask_path, "fed_as": feed})]
