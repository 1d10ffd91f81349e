"""The members' exchange of an SC Node: double-entry ledger, matching engine, trading glue."""

__version__ = "0.1.0"
