"""HTTP and WebSocket API of the exchange: ``create_app(settings)`` (see ``app.py``)."""
