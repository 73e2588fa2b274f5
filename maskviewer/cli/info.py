"""``maskviewer info MODEL [--json]``: describe a model's inputs, outputs and layers, headless."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from maskviewer.cli.args import (
    UsageError,
    add_trust_options,
    add_verbose_option,
    check_paths,
    check_trust,
    load_model,
    quiet_backend,
    say,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``maskviewer info`` command line."""
    p = argparse.ArgumentParser(prog="maskviewer info", description="Describe a model.")
    p.add_argument("model", help=".keras, .h5, or a SavedModel folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_trust_options(p, custom_help=None, trust_help="allow models that contain Python code")
    add_verbose_option(p)
    return p


def info_main(argv: list[str]) -> int:
    """The ``maskviewer info`` command; returns the exit status (0 shown, 1 unreadable, 2 refused)."""
    args = build_parser().parse_args(argv)
    from maskviewer.core.errors import MaskviewerError, UnsafeModelError

    signatures = host = None
    try:
        check_paths(args, "model", "custom_objects")  # before the backend: a missing file fails at once
        check_trust(args)
        quiet_backend(args)
        info, signatures, host = _describe(args)
    except UsageError as exc:
        say(f"maskviewer: {exc}")
        return 2
    except UnsafeModelError as exc:
        say(f"maskviewer: {exc}\nAdd --trust to load it anyway.")
        return 2
    except MaskviewerError as exc:
        say(f"maskviewer: {exc}")
        return 1
    if args.json:
        data = asdict(info)
        for group in ("inputs", "outputs"):  # an output's last layer, where it is known
            for t in data.get(group, []):
                for key in ("activation", "layer_class"):
                    if group == "inputs" or not t.get(key):
                        t.pop(key, None)
        if signatures is not None:
            data["signatures"] = signatures
        data["proposed_mappings"] = proposed_mappings(info)
        data["output_kinds"] = output_kinds(info)
        data["transformer"] = transformer_layers(host)
        print(json.dumps(data, indent=2, default=str))
    else:
        print_info(info)
        print_transformer(transformer_layers(host))
        for name, sig in (signatures or {}).items():
            print(f"signature {name!r}: inputs " + ", ".join(_tensor(t) for t in sig["inputs"])
                  + "; outputs " + ", ".join(_tensor(t) for t in sig["outputs"]))
    return 0


def _describe(args: argparse.Namespace) -> tuple[Any, dict | None, Any]:
    """The model's description, its signatures and the loaded model's host; a SavedModel
    without ``--trust`` is read, never loaded or run (its graph can hold any TensorFlow op):
    its signatures come along, and there is no host."""
    from maskviewer.inference.model_files import is_savedmodel_dir

    if not args.trust and is_savedmodel_dir(args.model):
        from maskviewer.inference.loading import savedmodel_info

        return (*savedmodel_info(args.model), None)
    host = load_model(args)
    return host.info, None, host


#: how a token grid was found, in words
GRID_SOURCES = {"model": "the input size ÷ the model's patch size", "tokens": "the token count",
                "user": "given"}


def transformer_layers(host: Any) -> dict:
    """Per token layer, its patch grid and extra tokens; per MultiHeadAttention layer, its
    heads — as the Layers and Attention pages read them ({} for other models, or unloaded)."""
    from maskviewer.core.errors import MaskviewerError

    if host is None:
        return {}
    from maskviewer.inference.probe import describe_layers

    try:
        entries = describe_layers(host)
    except MaskviewerError:  # a model whose layers cannot be probed has no pages to read them
        return {}
    out: dict[str, dict] = {}
    for e in entries:
        found: dict[str, Any] = {}
        if e.tokens is not None:
            found["tokens"] = e.tokens.manifest()
        if e.heads:
            found["heads"] = e.heads
        if found:
            out[e.path] = found
    return out


def print_transformer(layers: dict) -> None:
    """The token layers by grid and the attention layers by heads, as text (nothing when none)."""
    if not layers:
        return
    print("token layers and attention (as the Layers and Attention pages read them; "
          "export's --grid and --extra-tokens override the grid):")
    grids: dict[str, list[str]] = {}
    heads: dict[int, list[str]] = {}
    for path, found in layers.items():
        if "tokens" in found:
            t = found["tokens"]
            extra = t["tokens_dropped"]
            text = (f"{t['grid'][0]}×{t['grid'][1]} token grid"
                    + (f" + {extra} extra token{'s' if extra != 1 else ''}" if extra else "")
                    + f" (from {GRID_SOURCES.get(t['grid_source'], t['grid_source'])})")
            grids.setdefault(text, []).append(path)
        if "heads" in found:
            heads.setdefault(found["heads"], []).append(path)
    for text, paths in grids.items():
        print(f"  {text}: {_names(paths)}")
    for n, paths in heads.items():
        print(f"  {n} attention heads: {_names(paths)}")


def _names(paths: list[str]) -> str:
    """Layer names, the first and last of a long run."""
    if len(paths) <= 4:
        return ", ".join(paths)
    return f"{len(paths)} layers, {paths[0]} … {paths[-1]}"


def _tensor(t: dict) -> str:
    shape = "(" + ", ".join("?" if d is None else str(d) for d in t["shape"]) + ")"
    return f"{t['name']} {shape} {t['dtype']}"


def print_info(info: Any) -> None:
    """Print a ``ModelInfo`` as text: name, inputs, outputs and the layer tree."""
    print(f"{info.name}  ({info.kind}, {info.total_params:,} parameters)")
    if info.note:
        print(f"  note: {info.note}")
    for group, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        print(f"{group}:")
        for t in tensors:
            print(f"  {t.name:30s} {t.shape_text():20s} {t.dtype}")
    kinds = output_kinds(info)
    if kinds:
        print("outputs read as (proposed; change it in the Predictions panel):")
        for name, k in kinds.items():
            print(f"  {name:30s} {k['shown_as']} ({k['why']})")
    proposals = proposed_mappings(info)
    if proposals:
        print("input mapping (proposed; change it with --resize/--scale or in the Input panel):")
        for name, p in proposals.items():
            print(f"  {name:30s} resize {p['resize']}, scale {p['scale_option']}")
            print(f"  {'':30s} {p['why']}")
    print("layers:")
    for layer in info.iter_layers():
        depth = layer.path.count("/")
        print(
            f"  {'  ' * depth}{layer.name:{max(1, 30 - 2 * depth)}s} {layer.class_name:24s} "
            f"{layer.shape_text():22s} {layer.params:>10,}"
        )


def output_kinds(info: Any) -> dict:
    """Per output: how the window reads it (class scores, labels, values, a map) and why."""
    from maskviewer.cli.export_report import output_kinds as kinds

    return kinds(info)


def proposed_mappings(info: Any) -> dict:
    """Per image input: the mapping proposed for an image file, and why (what was read)."""
    from maskviewer.core.mapping import explain_mapping, is_image_input, propose_mapping, scale_text

    out = {}
    for t in info.inputs:
        if not is_image_input(t.shape):
            continue
        pre = getattr(info, "preprocessing", {}).get(t.name)
        m = propose_mapping(t.shape, None, info.expects_0_255, pre)
        out[t.name] = {**m.to_dict(), "scale_option": scale_text(m), "why": explain_mapping(pre)}
    return out
