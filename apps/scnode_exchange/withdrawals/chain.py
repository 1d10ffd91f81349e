"""The worker's view of a chain, on the exchange's chain API client."""

from __future__ import annotations

from scnode_exchange.chainclient import (
    ChainApiAuthError,
    ChainApiClient,
    ChainApiError,
    ChainApiNotFoundError,
    ChainApiRequestError,
)
from scnode_exchange.withdrawals.worker import ChainUnavailableError, SendRefusedError


class ChainApiSender:
    """Adapts ``ChainApiClient`` to the worker's ``ChainSender``.

    A 4xx answer to a send is a definitive refusal (invalid address, the node wallet lacks
    funds, a key that already failed or names another send) — except 401/403/404, which mean
    this exchange is misconfigured (key, scope, URL): those are retried, never refunded, so a
    fixed configuration picks the withdrawal up again with the same key.
    """

    def __init__(self, client: ChainApiClient) -> None:
        self.client = client

    async def send(
        self, address: str, amount: int, idempotency_key: str, fee_rate_sat_vb: int | None
    ) -> str:
        try:
            result = await self.client.send(
                address, amount, idempotency_key, fee_rate_sat_vb=fee_rate_sat_vb
            )
        except (ChainApiAuthError, ChainApiNotFoundError) as exc:
            raise ChainUnavailableError(f"chain API misconfigured: {exc}") from exc
        except ChainApiRequestError as exc:
            raise SendRefusedError(exc.detail) from exc
        except ChainApiError as exc:
            raise ChainUnavailableError(str(exc)) from exc
        return result.txid

    async def confirmations(self, txid: str) -> tuple[int, int | None]:
        try:
            tx = await self.client.transaction(txid)
        except ChainApiError as exc:
            raise ChainUnavailableError(str(exc)) from exc
        fee = tx.get("fee_sats")
        return int(tx.get("confirmations", 0)), (int(fee) if fee else None)

    async def aclose(self) -> None:
        await self.client.aclose()
