"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.assurance.fuzz_checks``): one check of our own
on every fuzzed response, besides schemathesis' built-in ones.

``no_leak``: an error body (4xx/5xx) never carries a Python stack trace or any secret of the run;
a success body never carries a secret the caller was not given (API keys, RPC passwords, the
session secret). The secrets come from the file ``SCNODE_FUZZ_SECRETS_FILE`` names (one a line,
written by the test at run time: nothing secret is committed). A member's own session token may
come back to that member (a login answers with it), so tokens are listed apart, in
``SCNODE_FUZZ_TOKENS_FILE``, and checked in error bodies only.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import schemathesis

# what a Python traceback, a framework debug page or a raw exception repr looks like
TRACE_MARKERS = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+"
    r"|sqlalchemy\.exc\.|psycopg\.|sqlite3\.|<class '[A-Za-z_.]+Error'>"
)


@cache
def _lines(variable: str) -> tuple[str, ...]:
    name = os.environ.get(variable)
    if not name:
        return ()
    return tuple(line for line in Path(name).read_text().splitlines() if len(line) >= 8)


def leaks(body: str, status: int) -> list[str]:
    """What is wrong with a response body: stack traces, secrets (redacted in the message)."""
    found: list[str] = []
    if status >= 400 and TRACE_MARKERS.search(body):
        found.append(f"stack trace or exception internals in a {status} body")
    secrets = _lines("SCNODE_FUZZ_SECRETS_FILE")
    if status >= 400:
        secrets += _lines("SCNODE_FUZZ_TOKENS_FILE")
    for secret in secrets:
        if secret in body:
            found.append(f"a secret of the run ({secret[:6]}…) in a {status} body")
    return found


@schemathesis.check
def no_leak(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    problems = leaks(response.text or "", response.status_code)
    if problems:
        raise AssertionError("; ".join(problems))
    return None
