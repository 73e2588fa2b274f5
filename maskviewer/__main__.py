from maskviewer.cli import main

raise SystemExit(main())
