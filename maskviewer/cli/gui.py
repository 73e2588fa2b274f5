"""``maskviewer [IMAGE] [--model MODEL] [--demo [NAME]]``: open the window.

Qt is imported only by :func:`gui_main`, once the arguments are parsed (``--help`` and
``--version`` need no display).
"""

from __future__ import annotations

import argparse

from maskviewer import __version__
from maskviewer.cli.args import add_trust_options


def build_parser() -> argparse.ArgumentParser:
    """The window's command line."""
    p = argparse.ArgumentParser(
        prog="maskviewer",
        description="See what a Keras model does with an image and a mask.",
        epilog="Subcommands: 'maskviewer info MODEL [--json]' prints a model's inputs, outputs "
        "and layers; 'maskviewer export IMAGE... --model MODEL --out DIR' writes heatmaps and "
        "maps without a display (see 'maskviewer export --help').",
    )
    p.add_argument("image", nargs="?", help="image to open (PNG, JPEG, BMP, TIFF, NPY)")
    p.add_argument("--model", "-m", help="model to open (.keras, .h5, or a SavedModel folder)")
    add_trust_options(p)
    p.add_argument("--demo", nargs="?", const="", metavar="NAME", help="open a bundled demo")
    p.add_argument("--version", action="version", version=f"maskviewer {__version__}")
    return p


def gui_main(argv: list[str]) -> int:
    """Open the window with what ``argv`` names; returns the application's exit status."""
    args = build_parser().parse_args(argv)
    from maskviewer.gui.app import run_app

    return run_app(
        image=args.image,
        model=args.model,
        custom_objects=args.custom_objects,
        trust=args.trust,
        demo=args.demo,
    )
