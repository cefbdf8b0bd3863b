"""``python -m gateway.cli``: the same as the ``tidings`` command."""

from gateway.cli.main import main

raise SystemExit(main())
