"""并联审批: services for parallel_approval.bpmn (department choice, working days against the SLAs)."""
from __future__ import annotations
