"""Loading data: the plan's seed data (`seed`) and the demo data set (`demo`, `demo_flows`).
"""
