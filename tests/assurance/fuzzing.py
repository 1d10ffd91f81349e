"""Schemathesis runs against the stack's apps: one run per (app, caller), each bounded in time.

``targets(stack)`` names what is fuzzed and as whom; ``fuzz(target, seconds, workdir)`` runs the
schemathesis CLI (coverage, fuzzing and stateful phases — the stateful phase follows the links
schemathesis infers between operations, e.g. a created order's id into GET/DELETE of it) with

* ``not_a_server_error`` — no 5xx at all;
* ``response_schema_conformance``, ``content_type_conformance``,
  ``response_headers_conformance`` — every response matches what the app's own OpenAPI says;
* ``ignored_auth`` — an operation that declares auth refuses a request without it;
* ``no_leak`` (tests/assurance/fuzz_checks.py) — no stack trace or secret of the run in a body.

Checks left out, and why: ``status_code_conformance`` (the apps do not list every 401/403/404/409/
429 in their schemas; the access matrix asserts those statuses), ``positive_data_acceptance`` /
``negative_data_rejection`` (business rules refuse schema-valid input, e.g. an unknown market),
``use_after_free`` / ``ensure_resource_availability`` (idempotent replays answer 200 on purpose),
``object_level_authorization`` (the access matrix does this with two members).
The chain API's Server-Sent Events stream never ends, so it is not fuzzed (its WebSocket and SSE
routes are covered by the integration tests).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.assurance.stack import PYTHON, Stack, python_env

CHECKS = (
    "not_a_server_error,response_schema_conformance,content_type_conformance,"
    "response_headers_conformance,ignored_auth"
)
EXCLUDED = (
    "status_code_conformance,positive_data_acceptance,negative_data_rejection,"
    "missing_required_header,unsupported_method,allow_header_conformance,use_after_free,"
    "ensure_resource_availability,object_level_authorization"
)


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the app's base URL
    headers: dict[str, str]
    exclude_path_regex: str | None = None


@dataclass(frozen=True)
class FuzzResult:
    target: str
    returncode: int
    cases: int
    failures: int
    operations: int  # tested
    selected: int  # in the schema after the exclusions
    seconds: float
    output: str
    seed: int | None = None  # the seed schemathesis drew from (given or random): replays the run


def targets(stack: Stack) -> list[Target]:
    """Every app with an OpenAPI schema, with the callers it has."""
    found = [
        Target("exchange as a member", stack.exchange.url, stack.member_headers("alice")),
        Target("exchange as the owner", stack.exchange.url, stack.owner_headers()),
        Target(
            "exchange as a member API-token client",
            stack.exchange.url,
            {"Authorization": f"Bearer {stack.api_tokens['all']}"},
        ),
        Target(
            "chain API with an API key (read, deposit, send)",
            stack.chain_api.url,
            {"Authorization": f"Bearer {stack.chain_api.tokens['exchange']}"},
            exclude_path_regex="/events/stream$",
        ),
        Target(
            "stratum stats API with an API key (read)",
            stack.stratum_api.url,
            {"Authorization": f"Bearer {stack.stratum_api.token}"},
        ),
    ]
    if stack.lightning_api is not None:
        found.append(
            Target(
                "Lightning API with an API key (read, invoice, pay)",
                stack.lightning_api.url,
                {"Authorization": f"Bearer {stack.lightning_api.tokens['all']}"},
            )
        )
    return found


def secrets_files(stack: Stack, workdir: Path) -> dict[str, str]:
    """The files the no_leak check reads (written at run time, removed with the workdir)."""
    tokens = {*stack.member_tokens.values(), *stack.api_tokens.values(), stack.expired_session}
    secrets_file = workdir / "fuzz-secrets.txt"
    tokens_file = workdir / "fuzz-tokens.txt"
    secrets_file.write_text("\n".join(sorted(stack.secrets - tokens)) + "\n")
    tokens_file.write_text("\n".join(sorted(tokens)) + "\n")
    secrets_file.chmod(0o600)
    tokens_file.chmod(0o600)
    return {
        "SCNODE_FUZZ_SECRETS_FILE": str(secrets_file),
        "SCNODE_FUZZ_TOKENS_FILE": str(tokens_file),
    }


@dataclass(frozen=True)
class Profile:
    """How much to fuzz: ``phases`` (the coverage phase walks every boundary value of every
    parameter — slow, so the long profile's), examples per operation, and a time ceiling per
    run (the run stops there even if examples are left)."""

    phases: str
    max_examples: int
    max_seconds: int


CI = Profile("fuzzing,stateful", max_examples=3, max_seconds=20)
LONG = Profile("coverage,fuzzing,stateful", max_examples=200, max_seconds=600)


def fuzz(
    target: Target, profile: Profile, workdir: Path, env: dict[str, str], seed: int | None = None
) -> FuzzResult:
    """One bounded schemathesis run; the summary figures parsed from its report."""
    seconds = profile.max_seconds
    argv = [
        PYTHON, "-m", "schemathesis.cli", "run", f"{target.url}/openapi.json",
        "--checks", CHECKS, "--exclude-checks", EXCLUDED, "--phases", profile.phases,
        "--max-examples", str(profile.max_examples), "--max-time", str(seconds),
        "--workers", "1", "--request-timeout", "10", "--output-truncate", "false", "--no-color",
    ]  # fmt: skip
    for name, value in target.headers.items():
        argv += ["--header", f"{name}: {value}"]
    if target.exclude_path_regex:
        argv += ["--exclude-path-regex", target.exclude_path_regex]
    if seed is not None:
        argv += ["--seed", str(seed)]
    run_env = {**python_env(), **env, "SCHEMATHESIS_HOOKS": "tests.assurance.fuzz_checks"}
    report = workdir / f"st-{re.sub(r'[^a-z]+', '-', target.name.lower())}"
    report.mkdir(exist_ok=True)
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=run_env, cwd=report, check=False,
        timeout=seconds * 3 + 120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    return FuzzResult(
        target=target.name,
        returncode=proc.returncode,
        cases=_number(r"(\d+) generated", out),
        failures=_number(r"(\d+) unique failures?\b", out),  # "1 unique failure", "2 … failures"
        operations=_number(r"Tested: (\d+)", out),
        selected=_number(r"Operations: +(\d+) selected", out),
        seconds=float(_number(r"in (\d+)(?:\.\d+)?s =", out)),
        output=out,
        seed=_number(r"Seed: (\d+)", out) or seed,
    )


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def failures_of(output: str) -> str:
    """The FAILURES section of a schemathesis report (what a failing test shows)."""
    start = output.find("FAILURES")
    end = output.find("SUMMARY")
    return output[start:end] if start >= 0 else output[-6000:]
