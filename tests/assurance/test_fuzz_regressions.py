"""Regression tests of the bugs the API fuzzing found (tests/assurance/test_fuzz_apis.py), each
on the app built in-process, so they run in a second:

* an id, cursor or ``after`` beyond a database integer reached SQLite, whose ``OverflowError``
  became a 500 (exchange withdrawals, Lightning API payments, stratum events, chain API SSE);
* the chain API passed any ``since`` to ``listsinceblock``: the daemon's -8 (not a hash) and -5
  (no such block, tests/integration/chain_api) came back as 502s;
* every app's own refusals (``{"detail": "<sentence>"}`` with 422) broke the schema FastAPI
  documents for 422 (a list of errors);
* the exchange's CSV export and the chain API's event stream answered content types their
  schemas did not list;
* integers in request bodies had no upper bound: a withdrawal amount or a worker's member id
  beyond a database integer reached SQLite (500), and an owner credit that fits one but takes a
  balance beyond it failed in the database (500) instead of being refused by the ledger;
* the chain API passed bitcoind's -6 for a transaction its wallet cannot build (amount too
  small to pay the fee) on as a 502 and left the send pending;
* the Lightning API passed labels and descriptions longer than lightningd's ``invoice`` takes
  to it, and its -32602 came back as a 502.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import SecretStr

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_core.openapi import DB_INT_MAX, document_error_details
from scnode_exchange.ledger import Ledger
from scnode_exchange.ledger.errors import InvalidAmountError
from scnode_exchange.ledger.service import Leg
from tests.unit.apps.exchange.api.node import Node, make_settings

TOO_BIG = DB_INT_MAX + 1


def _keys(tmp_path: Path, scopes: set[str]) -> tuple[Path, str]:
    key = generate(scopes, name="test")
    path = tmp_path / "keys.json"
    ApiKeyStore([key.record]).save(path)
    return path, key.token


def _detail_schema(schema: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = schema["components"]["schemas"]["HTTPValidationError"]["properties"][
        "detail"
    ]
    return detail


def test_document_error_details_allows_a_sentence_as_well_as_a_list() -> None:
    app = FastAPI()

    @app.get("/thing")
    def thing(n: int) -> dict[str, int]:
        if n < 0:
            raise HTTPException(422, "n must not be negative")
        return {"n": n}

    document_error_details(app)
    detail = _detail_schema(app.openapi())
    assert {"type": "string"} in detail["anyOf"]
    assert any(option.get("type") == "array" for option in detail["anyOf"])
    assert app.openapi() is app.openapi()  # built once


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[Node]:
    from scnode_exchange.api.app import create_app

    settings, owner_key = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with TestClient(create_app(settings)) as client:
        yield Node(client, owner_key, settings)


def test_exchange_ids_beyond_a_database_integer_are_bad_input_not_a_500(exchange: Node) -> None:
    _, member = exchange.member("zed")
    for method, path in (
        ("GET", f"/v1/withdrawals/{TOO_BIG}"),
        ("POST", f"/v1/withdrawals/{TOO_BIG}/cancel"),
        ("GET", f"/v1/withdrawals?before={TOO_BIG}"),
    ):
        reply = exchange.client.request(method, path, headers=member)
        assert reply.status_code == 422, (path, reply.status_code, reply.text)
    for method, path in (
        ("GET", f"/v1/owner/withdrawals/{TOO_BIG}"),
        ("GET", f"/v1/owner/withdrawals?member_id={TOO_BIG}"),
        ("POST", f"/v1/owner/withdrawals/{TOO_BIG}/approve"),
    ):
        reply = exchange.client.request(method, path, headers=exchange.owner)
        assert reply.status_code == 422, (path, reply.status_code, reply.text)


def test_exchange_schema_documents_sentence_details_and_the_csv_export(exchange: Node) -> None:
    schema = exchange.client.get("/openapi.json").json()
    assert {"type": "string"} in _detail_schema(schema)["anyOf"]
    export = schema["paths"]["/api/history.csv"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in export
    _, member = exchange.member("csv")
    reply = exchange.client.get("/api/history.csv", headers=member)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")


def _stratum_api(tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    """The stratum stats API in-process with a `read` key: (client, auth header)."""
    from scnode_stratum.app import create_app
    from scnode_stratum.settings import StratumApiSettings

    keys, token = _keys(tmp_path, {"read"})
    settings = StratumApiSettings(
        log_file=tmp_path / "t.log", state_db=tmp_path / "s.db", api_keys_file=keys,
        poll_interval=0.05, environment="test",
    )  # fmt: skip
    return TestClient(create_app(settings)), {"Authorization": f"Bearer {token}"}


def test_stratum_cursor_beyond_a_database_integer_is_bad_input(tmp_path: Path) -> None:
    client, auth = _stratum_api(tmp_path)
    with client:
        reply = client.get("/v1/stratum/events", params={"cursor": TOO_BIG}, headers=auth)
        assert reply.status_code == 422, reply.text
        assert client.get("/v1/stratum/events", headers=auth).status_code == 200
        assert {"type": "string"} in _detail_schema(client.get("/openapi.json").json())["anyOf"]


def test_lightning_payments_after_beyond_a_database_integer_is_bad_input(tmp_path: Path) -> None:
    from scnode_lightning_api.app import create_app
    from scnode_lightning_api.settings import LightningApiSettings

    keys, token = _keys(tmp_path, {"read"})
    settings = LightningApiSettings(
        rpc_socket=tmp_path / "no-lightningd", api_keys_file=keys, state_db=tmp_path / "l.db",
        environment="test",
    )  # fmt: skip
    client = TestClient(create_app(settings))  # no lifespan: validation comes before lightningd
    auth = {"Authorization": f"Bearer {token}"}
    reply = client.get("/v1/payments", params={"after": TOO_BIG}, headers=auth)
    assert reply.status_code == 422, reply.text
    assert {"type": "string"} in _detail_schema(client.get("/openapi.json").json())["anyOf"]


def test_chain_api_refuses_a_bad_since_cursor_or_event_id_as_bad_input(tmp_path: Path) -> None:
    from scnode_chain_api.app import create_app
    from scnode_chain_api.settings import ChainApiSettings

    keys, token = _keys(tmp_path, {"read"})
    settings = ChainApiSettings(
        chain="bitcoin", path_prefix="btc", rpc_password=SecretStr("not-the-placeholder-x"),
        api_keys_file=keys, state_db=tmp_path / "c.db", environment="test",
    )  # fmt: skip
    client = TestClient(create_app(settings))  # no lifespan: nothing reaches the daemon
    auth = {"Authorization": f"Bearer {token}"}
    for params in ({"since": "null"}, {"since": "00" * 31}):
        reply = client.get("/v1/btc/wallet/transactions", params=params, headers=auth)
        assert reply.status_code == 422, (params, reply.text)
    reply = client.get("/v1/events/stream", params={"cursor": TOO_BIG}, headers=auth)
    assert reply.status_code == 422, reply.text
    reply = client.get("/v1/events/stream", headers={**auth, "Last-Event-ID": "x1"})
    assert reply.status_code == 422, reply.text
    schema = client.get("/openapi.json").json()
    assert {"type": "string"} in _detail_schema(schema)["anyOf"]
    stream = schema["paths"]["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    assert json.dumps(schema)  # the whole document serialises


def test_every_integer_id_and_cursor_of_the_exchange_is_bounded(exchange: Node) -> None:
    """Fuzzing keeps finding unbounded ids one route at a time (a 64-bit overflow in the
    database is a 500): every integer path parameter, and every integer query parameter that
    names an id or a cursor, declares 1 <= value <= the database's integer maximum."""
    schema = exchange.client.get("/openapi.json").json()
    unbounded = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            for param in operation.get("parameters", []):
                spec = param.get("schema", {})
                options = spec.get("anyOf", [spec])
                ints = [o for o in options if o.get("type") == "integer"]
                named = param["in"] == "path" or param["name"].endswith(("_id", "before"))
                if not ints or not named:
                    continue
                low, high = ints[0].get("minimum"), ints[0].get("maximum")
                if low is None or low < 1 or high is None or high > DB_INT_MAX:
                    unbounded.append(f"{method.upper()} {path} {param['name']} {(low, high)}")
    assert unbounded == [], "\n".join(unbounded)


def _schemas(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The OpenAPI document of every app the fuzzing runs against."""
    from scnode_chain_api.app import create_app as chain_app
    from scnode_chain_api.settings import ChainApiSettings
    from scnode_exchange.api.app import create_app as exchange_app
    from scnode_lightning_api.app import create_app as lightning_app
    from scnode_lightning_api.settings import LightningApiSettings
    from scnode_stratum.app import create_app as stratum_app
    from scnode_stratum.settings import StratumApiSettings

    keys, _ = _keys(tmp_path, {"read"})
    exchange, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite3'}")
    return {
        "exchange": exchange_app(exchange).openapi(),
        "chain API": chain_app(
            ChainApiSettings(
                chain="bitcoin",
                path_prefix="btc",
                api_keys_file=keys,
                state_db=tmp_path / "c.db",
                rpc_password=SecretStr("not-the-placeholder-x"),
                environment="test",
            )
        ).openapi(),
        "Lightning API": lightning_app(
            LightningApiSettings(
                rpc_socket=tmp_path / "no-lightningd",
                api_keys_file=keys,
                state_db=tmp_path / "l.db",
                environment="test",
            )
        ).openapi(),
        "stratum API": stratum_app(
            StratumApiSettings(
                log_file=tmp_path / "t.log",
                state_db=tmp_path / "s.db",
                api_keys_file=keys,
                environment="test",
            )
        ).openapi(),
    }


def _integers(spec: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in spec:
        return _integers(components[spec["$ref"].rsplit("/", 1)[-1]], components)
    return [o for o in spec.get("anyOf", [spec]) if o.get("type") in ("integer", "number")]


def test_every_number_every_app_accepts_is_bounded(tmp_path: Path) -> None:
    """The class of bug behind most findings: a number without an upper bound reaches SQLite
    (64-bit) or a daemon's parser (lightningd's u64) and comes back as a 500 or 502. Every
    integer or float parameter and JSON body field, in every app's schema, has a lower bound and
    an upper bound no larger than a database integer (|value| <= DB_INT_MAX)."""
    unbounded = []
    for app, schema in _schemas(tmp_path).items():
        components = schema.get("components", {}).get("schemas", {})
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                fields = [
                    (f"{p['in']} {p['name']}", p.get("schema", {}))
                    for p in operation.get("parameters", [])
                ]
                body = operation.get("requestBody", {}).get("content", {})
                body_schema = body.get("application/json", {}).get("schema")
                if body_schema is not None:
                    if "$ref" in body_schema:
                        body_schema = components[body_schema["$ref"].rsplit("/", 1)[-1]]
                    fields += [
                        (f"body {name}", prop)
                        for name, prop in body_schema.get("properties", {}).items()
                    ]
                for where, spec in fields:
                    for option in _integers(spec, components):
                        low = option.get("minimum", option.get("exclusiveMinimum"))
                        high = option.get("maximum", option.get("exclusiveMaximum"))
                        # (body bounds are JSON floats: DB_INT_MAX is written as 2.0**63)
                        limit = float(DB_INT_MAX)
                        if low is None or high is None or max(abs(low), abs(high)) > limit:
                            unbounded.append(f"{app}: {method.upper()} {path} {where}")
    assert unbounded == [], "\n".join(unbounded)


def test_request_integers_beyond_a_database_integer_are_bad_input(exchange: Node) -> None:
    member_id, member = exchange.member("big")
    for path, body in (
        ("/api/owner/members/{member}/adjustments",
         {"asset": "SATS", "amount": TOO_BIG, "reason": "fuzz", "idempotency_key": "k" * 8}),
        ("/api/owner/members/{member}/adjustments",
         {"asset": "SATS", "amount": -TOO_BIG, "reason": "fuzz", "idempotency_key": "k" * 9}),
        ("/v1/withdrawals",
         {"chain": "bitcoin", "address": "bcrt1qfuzz", "amount": TOO_BIG}),
        ("/api/orders", {"side": "buy", "price": TOO_BIG, "quantity": 1}),
    ):  # fmt: skip
        headers = exchange.owner if path.startswith("/api/owner") else member
        reply = exchange.client.post(path.format(member=member_id), json=body, headers=headers)
        assert reply.status_code == 422, (path, reply.status_code, reply.text)
        assert "less than or equal" in reply.text or "greater than or equal" in reply.text


def test_owner_credit_beyond_what_a_balance_holds_is_refused_not_a_500(exchange: Node) -> None:
    """Each amount fits a database integer, the sum does not: the second credit was a 500
    (SQLite OverflowError on the balance); now the ledger refuses it and nothing is written."""
    member_id, member = exchange.member("rich")
    exchange.adjust(member_id, "SATS", DB_INT_MAX - 10)
    reply = exchange.client.post(
        f"/api/owner/members/{member_id}/adjustments",
        json={"asset": "SATS", "amount": 11, "reason": "one too many", "idempotency_key": "k" * 8},
        headers=exchange.owner,
    )
    assert reply.status_code == 409, reply.text
    assert "beyond the largest amount" in reply.json()["detail"]
    assert exchange.balance(member, "SATS")["balance"] == DB_INT_MAX - 10
    exchange.adjust(member_id, "SATS", 10)  # up to the limit itself is fine
    assert exchange.balance(member, "SATS")["balance"] == DB_INT_MAX


def test_ledger_refuses_a_posting_or_balance_beyond_a_database_integer(exchange: Node) -> None:
    member_id, _ = exchange.member("ledger", sats=5)
    sessions = exchange.client.app.state.runtime.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        ledger = Ledger(session)
        account = ledger.member_account(member_id, "SATS").id
        equity = ledger.system_account("owner_equity", "SATS").id
        for amount in (TOO_BIG, DB_INT_MAX - 4):
            with pytest.raises(InvalidAmountError):
                ledger.post("test", "too much", [Leg(equity, -amount), Leg(account, amount)])
        session.rollback()


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        (-6, "Insufficient funds", 409),
        (-6, "Transaction amount too small", 422),
        (-6, "The transaction amount is too small to pay the fee", 422),
        (-6, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)", 422),
        (-4, "The transaction amount is too small to pay the fee", 422),
        (-4, "Error: Private keys are disabled for this wallet", None),  # the node's, not ours
        (-1, "unexpected", None),
    ],
)
def test_chain_api_send_refusals_of_the_wallet(code: int, message: str, status: int | None) -> None:
    """bitcoind's sendtoaddress answers every transaction it cannot build with -6 and the reason
    (Core's SendMoney), before anything is sent: that is the request's fault (422, 409 when the
    node lacks funds), not a 502 left pending; other wallet errors stay unknown (retried)."""
    from scnode_chain_api.service import _send_refusal
    from scnode_core.chain_rpc import ChainRpcError

    assert _send_refusal(ChainRpcError(code, message, "sendtoaddress"))[0] == status


def test_lightning_invoice_label_and_description_lightningd_refuses_are_bad_input(
    tmp_path: Path,
) -> None:
    """lightningd's invoice refuses a label over 128 bytes and a description over 639 bytes
    with -32602, which came back as a 502: the schema allowed a 64-character member plus a
    128-character key, and 640 characters of description (more bytes once not ASCII). Refused
    before lightningd (none runs here: reaching it would be a 503)."""
    from scnode_lightning_api.app import create_app
    from scnode_lightning_api.settings import LightningApiSettings

    keys, token = _keys(tmp_path, {"invoice"})
    settings = LightningApiSettings(
        rpc_socket=tmp_path / "no-lightningd", api_keys_file=keys, state_db=tmp_path / "l.db",
        environment="test",
    )  # fmt: skip
    client = TestClient(create_app(settings))
    auth = {"Authorization": f"Bearer {token}"}
    ok = {"member": "m" * 64, "idempotency_key": "k" * 63, "amount_msat": 1000}
    for body in (
        {**ok, "idempotency_key": "k" * 64},  # label 129 bytes
        {**ok, "description": "d" * 640},
        {**ok, "description": "é" * 320},  # 320 characters, 640 bytes
    ):
        reply = client.post("/v1/invoices", json=body, headers=auth)
        assert reply.status_code == 422, (body, reply.status_code, reply.text)
    # the longest that fits reaches for lightningd (absent here: 503, not a refusal)
    reply = client.post("/v1/invoices", json={**ok, "description": "é" * 319}, headers=auth)
    assert reply.status_code == 503, reply.text


def test_stratum_work_range_beyond_any_time_is_bad_input(tmp_path: Path) -> None:
    """The long fuzzing profile: ``GET /v1/stratum/work?start=1.2e-38&end=1.8e308`` was a 500
    (the end's minute overflowed SQLite's integer); NaN or infinity as a bound too."""
    client, auth = _stratum_api(tmp_path)
    with client:
        for params in (
            {"start": "1.1754943508222875e-38", "end": "1.7976931348623157e+308"},
            {"start": "0", "end": "nan"},
            {"start": "0", "end": "inf"},
            {"start": "1e300"},
        ):
            reply = client.get("/v1/stratum/work", params=params, headers=auth)
            assert reply.status_code == 422, (params, reply.status_code, reply.text)
        reply = client.get("/v1/stratum/work", params={"start": 0, "end": 2**40}, headers=auth)
        assert reply.status_code == 200, reply.text
