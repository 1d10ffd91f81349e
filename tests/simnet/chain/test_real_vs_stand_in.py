"""The same RPC scenario on a real daemon and on the stand-in of the same generation, compared
by structure (keys, JSON types; error codes and messages).

Runs when a real daemon is configured (`make test-real`, docs/real-daemons.md): every
difference it finds is either fixed in the stand-in (with a regression test in this directory)
or listed in KNOWN with its reason (and in simnet/README.md, "Known divergences").
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simnet.pytest_chain import REAL_ENV, ChainNode, ChainRPCError, StandInChainNode
from tests.simnet.chain.test_conformance_chain import shape_diff

USES_REAL_DAEMONS = True  # tests/simnet/chain/conftest.py

COINS = [coin for coin, env in REAL_ENV.items() if os.environ.get(env)]

# step label -> why the stand-in deliberately differs there (compared only for success/error)
KNOWN: dict[str, str] = {}

# steps whose answers are compared by value too (no chain data in them)
BY_VALUE = {"stop"}

Outcome = tuple[str, Any]


def _scenario(node: ChainNode) -> list[tuple[str, Outcome]]:
    """What an app and an operator do with a chain node, in order; every answer kept."""
    out: list[tuple[str, Outcome]] = []

    def call(label: str, method: str, *params: Any, wallet: str | None = None) -> Any:
        try:
            result = node.rpc(method, *params, wallet=wallet)
        except ChainRPCError as err:
            message = err.message.replace(str(node.datadir), "<datadir>")
            out.append((label, ("error", (err.code, message))))
            return None
        out.append((label, ("ok", result)))
        return result

    w = "wallet"
    call("getblockchaininfo", "getblockchaininfo")
    call("getnetworkinfo", "getnetworkinfo")
    call("getzmqnotifications", "getzmqnotifications")
    call("createwallet", "createwallet", w)
    call("createwallet-exists", "createwallet", w)
    call("loadwallet-loaded", "loadwallet", w)
    alice = call("getnewaddress", "getnewaddress", "alice", wallet=w)
    call("getaddressinfo", "getaddressinfo", alice, wallet=w)
    call("generatetoaddress", "generatetoaddress", 101, alice)
    call("getwalletinfo", "getwalletinfo", wallet=w)
    call("getbalances", "getbalances", wallet=w)
    call("listunspent", "listunspent", wallet=w)
    bob = call("getnewaddress-bob", "getnewaddress", "bob", wallet=w)
    txid = call("sendtoaddress", "sendtoaddress", bob, "0.10000000", wallet=w)
    call("getmempoolentry", "getmempoolentry", txid)
    call("getrawmempool-verbose", "getrawmempool", True)
    call("getmempoolinfo", "getmempoolinfo")
    call("gettransaction-unconfirmed", "gettransaction", txid, wallet=w)
    call("getrawtransaction-verbose", "getrawtransaction", txid, True)
    call("listtransactions", "listtransactions", "*", 3, wallet=w)
    call("listsinceblock", "listsinceblock", wallet=w)
    mined = call("generatetoaddress-1", "generatetoaddress", 1, alice) or [""]
    call("getblock-1", "getblock", mined[0], 1)
    call("getblock-2", "getblock", mined[0], 2)
    call("getblockheader", "getblockheader", mined[0])
    call("gettransaction-confirmed", "gettransaction", txid, wallet=w)
    call("listreceivedbyaddress", "listreceivedbyaddress", 0, wallet=w)
    call("getreceivedbyaddress", "getreceivedbyaddress", bob, 0, wallet=w)
    call("getreceivedbylabel", "getreceivedbylabel", "bob", wallet=w)
    call("invalidateblock", "invalidateblock", mined[0])
    call("gettransaction-reorged", "gettransaction", txid, wallet=w)
    call("getchaintips", "getchaintips")
    call("reconsiderblock", "reconsiderblock", mined[0])
    call("scantxoutset", "scantxoutset", "start", [f"addr({bob})"])
    call("estimatesmartfee", "estimatesmartfee", 6)
    call("sendtoaddress-too-much", "sendtoaddress", bob, "100000", wallet=w)
    call("sendtoaddress-bad-address", "sendtoaddress", "bcrt1qnotanaddress", "0.1", wallet=w)
    call("getaddressinfo-bad", "getaddressinfo", "notanaddress", wallet=w)
    call("getnewaddress-no-wallet", "getnewaddress", wallet="nosuch")
    call("getblock-unknown", "getblock", "00" * 32)
    call("getblockhash-out-of-range", "getblockhash", 10**6)
    call("gettransaction-unknown", "gettransaction", "11" * 32, wallet=w)
    call("unknown-method", "nosuchmethod")
    call("createwallet-second", "createwallet", "second")
    call("getnewaddress-two-wallets", "getnewaddress")
    call("unloadwallet", "unloadwallet", "second")
    call("unloadwallet-again", "unloadwallet", "second")
    call("stop", "stop")
    return out


def _renamed(outcome: Outcome, product: str, played: str) -> Outcome:
    kind, value = outcome
    if kind == "error":
        return kind, (value[0], value[1].replace(product, played))
    return kind, value.replace(product, played) if isinstance(value, str) else value


def _compare(real: Outcome, stand_in: Outcome, label: str) -> list[str]:
    if real[0] != stand_in[0]:
        return [f"{label}: real {real[0]} {real[1]!r:.160}, stand-in {stand_in[0]} "
                f"{stand_in[1]!r:.160}"]  # fmt: skip
    if real[0] == "error":
        (rc, rm), (sc, sm) = real[1], stand_in[1]
        if rc != sc or rm != sm:
            return [f"{label}: real error {rc} {rm!r}, stand-in {sc} {sm!r}"]
        return []
    if label in KNOWN:
        return []
    if label in BY_VALUE and real[1] != stand_in[1]:
        return [f"{label}: real {real[1]!r:.160}, stand-in {stand_in[1]!r:.160}"]
    return [f"{label}: {d}" for d in shape_diff(real[1], stand_in[1], "result")]


@pytest.fixture
def both(request: pytest.FixtureRequest) -> Iterator[tuple[ChainNode, ChainNode]]:
    coin = request.param
    dirs = [Path(tempfile.mkdtemp(prefix=f"scnode-{coin}-{kind}-")) for kind in ("r", "s")]
    nodes: list[ChainNode] = []
    try:
        real = ChainNode(dirs[0], coin, "regtest", None, {}, [])
        nodes.append(real)
        real.start()
        version = int(real.rpc("getnetworkinfo")["version"])
        emulate = "v30" if version >= 280000 or version // 10000 >= 28 else "v23"
        if coin == "azcoin":
            emulate = "v23"
        stand_in = StandInChainNode(dirs[1], coin, "regtest", emulate, {}, [])
        nodes.append(stand_in)
        stand_in.start()
        yield real, stand_in
    finally:
        for node in nodes:
            node.stop()
            node.kill()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(
    not COINS,
    reason="compares a real daemon with the stand-in: set SCNODE_REAL_BITCOIND and/or "
    "SCNODE_REAL_AZCOIND (make test-real, docs/real-daemons.md)",
)
@pytest.mark.parametrize("both", COINS or ["none"], indirect=True)
def test_real_daemon_and_stand_in_answer_the_same_scenario_alike(
    both: tuple[ChainNode, ChainNode],
) -> None:
    real, stand_in = both
    assert real.real and not stand_in.real
    played = "AZCoin Core" if stand_in.coin == "azcoin" else "Bitcoin Core"
    binary = Path(str(getattr(real, "binary", ""))).name
    product = "AZCoin Core" if binary.startswith("azcoin") else "Bitcoin Core"
    real_steps, stand_in_steps = _scenario(real), _scenario(stand_in)
    if product != played:  # e.g. an AZCoin build standing in for a v23 bitcoind
        real_steps = [(label, _renamed(o, product, played)) for label, o in real_steps]
    assert [label for label, _ in real_steps] == [label for label, _ in stand_in_steps]
    diffs = [
        d
        for (label, r), (_, s) in zip(real_steps, stand_in_steps, strict=True)
        for d in _compare(r, s, label)
    ]
    assert diffs == [], "\n".join(diffs)
