"""Chain API: one instance per chain daemon (bitcoin, azcoin, a microcurrency).

Hands out members' deposit addresses (wallet labels), reports what they received, sends the
exchange's withdrawals exactly once, and pushes ZMQ-driven wallet events over WebSocket and
Server-Sent Events with a resume cursor.
"""

__version__ = "0.1.0"
