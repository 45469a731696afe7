"""SQLAlchemy 2 typed models; import this package to register every table."""
from engine.models import deadlines  # noqa: F401 (registers the deadline tables)
from engine.models.api import ApiToken, IdempotencyRecord
from engine.models.audit import AuditCheckpoint, AuditEvent
from engine.models.base import Base
from engine.models.collab import Attachment, CarbonCopy, Comment, Notification, SavedFilter
from engine.models.ledger import LedgerIssue
from engine.models.org import LoginFailure, Membership, OrgUnit, Role, User
from engine.models.outbox import OutboxMessage
from engine.models.plan import Indicator, IndicatorValue, Industry, PlanItem
from engine.models.process import Incident, ProcessDefinition, ProcessFile, ProcessInstance, ProcessVersion
from engine.models.project import Bid, Project, ProjectLibrary, ProjectStage
from engine.models.task import HumanTask, TaskCandidate

__all__ = [
    "ApiToken",
    "Attachment",
    "AuditCheckpoint",
    "AuditEvent",
    "Base",
    "Bid",
    "CarbonCopy",
    "Comment",
    "HumanTask",
    "IdempotencyRecord",
    "Incident",
    "Indicator",
    "IndicatorValue",
    "Industry",
    "LedgerIssue",
    "LoginFailure",
    "Membership",
    "Notification",
    "OrgUnit",
    "OutboxMessage",
    "PlanItem",
    "ProcessDefinition",
    "ProcessFile",
    "ProcessInstance",
    "ProcessVersion",
    "Project",
    "ProjectLibrary",
    "ProjectStage",
    "Role",
    "SavedFilter",
    "TaskCandidate",
    "User",
]
