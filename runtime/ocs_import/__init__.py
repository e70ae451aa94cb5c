"""Import from openclaw-scheduler (OCS): ``shepherd import ocs PATH``.

- ``reader``: the OCS database opened read-only, its schema version checked, a running
  OCS refused;
- ``mapping``: an OCS job row → a ``JobSpec`` and the fields not carried over (pure);
- ``schedule``: where each schedule continues, so no slot runs twice or is lost (pure);
- ``extras``: agents, aliases, pending messages, the dispatch queue (pure);
- ``importer``: the validated plan and its one write op (``store.ops.ImportBatch``);
- ``report``: the dry-run / result table and its JSON.
"""

from __future__ import annotations

from shepherd.runtime.ocs_import.importer import ImportPlan, batch_op, plan_import
from shepherd.runtime.ocs_import.reader import KNOWN_VERSIONS, OcsData, read_ocs
from shepherd.runtime.ocs_import.report import build_report, render_report

__all__ = [
    "KNOWN_VERSIONS",
    "ImportPlan",
    "OcsData",
    "batch_op",
    "build_report",
    "plan_import",
    "read_ocs",
    "render_report",
]
