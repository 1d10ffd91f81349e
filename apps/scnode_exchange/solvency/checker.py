"""The periodic solvency check: read every chain wallet's balance, then the ledger, compare,
and keep the alerts (``SolvencyChecker.run(stop)``, started by the exchange app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol

from scnode_exchange.chainclient import ChainApiError
from scnode_exchange.solvency.service import SolvencyReport, SolvencyService

log = logging.getLogger(__name__)


class WalletBalance(Protocol):
    """What the check needs of a chain API (``ChainApiClient`` fits): ``GET
    /v1/wallet/balance`` → ``{"trusted_sats", "untrusted_pending_sats", "immature_sats"}``."""

    async def balance(self) -> dict[str, int]: ...


class SolvencyChecker:
    """Reads the wallets, then the database (that order matters: see ``service``)."""

    def __init__(
        self,
        service: SolvencyService,
        wallets: Mapping[str, WalletBalance],
        *,
        interval: float = 60.0,
    ) -> None:
        unknown = set(wallets) - set(service.chain_assets)
        if unknown:
            raise ValueError(f"no asset for the wallets of chains {sorted(unknown)}")
        self.service = service
        self.wallets = dict(wallets)
        self.interval = interval
        self.last: SolvencyReport | None = None

    async def read_wallets(self) -> tuple[dict[str, int | None], dict[str, str]]:
        """Each chain's trusted balance (None with the reason when the API cannot answer)."""
        balances: dict[str, int | None] = {}
        errors: dict[str, str] = {}

        async def one(chain: str, wallet: WalletBalance) -> None:
            try:
                balances[chain] = int((await wallet.balance())["trusted_sats"])
            except (ChainApiError, OSError, KeyError, ValueError, TimeoutError) as exc:
                balances[chain] = None
                errors[chain] = f"{type(exc).__name__}: {exc}"
                log.warning("solvency: the %s wallet balance cannot be read: %s", chain, exc)

        await asyncio.gather(*(one(c, w) for c, w in self.wallets.items()))
        return balances, errors

    async def report(self) -> SolvencyReport:
        """Fresh figures, alerts untouched (the owner's on-demand view)."""
        balances, errors = await self.read_wallets()
        return await asyncio.to_thread(self.service.assess, balances, errors)

    async def check(self) -> SolvencyReport:
        """One check: figures, then the alert state and the metrics."""
        report = await self.report()
        await asyncio.to_thread(self.service.record, report)
        self.last = report
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``interval`` seconds until ``stop`` (interval 0: never — the owner's
        on-demand report still works); the chain API clients are closed at the end."""
        try:
            while self.interval > 0 and not stop.is_set():
                try:
                    await self.check()
                except Exception:  # a failed check must not end the checking
                    log.exception("solvency check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
            await stop.wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        for wallet in self.wallets.values():
            close = getattr(wallet, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
