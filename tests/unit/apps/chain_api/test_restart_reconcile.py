"""The chain API's start-up settles the sends a crash left pending in one pass over the wallet.

Found by the soak with faults (docs/assurance.md §5): after a kill -9 under load the Bitcoin
chain API searched the whole wallet once per pending send before it answered at all, and with
hundreds pending it was not up again in 120 s."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from scnode_chain_api.service import ChainService
from scnode_chain_api.store import ChainApiStore
from scnode_chain_api.watcher import ChainWatcher
from scnode_core.chain_rpc import ChainRpcClient

PAGE = 500


class WalletRpc:
    """``listtransactions`` of a wallet with many sends (comments carry the send keys)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.calls = 0

    async def call(self, method: str, *params: Any, wallet: str | None = None, **_: Any) -> Any:
        assert method == "listtransactions" and wallet == "wallet"
        self.calls += 1
        _, count, skip, _ = params
        return self.entries[skip : skip + count]


def test_restart_settles_hundreds_of_pending_sends_in_one_pass(tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = []
    for i in range(1_200):
        if i % 2:
            entries.append({"category": "receive", "txid": f"{i:064x}"})
        else:
            entries.append(
                {"category": "send", "txid": f"{i:064x}", "comment": f"scnode-send:key-{i:05d}"}
            )
    store = ChainApiStore(tmp_path / "state.sqlite3")
    sent = [f"key-{i:05d}" for i in range(0, 1_200, 8)]  # 150 the wallet has
    unsent = [f"lost-{i:05d}" for i in range(150)]  # 150 the crash cut off before the daemon
    for key in sent + unsent:
        store.begin_send(key, "hash")
    rpc = WalletRpc(entries)
    service = ChainService(
        cast(ChainRpcClient, rpc), store, cast(ChainWatcher, None), chain="bitcoin",
        wallet="wallet",
    )  # fmt: skip
    asyncio.run(service.reconcile_pending_sends())
    # one pass over the wallet's 3 pages, not one per pending send (the old code: 150 x 3)
    assert rpc.calls == -(-len(entries) // PAGE)
    for key in sent:
        record = store.get_send(key)
        assert record is not None and record.state == "sent"
        assert record.txid == f"{int(key.removeprefix('key-')):064x}"
    assert {r.idempotency_key for r in store.pending_sends()} == set(unsent)
    store.close()
