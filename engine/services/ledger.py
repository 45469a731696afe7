"""问题台账: services for issue_ledger.bpmn and the ledger_issue table."""
from __future__ import annotations
