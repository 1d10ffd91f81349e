"""Mining tests reuse the exchange's database fixtures (SQLite, and PostgreSQL when
configured) from tests/unit/apps/exchange/conftest.py."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

import scnode_exchange.mining.models  # noqa: F401  (registers the mining tables)
from scnode_exchange.ledger import Ledger
from scnode_exchange.mining import MiningConfig, MiningService

CONFIG = MiningConfig(fee_bps={"btc": 100, "azc": 250}, confirmations={"btc": 6, "azc": 10})


@pytest.fixture
def mining(sessions: sessionmaker[Session]) -> MiningService:
    return MiningService(sessions, CONFIG)


@pytest.fixture
def members(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions.begin() as session:
        ledger = Ledger(session)
        return (
            ledger.create_member("alice").id,
            ledger.create_member("bob").id,
            ledger.create_member("carol").id,
        )
