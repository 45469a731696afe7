"""招商线索闭环: the service tasks of investment_lead.bpmn (派单—响应—对接—反馈) and queries of the leads."""
from plan.leads.core import OPEN_STATES, contact, dispatch, feedback, list_leads, overdue, register, respond

__all__ = ["OPEN_STATES", "contact", "dispatch", "feedback", "list_leads", "overdue", "register", "respond"]
