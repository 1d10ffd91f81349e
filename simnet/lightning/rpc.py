"""lightningd's JSON-RPC 2.0 over the unix socket `<lightning-dir>/<network>/lightning-rpc`.

Framing as lightningd's `jsonrpc.c`: requests are JSON objects back to back (no separator
needed), many per connection; every response is compact JSON followed by `\\n\\n`; `params`
is required (-32600 "No params"); unknown methods answer -32601 "Unknown command 'x'".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bitcoin.core import b2lx

from simnet.lightning import bech32, bolt11, wallet
from simnet.lightning.bitcoind import BitcoindError
from simnet.lightning.node import (
    CHANNEL_TYPE,
    FEATURES_INIT,
    FEATURES_NODE,
    VERSION,
    WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
    WITHDRAW_FEE_SAT,
    Node,
    RpcError,
    _sat,
    dump,
    msat_param,
    valid_node_id,
)

Method = Callable[[dict[str, Any]], Awaitable[Any]]

# parameter names in lightningd's order (for positional params); required ones first
PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "getinfo": ((), ()),
    "listfunds": ((), ("spent",)),
    "listpeers": ((), ("id", "level")),
    "listpeerchannels": ((), ("id", "short_channel_id")),
    "listchannels": ((), ("short_channel_id", "source", "destination")),
    "listnodes": ((), ("id",)),
    "newaddr": ((), ("addresstype",)),
    "invoice": (
        ("amount_msat", "label", "description"),
        ("expiry", "fallbacks", "preimage", "exposeprivatechannels", "cltv", "deschashonly"),
    ),
    "listinvoices": (
        (),
        ("label", "invstring", "payment_hash", "offer_id", "index", "start", "limit"),
    ),
    "waitanyinvoice": ((), ("lastpay_index", "timeout")),
    "waitinvoice": (("label",), ()),
    "delinvoice": (("label", "status"), ("desconly",)),
    "pay": (
        ("bolt11",),
        (
            "amount_msat",
            "label",
            "riskfactor",
            "maxfeepercent",
            "retry_for",
            "maxdelay",
            "exemptfee",
            "localinvreqid",
            "exclude",
            "maxfee",
            "description",
            "partial_msat",
        ),
    ),
    "xpay": (
        ("invstring",),
        ("amount_msat", "maxfee", "layers", "retry_for", "partial_msat", "maxdelay"),
    ),
    "decode": (("string",), ()),
    "keysend": (
        ("destination", "amount_msat"),
        (
            "label",
            "maxfeepercent",
            "retry_for",
            "maxdelay",
            "exemptfee",
            "extratlvs",
            "routehints",
            "maxfee",
        ),
    ),
    "fundchannel": (
        ("id", "amount"),
        (
            "feerate",
            "announce",
            "minconf",
            "push_msat",
            "close_to",
            "request_amt",
            "compact_lease",
            "utxos",
            "mindepth",
            "reserve",
            "channel_type",
        ),
    ),
    "close": (
        ("id",),
        (
            "unilateraltimeout",
            "destination",
            "fee_negotiation_step",
            "wrong_funding",
            "force_lease_closed",
            "feerange",
        ),
    ),
    "withdraw": (("destination", "satoshi"), ("feerate", "minconf", "utxos")),
    "connect": (("id",), ("host", "port")),
    "disconnect": (("id",), ("force",)),
    "listforwards": ((), ("status", "in_channel", "out_channel", "index", "start", "limit")),
    "listpays": ((), ("bolt11", "payment_hash", "status", "index", "start", "limit")),
    "listsendpays": ((), ("bolt11", "payment_hash", "status", "index", "start", "limit")),
    "listhtlcs": ((), ("id",)),
    "listclosedchannels": ((), ("id",)),
    "staticbackup": ((), ()),
    "emergencyrecover": ((), ()),
    "feerates": (("style",), ()),
    "listconfigs": ((), ("config",)),
    "plugin": (("subcommand",), ("plugin", "directory", "options")),
    "stop": ((), ()),
    "help": ((), ("command",)),
}

BUILTIN_PLUGINS = (
    "autoclean",
    "chanbackup",
    "bcli",
    "cln-bwatch",
    "commando",
    "funder",
    "topology",
    "exposesecret",
    "keysend",
    "offers",
    "pay",
    "recklessrpc",
    "recover",
    "txprepare",
    "cln-renepay",
    "cln-xpay",
    "spenderp",
    "cln-askrene",
    "sql",
    "bookkeeper",
)


class RpcServer:
    """Serves the node's methods on its unix socket."""

    def __init__(self, node: Node, stop: Callable[[], None]) -> None:
        self.node = node
        self.stop_cb = stop
        self.path = node.dir / (node.opts.get("rpc-file") or "lightning-rpc")
        self.methods: dict[str, Method] = {name: getattr(self, "m_" + name) for name in PARAMS}

    async def start(self) -> None:
        """Create the socket (replacing a stale one)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        mode = int(self.node.opts.get("rpc-file-mode") or "0600", 8)
        self.path.chmod(mode)

    async def close(self) -> None:
        """Close the socket."""
        self.server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def respond(obj: dict[str, Any]) -> None:
            async with lock:
                writer.write(dump(obj).encode() + b"\n\n")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        async def run(req: Any) -> None:
            await respond(await self.handle(req))

        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk.decode("utf-8", errors="replace")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        req, end = decoder.raw_decode(buf)
                    except json.JSONDecodeError:
                        if _complete_garbage(buf):
                            await respond(
                                {
                                    "jsonrpc": "2.0",
                                    "id": None,
                                    "error": {
                                        "code": -32700,
                                        "message": f"Invalid token in json input: '{buf[:100]}'",
                                    },
                                }
                            )
                            writer.close()
                            return
                        break
                    buf = buf[end:]
                    task = asyncio.create_task(run(req))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except ConnectionError:
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def handle(self, req: Any) -> dict[str, Any]:
        """One request object → one response object."""
        if not isinstance(req, dict):
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32600, "message": "Expected {} for json command"},
            }
        rid = req.get("id")
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        try:
            if "id" not in req:
                raise RpcError(-32600, "No id")
            method = req.get("method")
            if not isinstance(method, str):
                raise RpcError(-32600, "Expected string for method")
            if "params" not in req:
                raise RpcError(-32600, "No params")
            if method not in self.methods:
                raise RpcError(-32601, f"Unknown command '{method}'")
            params = self._bind(method, req["params"])
            out["result"] = await self.methods[method](params)
        except RpcError as exc:
            out["error"] = exc.to_json()
        except Exception as exc:  # a stand-in bug must not kill the daemon
            self.node.log("BROKEN", "jsonrpc", f"{type(exc).__name__}: {exc}")
            out["error"] = {"code": -1, "message": f"simulation error: {type(exc).__name__}: {exc}"}
        return out

    def _bind(self, method: str, params: Any) -> dict[str, Any]:
        required, optional = PARAMS[method]
        names = required + optional
        if isinstance(params, list):
            if len(params) > len(names):
                raise RpcError(
                    -32602, f"too many parameters: got {len(params)}, expected {len(names)}"
                )
            bound = dict(zip(names, params, strict=False))
        elif isinstance(params, dict):
            bound = dict(params)
            for key in bound:
                if key not in names:
                    raise RpcError(
                        -32602,
                        f"unknown parameter: {key}, this may be caused by a failure "
                        "to autodetect key=value-style parameters. Please try using the "
                        "-k flag and explicit key=value pairs of parameters.",
                    )
        else:
            raise RpcError(-32600, "Expected array or object for params")
        bound = {k: v for k, v in bound.items() if v is not None}
        for key in required:
            if key not in bound:
                raise RpcError(-32602, f"missing required parameter: {key}")
        return bound

    # ------------------------------------------------------------------ node info
    async def m_getinfo(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        chans = list(n.channels.values())
        out: dict[str, Any] = {
            "id": n.node_id,
            "alias": n.alias,
            "color": n.color,
            "num_peers": len(n.peers),
            "num_pending_channels": sum(c["state"] == "CHANNELD_AWAITING_LOCKIN" for c in chans),
            "num_active_channels": sum(
                c["state"] == "CHANNELD_NORMAL" and c["peer_id"] in n.peers for c in chans
            ),
            "num_inactive_channels": sum(
                c["state"] == "CHANNELD_NORMAL" and c["peer_id"] not in n.peers for c in chans
            ),
            "address": [_addr_json(a) for a in n.opts.multi.get("announce-addr", [])],
            "binding": [{"type": "ipv4", "address": h, "port": port} for h, port in n.listen],
            "version": VERSION,
            "blockheight": max(n.blockheight, 0),
            "network": n.network,
            "fees_collected_msat": sum(
                f["fee_msat"] for f in n.forwards if f["status"] == "settled"
            ),
            "lightning-dir": str(n.dir),
            "our_features": {
                "init": FEATURES_INIT,
                "node": FEATURES_NODE,
                "channel": "",
                "invoice": "02000002024100",
            },
        }
        if n.chain_trouble or n.blockheight < n.chain_tip:
            out["warning_lightningd_sync"] = (
                "Lightningd is still loading latest blocks from bitcoind."
            )
        return out

    async def m_listconfigs(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        configs: dict[str, Any] = {}
        zmq_plugin = n.zmq.plugin if n.zmq else None
        for name, value in n.opts.values.items():
            entry: dict[str, Any] = {
                "value_str": value,
                "source": n.opts.sources.get(name, "cmdline").replace("cmdline", "cmdline"),
            }
            if name.startswith("zmq-pub-") and zmq_plugin:
                entry["plugin"] = zmq_plugin
            configs[name] = entry
        configs.setdefault(
            "xpay-handle-pay",
            {
                "value_bool": n.xpay_handle_pay,
                "source": "default",
                "plugin": "/usr/libexec/c-lightning/plugins/cln-xpay",
                "dynamic": True,
            },
        )
        if "config" in p:
            name = str(p["config"])
            if name not in configs:
                raise RpcError(-32602, f"config: Unknown config option '{name}'")
            return {"configs": {name: configs[name]}}
        return {"configs": configs}

    async def m_plugin(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["subcommand"] != "list":
            raise RpcError(-32602, "subcommand: simulation supports only 'list'")
        plugins = [
            {
                "name": f"/usr/libexec/c-lightning/plugins/{name}",
                "active": True,
                "dynamic": name.startswith(
                    (
                        "cln-",
                        "funder",
                        "exposesecret",
                        "offers",
                        "pay",
                        "reckless",
                        "txprepare",
                        "sql",
                    )
                ),
            }
            for name in BUILTIN_PLUGINS
        ]
        plugins += [
            {"name": path, "active": True, "dynamic": True} for path in self.node.opts.plugins
        ]
        return {"command": "list", "plugins": plugins}

    async def m_feerates(self, p: dict[str, Any]) -> dict[str, Any]:
        style = p["style"]
        if style not in ("perkw", "perkb"):
            raise RpcError(-32602, "style: should be 'perkw' or 'perkb'")
        k = 1 if style == "perkw" else 4
        base = 253 * k
        return {
            style: {
                "opening": base,
                "mutual_close": base,
                "unilateral_close": base,
                "unilateral_anchor_close": 1250 * k,
                "penalty": base,
                "splice": 258 * k,
                "min_acceptable": base,
                "max_acceptable": 2530 * k,
                "floor": base,
                "estimates": [
                    {"blockcount": b, "feerate": base, "smoothed_feerate": base}
                    for b in (2, 6, 12, 100)
                ],
            },
            "onchain_fee_estimates": {
                "opening_channel_satoshis": 177,
                "mutual_close_satoshis": 170,
                "unilateral_close_satoshis": 1390,
                "unilateral_close_nonanchor_satoshis": 151,
                "htlc_timeout_satoshis": 167,
                "htlc_success_satoshis": 177,
            },
        }

    async def m_help(self, p: dict[str, Any]) -> dict[str, Any]:
        names = sorted(self.methods)
        if "command" in p:
            if p["command"] not in self.methods:
                raise RpcError(-32602, f"command: Unknown command '{p['command']}'")
            names = [str(p["command"])]
        return {
            "help": [{"command": f"{name} {' '.join(PARAMS[name][0])}".strip()} for name in names],
            "format-hint": "simple",
        }

    async def m_stop(self, p: dict[str, Any]) -> str:
        asyncio.get_running_loop().call_later(0.05, self.stop_cb)
        return "Shutdown complete"

    # ------------------------------------------------------------------ wallet
    async def m_newaddr(self, p: dict[str, Any]) -> dict[str, Any]:
        kind = p.get("addresstype", "default")
        if kind not in ("default", "bech32", "p2tr", "all"):
            raise RpcError(-32602, "addresstype: Invalid address type")
        entries = self.node.new_address()
        if kind == "bech32":
            return {"bech32": entries["bech32"]["address"]}
        if kind == "p2tr":
            return {"p2tr": entries["p2tr"]["address"]}
        return {"bech32": entries["bech32"]["address"], "p2tr": entries["p2tr"]["address"]}

    async def m_listfunds(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        outputs = []
        for u in n.utxos.values():
            entry = {
                k: u[k]
                for k in ("txid", "output", "amount_msat", "scriptpubkey", "address", "status")
            }
            if "blockheight" in u:
                entry["blockheight"] = u["blockheight"]
            entry["reserved"] = u["reserved"]
            if u["reserved"] and "reserved_to_block" in u:
                entry["reserved_to_block"] = u["reserved_to_block"]
            outputs.append(entry)
        channels = []
        for ch in n.channels.values():
            if ch["state"] == "ONCHAIN":
                continue
            entry = {
                "peer_id": ch["peer_id"],
                "connected": ch["peer_id"] in n.peers,
                "state": ch["state"],
                "channel_id": ch["channel_id"],
            }
            if "short_channel_id" in ch:
                entry["short_channel_id"] = ch["short_channel_id"]
            entry.update(
                {
                    "our_amount_msat": ch["to_us_msat"],
                    "amount_msat": ch["total_msat"],
                    "funding_txid": ch["funding_txid"],
                    "funding_output": ch["funding_outnum"],
                }
            )
            channels.append(entry)
        return {"outputs": outputs, "channels": channels}

    async def m_withdraw(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        try:
            script = bech32.script_for_address(wallet.ADDRESS_HRP[n.network], str(p["destination"]))
        except ValueError as exc:
            raise RpcError(
                -32602,
                "destination: Could not parse destination address, destination "
                "should be a valid address",
            ) from exc
        want = None if p["satoshi"] == "all" else _sat(p["satoshi"], "satoshi")
        chosen, got = n._select(want, WITHDRAW_FEE_SAT)
        amount = got - WITHDRAW_FEE_SAT if want is None else want
        outputs = [(script, amount)]
        change = got - amount - WITHDRAW_FEE_SAT
        if change > 546:
            outputs.append((bytes.fromhex(n.new_address()["bech32"]["script"]), change))
        tx = wallet.build_spend(n._sign_inputs(chosen), outputs)
        try:
            await n.chain.call("sendrawtransaction", tx.serialize().hex())
        except BitcoindError as exc:
            raise RpcError(-1, f"Error broadcasting transaction: {exc.message}") from exc
        n._spend(chosen)
        return {"tx": tx.serialize().hex(), "txid": b2lx(tx.GetTxid()), "psbt": n._psbt(tx)}

    # ------------------------------------------------------------------ peers and channels
    async def m_connect(self, p: dict[str, Any]) -> dict[str, Any]:
        target = str(p["id"])
        host, port = p.get("host"), p.get("port")
        if "@" in target:
            target, _, hostport = target.partition("@")
            host, _, port_text = hostport.rpartition(":")
            port = int(port_text) if port_text else 9735
            host = host or hostport
        if not valid_node_id(target):
            raise RpcError(-32602, "id: should be a node id: invalid token (see logs for details)")
        if host is None:
            peer = self.node.known_peers.get(target)
            if peer is None or not peer.get("host"):
                raise RpcError(401, "Unable to connect, no address known for peer")
            host, port = peer["host"], peer["port"]
        port = int(port or 9735)
        if host == "localhost":
            host = "127.0.0.1"
        link = await self.node.connect_peer(target, str(host), port)
        return {
            "id": target,
            "features": FEATURES_INIT,
            "direction": link.direction,
            "address": {"type": "ipv4", "address": str(host), "port": port},
        }

    async def m_disconnect(self, p: dict[str, Any]) -> dict[str, Any]:
        target = str(p["id"])
        link = self.node.peers.get(target)
        if link is None:
            raise RpcError(-1, "Peer not connected")
        if self.node._channel_with(target) and not p.get("force"):
            raise RpcError(-1, "Peer has (at least one) channel in state CHANNELD_NORMAL")
        link.close()
        await link.closed.wait()
        return {}

    async def m_listpeers(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        peers = []
        for peer_id, link in n.peers.items():
            if "id" in p and p["id"] != peer_id:
                continue
            host, port = link.remote_addr
            peers.append(
                {
                    "id": peer_id,
                    "connected": True,
                    "num_channels": sum(c["peer_id"] == peer_id for c in n.channels.values()),
                    "netaddr": [f"{host}:{port}"],
                    "features": FEATURES_INIT,
                }
            )
        for peer_id in {c["peer_id"] for c in n.channels.values()} - set(n.peers):
            if "id" in p and p["id"] != peer_id:
                continue
            peers.append(
                {
                    "id": peer_id,
                    "connected": False,
                    "num_channels": sum(c["peer_id"] == peer_id for c in n.channels.values()),
                }
            )
        return {"peers": peers}

    def _channel_json(self, ch: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        normal = ch["state"] == "CHANNELD_NORMAL"
        upd = {
            "htlc_minimum_msat": 0,
            "htlc_maximum_msat": 990000000,
            "cltv_expiry_delta": 6,
            "fee_base_msat": 1,
            "fee_proportional_millionths": 10,
        }
        updates: dict[str, Any] = {"local": upd}
        if normal or ch["state"].startswith("CLOS"):
            updates["remote"] = upd
        out: dict[str, Any] = {
            "peer_id": ch["peer_id"],
            "peer_connected": ch["peer_id"] in n.peers,
            "reestablished": ch["peer_id"] in n.peers,
            "channel_type": CHANNEL_TYPE,
            "ignore_fee_limits": True,
            "updates": updates,
            "state": ch["state"],
            "scratch_txid": ch.get("close_txid")
            or hashlib.sha256(ch["channel_id"].encode()).hexdigest(),
            "last_tx_fee_msat": ch.get("last_tx_fee_msat", 1735000),
            "lost_state": False,
            "feerate": {"perkw": ch["feerate_perkw"], "perkb": ch["feerate_perkw"] * 4},
        }
        if not ch["state"].startswith(("CLOSINGD", "ONCHAIN")):
            out["owner"] = "channeld"
        if "short_channel_id" in ch:
            out["short_channel_id"] = ch["short_channel_id"]
        out.update(
            {
                "direction": 0 if n.node_id < ch["peer_id"] else 1,
                "channel_id": ch["channel_id"],
                "funding_txid": ch["funding_txid"],
                "funding_outnum": ch["funding_outnum"],
                "close_to_addr": ch["close_to_addr"],
                "close_to": ch["close_to"],
                "private": False,
                "opener": ch["opener"],
            }
        )
        if "closer" in ch:
            out["closer"] = ch["closer"]
        alias: dict[str, Any] = {"local": ch["alias_local"]}
        if normal or "short_channel_id" in ch:
            alias["remote"] = ch["alias_remote"]
        out["alias"] = alias
        local_funds = ch["total_msat"] if ch["opener"] == "local" else 0
        out.update(
            {
                "features": ["option_static_remotekey", "option_anchors"],
                "funding": {
                    "local_funds_msat": local_funds,
                    "remote_funds_msat": ch["total_msat"] - local_funds,
                    "pushed_msat": ch["push_msat"],
                    "withheld": False,
                },
                "to_us_msat": ch["to_us_msat"],
                "min_to_us_msat": ch["min_to_us_msat"],
                "max_to_us_msat": ch["max_to_us_msat"],
                "total_msat": ch["total_msat"],
                "fee_base_msat": 1,
                "fee_proportional_millionths": 10,
                "dust_limit_msat": 546000,
                "their_max_htlc_value_in_flight_msat": 18446744073709551615,
                "our_max_htlc_value_in_flight_msat": 18446744073709551615,
                "their_reserve_msat": ch["total_msat"] // 100,
                "our_reserve_msat": ch["total_msat"] // 100,
                "spendable_msat": n.spendable(ch),
                "receivable_msat": n.receivable(ch),
                "minimum_htlc_in_msat": 0,
                "minimum_htlc_out_msat": 0,
                "maximum_htlc_out_msat": 990000000,
                "their_to_self_delay": 6,
                "our_to_self_delay": 6,
                "max_accepted_htlcs": 483,
                "state_changes": ch["state_changes"],
                "status": [_status_line(n, ch)],
            }
        )
        for k in (
            "in_payments_offered",
            "in_offered_msat",
            "in_payments_fulfilled",
            "in_fulfilled_msat",
            "out_payments_offered",
            "out_offered_msat",
            "out_payments_fulfilled",
            "out_fulfilled_msat",
        ):
            out[k] = ch[k]
        out["htlcs"] = []
        return out

    async def m_listpeerchannels(self, p: dict[str, Any]) -> dict[str, Any]:
        chans = [
            self._channel_json(c)
            for c in self.node.channels.values()
            if ("id" not in p or c["peer_id"] == p["id"])
            and ("short_channel_id" not in p or c.get("short_channel_id") == p["short_channel_id"])
        ]
        return {"channels": chans}

    async def m_listchannels(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        out = []
        for ch in n.channels.values():
            if ch["state"] != "CHANNELD_NORMAL" or "short_channel_id" not in ch:
                continue
            for src, dst in ((n.node_id, ch["peer_id"]), (ch["peer_id"], n.node_id)):
                if any(
                    k in p and p[k] != v
                    for k, v in (
                        ("source", src),
                        ("destination", dst),
                        ("short_channel_id", ch["short_channel_id"]),
                    )
                ):
                    continue
                out.append(
                    {
                        "source": src,
                        "destination": dst,
                        "short_channel_id": ch["short_channel_id"],
                        "direction": 0 if src < dst else 1,
                        "public": True,
                        "amount_msat": ch["total_msat"],
                        "message_flags": 1,
                        "channel_flags": 0 if src < dst else 1,
                        "active": True,
                        "last_update": int(time.time()),
                        "base_fee_millisatoshi": 1,
                        "fee_per_millionth": 10,
                        "delay": 6,
                        "htlc_minimum_msat": 0,
                        "htlc_maximum_msat": 990000000,
                        "features": "",
                    }
                )
        return {"channels": out}

    async def m_listnodes(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        nodes = [
            {
                "nodeid": n.node_id,
                "alias": n.alias,
                "color": n.color,
                "last_timestamp": int(time.time()),
                "features": FEATURES_NODE,
                "addresses": [],
            }
        ]
        if "id" in p:
            nodes = [x for x in nodes if x["nodeid"] == p["id"]]
        return {"nodes": nodes}

    async def m_fundchannel(self, p: dict[str, Any]) -> dict[str, Any]:
        if not valid_node_id(p["id"]):
            raise RpcError(-32602, "id: should be a node id: invalid token (see logs for details)")
        push = msat_param(p.get("push_msat", 0), "push_msat")
        return await self.node.fundchannel(str(p["id"]), p["amount"], push)

    async def m_close(self, p: dict[str, Any]) -> dict[str, Any]:
        target = str(p["id"])
        n = self.node
        for ch in n.channels.values():
            if target in (ch["channel_id"], ch.get("short_channel_id")):
                target = ch["peer_id"]
        destination = None
        if "destination" in p:
            try:
                destination = bech32.script_for_address(
                    wallet.ADDRESS_HRP[n.network], str(p["destination"])
                )
            except ValueError as exc:
                raise RpcError(-32602, "destination: Invalid destination address") from exc
        return await n.close_channel(target, destination)

    async def m_listhtlcs(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"htlcs": []}

    async def m_listclosedchannels(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"closedchannels": []}

    async def m_staticbackup(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"scb": self.node._scbs()}

    async def m_emergencyrecover(self, p: dict[str, Any]) -> dict[str, Any]:
        # channels in emergency.recover the database does not know (a node restored from
        # hsm_secret + emergency.recover); the simulation lists them, it does not recover funds
        stubs = [
            c["channel_id"]
            for c in self.node.read_emergency_recover()
            if c["channel_id"] not in self.node.channels
        ]
        for channel_id in stubs:
            self.node.log(
                "UNUSUAL",
                "chanbackup",
                f"stub channel {channel_id} (SIMULATION: funds are not recovered)",
            )
        return {"stubs": stubs}

    async def m_listforwards(self, p: dict[str, Any]) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for f in self.node.forwards:
            if any(k in p and p[k] != f[k] for k in ("status", "in_channel", "out_channel")):
                continue
            entry: dict[str, Any] = {
                k: f[k]
                for k in (
                    "created_index",
                    "updated_index",
                    "in_channel",
                    "in_htlc_id",
                    "out_channel",
                    "out_htlc_id",
                    "in_msat",
                    "out_msat",
                    "fee_msat",
                    "status",
                    "style",
                    "received_time",
                    "resolved_time",
                )
                if k in f
            }
            out.append(entry)
        return {"forwards": paginate(out, p)}

    # ------------------------------------------------------------------ invoices
    async def m_invoice(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        amount = None if p["amount_msat"] == "any" else msat_param(p["amount_msat"], "amount_msat")
        label = p["label"] if isinstance(p["label"], str) else json.dumps(p["label"])
        if label in n.invoices:
            raise RpcError(900, f"Duplicate label '{label}'")
        expiry = int(p.get("expiry", 604800))
        preimage = bytes.fromhex(p["preimage"]) if "preimage" in p else None
        if preimage is not None and any(
            i["payment_hash"] == hashlib.sha256(preimage).hexdigest() for i in n.invoices.values()
        ):
            raise RpcError(901, "preimage already used")
        inv = n._create_invoice(label, amount, str(p["description"]), expiry, preimage)
        out: dict[str, Any] = {
            "payment_hash": inv["payment_hash"],
            "expires_at": inv["expires_at"],
            "bolt11": inv["bolt11"],
            "payment_secret": inv["payment_secret"],
            "created_index": inv["created_index"],
        }
        receivable = sum(n.receivable(c) for c in n.channels.values())
        if amount is not None and receivable < amount:
            out["warning_capacity"] = "Insufficient incoming channel capacity to pay invoice"
        return out

    async def m_listinvoices(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        out = []
        for inv in n.invoices.values():
            if "label" in p and inv["label"] != str(p["label"]):
                continue
            if "payment_hash" in p and inv["payment_hash"] != p["payment_hash"]:
                continue
            if "invstring" in p and inv.get("bolt11") != p["invstring"]:
                continue
            out.append(n.invoice_json(inv))
        return {"invoices": paginate(out, p)}

    async def m_delinvoice(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        inv = n.invoices.get(str(p["label"]))
        if inv is None:
            raise RpcError(905, "Unknown invoice")
        current = n.invoice_json(inv)
        if current["status"] != p["status"]:
            raise RpcError(906, f"Invoice status is {current['status']} not {p['status']}")
        del n.invoices[inv["label"]]
        n.store.delete("invoice", inv["label"])
        return current

    async def m_waitanyinvoice(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        last = int(p.get("lastpay_index", 0))
        timeout = p.get("timeout")
        deadline = None if timeout is None else time.monotonic() + float(timeout)

        def first() -> dict[str, Any] | None:
            paid = [
                i for i in n.invoices.values() if i["status"] == "paid" and i["pay_index"] > last
            ]
            return min(paid, key=lambda i: int(i["pay_index"])) if paid else None

        async with n.invoice_changed:
            while (inv := first()) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RpcError(904, "Timed out while waiting for invoice to be paid")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(n.invoice_changed.wait(), remaining)
        return n.invoice_json(inv)

    async def m_waitinvoice(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        label = str(p["label"])
        async with n.invoice_changed:
            while True:
                inv = n.invoices.get(label)
                if inv is None:
                    raise RpcError(-1, "Unknown invoice")
                current = n.invoice_json(inv)
                if current["status"] == "paid":
                    return current
                if current["status"] == "expired":
                    raise RpcError(903, "invoice expired during wait", current)
                remaining = inv["expires_at"] - time.time() + 0.01
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(n.invoice_changed.wait(), remaining)

    # ------------------------------------------------------------------ decoding
    def _decode_bolt11(self, text: str, prefix: str, check_network: bool) -> bolt11.Invoice:
        try:
            inv = bolt11.decode(text)
        except (bolt11.Bolt11Error, ValueError, UnicodeDecodeError) as exc:
            raise RpcError(-32602, f"{prefix}: {exc}") from exc
        if check_network and inv.currency != self.node.currency:
            raise RpcError(
                -32602, f"{prefix}: Prefix {inv.currency} is not for {self.node.network}"
            )
        return inv

    async def m_decode(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            return bolt11.decode(str(p["string"])).to_json()
        except (bolt11.Bolt11Error, ValueError, UnicodeDecodeError) as exc:
            raise RpcError(
                -32602, "string: Bad bech32 string: invalid token (see logs for details)"
            ) from exc

    # ------------------------------------------------------------------ paying
    def _injected(self, amount: int) -> None:
        inject = self.node.fail_next
        if inject is None or (int(inject.get("code", 0)) == 210 and inject.get("pending_seconds")):
            return
        self.node.fail_next = None
        code = int(inject.get("code", 205))
        if code == 205 and "message" not in inject:
            raise self.node.capacity_error()
        extra: dict[str, Any] = {}
        if code == 210:
            extra = {
                "attempts": [
                    {
                        "status": "failed",
                        "failreason": inject.get("failreason", "No path found"),
                        "partid": 0,
                        "amount_msat": amount,
                    }
                ]
            }
        raise RpcError(
            code, str(inject.get("message", _DEFAULT_MESSAGES.get(code, "Payment failed"))), extra
        )

    def _already_paid(self, payment_hash: str) -> dict[str, Any] | None:
        return next(
            (
                s
                for s in self.node.sendpays
                if s["payment_hash"] == payment_hash and s["status"] == "complete"
            ),
            None,
        )

    async def _pay_invoice(self, text: str, amount_param: Any, style: str) -> dict[str, Any]:
        """style: 'xpay' (xpay), 'pay-xpay' (pay served by xpay), 'pay' (legacy pay plugin)."""
        n = self.node
        prefix = "Invalid bolt11" if style == "pay" else "Invalid bolt11 invoice"
        inv = self._decode_bolt11(text, prefix, True)
        payment_hash = inv.payment_hash.hex()
        old = self._already_paid(payment_hash)
        if old is not None:
            if style == "xpay":
                raise RpcError(219, "Already paid this invoice successfully")
            return {
                "payment_preimage": old["payment_preimage"],
                "status": "complete",
                "amount_msat": old["amount_msat"],
                "amount_sent_msat": old["amount_sent_msat"],
                "destination": old["destination"],
                "payment_hash": payment_hash,
                "created_at": old["created_at"],
                "parts": 1,
            }
        expired_for = int(time.time()) - (inv.created_at + inv.expiry)
        if expired_for >= 0:
            raise RpcError(
                207,
                "Invoice expired"
                if style == "pay"
                else f"Invoice expired {expired_for} seconds ago",
            )
        if inv.amount_msat is None:
            if amount_param is None:
                raise RpcError(-32602, "amount_msat parameter required")
            amount = msat_param(amount_param, "amount_msat")
        else:
            if amount_param is not None:
                raise RpcError(-32602, "amount_msat parameter unnecessary")
            amount = inv.amount_msat
        self._injected(amount)
        destination = inv.payee.hex()
        if destination != n.node_id and not await n.resolve_destination(destination):
            raise (
                n.capacity_error()
                if style != "pay"
                else RpcError(
                    210,
                    "Ran out of routes to try after 1 attempt: see `paystatus`",
                    {
                        "attempts": [
                            {
                                "status": "failed",
                                "failreason": f"Unknown destination {destination}",
                                "partid": 0,
                                "amount_msat": amount,
                            }
                        ]
                    },
                )
            )
        created = time.time()
        sp, failure = await n.send_payment(
            destination,
            payment_hash,
            amount,
            text,
            inv.payment_secret.hex() if inv.payment_secret else None,
            None,
            style != "pay",
        )
        if failure is not None:
            raise self._payment_error(failure, sp, style)
        if style == "xpay":
            return {
                "payment_preimage": sp["payment_preimage"],
                "amount_msat": amount,
                "amount_sent_msat": sp["amount_sent_msat"],
                "failed_parts": 0,
                "successful_parts": 1,
            }
        if style == "pay-xpay":
            return {
                "payment_preimage": sp["payment_preimage"],
                "amount_msat": amount,
                "amount_sent_msat": sp["amount_sent_msat"],
                "parts": 1,
                "destination": destination,
                "payment_hash": payment_hash,
                "status": "complete",
                "created_at": created,
            }
        return {
            "destination": destination,
            "payment_hash": payment_hash,
            "created_at": created,
            "parts": 1,
            "amount_msat": amount,
            "amount_sent_msat": sp["amount_sent_msat"],
            "payment_preimage": sp["payment_preimage"],
            "status": "complete",
        }

    def _payment_error(self, failure: dict[str, Any], sp: dict[str, Any], style: str) -> RpcError:
        code = int(failure.get("fail", 0))
        name = str(failure.get("failcodename"))
        if code == WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS:
            if style != "pay":
                return RpcError(
                    203, "Destination said it doesn't know invoice: incorrect_or_unknown_payment"
                )
            extra = {
                "id": sp["id"],
                "failcode": code,
                "failcodename": name,
                "bolt11": sp.get("bolt11"),
                "raw_message": f"{code:04x}",
                "created_at": sp["created_at"],
                "destination": sp["destination"],
                "payment_hash": sp["payment_hash"],
                "status": "failed",
                "amount_msat": sp["amount_msat"],
                "amount_sent_msat": 0,
                "erring_index": 1,
                "erring_node": failure.get("erring_node"),
            }
            return RpcError(
                203,
                f"failed: {name} (reply from remote)",
                {k: v for k, v in extra.items() if v is not None},
            )
        if style != "pay":
            return RpcError(205, f"Failed: {name} from {failure.get('erring_node')}")
        return RpcError(
            210,
            "Ran out of routes to try after 1 attempt: see `paystatus`",
            {
                "attempts": [
                    {
                        "status": "failed",
                        "failreason": name,
                        "partid": 0,
                        "amount_msat": sp["amount_msat"],
                    }
                ]
            },
        )

    async def m_pay(self, p: dict[str, Any]) -> dict[str, Any]:
        style = "pay-xpay" if self.node.xpay_handle_pay else "pay"
        return await self._pay_invoice(str(p["bolt11"]), p.get("amount_msat"), style)

    async def m_xpay(self, p: dict[str, Any]) -> dict[str, Any]:
        return await self._pay_invoice(str(p["invstring"]), p.get("amount_msat"), "xpay")

    async def m_keysend(self, p: dict[str, Any]) -> dict[str, Any]:
        n = self.node
        destination = p["destination"]
        if not valid_node_id(destination):
            raise RpcError(
                -32602, "destination: should be a node id: invalid token (see logs for details)"
            )
        amount = msat_param(p["amount_msat"], "amount_msat")
        if not await n.resolve_destination(str(destination)):
            raise RpcError(
                210,
                "Ran out of routes to try after 1 attempt: see `paystatus`",
                {
                    "attempts": [
                        {
                            "status": "failed",
                            "failreason": f"Unknown destination {destination}",
                            "partid": 0,
                            "amount_msat": amount,
                        }
                    ]
                },
            )
        self._injected(amount)
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        created = time.time()
        sp, failure = await n.send_payment(
            str(destination), payment_hash, amount, None, None, preimage.hex(), False
        )
        if failure is not None:
            raise self._payment_error(failure, sp, "pay")
        return {
            "destination": destination,
            "payment_hash": payment_hash,
            "created_at": created,
            "parts": 1,
            "amount_msat": amount,
            "amount_sent_msat": sp["amount_sent_msat"],
            "payment_preimage": sp["payment_preimage"],
            "status": "complete",
        }

    def _filtered_sendpays(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for sp in self.node.sendpays:
            if "bolt11" in p and sp.get("bolt11") != p["bolt11"]:
                continue
            if "payment_hash" in p and sp["payment_hash"] != p["payment_hash"]:
                continue
            if "status" in p and sp["status"] != p["status"]:
                continue
            out.append(sp)
        return out

    async def m_listsendpays(self, p: dict[str, Any]) -> dict[str, Any]:
        payments = [self.node._sendpay_json(sp) for sp in self._filtered_sendpays(p)]
        return {"payments": paginate(payments, p)}

    async def m_listpays(self, p: dict[str, Any]) -> dict[str, Any]:
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for sp in self._filtered_sendpays({k: v for k, v in p.items() if k != "status"}):
            groups.setdefault((sp["payment_hash"], sp["groupid"]), []).append(sp)
        # the latest group per payment hash, as listpays reports
        latest: dict[str, list[dict[str, Any]]] = {}
        for (payment_hash, _), parts in groups.items():
            latest[payment_hash] = parts
        pays = []
        for payment_hash, parts in latest.items():
            statuses = {s["status"] for s in parts}
            status = (
                "complete"
                if "complete" in statuses
                else "pending"
                if "pending" in statuses
                else "failed"
            )
            if "status" in p and p["status"] != status:
                continue
            first = parts[0]
            entry: dict[str, Any] = {}
            if first.get("bolt11"):
                entry["bolt11"] = first["bolt11"]
            entry.update(
                {
                    "destination": first["destination"],
                    "payment_hash": payment_hash,
                    "status": status,
                    "created_at": first["created_at"],
                }
            )
            done = [s for s in parts if s["status"] == "complete"]
            if done:
                entry["completed_at"] = done[0]["completed_at"]
                entry["preimage"] = done[0]["payment_preimage"]
                entry["amount_msat"] = sum(s["amount_msat"] for s in done)
                entry["amount_sent_msat"] = sum(s["amount_sent_msat"] for s in done)
            else:
                entry["amount_sent_msat"] = 0
                entry["number_of_parts"] = len(parts)
            entry["created_index"] = first["created_index"]
            if "updated_index" in first:
                entry["updated_index"] = first["updated_index"]
            pays.append(entry)
        return {"pays": paginate(pays, p)}


_DEFAULT_MESSAGES = {
    203: "Destination said it doesn't know invoice: incorrect_or_unknown_payment",
    204: "failed: WIRE_TEMPORARY_CHANNEL_FAILURE (reply from remote)",
    206: "Fee exceeds our fee budget",
    207: "Invoice expired",
    210: "Ran out of routes to try after 1 attempt: see `paystatus`",
}


def paginate(items: list[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, Any]]:
    """lightningd's `index` ("created"/"updated"), `start` and `limit` list parameters."""
    if "index" not in p:
        if "start" in p or "limit" in p:
            raise RpcError(-32602, "Can only specify {start} or {limit} with {index}")
        return items
    if p["index"] not in ("created", "updated"):
        raise RpcError(-32602, "index: should be 'created' or 'updated'")
    key = f"{p['index']}_index"
    start = int(p.get("start", 0))
    chosen = sorted(
        (i for i in items if int(i.get(key, 0)) >= start and key in i), key=lambda i: int(i[key])
    )
    if "limit" in p:
        chosen = chosen[: int(p["limit"])]
    return chosen


def _complete_garbage(buf: str) -> bool:
    """True when the buffer can never become valid JSON (not an object or array start)."""
    return not buf.startswith(("{", "["))


def _addr_json(text: str) -> dict[str, Any]:
    host, _, port = text.rpartition(":")
    return {"type": "ipv4", "address": host, "port": int(port or 9735)}


def _status_line(n: Node, ch: dict[str, Any]) -> str:
    state = ch["state"]
    if state == "CHANNELD_AWAITING_LOCKIN":
        depth = n.blockheight - ch["funding_height"] + 1 if "funding_height" in ch else 0
        return (
            f"{state}:Funding needs {max(n.min_depth - depth, 1)} more confirmations to be ready."
        )
    if state == "CHANNELD_NORMAL":
        return f"{state}:Channel ready for use."
    if state.startswith("CLOSINGD"):
        return (
            "CLOSINGD_SIGEXCHANGE:We agreed on a closing fee of "
            f"{ch.get('last_tx_fee_msat', 0) // 1000} satoshi for tx:{ch.get('close_txid', '')}"
        )
    return f"{state}:simulated"
