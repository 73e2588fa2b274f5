"""Command line: ``maskviewer [IMAGE] [--model MODEL] ...`` opens the window;
``maskviewer info MODEL`` describes a model and ``maskviewer export IMAGE... --model MODEL
--out DIR`` writes its maps, both without a display.

Importing this package imports neither Qt nor TensorFlow: each command's module is imported
by the function that runs it (:mod:`maskviewer.cli.gui`, :mod:`maskviewer.cli.info`,
:mod:`maskviewer.cli.export`), and those import the heavy libraries only once their arguments
are checked.
"""

from __future__ import annotations

import sys


def info_main(argv: list[str]) -> int:
    """``maskviewer info``; see :func:`maskviewer.cli.info.info_main`."""
    from maskviewer.cli.info import info_main as run

    return run(argv)


def export_main(argv: list[str]) -> int:
    """``maskviewer export``; see :func:`maskviewer.cli.export.export_main`."""
    from maskviewer.cli.export import export_main as run

    return run(argv)


def evaluate_main(argv: list[str]) -> int:
    """``maskviewer evaluate``; see :func:`maskviewer.cli.evaluate.evaluate_main`."""
    from maskviewer.cli.evaluate import evaluate_main as run

    return run(argv)


def merge_main(argv: list[str]) -> int:
    """``maskviewer merge``; see :func:`maskviewer.cli.evaluate.merge_main`."""
    from maskviewer.cli.evaluate import merge_main as run

    return run(argv)


def gui_main(argv: list[str]) -> int:
    """``maskviewer [IMAGE] ...``: the window; see :func:`maskviewer.cli.gui.gui_main`."""
    from maskviewer.cli.gui import gui_main as run

    return run(argv)


#: subcommand name -> the function that runs it on the rest of the arguments
SUBCOMMANDS = {"info": info_main, "export": export_main, "evaluate": evaluate_main, "merge": merge_main}


def main(argv: list[str] | None = None) -> int:
    """The ``maskviewer`` console script: a subcommand, or else the window.

    Parameters
    ----------
    argv : list of str, optional
        The arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return gui_main(argv)
