"""Member sign-in with BTCofAZ over OpenID Connect: authorization code flow with PKCE (S256),
the provider found through its discovery document, the client authenticated with its secret
(HTTP Basic), the id_token's RS256 signature checked against the provider's JWKS and its
``iss``, ``aud``, ``exp``, ``iat`` and ``nonce`` claims checked (OIDC Core §3.1.3.7).

authlib builds the authorization request and redeems the code; joserfc (authlib's JOSE
successor) checks the id_token. BTCofAZ's WordPress OIDC server plugin names the login
``username`` (and ``sub``); ``preferred_username`` is accepted from other providers.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import authlib.deprecate  # noqa: F401 (installs authlib's warning filter before ours)
import httpx
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

DISCOVERY_TTL = 3600.0


class OidcError(Exception):
    """The sign-in failed; the message is safe to show (no token, no secret)."""


@dataclass(frozen=True)
class LoginStart:
    """What the dashboard keeps server-side between the redirect and the callback."""

    url: str
    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    issuer: str
    subject: str
    username: str


class OidcClient:
    """One relying-party configuration (discovery URL, client id and secret, redirect URI)."""

    def __init__(
        self,
        discovery_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: str = "openid profile",
        timeout: float = 10.0,
    ) -> None:
        self.discovery_url = discovery_url
        self.client_id = client_id
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self.scopes = scopes
        self.timeout = timeout
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self._secret,
            scope=self.scopes,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
            timeout=self.timeout,
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for an hour)."""
        if self._metadata is None or time.monotonic() - self._metadata_at > DISCOVERY_TTL:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                try:
                    reply = await http.get(self.discovery_url)
                    reply.raise_for_status()
                    data = reply.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise OidcError(f"sign-in provider not reachable: {exc}") from exc
            for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(data.get(name), str):
                    raise OidcError(f"provider discovery document lacks {name}")
            if "RS256" not in data.get("id_token_signing_alg_values_supported", ["RS256"]):
                raise OidcError("provider does not sign id_tokens with RS256")
            self._metadata, self._metadata_at = data, time.monotonic()
        return self._metadata

    async def start(self) -> LoginStart:
        """The authorization URL to send the browser to, with fresh state, nonce and PKCE
        verifier (all three stay on the dashboard's server side)."""
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                meta["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        return LoginStart(url, state, nonce, verifier)

    async def finish(self, code: str, verifier: str, nonce: str) -> Identity:
        """Redeem the code (with the PKCE verifier) and check the id_token."""
        meta = await self.metadata()
        async with self._oauth() as oauth:
            try:
                token = await oauth.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=verifier
                )
            except Exception as exc:  # authlib raises OAuthError, httpx its own errors
                raise OidcError(f"the provider refused the sign-in code: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider sent no id_token")
        claims = await self._verify(id_token, meta, nonce)
        username = claims.get("username") or claims.get("preferred_username")
        if not username and meta.get("userinfo_endpoint"):
            info = await self._userinfo(meta["userinfo_endpoint"], str(token["access_token"]))
            if info.get("sub") != claims["sub"]:
                raise OidcError("userinfo subject differs from the id_token's")
            username = info.get("username") or info.get("preferred_username")
        return Identity(meta["issuer"], str(claims["sub"]), str(username or claims["sub"]))

    async def _keyset(self, meta: dict[str, Any], refresh: bool) -> KeySet:
        if self._keys is None or refresh:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                try:
                    reply = await http.get(meta["jwks_uri"])
                    reply.raise_for_status()
                    self._keys = KeySet.import_key_set(reply.json())
                except (httpx.HTTPError, ValueError, JoseError) as exc:
                    raise OidcError(f"provider keys not readable: {exc}") from exc
        return self._keys

    async def _verify(self, id_token: str, meta: dict[str, Any], nonce: str) -> dict[str, Any]:
        decoded = None
        for refresh in (False, True):  # a key rotated at the provider: fetch the JWKS again
            keys = await self._keyset(meta, refresh)
            try:
                decoded = jwt.decode(id_token, keys, algorithms=["RS256"])
                break
            except JoseError as exc:
                if refresh:
                    raise OidcError(f"id_token signature not valid: {exc}") from exc
        assert decoded is not None
        registry = jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": meta["issuer"]},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise OidcError(f"id_token not valid: {exc}") from exc
        claims: dict[str, Any] = dict(decoded.claims)
        return claims

    async def _userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            try:
                reply = await http.get(url, headers={"Authorization": f"Bearer {access_token}"})
                reply.raise_for_status()
                data: dict[str, Any] = reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(f"userinfo not readable: {exc}") from exc
        return data
