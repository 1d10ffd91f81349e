"""The Lightning API's keys in playbooks/rotate_api_keys.yml: discovered by the token files the
apps role writes (`<token_dir>/lightning-api-<name>.token`, keys file
`<conf_dir>/lightning-api/api-keys.json`), rotated while clients keep calling a real Lightning
API process (in front of the simnet lightningd): no request of a client that switches fails,
the exchange's copy on the apps host follows, the old key works through the grace period and
is refused after it. Keys the rotation does not own (other names in the file) are untouched."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scnode_core import keytool
from tests.integration.lightning_api.handle import LightningApi, LightningPair
from tests.integration.ops_apikeys.rotation import BIN, REPO, Traffic, rotate, rotate_task

pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)

GRACE = 25


def write_inventory(root: Path, conf: Path, tokens: Path, apps_conf: Path, url: str) -> Path:
    inventory: dict[str, Any] = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(BIN / "python"),
            },
            "children": {
                "scnode": {
                    "children": {
                        "lightning": {
                            "hosts": {
                                "ln1.test": {
                                    "scnode_apps_conf_dir": str(conf),
                                    "scnode_apps_token_dir": str(tokens),
                                }
                            }
                        },
                        "apps": {
                            "hosts": {
                                "apps1.test": {
                                    "scnode_apps_conf_dir": str(apps_conf),
                                    "scnode_apps_exchange_lightning": {
                                        "api_url": url,
                                        "key_host": "ln1.test",
                                    },
                                }
                            }
                        },
                    }
                }
            },
        }
    }
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_lightning_api_keys_rotate_under_traffic(
    shared_pair: LightningPair, tmp_path: Path
) -> None:
    node, _hub = shared_pair
    conf = tmp_path / "ln1" / "etc-scnode"
    tokens = conf / "keys"
    tokens.mkdir(parents=True, mode=0o700)
    # the API's own test keys (test-read, …) first, then the first-run keys as the role makes them
    api = LightningApi(node, conf / "lightning-api")
    api.workdir.mkdir()
    api.write_config()
    keys_file = api.workdir / "api-keys.json"
    for name, scopes in (("read", ["read"]), ("exchange", ["read", "invoice"])):
        keytool.create(keys_file, scopes, f"ln1-{name}", tokens / f"lightning-api-{name}.token")
    apps_conf = tmp_path / "apps1" / "etc-scnode"
    copy = apps_conf / "exchange" / "client-keys" / "lightning-api.key"
    copy.parent.mkdir(parents=True)
    copy.write_text((tokens / "lightning-api-exchange.token").read_text())
    api.start()
    try:
        inventory = write_inventory(tmp_path, conf, tokens, apps_conf, api.url)
        old_exchange = copy.read_text().strip()
        old_read = (tokens / "lightning-api-read.token").read_text().strip()
        untouched = {r["name"]: r for r in json.loads(keys_file.read_text())["keys"]}

        exchange = Traffic(api.url, lambda: copy.read_text().strip(), "/v1/node").start()
        reader = Traffic(
            api.url, lambda: (tokens / "lightning-api-read.token").read_text().strip(), "/v1/node"
        ).start()
        laggard = Traffic(api.url, lambda: old_exchange, "/v1/node").start()
        time.sleep(0.5)

        report = rotate(inventory, tmp_path, api_key_rotation_grace_period=GRACE)

        results = report["ln1.test"][rotate_task(GRACE)]["results"]
        rotated = {r["item"]["item"]["name"]: r for r in results}
        assert set(rotated) == {"ln1-read", "ln1-exchange"}
        assert all(r["changed"] for r in rotated.values())
        assert rotated["ln1-exchange"]["item"]["item"]["keys_file"] == str(keys_file)
        new_exchange = copy.read_text().strip()
        assert new_exchange != old_exchange
        assert new_exchange == (tokens / "lightning-api-exchange.token").read_text().strip()
        assert (tokens / "lightning-api-read.token").read_text().strip() != old_read
        for secret in (old_exchange, new_exchange, old_read):
            assert secret not in report["_stdout"]
        # the API's other keys are not the rotation's: the same records as before
        after = {r["name"]: r for r in json.loads(keys_file.read_text())["keys"]}
        for name in ("test-read", "test-invoice", "test-pay"):
            assert after[name] == untouched[name]

        ends = datetime.fromisoformat(rotated["ln1-exchange"]["previous_not_after"]).timestamp()
        assert ends > time.time(), report["_durations"]
        last = max(
            datetime.fromisoformat(r["previous_not_after"]).timestamp() for r in rotated.values()
        )
        time.sleep(last - time.time() + 1.0)
        laggard.finish()
        exchange.finish()
        reader.finish()
        assert set(laggard.statuses(until=ends - 0.2)) == {200}
        assert set(laggard.statuses(since=ends + 0.2)) == {401}
        with httpx.Client(base_url=api.url) as client:
            for key in (old_exchange, old_read):
                assert client.get("/v1/node", headers={"X-API-Key": key}).status_code == 401
            ok = client.get("/v1/node", headers={"X-API-Key": new_exchange})
            assert ok.status_code == 200
            # the exchange's new key still has its scope: it may create invoices
            assert "invoice" in after["ln1-exchange"]["scopes"]
        for switching in (exchange, reader):
            assert set(switching.statuses()) == {200}
            assert len(switching.answers) > 20
        assert "Traceback" not in api.log()
        print(
            f"Lightning API requests answered 200 during the rotation: exchange"
            f" {len(exchange.answers)}, reader {len(reader.answers)}"
        )
    finally:
        api.stop()
