"""``python -m shepherd.runtime …``: the ``shepherd`` command line, as ``python -m shepherd``."""

from shepherd.runtime.cli import main

raise SystemExit(main())
