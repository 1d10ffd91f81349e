"""The deposit watcher: follows each chain API and feeds `DepositService.apply()`.

Per chain, on every (re)start:

1. **Catch-up from the wallet.** On the first run, or when the chain API's journal no longer
   covers our cursor (a ``resync``, or a journal younger than our cursor), every deposit
   address's transactions are read from the wallet (``/v1/members/<id>/addresses`` +
   ``/v1/transactions/<txid>``). Always: every deposit whose fate can still change (pending,
   reorged, or credited with fewer than ``refresh_below`` confirmations) is re-read.
2. **The event stream** from the stored cursor. Events published before the catch-up's reads
   finished may be older than what was read, so for those the wallet is asked again instead of
   trusting the event. Events are applied in batches; each batch and the cursor after it are
   committed in one transaction, so a crash (even SIGKILL) replays a batch whole or not at all.

A credit is only ever reversed on the wallet's word (see the service): an event that says a
credited output left the chain is checked with ``/v1/transactions/<txid>`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from scnode_exchange.chainclient import (
    Backoff,
    ChainApiAuthError,
    ChainApiClient,
    ChainApiError,
    ChainApiNotFoundError,
    ChainApiRetryableError,
    ChainEvent,
)
from scnode_exchange.deposits.service import ApplyResult, DepositService, Observation

log = logging.getLogger(__name__)

INCOMING = "receive"


class DepositMetrics:
    """Prometheus series of the watcher (own registry, so several can live in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.credited = Counter(
            "scnode_exchange_deposits_credited",
            "Deposits credited",
            ["chain"],
            registry=self.registry,
        )
        self.reorg_alerts = Counter(
            "scnode_exchange_deposit_reorg_alerts",
            "Credited deposits that left the chain (moved to suspense, owner alerted)",
            ["chain"],
            registry=self.registry,
        )
        self.reorged = Counter(
            "scnode_exchange_deposits_reorged",
            "Deposits that left the chain before N",
            ["chain"],
            registry=self.registry,
        )
        self.events = Counter(
            "scnode_exchange_deposit_events",
            "Chain API events applied",
            ["chain"],
            registry=self.registry,
        )
        self.cursor = Gauge(
            "scnode_exchange_deposit_cursor",
            "Last applied chain API event id",
            ["chain"],
            registry=self.registry,
        )
        self.connected = Gauge(
            "scnode_exchange_deposit_stream_up",
            "1 while following the chain API",
            ["chain"],
            registry=self.registry,
        )


@dataclass
class ChainProgress:
    """What a test (or the owner's status page) can ask about one chain's watcher."""

    catch_ups: int = 0
    full_catch_ups: int = 0
    batches: int = 0
    following: asyncio.Event = field(default_factory=asyncio.Event)
    last_error: str | None = None


class DepositWatcher:
    """Background work of deposits: ``await watcher.run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        service: DepositService,
        clients: Mapping[str, ChainApiClient],
        *,
        batch_size: int = 500,
        refresh_below: int = 100,
        metrics: DepositMetrics | None = None,
        backoff: Backoff | None = None,
        concurrency: int = 8,
    ) -> None:
        unknown = set(clients) - set(service.chains)
        if unknown:
            raise ValueError(f"no deposit settings for chains {sorted(unknown)}")
        self.service = service
        self.clients = dict(clients)
        self.batch_size = batch_size
        self.refresh_below = refresh_below
        self.metrics = metrics or DepositMetrics()
        self._backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._limit = asyncio.Semaphore(concurrency)
        self.progress = {chain: ChainProgress() for chain in self.clients}

    async def run(self, stop: asyncio.Event) -> None:
        """Follow every configured chain until ``stop`` is set."""
        await asyncio.gather(*(self._run_chain(c, stop) for c in self.clients))

    async def _run_chain(self, chain: str, stop: asyncio.Event) -> None:
        progress = self.progress[chain]
        while not stop.is_set():
            try:
                await self._follow(chain, stop)
            except ChainApiAuthError as exc:
                progress.last_error = str(exc)
                log.error("%s chain API refused our key: %s", chain, exc)
                delay = 60.0
            except (ChainApiRetryableError, ChainApiError, OSError) as exc:
                progress.last_error = str(exc)
                log.warning("%s deposits: %s; retrying", chain, exc)
                delay = self._backoff.delay()
            except Exception as exc:  # a bug or a surprise must not end deposit crediting
                progress.last_error = repr(exc)
                log.exception("%s deposits: unexpected failure; retrying", chain)
                delay = self._backoff.delay()
            else:
                continue
            finally:
                progress.following.clear()
                self.metrics.connected.labels(chain).set(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    # -- one session of following a chain ----------------------------------------------------
    async def _follow(self, chain: str, stop: asyncio.Event) -> None:
        client = self.clients[chain]
        progress = self.progress[chain]
        cursor, tip_height = await asyncio.to_thread(self.service.cursor, chain)
        journal_tip = await client.tip_cursor()
        status = await client.status()
        tip_height = int(status.get("blocks") or tip_height or 0) or None
        if cursor is None or cursor > journal_tip:
            if cursor is not None:
                log.warning(
                    "%s chain API journal (tip %d) is behind our cursor %d: catching up from "
                    "the wallet",
                    chain,
                    journal_tip,
                    cursor,
                )
            await self.catch_up_wallet(chain)
            cursor = journal_tip
        start: int = cursor
        await self.refresh_open(chain)
        trusted_after = await client.tip_cursor()
        await asyncio.to_thread(
            self.service.apply, [], chain=chain, cursor=start, tip_height=tip_height
        )
        progress.catch_ups += 1
        progress.last_error = None
        self._backoff.reset()
        self.metrics.connected.labels(chain).set(1)
        progress.following.set()
        log.info("%s deposits: following events after %d", chain, start)

        queue: asyncio.Queue[ChainEvent | BaseException] = asyncio.Queue(self.batch_size * 4)
        reader = asyncio.create_task(self._read(client, start, stop, queue))
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    return
                batch = [getter.result()]
                while len(batch) < self.batch_size and not queue.empty():
                    batch.append(queue.get_nowait())
                failure = next((b for b in batch if isinstance(b, BaseException)), None)
                events = [b for b in batch if isinstance(b, ChainEvent)]
                if events:
                    tip_height = await self._apply_events(chain, events, trusted_after, tip_height)
                if failure is not None:
                    raise failure
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    @staticmethod
    async def _read(
        client: ChainApiClient,
        cursor: int,
        stop: asyncio.Event,
        queue: asyncio.Queue[ChainEvent | BaseException],
    ) -> None:
        try:
            async for event in client.events(cursor, stop=stop):
                await queue.put(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the applying loop, which re-raises it
            await queue.put(exc)

    async def _apply_events(
        self, chain: str, events: Sequence[ChainEvent], trusted_after: int, tip: int | None
    ) -> int | None:
        observations: list[Observation] = []
        recheck: set[str] = set()
        resync = False
        for event in events:
            data = event.data
            if event.kind == "resync":
                resync = True
            elif event.kind == "block" and "height" in data:
                tip = int(data["height"])
            elif event.kind in ("wallet_tx", "tx_removed"):
                if data.get("category") != INCOMING:
                    continue
                if event.id <= trusted_after:
                    # published before our wallet reads ended: maybe older than what we read
                    recheck.add(str(data["txid"]))
                    continue
                removed = event.kind == "tx_removed"
                confirmations = int(data.get("confirmations", 0))
                if removed:
                    confirmations = 0 if data.get("back_in_mempool") else -1
                observations.append(
                    Observation(
                        chain=chain,
                        txid=str(data["txid"]),
                        vout=int(data["vout"]),
                        address=str(data.get("address", "")),
                        amount=int(data["amount_sats"]),
                        confirmations=confirmations,
                        block_hash=None if removed else data.get("blockhash"),
                    )
                )
        if recheck:
            known = await asyncio.to_thread(self._known_txids, chain, events, recheck)
            observations.extend(await self._truth(chain, known))
        last = events[-1].id if events[-1].kind != "resync" else None
        result = await asyncio.to_thread(
            self.service.apply, observations, chain=chain, cursor=last, tip_height=tip
        )
        self._count(chain, result, len(events))
        await self._verify(chain, result)
        self.progress[chain].batches += 1
        if resync:
            log.warning("%s chain API journal lost events we needed: catching up", chain)
            await self.catch_up_wallet(chain)
        return tip

    def _known_txids(self, chain: str, events: Sequence[ChainEvent], txids: set[str]) -> set[str]:
        addresses = {
            str(e.data.get("address", "")) for e in events if str(e.data.get("txid")) in txids
        }
        mine = self.service.known_addresses(chain, addresses)
        return {
            str(e.data["txid"])
            for e in events
            if str(e.data.get("txid")) in txids and e.data.get("address") in mine
        }

    async def _verify(self, chain: str, result: ApplyResult) -> None:
        """Ask the wallet about credited outputs an event says have left the chain."""
        if result.to_verify:
            truth = await self._truth(chain, {o.txid for o in result.to_verify})
            self._count(chain, await asyncio.to_thread(self.service.apply, truth), 0)

    def _count(self, chain: str, result: ApplyResult, events: int) -> None:
        self.metrics.events.labels(chain).inc(events)
        if result.credited:
            self.metrics.credited.labels(chain).inc(len(result.credited))
        if result.reversed:
            self.metrics.reorg_alerts.labels(chain).inc(len(result.reversed))
        if result.reorged:
            self.metrics.reorged.labels(chain).inc(len(result.reorged))

    # -- reading the wallet ------------------------------------------------------------------
    async def _truth(self, chain: str, txids: Iterable[str]) -> list[Observation]:
        """Observations read from the wallet for every deposit output of ``txids``."""
        client = self.clients[chain]

        async def one(txid: str) -> list[Observation]:
            async with self._limit:
                try:
                    tx = await client.transaction(txid)
                except ChainApiNotFoundError:
                    tx = None
            known = await asyncio.to_thread(self.service.outputs_of, chain, txid)
            if tx is None:  # the wallet forgot it: it is in no chain and no mempool
                return [
                    Observation(chain, txid, vout, address, amount, -1, verified=True)
                    for vout, address, amount in known
                ]
            confirmations = int(tx.get("confirmations", 0))
            in_chain = confirmations > 0
            seen = {
                int(d["vout"]): d
                for d in tx.get("details", [])
                if d.get("category") == INCOMING and d.get("vout") is not None
            }
            for vout, address, amount in known:
                seen.setdefault(vout, {"address": address, "amount_sats": amount})
            return [
                Observation(
                    chain,
                    txid,
                    vout,
                    str(d.get("address") or ""),
                    int(d["amount_sats"]),
                    confirmations,
                    tx.get("blockhash") if in_chain else None,
                    int(tx["blockheight"]) if in_chain and tx.get("blockheight") else None,
                    verified=True,
                )
                for vout, d in seen.items()
            ]

        batches = await asyncio.gather(*(one(t) for t in sorted(set(txids))))
        return [o for batch in batches for o in batch]

    async def refresh_open(self, chain: str) -> ApplyResult:
        """Re-read every deposit whose state can still change."""
        open_deposits = await asyncio.to_thread(
            self.service.open_deposits, chain, self.refresh_below
        )
        truth = await self._truth(chain, {d.txid for d in open_deposits})
        result = await asyncio.to_thread(self.service.apply, truth)
        self._count(chain, result, 0)
        return result

    async def catch_up_wallet(self, chain: str) -> ApplyResult:
        """Read every deposit address's transactions from the wallet (first run, lost
        journal): anything paid while nobody watched is found here."""
        client = self.clients[chain]
        self.progress[chain].full_catch_ups += 1
        members = await asyncio.to_thread(self.service.members_with_addresses, chain)

        async def txids_of(member_id: int) -> set[str]:
            async with self._limit:
                listing: dict[str, Any] = await client.member_addresses(member_id, min_conf=0)
            return {t for row in listing.get("addresses", []) for t in row.get("txids", [])}

        found = await asyncio.gather(*(txids_of(m) for m in members))
        txids = set().union(*found) if found else set()
        settled = await asyncio.to_thread(self.service.settled_txids, chain, self.refresh_below)
        truth = await self._truth(chain, txids - settled)
        result = await asyncio.to_thread(self.service.apply, truth)
        self._count(chain, result, 0)
        log.info(
            "%s deposits: wallet catch-up read %d transactions of %d members: %d credited",
            chain,
            len(txids - settled),
            len(members),
            len(result.credited),
        )
        return result
