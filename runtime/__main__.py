"""``python -m runtime …`` is the ``shepherd`` command line (see ``runtime.cli``)."""

from runtime.cli import main

raise SystemExit(main())
