"""The sibling packages the app runs when they are installed: withdrawals and deposits.

* **Withdrawals** (``scnode_exchange.withdrawals``): the app builds the ``WithdrawalService``
  from its settings (policies via ``build_policies``), wraps it so every owner approval or
  rejection also lands in the owner audit log, publishes it as ``app.state.withdrawal_service``
  (its router reads it there) and starts the ``WithdrawalWorker`` when chains are configured.
* **Deposits** (``scnode_exchange.deposits``): the app starts what ``build_worker(settings,
  sessions)`` returns (the watcher; None without chains) and hands its service (wrapped so the
  owner's alert resolutions are audited) and chain clients to the deposits router
  (``app.state.deposit_service`` / ``deposit_clients``).

Both routers are mounted by ``app.py`` with this app's ``current_member``/``current_owner``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI

from scnode_exchange.api.runtime import Runtime
from scnode_exchange.owner import OwnerOperations
from scnode_exchange.settings import ExchangeSettings, client_key

log = logging.getLogger(__name__)


def optional_module(module: str) -> Any | None:
    """A sibling package that may not be installed yet; other import errors still raise."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise


class AuditedWithdrawals:
    """The withdrawal service, with owner approvals and rejections also written to the owner
    audit log (right after the withdrawal's own transaction, whose event history records the
    actor too). Everything else is the service itself."""

    def __init__(self, service: Any, sessions: Any) -> None:
        self._service = service
        self._sessions = sessions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def approve(self, withdrawal_id: int, actor: str) -> Any:
        """Approve, then audit."""
        info = self._service.approve(withdrawal_id, actor)
        _audit(self._sessions, actor, "approve_withdrawal", "approved", info)
        return info

    def reject(self, withdrawal_id: int, actor: str, reason: str) -> Any:
        """Reject (the hold goes back), then audit."""
        info = self._service.reject(withdrawal_id, actor, reason)
        _audit(self._sessions, actor, "reject_withdrawal", reason, info)
        return info


def start_withdrawals(app: FastAPI, settings: ExchangeSettings, rt: Runtime) -> Any | None:
    """Set up the withdrawal service (whenever the package exists) and return the worker to
    run (None without the package or without chains). Imported by name, so this app does not
    depend on the package at type-check or install time."""
    withdrawals = optional_module("scnode_exchange.withdrawals")
    if withdrawals is None:
        return None
    policies = importlib.import_module("scnode_exchange.withdrawals.settings").build_policies(
        {name: chain.asset for name, chain in settings.chains.items()},
        {name: dict(policy) for name, policy in settings.withdrawals.items()},
        settings.withdrawal_approval_threshold,
    )
    service = withdrawals.WithdrawalService(
        rt.sessions, policies, send_key_prefix=settings.withdrawal_key_prefix
    )
    app.state.withdrawal_service = AuditedWithdrawals(service, rt.sessions)
    if not settings.chains:
        return None
    client = importlib.import_module("scnode_exchange.chainclient").ChainApiClient
    sender = importlib.import_module("scnode_exchange.withdrawals.chain").ChainApiSender
    senders = {
        name: sender(client(chain.api_url, client_key(chain)))
        for name, chain in settings.chains.items()
    }
    worker = withdrawals.WithdrawalWorker(
        service,
        senders,
        poll_seconds=settings.withdrawal_poll_seconds,
        batch=settings.withdrawal_batch,
        follow_seconds=settings.withdrawal_follow_seconds,
    )
    app.state.withdrawal_worker = worker
    return worker


def _audit(sessions: Any, actor: str, action: str, reason: str, info: Any) -> None:
    with sessions.begin() as session:
        OwnerOperations.record(
            session,
            actor,
            action,
            reason,
            member_id=info.member_id,
            details={
                "withdrawal_id": info.id,
                "chain": info.chain,
                "amount": info.amount,
                "state": info.state,
            },
        )


class AuditedDeposits:
    """The deposit service, with the owner's alert resolutions also in the owner audit log."""

    def __init__(self, service: Any, sessions: Any) -> None:
        self._service = service
        self._sessions = sessions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def resolve_alert(self, alert_id: int, *, action: str, actor: str, reason: str) -> Any:
        """Resolve, then audit."""
        view = self._service.resolve_alert(alert_id, action=action, actor=actor, reason=reason)
        with self._sessions.begin() as session:
            OwnerOperations.record(
                session,
                actor,
                f"deposit_alert_{action}",
                reason,
                member_id=view.member_id,
                details={
                    "alert_id": alert_id,
                    "deposit": view.deposit,
                    "amount": view.amount,
                    "asset": view.asset,
                },
            )
        return view


def start_deposits(app: FastAPI, settings: ExchangeSettings, rt: Runtime) -> Any | None:
    """The deposit watcher to run (the package's ``build_worker``; None without chains or
    package). Its service and chain clients also serve the deposits router, audited."""
    module = optional_module("scnode_exchange.deposits")
    build = getattr(module, "build_worker", None) if module is not None else None
    if build is None:
        return None
    # the watcher's series go on the app's registry (/metrics), created once per app
    metrics = getattr(app.state, "deposit_metrics", None)
    make_metrics = getattr(module, "DepositMetrics", None)
    if metrics is None and make_metrics is not None:
        metrics = make_metrics(rt.metrics.registry)
        app.state.deposit_metrics = metrics
    worker = build(settings, rt.sessions, metrics)
    if worker is not None and hasattr(worker, "service"):
        app.state.deposit_service = AuditedDeposits(worker.service, rt.sessions)
        app.state.deposit_clients = getattr(worker, "clients", {})
    return worker


def start_mining(app: FastAPI, settings: ExchangeSettings, rt: Runtime) -> Any | None:
    """The mining payout watchers to run (the mining package's ``build_worker``; None without
    configured pools or without the package). Their service also serves the mining router."""
    module = optional_module("scnode_exchange.mining.settings")
    build = getattr(module, "build_worker", None) if module is not None else None
    if build is None:
        return None
    worker = build(settings, rt.sessions)
    if worker is not None and hasattr(worker, "service"):
        app.state.mining_service = worker.service
    if worker is not None and hasattr(worker, "work_source"):
        app.state.mining_work_source = worker.work_source
    return worker
