"""The deposit routes with stand-in auth dependencies (H11's real ones plug in the same way):
address handling through a chain API, scoping to the caller, paging, owner alerts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException

from scnode_exchange.chainclient import Backoff, ChainApiClient
from scnode_exchange.deposits.api import build_router
from scnode_exchange.deposits.service import DepositService, Observation
from tests.unit.apps.exchange.deposits.fakechain import KEY, FakeChainApi


@dataclass(frozen=True)
class Who:
    member_id: int


@dataclass(frozen=True)
class Owner:
    actor: str


def member_dep(x_member: str | None = Header(default=None)) -> Who:
    if x_member is None:
        raise HTTPException(401, "login required")
    return Who(int(x_member))


async def owner_dep(x_owner: str | None = Header(default=None)) -> Owner:
    if x_owner is None:
        raise HTTPException(403, "owner only")
    return Owner(f"owner:{x_owner}")


Scenario = Callable[[httpx.AsyncClient, FakeChainApi], Awaitable[None]]


def _run(deposits: DepositService, scenario: Scenario, *, chain_down: bool = False) -> None:
    async def main() -> None:
        fake = FakeChainApi()
        url = await fake.start()
        if chain_down:
            await fake.stop()
        client = ChainApiClient(url, KEY, timeout=2, backoff=Backoff(0.01, 0.05))
        app = FastAPI()
        app.include_router(
            build_router(member_dep, owner_dep, service=deposits, clients={"bitcoin": client})
        )
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                await scenario(http, fake)
        finally:
            await client.aclose()
            if not chain_down:
                await fake.stop()

    asyncio.run(main())


def test_addresses_are_per_member_and_reused_until_paid(
    deposits: DepositService, members: tuple[int, int]
) -> None:
    alice, bob = members

    async def scenario(http: httpx.AsyncClient, fake: FakeChainApi) -> None:
        a = {"X-Member": str(alice)}
        first = await http.get("/v1/deposits/address", params={"chain": "bitcoin"}, headers=a)
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["new"], body["asset"], body["required_confirmations"]) == (True, "SATS", 3)
        again = await http.get("/v1/deposits/address", params={"chain": "bitcoin"}, headers=a)
        assert again.json()["address"] == body["address"] and again.json()["new"] is False
        fresh = await http.post("/v1/deposits/address", params={"chain": "bitcoin"}, headers=a)
        assert fresh.status_code == 201 and fresh.json()["address"] != body["address"]
        theirs = await http.get(
            "/v1/deposits/address", params={"chain": "bitcoin"}, headers={"X-Member": str(bob)}
        )
        assert theirs.json()["address"] not in (body["address"], fresh.json()["address"])
        mine = (await http.get("/v1/deposits/addresses", headers=a)).json()["addresses"]
        assert [m["address"] for m in mine] == [body["address"], fresh.json()["address"]]
        assert fake.labels[body["address"]] == str(alice)
        missing = await http.get("/v1/deposits/address", params={"chain": "doge"}, headers=a)
        assert missing.status_code == 404
        assert (
            await http.get("/v1/deposits/address", params={"chain": "bitcoin"})
        ).status_code == 401

    _run(deposits, scenario)


def test_history_is_scoped_to_the_caller_and_pages(
    deposits: DepositService, members: tuple[int, int]
) -> None:
    alice, bob = members
    deposits.record_address(alice, "bitcoin", "bcrt1qa")
    deposits.record_address(bob, "bitcoin", "bcrt1qb")
    deposits.apply(
        [Observation("bitcoin", f"{i:064x}", 0, "bcrt1qa", 100 + i, 3 if i < 3 else 1)
         for i in range(5)]
        + [Observation("bitcoin", "ee" * 32, 1, "bcrt1qb", 999, 1)]
    )  # fmt: skip

    async def scenario(http: httpx.AsyncClient, _: FakeChainApi) -> None:
        a = {"X-Member": str(alice)}
        page = (await http.get("/v1/deposits", params={"limit": 3}, headers=a)).json()
        assert [d["amount"] for d in page["deposits"]] == [104, 103, 102]
        rest = await http.get(
            "/v1/deposits", params={"limit": 3, "before": page["next_before"]}, headers=a
        )
        assert [d["amount"] for d in rest.json()["deposits"]] == [101, 100]
        assert rest.json()["next_before"] is None
        credited = await http.get("/v1/deposits", params={"state": "credited"}, headers=a)
        assert {d["state"] for d in credited.json()["deposits"]} == {"credited"}
        pending = (await http.get("/v1/deposits/pending", headers=a)).json()["deposits"]
        shown = [(d["amount"], d["confirmations"], d["required_confirmations"]) for d in pending]
        assert shown == [(104, 1, 3), (103, 1, 3)]
        bobs = (await http.get("/v1/deposits", headers={"X-Member": str(bob)})).json()
        assert [d["amount"] for d in bobs["deposits"]] == [999]
        bad = await http.get("/v1/deposits", params={"state": "stolen"}, headers=a)
        assert bad.status_code == 422

    _run(deposits, scenario)


def test_owner_lists_and_resolves_alerts_members_cannot(
    deposits: DepositService, members: tuple[int, int]
) -> None:
    alice = members[0]
    deposits.record_address(alice, "bitcoin", "bcrt1qa")
    deposits.apply([Observation("bitcoin", "ab" * 32, 0, "bcrt1qa", 5_000, 3, "b1")])
    deposits.apply([Observation("bitcoin", "ab" * 32, 0, "bcrt1qa", 5_000, -1, verified=True)])

    async def scenario(http: httpx.AsyncClient, _: FakeChainApi) -> None:
        member = {"X-Member": str(alice)}
        owner = {"X-Owner": "k1"}
        assert (await http.get("/v1/owner/deposits/alerts", headers=member)).status_code == 403
        (alert,) = (await http.get("/v1/owner/deposits/alerts", headers=owner)).json()["alerts"]
        assert (alert["member_id"], alert["amount"], alert["deposit_state"]) == (
            alice, 5_000, "suspense",
        )  # fmt: skip
        suspense = (await http.get("/v1/owner/deposits/suspense", headers=owner)).json()
        assert suspense["suspense"]["SATS"] == 5_000 and suspense["open_alerts"] == 1
        url = f"/v1/owner/deposits/alerts/{alert['id']}/resolve"
        early = await http.post(url, json={"action": "recredit", "reason": "x"}, headers=owner)
        assert early.status_code == 409  # not confirmed again
        done = await http.post(url, json={"action": "write_off", "reason": "gone"}, headers=owner)
        assert done.status_code == 200 and done.json()["resolved_by"] == "owner:k1"
        assert (await http.get("/v1/owner/deposits/alerts", headers=owner)).json()["alerts"] == []
        nope = await http.post(
            "/v1/owner/deposits/alerts/999/resolve",
            json={"action": "write_off", "reason": "x"},
            headers=owner,
        )
        assert nope.status_code == 404

    _run(deposits, scenario)


def test_a_chain_api_that_is_down_is_a_503_with_retry_after(
    deposits: DepositService, members: tuple[int, int]
) -> None:
    async def scenario(http: httpx.AsyncClient, _: FakeChainApi) -> None:
        answer = await http.get(
            "/v1/deposits/address",
            params={"chain": "bitcoin"},
            headers={"X-Member": str(members[0])},
        )
        assert answer.status_code == 503 and answer.headers["retry-after"] == "10"

    _run(deposits, scenario, chain_down=True)


@pytest.fixture
def exchange_db_url(tmp_path: Path) -> str:
    """HTTP behaviour only: SQLite is enough here (the service's tests run on both backends)."""
    return f"sqlite:///{tmp_path / 'api.sqlite3'}"
