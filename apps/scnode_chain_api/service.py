"""What the routes do, in terms of wallet RPCs; amounts leave here as integer sats."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scnode_chain_api.readcache import MarkedCache
from scnode_chain_api.store import ChainApiStore
from scnode_chain_api.watcher import ChainWatcher
from scnode_core.chain_rpc import ChainRpcClient, ChainRpcError, from_sats, to_sats

MEMBER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
_COMMENT_PREFIX = "scnode-send:"

Received = tuple[int, int]


class RequestRefusedError(Exception):
    """A request the daemon or the API refuses for a reason the caller must fix (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SendResult:
    txid: str
    idempotency_key: str
    replayed: bool


class ChainService:
    """One chain daemon's wallet, as the exchange and the owner see it."""

    def __init__(
        self,
        rpc: ChainRpcClient,
        store: ChainApiStore,
        watcher: ChainWatcher,
        *,
        chain: str,
        wallet: str,
        address_cache_seconds: float = 10.0,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.watcher = watcher
        self.chain = chain
        self.wallet = wallet
        self._send_locks: dict[str, asyncio.Lock] = {}
        # Reads the watcher can invalidate (see readcache): deposit addresses' received
        # amounts, and the wallet balance.
        self.received_cache: MarkedCache[Received] = MarkedCache(address_cache_seconds)
        self.balance_cache: MarkedCache[dict[str, int]] = MarkedCache(address_cache_seconds)

    async def _w(self, method: str, *params: Any, **named: Any) -> Any:
        if named:
            return await self.rpc.call(method, wallet=self.wallet, named=named)
        return await self.rpc.call(method, *params, wallet=self.wallet)

    # -- status ----------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        info = await self.rpc.call("getblockchaininfo")
        net = await self.rpc.call("getnetworkinfo")
        status: dict[str, Any] = {
            "chain": self.chain,
            "network": info.get("chain"),
            "blocks": info.get("blocks"),
            "headers": info.get("headers"),
            "best_block_hash": info.get("bestblockhash"),
            "verification_progress": float(info.get("verificationprogress", 0)),
            "initial_block_download": bool(info.get("initialblockdownload", False)),
            "pruned": bool(info.get("pruned", False)),
            "prune_height": info.get("pruneheight"),
            "peers": net.get("connections"),
            "daemon_version": net.get("subversion"),
            "watched_addresses": self.watcher.watched,
            "watcher_error": self.watcher.last_error,
        }
        return status

    # -- deposit addresses -----------------------------------------------------------------
    @staticmethod
    def check_member(member_id: str) -> None:
        if not MEMBER_ID_RE.match(member_id):
            raise RequestRefusedError(
                422, "member id must be 1-64 characters of letters, digits and _.:-"
            )

    async def deposit_address(self, member_id: str, reuse_unused: bool) -> dict[str, Any]:
        self.check_member(member_id)
        if reuse_unused:
            for address in await self._addresses_of(member_id):
                if to_sats(await self._w("getreceivedbyaddress", address, 0)) == 0:
                    return {"member_id": member_id, "address": address, "new": False}
        address = str(await self._w("getnewaddress", member_id, "bech32"))
        await self.watcher.watch(address, member_id)
        return {"member_id": member_id, "address": address, "new": True}

    async def _addresses_of(self, member_id: str) -> list[str]:
        try:
            by_label = await self._w("getaddressesbylabel", member_id)
        except ChainRpcError as exc:
            if exc.code == -11:  # no addresses with this label yet
                return []
            raise
        return sorted(by_label)

    async def member_addresses(self, member_id: str, min_conf: int) -> dict[str, Any]:
        self.check_member(member_id)
        wanted = set(await self._addresses_of(member_id))
        any_conf = await self._w("listreceivedbyaddress", 0, True)
        confirmed = {
            e["address"]: to_sats(e["amount"])
            for e in await self._w("listreceivedbyaddress", min_conf, True)
        }
        rows = [
            {
                "address": e["address"],
                "received_sats": to_sats(e["amount"]),
                "confirmed_sats": confirmed.get(e["address"], 0),
                "txids": list(e.get("txids", [])),
            }
            for e in any_conf
            if e["address"] in wanted
        ]
        rows.sort(key=lambda r: r["address"])
        return {
            "member_id": member_id,
            "min_conf": min_conf,
            "addresses": rows,
            "received_sats": sum(r["received_sats"] for r in rows),
            "confirmed_sats": sum(r["confirmed_sats"] for r in rows),
        }

    async def address_detail(self, address: str, min_conf: int) -> dict[str, Any]:
        # Deposit addresses are known to the watcher; only others cost a getaddressinfo.
        label = self.watcher.label_of(address)
        if label is not None:
            labels = [label]
        else:
            try:
                info = await self._w("getaddressinfo", address)
            except ChainRpcError as exc:
                if exc.code == -5:
                    raise RequestRefusedError(422, f"not a valid {self.chain} address") from None
                raise
            if not info.get("ismine"):
                raise RequestRefusedError(404, "address does not belong to this node's wallet")
            labels = list(info.get("labels", []))
        received, confirmed = await self._received(address, min_conf, cacheable=label is not None)
        return {
            "address": address,
            "labels": labels,
            "received_sats": received,
            "confirmed_sats": confirmed,
            "min_conf": min_conf,
        }

    async def _received(self, address: str, min_conf: int, *, cacheable: bool) -> Received:
        """(received with 0 conf, received with ``min_conf``) in sats; deposit addresses through
        the watcher-invalidated cache (a new tx to the address, any block, any mempool removal,
        any output change end an entry)."""
        if not cacheable:
            return await self._ask_received(address, min_conf)
        return await self.received_cache.get(
            (address, min_conf),
            lambda: self.watcher.change_mark(address),
            lambda: self._ask_received(address, min_conf),
        )

    async def _ask_received(self, address: str, min_conf: int) -> Received:
        received, confirmed = await asyncio.gather(
            self._w("getreceivedbyaddress", address, 0),
            self._w("getreceivedbyaddress", address, min_conf),
        )
        return to_sats(received), to_sats(confirmed)

    async def transaction(self, txid: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", txid):
            raise RequestRefusedError(422, "txid must be 64 hex characters")
        try:
            tx = await self._w("gettransaction", txid, True)
        except ChainRpcError as exc:
            if exc.code == -5:
                raise RequestRefusedError(404, "transaction not in this node's wallet") from None
            raise
        return {
            "txid": tx["txid"],
            "confirmations": int(tx.get("confirmations", 0)),
            "blockhash": tx.get("blockhash"),
            "blockheight": tx.get("blockheight"),
            "time": tx.get("time"),
            "amount_sats": to_sats(tx["amount"]),
            "fee_sats": -to_sats(tx["fee"]) if "fee" in tx else None,
            "details": [
                {
                    "address": d.get("address"),
                    "category": d.get("category"),
                    "amount_sats": to_sats(d["amount"]),
                    "label": d.get("label"),
                    "vout": d.get("vout"),
                }
                for d in tx.get("details", [])
            ],
        }

    async def balance(self) -> dict[str, Any]:
        """The wallet's balances, through the cache: any transaction seen, block or mempool
        removal (and our own sends) ends the entry."""
        return dict(
            await self.balance_cache.get("balance", self.watcher.wallet_mark, self._ask_balance)
        )

    async def _ask_balance(self) -> dict[str, int]:
        mine = (await self._w("getbalances"))["mine"]
        return {
            "trusted_sats": to_sats(mine.get("trusted", 0)),
            "untrusted_pending_sats": to_sats(mine.get("untrusted_pending", 0)),
            "immature_sats": to_sats(mine.get("immature", 0)),
        }

    async def fee_estimate(self, target: int) -> dict[str, Any]:
        result = await self.rpc.call("estimatesmartfee", target)
        rate = result.get("feerate")
        return {
            "target_blocks": target,
            "blocks": result.get("blocks"),
            # BTC per kvB → sat per vB, kept exact as a decimal string
            "feerate_sat_vb": str(Decimal(str(rate)) * 100_000_000 / 1000) if rate else None,
            "errors": list(result.get("errors", [])),
        }

    # -- sending ---------------------------------------------------------------------------
    async def send(
        self,
        *,
        address: str,
        amount_sats: int,
        idempotency_key: str,
        fee_rate_sat_vb: int | None,
        subtract_fee: bool,
    ) -> SendResult:
        """Send at most once per idempotency key, even across crashes of this API.

        The key travels into the wallet as the transaction's comment, so a send whose answer
        was lost (crash, timeout) is found in the wallet instead of being sent again.
        """
        if not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise RequestRefusedError(422, "idempotency_key must be 8-128 of [A-Za-z0-9_.:-]")
        if amount_sats <= 0:
            raise RequestRefusedError(422, "amount_sats must be a positive integer")
        request = {
            "address": address,
            "amount_sats": amount_sats,
            "fee_rate_sat_vb": fee_rate_sat_vb,
            "subtract_fee": subtract_fee,
        }
        request_hash = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        lock = self._send_locks.setdefault(idempotency_key, asyncio.Lock())
        async with lock:
            record = self.store.get_send(idempotency_key)
            if record is not None and record.request_hash != request_hash:
                raise RequestRefusedError(
                    409, "idempotency_key was already used for a different send"
                )
            if record is not None and record.state == "sent" and record.txid:
                return SendResult(record.txid, idempotency_key, replayed=True)
            if record is not None and record.state == "failed":
                raise RequestRefusedError(
                    409, f"this send already failed: {record.error} (use a new key to retry)"
                )
            if record is not None:  # pending: an earlier attempt's outcome is unknown
                # An attempt that timed out (or whose API process died) may still be running
                # in the daemon, and would pay after our wallet search: ask the daemon first,
                # search second, and never send again while a send is in flight there.
                in_flight = await self._sends_in_flight()
                txid = await self._find_sent(idempotency_key)
                if txid is not None:
                    self.store.finish_send(idempotency_key, txid=txid)
                    return SendResult(txid, idempotency_key, replayed=True)
                if in_flight:
                    raise RequestRefusedError(
                        503,
                        "an earlier attempt of this send may still be running in the node: "
                        "not sent again; retry later",
                    )
            else:
                self.store.begin_send(idempotency_key, request_hash)
            return await self._send_now(idempotency_key, request)

    async def _send_now(self, key: str, request: dict[str, Any]) -> SendResult:
        named: dict[str, Any] = {
            "address": request["address"],
            "amount": from_sats(request["amount_sats"]),
            "comment": f"{_COMMENT_PREFIX}{key}",
            "subtractfeefromamount": request["subtract_fee"],
        }
        if request["fee_rate_sat_vb"] is not None:
            named["fee_rate"] = request["fee_rate_sat_vb"]
        try:
            txid = str(await self._w("sendtoaddress", **named))
        except ChainRpcError as exc:
            self.watcher.touch()
            status, reason = _send_refusal(exc)
            if status is None:
                raise  # not a definite refusal: stays pending, a retry reconciles
            self.store.finish_send(key, error_code=exc.code, error=exc.message)
            raise RequestRefusedError(status, reason) from None
        self.watcher.touch()  # the balance changed now, whatever ZMQ says later
        self.store.finish_send(key, txid=txid)
        return SendResult(txid, key, replayed=False)

    async def _sends_in_flight(self) -> bool:
        """Whether the daemon is executing a send right now (getrpcinfo's active_commands)."""
        info = await self.rpc.call("getrpcinfo")
        return any(
            command.get("method") in _SEND_METHODS for command in info.get("active_commands", [])
        )

    async def _find_sent(self, key: str) -> str | None:
        comment = f"{_COMMENT_PREFIX}{key}"
        skip = 0
        while True:
            page = await self._w("listtransactions", "*", 500, skip, True)
            for entry in page:
                if entry.get("category") == "send" and entry.get("comment") == comment:
                    return str(entry["txid"])
            if len(page) < 500:
                return None
            skip += 500

    async def reconcile_pending_sends(self) -> None:
        """At start-up: settle sends whose outcome a crash left unknown — in one pass over the
        wallet for all of them (it runs before the API answers: a search per send made a
        restart with hundreds pending take minutes, the API down all the while)."""
        pending = {f"{_COMMENT_PREFIX}{r.idempotency_key}": r.idempotency_key
                   for r in self.store.pending_sends()}  # fmt: skip
        found: dict[str, str] = {}
        skip = 0
        while len(found) < len(pending):
            page = await self._w("listtransactions", "*", 500, skip, True)
            for entry in page:
                key = pending.get(str(entry.get("comment")))
                if entry.get("category") == "send" and key is not None and key not in found:
                    found[key] = str(entry["txid"])
            if len(page) < 500:
                break
            skip += 500
        for key, txid in found.items():
            self.store.finish_send(key, txid=txid)


_SEND_METHODS = frozenset({"sendtoaddress", "sendmany", "send", "sendall"})


def _send_refusal(exc: ChainRpcError) -> tuple[int | None, str]:
    """(status, reason) of a send the daemon refused for good, or (None, …) when its outcome is
    not known (the send stays pending and a retry reconciles it)."""
    if exc.code in (-6, -4) and "insufficient" in exc.message.lower():
        return 409, "insufficient funds in the node wallet"
    if exc.code == -6:
        # bitcoind's sendtoaddress answers every transaction it cannot build (amount too small
        # or dust, fee above -maxtxfee, fee rate below the minimum) with -6 and the reason,
        # before anything is committed: the request's fault, and nothing was sent
        return 422, exc.message
    if exc.code == -4 and "too small" in exc.message.lower():
        return 422, exc.message  # the same refusal as older bitcoinds' (and simnet's) -4
    if exc.code == -5:
        return 422, f"invalid address: {exc.message}"
    if exc.code == -3:
        return 422, f"invalid amount: {exc.message}"
    if exc.code in (-8, -25, -26):
        return 422, exc.message
    return None, exc.message
