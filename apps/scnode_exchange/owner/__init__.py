"""Owner operations: balance adjustments, freezes, member creation — each audited."""

from scnode_exchange.owner.models import OwnerAuditEntry
from scnode_exchange.owner.service import OwnerOperations

__all__ = ["OwnerAuditEntry", "OwnerOperations"]
