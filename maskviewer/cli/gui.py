"""``maskviewer [IMAGE] [--model MODEL] [--demo [NAME]]``: open the window.

Qt is imported only by :func:`gui_main`, once the arguments are parsed (``--help`` and
``--version`` need no display).
"""

from __future__ import annotations

import argparse

from maskviewer import __version__
from maskviewer.cli.args import add_trust_options, add_verbose_option, quiet_backend, say

#: how ``maskviewer --help`` shows a subcommand (the others: their name and their own --help)
SUBCOMMAND_HELP = {
    "info": ("info MODEL [--json]", "print a model's inputs, outputs, layers and proposed input mapping"),
    "export": ("export IMAGE... --model MODEL --out DIR", "write heatmaps, maps and masks without a display"),
}


def demo_names() -> list[str]:
    """The bundled demos' names (none when the index is missing or damaged)."""
    from maskviewer.core.errors import MaskviewerError
    from maskviewer.demo import list_demos

    try:
        return [d.name for d in list_demos()]
    except MaskviewerError:
        return []


def _epilog() -> str:
    from maskviewer.cli import SUBCOMMANDS

    lines = ["subcommands (each has its own --help, e.g. 'maskviewer export --help'):"]
    for name in SUBCOMMANDS:
        usage, what = SUBCOMMAND_HELP.get(name, (f"{name} ...", f"see 'maskviewer {name} --help'"))
        lines.append(f"  maskviewer {usage:42s} {what}")
    names = demo_names()
    lines += ["", "demos (maskviewer --demo NAME; --demo alone opens the gallery):",
              "  " + (", ".join(names) if names else "none installed")]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The window's command line (``maskviewer --help`` lists the subcommands and demos too)."""
    p = argparse.ArgumentParser(
        prog="maskviewer",
        description="See what a Keras model does with an image and a mask.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", nargs="?", help="image to open (PNG, JPEG, BMP, TIFF, NPY)")
    p.add_argument("--model", "-m", help="model to open (.keras, .h5, or a SavedModel folder)")
    add_trust_options(p)
    p.add_argument("--demo", nargs="?", const="", metavar="NAME",
                   help="open a bundled demo (the names are listed below); without NAME: the gallery")
    add_verbose_option(p)
    p.add_argument("--version", action="version", version=f"maskviewer {__version__}")
    return p


def gui_main(argv: list[str]) -> int:
    """Open the window with what ``argv`` names; returns the application's exit status.

    An unknown ``--demo`` name is refused here, with the names there are, before Qt starts.
    """
    args = build_parser().parse_args(argv)
    if args.demo:
        from maskviewer.core.errors import MaskviewerError
        from maskviewer.demo import get_demo

        try:
            get_demo(args.demo)
        except MaskviewerError as exc:
            say(f"maskviewer: {exc}")
            return 2
    quiet_backend(args)
    from maskviewer.gui.app import run_app

    return run_app(
        image=args.image,
        model=args.model,
        custom_objects=args.custom_objects,
        trust=args.trust,
        demo=args.demo,
    )
