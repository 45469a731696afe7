"""Documents the engine issues: numbers by rule, verification codes, PDFs with an embedded CJK font."""
from engine.documents.core import (
    MAX_CHECKED_FILE,
    Counter,
    FileTooLarge,
    NoDigest,
    PublicFacts,
    counters,
    display_code,
    for_instance,
    issue,
    matches,
    new_code,
    normalize_code,
    public_facts,
    record_miss,
    verify,
    verify_link,
    verify_wait,
)
from engine.documents.models import DocumentSequence, IssuedDocument
from engine.documents.numbering import NumberRule, allocate, check_template, rule
from engine.documents.pdf import FontMissing

__all__ = ["MAX_CHECKED_FILE", "Counter", "DocumentSequence", "FileTooLarge", "FontMissing", "IssuedDocument", "NoDigest",
           "NumberRule", "PublicFacts", "allocate", "check_template", "counters", "display_code", "for_instance", "issue",
           "matches", "new_code", "normalize_code", "public_facts", "record_miss", "rule", "verify", "verify_link",
           "verify_wait"]
