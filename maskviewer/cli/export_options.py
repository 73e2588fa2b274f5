"""The ``maskviewer export`` options: the command line, and reading the values that need it
(reductions, shards, thresholds, the image list).

Each value parser raises :class:`~maskviewer.cli.args.UsageError` with a message that says how to
write the option; nothing here imports Qt or TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.cli.args import UsageError, add_trust_options, add_verbose_option
from maskviewer.core.heatmap import COLORMAPS, DEFAULT_OPACITY, NORMALISATIONS
from maskviewer.core.mapping import RESIZE_MODES
from maskviewer.io.export.items import AUTO_SCALE_SIDE, MAX_SCALE

#: the reductions ``--reduce`` takes, as its help lists them
REDUCE_HELP = "mean | max | topk:K | channel:N | grid | attention"
#: ``--combine`` choice -> the name :func:`maskviewer.core.patches.combine` knows
COMBINE_ALIASES = {"mean": "mean", "max": "max", "vote": "vote", "geomean": "geometric", "geometric": "geometric"}
DEFAULT_BATCH = 32


# ---------------------------------------------------------------------------------------------
# The command line


#: options whose values may start with "-" (``--scale -1..1``): argparse would take those for options
_DASH_VALUE_OPTIONS = ("--scale",)


class _ExportParser(argparse.ArgumentParser):
    """argparse, but ``--scale -1..1`` is read as ``--scale=-1..1`` (not as a missing value)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        joined: list[str] = []
        i = 0
        while i < len(argv):
            if argv[i] in _DASH_VALUE_OPTIONS and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
                joined.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
                continue
            joined.append(argv[i])
            i += 1
        return super().parse_known_args(joined, namespace)


def scale_option(text: str) -> str:
    """``--scale``: any form :func:`maskviewer.core.mapping.parse_scale` reads, written canonically."""
    from maskviewer.core.errors import InputMappingError
    from maskviewer.core.mapping import InputMapping, parse_scale, scale_text

    try:
        return scale_text(InputMapping.from_dict(parse_scale(text)))
    except InputMappingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def png_scale_option(text: str) -> int | str:
    """``--png-scale``: ``auto`` or a whole number 1..MAX_SCALE."""
    t = text.strip().lower()
    if t == "auto":
        return t
    try:
        value = int(t)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"write auto or a whole number 1..{MAX_SCALE}, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``maskviewer export`` command line."""
    p = _ExportParser(
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
    _add_layer_options(p.add_argument_group("layers and CAMs"))
    _add_input_options(p.add_argument_group("input mapping and masks"))
    _add_patch_options(p.add_argument_group("patches"))
    _add_threshold_options(p.add_argument_group("binarising"))
    _add_file_options(p.add_argument_group("looks and files"))
    _add_running_options(p.add_argument_group("running"))
    return p


def _add_layer_options(g: Any) -> None:
    from maskviewer.cli.export_attention import TOKEN_CAMS, add_attention_options
    from maskviewer.cli.export_methods import CAM_CHOICES, add_method_options

    g.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="layer path to export (repeatable); default every spatial layer")
    g.add_argument("--reduce", default=None, metavar="R", help=f"how a layer becomes a map: {REDUCE_HELP} (default mean)")
    g.add_argument("--cam", choices=CAM_CHOICES + TOKEN_CAMS, metavar="METHOD",
                   help=f"attribution maps: {', '.join(CAM_CHOICES + TOKEN_CAMS)}; the CAMs on --layer (default: the last "
                        "spatial layer), saliency, smoothgrad, ig and occlusion on the input's pixels, rollout and "
                        "attribution through a transformer's attention layers")
    add_method_options(g)
    add_attention_options(g)
    g.add_argument("--output", metavar="NAME", help="the model output a CAM explains, patches combine or --threshold binarises")
    g.add_argument("--class", dest="class_index", type=int, metavar="N",
                   help="class a CAM explains / a patch map shows (default: the top class); channel of a multi-channel output to binarise")
    g.add_argument("--no-predictions", action="store_true", help="do not write the model's outputs")
    g.add_argument("--labels", metavar="FILE", help="class names (one per line, or JSON)")
    g.add_argument("--faithfulness", action="store_true",
                   help="score each CAM by deletion and insertion curves (RISE): the curves and their AUCs "
                        "go into the manifest, a plot into STEM_plot.png")
    g.add_argument("--faithfulness-steps", type=int, default=32, metavar="N",
                   help="steps of the deletion and insertion curves (default 32)")
    g.add_argument("--deletion-baseline", choices=("black", "blur", "mean"), default="black",
                   help="what deleted pixels become (default black: zeros of the model input)")
    g.add_argument("--insertion-baseline", choices=("black", "blur", "mean"), default="blur",
                   help="what insertion starts from (default blur: the image blurred)")


def _add_input_options(g: Any) -> None:
    g.add_argument("--resize", choices=RESIZE_MODES, help="resize mode for image inputs (default: stretch; .npy of the input's shape: none)")
    g.add_argument("--scale", type=scale_option, metavar="S",
                   help="input scaling: 0..1, 0..255, -1..1, caffe, imagenet, mean=M1,M2,M3,std=S1,S2,S3 "
                        "or raw (default: as read from the model; `maskviewer info` shows it)")
    g.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=FILE|DIR",
                   help="feed the model input NAME from FILE (the same for every image) or from the file "
                        "with the image's stem in DIR (repeatable, one per input); image inputs not named "
                        "get the image itself. The run lists what each input was fed")
    g.add_argument("--mask", metavar="FILE|DIR", help="a mask for every image, or a folder with one mask per image (same file stem)")
    g.add_argument("--mask-mode", default=None, metavar="MODE",
                   help="how the mask feeds the model: channel | multiply | input:NAME | none (default: proposed from the model's inputs)")


def _add_patch_options(g: Any) -> None:
    g.add_argument("--patch-size", metavar="H[xW]", help="run every patch of this size through the model")
    g.add_argument("--patch-stride", metavar="S[xS]", help="step between patches (default: the size)")
    g.add_argument("--patch-rate", default="1", metavar="R[xR]", help="dilation (default 1)")
    g.add_argument("--patch-padding", choices=("valid", "same"), default="valid")
    g.add_argument("--combine", choices=sorted(COMBINE_ALIASES), default="mean", help="how patch probabilities combine (default mean)")


def _add_threshold_options(g: Any) -> None:
    g.add_argument("--threshold", metavar="VALUE|METHOD", help="binarise --output at a value or by otsu, li, yen, triangle, mean, isodata")
    g.add_argument("--invert", action="store_true", help="foreground is value <= threshold")
    g.add_argument("--reference", metavar="FILE|DIR", help="reference mask(s) to score the binary output against")


def _add_file_options(g: Any) -> None:
    g.add_argument("--colormap", choices=COLORMAPS, default="viridis")
    g.add_argument("--normalise", "--normalize", dest="normalisation", choices=NORMALISATIONS, default="per_map")
    g.add_argument("--alpha", type=float, default=DEFAULT_OPACITY,
                   help=f"heatmap opacity in the overlay, 0..1 (default {DEFAULT_OPACITY}, as the window)")
    g.add_argument("--legend", action="store_true", help="write a colour-bar legend beside each heatmap")
    g.add_argument("--no-overlay", action="store_true", help="no heatmap-over-image PNGs")
    g.add_argument("--format", default="png,npy", help="png, npy or png,npy (default)")
    g.add_argument("--png-scale", type=png_scale_option, default="auto", metavar="N|auto",
                   help="enlarge heatmap and overlay PNGs N times, nearest neighbour (1: the image's size); "
                        f"auto (default): pictures whose short side is under {AUTO_SCALE_SIDE} px are enlarged "
                        f"until it is not (a 28x28 image gives 280x280). Mask and binary PNGs keep their size")
    g.add_argument("--npy-layout", choices=("stacked", "files"), default="stacked",
                   help="stacked (default): one .npy per map under DIR/arrays, a row per image "
                        "(the manifest gives each image's row); files: one .npy per image and map")


def _add_running_options(g: Any) -> None:
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"images per model call (default {DEFAULT_BATCH})")
    g.add_argument("--shard", metavar="I/N", help="export only shard I of N (1 <= I <= N) of the sorted image list")
    add_trust_options(g, trust_first=True,
                      trust_help="load models that contain Python code (runs that code)",
                      custom_help="Python file defining custom layers (needs --trust)")
    g.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in DIR")
    g.add_argument("--resume", action="store_true",
                   help="go on with an export into DIR that was killed: the same command, plus --resume; "
                        "images done are kept, the others exported (the result equals an uninterrupted run)")
    g.add_argument("--durable", action="store_true", help="fsync every file (slow for many small files)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    add_verbose_option(g)


# ---------------------------------------------------------------------------------------------
# Reading the values


@dataclass(frozen=True)
class ReduceSpec:
    """How a layer's channels become one map (``--reduce``): a method and its number."""

    method: str
    k: int = 5
    channel: int = 0

    @property
    def label(self) -> str:
        """The reduction as the manifest and file names show it (``top5``, ``channel3``, ``mean``)."""
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
    for s in stems.values():  # without case: ``A.png`` and ``a.png`` share a folder on macOS
        counts[s.casefold()] = counts.get(s.casefold(), 0) + 1
    for p, s in stems.items():
        if counts[s.casefold()] > 1:
            digest = hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]
            stems[p] = f"{s}-{digest}"
    return stems


def parse_inputs(values: list[str]) -> dict[str, str]:
    """``--input NAME=FILE`` values -> ``{NAME: FILE}``; each input named once."""
    out: dict[str, str] = {}
    for text in values:
        name, sep, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise UsageError(f"--input {text}: write NAME=FILE, e.g. --input density_a=density.png.")
        if name in out:
            raise UsageError(f"--input {name} is given twice; name each model input once.")
        if not Path(path).exists():
            raise UsageError(f"--input {text}: {path} does not exist.")
        out[name] = path
    return out


def plan_inputs(inputs: dict[str, str], info: Any, mask_feed: Any, notes: list[str]) -> dict[str, str]:
    """Check ``--input`` names against the model's image inputs and say, in ``notes``, what
    every input is fed (a model with several inputs is never fed one image silently).

    Raises
    ------
    UsageError
        An input the model does not have, or one the mask is fed to as well.
    """
    names = [t.name for t in info.inputs]
    unknown = [n for n in inputs if n not in names]
    if unknown:
        raise UsageError(
            f"--input {unknown[0]}: the model has no such input; its inputs are {', '.join(names)}."
        )
    masked = getattr(mask_feed, "input_name", None) if getattr(mask_feed, "mode", "none") == "input" else None
    if masked in inputs:
        raise UsageError(f"--input {masked} and the mask (--mask-mode input:{masked}) both feed {masked}; choose one.")
    fed = {n: ("the mask" if n == masked else inputs.get(n, "each image")) for n in names}
    if len(names) > 1 or inputs:
        notes.append("inputs: " + "; ".join(f"{n} <- {src}" for n, src in fed.items()) + ".")
    same = [n for n, src in fed.items() if src == "each image"]
    if len(same) > 1:
        notes.append(
            f"{', '.join(same)} are all fed the same image; feed an input from its own file with "
            "--input NAME=FILE (or NAME=DIR, one file per image stem)."
        )
    return inputs
