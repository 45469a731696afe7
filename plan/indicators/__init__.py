"""The plan's indicators: targets, industries and plan items (`models`), and entering figures (the names below).
"""
from plan.indicators.core import (
    MAX_BYTES,
    MAX_TABLE_ROWS,
    UploadInvalid,
    apply_upload,
    can_enter,
    current_figures,
    preview_upload,
    read_table,
    require_entry,
    save_form,
    template_csv,
    template_xlsx,
)

__all__ = [
    "MAX_BYTES",
    "MAX_TABLE_ROWS",
    "UploadInvalid",
    "apply_upload",
    "can_enter",
    "current_figures",
    "preview_upload",
    "read_table",
    "require_entry",
    "save_form",
    "template_csv",
    "template_xlsx",
]
