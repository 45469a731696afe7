"""Read what a browser sends to deploy: files edited in the modeller (JSON) or uploaded (.bpmn/.dmn/.json/.zip).

Everything is bounded (names, sizes, zip entries) and anything unusual is an InvalidInput naming the
file, never a server error; the deploy service then validates the content itself.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.datastructures import FileStorage

from engine.errors import InvalidInput
from engine.tasks.uploads import ZipLimits, open_zip

DEPLOYABLE = (".bpmn", ".bpmn20.xml", ".dmn", ".json")
MAX_NAME = 200
MAX_FILES = 200
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
ZIP_LIMITS = ZipLimits(max_entries=1000, max_entry_bytes=4 * MAX_TOTAL_BYTES, max_total_bytes=4 * MAX_TOTAL_BYTES,
                               max_ratio=100)
SAFE_NAME = re.compile(r"^[^\x00-\x1f/\\<>:\"|?*]+$")


def _name(raw: str) -> str:
    """Return a file's base name, refusing what could not be a file name in a version."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > MAX_NAME or not SAFE_NAME.match(name) or name in (".", ".."):
        raise InvalidInput(f"文件名无效 (invalid file name): {raw[:80]!r}", field="files")
    return name


def _deployable(name: str) -> bool:
    return name.lower().endswith(DEPLOYABLE)


def from_json(body: Any) -> dict[str, str]:
    """Return {name: text} from the modeller's JSON body {"files": {name: text}}.

    Raises: InvalidInput
    """
    files = body.get("files") if isinstance(body, Mapping) else None
    if not isinstance(files, Mapping) or not files:
        raise InvalidInput("请求须包含文件 (send {\"files\": {name: text}})", field="files")
    if len(files) > MAX_FILES:
        raise InvalidInput(f"文件太多 (at most {MAX_FILES} files)", field="files")
    result: dict[str, str] = {}
    total = 0
    for raw_name, text in files.items():
        name = _name(str(raw_name))
        if not isinstance(text, str):
            raise InvalidInput(f"文件内容须为文本 (file content must be text): {name}", field="files")
        if not _deployable(name):
            raise InvalidInput(f"不能部署此类文件 (not a .bpmn, .dmn or .json file): {name}", field="files")
        total += len(text.encode("utf-8"))
        if total > MAX_TOTAL_BYTES:
            raise InvalidInput("文件总大小超过限制 (files too large)", field="files")
        result[name] = text
    return result


def base_versions_from_json(body: Any) -> dict[str, int]:
    """Return {process key: version the edit started from} from the modeller's body {"base_versions": {...}}.

    Absent means "deploy whatever was deployed meanwhile" (older clients); 0 means a new process.

    Raises: InvalidInput
    """
    bases = body.get("base_versions") if isinstance(body, Mapping) else None
    if bases is None:
        return {}
    if not isinstance(bases, Mapping) or len(bases) > MAX_FILES:
        raise InvalidInput("基础版本须为 {流程标识: 版本号} (send {\"base_versions\": {key: version}})",
                           field="base_versions")
    result: dict[str, int] = {}
    for key, version in bases.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME or isinstance(version, bool) \
                or not isinstance(version, int) or not 0 <= version < 2**31:
            raise InvalidInput(f"基础版本无效 (invalid base version): {str(key)[:80]!r}: {str(version)[:20]!r}",
                               field="base_versions")
        result[key] = version
    return result


def _add(result: dict[str, bytes], name: str, data: bytes, total: int) -> int:
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"文件过大 (file too large): {name}", field="files")
    if name in result:
        raise InvalidInput(f"文件名重复 (the same file name twice): {name}", field="files")
    if len(result) >= MAX_FILES:
        raise InvalidInput(f"文件太多 (at most {MAX_FILES} files)", field="files")
    total += len(data)
    if total > MAX_TOTAL_BYTES:
        raise InvalidInput("文件总大小超过限制 (files too large)", field="files")
    result[name] = data
    return total


def _from_zip(upload_name: str, data: bytes, result: dict[str, bytes], total: int) -> int:
    # The directory is checked before anything is decompressed: entries, declared sizes, ratio (zip bombs).
    archive = open_zip(data, upload_name, ZIP_LIMITS, field="files")
    members = [m for m in archive.infolist() if not m.is_dir()]
    with archive:
        for member in members:
            base = member.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if not _deployable(base) or base.startswith("."):
                continue  # READMEs, images, __MACOSX/ — not part of a deployment
            if member.file_size > MAX_FILE_BYTES:
                raise InvalidInput(f"文件过大 (file too large): {base}", field="files")
            try:
                content = archive.read(member)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InvalidInput(f"zip 文件中的 {base} 无法读取 (cannot read {base} in {upload_name}): {exc}",
                                   field="files") from exc
            total = _add(result, _name(base), content, total)
    return total


def from_uploads(uploads: Iterable[FileStorage]) -> dict[str, bytes]:
    """Return {name: bytes} from uploaded files; a .zip contributes the deployable files it holds.

    Raises: InvalidInput
    """
    result: dict[str, bytes] = {}
    total = 0
    for upload in uploads:
        if not upload or not upload.filename:
            continue
        name = _name(upload.filename)
        data = upload.read(MAX_TOTAL_BYTES + 1)
        if name.lower().endswith(".zip"):
            total = _from_zip(name, data, result, total)
        elif _deployable(name) or name.lower().endswith(".xml"):
            total = _add(result, name if _deployable(name) else name[:-4] + ".bpmn", data, total)
        else:
            raise InvalidInput(f"不能部署此类文件 (upload .bpmn, .dmn, .json or .zip): {name}", field="files")
    if not result:
        raise InvalidInput("请选择要导入的文件 (choose .bpmn, .dmn, .json or .zip files)", field="files")
    return result


__all__ = ["base_versions_from_json", "from_json", "from_uploads"]
