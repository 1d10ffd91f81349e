"""rotate_api_keys.yml on an apps host with the exchange and the dashboard, laid out as the
scnode_apps role and site.yml's monitoring play lay them out: besides the exchange owner's key,
the dashboard's two exchange keys (scopes dashboard, owner) and Prometheus's `metrics` key rotate
— the keys that used to age past ScnodeApiKeyTooOld. The dashboard's copies in its client-keys
dir hold the new keys (which the dashboard, built from its settings, then sends with no restart),
Prometheus's token file stays readable by its group, and the old keys keep working for the grace
period only."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from scnode_core import keytool
from scnode_core.apikeys import ApiKeyStore
from scnode_dashboard.exchange import ExchangeClient
from scnode_dashboard.settings import DashboardSettings
from tests.integration.ops_apikeys.rotation import BIN, GRACE, REPO, ROTATE_TASK, rotate

pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)

# name suffix → (scopes, token file relative to the host root, the dashboard's copy or None)
KEYS = {
    "owner": (["owner"], "etc-scnode/keys/exchange-owner.token", None),
    "dashboard": (
        ["dashboard"],
        "etc-scnode/keys/exchange-dashboard.token",
        "etc-scnode/dashboard/client-keys/exchange-dashboard.token",
    ),
    "dashboard-owner": (
        ["owner"],
        "etc-scnode/keys/exchange-dashboard-owner.token",
        "etc-scnode/dashboard/client-keys/exchange-dashboard-owner.token",
    ),
    "prometheus": (["metrics"], "prometheus-keys/exchange.token", None),
}


def make_apps_host(root: Path) -> Path:
    """The exchange's owner keys file with the four keys (keytool create, as the role and the
    monitoring play do), the token files, the dashboard's copies; the inventory."""
    conf = root / "etc-scnode"
    keys_file = conf / "exchange" / "owner-api-keys.json"
    keys_file.parent.mkdir(parents=True)
    (conf / "keys").mkdir(mode=0o700)
    (root / "prometheus-keys").mkdir(mode=0o750)
    (conf / "dashboard" / "client-keys").mkdir(parents=True, mode=0o750)
    for suffix, (scopes, token, copy) in KEYS.items():
        keytool.create(keys_file, scopes, f"apps1-{suffix}", root / token)
        if copy:
            (root / copy).write_text((root / token).read_text())
            (root / copy).chmod(0o640)
    (root / KEYS["prometheus"][1]).chmod(0o640)  # site.yml: 0640 root:prometheus
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(BIN / "python"),
                "api_key_rotation_monitoring_keys_dir": str(root / "prometheus-keys"),
            },
            "children": {
                "scnode": {
                    "children": {
                        "apps": {
                            "hosts": {
                                "apps1.test": {
                                    "scnode_apps_conf_dir": str(conf),
                                    "scnode_apps_token_dir": str(conf / "keys"),
                                    "scnode_apps_exchange_enabled": True,
                                }
                            }
                        }
                    }
                }
            },
        }
    }
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def scopes_of(store: ApiKeyStore, token: str, when: datetime) -> list[str] | None:
    principal = store.authenticate(token, when)
    return None if principal is None else sorted(principal.scopes)


def test_the_dashboards_and_prometheuss_exchange_keys_rotate(tmp_path: Path) -> None:
    """One rotation while the dashboard's client, built from the settings the role writes,
    keeps asking an exchange that checks the real keys file: afterwards it sends the new key,
    accepted also once the old one is past its grace period — no restart."""
    root = tmp_path / "apps1"
    inventory = make_apps_host(root)
    keys_file = root / "etc-scnode" / "exchange" / "owner-api-keys.json"
    old = {s: (root / token).read_text().strip() for s, (_, token, _) in KEYS.items()}
    settings = DashboardSettings(
        environment="test",
        public_url="http://testserver/",
        database_path=tmp_path / "d.sqlite3",
        exchange_api_key_file=root / str(KEYS["dashboard"][2]),
        cookie_secure=False,
    )  # type: ignore[call-arg]  # the key comes from its file
    seen: list[str] = []
    clock = {"now": datetime.now(UTC)}
    report: dict[str, Any] = {}

    async def session(request: web.Request) -> web.Response:
        key = request.headers.get("X-API-Key", "")
        seen.append(key)
        principal = ApiKeyStore.load(keys_file).authenticate(key, clock["now"])
        if principal is None or "dashboard" not in principal.scopes:
            raise web.HTTPUnauthorized()
        body = await request.json()
        return web.json_response(
            {"token": f"tok-{body['handle']}", "member_id": 1, "frozen": False,
             "expires_at": 4_000_000_000},
            status=201,
        )  # fmt: skip

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/api/dashboard/sessions", session)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        client = ExchangeClient(f"http://127.0.0.1:{runner.addresses[0][1]}", settings.exchange_key)
        try:
            await client.member_token("alice")
            report.update(await asyncio.to_thread(rotate, inventory, tmp_path))
            clock["now"] += timedelta(seconds=GRACE + 5)  # the old key is refused by now
            assert (await client.member_token("alice")).token == "tok-alice"
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(main())

    results = {r["item"]["item"]["name"]: r for r in report["apps1.test"][ROTATE_TASK]["results"]}
    assert set(results) == {f"apps1-{suffix}" for suffix in KEYS}
    assert all(r["changed"] for r in results.values())
    new = {s: (root / token).read_text().strip() for s, (_, token, _) in KEYS.items()}
    assert seen == [old["dashboard"], new["dashboard"]]
    store = ApiKeyStore.load(keys_file)
    now = datetime.now(UTC)
    for suffix, (scopes, _, copy) in KEYS.items():
        assert new[suffix] != old[suffix], suffix
        # the new key has the old one's scopes; the old one works for the grace period only
        assert scopes_of(store, new[suffix], now) == scopes, suffix
        assert scopes_of(store, old[suffix], now) == scopes, suffix
        assert scopes_of(store, old[suffix], now + timedelta(seconds=GRACE + 5)) is None, suffix
        if copy:
            assert (root / copy).read_text() == new[suffix] + "\n", copy
            assert stat.S_IMODE((root / copy).stat().st_mode) == 0o640, copy
        assert new[suffix] not in report["_stdout"] and old[suffix] not in report["_stdout"]
    # Prometheus (not root) still reads its token file; the others stay root-only
    assert stat.S_IMODE((root / KEYS["prometheus"][1]).stat().st_mode) == 0o640
    assert stat.S_IMODE((root / KEYS["dashboard"][1]).stat().st_mode) == 0o600
