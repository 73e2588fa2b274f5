"""Command line: ``maskviewer [IMAGE] [--model MODEL] ...`` opens the window;
``maskviewer info MODEL`` describes a model without a display.

Qt and TensorFlow are imported only inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import sys

from maskviewer import __version__


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maskviewer",
        description="See what a Keras model does with an image and a mask.",
        epilog="Subcommands: 'maskviewer info MODEL [--json]' prints a model's inputs, outputs "
        "and layers; 'maskviewer export IMAGE... --model MODEL --out DIR' writes heatmaps and "
        "maps without a display (see 'maskviewer export --help').",
    )
    p.add_argument("image", nargs="?", help="image to open (PNG, JPEG, BMP, TIFF, NPY)")
    p.add_argument("--model", "-m", help="model to open (.keras, .h5, or a SavedModel folder)")
    p.add_argument(
        "--custom-objects",
        action="append",
        default=[],
        metavar="FILE.py",
        help="Python file defining custom layers (repeatable; runs the file, asks first)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="load models that contain Python code and run custom-objects files without asking",
    )
    p.add_argument("--demo", nargs="?", const="", metavar="NAME", help="open a bundled demo")
    p.add_argument("--version", action="version", version=f"maskviewer {__version__}")
    return p


def _info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskviewer info", description="Describe a model.")
    p.add_argument("model", help=".keras, .h5, or a SavedModel folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--custom-objects", action="append", default=[], metavar="FILE.py")
    p.add_argument("--trust", action="store_true", help="allow models that contain Python code")
    return p


def info_main(argv: list[str]) -> int:
    args = _info_parser().parse_args(argv)
    from dataclasses import asdict

    from maskviewer.core.errors import MaskviewerError, UnsafeModelError
    from maskviewer.inference.backend import init_backend
    from maskviewer.inference.loading import load_custom_objects
    from maskviewer.inference.runner import ModelHost

    try:
        init_backend()
        if args.custom_objects and not args.trust:
            print(
                "maskviewer: --custom-objects runs Python code; add --trust to allow it.",
                file=sys.stderr,
            )
            return 2
        custom = load_custom_objects(args.custom_objects) if args.custom_objects else None
        info = ModelHost().load(args.model, safe_mode=not args.trust, custom_objects=custom)
    except UnsafeModelError as exc:
        print(f"maskviewer: {exc}\nAdd --trust to load it anyway.", file=sys.stderr)
        return 2
    except MaskviewerError as exc:
        print(f"maskviewer: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(info), indent=2, default=str))
        return 0
    print(f"{info.name}  ({info.kind}, {info.total_params:,} parameters)")
    if info.note:
        print(f"  note: {info.note}")
    for group, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        print(f"{group}:")
        for t in tensors:
            print(f"  {t.name:30s} {t.shape_text():20s} {t.dtype}")
    print("layers:")
    for layer in info.iter_layers():
        depth = layer.path.count("/")
        print(
            f"  {'  ' * depth}{layer.name:{max(1, 30 - 2 * depth)}s} {layer.class_name:24s} "
            f"{layer.shape_text():22s} {layer.params:>10,}"
        )
    return 0


def export_main(argv: list[str]) -> int:
    from maskviewer.export_cli import export_main as run

    return run(argv)


SUBCOMMANDS = {"info": info_main, "export": export_main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = _gui_parser().parse_args(argv)
    from maskviewer.gui.app import run_app

    return run_app(
        image=args.image,
        model=args.model,
        custom_objects=args.custom_objects,
        trust=args.trust,
        demo=args.demo,
    )
