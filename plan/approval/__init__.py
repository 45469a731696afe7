"""并联审批: the service tasks of parallel_approval.bpmn (acceptance, review rounds, working days used).
"""
