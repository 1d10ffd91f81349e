"""The OIDC provider (SIMULATION), shaped like the WordPress "OpenID Connect Server" plugin
that BTCofAZ would run:

* ``GET /.well-known/openid-configuration`` — issuer = the site URL (trailing slash),
  ``jwks_uri`` = ``<site>/.well-known/jwks.json``, the other endpoints under
  ``<site>/wp-json/openid-connect/`` (``authorize``, ``token``, ``userinfo``); scopes
  ``openid profile``, response type ``code``, RS256.
* ``authorize``: a WordPress-like login form (username + password), then a code bound to the
  client, redirect URI, scope, nonce and the PKCE challenge (S256 required: the dashboard
  always sends it, and a client that does not is refused here).
* ``token``: ``authorization_code`` grant, client secret by HTTP Basic or in the form
  (``client_secret_basic``/``client_secret_post``), PKCE verifier checked, code single-use and
  valid 60 s; answers ``access_token``, ``id_token`` (RS256), ``expires_in``, ``scope``.
* ``userinfo``: the plugin's claims (``sub`` = the WordPress login, ``username``,
  ``given_name``, ``family_name``, ``nickname``, ``scope``) for a bearer access token.

Errors follow RFC 6749 §5.2 / §4.1.2.1 (``invalid_grant``, ``invalid_client``,
``invalid_request``, ``access_denied``). Everything lives in memory.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from simnet.oidc.rsa import RsaKey, b64url

CODE_TTL = 60
TOKEN_TTL = 3600
ID_TOKEN_TTL = 3600
REST = "wp-json/openid-connect"


@dataclass(frozen=True)
class Client:
    """A registered relying party."""

    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]
    name: str = "SC Node dashboard"


@dataclass(frozen=True)
class User:
    """A WordPress user: ``login`` is the subject (``user_login``)."""

    login: str
    password: str
    given_name: str = ""
    family_name: str = ""


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    login: str
    scope: str
    nonce: str | None
    challenge: str
    issued: float
    auth_time: int


@dataclass
class Provider:
    """State of one provider: key, clients, users, outstanding codes and tokens."""

    issuer: str
    clients: dict[str, Client]
    users: dict[str, User]
    key: RsaKey = field(default_factory=RsaKey.generate)
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)  # who signed in (tests read /simnet/logins)

    def url(self, path: str) -> str:
        return self.issuer + path

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.url(".well-known/jwks.json"),
            "authorization_endpoint": self.url(f"{REST}/authorize"),
            "token_endpoint": self.url(f"{REST}/token"),
            "userinfo_endpoint": self.url(f"{REST}/userinfo"),
            "scopes_supported": ["openid", "profile"],
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def claims(self, login: str, scope: str) -> dict[str, Any]:
        user = self.users[login]
        claims: dict[str, Any] = {"sub": login, "scope": scope}
        if "profile" in scope.split():
            claims["username"] = login
            claims["nickname"] = login.lower()
            if user.given_name:
                claims["given_name"] = user.given_name
            if user.family_name:
                claims["family_name"] = user.family_name
        return claims


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = (parts.query + "&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _oauth_error(code: str, description: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": code, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log In &lsaquo; BTCofAZ (SIMULATION)</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body class="login"><main>
<h1>BTCofAZ (simnet SIMULATION)</h1>
<p><strong>{client}</strong> would like to sign you in.</p>
{error}
<form method="post" id="loginform">
{hidden}
<p><label for="user_login">Username or Email Address</label>
<input type="text" name="log" id="user_login" autocomplete="username" required></p>
<p><label for="user_pass">Password</label>
<input type="password" name="pwd" id="user_pass" autocomplete="current-password" required></p>
<p><button type="submit" id="wp-submit" name="authorize" value="Authorize">Log In</button>
<button type="submit" id="wp-deny" name="authorize" value="Deny" formnovalidate>Deny</button></p>
</form></main></body></html>
"""

_AUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                "code_challenge", "code_challenge_method")  # fmt: skip


def build_app(provider: Provider) -> web.Application:
    """The provider's aiohttp application."""
    base_path = urlsplit(provider.issuer).path  # "/" or "/wordpress/"

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(provider.discovery(), headers={"Access-Control-Allow-Origin": "*"})

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [provider.key.jwk()]})

    async def authorize(request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        form: dict[str, str] = {}
        if request.method == "POST":
            posted = await request.post()
            form = {k: str(v) for k, v in posted.items()}
            params = {k: form[k] for k in _AUTH_PARAMS if k in form}
        client = provider.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        # the redirect URI is checked before anything is sent to it (RFC 6749 §4.1.2.1)
        if client is None or redirect_uri not in client.redirect_uris:
            return web.Response(status=400, text="unknown client or redirect_uri not registered")
        state = params.get("state")

        def back(**values: str) -> web.Response:
            if state is not None:
                values["state"] = state
            raise web.HTTPFound(_with_query(redirect_uri, values))

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope", error_description="openid scope required")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request", error_description="PKCE S256 required")
        error = ""
        if request.method == "POST":
            if form.get("authorize") != "Authorize":
                return back(error="access_denied", error_description="the user denied access")
            user = provider.users.get(form.get("log", ""))
            if user is not None and secrets.compare_digest(user.password, form.get("pwd", "")):
                code = secrets.token_urlsafe(32)
                provider.codes[code] = _Code(
                    client.client_id, redirect_uri, user.login, params["scope"],
                    params.get("nonce"), challenge, time.monotonic(), int(time.time()),
                )  # fmt: skip
                provider.logins.append(user.login)
                return back(code=code)
            error = '<p id="login_error" role="alert">Unknown username or incorrect password.</p>'
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params[k])}">'
            for k in _AUTH_PARAMS
            if k in params
        )
        page = _FORM.format(client=html.escape(client.name), error=error, hidden=hidden)
        return web.Response(
            text=page,
            content_type="text/html",
            status=200 if not error else 401,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    def _client_auth(request: web.Request, form: dict[str, str]) -> Client | None:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except ValueError:
                return None
            client_id, _, secret = decoded.partition(":")
        client = provider.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return None
        return client

    async def token(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        client = _client_auth(request, form)
        if client is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        code = provider.codes.pop(form.get("code", ""), None)  # single use, even when refused
        if code is None or time.monotonic() - code.issued > CODE_TTL:
            return _oauth_error("invalid_grant", "authorization code unknown, used or expired")
        if code.client_id != client.client_id or code.redirect_uri != form.get("redirect_uri"):
            return _oauth_error("invalid_grant", "code issued to another client or redirect_uri")
        verifier = form.get("code_verifier", "")
        expected = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(expected, code.challenge):
            return _oauth_error("invalid_grant", "PKCE code_verifier does not match")
        access = secrets.token_urlsafe(32)
        provider.tokens[access] = (code.login, code.scope, time.time() + TOKEN_TTL)
        now = int(time.time())
        id_claims: dict[str, object] = {
            **provider.claims(code.login, code.scope),
            "iss": provider.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_TTL,
            "auth_time": code.auth_time,
        }
        id_claims.pop("scope")
        if code.nonce is not None:
            id_claims["nonce"] = code.nonce
        return web.json_response(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL,
                "scope": code.scope,
                "id_token": provider.key.jwt(id_claims),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    async def userinfo(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        entry = provider.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if entry is None or entry[2] < time.time():
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return web.json_response(provider.claims(entry[0], entry[1]))

    async def logins(_: web.Request) -> web.Response:
        return web.json_response({"logins": provider.logins})

    app = web.Application()
    app.router.add_get(f"{base_path}.well-known/openid-configuration", discovery)
    app.router.add_get(f"{base_path}.well-known/jwks.json", jwks)
    app.router.add_route("*", f"{base_path}{REST}/authorize", authorize)
    app.router.add_post(f"{base_path}{REST}/token", token)
    app.router.add_route("*", f"{base_path}{REST}/userinfo", userinfo)
    app.router.add_get(f"{base_path}simnet/logins", logins)
    return app
