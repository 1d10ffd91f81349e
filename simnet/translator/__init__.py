"""Translator (translator_sv2) stand-in: real SV1 server, simulated SV2 upstream."""
