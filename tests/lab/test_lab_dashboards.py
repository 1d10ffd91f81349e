"""The member dashboard behind the TLS reverse proxy in the converged default lab, reached the
way a technician's browser reaches it after `make lab`: https://127.0.0.1:8443/ on this machine
(scnode_lab's forwarder into the lab), signing in at the BTCofAZ stand-in (simnet's OIDC
provider on cluster.lab, http://127.0.0.1:8480/ here).

Probes go only to this machine's loopback forwards and to the lab's hosts. ACME and the Tor
network are configured but never contacted (DESIGN §8): tor runs with DisableNetwork in the
lab, and the ACME path is not converged here (roles/reverse_proxy/README.md)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
import websockets
from playwright.sync_api import expect, sync_playwright

from scnode_lab import forward
from scnode_lab.pytest_plugin import ConvergedLab

# The first test of the session pays the shared converge (converged_lab).
pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.timeout(2700),
]

DASHBOARD = "https://127.0.0.1:8443"
PROVIDER = "http://127.0.0.1:8480"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "output" / "lab-dashboards"
# What the dashboard sends and the proxy repeats on every answer (roles/reverse_proxy defaults).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
OIDC_CONFIG = "/opt/simnet-oidc/config.json"


@pytest.fixture(scope="module")
def lab(converged_lab: ConvergedLab) -> Iterator[ConvergedLab]:
    """The converged lab with this machine's forwards running (`scnode_lab up` starts them;
    the session fixture brings the lab up without the CLI)."""
    state = converged_lab.lab.load()
    assert state is not None
    hosts = {h.name: h.ip for h in state.spec.hosts}
    print(forward.ensure(converged_lab.name, converged_lab.lab.state_dir, hosts))
    yield converged_lab


@pytest.fixture(scope="module")
def node_cert(lab: ConvergedLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-signed certificate generated on apps.lab (to verify the proxy against it)."""
    path = tmp_path_factory.mktemp("tls") / "node.crt"
    path.write_text(lab.on("apps", "cat /etc/nginx/tls/selfsigned.crt"))
    return path


def _curl_from(lab: ConvergedLab, host: str, *args: str, urls: list[str]) -> list[str]:
    """curl run in `host`'s network namespace (a client other than this machine's forwarder,
    so its rate-limit bucket is its own), quickly one after the other on one connection: one
    `-w` line per URL, bodies discarded."""
    argv = ["curl", "-sk", "--max-time", "20", *args]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    return lab.run_in(host, argv).stdout.splitlines()


def test_tls_handshake_verifies_against_the_node_certificate(
    lab: ConvergedLab, node_cert: Path
) -> None:
    context = ssl.create_default_context(cafile=str(node_cert))
    with (
        socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        cert = tls.getpeercert()
    assert cert is not None
    names = {str(entry[1]) for entry in cert["subjectAltName"]}
    assert {"127.0.0.1", "localhost", lab.hosts["apps"].fqdn} <= names
    # old protocol versions are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw,
        old.wrap_socket(raw),
    ):
        pass
    # the configuration the role rendered passes nginx's own check
    lab.on("apps", "nginx -t -q")


def test_security_headers_on_pages_and_api(lab: ConvergedLab, node_cert: Path) -> None:
    with httpx.Client(verify=str(node_cert), timeout=20) as client:
        for path in ("/login", "/api/markets"):
            answer = client.get(f"{DASHBOARD}{path}")
            assert answer.status_code == 200, (path, answer.text[:200])
            headers = answer.headers
            assert headers.get_list("content-security-policy") == [CSP], path
            assert headers["strict-transport-security"] == "max-age=31536000", path
            assert headers.get_list("x-frame-options") == ["DENY"], path
            assert headers.get_list("x-content-type-options") == ["nosniff"], path
            assert headers.get_list("referrer-policy") == ["same-origin"], path
            assert "nginx/" not in headers.get("server", ""), "version shown"
        # owner routes of the exchange are not published
        for path in ("/api/owner/members", "/v1/owner/withdrawals", "/api/dashboard/sessions"):
            assert client.get(f"{DASHBOARD}{path}").status_code == 404, path


def test_http_redirects_to_the_public_https_url(lab: ConvergedLab) -> None:
    apps = lab.hosts["apps"].ip
    lines = _curl_from(
        lab, "cluster", "-w", "%{http_code} %{redirect_url}\n", urls=[f"http://{apps}/wallet?x=1"]
    )
    assert lines == [f"301 {DASHBOARD}/wallet?x=1"]


def test_login_posts_are_rate_limited(lab: ConvergedLab) -> None:
    apps = lab.hosts["apps"].ip
    form = ["-X", "POST", "-d", "username=x&password=y", "-w", "%{http_code}\n"]
    codes = _curl_from(lab, "cluster", *form, urls=[f"https://{apps}/login/local"] * 9)
    # burst 5 on top of the first: six reach the dashboard (which refuses them: no session,
    # no CSRF token), the rest are the proxy's 429
    assert len(codes) == 9
    assert "429" not in codes[:6], codes
    assert codes[6:] == ["429"] * 3, codes
    # pages are not limited
    pages = _curl_from(lab, "cluster", "-w", "%{http_code}\n", urls=[f"https://{apps}/login"])
    assert pages == ["200"]


def test_money_posts_are_rate_limited(lab: ConvergedLab) -> None:
    apps = lab.hosts["apps"].ip
    form = ["-X", "POST", "-d", "amount=1", "-w", "%{http_code}\n"]
    codes = _curl_from(lab, "cluster", *form, urls=[f"https://{apps}/wallet/withdraw"] * 13)
    # burst 10 on top of the first, then 429
    assert "429" not in codes[:11], codes
    assert codes[11:] == ["429"] * 2, codes


def test_request_size_is_limited(lab: ConvergedLab, node_cert: Path) -> None:
    with httpx.Client(verify=str(node_cert), timeout=20) as client:
        big = client.post(f"{DASHBOARD}/logout", content=b"x" * (100 * 1024))
        small = client.post(f"{DASHBOARD}/logout", content=b"x" * 1024)
    assert big.status_code == 413
    assert small.status_code != 413


def test_websocket_upgrade_through_the_proxy(lab: ConvergedLab, node_cert: Path) -> None:
    context = ssl.create_default_context(cafile=str(node_cert))

    async def first_message() -> dict[str, object]:
        async with websockets.connect(
            "wss://127.0.0.1:8443/ws/trades", ssl=context, open_timeout=20
        ) as ws:
            return dict(json.loads(await asyncio.wait_for(ws.recv(), 20)))

    message = asyncio.run(first_message())
    assert message["type"] == "snapshot"
    assert "trades" in message


def test_onion_service_made_without_joining_tor(lab: ConvergedLab) -> None:
    hostname = lab.on("apps", "cat /var/lib/tor/scnode_dashboard/hostname").strip()
    assert re.fullmatch(r"[a-z2-7]{56}\.onion", hostname), hostname
    assert "DisableNetwork 1" in lab.on("apps", "cat /etc/tor/torrc")
    assert lab.on("apps", "systemctl is-active tor@default").strip() == "active"
    # the onion's port 80 lands on nginx's loopback listener: the dashboard, headers, no HSTS
    head = lab.on("apps", "curl -s -D - -o /dev/null http://127.0.0.1:8481/login")
    assert head.startswith("HTTP/1.1 200")
    assert "x-frame-options: deny" in head.lower()
    assert "strict-transport-security" not in head.lower()


def _new_member(lab: ConvergedLab) -> tuple[str, str]:
    """A BTCofAZ user and exchange member never signed in before (so the first sign-in enrols
    TOTP, whatever earlier sessions of this lab did): added to the stand-in's users (it is
    restarted to read them) and created through the exchange's owner API."""
    handle = f"t{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    config = json.loads(lab.on("cluster", f"cat {OIDC_CONFIG}"))
    config["users"].append({"login": handle, "password": password, "given_name": "Test"})
    lab.ssh(
        "cluster",
        f"cat > {OIDC_CONFIG}.new <<'EOF'\n{json.dumps(config)}\nEOF\n"
        f"chgrp simnet-oidc {OIDC_CONFIG}.new && chmod 0640 {OIDC_CONFIG}.new && "
        f"mv {OIDC_CONFIG}.new {OIDC_CONFIG} && systemctl restart simnet-oidc",
    )
    owner = lab.token("apps", "exchange-owner")
    status, body = lab.http(
        "apps",
        "http://127.0.0.1:8410/api/owner/members",
        owner,
        "POST",
        {"handle": handle, "reason": "reverse proxy browser test"},
    )
    assert status == 201, body
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{PROVIDER}/.well-known/openid-configuration", timeout=2).is_success:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return handle, password


def test_browser_signs_in_through_the_proxy_with_oidc_and_totp(lab: ConvergedLab) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    handle, password = _new_member(lab)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            # the lab's certificate is self-signed (a real node's is Let's Encrypt's)
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(f"{DASHBOARD}/login")
            page.click("#oidc-login")
            page.wait_for_url(f"{PROVIDER}/**")
            page.fill("#user_login", handle)
            page.fill("#user_pass", password)
            page.click("#wp-submit")
            page.wait_for_url(f"{DASHBOARD}/2fa/enrol")
            secret = page.inner_text("#totp-secret").strip()
            page.fill("#code", pyotp.TOTP(secret).now())
            page.click("text=Turn on two-factor sign-in")
            expect(page.locator("#recovery-codes code")).to_have_count(10)
            page.click("text=I saved them")
            page.wait_for_url(f"{DASHBOARD}/wallet")
            expect(page.locator("h1")).to_contain_text("Wallet")
            page.screenshot(path=str(SHOTS / "wallet-through-proxy.png"), full_page=True)
            cookies = {c["name"]: c for c in context.cookies(DASHBOARD)}
            session = cookies["__Host-scnode_dashboard"]
            assert session["secure"] and session["httpOnly"]
        finally:
            browser.close()
