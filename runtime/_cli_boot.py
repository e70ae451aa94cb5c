"""Imported first by the command line (``runtime/cli.py``): msgspec, loaded without
typing_extensions.

msgspec's ``_utils`` imports typing_extensions for three names: ``get_type_hints``,
``Required`` and ``NotRequired``. On Python 3.11 and later the last two are typing's
own, and typing_extensions' ``get_type_hints`` with ``include_extras=True`` (the only
way msgspec calls it) is ``typing.get_type_hints``; msgspec falls back to those when the
import fails. The import costs a CLI call ~8 ms (typing_extensions loads ``inspect``,
``dis``, ``ast`` and ``tokenize``). Nothing else changes: the name is blocked only
while msgspec loads, so a later import of typing_extensions (anyio's, in ``run``) gets
the module as usual.
"""

from __future__ import annotations

import sys

if "msgspec" not in sys.modules and "typing_extensions" not in sys.modules:
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # import → ImportError
    try:
        import msgspec  # noqa: F401
    finally:
        del sys.modules["typing_extensions"]
