"""The exchange's chain client, built from a key file the way the exchange builds it, keeps
working across key rotations of a real chain API process (in front of the simnet chain
stand-in) without being rebuilt: the API's keys file gets a new key and loses the old one
(grace 0, revoked at once), the client's key file is replaced, and the very next calls —
reads and an idempotent send — succeed. A client that read its key once (a plain string, as the
exchange did before) is refused from that moment: the test fails if the key is read once.

The second rotation rewrites the key file in place within one tick of the file clock (same
inode, size and mtime): the client still sends the old key, gets a 401, re-reads the file and
repeats that one send with the new key — and the wallet holds exactly one payment for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from scnode_core import keytool
from scnode_core.apikeys import ApiKeyStore
from scnode_exchange.chainclient import ChainApiAuthError, ChainApiClient
from scnode_exchange.deposits.settings import build_deposits
from scnode_exchange.settings import ChainSettings
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi
from tests.integration.exchange_keyreload.keyfiles import rewrite_unseen, write_key_file


def key_id(keys_file: Path, token: str) -> str:
    principal = ApiKeyStore.load(keys_file).authenticate(token)
    assert principal is not None
    return principal.key_id


def rotate(keys_file: Path, old_token: str) -> str:
    """keytool: a new key with the old one's scopes, then the old key revoked (no grace)."""
    old_id = key_id(keys_file, old_token)
    record, token = keytool.create(keys_file, ["read", "send"], name="exchange")
    assert record.key_id != old_id
    keytool.revoke(keys_file, old_id)
    return token


def sends_for(node: ChainNode, idempotency_key: str) -> set[str]:
    return {
        t["txid"]
        for t in node.rpc("listtransactions", "*", 200, wallet="wallet")
        if t["category"] == "send" and t.get("comment") == f"scnode-send:{idempotency_key}"
    }


def test_the_exchange_chain_client_follows_rotations_without_a_rebuild(
    funded_node: ChainNode,
    start_chain_api: Callable[..., ChainApi],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = start_chain_api(funded_node)
    keys_file = api.workdir / "api-keys.json"
    client_keys = tmp_path / "client-keys"
    client_keys.mkdir()
    key_file = client_keys / "chain-api-bitcoin.key"
    first = api.tokens["send"]
    write_key_file(key_file, first)
    chain = ChainSettings.model_validate(
        {"asset": "SATS", "api_url": api.url, "api_key_file": str(key_file)}
    )
    assert chain.api_key.get_secret_value() == first  # read at start, as before
    target = funded_node.rpc("getnewaddress", wallet="wallet")
    keys: dict[str, str] = {}
    sent: dict[str, str] = {}  # idempotency key -> txid

    async def scenario() -> None:
        # the deposit watcher's clients, built as the exchange builds them (sessions unused)
        _, _, clients = build_deposits(sessionmaker(), {"bitcoin": chain})
        client = clients["bitcoin"]
        read_once = ChainApiClient(api.url, first)  # the old code path: key read at start
        try:
            assert (await client.balance())["trusted_sats"] > 0
            sent["keyreload-1"] = (await client.send(target, 10_000, "keyreload-1")).txid
            assert (await read_once.status())["chain"]

            keys["second"] = rotate(keys_file, first)
            write_key_file(key_file, keys["second"])
            with pytest.raises(ChainApiAuthError) as refused:
                await read_once.status()
            assert refused.value.status == 401
            assert (await client.status())["chain"]
            sent["keyreload-2"] = (await client.send(target, 11_000, "keyreload-2")).txid

            keys["third"] = rotate(keys_file, keys["second"])
            rewrite_unseen(key_file, keys["third"])
            with caplog.at_level(logging.WARNING, logger="scnode_exchange.chainclient"):
                third = await client.send(target, 12_000, "keyreload-3")
            assert third.replayed is False
            sent["keyreload-3"] = third.txid
            # the same send again: the API's idempotency answers the first one
            again = await client.send(target, 12_000, "keyreload-3")
            assert (again.txid, again.replayed) == (third.txid, True)
        finally:
            await client.aclose()
            await read_once.aclose()

    asyncio.run(scenario())
    # every send paid exactly once, the retried one included
    for idempotency_key, txid in sent.items():
        assert sends_for(funded_node, idempotency_key) == {txid}
    # the one refused send (the stale key) was retried once, and said so without any key
    retries = [r.getMessage() for r in caplog.records if "refused the key" in r.getMessage()]
    assert len(retries) == 1, retries
    for secret in (first, *keys.values()):
        assert secret not in caplog.text
    assert "Traceback" not in api.log()
