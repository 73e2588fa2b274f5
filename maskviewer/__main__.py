"""``python -m maskviewer``: the same as the ``maskviewer`` command."""

from maskviewer.cli import main

raise SystemExit(main())
