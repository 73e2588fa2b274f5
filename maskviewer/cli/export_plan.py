"""The export plan: what to compute for every image, decided once the model is known.

:func:`make_plan` checks the options against the loaded model (its layers, inputs and
outputs) so that a mistake is reported before the first image is read. Each ``_plan_*``
helper decides one part; they run in the order the errors should be reported.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from maskviewer.cli.args import UsageError
from maskviewer.cli.export_methods import INPUT_CHOICES, default_input, method_params
from maskviewer.cli.export_options import (
    COMBINE_ALIASES,
    ReduceSpec,
    parse_inputs,
    parse_reduce,
    parse_threshold,
    plan_inputs,
)
from maskviewer.core.errors import MaskviewerError


@dataclass
class Plan:
    """What the export computes for each image, and the notes to show before it starts."""

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
    #: layer / output name -> its part of the file names, unique by construction (see
    #: :func:`maskviewer.io.export.naming.name_tokens`)
    tokens: dict[str, str] = field(default_factory=dict)
    #: model input -> the file (or folder of per-image files) it is fed from (``--input``)
    inputs: dict[str, str] = field(default_factory=dict)
    #: the ``--cam`` method's parameters (SmoothGrad's samples and noise, IG's steps and baseline)
    cam_params: dict = field(default_factory=dict)
    #: ``--faithfulness``: ``{"steps", "baselines"}`` of the CAMs' deletion and insertion curves
    faithfulness: dict | None = None
    #: ``--attention``, ``--cam rollout|attribution``, ``--grid``, ``--extra-tokens`` (AttentionPlan)
    transformer: Any = None

    def renamed(self) -> dict[str, str]:
        """The names whose files carry a hash because another name would share their files."""
        from maskviewer.io.export import safe_name

        return {name: token for name, token in self.tokens.items() if token != safe_name(name)}

    def settings(self) -> dict:
        """The plan as the manifest records it (JSON-ready)."""
        return {
            "layers": self.layers if self.activations else [],
            "reduce": self.reduce.label if self.activations else None,
            "cam": self.cam,
            "cam_layers": self.cam_layers if self.cam else [],
            "cam_params": self.cam_params or None,
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
            "faithfulness": self.faithfulness,
            **({"transformer": self.transformer.settings()} if self.transformer is not None else {}),
        }


class _Layers(NamedTuple):
    """The model's layers as the options see them."""

    by_path: dict[str, Any]  # path -> LayerEntry
    spatial: list[str]  # layers with an (H, W, C) output, the input layers included
    chosen: list[str]  # the layers to export (--layer, or every drawable spatial layer)


def make_plan(args: argparse.Namespace, host: Any) -> Plan:
    """Check the arguments against the loaded model and decide what to compute.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``maskviewer export`` options.
    host : maskviewer.inference.runner.ModelHost
        The loaded model.

    Raises
    ------
    UsageError
        Unknown layer or output, a reduction a layer cannot take, options that do not fit.
    """
    from maskviewer.cli.export_attention import plan_attention, token_cam

    info = host.info
    _check_inputs(info)
    reduce = parse_reduce(args.reduce)
    notes: list[str] = []
    transformer = plan_attention(args, host)  # sets the token grid override first
    if token_cam(args):  # rollout and attribution go through the attention layers, not --layer
        args = argparse.Namespace(**{**vars(args), "cam": None})
    layers = _plan_layers(args, host)
    activations = (args.cam is None or args.reduce is not None) and bool(layers.chosen)
    if transformer is not None and not transformer.empty and not args.layer and args.reduce is None:
        activations = False  # --attention / --cam rollout alone: no layer maps
    if not info.probe_supported and (args.cam or args.reduce):
        raise UsageError(info.note or "This model's layers cannot be probed.")
    if not info.probe_supported:
        notes.append("The model's layers cannot be probed: only its outputs are exported.")
    if activations:
        _check_reduction(reduce, layers)
    out_names = [t.name for t in info.outputs]
    if args.output is not None and args.output not in out_names:
        raise UsageError(f"--output {args.output}: the model has no such output; its outputs are {', '.join(out_names)}.")
    cam_layers = _plan_cam(args, info, layers, notes) if args.cam else []
    feed = _plan_mask_feed(args, info, notes)
    inputs = plan_inputs(parse_inputs(getattr(args, "inputs", [])), info, feed, notes)
    patch_spec = _plan_patches(args)
    threshold, binarise_output = _plan_threshold(args, info)
    tokens = _plan_names([*layers.chosen, *cam_layers, *out_names, "mask",
                          *(transformer.names() if transformer is not None else [])], notes)
    return Plan(
        layers=layers.chosen, attention={p for p in layers.chosen if layers.by_path[p].attention},
        reduce=reduce, activations=activations,
        cam=args.cam, cam_layers=cam_layers, cam_params=method_params(args) if args.cam else {},
        output=args.output, class_index=args.class_index,
        predictions=not args.no_predictions, mask_feed=feed, patch_spec=patch_spec,
        combine=COMBINE_ALIASES[args.combine], threshold=threshold, binarise_output=binarise_output,
        invert=args.invert, labels=_read_labels(args), resize=args.resize, scale=args.scale, notes=notes,
        tokens=tokens, inputs=inputs, faithfulness=_plan_faithfulness(args), transformer=transformer,
    )


def _plan_faithfulness(args: argparse.Namespace) -> dict | None:
    """``--faithfulness``: the steps and baselines of the curves (it scores the maps of --cam)."""
    if not getattr(args, "faithfulness", False):
        return None
    if not args.cam:
        raise UsageError("--faithfulness scores the maps --cam makes: add --cam (and --layer if you like).")
    steps = args.faithfulness_steps
    if not 2 <= steps <= 1024:
        raise UsageError(f"--faithfulness-steps {steps}: use 2 to 1024 steps.")
    return {"steps": steps, "baselines": {"deletion": args.deletion_baseline, "insertion": args.insertion_baseline}}


def _check_inputs(info: Any) -> None:
    """Refuse a model with an input that is not an image before any image is read (every one
    would fail the same way: the export feeds images only)."""
    from maskviewer.core.mapping import is_image_input

    other = [t for t in info.inputs if not is_image_input(t.shape)]
    if other:
        listed = ", ".join(f"{t.name} {t.shape_text()}" for t in other)
        raise UsageError(
            f"The model has input{'s' if len(other) > 1 else ''} that {'are' if len(other) > 1 else 'is'} "
            f"not an image ({listed}); maskviewer export feeds images (H, W, C) only."
        )


def _plan_names(names: list[str], notes: list[str]) -> dict[str, str]:
    """A file-name token per layer and output name, checked before any image is read: names
    that would share files (``inner/conv`` and ``inner_conv``) are told apart by a hash."""
    from maskviewer.io.export import ExportError, naming

    try:
        tokens = naming.name_tokens(names)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    renamed = {n: t for n, t in tokens.items() if t != naming.safe_name(n)}
    if renamed:
        notes.append(
            "These names would share files, so their files carry a hash of the full name "
            "(the manifest's file_names lists them): "
            + ", ".join(f"{n} -> {t}" for n, t in renamed.items()) + "."
        )
    return tokens


def _plan_layers(args: argparse.Namespace, host: Any) -> _Layers:
    """The model's layers, and the ones to export; refuses unknown ``--layer`` names."""
    info = host.info
    entries = []
    if info.probe_supported:
        from maskviewer.inference.probe import describe_layers

        entries = describe_layers(host)
    spatial = [e.path for e in entries if e.spatial]
    by_path = {e.path: e for e in entries}
    if not args.layer:
        drawable = [e.path for e in entries if e.spatial and e.class_name != "InputLayer"]
        return _Layers(by_path, spatial, drawable)
    unknown = [name for name in args.layer if name not in by_path]
    if unknown:
        if not info.probe_supported:
            raise UsageError(f"{info.note or 'This model cannot be probed.'} (asked for --layer {', '.join(unknown)})")
        raise UsageError(unknown_layer_message(unknown, list(by_path), args.model))
    return _Layers(by_path, spatial, list(dict.fromkeys(args.layer)))


#: the most names an unknown ``--layer`` message suggests
MAX_SUGGESTIONS = 5


def suggest_layers(name: str, paths: list[str], limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The layer paths a mistyped or unqualified ``name`` most likely means, best first.

    Nested paths whose last component is ``name`` (``block_13_expand`` ->
    ``mobilenetv2_1.00_96/block_13_expand``) come first, then the closest paths and last
    components by :func:`difflib.get_close_matches`.
    """
    import difflib

    nested = [p for p in paths if p.rsplit("/", 1)[-1] == name or p.endswith("/" + name)]
    by_last: dict[str, list[str]] = {}
    for p in paths:
        by_last.setdefault(p.rsplit("/", 1)[-1], []).append(p)
    close = difflib.get_close_matches(name, paths, n=limit, cutoff=0.6)
    for last in difflib.get_close_matches(name.rsplit("/", 1)[-1], list(by_last), n=limit, cutoff=0.6):
        close.extend(by_last[last])
    return list(dict.fromkeys(nested + close))[:limit]


def unknown_layer_message(unknown: list[str], paths: list[str], model: str) -> str:
    """A short message for ``--layer`` names the model lacks: a few suggestions each, and
    where to find every layer."""
    parts = []
    for name in unknown:
        hints = suggest_layers(name, paths)
        parts.append(f"{name} (did you mean {' or '.join(hints)}?)" if hints else name)
    plural = "s" if len(unknown) > 1 else ""
    return f"Unknown layer{plural}: {'; '.join(parts)}. `maskviewer info {model}` lists all layers."


def _check_reduction(reduce: ReduceSpec, layers: _Layers) -> None:
    """Refuse a channel the layers lack, or an attention map of a many-channel layer."""
    for path in layers.chosen:
        e = layers.by_path[path]
        c = e.shape[-1] if e.spatial and e.shape else None
        if reduce.method in ("channel", "grid") and c is not None and not 0 <= reduce.channel < c:
            raise UsageError(f"--reduce {reduce.label}: layer {path} has {c} channels (0 to {c - 1}).")
        if reduce.method == "attention" and e.spatial and c not in (None, 1):
            raise UsageError(
                f"--reduce attention: layer {path} has {c} channels; an attention map needs a "
                "single-channel layer. Choose the layers with --layer or another reduction."
            )


def _plan_cam(args: argparse.Namespace, info: Any, layers: _Layers, notes: list[str]) -> list[str]:
    """The layers ``--cam`` draws on (``--layer``, or the last spatial layer larger than 1×1
    that the explained output is computed from); checks ``--class``."""
    from maskviewer.core.heatmap import default_cam_layer, is_one_by_one

    explained = args.output or (info.outputs[0].name if info.outputs else None)

    if args.cam in INPUT_CHOICES:  # drawn on the input's pixels: no layer
        cam_layers = [default_input(info)]
        if args.layer:
            notes.append(f"--cam {args.cam} draws on the input's pixels; --layer is not used for it.")
    elif args.layer:
        flat = [p for p in args.layer if not layers.by_path[p].spatial]
        if flat:
            raise UsageError(f"--cam needs spatial layers; {', '.join(flat)} {'has' if len(flat) == 1 else 'have'} no (H, W, C) output. `maskviewer info {args.model}` lists the layers and their shapes.")
        cam_layers = list(dict.fromkeys(args.layer))
        _check_cam_layers(cam_layers, info, explained, notes)
    else:
        default = default_cam_layer(info, explained)
        if default is None:
            raise UsageError("--cam: the model has no spatial layer to draw a CAM on.")
        cam_layers = [default.path]
        if is_one_by_one(default):
            notes.append(f"--cam: every layer {explained} is computed from is 1×1 here; the CAM on {default.path} is a single value.")
    if args.class_index is not None:
        wanted = args.output or info.outputs[0].name
        spec = next((t for t in info.outputs if t.name == wanted), None)
        n = spec.shape[-1] if spec is not None and spec.shape else None
        if isinstance(n, int) and not 0 <= args.class_index < n:
            raise UsageError(f"--class {args.class_index}: the output {spec.name} has {n} classes (0 to {n - 1}).")
    return cam_layers


def _check_cam_layers(paths: list[str], info: Any, output: str | None, notes: list[str]) -> None:
    """Refuse a ``--layer`` the explained output is not computed from; note 1×1 layers."""
    from maskviewer.core.heatmap import is_one_by_one

    for path in paths:
        layer = info.find_layer(path)
        if layer is None:
            continue
        if output is not None and layer.feeds is not None and output not in layer.feeds:
            feeds = ", ".join(layer.feeds) or "no output"
            raise UsageError(
                f"--cam: the output {output} is not computed from layer {path} (it feeds {feeds}); "
                "choose a layer on the way to that output, or another --output."
            )
        if is_one_by_one(layer):
            notes.append(f"--cam: layer {path} is 1×1, so its CAM is a single value; choose an earlier layer for a map.")


def _plan_mask_feed(args: argparse.Namespace, info: Any, notes: list[str]) -> Any:
    """How ``--mask`` feeds the model: ``--mask-mode``, or proposed as the window does."""
    from maskviewer.core.mask_feed import MaskFeed, feed_options, propose_mask_mode

    if args.mask is None and args.mask_mode is None:
        return None
    if args.mask is None:
        raise UsageError("--mask-mode needs --mask FILE (or a folder of masks).")
    mode_text = args.mask_mode
    options = feed_options(info)
    if mode_text is None:
        proposal = propose_mask_mode(info)
        if proposal.mode == "none":
            notes.append("The mask is exported but not fed to the model (give --mask-mode to feed it).")
        return MaskFeed(proposal.mode, proposal.input_name, "mask")
    mode, _, name = mode_text.partition(":")
    if mode not in ("none", "channel", "multiply", "input"):
        raise UsageError(f"--mask-mode {mode_text}: use channel, multiply, input:NAME or none.")
    if mode == "none":
        return MaskFeed()
    fitting = [o for o in options if o.mode == mode and (not name or o.input_name == name)]
    if not fitting:
        ok = ", ".join(o.label for o in options)
        raise UsageError(f"--mask-mode {mode_text} does not fit this model's inputs; possible: {ok}.")
    return MaskFeed(mode, fitting[0].input_name, "mask")


def _plan_patches(args: argparse.Namespace) -> Any:
    """The ``PatchSpec`` of ``--patch-size/-stride/-rate/-padding``, or None."""
    from maskviewer.core.patches import PADDINGS, PatchSpec, parse_pair

    if args.patch_size is None:
        if args.patch_stride is not None or args.patch_rate != "1":
            raise UsageError("--patch-stride and --patch-rate need --patch-size.")
        return None
    try:
        size = parse_pair(args.patch_size, "--patch-size")
        stride = parse_pair(args.patch_stride, "--patch-stride") if args.patch_stride else size
        rate = parse_pair(args.patch_rate, "--patch-rate")
    except MaskviewerError as exc:
        raise UsageError(str(exc)) from exc
    padding = args.patch_padding.upper()
    assert padding in PADDINGS
    return PatchSpec(size, stride, rate, padding)


def _plan_threshold(args: argparse.Namespace, info: Any) -> tuple[tuple[str, float | None] | None, str | None]:
    """``(threshold, output to binarise)``; the output must be image-shaped."""
    from maskviewer.core.predictions import output_kind

    threshold = parse_threshold(args.threshold)
    if threshold is None:
        if args.reference is not None or args.invert:
            raise UsageError("--reference and --invert need --threshold.")
        return None, None
    image_outputs = [t.name for t in info.outputs if output_kind(tuple(t.shape[1:])) == "image"]
    binarise_output = args.output or (image_outputs[0] if image_outputs else None)
    if binarise_output is None or binarise_output not in image_outputs:
        shapes = ", ".join(f"{t.name} {t.shape_text()}" for t in info.outputs)
        raise UsageError(
            f"--threshold binarises an image-shaped output (H, W) or (H, W, C<=4); "
            f"{'--output ' + binarise_output + ' is not one' if binarise_output else 'this model has none'} "
            f"(outputs: {shapes})."
        )
    return threshold, binarise_output


def _read_labels(args: argparse.Namespace) -> list[str] | None:
    """The class names of ``--labels``, or None."""
    from maskviewer.core.predictions import read_labels

    if not args.labels:
        return None
    try:
        return read_labels(args.labels)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--labels {args.labels}: {exc}") from exc
