"""``python -m shepherd …`` is the ``shepherd`` command line (see ``shepherd.runtime.cli``)."""

from shepherd.runtime.cli import main

raise SystemExit(main())
