"""Simulated SC Cluster pool: pays the node's payout address for the work its translator's
channels had acknowledged, on the shared simulated chain.

The translator stand-in simulates the SV2 upstream itself, so this "pool" never sees shares; it
reads what a real pool would know, the per-channel acknowledged work, from the translator's
monitoring API (`/api/v1/server/channels`, channels whose `user_identity` is
`<identity>.minerN` or `<identity>`), and pays through the chain stand-in's control API.

Scheme (exact integers, named "proportional per period, carried remainder"):

- Every poll, each channel's `acknowledged_work_sum` is compared with the last value seen for
  that (channel id, user identity); the increase is the new work. A value lower than the last
  one means the translator restarted (counters reset): the whole value is new work.
- Every period, the node is owed `reward_sats * node_work / (node_work + other_work)` plus the
  remainder carried from earlier periods; the whole sats are paid, the fraction is carried.
  `other_work` stands for the rest of the cluster (0 = the node did all the cluster's work).
- `transaction` mode: an ordinary payment from the simulated world's wallet (`/pay`), confirmed by
  `confirm_blocks` blocks mined to the world. Amounts below `dust_sats` wait for later periods.
- `coinbase` mode: the owed sats accumulate; each time they reach `block_subsidy_sats`, a block
  whose coinbase pays the payout address is mined (`/mine`) and the subsidy is deducted. Those
  coins need 100 confirmations before they can be spent (coinbase maturity).
- The ledger (counters, carry, payouts) is a JSON file written atomically. A payout is recorded
  as `sending` before the chain is asked and `sent` with its txid/block hash after; a `sending`
  entry found at start-up is never retried automatically (no double payment).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

ChannelFetcher = Callable[[], list[dict[str, Any]]]


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - lab URLs
        return json.loads(response.read())


def monitoring_fetcher(monitoring_url: str) -> ChannelFetcher:
    """Read all server channels from a translator's monitoring API (following pagination)."""

    def fetch() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            url = f"{monitoring_url.rstrip('/')}/api/v1/server/channels?offset={offset}&limit=100"
            page = _http_json(url)
            out += page["extended_channels"]
            offset += len(page["extended_channels"])
            if not page["extended_channels"] or offset >= page["total_extended"]:
                return out

    return fetch


@dataclass
class PoolConfig:
    identity: str
    payout_address: str
    chain_control_url: str
    reward_sats: int
    other_work: int = 0
    mode: str = "transaction"
    block_subsidy_sats: int = 1_500_000_000
    confirm_blocks: int = 1
    dust_sats: int = 546


@dataclass
class Ledger:
    counters: dict[str, int] = field(default_factory=dict)
    unpaid_work: int = 0
    carry_num: int = 0
    carry_den: int = 1
    owed_sats: int = 0
    period: int = 0
    payouts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def carry(self) -> Fraction:
        return Fraction(self.carry_num, self.carry_den)

    @carry.setter
    def carry(self, value: Fraction) -> None:
        self.carry_num, self.carry_den = value.numerator, value.denominator


class ClusterPool:
    """The node-facing part of the simulated cluster pool."""

    def __init__(
        self, config: PoolConfig, fetch_channels: ChannelFetcher, state_path: Path | None = None
    ) -> None:
        self.config = config
        self.fetch_channels = fetch_channels
        self.state_path = state_path
        self.ledger = self._load()
        for payout in self.ledger.payouts:
            if payout["status"] == "sending":
                payout["status"] = "unknown"  # interrupted: reconcile by hand, never re-send

    def _load(self) -> Ledger:
        if self.state_path is None or not self.state_path.exists():
            return Ledger()
        return Ledger(**json.loads(self.state_path.read_text(encoding="utf-8")))

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.ledger.__dict__, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.state_path)

    def _mine(self, user_identity: str) -> bool:
        """`<identity>`, `<identity>.minerN`, or with aggregate_channels the proxy's own channel
        `<identity up to its first dot>.translator-proxy`."""
        ident = self.config.identity
        if user_identity == ident.split(".", 1)[0] + ".translator-proxy":
            return True
        return user_identity == ident or (
            user_identity.startswith(ident + ".miner") and user_identity[len(ident) + 6 :].isdigit()
        )

    def poll(self) -> int:
        """Read the channels; add and return the node's new acknowledged work."""
        new_work = 0
        for channel in self.fetch_channels():
            if not self._mine(str(channel["user_identity"])):
                continue
            key = f"{channel['channel_id']}:{channel['user_identity']}"
            current = int(channel["acknowledged_work_sum"])
            last = self.ledger.counters.get(key)
            new_work += current - last if last is not None and current >= last else current
            self.ledger.counters[key] = current
        self.ledger.unpaid_work += new_work
        self._save()
        return new_work

    def _chain(self, call: str, body: dict[str, Any]) -> Any:
        return _http_json(f"{self.config.chain_control_url.rstrip('/')}/{call}", body)

    def run_period(self) -> dict[str, Any] | None:
        """Close a period: compute the node's share and pay it. Returns the payout record."""
        self.poll()
        cfg = self.config
        ledger = self.ledger
        ledger.period += 1
        work = ledger.unpaid_work
        ledger.unpaid_work = 0
        if work <= 0:
            self._save()
            return None
        exact = Fraction(cfg.reward_sats * work, work + cfg.other_work) + ledger.carry
        sats = int(exact)  # floor: exact is never negative
        ledger.carry = exact - sats
        if cfg.mode == "coinbase":
            ledger.owed_sats += sats
            if ledger.owed_sats < cfg.block_subsidy_sats:
                self._save()
                return None
            return self._pay_coinbase(work)
        ledger.owed_sats += sats
        if ledger.owed_sats < cfg.dust_sats:
            self._save()
            return None
        return self._pay_transaction(work)

    def _record(self, kind: str, sats: int, work: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "period": self.ledger.period,
            "kind": kind,
            "sats": sats,
            "work": work,
            "address": self.config.payout_address,
            "status": "sending",
            "time": int(time.time()),
        }
        self.ledger.payouts.append(record)
        self._save()
        return record

    def _pay_transaction(self, work: int) -> dict[str, Any]:
        sats = self.ledger.owed_sats
        record = self._record("transaction", sats, work)
        answer = self._chain("pay", {"address": self.config.payout_address, "sats": sats})
        record["txid"] = answer["txid"]
        if self.config.confirm_blocks:
            mined = self._chain("mine", {"blocks": self.config.confirm_blocks})
            record["block"] = mined["hashes"][0]
        record["status"] = "sent"
        self.ledger.owed_sats = 0
        self._save()
        return record

    def _pay_coinbase(self, work: int) -> dict[str, Any]:
        subsidy = self.config.block_subsidy_sats
        record = self._record("coinbase", subsidy, work)
        mined = self._chain("mine", {"blocks": 1, "address": self.config.payout_address})
        record["block"] = mined["hashes"][0]
        record["status"] = "sent"
        self.ledger.owed_sats -= subsidy
        self._save()
        return record

    def total_paid(self) -> int:
        return sum(p["sats"] for p in self.ledger.payouts if p["status"] == "sent")
