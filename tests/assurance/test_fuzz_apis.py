"""Schemathesis against every app's OpenAPI schema, the apps running as real processes on
loopback in front of the simnet stand-ins, as a member (session token), as the owner (owner API
key), as a member's API-token client and with each node API's keys: zero 5xx, zero responses
that break the app's own schema, no stack trace or secret in any body (tests/assurance/
fuzzing.py lists the checks). Then every log the run wrote is searched for every secret it used.

Bounded CI profile (``fuzzing.CI``): the fuzzing and stateful phases, ``SCNODE_FUZZ_EXAMPLES``
(default 3) examples per operation, at most ``SCNODE_FUZZ_SECONDS`` (default 20) per app and
caller, generated from the fixed seed ``SCNODE_FUZZ_SEED`` (default ``CI_SEED``) so a red run
is reproducible and CI does not turn red on whatever a new random draw happens to find
(``SCNODE_FUZZ_SEED=random`` explores; so does the long profile with the coverage phase,
``benchmarks/fuzz_apis.py``, which is where new findings should come from). A failure shows
schemathesis' report with a curl line to replay it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.assurance.fuzzing import (
    CI,
    Profile,
    Target,
    failures_of,
    fuzz,
    secrets_files,
    targets,
)
from tests.assurance.logscan import scan_logs
from tests.assurance.stack import Stack

PROFILE = Profile(
    CI.phases,
    int(os.environ.get("SCNODE_FUZZ_EXAMPLES", CI.max_examples)),
    int(os.environ.get("SCNODE_FUZZ_SECONDS", CI.max_seconds)),
)
CI_SEED = 20261126
_seed = os.environ.get("SCNODE_FUZZ_SEED", str(CI_SEED))
SEED = None if _seed == "random" else int(_seed)
TARGETS = (
    "exchange as a member",
    "exchange as the owner",
    "exchange as a member API-token client",
    "chain API with an API key (read, deposit, send)",
    "stratum stats API with an API key (read)",
    "Lightning API with an API key (read, invoice, pay)",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="assurance-fuzz-"))
    running = Stack(root).start()
    fund(running, "alice")
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def fund(stack: Stack, handle: str) -> None:
    """Owner credits so member requests get past 'insufficient funds' into deeper code."""
    for asset in ("SATS", "AZC"):
        reply = httpx.post(
            f"{stack.exchange.url}/api/owner/members/{stack.member_ids[handle]}/adjustments",
            headers=stack.owner_headers(),
            json={"asset": asset, "amount": 10**8, "reason": "fuzzing funds",
                  "idempotency_key": secrets.token_hex(8)},
            timeout=30,
        )  # fmt: skip
        assert reply.status_code == 201, reply.text


def _target(stack: Stack, name: str) -> Target:
    return next(t for t in targets(stack) if t.name == name)


@pytest.mark.parametrize("name", TARGETS)
def test_fuzzing_finds_no_server_error_schema_break_or_leak(
    stack: Stack, name: str, tmp_path: Path
) -> None:
    target = _target(stack, name)
    result = fuzz(target, PROFILE, tmp_path, secrets_files(stack, tmp_path), SEED)
    print(  # the figures docs/assurance.md quotes (pytest -s shows them)
        f"fuzz {name}: {result.operations} operations, {result.cases} cases, "
        f"{result.failures} failures in {result.seconds:.0f} s ({result.selected} in the schema,"
        f" seed {result.seed})"
    )
    # the schema loaded and the run ended by itself; how much got tested in the time ceiling
    # depends on the machine's load (the figures above; the long profile tests everything)
    assert result.selected > 0, result.output[-3000:]
    assert result.returncode == 0, failures_of(result.output)


def test_logs_of_the_fuzzed_apps_hold_no_secret(stack: Stack) -> None:
    """After every fuzz run (this test comes last in the module): no API key, member token,
    session secret or RPC password of the run in any log an app or stand-in wrote."""
    logs = stack.logs()
    assert len(logs) >= 5, logs
    assert scan_logs(logs, stack.secrets) == []
