"""Deployments: validate BPMN/DMN/form bundles, store versions, compare and migrate between them.

The names below are the public API; `versions` (history, diff, migration) and `bpmn_diff` are modules of their own.
"""
from engine.deploy.core import (
    Deployed,
    StaleBaseVersion,
    deploy,
    file_text,
    latest_version,
    read_directory,
)
from engine.spiff.translate import Translated, Translation, translate_bundle

__all__ = [
    "Deployed",
    "StaleBaseVersion",
    "Translated",
    "Translation",
    "deploy",
    "file_text",
    "latest_version",
    "read_directory",
    "translate_bundle",
]
