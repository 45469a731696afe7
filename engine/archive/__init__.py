"""Archiving long-ended instances (issue #16): the heavy parts leave the hot tables, the instance stays readable."""
