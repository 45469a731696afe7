"""七步工作法: services for investment_loop.bpmn (indicators, gaps, plan items, 揭榜挂帅)."""
from __future__ import annotations
