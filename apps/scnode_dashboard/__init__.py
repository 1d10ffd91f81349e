"""The SC Node member dashboard: server-rendered pages (FastAPI + Jinja2) over the exchange's
member API, with BTCofAZ OpenID Connect or local sign-in and TOTP second factor."""

__version__ = "0.1.0"
