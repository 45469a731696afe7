"""SQLAlchemy 2 typed models; import this package to register every table."""
from engine.models.audit import AuditCheckpoint, AuditEvent
from engine.models.base import Base
from engine.models.org import Membership, OrgUnit, Role, User
from engine.models.outbox import OutboxMessage
from engine.models.process import Incident, ProcessDefinition, ProcessFile, ProcessInstance, ProcessVersion
from engine.models.task import HumanTask, TaskCandidate

__all__ = [
    "AuditCheckpoint", "AuditEvent", "Base", "HumanTask", "Incident", "Membership", "OrgUnit",
    "OutboxMessage", "ProcessDefinition", "ProcessFile", "ProcessInstance", "ProcessVersion", "Role",
    "TaskCandidate", "User",
]
