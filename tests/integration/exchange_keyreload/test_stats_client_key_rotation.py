"""The exchange's stats client (mining payouts), built from the pool settings' key file, keeps
asking the real stratum stats API (in process, a synthetic translator log) across a rotation
done with keytool: new key added, old key revoked at once, the client's key file replaced —
the same client's next request succeeds, a client holding the key read at start is refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from scnode_core import keytool
from scnode_exchange.mining.settings import PoolSettings
from scnode_exchange.mining.statsclient import StatsApiError, StratumWorkClient
from scnode_exchange.settings import client_key
from scnode_stratum import synthetic
from scnode_stratum.app import create_app
from scnode_stratum.settings import StratumApiSettings
from tests.integration.exchange_keyreload.keyfiles import write_key_file


def test_the_stats_client_follows_a_rotation_of_its_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys.json"
    first_record, first = keytool.create(keys_file, ["read"], name="exchange")
    key_file = tmp_path / "stratum-api-btc.key"
    write_key_file(key_file, first)
    log = tmp_path / "translator.log"
    lines = [*synthetic.start_lines(), *synthetic.connect_lines(1, "alice.rig1")]
    lines += [line for n in (1, 2) for line in synthetic.share_lines(1, n)]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = StratumApiSettings(
        log_file=log,
        state_db=tmp_path / "stratum.db",
        api_keys_file=keys_file,
        poll_interval=0.02,
        environment="test",
    )
    pool = PoolSettings.model_validate(
        {
            "chain_api_url": "http://127.0.0.1:9",
            "chain_api_key": "unused-in-this-test",
            "stats_api_url": "http://stats",
            "stats_api_key_file": str(key_file),
            "first_window_start": 0,
        }
    )
    start = int(time.time()) - 60

    def rotate() -> None:
        _, second = keytool.create(keys_file, ["read"], name="exchange")
        keytool.revoke(keys_file, first_record.key_id)
        write_key_file(key_file, second)

    async def scenario() -> None:
        app = create_app(stats)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            client = StratumWorkClient(
                pool.stats_api_url, client_key(pool, "stats_api_key"), transport=transport
            )
            read_once = StratumWorkClient(pool.stats_api_url, first, transport=transport)
            try:
                deadline = time.monotonic() + 15
                while not await client.work(start, int(time.time()) + 60):
                    assert time.monotonic() < deadline, "the shares never reached the API"
                    await asyncio.sleep(0.05)
                assert await read_once.work(start, start + 1) == {}
                rotate()
                with pytest.raises(StatsApiError, match="401"):
                    await read_once.work(start, start + 1)
                work = await client.work(start, int(time.time()) + 60)
                assert set(work) == {"alice.rig1"} and work["alice.rig1"] > 0
            finally:
                await client.aclose()
                await read_once.aclose()

    asyncio.run(scenario())
