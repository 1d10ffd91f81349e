"""The stats API client against the real stratum stats API (synthetic translator log, in
process) and against broken answers; its work feeds a real split."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.ledger import SATS, SUSPENSE, Ledger
from scnode_exchange.mining import MiningService, PoolPayout
from scnode_exchange.mining.statsclient import (
    StatsApiError,
    StatsWorkSource,
    StratumWorkClient,
)
from scnode_stratum import synthetic
from scnode_stratum.app import create_app
from scnode_stratum.settings import StratumApiSettings
from tests.unit.apps.exchange.mining.conftest import CONFIG


def test_work_from_the_real_stats_api_is_split_by_the_exchange_registry(
    tmp_path: Path, sessions: sessionmaker[Session], members: tuple[int, int, int]
) -> None:
    alice, bob, _ = members
    read = generate({"read"}, "exchange")
    keys = tmp_path / "keys.json"
    ApiKeyStore([read.record]).save(keys)
    log = tmp_path / "translator.log"
    start = int(time.time()) - 1
    lines = [*synthetic.start_lines()]
    for ds, worker in ((1, "alice.rig1"), (2, "bob.rig1"), (3, "mallory.rig1")):
        lines += synthetic.connect_lines(ds, worker)
    for channel, shares in ((1, 6), (2, 3), (3, 3)):
        for count in range(1, shares + 1):
            lines += synthetic.share_lines(channel, count)
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = StratumApiSettings(
        log_file=log,
        state_db=tmp_path / "stratum.db",
        api_keys_file=keys,
        poll_interval=0.02,
        environment="test",
    )
    mining = MiningService(sessions, CONFIG)
    mining.register(alice, "btc", "alice.rig1")
    # the stats API guesses "bob" from the name prefix; the exchange's registry decides
    mining.register(alice, "btc", "bob.rig1")

    async def main() -> dict[str, float]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            client = StratumWorkClient(
                "http://stats", read.token, transport=httpx.ASGITransport(app=app)
            )
            source = StatsWorkSource({"btc": client})
            try:
                deadline = time.monotonic() + 15
                work: dict[str, float] = {}
                while time.monotonic() < deadline:
                    work = dict(await source("btc", start, int(time.time()) + 60))
                    if len(work) == 3:
                        break
                    await asyncio.sleep(0.05)
                with pytest.raises(StatsApiError, match="no stats API"):
                    await source("azc", start, start + 60)
                bad = StratumWorkClient(
                    "http://stats", "wrong", transport=httpx.ASGITransport(app=app)
                )
                with pytest.raises(StatsApiError, match="401"):
                    await bad.work(start, start + 60)
                await bad.aclose()
            finally:
                await source.aclose()
            return work

    work = asyncio.run(main())
    assert set(work) == {"alice.rig1", "bob.rig1", "mallory.rig1"}
    assert work["alice.rig1"] == pytest.approx(2 * work["bob.rig1"])
    assert work["bob.rig1"] == pytest.approx(work["mallory.rig1"])
    view, _ = mining.split(PoolPayout("btc", "cb:0", 1_200_000, 100, True, start, start + 60), work)
    # fee 12,000; 1,188,000 split 6:3:3 by acknowledged difficulty -> alice 3/4, mallory 1/4
    with sessions() as session:
        ledger = Ledger(session)
        assert ledger.member_account(alice, SATS).balance == 891_000
        assert ledger.member_account(bob, SATS).balance == 0
        assert ledger.system_account(SUSPENSE, SATS).balance == 297_000
    assert view.unknown_workers == (("mallory.rig1", work["mallory.rig1"]),)


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (500, {"detail": "boom"}, "500"),
        (200, [], "not an object"),
        (200, {"workers": []}, "not an object"),
        (200, {"workers": {"a": {"accepted_difficulty": "1"}}}, "numeric"),
        (200, {"workers": {"a": {"accepted_difficulty": -1.0}}}, "-1.0"),
        (200, {"workers": {"a": {}}, "unattributed": {}}, "numeric"),
        (
            200,
            {
                "workers": {"a": {"accepted_difficulty": 1.0}},
                "unattributed": {"a": {"accepted_difficulty": 1.0}},
            },
            "twice",
        ),
    ],
)
def test_unusable_answers_are_refused(status: int, body: Any, match: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    async def main() -> None:
        client = StratumWorkClient("http://stats", "k", transport=httpx.MockTransport(handler))
        try:
            with pytest.raises(StatsApiError, match=match):
                await client.work(10, 20)
        finally:
            await client.aclose()

    asyncio.run(main())
    assert seen[0].headers["authorization"] == "Bearer k"
    assert dict(seen[0].url.params) == {"start": "10", "end": "20"}


def test_unreachable_stats_api_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def main() -> None:
        client = StratumWorkClient("http://stats", "k", transport=httpx.MockTransport(handler))
        try:
            with pytest.raises(StatsApiError, match="unreachable"):
                await client.work(10, 20)
        finally:
            await client.aclose()

    asyncio.run(main())
