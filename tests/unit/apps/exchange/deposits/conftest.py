"""Deposit tests reuse the exchange's database fixtures (SQLite, and PostgreSQL when
configured) from tests/unit/apps/exchange/conftest.py."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

import scnode_exchange.deposits.models  # noqa: F401  (registers the deposit tables)
from scnode_exchange.deposits.service import ChainDepositConfig, DepositService
from scnode_exchange.ledger import AZC, SATS, Ledger

CHAINS = {
    "bitcoin": ChainDepositConfig(SATS, 3),
    "azcoin": ChainDepositConfig(AZC, 6),
    "micro": ChainDepositConfig("MICRO", 2),
}


@pytest.fixture
def deposits(sessions: sessionmaker[Session]) -> DepositService:
    return DepositService(sessions, CHAINS)


@pytest.fixture
def members(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions.begin() as session:
        ledger = Ledger(session)
        return ledger.create_member("alice").id, ledger.create_member("bob").id
