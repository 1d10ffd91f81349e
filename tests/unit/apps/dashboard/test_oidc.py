"""Sign-in through the simnet OIDC provider (a real one, over HTTP): the whole code flow into
TOTP enrolment, the state checked and single-use, a provider user without a member refused,
PKCE and nonce enforced."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from scnode_dashboard.oidc import OidcClient, OidcError
from tests.unit.apps.dashboard.conftest import Dash, RunningProvider, make_dash

CALLBACK = "http://testserver/auth/oidc/callback"


def client_of(provider: RunningProvider) -> OidcClient:
    return OidcClient(f"{provider.url}.well-known/openid-configuration", "dash", "s3cret", CALLBACK)


@pytest.fixture
def oidc_dash(tmp_path: Path, oidc_provider: RunningProvider) -> Iterator[Dash]:
    yield from make_dash(tmp_path, client_of(oidc_provider), local_users=())


def provider_login(dash: Dash, login: str) -> str:
    """Start at the dashboard, log in at the provider; the callback path + query."""
    start = dash.client.get("/auth/oidc/start", follow_redirects=False)
    assert start.status_code == 303
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert len(query["code_challenge"][0]) == 43 and query["nonce"][0]
    form = httpx.get(authorize)
    assert form.status_code == 200 and 'id="loginform"' in form.text
    hidden = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.text))
    back = httpx.post(
        authorize.split("?")[0],
        data={**hidden, "log": login, "pwd": "pw", "authorize": "Authorize"},
    )
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(CALLBACK)
    return location.removeprefix("http://testserver")


def test_code_flow_signs_in_and_the_state_is_single_use(oidc_dash: Dash) -> None:
    callback = provider_login(oidc_dash, "alice")
    done = oidc_dash.client.get(callback, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/2fa/enrol"
    user = oidc_dash.store.user_by_handle("alice")
    assert user is not None and user.kind == "oidc" and user.subject == "alice"
    # the same callback again: the state was used up (and the code too)
    assert oidc_dash.client.get(callback).status_code == 400
    assert {"oidc_linked", "first_factor_ok", "oidc_state_mismatch"} <= set(oidc_dash.audit())


def test_a_forged_state_is_refused(oidc_dash: Dash) -> None:
    callback = provider_login(oidc_dash, "alice")
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    assert oidc_dash.client.get(forged).status_code == 400
    assert oidc_dash.store.user_by_handle("alice") is None


def test_a_provider_user_without_a_member_is_not_let_in(oidc_dash: Dash) -> None:
    refused = oidc_dash.client.get(provider_login(oidc_dash, "mallory"))
    assert refused.status_code == 403 and "no member account" in refused.text
    assert "oidc_no_member" in oidc_dash.audit()


def test_pkce_verifier_and_nonce_are_enforced(oidc_provider: RunningProvider) -> None:
    client = client_of(oidc_provider)

    def code_for(start_url: str) -> str:
        hidden = dict(re.findall(r'name="(\w+)" value="([^"]*)"', httpx.get(start_url).text))
        back = httpx.post(
            start_url.split("?")[0],
            data={**hidden, "log": "alice", "pwd": "pw", "authorize": "Authorize"},
        )
        return parse_qs(urlsplit(back.headers["location"]).query)["code"][0]

    async def run() -> None:
        start = await client.start()
        with pytest.raises(OidcError, match="PKCE"):
            await client.finish(code_for(start.url), "x" * 64, start.nonce)
        start = await client.start()
        with pytest.raises(OidcError, match="nonce"):
            await client.finish(code_for(start.url), start.verifier, "another-nonce")
        start = await client.start()
        identity = await client.finish(code_for(start.url), start.verifier, start.nonce)
        assert (identity.subject, identity.username) == ("alice", "alice")

    asyncio.run(run())


def test_a_member_linked_to_another_sign_in_is_not_taken_over(
    tmp_path: Path, oidc_provider: RunningProvider
) -> None:
    # alice's member already signs in with a local account: the provider's "alice" is refused
    for dash in make_dash(tmp_path, client_of(oidc_provider), local_users=("alice",)):
        refused = dash.client.get(provider_login(dash, "alice"))
        assert refused.status_code == 403 and "already linked" in refused.text
        user = dash.store.user_by_handle("alice")
        assert user is not None and user.kind == "local"


def test_provider_speaks_the_wordpress_plugins_shape_and_signs_real_rs256(
    oidc_provider: RunningProvider,
) -> None:
    """The stand-in's discovery document has the plugin's endpoints, and its id_token is an
    RS256 JWS that an independent implementation (cryptography) verifies with the JWKS key."""
    import base64
    import hashlib
    import json
    import secrets

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    issuer = oidc_provider.url
    meta = httpx.get(f"{issuer}.well-known/openid-configuration").json()
    assert meta == {
        "issuer": issuer,
        "jwks_uri": f"{issuer}.well-known/jwks.json",
        "authorization_endpoint": f"{issuer}wp-json/openid-connect/authorize",
        "token_endpoint": f"{issuer}wp-json/openid-connect/token",
        "userinfo_endpoint": f"{issuer}wp-json/openid-connect/userinfo",
        "scopes_supported": ["openid", "profile"],
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }

    def b64(data: str) -> bytes:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {"response_type": "code", "client_id": "dash", "redirect_uri": CALLBACK,
              "scope": "openid profile", "state": "s", "nonce": "n",
              "code_challenge": challenge.rstrip(b"=").decode(),
              "code_challenge_method": "S256"}  # fmt: skip
    back = httpx.post(
        meta["authorization_endpoint"],
        data={**params, "log": "alice", "pwd": "pw", "authorize": "Authorize"},
    )
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "code_verifier": verifier}  # fmt: skip
    # the wrong secret is refused before the code is looked at
    assert httpx.post(meta["token_endpoint"], data=form, auth=("dash", "nope")).status_code == 401
    tokens = httpx.post(meta["token_endpoint"], data=form, auth=("dash", "s3cret")).json()
    header, payload, signature = tokens["id_token"].split(".")
    (jwk,) = httpx.get(meta["jwks_uri"]).json()["keys"]
    assert json.loads(b64(header)) == {"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]}
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64(jwk["e"]), "big"), int.from_bytes(b64(jwk["n"]), "big")
    ).public_key()
    assert public.key_size == 2048
    public.verify(
        b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    claims = json.loads(b64(payload))
    assert (claims["iss"], claims["aud"], claims["sub"], claims["nonce"]) == (
        issuer, "dash", "alice", "n",
    )  # fmt: skip
    assert claims["username"] == "alice" and claims["exp"] > claims["iat"]
    info = httpx.get(
        meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.json() == {"sub": "alice", "scope": "openid profile", "username": "alice",
                           "nickname": "alice"}  # fmt: skip
    # the code was single use
    assert httpx.post(meta["token_endpoint"], data=form, auth=("dash", "s3cret")).json() == {
        "error": "invalid_grant",
        "error_description": "authorization code unknown, used or expired",
    }
