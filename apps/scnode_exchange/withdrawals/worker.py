"""The withdrawal worker: sends reserved withdrawals exactly once and follows them.

One pass (``run_once``), in this order:

1. **Reconcile** every ``sending`` withdrawal without a txid: ask the chain API again with the
   SAME key (``wd-<id>``). The chain API answers a repeated key with the first send's txid
   (it finds a send whose answer was lost in the wallet by that key), so a crash anywhere
   between "marked sending" and "txid committed" never pays twice and never drops the
   reservation. This is also what the first pass after a restart does.
2. **Send** ready withdrawals (``reserved``/``approved``, member not frozen), oldest first:
   commit ``sending`` with the key BEFORE calling the chain API; on its answer commit
   ``broadcast`` + txid + settlement of the hold in one transaction. A definitive refusal
   (4xx: invalid address, the node wallet lacks funds, key conflict) → ``failed`` and the hold
   released. Anything else (API or daemon down, timeout, 5xx, auth misconfiguration) leaves it
   ``sending`` for the next pass — never a new key.
3. **Follow** ``broadcast`` withdrawals to their chain's confirmations → ``confirmed`` (at
   most every ``follow_seconds``: one chain API look-up per open transaction).

Database work runs in a thread (``asyncio.to_thread``) so the worker can share the exchange
app's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import Protocol

from scnode_exchange.withdrawals.models import BROADCAST, READY_TO_SEND, SENDING
from scnode_exchange.withdrawals.service import (
    InvalidTransitionError,
    WithdrawalInfo,
    WithdrawalService,
)

log = logging.getLogger(__name__)

CRASH_POINTS = ("after_mark_sending", "after_send", "after_commit")


class SendRefusedError(Exception):
    """The chain API refused the send for good (repeating the same request cannot succeed)."""


class ChainUnavailableError(Exception):
    """The chain API or its daemon cannot answer now; try again later with the same key."""


class ChainSender(Protocol):
    """What the worker needs of one chain (``scnode_exchange.withdrawals.chain`` adapts the
    exchange's chain API client; tests use fakes)."""

    async def send(
        self, address: str, amount: int, idempotency_key: str, fee_rate_sat_vb: int | None
    ) -> str:
        """The txid; SendRefusedError or ChainUnavailableError otherwise."""
        ...

    async def confirmations(self, txid: str) -> tuple[int, int | None]:
        """``(confirmations, network fee paid or None)``; ChainUnavailableError otherwise."""
        ...


class WithdrawalWorker:
    """Background work of withdrawals: ``await worker.run(stop)``."""

    def __init__(
        self,
        service: WithdrawalService,
        chains: Mapping[str, ChainSender],
        *,
        poll_seconds: float = 2.0,
        batch: int = 50,
        follow_seconds: float = 10.0,
        crash_at: str | None = None,
    ) -> None:
        if crash_at is not None and crash_at not in CRASH_POINTS:
            raise ValueError(f"crash_at must be one of {CRASH_POINTS}")
        self.service = service
        self.chains = dict(chains)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.follow_seconds = follow_seconds
        self._next_follow = 0.0
        self.crash_at = crash_at
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Start the next pass now (e.g. after a request or an approval in the same process)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until ``stop`` is set; a failing pass is logged and retried after the poll."""
        log.info("withdrawal worker started (chains: %s)", ", ".join(sorted(self.chains)))
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("withdrawal pass failed; retrying")
                busy = 0
            if busy and busy >= self.batch:
                continue  # more waiting: go on at once
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(
                    waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        log.info("withdrawal worker stopped")

    async def run_once(self) -> int:
        """One pass (see the module doc); returns how many withdrawals it moved on."""
        moved = 0
        for wid in await asyncio.to_thread(self.service.ids_in, (SENDING,), self.batch):
            info = await asyncio.to_thread(self.service.get, wid)
            if info.state == SENDING and info.txid is None:
                moved += await self._send(info)
        for wid in await asyncio.to_thread(self.service.ids_in, READY_TO_SEND, self.batch):
            info_or_none = await asyncio.to_thread(self.service.claim_for_sending, wid)
            if info_or_none is None:
                continue
            self._crash_point("after_mark_sending")
            moved += await self._send(info_or_none)
        now = asyncio.get_running_loop().time()
        if now >= self._next_follow:  # one look-up per broadcast tx: not on every pass
            self._next_follow = now + self.follow_seconds
            for wid in await asyncio.to_thread(self.service.ids_in, (BROADCAST,), 10_000):
                moved += await self._follow(await asyncio.to_thread(self.service.get, wid))
        return moved

    async def _send(self, info: WithdrawalInfo) -> int:
        chain = self.chains.get(info.chain)
        if chain is None:
            log.error("withdrawal %s: no chain API for %s; left sending", info.id, info.chain)
            return 0
        assert info.send_key is not None
        try:
            txid = await chain.send(info.address, info.amount, info.send_key, info.fee_rate_sat_vb)
        except SendRefusedError as exc:
            log.warning("withdrawal %s refused by the chain API: %s (refunded)", info.id, exc)
            await asyncio.to_thread(self.service.record_failure, info.id, str(exc))
            return 1
        except ChainUnavailableError as exc:
            log.warning("withdrawal %s: chain API unavailable (%s); will ask again", info.id, exc)
            return 0
        self._crash_point("after_send")
        try:
            await asyncio.to_thread(self.service.record_broadcast, info.id, txid)
        except InvalidTransitionError:
            log.exception("withdrawal %s: broadcast %s could not be recorded", info.id, txid)
            return 0
        self._crash_point("after_commit")
        log.info("withdrawal %s broadcast: %s", info.id, txid)
        return 1

    async def _follow(self, info: WithdrawalInfo) -> int:
        chain = self.chains.get(info.chain)
        if chain is None or info.txid is None:
            return 0
        try:
            confirmations, fee = await chain.confirmations(info.txid)
        except ChainUnavailableError as exc:
            log.warning("withdrawal %s: cannot follow %s: %s", info.id, info.txid, exc)
            return 0
        if confirmations < 0:
            log.error(
                "withdrawal %s: tx %s conflicts with the chain (%s confirmations); owner action "
                "needed",
                info.id,
                info.txid,
                confirmations,
            )
        if confirmations == info.confirmations:
            return 0
        after = await asyncio.to_thread(
            self.service.record_confirmations, info.id, confirmations, fee
        )
        return 1 if after.state != info.state else 0

    def _crash_point(self, step: str) -> None:
        """Test-only: die here, without any clean-up, when told to (fault tests)."""
        if self.crash_at == step:
            log.warning("SCNODE_EXCHANGE_CRASH_AT=%s: killing myself", step)
            os.kill(os.getpid(), signal.SIGKILL)
