"""Parsing translator_sv2 logs into records and reducing records to their shape.

The record regex was built from the real SRI v1.5.0 logs (`fixtures/translator/real-v1.5.0`);
tests check it against them. Consumers (the stratum stats API) can parse with it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Built from the real lines: RFC3339 UTC with microseconds and `Z`, the level right-aligned in
# five columns, the tracing target (a Rust module path), then the message.
RECORD_START = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z "
    r"(?P<level> INFO| WARN|DEBUG|ERROR|TRACE) "
    r"(?P<target>[a-z0-9_]+(?:::[a-z0-9_]+)*): (?P<msg>.*)$"
)


@dataclass
class Record:
    level: str
    target: str
    message: str  # may contain newlines (multi-line debug records)


def parse_records(text: str) -> list[Record]:
    """Split a log into records; lines that do not start a record continue the previous one.

    Lines before the first record (a banner or panic text on a shared stderr, the tail of a record
    cut by copytruncate) are skipped.
    """
    records: list[Record] = []
    for line in text.split("\n"):
        match = RECORD_START.match(line)
        if match:
            records.append(Record(match["level"].strip(), match["target"], match["msg"]))
        elif records:
            records[-1].message += "\n" + line
    for record in records:
        record.message = record.message.rstrip("\n")
    return records


def shape(record: Record) -> str:
    """A record with its variable parts replaced: values differ, shapes must not."""
    text = record.message
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '"S"', text)
    text = re.sub(r"\b[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]{16,}\b", "H", text)
    text = re.sub(r"-?\d+(?:\.\d+)?", "N", text)
    text = re.sub(r"N(?:, N)+", "N*", text)
    text = re.sub(r"\[N\*?\]", "[N*]", text)
    text = re.sub(r"\bH\b|\bN\b(?=[a-f])", "H", text)
    text = re.sub(r"N\.N\.N\.N:N", "ADDR", text)
    text = re.sub(r"\bminerN\b", "minerN", text)
    text = re.sub(r"user_identity: [\w./-]+\.minerN", "user_identity: ID.minerN", text)
    text = re.sub(
        r"user_identity: [\w/-]+\.translator-proxy", "user_identity: ID.translator-proxy", text
    )
    return f"{record.level} {record.target}: {text}"


def shapes(records: Iterable[Record]) -> set[str]:
    return {shape(r) for r in records}
