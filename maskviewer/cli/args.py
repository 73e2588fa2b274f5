"""Options every command shares: which model, which custom-objects files, and whether to trust them.

No Qt and no TensorFlow at import: :func:`load_model` imports the inference backend only when
a command has checked its arguments and really needs the model.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from maskviewer.core.errors import MaskviewerError

#: ``--custom-objects`` as the window's command line explains it
CUSTOM_OBJECTS_HELP = "Python file defining custom layers (repeatable; runs the file, asks first)"
#: ``--trust`` as the window's command line explains it
TRUST_HELP = "load models that contain Python code and run custom-objects files without asking"


class UsageError(MaskviewerError):
    """Arguments that cannot work together; nothing was done."""


def add_trust_options(
    parser: Any,
    *,
    custom_help: str | None = CUSTOM_OBJECTS_HELP,
    trust_help: str = TRUST_HELP,
    trust_first: bool = False,
) -> None:
    """Add ``--custom-objects FILE.py`` (repeatable) and ``--trust`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the options go.
    custom_help, trust_help : str
        The commands word their help for their own use (the window asks; the others refuse).
    trust_first : bool
        List ``--trust`` first in the help.
    """

    def custom() -> None:
        parser.add_argument(
            "--custom-objects", action="append", default=[], metavar="FILE.py", help=custom_help
        )

    if not trust_first:
        custom()
    parser.add_argument("--trust", action="store_true", help=trust_help)
    if trust_first:
        custom()


def add_verbose_option(parser: Any) -> None:
    """Add ``--verbose``: show the backend's own start-up and log lines (hidden otherwise)."""
    parser.add_argument(
        "--verbose", action="store_true",
        help="also show TensorFlow's own start-up and log messages (hidden otherwise)",
    )


def quiet_backend(args: argparse.Namespace) -> None:
    """Keep the backend's chatter off the terminal unless ``--verbose`` (see
    :mod:`maskviewer.cli.quiet`); call before the backend is imported."""
    from maskviewer.cli.quiet import install

    install(bool(getattr(args, "verbose", False)))


def check_paths(args: argparse.Namespace, *names: str) -> None:
    """Refuse at once an ``args`` path that does not exist (before any backend is imported:
    a mistyped name fails in a moment, not after TensorFlow's start).

    Parameters
    ----------
    names : str
        Attributes of ``args`` holding a path, or a list of paths (``custom_objects``).

    Raises
    ------
    UsageError
        A path is missing; the message names it.
    """
    from pathlib import Path

    for name in names:
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value]:
            if path is not None and not Path(path).exists():
                what = "the model" if name == "model" else f"--{name.replace('_', '-')}"
                raise UsageError(f"{path}: no such file or folder ({what}).")


def check_trust(args: argparse.Namespace) -> None:
    """Refuse ``--custom-objects`` without ``--trust``: without a window nobody can be asked.

    Raises
    ------
    UsageError
        Custom-objects files were given without ``--trust``.
    """
    if args.custom_objects and not args.trust:
        raise UsageError("--custom-objects runs Python code; add --trust to allow it.")


def load_model(args: argparse.Namespace) -> Any:
    """Start the backend and load ``args.model`` as the options allow; returns the ``ModelHost``.

    Raises
    ------
    maskviewer.core.errors.UnsafeModelError
        The model holds Python code and ``--trust`` was not given.
    maskviewer.core.errors.MaskviewerError
        The model or a custom-objects file could not be loaded.
    """
    from maskviewer.inference.backend import init_backend
    from maskviewer.inference.loading import load_custom_objects
    from maskviewer.inference.runner import ModelHost

    init_backend()
    custom = load_custom_objects(args.custom_objects) if args.custom_objects else None
    host = ModelHost()
    host.load(args.model, safe_mode=not args.trust, custom_objects=custom)
    return host


def say(message: str) -> None:
    """Print ``message`` on stderr at once (progress and errors share the terminal)."""
    print(message, file=sys.stderr, flush=True)
