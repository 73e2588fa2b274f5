"""``python -m maskviewer``: the same as the ``maskviewer`` command."""

from maskviewer.cli import main

if __name__ == "__main__":  # worker processes import this module again without running it
    raise SystemExit(main())
