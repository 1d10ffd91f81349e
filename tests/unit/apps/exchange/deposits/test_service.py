"""The deposit state machine on the ledger: credit at N, idempotency, reorgs before and after
N (suspense, receivable, freeze), owner resolution, paging. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scnode_exchange.deposits.service import (
    DepositError,
    DepositService,
    Observation,
    chain_asset,
)
from scnode_exchange.ledger import (
    NODE_WALLET,
    OWNER_RECEIVABLE,
    SATS,
    SUSPENSE,
    JournalEntry,
    Ledger,
    Member,
    verify,
)

TXID = "aa" * 32


def obs(conf: int, *, txid: str = TXID, vout: int = 0, address: str = "bcrt1qalice",
        amount: int = 50_000, block: str | None = "b1", verified: bool = False,
        chain: str = "bitcoin") -> Observation:  # fmt: skip
    return Observation(
        chain, txid, vout, address, amount, conf, block if conf > 0 else None, verified=verified
    )


def balance(sessions: sessionmaker[Session], member_id: int, asset: str = SATS) -> int:
    with sessions() as session:
        return Ledger(session).member_account(member_id, asset).balance


def system(sessions: sessionmaker[Session], name: str, asset: str = SATS) -> int:
    with sessions() as session:
        return Ledger(session).system_account(name, asset).balance


def entries(sessions: sessionmaker[Session], kind: str) -> int:
    with sessions() as session:
        return int(
            session.scalar(select(func.count(JournalEntry.id)).where(JournalEntry.kind == kind))
            or 0
        )


def audit(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = verify(session)
    assert report.ok, report


@pytest.fixture
def alice(deposits: DepositService, members: tuple[int, int]) -> int:
    deposits.record_address(members[0], "bitcoin", "bcrt1qalice")
    return members[0]


def test_chains_map_to_assets() -> None:
    assert (chain_asset("bitcoin"), chain_asset("azcoin"), chain_asset("x", "MICRO")) == (
        "SATS", "AZC", "MICRO",
    )  # fmt: skip
    with pytest.raises(ValueError, match="explicit asset"):
        chain_asset("dogecoin")


def test_pending_until_n_confirmations_then_credited_once(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.apply([obs(0)])
    assert [d.state for d in deposits.pending(alice)] == ["pending"]
    assert balance(sessions, alice) == 0
    for conf in (1, 2):
        assert deposits.apply([obs(conf)]).credited == []
    assert balance(sessions, alice) == 0
    result = deposits.apply([obs(3)], tip_height=120)
    assert result.credited == [f"bitcoin:{TXID}:0"]
    assert balance(sessions, alice) == 50_000
    assert system(sessions, NODE_WALLET) == -50_000
    (view,) = deposits.history(alice)
    assert (view.state, view.confirmations, view.block_height) == ("credited", 3, 118)
    assert deposits.pending(alice) == []
    with sessions() as session:
        entry = session.scalar(
            select(JournalEntry).where(JournalEntry.reference == f"deposit:bitcoin:{TXID}:0")
        )
        assert entry is not None and entry.kind == "deposit"
    audit(sessions)


def test_replays_duplicates_and_restarts_never_credit_twice(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    # the same output three times in one batch, again later, and through a new service
    assert len(deposits.apply([obs(3), obs(3), obs(4)]).credited) == 1
    assert deposits.apply([obs(5), obs(3)]).credited == []
    restarted = DepositService(sessions, deposits.chains)
    assert restarted.apply([obs(0), obs(6)]).credited == []
    assert balance(sessions, alice) == 50_000
    assert entries(sessions, "deposit") == 1
    # a stale event (fewer confirmations, same block) does not undo anything
    assert restarted.apply([obs(1)]).to_verify == []
    assert deposits.history(alice)[0].state == "credited"
    audit(sessions)


def test_outputs_to_unknown_addresses_and_two_outputs_of_one_tx(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int, members: tuple[int, int]
) -> None:
    bob = members[1]
    deposits.record_address(bob, "bitcoin", "bcrt1qbob")
    result = deposits.apply(
        [
            obs(3, vout=0),
            obs(3, vout=1, address="bcrt1qbob", amount=7_000),
            obs(3, vout=2, address="bcrt1qchange", amount=99_000),  # not a deposit address
        ]
    )
    assert len(result.credited) == 2
    assert (balance(sessions, alice), balance(sessions, bob)) == (50_000, 7_000)
    with pytest.raises(DepositError, match="another member"):
        deposits.record_address(bob, "bitcoin", "bcrt1qalice")
    assert deposits.addresses(bob) == [("bitcoin", "bcrt1qbob")]


def test_reorg_before_n_never_credits_and_a_returning_tx_is_pending_again(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.apply([obs(2)])
    result = deposits.apply([obs(-1)])
    assert result.reorged == [f"bitcoin:{TXID}:0"] and result.credited == []
    assert deposits.history(alice)[0].state == "reorged"
    assert deposits.pending(alice) == []
    assert balance(sessions, alice) == 0 and entries(sessions, "deposit") == 0
    deposits.apply([obs(1, block="b9")])
    assert deposits.history(alice)[0].state == "pending"
    deposits.apply([obs(3, block="b9")])
    assert balance(sessions, alice) == 50_000
    audit(sessions)


def test_an_unverified_event_never_reverses_a_credit(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.apply([obs(3)])
    result = deposits.apply([obs(-1)])
    assert result.to_verify == [obs(-1)] and result.reversed == []
    assert deposits.history(alice)[0].state == "credited"
    assert balance(sessions, alice) == 50_000
    # re-included in another block, still N deep: nothing to do
    assert deposits.apply([obs(4, block="b2", verified=True)]).reversed == []
    assert deposits.history(alice)[0].state == "credited"


def test_reorg_after_credit_moves_the_amount_to_suspense_with_an_alert(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    deposits.apply([obs(3)])
    result = deposits.apply([obs(-1, verified=True)])
    assert result.reversed == [f"bitcoin:{TXID}:0"]
    assert "reorged after credit" in caplog.text
    assert balance(sessions, alice) == 0
    assert system(sessions, SUSPENSE) == 50_000
    assert system(sessions, NODE_WALLET) == -50_000  # the owner decides: still recorded
    (alert,) = deposits.alerts()
    assert (alert.member_id, alert.amount, alert.taken_from_member, alert.receivable) == (
        alice, 50_000, 50_000, 0,
    )  # fmt: skip
    assert alert.member_frozen is False and alert.deposit_state == "suspense"
    # replays change nothing more
    assert deposits.apply([obs(-1, verified=True), obs(3)]).reversed == []
    assert entries(sessions, "deposit_reversal") == 1 and len(deposits.alerts()) == 1
    audit(sessions)


def test_reversal_of_spent_funds_books_a_receivable_and_freezes_the_member(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int, members: tuple[int, int]
) -> None:
    deposits.apply([obs(3)])
    with sessions.begin() as session:  # alice spends 30 000 of it
        ledger = Ledger(session)
        ledger.transfer(
            "transfer", "test", ledger.member_account(alice, SATS),
            ledger.member_account(members[1], SATS), 30_000,
        )  # fmt: skip
    deposits.apply([obs(2, block="other", verified=True)])  # moved to a shallower block
    assert balance(sessions, alice) == 0
    assert system(sessions, OWNER_RECEIVABLE) == -30_000
    assert system(sessions, SUSPENSE) == 50_000
    (alert,) = deposits.alerts()
    assert (alert.taken_from_member, alert.receivable, alert.member_frozen) == (
        20_000,
        30_000,
        True,
    )
    with sessions() as session:
        member = session.get(Member, alice)
        assert member is not None and member.frozen
    audit(sessions)
    # the output is confirmed again: the owner re-credits, the debt and the freeze go away
    with pytest.raises(DepositError, match="needs 3"):
        deposits.resolve_alert(alert.id, action="recredit", actor="owner:test", reason="back")
    deposits.apply([obs(3, block="other")])
    resolved = deposits.resolve_alert(alert.id, action="recredit", actor="owner:t", reason="back")
    assert resolved.resolved_by == "owner:t" and deposits.alerts() == []
    assert balance(sessions, alice) == 20_000
    assert (system(sessions, OWNER_RECEIVABLE), system(sessions, SUSPENSE)) == (0, 0)
    with sessions() as session:
        member = session.get(Member, alice)
        assert member is not None and not member.frozen
    with pytest.raises(DepositError, match="already resolved"):
        deposits.resolve_alert(alert.id, action="write_off", actor="owner:t", reason="again")
    audit(sessions)


def test_write_off_clears_suspense_against_the_node_wallet(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.apply([obs(3)])
    deposits.apply([obs(-1, verified=True)])
    (alert,) = deposits.alerts()
    with pytest.raises(DepositError, match="reason"):
        deposits.resolve_alert(alert.id, action="write_off", actor="owner:t", reason=" ")
    deposits.resolve_alert(alert.id, action="write_off", actor="owner:t", reason="double spent")
    assert (system(sessions, SUSPENSE), system(sessions, NODE_WALLET)) == (0, 0)
    assert len(deposits.alerts(include_resolved=True)) == 1
    audit(sessions)


def test_cursor_is_stored_with_the_batch(deposits: DepositService, alice: int) -> None:
    assert deposits.cursor("bitcoin") == (None, None)
    deposits.apply([obs(1)], chain="bitcoin", cursor=41, tip_height=200)
    assert deposits.cursor("bitcoin") == (41, 200)
    deposits.apply([], chain="bitcoin", cursor=42)
    assert deposits.cursor("bitcoin") == (42, 200)


def test_history_pages_newest_first_and_is_per_member(
    deposits: DepositService, alice: int, members: tuple[int, int]
) -> None:
    deposits.apply([obs(1, txid=f"{i:064x}", amount=1_000 + i) for i in range(7)])
    first = deposits.history(alice, limit=3)
    assert [d.amount for d in first] == [1_006, 1_005, 1_004]
    second = deposits.history(alice, limit=3, before_id=first[-1].id)
    assert [d.amount for d in second] == [1_003, 1_002, 1_001]
    assert deposits.history(members[1]) == []
    assert len(deposits.pending(alice)) == 7


def test_each_chain_credits_its_own_asset_at_its_own_depth(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.record_address(alice, "azcoin", "az1qalice")
    deposits.record_address(alice, "micro", "mc1qalice")
    deposits.apply([obs(5, chain="azcoin", address="az1qalice", amount=10**8)])
    deposits.apply([obs(2, chain="micro", address="mc1qalice", amount=77)])
    assert balance(sessions, alice, "AZC") == 0
    assert balance(sessions, alice, "MICRO") == 77
    deposits.apply([obs(6, chain="azcoin", address="az1qalice", amount=10**8)])
    assert balance(sessions, alice, "AZC") == 10**8
    with pytest.raises(DepositError, match="no deposits on chain"):
        deposits.record_address(alice, "dogecoin", "D123")
    audit(sessions)


def test_a_credit_reincluded_deep_enough_elsewhere_rests_on_the_new_block(
    deposits: DepositService, sessions: sessionmaker[Session], alice: int
) -> None:
    deposits.apply([obs(3, block="A")])
    assert deposits.apply([obs(4, block="B")]).reversed == []  # N deep in B: still good
    # B is now the block of record: a later move out of B below N is a reorg after credit
    result = deposits.apply([obs(1, block="C", verified=True)])
    assert result.reversed == [f"bitcoin:{TXID}:0"]
    (alert,) = deposits.alerts()
    assert "credited in block B" in alert.detail
    audit(sessions)
