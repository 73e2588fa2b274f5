"""``maskviewer export IMAGE... --model MODEL --out DIR``: the window's views, headless, for folders.

No Qt anywhere here, and TensorFlow only through :mod:`maskviewer.inference` (imported after
the arguments and the output folder have been checked, so mistakes are reported in a second).
Images are streamed in batches: a batch is loaded and prepared on a helper thread while the
model runs the previous one, its files are written on another while the next runs, and the
manifest's entries are spooled to disk, so memory stays bounded for any number of images.

Exit codes: 0 everything exported; 1 some images failed (each reported on stderr, the others
exported); 2 nothing was done (bad arguments, unwritable folder, unknown layer, model refused).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.heatmap import COLORMAPS, NORMALISATIONS
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import RESIZE_MODES, SCALE_MODES, Frame, InputMapping

REDUCE_HELP = "mean | max | topk:K | channel:N | grid | attention"
COMBINE_ALIASES = {"mean": "mean", "max": "max", "vote": "vote", "geomean": "geometric", "geometric": "geometric"}
DEFAULT_BATCH = 32


class UsageError(MaskviewerError):
    """Arguments that cannot work together; nothing was done."""


# ---------------------------------------------------------------------------------------------
# Arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maskviewer export",
        description=(
            "Export heatmaps, overlays, raw maps (NPY), CAMs, masks, patch maps and binary "
            "outputs for images or folders of images, with DIR/manifest.json listing every file. "
            "Needs no display."
        ),
        epilog=(
            "Exit status: 0 all exported, 1 some images failed (listed on stderr and in the "
            "manifest), 2 nothing done (bad arguments, unwritable folder, unknown layer, model "
            "refused)."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images (PNG, JPEG, BMP, TIFF, NPY)")
    p.add_argument("--model", "-m", required=True, help=".keras, .h5 or a SavedModel folder")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--recursive", "-r", action="store_true", help="look for images in sub-folders too")
    g = p.add_argument_group("layers and CAMs")
    g.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="layer path to export (repeatable); default every spatial layer")
    g.add_argument("--reduce", default=None, metavar="R", help=f"how a layer becomes a map: {REDUCE_HELP} (default mean)")
    g.add_argument("--cam", choices=("gradcam", "gradcam++"), help="class activation maps on --layer (default: the last spatial layer)")
    g.add_argument("--output", metavar="NAME", help="the model output a CAM explains, patches combine or --threshold binarises")
    g.add_argument("--class", dest="class_index", type=int, metavar="N",
                   help="class a CAM explains / a patch map shows (default: the top class); channel of a multi-channel output to binarise")
    g.add_argument("--no-predictions", action="store_true", help="do not write the model's outputs")
    g.add_argument("--labels", metavar="FILE", help="class names (one per line, or JSON)")
    g = p.add_argument_group("input mapping and masks")
    g.add_argument("--resize", choices=RESIZE_MODES, help="resize mode for image inputs (default: stretch; .npy of the input's shape: none)")
    g.add_argument("--scale", choices=SCALE_MODES, help="input scaling (default: 0..1, or 0..255 for models that rescale themselves)")
    g.add_argument("--mask", metavar="FILE|DIR", help="a mask for every image, or a folder with one mask per image (same file stem)")
    g.add_argument("--mask-mode", default=None, metavar="MODE",
                   help="how the mask feeds the model: channel | multiply | input:NAME | none (default: proposed from the model's inputs)")
    g = p.add_argument_group("patches")
    g.add_argument("--patch-size", metavar="H[xW]", help="run every patch of this size through the model")
    g.add_argument("--patch-stride", metavar="S[xS]", help="step between patches (default: the size)")
    g.add_argument("--patch-rate", default="1", metavar="R[xR]", help="dilation (default 1)")
    g.add_argument("--patch-padding", choices=("valid", "same"), default="valid")
    g.add_argument("--combine", choices=sorted(COMBINE_ALIASES), default="mean", help="how patch probabilities combine (default mean)")
    g = p.add_argument_group("binarising")
    g.add_argument("--threshold", metavar="VALUE|METHOD", help="binarise --output at a value or by otsu, li, yen, triangle, mean, isodata")
    g.add_argument("--invert", action="store_true", help="foreground is value <= threshold")
    g.add_argument("--reference", metavar="FILE|DIR", help="reference mask(s) to score the binary output against")
    g = p.add_argument_group("looks and files")
    g.add_argument("--colormap", choices=COLORMAPS, default="viridis")
    g.add_argument("--normalise", "--normalize", dest="normalisation", choices=NORMALISATIONS, default="per_map")
    g.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in the overlay, 0..1 (default 0.5)")
    g.add_argument("--legend", action="store_true", help="write a colour-bar legend beside each heatmap")
    g.add_argument("--no-overlay", action="store_true", help="no heatmap-over-image PNGs")
    g.add_argument("--format", default="png,npy", help="png, npy or png,npy (default)")
    g.add_argument("--npy-layout", choices=("stacked", "files"), default="stacked",
                   help="stacked (default): one .npy per map under DIR/arrays, a row per image "
                        "(the manifest gives each image's row); files: one .npy per image and map")
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"images per model call (default {DEFAULT_BATCH})")
    g.add_argument("--shard", metavar="I/N", help="export only shard I of N (1 <= I <= N) of the sorted image list")
    g.add_argument("--trust", action="store_true", help="load models that contain Python code (runs that code)")
    g.add_argument("--custom-objects", action="append", default=[], metavar="FILE.py", help="Python file defining custom layers (needs --trust)")
    g.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in DIR")
    g.add_argument("--durable", action="store_true", help="fsync every file (slow for many small files)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    return p


@dataclass(frozen=True)
class ReduceSpec:
    method: str
    k: int = 5
    channel: int = 0

    @property
    def label(self) -> str:
        if self.method == "topk":
            return f"top{self.k}"
        if self.method == "channel":
            return f"channel{self.channel}"
        return self.method


def parse_reduce(text: str | None) -> ReduceSpec:
    """``mean``, ``max``, ``topk:K``, ``channel:N``, ``grid`` or ``attention``."""
    text = (text or "mean").strip().lower()
    name, _, arg = text.partition(":")
    if name in ("mean", "max", "grid", "attention") and not arg:
        return ReduceSpec(name)
    if name in ("topk", "channel"):
        try:
            value = int(arg)
        except ValueError:
            raise UsageError(f"--reduce {text}: write {name}:N with a whole number N (e.g. {name}:3).") from None
        if value < (1 if name == "topk" else 0):
            raise UsageError(f"--reduce {text}: N must be {'at least 1' if name == 'topk' else '0 or more'}.")
        return ReduceSpec("topk", k=value) if name == "topk" else ReduceSpec("channel", channel=value)
    raise UsageError(f"--reduce {text}: unknown reduction; use {REDUCE_HELP}.")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)`` with ``1 <= I <= N``."""
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text}: write I/N, e.g. --shard 2/4 for the second of four shards.") from None
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {text}: I must be between 1 and N (shards are numbered 1 to {max(n, 1)}).")
    return i, n


def shard_slice(items: list, shard: tuple[int, int] | None) -> list:
    """Shard ``I`` of ``N``: items ``I-1, I-1+N, I-1+2N, ...`` of the sorted list.

    Every item falls in exactly one shard, and shards differ in size by at most one.
    """
    if shard is None:
        return list(items)
    i, n = shard
    return list(items[i - 1 :: n])


def parse_threshold(text: str | None) -> tuple[str, float | None] | None:
    """``("value", t)`` or ``(method, None)``."""
    from maskviewer.core.threshold import METHODS

    if text is None:
        return None
    t = text.strip().lower()
    if t in METHODS:
        return t, None
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"--threshold {text}: give a number or one of {', '.join(METHODS)}.") from None
    if not np.isfinite(value):
        raise UsageError(f"--threshold {text}: the threshold must be a finite number.")
    return "value", value


def find_images(args_images: list[str], recursive: bool) -> list[str]:
    """Files named, and image files inside folders named; sorted, without duplicates.

    Files that do not exist are kept (they are reported as failures when their turn comes,
    and the batch goes on).
    """
    from maskviewer.io.images import is_image_path

    found: set[str] = set()
    for arg in args_images:
        p = Path(arg)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in p.glob(pattern):
                if f.is_file() and is_image_path(f) and not f.name.startswith("."):
                    found.add(str(f))
        else:
            found.add(str(p))
    return sorted(found)


def image_stems(paths: list[str]) -> dict[str, str]:
    """A folder name per image: its file stem, made unique with a hash of the path where needed.

    Computed over the whole sorted list (before sharding), so every shard names an image alike.
    """
    from maskviewer.io.export import safe_name

    stems = {p: safe_name(Path(p).stem) for p in paths}
    counts: dict[str, int] = {}
    for s in stems.values():
        counts[s] = counts.get(s, 0) + 1
    for p, s in stems.items():
        if counts[s] > 1:
            digest = hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]
            stems[p] = f"{s}-{digest}"
    return stems


# ---------------------------------------------------------------------------------------------
# Progress


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, failed: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done / max(now - self.t0, 1e-9)
        extra = f", {failed} failed" if failed else ""
        sys.stderr.write(f"\r[{bar}] {done}/{self.total} images, {rate:.1f}/s{extra}  ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# The plan: what to compute, decided once the model is known


@dataclass
class Plan:
    layers: list[str]
    attention: set[str]
    reduce: ReduceSpec
    activations: bool
    cam: str | None
    cam_layers: list[str]
    output: str | None
    class_index: int | None
    predictions: bool
    mask_feed: Any  # MaskFeed
    patch_spec: Any  # PatchSpec or None
    combine: str
    threshold: tuple[str, float | None] | None
    binarise_output: str | None
    invert: bool
    labels: list[str] | None
    resize: str | None
    scale: str | None
    notes: list[str] = field(default_factory=list)

    def settings(self) -> dict:
        return {
            "layers": self.layers if self.activations else [],
            "reduce": self.reduce.label if self.activations else None,
            "cam": self.cam,
            "cam_layers": self.cam_layers if self.cam else [],
            "output": self.output,
            "class": self.class_index,
            "predictions": self.predictions,
            "mask_mode": self.mask_feed.label if self.mask_feed is not None else None,
            "patches": None if self.patch_spec is None else {
                "size": list(self.patch_spec.size), "stride": list(self.patch_spec.stride),
                "rate": list(self.patch_spec.rate), "padding": self.patch_spec.padding,
                "combine": self.combine,
            },
            "threshold": None if self.threshold is None else {
                "method": self.threshold[0], "value": self.threshold[1],
                "output": self.binarise_output, "invert": self.invert,
            },
            "resize": self.resize,
            "scale": self.scale,
        }


def _layer_error(unknown: list[str], valid: list[str]) -> UsageError:
    return UsageError(
        f"Unknown layer{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
        f"Layers with a spatial map in this model: {', '.join(valid) or '(none)'}."
    )


def make_plan(args: argparse.Namespace, host: Any) -> Plan:
    """Check the arguments against the loaded model and decide what to compute.

    Raises
    ------
    UsageError
        Unknown layer or output, a reduction a layer cannot take, options that do not fit.
    """
    from maskviewer.core.heatmap import default_cam_layer
    from maskviewer.core.mask_feed import MaskFeed, feed_options, propose_mask_mode
    from maskviewer.core.patches import PADDINGS, PatchSpec, parse_pair
    from maskviewer.core.predictions import output_kind, read_labels

    info = host.info
    reduce = parse_reduce(args.reduce)
    notes: list[str] = []
    entries = []
    if info.probe_supported:
        from maskviewer.inference.probe import describe_layers

        entries = describe_layers(host)
    spatial = [e.path for e in entries if e.spatial]
    by_path = {e.path: e for e in entries}
    drawable = [e.path for e in entries if e.spatial and e.class_name != "InputLayer"]
    if args.layer:
        unknown = [name for name in args.layer if name not in by_path]
        if unknown:
            if not info.probe_supported:
                raise UsageError(f"{info.note or 'This model cannot be probed.'} (asked for --layer {', '.join(unknown)})")
            raise _layer_error(unknown, spatial)
        layers = list(dict.fromkeys(args.layer))
    else:
        layers = drawable
    activations = (args.cam is None or args.reduce is not None) and bool(layers)
    if not info.probe_supported and (args.cam or args.reduce):
        raise UsageError(info.note or "This model's layers cannot be probed.")
    if not info.probe_supported:
        notes.append("The model's layers cannot be probed: only its outputs are exported.")
    for path in layers if activations else []:
        e = by_path[path]
        c = e.shape[-1] if e.spatial and e.shape else None
        if reduce.method in ("channel", "grid") and c is not None and not 0 <= reduce.channel < c:
            raise UsageError(f"--reduce {reduce.label}: layer {path} has {c} channels (0 to {c - 1}).")
        if reduce.method == "attention" and e.spatial and c not in (None, 1):
            raise UsageError(
                f"--reduce attention: layer {path} has {c} channels; an attention map needs a "
                "single-channel layer. Choose the layers with --layer or another reduction."
            )
    attention = {p for p in layers if by_path[p].attention}

    out_names = [t.name for t in info.outputs]
    if args.output is not None and args.output not in out_names:
        raise UsageError(f"--output {args.output}: the model has no such output; its outputs are {', '.join(out_names)}.")

    cam_layers: list[str] = []
    if args.cam:
        if args.layer:
            flat = [p for p in args.layer if not by_path[p].spatial]
            if flat:
                raise UsageError(f"--cam needs spatial layers; {', '.join(flat)} {'has' if len(flat) == 1 else 'have'} no (H, W, C) output. Spatial layers: {', '.join(spatial)}.")
            cam_layers = list(dict.fromkeys(args.layer))
        else:
            default = default_cam_layer(info)
            if default is None:
                raise UsageError("--cam: the model has no spatial layer to draw a CAM on.")
            cam_layers = [default.path]
        if args.class_index is not None:
            spec = next((t for t in info.outputs if t.name == (args.output or out_names[0])), None)
            n = spec.shape[-1] if spec is not None and spec.shape else None
            if isinstance(n, int) and not 0 <= args.class_index < n:
                raise UsageError(f"--class {args.class_index}: the output {spec.name} has {n} classes (0 to {n - 1}).")

    feed = None
    if args.mask is not None or args.mask_mode is not None:
        if args.mask is None:
            raise UsageError("--mask-mode needs --mask FILE (or a folder of masks).")
        mode_text = args.mask_mode
        options = feed_options(info)
        if mode_text is None:
            proposal = propose_mask_mode(info)
            feed = MaskFeed(proposal.mode, proposal.input_name, "mask")
            if proposal.mode == "none":
                notes.append("The mask is exported but not fed to the model (give --mask-mode to feed it).")
        else:
            mode, _, name = mode_text.partition(":")
            if mode not in ("none", "channel", "multiply", "input"):
                raise UsageError(f"--mask-mode {mode_text}: use channel, multiply, input:NAME or none.")
            if mode == "none":
                feed = MaskFeed()
            else:
                fitting = [o for o in options if o.mode == mode and (not name or o.input_name == name)]
                if not fitting:
                    ok = ", ".join(o.label for o in options)
                    raise UsageError(f"--mask-mode {mode_text} does not fit this model's inputs; possible: {ok}.")
                feed = MaskFeed(mode, fitting[0].input_name, "mask")

    patch_spec = None
    if args.patch_size is not None:
        try:
            size = parse_pair(args.patch_size, "--patch-size")
            stride = parse_pair(args.patch_stride, "--patch-stride") if args.patch_stride else size
            rate = parse_pair(args.patch_rate, "--patch-rate")
        except MaskviewerError as exc:
            raise UsageError(str(exc)) from exc
        padding = args.patch_padding.upper()
        assert padding in PADDINGS
        patch_spec = PatchSpec(size, stride, rate, padding)
    elif args.patch_stride is not None or args.patch_rate != "1":
        raise UsageError("--patch-stride and --patch-rate need --patch-size.")

    threshold = parse_threshold(args.threshold)
    binarise_output = None
    if threshold is not None:
        image_outputs = [t.name for t in info.outputs if output_kind(tuple(t.shape[1:])) == "image"]
        binarise_output = args.output or (image_outputs[0] if image_outputs else None)
        if binarise_output is None or binarise_output not in image_outputs:
            shapes = ", ".join(f"{t.name} {t.shape_text()}" for t in info.outputs)
            raise UsageError(
                f"--threshold binarises an image-shaped output (H, W) or (H, W, C<=4); "
                f"{'--output ' + binarise_output + ' is not one' if binarise_output else 'this model has none'} "
                f"(outputs: {shapes})."
            )
    elif args.reference is not None or args.invert:
        raise UsageError("--reference and --invert need --threshold.")

    labels = None
    if args.labels:
        try:
            labels = read_labels(args.labels)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--labels {args.labels}: {exc}") from exc

    return Plan(
        layers=layers, attention=attention, reduce=reduce, activations=activations,
        cam=args.cam, cam_layers=cam_layers, output=args.output, class_index=args.class_index,
        predictions=not args.no_predictions, mask_feed=feed, patch_spec=patch_spec,
        combine=COMBINE_ALIASES[args.combine], threshold=threshold, binarise_output=binarise_output,
        invert=args.invert, labels=labels, resize=args.resize, scale=args.scale, notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# Per image


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
    from maskviewer.core.mapping import is_image_input, propose_mapping
    from maskviewer.core.mask_feed import apply_feed

    mappings: dict[str, InputMapping] = {}
    for spec in info.inputs:
        if not is_image_input(spec.shape):
            continue
        m = propose_mapping(spec.shape, image, info.expects_0_255)
        if plan.resize is not None or plan.scale is not None:
            d = m.to_dict()
            if plan.resize is not None:
                d["resize"] = plan.resize
            if plan.scale is not None:
                d["scale"] = plan.scale
            m = InputMapping.from_dict(d)
        mappings[spec.name] = m
    if plan.mask_feed is not None and plan.mask_feed.mode != "none":
        mappings = apply_feed(mappings, plan.mask_feed)
    return mappings


def prepare_one(path: str, stem: str, info: Any, plan: Plan, mask_arg: str | None, ref_arg: str | None) -> Prepared:
    """Load an image (and its mask and reference) and build the model inputs; errors are kept."""
    from maskviewer.core.mapping import prepare_input
    from maskviewer.core.mask_feed import is_mask_source, prepare_masked_input
    from maskviewer.core.metrics import reference_to_mask
    from maskviewer.io.images import load_image
    from maskviewer.io.masks import load_mask

    item = Prepared(path, stem)
    try:
        image = load_image(path)
        item.image = image
        item.mask_path = _companion(mask_arg, path, "mask")
        if item.mask_path is not None:
            item.mask = load_mask(item.mask_path, (image.height, image.width))
        item.reference_path = _companion(ref_arg, path, "reference mask")
        if item.reference_path is not None:
            item.reference = reference_to_mask(load_image(item.reference_path).array)
        item.mappings = image_mappings(info, image, plan)
        masks = {"mask": item.mask} if item.mask is not None else {}
        for spec in info.inputs:
            m = item.mappings.get(spec.name)
            if m is None:
                raise MaskviewerError(
                    f"the model input {spec.name!r} {spec.shape_text()} is not an image input; "
                    "the export feeds images only."
                )
            if is_mask_source(m.source):
                x, frame = prepare_masked_input(image, m, spec.shape, masks)
            else:
                x, frame = prepare_input(image, m, spec.shape)
            dtype = spec.dtype if spec.dtype in ("float16", "float32", "float64") else "float32"
            item.arrays[spec.name] = x.astype(dtype, copy=False)
            item.frames[spec.name] = frame
    except MaskviewerError as exc:
        item.error = str(exc)
    except OSError as exc:
        item.error = f"{Path(path).name}: {exc.strerror or exc}"
    return item


def _first_frame(item: Prepared) -> Frame:
    if item.frames:
        return next(iter(item.frames.values()))
    assert item.image is not None
    return Frame(0.0, 0.0, float(item.image.width), float(item.image.height))


def prediction_items(item: Prepared, outputs: dict[str, np.ndarray], labels: list[str] | None) -> list:
    """The model's outputs for one image as export items (maps drawn, vectors as NPY)."""
    from maskviewer.core.predictions import output_kind, top_k
    from maskviewer.io.export import ExportItem

    items = []
    frame = _first_frame(item)
    for name, value in outputs.items():
        v = np.asarray(value, dtype=np.float32)
        kind = output_kind(v.shape)
        if kind == "vector":
            flat = v.reshape(-1)
            top = [{"class": s.index, "label": s.label, "score": s.score} for s in top_k(flat, 5, labels)]
            items.append(ExportItem("prediction", name, flat, None, "scores", image=item.path, info={"top": top}))
        elif kind == "image" and (v.ndim == 2 or v.shape[2] == 1):
            items.append(ExportItem("prediction", name, v.reshape(v.shape[:2]), frame, "map", image=item.path))
        else:
            items.append(ExportItem("prediction", name, v, None, "tensor", image=item.path))
    return items


def activation_items(item: Prepared, maps: dict, plan: Plan) -> list:
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


def cam_items(item: Prepared, host: Any, plan: Plan, probe: Any) -> list:
    from maskviewer.inference.cam import grad_cam
    from maskviewer.io.export import ExportItem

    packed = host.pack_inputs({k: v[None] for k, v in item.arrays.items()})
    frame = _first_frame(item)
    out = []
    for layer in plan.cam_layers:
        cam = grad_cam(
            probe, packed, layer, output_keys=list(host.loaded.output_keys), output=plan.output,
            class_index=plan.class_index, plus=plan.cam == "gradcam++",
        )
        out.append(ExportItem(
            "cam", layer, cam.heatmap, frame, cam.method, cam.class_index, item.path, vrange=(0.0, 1.0),
            info={"output": cam.output, "score": cam.score}, caption=f"{cam.method} class {cam.class_index}",
        ))
    return out


def patch_items(item: Prepared, host: Any, plan: Plan) -> list:
    from maskviewer.core.patches import as_probabilities, combine, coverage_map, make_grid
    from maskviewer.inference.patch_runner import check_patch_fits, plan_feed, run_patches
    from maskviewer.io.export import ExportItem

    image = item.image
    assert image is not None
    grid = make_grid(plan.patch_spec, image.height, image.width)
    feed = plan_feed(host.info, item.mappings)
    check_patch_fits(image, grid, feed)
    run = run_patches(host.predict, image, grid, feed)
    name = plan.output or next(iter(run.outputs))
    probs, note = as_probabilities(run.outputs[name])
    combined = combine(probs, plan.combine)
    cls = plan.class_index if plan.class_index is not None else combined.label
    if not 0 <= cls < probs.shape[1]:
        raise MaskviewerError(f"--class {cls}: the patch output {name} has {probs.shape[1]} classes.")
    values = coverage_map(grid, probs[:, cls]).astype(np.float32)
    spec = grid.spec
    info = {
        "grid": {
            "size": list(spec.size), "stride": list(spec.stride), "rate": list(spec.rate),
            "padding": spec.padding, "rows": grid.rows, "cols": grid.cols, "count": grid.count,
            "rects_xywh": grid.rects().tolist(),
        },
        "patch_probabilities": probs.tolist(),
        "probability_note": note,
        "combined": {
            "method": combined.method, "scores": combined.scores.tolist(), "class": combined.label,
            "probability": combined.probability,
        },
    }
    frame = Frame(0.0, 0.0, float(image.width), float(image.height))
    return [ExportItem("patch", name, values, frame, combined.method, cls, item.path, vrange=(0.0, 1.0),
                       info=info, caption=f"p(class {cls}) per pixel")]


def binary_items(item: Prepared, outputs: dict[str, np.ndarray], plan: Plan) -> list:
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
    from maskviewer.io.export import ExportItem

    if item.mask is None or item.image is None:
        return []
    frame = Frame(0.0, 0.0, float(item.image.width), float(item.image.height))
    feed = plan.mask_feed.label if plan.mask_feed is not None else "none"
    return [ExportItem("mask", "mask", item.mask, frame, feed, image=item.path,
                       info={"file": item.mask_path, "fed_as": feed})]


# ---------------------------------------------------------------------------------------------
# The run


def _batches(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def run_export(
    args: argparse.Namespace,
    paths: list[str],
    stems: dict[str, str],
    host: Any,
    plan: Plan,
    writer: Any,
    manifest: Any,
    report: Callable[[str], None],
    progress: ProgressBar | None = None,
) -> tuple[int, int]:
    """Export every image of ``paths``; returns ``(images done, images failed)``."""
    from maskviewer.inference.batch_maps import BatchMapper
    from maskviewer.inference.probe import Reduction, get_probe

    info = host.info
    probe = get_probe(host) if (plan.activations or plan.cam) else None
    mapper = None
    if info.probe_supported:
        r = plan.reduce
        paths_to_map = plan.layers if plan.activations else []
        mapper = BatchMapper(host, paths_to_map, Reduction(r.method, r.k, r.channel))
    done = failed = 0

    def fail(path: str, message: str) -> None:
        nonlocal failed
        failed += 1  # (on this thread only: the writing thread returns its errors)
        manifest.add_failure(path, message)
        shown = message if message.startswith((path, Path(path).name)) else f"{path}: {message}"
        report(f"maskviewer export: {shown}")

    # a batch's files are written by another thread (array work, PNG encoding and file system
    # calls release the GIL) while the model runs the next batch; entries reach the manifest in
    # image order, and at most two batches are in flight, so memory stays bounded
    in_flight: deque[tuple[list[Prepared], list[int], Future]] = deque()

    def collect(keep: int) -> None:
        nonlocal done
        while len(in_flight) > keep:
            items, owners, future = in_flight.popleft()
            results = future.result()
            per_image: list[list] = [[] for _ in items]
            for owner, result in zip(owners, results, strict=True):
                per_image[owner].append(result)
            for it, entries in zip(items, per_image, strict=True):
                errors = [e for e in entries if isinstance(e, BaseException)]
                if errors:
                    fail(it.path, f"writing its files failed: {errors[0]}")
                    continue
                for entry in entries:
                    manifest.add(entry)
                done += 1

    def prepare(batch: list[str]) -> list[Prepared]:
        return [prepare_one(p, stems[p], info, plan, args.mask, args.reference) for p in batch]

    batches = list(_batches(paths, max(1, args.batch_size)))
    with ThreadPoolExecutor(1, thread_name_prefix="export-prepare") as prep_pool, \
            ThreadPoolExecutor(1, thread_name_prefix="export-write") as write_pool:
        pending = prep_pool.submit(prepare, batches[0]) if batches else None
        for k in range(len(batches)):
            assert pending is not None
            prepared = pending.result()
            if k + 1 < len(batches):
                pending = prep_pool.submit(prepare, batches[k + 1])
            ready = []
            for item in prepared:
                if item.error:
                    fail(item.path, item.error)
                else:
                    ready.append(item)
            written: list[Prepared] = []
            jobs: list[tuple] = []
            owners: list[int] = []
            groups: dict[tuple, list[Prepared]] = {}
            for item in ready:
                groups.setdefault(item.shapes(), []).append(item)
            for group in groups.values():
                arrays = {name: np.stack([it.arrays[name] for it in group]) for name in group[0].arrays}
                if mapper is not None and 0 < len(group) < args.batch_size and len(paths) > args.batch_size:
                    # a short last batch is padded to the full size: the traced pass is reused
                    # instead of traced again for a new batch shape (the padding is dropped)
                    arrays = {
                        k: np.concatenate([v, np.zeros((args.batch_size - len(v), *v.shape[1:]), v.dtype)])
                        for k, v in arrays.items()
                    }
                try:
                    if mapper is not None:
                        maps, outputs = mapper.run(arrays)
                    else:
                        maps, outputs = [{} for _ in group], host.predict(arrays)
                except MaskviewerError as exc:
                    for it in group:
                        fail(it.path, str(exc))
                    continue
                for i, it in enumerate(group):
                    outs_i = {n: v[i] for n, v in outputs.items()}
                    try:
                        exports = []
                        if plan.activations:
                            exports += activation_items(it, maps[i], plan)
                        if plan.cam:
                            exports += cam_items(it, host, plan, probe)
                        if plan.predictions:
                            exports += prediction_items(it, outs_i, plan.labels)
                        if plan.patch_spec is not None:
                            exports += patch_items(it, host, plan)
                        if plan.threshold is not None:
                            exports += binary_items(it, outs_i, plan)
                        exports += mask_item(it, plan)
                    except MaskviewerError as exc:
                        fail(it.path, str(exc))
                        continue
                    jobs.extend((e, it.image, f"{it.stem}/{e.stem()}") for e in exports)
                    owners.extend([len(written)] * len(exports))
                    written.append(it)
            if written:
                in_flight.append((written, owners, write_pool.submit(writer.write_batch, jobs)))
            collect(keep=1)  # the previous batch's files are done
            if progress is not None:
                progress.update(done + failed, failed)
        collect(keep=0)
    return done, failed


def export_main(argv: list[str]) -> int:
    """The ``maskviewer export`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def err(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from maskviewer.io.export import (
        MANIFEST_NAME,
        ArtifactWriter,
        ExportError,
        ExportStyle,
        Manifest,
        check_writable,
    )

    try:
        formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
        style = ExportStyle(args.colormap, args.normalisation, args.alpha, formats,
                            overlay=not args.no_overlay, legend=args.legend)
        parse_reduce(args.reduce)
        parse_threshold(args.threshold)
        shard = parse_shard(args.shard)
        if args.batch_size < 1:
            raise UsageError("--batch-size must be at least 1.")
        if args.custom_objects and not args.trust:
            raise UsageError("--custom-objects runs Python code; add --trust to allow it.")
        all_paths = find_images(args.images, args.recursive)
        if not all_paths:
            raise UsageError("No images found in " + ", ".join(args.images) + ".")
        paths = shard_slice(all_paths, shard)
        stems = image_stems(all_paths)
        out = check_writable(args.out)
        manifest_name = MANIFEST_NAME if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.json"
        if (out / manifest_name).exists() and not args.overwrite:
            raise UsageError(
                f"{out / manifest_name} exists: {out} holds an earlier export. Choose another "
                "--out folder or add --overwrite."
            )
    except (UsageError, ExportError) as exc:
        err(f"maskviewer export: {exc}")
        return 2

    from maskviewer.core.errors import UnsafeModelError
    from maskviewer.inference.backend import init_backend
    from maskviewer.inference.loading import file_sha256, load_custom_objects
    from maskviewer.inference.runner import ModelHost

    try:
        init_backend()
        custom = load_custom_objects(args.custom_objects) if args.custom_objects else None
        host = ModelHost()
        host.load(args.model, safe_mode=not args.trust, custom_objects=custom)
        model_sha = file_sha256(args.model)
        plan = make_plan(args, host)
    except UnsafeModelError as exc:
        err(f"maskviewer export: {exc}\nAdd --trust to load it anyway.")
        return 2
    except MaskviewerError as exc:
        err(f"maskviewer export: {exc}")
        return 2
    for note in plan.notes:
        err(f"maskviewer export: note: {note}")

    stack_dir = "arrays" if shard is None else f"arrays/shard-{shard[0]}-of-{shard[1]}"
    writer = ArtifactWriter(out, style, overwrite=args.overwrite, durable=args.durable,
                            npy_layout=args.npy_layout, stack_dir=stack_dir)
    manifest = Manifest(out, manifest_name)
    bar = ProgressBar(len(paths), enabled=not args.quiet and sys.stderr.isatty())
    t0 = time.perf_counter()
    try:
        done, failed = run_export(args, paths, stems, host, plan, writer, manifest, err, bar)
        writer.close()
    except OSError as exc:  # the stacked arrays could not be finished (disk full...)
        writer.abandon()
        manifest.abandon()
        bar.close()
        err(f"maskviewer export: writing the arrays failed: {exc}")
        return 2
    except BaseException:
        writer.abandon()
        manifest.abandon()
        bar.close()
        raise
    bar.update(done + failed, failed, force=True)
    bar.close()
    seconds = time.perf_counter() - t0
    header = {
        "source": "command line",
        "model": {"path": str(Path(args.model).resolve()), "sha256": model_sha, "name": host.info.name},
        "command": ["maskviewer", "export", *argv],
        "settings": {**plan.settings(), "style": style.to_dict(), "batch_size": args.batch_size,
                     "npy_layout": args.npy_layout},
        "shard": None if shard is None else {"index": shard[0], "count": shard[1]},
        "images": {"total": len(all_paths), "in_shard": len(paths), "exported": done, "failed": failed},
        "seconds": round(seconds, 3),
        "notes": plan.notes,
    }
    try:
        path = manifest.finish(header)
    except OSError as exc:
        err(f"maskviewer export: writing the manifest failed: {exc}")
        return 2
    if not args.quiet:
        rate = done / seconds if seconds > 0 else 0.0
        err(f"maskviewer export: {manifest.count} artifacts for {done} image(s) in {seconds:.1f} s "
            f"({rate:.1f} images/s); manifest {path}" + (f"; {failed} image(s) failed" if failed else ""))
    return 1 if failed else 0
