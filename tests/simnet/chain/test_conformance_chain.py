"""Replay every recorded bitcoind v30 / azcoind v23 request against the stand-in and compare the
structure of the answers (keys, JSON types, error codes, HTTP statuses, headers), not values.

Values the recording produced (addresses, txids, block hashes, raw transactions) are mapped to
the stand-in's own as the replay goes, so later requests refer to the stand-in's objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from simnet.pytest_chain import ChainNode
from tests.upstream_fixtures import FIXTURES

BTC = FIXTURES / "bitcoind-v30"
AZC = FIXTURES / "azcoind-v23"
BACKUP_PATH = "/srv/node-btc/wallet-backup.dat"

# Known divergences: fixture file -> reason (see simnet/README.md, "Known divergences").
KNOWN: dict[str, str] = {}


def _index(folder: Path, name: str) -> list[str]:
    path = folder / name
    if not path.exists():
        return []
    return [item["file"] for item in json.loads(path.read_text())]


def _number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


_DATA_KEY = re.compile(r"^[0-9a-zA-Z]{26,}$")


def _signature(v: Any) -> Any:
    """Shape of an entry: its keys, and the keys of nested objects."""
    if isinstance(v, dict):
        return tuple(sorted((k, _signature(x)) for k, x in v.items()))
    return "_"


def shape_diff(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Differences in structure: keys, JSON types, list element shapes.

    Objects keyed by data (txids, addresses) compare their values in order; lists of objects
    compare as sets of entry shapes, because bitcoind's order there is not meaningful (a wallet's
    transactions come from an unordered map).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected object, got {type(actual).__name__}"]
        if expected and all(_DATA_KEY.match(k) for k in expected):
            out: list[str] = []
            for (k, e), a in zip(expected.items(), actual.values(), strict=False):
                out.extend(shape_diff(e, a, f"{path}[{k[:8]}]"))
            return out
        out = []
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing:
            out.append(f"{path}: missing keys {missing}")
        if extra:
            out.append(f"{path}: extra keys {extra}")
        for k in expected:
            if k in actual:
                out.extend(shape_diff(expected[k], actual[k], f"{path}.{k}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected array, got {type(actual).__name__}"]
        if expected and not actual:
            return [f"{path}: empty array where the recording had {len(expected)} entries"]
        if expected and actual and all(isinstance(x, dict) for x in expected + actual):
            kinds = {_signature(e): e for e in expected}
            out = []
            for i, a in enumerate(actual):
                e = kinds.get(_signature(a))
                if e is None:
                    near = min(expected, key=lambda e: len(shape_diff(e, a)))
                    out.extend(
                        f"{d} (no recorded entry has this shape)"
                        for d in shape_diff(near, a, f"{path}[{i}]")
                    )
                else:
                    out.extend(shape_diff(e, a, f"{path}[{i}]"))
            return out
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out.extend(shape_diff(e, a, f"{path}[{i}]"))
        return out
    if expected is None:
        return [] if actual is None else [f"{path}: expected null, got {actual!r:.60}"]
    if isinstance(expected, bool):
        return [] if isinstance(actual, bool) else [f"{path}: expected bool, got {actual!r:.60}"]
    if _number(expected):
        return [] if _number(actual) else [f"{path}: expected number, got {actual!r:.60}"]
    if isinstance(expected, str):
        return [] if isinstance(actual, str) else [f"{path}: expected string, got {actual!r:.60}"]
    return []


_LEARNABLE = re.compile(r"^[0-9a-zA-Z]{26,}$")


class Replayer:
    """Send the fixtures' requests in order; learn value mappings; record differences."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node
        self.map: dict[str, str] = {}
        self.results: dict[str, list[str]] = {}

    def learn(self, expected: Any, actual: Any) -> None:
        if isinstance(expected, dict) and isinstance(actual, dict):
            if expected and all(_DATA_KEY.match(k) for k in expected):
                for (ke, ve), (ka, va) in zip(expected.items(), actual.items(), strict=False):
                    self.learn(ke, ka)
                    self.learn(ve, va)
                return
            for k in expected:
                if k in actual:
                    self.learn(expected[k], actual[k])
        elif isinstance(expected, list) and isinstance(actual, list):
            if any(isinstance(x, dict) and "txid" in x and "category" in x for x in expected):
                return  # unordered wallet entries: nothing safe to learn by position
            for e, a in zip(expected, actual, strict=False):
                self.learn(e, a)
        elif (
            isinstance(expected, str)
            and isinstance(actual, str)
            and expected != actual
            and _LEARNABLE.match(expected)
            and expected not in self.map
        ):
            self.map[expected] = actual

    def subst(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.map.get(value, value)
        if isinstance(value, list):
            return [self.subst(v) for v in value]
        if isinstance(value, dict):
            return {self.subst(k): self.subst(v) for k, v in value.items()}
        return value

    def replay(self, path: Path) -> None:
        fx = json.loads(path.read_text(), parse_float=Decimal)
        body_text = fx["request_body"]
        try:
            body_obj = json.loads(body_text, parse_float=Decimal)
            body = json.dumps(self.subst(body_obj), default=str).encode()
        except ValueError:
            body = body_text.encode()
        auth: tuple[str, str] | None = None
        if fx["auth"] == "wrong":
            auth = (self.node.user, "wrong-password")
        elif fx["auth"] == "none":
            auth = ("", "")
        url_path = self.subst(fx["url_path"])
        status, headers, raw = self.node.raw_request(
            body, path=url_path, auth=auth, method=fx["http_method"]
        )
        diffs: list[str] = []
        if status != fx["http_status"]:
            diffs.append(f"HTTP status {status}, expected {fx['http_status']}")
        want_headers = fx.get("response_headers") or {}
        for name in ("Content-Type", "WWW-Authenticate"):
            if name in want_headers and headers.get(name) != want_headers[name]:
                diffs.append(
                    f"header {name}: {headers.get(name)!r}, expected {want_headers[name]!r}"
                )
        expected = fx["response"]
        if expected is None or fx["response_raw"] in ("", None):
            if raw.strip():
                diffs.append(f"expected an empty body, got {raw[:80]!r}")
        elif isinstance(expected, str):
            if raw.decode(errors="replace") != fx["response_raw"]:
                diffs.append(f"body {raw[:80]!r}, expected {fx['response_raw'][:80]!r}")
        else:
            try:
                actual = json.loads(raw, parse_float=Decimal)
            except ValueError:
                diffs.append(f"not JSON: {raw[:120]!r}")
                actual = None
            if actual is not None:
                diffs.extend(_compare_reply(expected, actual))
                self.learn(expected, actual)
        self.results[path.name] = diffs


def _compare_reply(expected: Any, actual: Any) -> list[str]:
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"batch reply {actual!r:.120}"]
        out: list[str] = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(f"[{i}] {d}" for d in _compare_reply(e, a))
        return out
    out = []
    top_e = sorted(expected)
    top_a = sorted(actual) if isinstance(actual, dict) else []
    if top_e != top_a:
        return [f"reply keys {top_a}, expected {top_e}: {json.dumps(actual, default=str)[:300]}"]
    err_e, err_a = expected.get("error"), actual.get("error")
    if err_e is not None:
        if err_a is None or err_a.get("code") != err_e.get("code"):
            out.append(
                f"error {err_a}, expected code {err_e.get('code')} ({err_e.get('message')!r:.80})"
            )
        return out
    if err_a is not None:
        return [f"unexpected error {err_a}"]
    out.extend(shape_diff(expected.get("result"), actual.get("result"), "result"))
    return out


def _fixture_key() -> dict[str, str]:
    return dict(json.loads((BTC / "fixture_key.json").read_text()))


@pytest.fixture(scope="module")
def module_nodes() -> Iterator[Callable[..., ChainNode]]:
    import shutil
    import tempfile

    nodes: list[ChainNode] = []
    dirs: list[str] = []

    def start(coin: str = "bitcoin", **conf: Any) -> ChainNode:
        d = tempfile.mkdtemp(prefix="simnet-conf-")
        dirs.append(d)
        node = ChainNode(Path(d), coin, "regtest", None, conf, [])
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.stop()
        node.kill()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _replay_main(
    node: ChainNode, folder: Path, files: list[str], backup: Path
) -> dict[str, list[str]]:
    rep = Replayer(node)
    rep.map[BACKUP_PATH] = str(backup)
    for name in files:
        rep.replay(folder / name)
    return rep.results


@pytest.fixture(scope="module")
def btc_results(
    module_nodes: Callable[..., ChainNode], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    node = module_nodes("bitcoin")
    results = _replay_main(
        node,
        BTC,
        _index(BTC, "index_main.json"),
        tmp_path_factory.mktemp("bk") / "wallet-backup.dat",
    )
    # Pruning runs: one node per configuration, with the blocks the recording mined in between.
    prune550 = Replayer(module_nodes("bitcoin", prune=550))
    prune550.replay(BTC / "prune_001_getblockchaininfo_prune550_fresh.json")
    prune550.node.mine(200)
    for name in (
        "prune_002_getblockchaininfo_prune550_h200.json",
        "prune_003_err_pruneblockchain_too_short.json",
    ):
        prune550.replay(BTC / name)
    prune1 = Replayer(module_nodes("bitcoin", prune=1))
    prune1.replay(BTC / "prune_004_getblockchaininfo_prune1_fresh.json")
    prune1.node.mine(1500)
    for name in _index(BTC, "index_prune.json")[4:10]:
        prune1.replay(BTC / name)
    unpruned = Replayer(module_nodes("bitcoin"))
    unpruned.replay(BTC / "prune_011_getblockchaininfo_unpruned_fresh.json")
    for rep in (prune550, prune1, unpruned):
        results.update(rep.results)
    return results


@pytest.fixture(scope="module")
def azc_results(
    module_nodes: Callable[..., ChainNode], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    node = module_nodes("azcoin")
    return _replay_main(
        node, AZC, _index(AZC, "index.json"), tmp_path_factory.mktemp("bkz") / "wallet-backup.dat"
    )


def _cases(folder: Path, indexes: list[str]) -> list[Any]:
    out = []
    for index in indexes:
        for name in _index(folder, index):
            marks = [pytest.mark.xfail(reason=KNOWN[name], strict=True)] if name in KNOWN else []
            out.append(pytest.param(name, marks=marks, id=name.removesuffix(".json")))
    return out


pytestmark = pytest.mark.skipif(
    not BTC.exists(), reason="recorded fixtures not present (../shared/fixtures)"
)


@pytest.mark.parametrize("name", _cases(BTC, ["index_main.json", "index_prune.json"]))
def test_bitcoind_v30_shape(name: str, btc_results: dict[str, list[str]]) -> None:
    assert not btc_results[name], "\n".join(btc_results[name])


@pytest.mark.parametrize("name", _cases(AZC, ["index.json"]))
def test_azcoind_v23_shape(name: str, azc_results: dict[str, list[str]]) -> None:
    assert not azc_results[name], "\n".join(azc_results[name])


def test_fixture_key_is_the_sweep_key() -> None:
    """The sweep calls use the recording's throw-away key; the stand-in derives the same address."""
    from simnet.chain.crypto import p2wpkh_script, pubkey_of, segwit_address, wif_decode

    key = _fixture_key()
    secret, _ = wif_decode(key["wif"])
    assert segwit_address("bcrt", p2wpkh_script(pubkey_of(secret))) == key["p2wpkh"]
