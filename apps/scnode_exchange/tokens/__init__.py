"""Members' API tokens for their own clients (the Satoshiware mobile app, scripts)."""
