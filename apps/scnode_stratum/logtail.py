"""The last lines of the translator log as upstream's ``TranslatorLogRecordOut`` records
(``/v1/translator/logs/tail`` and ``summary``): read from the file's end, no state."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

RECORD = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) +(?P<level>INFO|WARN|DEBUG|ERROR|TRACE) "
    r"(?P<target>[A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*): (?P<msg>.*)$"
)


def category_of(target: str, message: str) -> str:
    """A coarse category like upstream's: share, connection, upstream, job, difficulty, other."""
    if "mining.submit" in message or "SubmitShares" in message or "share" in message.lower():
        return "share"
    if "downstream" in message.lower() or "Downstream" in message or "authorize" in message:
        return "downstream"
    if "upstream" in message.lower() or "SetupConnection" in message:
        return "upstream"
    if "NewExtendedMiningJob" in message or "SetNewPrevHash" in message:
        return "job"
    if "SetTarget" in message or "UpdateChannel" in message or "vardiff" in target:
        return "difficulty"
    return "other"


def read_tail_records(path: Path, lines: int, max_bytes: int = 4 << 20) -> list[dict[str, Any]]:
    """Oldest first; continuation lines of multi-line records are appended to their record."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except (FileNotFoundError, PermissionError):
        return []
    text = data.decode("utf-8", "replace")
    if start > 0:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    records: list[dict[str, Any]] = []
    for line in text.split("\n"):
        m = RECORD.match(line)
        if m:
            records.append(
                {
                    "ts": m["ts"],
                    "level": m["level"],
                    "target": m["target"],
                    "category": category_of(m["target"], m["msg"]),
                    "message": m["msg"],
                    "raw": line,
                }
            )
        elif records and line:
            records[-1]["message"] += "\n" + line
            records[-1]["raw"] += "\n" + line
    return records[-lines:]
