"""Rules for files users put on the server: which declared types are kept, and what a zip may hold.

A declared Content-Type is the uploader's claim, nothing more: only inert types (ones a browser
neither runs nor renders as a document) are kept, anything else is stored and served as
application/octet-stream. Zip containers (XLSX files, modeller bundles) are inspected from their
central directory before anything is decompressed: entry count, declared sizes and the
compression ratio are bounded, so a small upload cannot expand into gigabytes.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from engine.errors import InvalidInput

OCTET = "application/octet-stream"
# No HTML, XML, SVG, JavaScript, CSS, PDF or XSL: those execute or render active content.
INERT_TYPES = frozenset({
    "text/plain", "text/csv", "application/json", "application/zip", "application/x-zip-compressed",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/x-7z-compressed", "application/x-rar-compressed", "application/gzip",
})


def safe_type(declared: str | None) -> str:
    """Return the declared type if it is inert (its parameters dropped), else application/octet-stream."""
    base = (declared or "").split(";", 1)[0].strip().lower()
    return base if base in INERT_TYPES else OCTET


@dataclass(frozen=True)
class ZipLimits:
    """How much a zip may hold: entries, bytes of one entry and of all, and the expansion ratio."""

    max_entries: int = 1000
    max_entry_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 128 * 1024 * 1024
    max_ratio: int = 100  # uncompressed / compressed, for entries over 1 MB


def _declared_entries(data: bytes) -> int | None:
    """Read the entry count from the end-of-central-directory record, before zipfile builds its index."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    return int.from_bytes(data[end + 10:end + 12], "little")


def open_zip(data: bytes, name: str, limits: ZipLimits, *, field: str = "file") -> zipfile.ZipFile:
    """Return the zip after checking its directory against the limits; nothing is decompressed.

    Raises: InvalidInput naming the file (not a zip, too many entries, too large, a zip bomb)
    """
    declared = _declared_entries(data)
    if declared is not None and declared > limits.max_entries:
        raise InvalidInput(f"压缩包条目过多 (more than {limits.max_entries} entries): {name}", field=field)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"不是有效的 zip 文件 (not a valid zip file): {name}: {exc}", field=field) from None
    if len(members) > limits.max_entries:
        raise InvalidInput(f"压缩包条目过多 (more than {limits.max_entries} entries): {name}", field=field)
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > limits.max_entry_bytes or total > limits.max_total_bytes:
            raise InvalidInput(f"压缩包解压后过大 (expands beyond the limit): {name}: {member.filename}", field=field)
        if member.file_size > 1024 * 1024 and member.file_size > limits.max_ratio * max(member.compress_size, 1):
            raise InvalidInput(f"压缩比异常，疑似压缩炸弹 (compression ratio above {limits.max_ratio}): "
                               f"{name}: {member.filename}", field=field)
    return archive


__all__ = ["INERT_TYPES", "OCTET", "ZipLimits", "open_zip", "safe_type"]
