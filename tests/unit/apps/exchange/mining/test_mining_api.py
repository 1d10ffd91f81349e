"""The mining routes with stand-in auth dependencies (H11's real ones plug in the same way).
HTTP behaviour on SQLite only; the service they call is tested on both backends."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.db import make_engine, make_sessionmaker, upgrade
from scnode_exchange.ledger import SATS, Ledger
from scnode_exchange.mining import MiningService
from scnode_exchange.mining.api import WorkSource, build_router
from tests.unit.apps.exchange.mining.conftest import CONFIG


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


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'mining.sqlite3'}"
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    with factory.begin() as session:
        ledger = Ledger(session)
        ledger.ensure_assets()
        for handle in ("alice", "bob"):
            ledger.create_member(handle)
    return factory


Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


def _run(service: MiningService, scenario: Scenario, work_source: WorkSource | None = None) -> None:
    async def main() -> None:
        app = FastAPI()
        app.include_router(
            build_router(member_dep, owner_dep, service=service, work_source=work_source)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await scenario(http)

    asyncio.run(main())


ALICE = {"x-member": "1"}
BOB = {"x-member": "2"}
OWNER = {"x-owner": "ops"}
PAYOUT = {
    "pool": "btc",
    "payout_id": "ab" * 32 + ":1",
    "amount": 100_000,
    "confirmations": 100,
    "coinbase": True,
    "window_start": 1_000,
    "window_end": 1_600,
}


def test_members_register_workers_and_see_their_own_payout_detail(
    sqlite_sessions: sessionmaker[Session],
) -> None:
    service = MiningService(sqlite_sessions, CONFIG)

    async def scenario(http: httpx.AsyncClient) -> None:
        assert (await http.get("/v1/mining/workers")).status_code == 401
        r = await http.post(
            "/v1/mining/workers", json={"pool": "btc", "name": "a.1"}, headers=ALICE
        )
        assert r.status_code == 201
        assert r.json() == {"pool": "btc", "name": "a.1", "member_id": 1}
        r = await http.post(
            "/v1/mining/workers", json={"pool": "btc", "name": "a.1"}, headers=ALICE
        )
        assert r.status_code == 200
        r = await http.post("/v1/mining/workers", json={"pool": "btc", "name": "a.1"}, headers=BOB)
        assert r.status_code == 409
        r = await http.post("/v1/mining/workers", json={"pool": "ltc", "name": "x"}, headers=BOB)
        assert r.status_code == 422
        r = await http.post("/v1/mining/workers", json={"pool": "btc", "name": "b 1"}, headers=BOB)
        assert r.status_code == 422
        r = await http.post("/v1/mining/workers", json={"pool": "btc", "name": "b.1"}, headers=BOB)
        assert r.status_code == 201
        mine = (await http.get("/v1/mining/workers", headers=ALICE)).json()
        assert mine == {"workers": [{"pool": "btc", "name": "a.1", "member_id": 1}]}
        # a member cannot split, and cannot remove another member's worker
        assert (
            await http.post("/v1/owner/mining/payouts", json=PAYOUT, headers=ALICE)
        ).status_code == 403
        assert (await http.delete("/v1/mining/workers/btc/a.1", headers=BOB)).status_code == 404

        body = {**PAYOUT, "work": {"a.1": 3.0, "b.1": 1.0, "rogue": 1.0}}
        r = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
        assert r.status_code == 201, r.text
        split = r.json()
        # fee 1 % = 1,000; 99,000 split 3:1:1 -> 59,400 / 19,800 / 19,800 to suspense
        assert [(p["member_id"], p["amount"]) for p in split["parts"]] == [(1, 59_400), (2, 19_800)]
        assert split["unattributed_amount"] == 19_800
        assert split["unknown_workers"] == [{"worker": "rogue", "work": 1.0}]
        r = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
        assert r.status_code == 200 and r.json() == split
        r = await http.post("/v1/owner/mining/payouts", json={**body, "amount": 5}, headers=OWNER)
        assert r.status_code == 409
        immature = {**body, "payout_id": "young", "confirmations": 99}
        r = await http.post("/v1/owner/mining/payouts", json=immature, headers=OWNER)
        assert r.status_code == 422 and "needs 100" in r.json()["detail"]

        r = (await http.get("/v1/mining/payouts", headers=BOB)).json()
        assert len(r["payouts"]) == 1
        bob_view = r["payouts"][0]
        assert bob_view["my_part"] == {"member_id": 2, "work": 1.0, "amount": 19_800, "share": 0.2}
        assert "parts" not in bob_view and "unknown_workers" not in bob_view
        owner_view = (await http.get("/v1/owner/mining/payouts", headers=OWNER)).json()
        assert owner_view["payouts"] == [split]
        unknown = (await http.get("/v1/owner/mining/unknown-workers", headers=OWNER)).json()
        assert unknown == {
            "unknown_workers": [{"pool": "btc", "worker": "rogue", "payouts": 1, "work": 1.0}]
        }

        # owner assigns the rogue worker to bob, moves a.1 to bob, removes b.1
        r = await http.put(
            "/v1/owner/mining/workers/btc/rogue",
            json={"member_id": 2, "reason": "bob's rig"},
            headers=OWNER,
        )
        assert r.status_code == 200
        r = await http.put(
            "/v1/owner/mining/workers/btc/a.1",
            json={"member_id": 2, "reason": "sold"},
            headers=OWNER,
        )
        assert r.json() == {"pool": "btc", "name": "a.1", "member_id": 2}
        r = await http.delete("/v1/owner/mining/workers/btc/b.1?reason=retired", headers=OWNER)
        assert r.status_code == 204
        everything = (await http.get("/v1/owner/mining/workers", headers=OWNER)).json()
        assert [(w["name"], w["member_id"]) for w in everything["workers"]] == [
            ("a.1", 2),
            ("rogue", 2),
        ]
        assert (await http.get("/v1/owner/mining/unknown-workers", headers=OWNER)).json() == {
            "unknown_workers": []
        }
        assert (await http.delete("/v1/mining/workers/btc/rogue", headers=BOB)).status_code == 204

    _run(service, scenario)
    with sqlite_sessions() as session:
        ledger = Ledger(session)
        assert ledger.member_account(1, SATS).balance == 59_400
        assert ledger.member_account(2, SATS).balance == 19_800


def test_split_takes_work_from_the_stats_source_when_not_given(
    sqlite_sessions: sessionmaker[Session],
) -> None:
    service = MiningService(sqlite_sessions, CONFIG)
    asked: list[tuple[str, int, int]] = []

    async def source(pool: str, start: int, end: int) -> Mapping[str, float]:
        asked.append((pool, start, end))
        if pool == "azc":
            raise ConnectionError("stats API down")
        return {"a.1": 1.0}

    async def with_source(http: httpx.AsyncClient) -> None:
        await http.post("/v1/mining/workers", json={"pool": "btc", "name": "a.1"}, headers=ALICE)
        r = await http.post("/v1/owner/mining/payouts", json=PAYOUT, headers=OWNER)
        assert r.status_code == 201
        assert r.json()["parts"][0]["amount"] == 99_000
        r = await http.post(
            "/v1/owner/mining/payouts", json={**PAYOUT, "pool": "azc"}, headers=OWNER
        )
        assert r.status_code == 503

    async def without_source(http: httpx.AsyncClient) -> None:
        # nothing is down: a node without a stats API needs the work in the request (a 4xx)
        body = {**PAYOUT, "payout_id": "other"}
        r = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
        assert r.status_code == 422 and "give work" in r.json()["detail"], r.text

    async def next_window(http: httpx.AsyncClient) -> None:
        # without window_start the window starts where the previous payout's ended
        body = {**PAYOUT, "payout_id": "next", "window_end": 2_200}
        del body["window_start"]
        r = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
        assert r.status_code == 201, r.text
        assert (r.json()["window_start"], r.json()["window_end"]) == (1_600, 2_200)
        again = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
        assert again.status_code == 200 and again.json() == r.json()
        overlapping = {**PAYOUT, "payout_id": "overlap", "window_start": 2_000, "window_end": 2_500}
        r = await http.post("/v1/owner/mining/payouts", json=overlapping, headers=OWNER)
        assert r.status_code == 422 and "overlaps payout next" in r.json()["detail"]
        first_azc = {**body, "pool": "azc", "work": {}}
        r = await http.post("/v1/owner/mining/payouts", json=first_azc, headers=OWNER)
        assert r.status_code == 422 and "window_start" in r.json()["detail"]

    _run(service, with_source, source)
    _run(service, without_source)
    _run(service, next_window, source)
    assert asked == [
        ("btc", 1_000, 1_600),
        ("azc", 1_000, 1_600),
        ("btc", 1_600, 2_200),
        ("btc", 1_600, 2_200),
        ("btc", 2_000, 2_500),
    ]
    assert len(service.payouts()) == 2


def _configure_btc_pool(monkeypatch: pytest.MonkeyPatch, **overrides: object) -> None:
    """SCNODE_EXCHANGE_MINING_POOLS with a btc pool whose APIs nothing answers, unless
    ``overrides`` say otherwise."""
    pool = {
        "chain_api_url": "http://127.0.0.1:9",
        "chain_api_key": "k",
        "stats_api_url": "http://127.0.0.1:9",
        "stats_api_key": "k",
        "fee_bps": 0,
        "first_window_start": 0,
        **overrides,
    }
    monkeypatch.setenv("SCNODE_EXCHANGE_MINING_POOLS", json.dumps({"btc": pool}))


def test_router_builds_its_service_from_the_app_state_and_the_mining_env(
    sqlite_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_btc_pool(monkeypatch, fee_bps=500)

    async def main() -> None:
        app = FastAPI()
        app.state.sessions = sqlite_sessions
        app.include_router(build_router(member_dep, owner_dep))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = {**PAYOUT, "work": {"a": 1.0}}
            await http.post("/v1/mining/workers", json={"pool": "btc", "name": "a"}, headers=ALICE)
            r = await http.post("/v1/owner/mining/payouts", json=body, headers=OWNER)
            assert r.status_code == 201
            assert (r.json()["fee_bps"], r.json()["fee"]) == (500, 5_000)
        assert isinstance(app.state.mining_service, MiningService)

    asyncio.run(main())
    with sqlite_sessions() as session:
        assert Ledger(session).member_account(1, SATS).balance == 95_000


def test_an_owner_payout_without_work_asks_the_configured_pools_stats_api(
    sqlite_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the exchange wires it (``start_mining``): the pools' stats APIs also serve the owner's
    payout route. Before, the route was never given them and answered 422 "no stats API is
    configured on this node" on a node that had them."""
    from types import SimpleNamespace

    from scnode_exchange.api.integrations import start_mining
    from scnode_exchange.mining import settings as mining_settings_module
    from scnode_exchange.mining.statsclient import StratumWorkClient

    asked: list[dict[str, str]] = []
    stats_key = secrets.token_urlsafe(16)  # generated here: no key in git

    def stats_api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/stratum/work"
        assert request.headers["authorization"] == f"Bearer {stats_key}"
        asked.append(dict(request.url.params))
        return httpx.Response(200, json={"workers": {"rig": {"accepted_difficulty": 3.0}}})

    class Client(StratumWorkClient):
        def __init__(self, base_url: str, api_key: str) -> None:
            super().__init__(base_url, api_key, transport=httpx.MockTransport(stats_api))

    monkeypatch.setattr(mining_settings_module, "StratumWorkClient", Client)
    _configure_btc_pool(monkeypatch, stats_api_url="http://stats.invalid", stats_api_key=stats_key)

    async def main() -> None:
        app = FastAPI()
        app.state.sessions = sqlite_sessions
        assert start_mining(app, None, SimpleNamespace(sessions=sqlite_sessions)) is not None  # type: ignore[arg-type]
        app.include_router(build_router(member_dep, owner_dep))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await http.post(
                "/v1/mining/workers", json={"pool": "btc", "name": "rig"}, headers=ALICE
            )
            assert r.status_code == 201, r.text
            r = await http.post("/v1/owner/mining/payouts", json=PAYOUT, headers=OWNER)
            assert r.status_code == 201, r.text
        assert asked == [{"start": "1000", "end": "1600"}]

    asyncio.run(main())
    with sqlite_sessions() as session:
        assert Ledger(session).member_account(1, SATS).balance == 100_000
