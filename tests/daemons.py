"""One fixture layer for the chain backends: the simnet stand-in or a real daemon, one handle.

Every chain-facing test gets its node from `start_chain_node`/`chain_node` (or builds a
`ChainNode` itself); both give the same `ChainNode` handle — RPC URL and credentials (an rpcauth
user generated at test time), the five ZMQ endpoints, `mine(n)`, `pay(addr, sats)`,
`reorg(depth)`, `cli_command` and the life cycle. Which backend runs is chosen per coin by the
environment:

    SCNODE_REAL_BITCOIND=/opt/bitcoin-30.2/bin/bitcoind   (bitcoin-cli beside it)
    SCNODE_REAL_AZCOIND=/opt/azcoin-0.2.0/bin/azcoind     (azcoin-cli beside it)

Unset (CI), the stand-in runs. Set, `ChainNode(...)` answers a `RealChainNode`: the real daemon
on loopback with a temporary datadir, offline (`-connect=0 -natpmp=0 -dnsseed=0 -fixedseeds=0
-discover=0 -listenonion=0`; RPC and P2P bound to 127.0.0.1 only — the P2P port listens there so
a second test node can `addnode` it, as with the stand-in), stopped with the `stop` RPC. Its
helpers use real RPCs:

- `mine(n, address)`: `generatetoaddress` (without an address: the funder wallet's address, the
  real counterpart of the stand-in's simulated outside world);
- `pay(address, sats)`: `sendtoaddress` from a funder wallet (`scnode-test-funder`, loaded only
  while it pays so the node's own wallet view — `listwallets`, calls on `/` — is the same as with
  the stand-in; funded by mining 101 blocks to it the first time, as the stand-in's world is);
- `reorg(depth, extra=1, drop_txs=False)`: `invalidateblock` of the first of the last `depth`
  blocks, `depth + extra` new blocks, `reconsiderblock`. Their transactions go back to the
  mempool and into the first new block, or with `drop_txs` stay out of every new block
  (`prioritisetransaction` by -1 coin): a real node has no call that removes a transaction from
  its mempool without a conflict, so they stay unconfirmed in the mempool;
- control `double_spend` (the funder re-spends a payment's inputs to itself at a higher fee,
  with `mine` confirmed by `generateblock`) and `bump_fee` (`bumpfee`);
- stand-in-only faults (`stall`, `fail_next`, `warmup`, `ibd`, `fee_estimate`,
  `block_interval`) have no real equivalent: a test that uses one is skipped in real mode and
  says why.

See docs/real-daemons.md for running `make test-real`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from simnet.pytest_chain import REAL_ENV, ChainNode, ChainRPCError, free_port, make_rpcauth

FUNDER = "scnode-test-funder"
COIN = 100_000_000
STAND_IN_ONLY = {
    "stall": "delaying the daemon's answers",
    "fail_next": "making the daemon answer an error on demand",
    "warmup": "holding the daemon in its start-up (-28) state",
    "ibd": "forcing initial block download",
    "fee_estimate": "setting the fee estimate",
    "block_interval": "mining on a timer",
}
_NET_HEAD = {"main": [], "test": ["testnet=1"], "regtest": ["regtest=1"]}
_NET_SECTION = {"main": "[main]", "test": "[test]", "regtest": "[regtest]"}
_PEER_KEYS = ("addnode", "connect", "seednode")


def real_daemon(coin: str) -> Path | None:
    """The real daemon binary configured for `coin`, or None (then the stand-in runs)."""
    env = REAL_ENV.get(coin)
    value = os.environ.get(env, "") if env else ""
    if not value:
        return None
    path = Path(value).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"{env}={value}: not an executable file")
    return path


def real_cli(daemon: Path) -> Path:
    """`bitcoin-cli` beside `bitcoind` (`azcoin-cli` beside `azcoind`)."""
    name = daemon.name
    cli = daemon.with_name((name[:-1] if name.endswith("d") else name) + "-cli")
    if not cli.is_file():
        raise RuntimeError(f"{cli}: the cli is expected beside the daemon {daemon}")
    return cli


def backend(coin: str) -> str:
    """'real' or 'stand-in': what a `ChainNode` of `coin` runs in this environment."""
    return "real" if real_daemon(coin) is not None else "stand-in"


def sats_to_amount(sats: int) -> str:
    """An RPC amount (8 decimals, as a JSON string bitcoind accepts) from integer sats."""
    return f"{Decimal(sats) / COIN:.8f}"


def amount_to_sats(amount: Any) -> int:
    return int((Decimal(str(amount)) * COIN).to_integral_value())


class RealChainNode(ChainNode):
    """A real bitcoind/azcoind on loopback with a temporary datadir, behind the `ChainNode`
    handle (constructed through `ChainNode(...)` when the coin's variable is set)."""

    def __init__(
        self,
        datadir: Path,
        coin: str,
        network: str,
        emulate: str | None,
        conf: dict[str, Any],
        extra_args: list[str],
    ) -> None:
        binary = real_daemon(coin)
        if binary is None:
            raise RuntimeError(f"no real daemon configured for {coin} ({REAL_ENV.get(coin)})")
        self.binary = binary
        self.cli = real_cli(binary)
        self._funder_address: str | None = None
        self._funder_loaded = 0
        super().__init__(datadir, coin, network, emulate, conf, extra_args)
        self.control_port = 0  # no control API: the helpers below use RPCs

    @property
    def real(self) -> bool:
        return True

    # --- configuration -----------------------------------------------------------------------

    def _write_conf(self, conf: dict[str, Any]) -> None:
        # Offline: no outbound connection but the peers a test names (connect=0 leaves
        # addnode working), no seeds, no address discovery or port mapping. The P2P port
        # listens on loopback only, as the stand-in's does, so a second test node can join
        # this one's chain (a wallet restored on a new node).
        top = [
            "server=1",
            f"rpcauth={make_rpcauth(self.user, self.password)}",
            "fallbackfee=0.0002",
            "dnsseed=0",
            "fixedseeds=0",
            "discover=0",
            "natpmp=0",
            "listenonion=0",
            "printtoconsole=0",
            "shrinkdebugfile=0",
            # 100 keys ahead instead of 1000: creating or loading a descriptor wallet costs a
            # tenth (2-3 s less per wallet on a debug build); getnewaddress tops it up as ever
            "keypool=100",
        ]
        if "listen" not in conf:
            top.append("listen=1")
        top += [f"zmqpub{t}={a}" for t, a in self.zmq.items()]
        net = [
            f"rpcport={self.rpc_port}",
            "rpcbind=127.0.0.1",
            "rpcallowip=127.0.0.1",
            f"port={self.p2p_port}",
            "bind=127.0.0.1",
        ]
        if "connect" not in conf:
            net.append("connect=0")  # network-only: outside its section v23 refuses to start
        for key, value in conf.items():
            for v in value if isinstance(value, list) else [value]:
                line = f"{key}={int(v) if isinstance(v, bool) else v}"
                (net if key in (*_PEER_KEYS, "wallet") else top).append(line)
        body = _NET_HEAD[self.network] + top + [_NET_SECTION[self.network]] + net
        self.conf_path.write_text("\n".join(body) + "\n")

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"-datadir={self.datadir}",
            f"-conf={self.conf_path}",
            *self.extra_args,
        ]

    @property
    def cli_command(self) -> list[str]:
        return [
            str(self.cli),
            f"-datadir={self.datadir}",
            f"-conf={self.conf_path}",
            f"-rpcuser={self.user}",
            f"-rpcpassword={self.password}",
        ]

    def _new_ports(self) -> None:
        self.rpc_port, self.p2p_port = free_port(), free_port()
        self.zmq = {t: f"tcp://127.0.0.1:{free_port()}" for t in self.zmq}
        self._write_conf(self._conf)

    # --- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> RealChainNode:
        """Start the daemon and wait until its RPC answers (past -28); on a first start that
        lost a port race, retry on new ports."""
        for attempt in range(3):
            try:
                return self._start_real(timeout)
            except RuntimeError as err:
                text = str(err).lower()
                lost_race = "bind" in text or "in use" in text or "http server" in text
                if attempt == 2 or not lost_race or (self.netdir / "blocks").exists():
                    raise
                self._new_ports()
        raise AssertionError("unreachable")

    def _start_real(self, timeout: float) -> RealChainNode:
        log = open(self.datadir / "daemon-stdout.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.datadir)
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary.name} exited with {self.proc.returncode}: "
                                   f"{self.output()[-3000:]}")  # fmt: skip
            try:
                self.rpc("getblockcount")
                return self
            except ChainRPCError as err:
                if err.code != -28:
                    raise
            except (OSError, ValueError):
                self._close()
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.binary.name} did not answer RPC: {self.output()[-3000:]}")

    def output(self) -> str:
        parts = []
        for path in (self.datadir / "daemon-stdout.log", self.netdir / "debug.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Clean shutdown with the `stop` RPC; return the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return None if self.proc is None else self.proc.returncode
        try:
            self.rpc("stop")
        except (ChainRPCError, OSError, ValueError):
            self.proc.send_signal(signal.SIGTERM)
        self._close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def crash(self) -> int:
        """SIGKILL, no clean shutdown; 137 as a shell reports it (the stand-in's crash)."""
        self.kill()
        assert self.proc is not None
        code = self.proc.returncode
        return 128 - code if code < 0 else code

    def restart(self) -> RealChainNode:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self.start()

    # --- the funder wallet (the simulated outside world's real counterpart) ---------------------

    def _load_funder(self) -> None:
        if self._funder_loaded == 0:
            wallets = self.rpc("listwallets")
            if FUNDER not in wallets:
                names = [w["name"] for w in self.rpc("listwalletdir")["wallets"]]
                if FUNDER in names:
                    self.rpc("loadwallet", FUNDER, False)
                else:
                    self.rpc("createwallet", FUNDER, False, False, "", False, True, False)
        self._funder_loaded += 1

    def _unload_funder(self) -> None:
        self._funder_loaded -= 1
        if self._funder_loaded == 0:
            self.rpc("unloadwallet", FUNDER, False)

    def _funder(self) -> _Funder:
        return _Funder(self)

    def funder_address(self) -> str:
        """An address of the funder wallet: where `mine()` without an address pays."""
        if self._funder_address is None:
            with self._funder():
                self._funder_address = str(self.rpc("getnewaddress", wallet=FUNDER))
        return self._funder_address

    def _fund(self, sats: int) -> int:
        """Mine to the funder until it can pay `sats` (101 blocks the first time)."""
        mined = 0
        while True:
            mine = self.rpc("getbalances", wallet=FUNDER)["mine"]
            if amount_to_sats(mine["trusted"]) >= sats + 100_000:
                return mined
            blocks = 101 if mined == 0 and amount_to_sats(mine["immature"]) == 0 else 1
            self.rpc("generatetoaddress", blocks, self.funder_address())
            mined += blocks
            if mined > 5000:
                raise ChainRPCError(-6, "funder wallet cannot be funded", 500)

    # --- the helpers tests use -----------------------------------------------------------------

    def mine(self, n: int = 1, address: str | None = None) -> list[str]:
        return list(self.rpc("generatetoaddress", n, address or self.funder_address()))

    def pay(self, address: str, sats: int, **options: Any) -> str:
        return str(self._pay(address, sats, **options)["txid"])

    def _pay(
        self, address: str, sats: int, fee_rate: int | None = None, replaceable: bool = True
    ) -> dict[str, Any]:
        if sats <= 0:
            raise ChainRPCError(-3, "sats must be positive", 400)
        with self._funder():
            mined = self._fund(sats)
            named: dict[str, Any] = {
                "address": address,
                "amount": sats_to_amount(sats),
                "replaceable": replaceable,
            }
            if fee_rate is not None:
                named["fee_rate"] = fee_rate
            txid = str(self.rpc("sendtoaddress", wallet=FUNDER, **named))
            tx = self.rpc("gettransaction", txid, wallet=FUNDER)
        vout = next(
            d["vout"] for d in tx["details"] if d["category"] == "send" and d["address"] == address
        )
        return {"txid": txid, "vout": vout, "mined": mined}

    def reorg(self, depth: int, **options: Any) -> dict[str, Any]:
        """Replace the last `depth` blocks by `depth + extra` (default 1) new ones; options
        `extra`, `drop_txs`, `address` as the stand-in's control `/reorg`."""
        extra = int(options.get("extra", 1))
        drop_txs = bool(options.get("drop_txs", False))
        address: str | None = options.get("address")
        height = int(self.rpc("getblockcount"))
        if depth < 1 or depth > height:
            raise ChainRPCError(-8, "depth must be between 1 and the chain height", 400)
        old = [str(self.rpc("getblockhash", h)) for h in range(height - depth + 1, height + 1)]
        txids = [t for h in old for t in self.rpc("getblock", h)["tx"][1:]]
        fork_height = height - depth
        ancestry = {fork_height: str(self.rpc("getblockhash", fork_height))}
        invalidated = [old[0]]
        self.rpc("invalidateblock", old[0])
        # a stale branch (an earlier reorg's, valid again) may now have the most work: cut it
        # where it leaves the fork point's ancestry, as often as needed
        while str(self.rpc("getbestblockhash")) != ancestry[fork_height]:
            h = min(int(self.rpc("getblockcount")), fork_height)
            while str(self.rpc("getblockhash", h)) != self._ancestor(ancestry, h):
                h -= 1
            stale = str(self.rpc("getblockhash", h + 1))
            invalidated.append(stale)
            self.rpc("invalidateblock", stale)
        if drop_txs:
            mempool = set(self.rpc("getrawmempool"))
            for txid in txids:
                if txid in mempool:
                    self.rpc("prioritisetransaction", txid, 0, -COIN)
        target = address or self.funder_address()
        try:
            connected = list(self.rpc("generatetoaddress", 1, target))
        except ChainRPCError:
            # the same transactions to the same address in the same second make the same block,
            # which is now invalid: a coinbase to a throw-away script makes it a new one
            connected = list(self.rpc("generatetodescriptor", 1, self._throwaway_descriptor()))
        if depth + extra > 1:
            connected += self.rpc("generatetoaddress", depth + extra - 1, target)
        for block in invalidated:
            self.rpc("reconsiderblock", block)
        return {
            "old_tip": old[-1],
            "new_tip": str(self.rpc("getbestblockhash")),
            "disconnected": old,
            "connected": connected,
            "height": int(self.rpc("getblockcount")),
        }

    def _ancestor(self, ancestry: dict[int, str], height: int) -> str:
        """The hash at `height` on the branch of the lowest block in `ancestry`."""
        low = min(ancestry)
        while low > height:
            ancestry[low - 1] = str(self.rpc("getblockheader", ancestry[low])["previousblockhash"])
            low -= 1
        return ancestry[height]

    def _throwaway_descriptor(self) -> str:
        desc = f"raw(0014{secrets.token_hex(20)})"
        return f"{desc}#{self.rpc('getdescriptorinfo', desc)['checksum']}"

    def double_spend(self, txid: str, mine: bool = False) -> dict[str, Any]:
        """The funder re-spends a payment's inputs to itself at a higher fee."""
        with self._funder():
            tx = self.rpc("gettransaction", txid, wallet=FUNDER)
            decoded = self.rpc("decoderawtransaction", tx["hex"])
            fee = -amount_to_sats(tx["fee"])
            total = sum(amount_to_sats(o["value"]) for o in decoded["vout"]) + fee
            new_fee = fee + 2 * int(decoded["vsize"]) + 1000
            inputs = [
                {"txid": i["txid"], "vout": i["vout"], "sequence": 0xFFFFFFFD}
                for i in decoded["vin"]
            ]
            back = self.rpc("getnewaddress", wallet=FUNDER)
            raw = self.rpc("createrawtransaction", inputs, {back: sats_to_amount(total - new_fee)})
            signed = self.rpc("signrawtransactionwithwallet", raw, wallet=FUNDER)
            if not signed["complete"]:
                raise ChainRPCError(-5, f"cannot sign a double spend of {txid}", 500)
            if mine:
                block = self.rpc("generateblock", back, [signed["hex"]])["hash"]
                new_txid = self.rpc("decoderawtransaction", signed["hex"])["txid"]
                return {"txid": new_txid, "replaced": txid, "block": block}
            new_txid = self.rpc("sendrawtransaction", signed["hex"])
        return {"txid": new_txid, "replaced": txid}

    def bump_fee(self, txid: str, fee_rate: int | None = None) -> dict[str, Any]:
        with self._funder():
            options = {} if fee_rate is None else {"fee_rate": fee_rate}
            bumped = self.rpc("bumpfee", txid, options, wallet=FUNDER)
        return {"txid": bumped["txid"], "replaced": txid}

    def status(self) -> dict[str, Any]:
        return {
            "simulation": False,
            "coin": self.coin,
            "network": self.network,
            "emulate": self.emulate,
            "height": self.rpc("getblockcount"),
            "tip": self.rpc("getbestblockhash"),
            "mempool": self.rpc("getrawmempool"),
            "wallets": [w for w in self.rpc("listwallets") if w != FUNDER],
            "rpc_port": self.rpc_port,
            "p2p_port": self.p2p_port,
            "zmq": [{"topic": t, "address": a} for t, a in self.zmq.items()],
            "pid": None if self.proc is None else self.proc.pid,
            "datadir": str(self.datadir),
            "peers": [p["addr"] for p in self.rpc("getpeerinfo")],
        }

    def control(self, name: str, http_method: str = "POST", **body: Any) -> Any:
        """The stand-in's control calls that have a real equivalent; the others skip the test
        (stand-in only, with the reason)."""
        if name in STAND_IN_ONLY:
            pytest.skip(
                f"stand-in only: control '{name}' ({STAND_IN_ONLY[name]}) has no equivalent "
                f"on a real {self.binary.name}"
            )
        if name == "status":
            return self.status()
        if name == "mine":
            if body.get("coinbase_outputs"):
                pytest.skip("stand-in only: coinbase_outputs (a pool payout in the coinbase)")
            hashes = self.mine(int(body.get("blocks", 1)), body.get("address"))
            return {"hashes": hashes, "height": self.rpc("getblockcount")}
        if name == "pay":
            return self._pay(
                str(body["address"]),
                int(body["sats"]),
                fee_rate=body.get("fee_rate"),
                replaceable=bool(body.get("replaceable", True)),
            )
        if name == "reorg":
            return self.reorg(int(body.pop("depth", 1)), **body)
        if name == "double_spend":
            return self.double_spend(str(body["txid"]), mine=bool(body.get("mine", False)))
        if name == "bump_fee":
            return self.bump_fee(str(body["txid"]), body.get("fee_rate"))
        if name == "stop":
            self.stop()
            return {"stopping": True}
        if name == "crash":
            self.crash()
            return {"crashing": True}
        if name == "restart":
            if body.get("clean", True):
                self.restart()
            else:
                self.crash()
                self.start()
            return {"restarting": True, "clean": bool(body.get("clean", True))}
        raise ChainRPCError(-32601, f"unknown control call {name!r}", 404)


class _Funder:
    """Context: the funder wallet loaded for the calls inside (nested uses load it once)."""

    def __init__(self, node: RealChainNode) -> None:
        self.node = node

    def __enter__(self) -> None:
        self.node._load_funder()

    def __exit__(self, *exc: object) -> None:
        self.node._unload_funder()


__all__ = [
    "FUNDER",
    "REAL_ENV",
    "RealChainNode",
    "backend",
    "real_cli",
    "real_daemon",
]
