"""Simulated SC Cluster rebalance endpoint (SIMULATION): on-chain ⇄ Lightning swaps with a
node, over what would be the WireGuard tunnel (loopback here).

Protocol (the node's side is `apps/scnode_lightning_api/rebalance.py`, documented in its README):

- ``POST /v1/swaps`` ``{swap_id, node_id, direction, amount_sat, bolt11 | address}``, idempotent
  on ``swap_id`` (the same body again → the same answer; another body → 409).
  - ``to_node`` (the node's local balance is low): ``bolt11`` is the node's invoice of
    ``amount_sat``. Answer: a fresh cluster address of this swap and ``onchain_sat`` =
    amount + fee the node must send there.
  - ``from_node`` (the node's local balance is high): ``address`` is the node's. Answer: a
    cluster invoice (the hub's outside world) of amount + fee; once it is paid the cluster sends
    ``amount_sat`` on-chain to the address.
- ``POST /v1/swaps/{id}/onchain`` ``{txid}`` (to_node): the cluster reads the transaction from
  bitcoind (mempool or chain: this simulation accepts it unconfirmed) and, when it pays at least
  ``onchain_sat`` to the swap's address, pays the node's invoice through the hub.
- ``GET /v1/swaps/{id}``: the swap; for ``from_node`` it also sends the on-chain leg once the
  invoice is paid. ``GET /v1/swaps``: all of them.
- ``POST /v1/control/refuse`` ``{"reason": "..."|null}``: test control, refuse new swaps (403).
- ``POST /v1/control/hold-onchain`` ``{"hold": true|false}``: test control, answer 503 to
  ``/v1/swaps/{id}/onchain`` meanwhile (the node's coins went out, the cluster is not there).

Every state change is written to the JSON state file before the money moves ("paying" /
"sending" first), and a swap found in such a state at start-up is never retried blindly.
Stdlib + aiohttp only (it also runs in the trixie test containers).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from bitcoin.core import CTransaction

from simnet.lightning import bech32, bolt11
from simnet.lightning.wallet import ADDRESS_HRP

BANNER = "*** SIMULATION: simnet SC Cluster rebalance endpoint (swaps on the simulated chain) ***"


class UpstreamError(Exception):
    """The hub or the chain did not do what was asked."""


@dataclass
class RebalanceConfig:
    hub_control_url: str  # the hub stand-in's control API
    chain_rpc_url: str  # bitcoind (minichain / simnet.chain) JSON-RPC
    chain_rpc_user: str
    chain_rpc_password: str
    fee_base_sat: int = 100
    fee_ppm: int = 1_000
    min_swap_sat: int = 10_000
    max_swap_sat: int = 10_000_000
    token: str | None = None  # Bearer token the node must send (None: none required)
    network: str = "regtest"  # address prefixes (the lab runs mainnet parameters)
    # the chain stand-in's control API (its /pay sends the from_node leg); None: minichain's
    # simnet_pay RPC
    chain_control_url: str | None = None


class RebalanceServer:
    def __init__(self, config: RebalanceConfig, state_path: Path) -> None:
        self.config = config
        self.state_path = state_path
        self.swaps: dict[str, dict[str, Any]] = {}
        self.refuse_reason: str | None = None
        self.hold_onchain = False
        if state_path.exists():
            self.swaps = json.loads(state_path.read_text())["swaps"]
        self.locks: dict[str, asyncio.Lock] = {}
        self.http: ClientSession | None = None
        self.hrp = ADDRESS_HRP[config.network]

    # -- state -----------------------------------------------------------------------------
    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"swaps": self.swaps}, indent=1, sort_keys=True))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(self.state_path)

    def fee(self, amount_sat: int) -> int:
        return self.config.fee_base_sat + amount_sat * self.config.fee_ppm // 1_000_000

    # -- upstreams -------------------------------------------------------------------------
    async def _post(self, url: str, body: Any, auth: str | None = None) -> Any:
        assert self.http is not None
        headers = {"Authorization": auth} if auth else {}
        async with self.http.post(url, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status != 200:
                raise UpstreamError(f"{url}: {r.status} {data}")
            return data

    async def hub(self, method: str, path: str, body: Any = None) -> Any:
        url = self.config.hub_control_url.rstrip("/") + path
        if method == "GET":
            assert self.http is not None
            async with self.http.get(url) as r:
                return await r.json()
        return await self._post(url, body)

    async def chain(self, method: str, *params: Any) -> Any:
        token = base64.b64encode(
            f"{self.config.chain_rpc_user}:{self.config.chain_rpc_password}".encode()
        ).decode()
        reply = await self._post(
            self.config.chain_rpc_url,
            {"jsonrpc": "1.0", "id": "cluster", "method": method, "params": list(params)},
            auth=f"Basic {token}",
        )
        if reply.get("error"):
            raise UpstreamError(f"bitcoind {method}: {reply['error']}")
        return reply["result"]

    # -- swaps -----------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        swap_id = str(body.get("swap_id", ""))
        direction = body.get("direction")
        amount = body.get("amount_sat")
        if not (8 <= len(swap_id) <= 128) or direction not in ("to_node", "from_node"):
            return 422, {"error": "swap_id (8-128 chars) and direction to_node|from_node needed"}
        if not isinstance(amount, int) or isinstance(amount, bool):
            return 422, {"error": "amount_sat must be an integer"}
        request_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        existing = self.swaps.get(swap_id)
        if existing is not None:
            if existing["request_hash"] != request_hash:
                return 409, {"error": "swap_id already used for another request"}
            return 200, existing
        if self.refuse_reason is not None:
            return 403, {"error": self.refuse_reason}
        if not self.config.min_swap_sat <= amount <= self.config.max_swap_sat:
            return 403, {
                "error": f"amount_sat outside [{self.config.min_swap_sat}, "
                f"{self.config.max_swap_sat}]"
            }
        fee = self.fee(amount)
        swap: dict[str, Any] = {
            "swap_id": swap_id,
            "node_id": body.get("node_id"),
            "direction": direction,
            "amount_sat": amount,
            "fee_sat": fee,
            "request_hash": request_hash,
            "created_at": int(time.time()),
            "txid": None,
            "error": None,
        }
        if direction == "to_node":
            try:
                inv = bolt11.decode(str(body.get("bolt11", "")))
            except (bolt11.Bolt11Error, ValueError) as exc:
                return 422, {"error": f"bolt11: {exc}"}
            if inv.amount_msat != amount * 1000:
                return 422, {"error": "the invoice must be for amount_sat exactly"}
            # a fresh address per swap: a payment to it belongs to this swap alone
            program = hashlib.sha256(b"simnet-cluster-swap:" + swap_id.encode()).digest()[:20]
            swap.update(
                state="awaiting_onchain",
                bolt11=body["bolt11"],
                address=bech32.segwit_address(self.hrp, 0, program),
                onchain_sat=amount + fee,
            )
        else:
            address = str(body.get("address", ""))
            try:
                bech32.script_for_address(self.hrp, address)
            except ValueError:
                return 422, {"error": f"address is not a {self.config.network} segwit address"}
            swap.update(state="new", address=address, onchain_sat=amount, bolt11=None)
        self.swaps[swap_id] = swap
        self.save()
        return 201, swap

    async def issue_invoice(self, swap: dict[str, Any]) -> None:
        """from_node: the hub's outside world issues the invoice of amount + fee."""
        if swap["state"] != "new":
            return
        inv = await self.hub(
            "POST",
            "/v1/outside/invoice",
            {
                "amount_msat": (swap["amount_sat"] + swap["fee_sat"]) * 1000,
                "description": f"SC Cluster swap {swap['swap_id']}",
                "expiry": 3600,
            },
        )
        swap.update(
            state="awaiting_payment", bolt11=inv["bolt11"], payment_hash=inv["payment_hash"]
        )
        self.save()

    async def onchain_paid(self, swap: dict[str, Any], txid: str) -> None:
        """to_node: check the node's transaction, then pay its invoice (once)."""
        if swap["state"] != "awaiting_onchain":
            return
        raw = await self.chain("getrawtransaction", txid)
        tx = CTransaction.deserialize(bytes.fromhex(raw))
        script = bech32.script_for_address(self.hrp, swap["address"])
        paid = sum(out.nValue for out in tx.vout if bytes(out.scriptPubKey) == script)
        if paid < swap["onchain_sat"]:
            raise UpstreamError(
                f"{txid} pays {paid} sat to the swap address, not {swap['onchain_sat']}"
            )
        swap.update(state="paying", txid=txid)
        self.save()  # a crash from here on leaves "paying": never paid again blindly
        result = await self.hub("POST", "/v1/outside/pay", {"bolt11": swap["bolt11"]})
        if result.get("status") == "complete":
            swap.update(state="complete", preimage=result["payment_preimage"])
        else:
            swap.update(state="failed", error=f"invoice payment failed: {result}")
        self.save()

    async def send_onchain(self, swap: dict[str, Any]) -> None:
        """from_node: once the cluster's invoice is paid, pay the node on-chain (once)."""
        if swap["state"] != "awaiting_payment":
            return
        invoices = (await self.hub("GET", "/v1/outside/invoices"))["invoices"]
        mine = [i for i in invoices if i["payment_hash"] == swap["payment_hash"]]
        if not mine or mine[0]["status"] != "paid":
            return
        swap["state"] = "sending"
        self.save()
        # the simulated cluster wallet: the chain stand-in's world wallet (control /pay), or
        # minichain's simnet_pay, which pays from nowhere
        if self.config.chain_control_url:
            answer = await self._post(
                self.config.chain_control_url.rstrip("/") + "/pay",
                {"address": swap["address"], "sats": swap["onchain_sat"]},
            )
            txid = str(answer["txid"])
        else:
            txid = await self.chain("simnet_pay", swap["address"], swap["onchain_sat"])
        swap.update(state="complete", txid=txid)
        self.save()

    def lock(self, swap_id: str) -> asyncio.Lock:
        return self.locks.setdefault(swap_id, asyncio.Lock())

    # -- HTTP ------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        def authorized(request: web.Request) -> bool:
            if self.config.token is None:
                return True
            given = request.headers.get("Authorization", "")
            return hmac.compare_digest(given, f"Bearer {self.config.token}")

        def public(swap: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in swap.items() if k not in ("request_hash", "preimage")}

        async def body(request: web.Request) -> dict[str, Any]:
            try:
                data = await request.json()
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}

        async def create(request: web.Request) -> web.Response:
            if not authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            data = await body(request)
            async with self.lock(str(data.get("swap_id", ""))):
                status, swap = self.create(data)
                if status in (200, 201) and swap.get("direction") == "from_node":
                    try:
                        await self.issue_invoice(swap)
                    except (UpstreamError, OSError) as exc:
                        return web.json_response({"error": str(exc)}, status=503)
            return web.json_response(public(swap) if status < 300 else swap, status=status)

        async def onchain(request: web.Request) -> web.Response:
            if not authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            if self.hold_onchain:
                return web.json_response({"error": "held (simulation control)"}, status=503)
            swap_id = request.match_info["swap_id"]
            data = await body(request)
            async with self.lock(swap_id):
                swap = self.swaps.get(swap_id)
                if swap is None:
                    return web.json_response({"error": "no such swap"}, status=404)
                try:
                    await self.onchain_paid(swap, str(data.get("txid", "")))
                except (UpstreamError, OSError, ValueError) as exc:
                    return web.json_response({"error": str(exc)}, status=409)
                return web.json_response(public(swap))

        async def get(request: web.Request) -> web.Response:
            if not authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            swap_id = request.match_info["swap_id"]
            async with self.lock(swap_id):
                swap = self.swaps.get(swap_id)
                if swap is None:
                    return web.json_response({"error": "no such swap"}, status=404)
                try:
                    await self.send_onchain(swap)
                except (UpstreamError, OSError) as exc:
                    return web.json_response({"error": str(exc)}, status=503)
                return web.json_response(public(swap))

        async def list_all(request: web.Request) -> web.Response:
            return web.json_response({"swaps": [public(s) for s in self.swaps.values()]})

        async def refuse(request: web.Request) -> web.Response:
            data = await body(request)
            reason = data.get("reason")
            self.refuse_reason = None if reason is None else str(reason)
            return web.json_response({"refuse_reason": self.refuse_reason})

        async def hold_onchain(request: web.Request) -> web.Response:
            self.hold_onchain = bool((await body(request)).get("hold"))
            return web.json_response({"hold_onchain": self.hold_onchain})

        async def on_startup(_: web.Application) -> None:
            self.http = ClientSession(timeout=ClientTimeout(total=30))

        async def on_cleanup(_: web.Application) -> None:
            if self.http is not None:
                await self.http.close()

        app = web.Application()
        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        app.router.add_post("/v1/swaps", create)
        app.router.add_get("/v1/swaps", list_all)
        app.router.add_get("/v1/swaps/{swap_id}", get)
        app.router.add_post("/v1/swaps/{swap_id}/onchain", onchain)
        app.router.add_post("/v1/control/refuse", refuse)
        app.router.add_post("/v1/control/hold-onchain", hold_onchain)
        return app
