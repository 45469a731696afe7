"""The plan's indicators: targets, industries and plan items (`models`), and entering figures (the names below).
"""
from plan.indicators.core import (
    Replaced,
    apply_upload,
    can_enter,
    current_figures,
    period_version,
    require_entry,
    save_form,
    template_csv,
    template_xlsx,
)
from plan.indicators.preview import preview_upload
from plan.indicators.upload import MAX_BYTES, MAX_TABLE_ROWS, UploadInvalid, read_table

__all__ = [
    "MAX_BYTES",
    "MAX_TABLE_ROWS",
    "Replaced",
    "UploadInvalid",
    "apply_upload",
    "can_enter",
    "current_figures",
    "period_version",
    "preview_upload",
    "read_table",
    "require_entry",
    "save_form",
    "template_csv",
    "template_xlsx",
]
