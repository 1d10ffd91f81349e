"""`make lab`'s demo seeding (DESIGN §7): a living node, never on a real install.

`python -m scnode_lab demo` runs after `playbooks/site.yml` on the default lab and is idempotent
(a second run changes nothing and only prints):

1. fetches the operator keys the roles keep on the hosts (`/etc/scnode/keys/*.token`) to
   `.lab/credentials/` (git-ignored, 0600) and mints 12-hour member session tokens for the demo
   members with the exchange's own session secret (on apps.lab, never copied here);
2. creates the demo members (alice, bob, carol) through the exchange's owner API and registers
   their workers for both pools; `mallory.rig9` mines too but nobody registered it, so its
   share of a payout goes to the suspense account the owner resolves;
3. installs simnet on cluster.lab (the simulated SC Cluster) and runs the simulated miners as
   systemd units there, `scnode-demo-miners@btc` / `@azc`, hashing through the BTC (3333) and
   AZC (3336) translators on mining.lab; they keep running after `make lab` returns;
4. makes the demo owner's local account on the dashboard (`owner`, TOTP enrolled, ten recovery
   codes; password and TOTP secret generated here once and kept in
   `.lab/credentials/dashboard-owner.json`, 0600), who signs in at https://127.0.0.1:8443/ and
   lands on the owner pages; `python -m scnode_lab demo owner-code` prints the current code;
5. makes one payout of the simulated SC Cluster pool (simnet's `ClusterPool`, reading the BTC
   translator's acknowledged work from its monitoring API) as a coinbase to the node's wallet,
   matures it with 100 blocks and waits until the exchange's payout watcher has split it into
   the members' accounts.

Facts (member ids, the payout id, how fast the miners showed up) are kept in the lab's state
dir (`demo.json`, gone with `make lab-down`), and printed again by `python -m scnode_lab status`.
The one-line commands it prints are `python -m scnode_lab demo pay|mine|miners ...`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import secrets
import shlex
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scnode_lab.lab import DEFAULT_NAME, Lab
from scnode_lab.playbook import REPO
from scnode_lab.process import LabError
from scnode_lab.remote import Remote, wait_for
from simnet.cluster.pool import ClusterPool, PoolConfig

MEMBERS = ("alice", "bob", "carol")
# worker → simulated hashrate; the first part of the name is the member (mallory: nobody)
WORKERS = {"alice.rig1": "2T", "bob.rig1": "1T", "carol.rig1": "1T", "mallory.rig9": "1T"}
REGISTERED = {"alice.rig1": "alice", "bob.rig1": "bob", "carol.rig1": "carol"}
UNREGISTERED = ("mallory.rig9",)


@dataclass(frozen=True)
class Pool:
    """One translator and what hangs off it, as the lab inventory sets them up."""

    name: str  # the exchange's pool name, also the translator instance
    chain: str
    stratum_port: int
    stats_port: int
    monitoring_port: int
    miners_control_port: int  # the demo miners' control API on cluster.lab's loopback


POOLS = {
    "btc": Pool("btc", "bitcoin", 3333, 8411, 9093, 18301),
    "azc": Pool("azc", "azcoin", 3336, 8412, 9096, 18302),
}
# chain → (RPC port, chain API port): the stand-ins' control API is RPC port + 1000.
CHAINS = {"bitcoin": (8332, 8401, "bc"), "azcoin": (19332, 8402, "az")}
EXCHANGE_PORT = 8410
PAYOUT_POOL = "btc"
NODE_IDENTITY = "btc-LAB0001"  # stratum_translator_serial of the lab
HALVING_INTERVAL = 210_000
INITIAL_SUBSIDY = 50 * 100_000_000
COINBASE_MATURITY = 100

CLUSTER = "cluster"
DEMO_DIR = "/opt/scnode-lab-demo"
UNIT = "scnode-demo-miners@.service"
LOCAL = Path(os.environ.get("SCNODE_LAB_LOCAL", str(REPO / ".lab")))
CREDENTIALS = LOCAL / "credentials"
# operator keys fetched for the newcomer: host → token names
KEYS = {
    "apps": ("exchange-owner",),
    "mining": ("stratum-api-btc-read", "stratum-api-azc-read"),
    "chain": ("chain-api-bitcoin-read", "chain-api-azcoin-read"),
}


# The demo owner of the dashboard (a local account with the owner role, TOTP enrolled).
OWNER = "owner"
OWNER_FILE = "dashboard-owner.json"
DASHBOARD_URL = "https://127.0.0.1:8443"
DASHBOARD_ENV = "/etc/scnode/dashboard/settings.env"
TOTP_PERIOD = 30
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
# Run on apps.lab as scnode-dashboard (its database's owner): the owner account with the given
# password, TOTP secret and recovery codes, made when missing (or reset when asked).
_OWNER_SCRIPT = """
import json, sys
from scnode_dashboard import security
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import Store
req = json.loads(sys.stdin.read())
settings = DashboardSettings(_env_file=req["env_file"])
store = Store(settings.database_path)
try:
    user = store.local_user(req["username"])
    if user is not None and not req["reset"]:
        print("unchanged")
        sys.exit(0)
    if user is None:
        user = store.add_local_user(req["username"], security.hash_password(req["password"]),
                                    "owner:" + req["username"], "owner")
        state = "created"
    else:
        with store._tx() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                       (security.hash_password(req["password"]), user.id))
        state = "reset"
    store.set_totp_pending(user.id, req["totp_secret"])
    store.activate_totp(user.id, 0, [security.hash_recovery_code(c) for c in req["recovery_codes"]])
    print(state)
finally:
    store.close()
"""


def totp_now(secret: str, now: float | None = None) -> str:
    """The current RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    step = int((time.time() if now is None else now) // TOTP_PERIOD)
    digest = hmac.new(key, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def owner_credentials() -> dict[str, Any] | None:
    """The demo owner's sign-in (username, password, totp_secret, recovery_codes), if made."""
    try:
        data: dict[str, Any] = json.loads((CREDENTIALS / OWNER_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


@dataclass
class DemoFacts:
    """What the seeding made, for the printout and for tests."""

    members: dict[str, int] = field(default_factory=dict)  # handle → member id
    workers: dict[str, dict[str, str | None]] = field(default_factory=dict)  # pool → w → handle
    credentials_dir: str = str(CREDENTIALS)
    payout_pool: str = PAYOUT_POOL
    payout_id: str | None = None
    payout_block: str | None = None
    payout_seconds: float | None = None  # coinbase mined → split visible in the exchange
    miners_started: float | None = None  # time.time() of the last (re)start of the miners
    miners_seen_seconds: dict[str, float] = field(default_factory=dict)  # pool → s after start
    owner: str | None = None  # the demo owner's dashboard username

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DemoFacts:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _say(message: str) -> None:
    print(f"scnode-lab demo: {message}", file=sys.stderr, flush=True)


def facts_path(lab: Lab) -> Path:
    return lab.state_dir / "demo.json"


def load_facts(lab: Lab) -> DemoFacts | None:
    try:
        return DemoFacts.from_json(json.loads(facts_path(lab).read_text()))
    except FileNotFoundError:
        return None


def _save_facts(lab: Lab, facts: DemoFacts) -> None:
    path = facts_path(lab)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts.to_json(), indent=2) + "\n")
    tmp.replace(path)


class Demo:
    """The seeding steps against one running, converged lab."""

    def __init__(self, lab: Lab, say: Callable[[str], None] = _say) -> None:
        if lab.load() is None:
            raise LabError(f"lab {lab.name} is not up (python -m scnode_lab up, then site.yml)")
        self.lab = lab
        self.remote = Remote(lab)
        self.say = say
        self.facts = load_facts(lab) or DemoFacts()
        self._owner_key: str | None = None

    # ---------------------------------------------------------------- keys
    def owner_key(self) -> str:
        if self._owner_key is None:
            self._owner_key = self.remote.token("apps", "exchange-owner")
        return self._owner_key

    def owner(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{EXCHANGE_PORT}{path}"
        return self.remote.http("apps", url, self.owner_key(), method, body)

    def fetch_credentials(self) -> None:
        CREDENTIALS.mkdir(parents=True, exist_ok=True)
        CREDENTIALS.chmod(0o700)
        for host, names in KEYS.items():
            for name in names:
                _write_secret(CREDENTIALS / f"{name}.token", self.remote.token(host, name))

    def member_token(self, member_id: int) -> str:
        """A member session token signed on apps.lab with the exchange's session secret."""
        code = (
            "import sys; from pathlib import Path; "
            "from scnode_exchange.api.auth import SessionTokens; "
            "secret = Path('/etc/scnode/exchange/session.secret').read_bytes().strip(); "
            "print(SessionTokens(secret, 12 * 3600).issue(int(sys.argv[1])))"
        )
        argv = ["/opt/scnode-apps/current/bin/python", "-c", code, str(member_id)]
        return self.remote.on("apps", argv).strip()

    # ---------------------------------------------------------------- the demo owner
    def ensure_owner(self) -> str:
        """The dashboard's demo owner: made on apps.lab with the credentials kept here (new
        ones, written 0600, when there are none yet)."""
        known = owner_credentials()
        creds = known or {
            "username": OWNER,
            "password": secrets.token_urlsafe(15),
            "totp_secret": base64.b32encode(secrets.token_bytes(20)).decode(),
            "recovery_codes": [
                "-".join(
                    "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3)
                )
                for _ in range(10)
            ],
        }
        if known is None:
            CREDENTIALS.mkdir(parents=True, exist_ok=True)
            CREDENTIALS.chmod(0o700)
            _write_secret(CREDENTIALS / OWNER_FILE, json.dumps(creds, indent=2))
        request = {**creds, "reset": known is None, "env_file": DASHBOARD_ENV}
        python = "/opt/scnode-apps/current/bin/python"
        command = f"cd / && runuser -u scnode-dashboard -- {python} -c {shlex.quote(_OWNER_SCRIPT)}"
        proc = self.remote.ssh("apps", command, input_bytes=json.dumps(request).encode())
        state = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"
        if state != "unchanged":
            self.say(f"dashboard owner {creds['username']!r} {state} (TOTP enrolled)")
        self.facts.owner = str(creds["username"])
        return self.facts.owner

    # ---------------------------------------------------------------- members and workers
    def wait_exchange(self, timeout: float = 120) -> None:
        def healthy() -> bool:
            url = f"http://127.0.0.1:{EXCHANGE_PORT}/healthz"
            return self.remote.http("apps", url)[0] == 200

        wait_for("the exchange's health check on apps.lab", healthy, timeout)

    def ensure_members(self) -> dict[str, int]:
        code, rows = self.owner("GET", "/api/owner/members?limit=500")
        if code != 200:
            raise LabError(f"exchange owner API: GET members → {code} {rows}")
        by_handle = {m["handle"]: int(m["id"]) for m in rows}
        for handle in MEMBERS:
            if handle not in by_handle:
                code, body = self.owner(
                    "POST", "/api/owner/members", {"handle": handle, "reason": "lab demo member"}
                )
                if code != 201:
                    raise LabError(f"exchange owner API: creating {handle} → {code} {body}")
                by_handle[handle] = int(body["id"])
                self.say(f"member {handle} created (id {body['id']})")
        self.facts.members = {h: by_handle[h] for h in MEMBERS}
        return self.facts.members

    def ensure_workers(self) -> None:
        code, body = self.owner("GET", "/v1/owner/mining/workers")
        if code != 200:
            raise LabError(f"exchange owner API: GET workers → {code} {body}")
        have = {(w["pool"], w["name"]): w["member_id"] for w in body["workers"]}
        for pool in POOLS:
            for worker, handle in REGISTERED.items():
                member_id = self.facts.members[handle]
                if have.get((pool, worker)) == member_id:
                    continue
                request = {"member_id": member_id, "reason": "lab demo: the member's rig"}
                code, answer = self.owner(
                    "PUT", f"/v1/owner/mining/workers/{pool}/{worker}", request
                )
                if code != 200:
                    raise LabError(f"registering {pool}/{worker} → {code} {answer}")
                self.say(f"worker {pool}/{worker} registered to {handle}")
            self.facts.workers[pool] = {w: REGISTERED.get(w) for w in WORKERS}

    # ---------------------------------------------------------------- miners on cluster.lab
    def install_miners(self, restart: bool = False) -> bool:
        """simnet and the miner units on cluster.lab; True when something changed or `restart`
        was asked (then the units were restarted)."""
        bundle, digest = simnet_bundle()
        installed = self.remote.ssh(
            CLUSTER, f"cat {DEMO_DIR}/simnet.sha256 2>/dev/null; true"
        ).stdout.strip()
        changed = False
        if installed != digest:
            script = (
                f"set -e; rm -rf {DEMO_DIR}/simnet.new; mkdir -p {DEMO_DIR}/simnet.new; "
                f"tar -x -C {DEMO_DIR}/simnet.new; rm -rf {DEMO_DIR}/simnet; "
                f"mv {DEMO_DIR}/simnet.new/simnet {DEMO_DIR}/simnet; rmdir {DEMO_DIR}/simnet.new; "
                f"echo {digest} > {DEMO_DIR}/simnet.sha256"
            )
            self.remote.ssh(CLUSTER, script, input_bytes=bundle)
            changed = True
        files = {f"/etc/systemd/system/{UNIT}": unit_text()}
        mining_ip = self._ip("mining")
        for pool in POOLS.values():
            files[f"/etc/scnode-lab-demo/miners-{pool.name}.env"] = env_text(pool, mining_ip)
        for path, text in files.items():
            current = self.remote.ssh(CLUSTER, f"cat {path} 2>/dev/null; true").stdout
            if current != text:
                self.remote.ssh(
                    CLUSTER,
                    f"mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {shlex.quote(path)}",
                    input_bytes=text.encode(),
                )
                changed = True
        units = " ".join(f"scnode-demo-miners@{p}.service" for p in POOLS)
        active = self.remote.ssh(CLUSTER, f"systemctl is-active {units}", check=False).stdout
        enabled = self.remote.ssh(CLUSTER, f"systemctl is-enabled {units}", check=False).stdout
        running = set(active.split()) == {"active"} and set(enabled.split()) == {"enabled"}
        if changed or restart or not running:
            self.facts.miners_started = time.time()
            self.remote.on(
                CLUSTER,
                f"systemctl daemon-reload && systemctl enable {units} --quiet && "
                f"systemctl restart {units}",
            )
            self.say(f"miners (re)started on cluster.lab: {units}")
            return True
        return False

    def _ip(self, host: str) -> str:
        state = self.lab.load()
        assert state is not None
        return next(str(h.ip) for h in state.spec.hosts if h.name == host)

    def stats_workers(self, pool: Pool, key: str) -> dict[str, dict[str, Any]]:
        url = f"http://127.0.0.1:{pool.stats_port}/v1/stratum/workers"
        code, body = self.remote.http("mining", url, key)
        if code != 200:
            return {}
        return {w["worker"]: w for w in body["workers"]}

    def acknowledged(self, pool: Pool, key: str, start: int = 0) -> dict[str, float]:
        url = f"http://127.0.0.1:{pool.stats_port}/v1/stratum/work?start={start}"
        code, body = self.remote.http("mining", url, key)
        if code != 200:
            return {}
        work = {**body["workers"], **body["unattributed"]}
        return {name: float(w["accepted_difficulty"]) for name, w in work.items()}

    def wait_miners_seen(self, started: float, timeout: float = 120) -> dict[str, float]:
        """Seconds from the miners' start until every demo worker is connected in each pool's
        stats API."""
        seen: dict[str, float] = {}
        for pool in POOLS.values():
            key = self.remote.token("mining", f"stratum-api-{pool.name}-read")

            def connected(pool: Pool = pool, key: str = key) -> bool:
                workers = self.stats_workers(pool, key)
                return all(workers.get(w, {}).get("connected") for w in WORKERS)

            wait_for(f"the demo miners in the {pool.name} stats API", connected, timeout, 0.5)
            seen[pool.name] = round(time.time() - started, 1)
        return seen

    # ---------------------------------------------------------------- the pool payout
    def payouts(self, pool: str) -> list[dict[str, Any]]:
        code, body = self.owner("GET", f"/v1/owner/mining/payouts?pool={pool}")
        if code != 200:
            raise LabError(f"exchange owner API: GET payouts → {code} {body}")
        return list(body["payouts"])

    def chain_control(self, chain: str, call: str, body: dict[str, Any] | None = None) -> Any:
        port = CHAINS[chain][0] + 1000
        url = f"http://127.0.0.1:{port}/{call}"
        code, answer = self.remote.http(
            "chain", url, None, "POST" if body is not None else "GET", body
        )
        if code != 200:
            raise LabError(f"{chain} stand-in control /{call} → {code} {answer}")
        return answer

    def ensure_payout(self, timeout: float = 300) -> dict[str, Any]:
        """One pool payout, split by the exchange (made once per lab)."""
        pool = POOLS[PAYOUT_POOL]
        known = {str(p["id"]): p for p in self.payouts(pool.name)}
        if self.facts.payout_id in known:
            return known[self.facts.payout_id]
        ledger = self.lab.state_dir / f"demo-pool-{pool.name}.json"
        lab_pool = LabClusterPool(self, pool, ledger)
        sent = [p for p in lab_pool.ledger.payouts if p["status"] == "sent"]
        if not sent:
            key = self.remote.token("mining", f"stratum-api-{pool.name}-read")
            wait_for(
                "acknowledged share work of every demo worker",
                lambda: all(self.acknowledged(pool, key).get(w, 0) > 0 for w in WORKERS),
                timeout=180,
            )
            record = lab_pool.run_period()
            if record is None:
                raise LabError(f"the simulated pool paid nothing: {lab_pool.ledger}")
            self.say(f"the simulated SC Cluster pool paid a coinbase: block {record['block']}")
            self.chain_control(pool.chain, "mine", {"blocks": COINBASE_MATURITY})
            self.say(f"{COINBASE_MATURITY} blocks mined on {pool.chain}: the coinbase matures")
            sent = [record]
        mined_at = float(sent[-1]["time"])
        self.facts.payout_block = str(sent[-1]["block"])

        def split() -> dict[str, Any] | None:
            # other coinbases to the node's wallet (e.g. a lab play's funding) split with no
            # work; the pool's payout is the new one that has the miners' work in its window
            fresh = [
                p
                for p in self.payouts(pool.name)
                if str(p["id"]) not in known and float(p["total_work"]) > 0
            ]
            return fresh[0] if fresh else None

        payout = wait_for("the exchange's split of the mature pool payout", split, timeout)
        self.facts.payout_id = str(payout["id"])
        self.facts.payout_seconds = round(time.time() - mined_at, 1)
        self.say(f"payout {payout['id']} split: {payout['amount']} sats")
        return payout

    # ---------------------------------------------------------------- all of it
    def seed(self) -> DemoFacts:
        started = time.monotonic()
        self.wait_exchange()
        self.fetch_credentials()
        self.ensure_members()
        self.ensure_owner()
        self.ensure_workers()
        # (re)started when they changed, or once to measure how soon the stats APIs show them
        if self.install_miners(restart=not self.facts.miners_seen_seconds):
            assert self.facts.miners_started is not None
            self.facts.miners_seen_seconds = self.wait_miners_seen(self.facts.miners_started)
            self.say(f"miners seen in the stats APIs after {self.facts.miners_seen_seconds} s")
        _save_facts(self.lab, self.facts)
        self.ensure_payout()
        for handle, member_id in self.facts.members.items():
            _write_secret(CREDENTIALS / f"member-{handle}.token", self.member_token(member_id))
        _save_facts(self.lab, self.facts)
        self.say(f"seeded in {time.monotonic() - started:.0f} s")
        return self.facts


class LabClusterPool(ClusterPool):
    """simnet's cluster pool, reading the translator's monitoring API and driving the chain
    stand-in's control API over the lab's SSH (both listen on their host's loopback)."""

    def __init__(self, demo: Demo, pool: Pool, state: Path) -> None:
        self.demo = demo
        self.pool = pool

        def channels() -> list[dict[str, Any]]:
            url = (
                f"http://127.0.0.1:{pool.monitoring_port}/api/v1/server/channels?offset=0&limit=100"
            )
            code, page = demo.remote.http("mining", url)
            if code != 200:
                raise LabError(f"translator monitoring API → {code} {page}")
            return list(page["extended_channels"])

        super().__init__(self._config(), channels, state)

    def _config(self) -> PoolConfig:
        height = int(self.demo.chain_control(self.pool.chain, "status")["height"])
        subsidy = INITIAL_SUBSIDY >> ((height + 1) // HALVING_INTERVAL)
        code, answer = self.demo.remote.http(
            "chain",
            f"http://127.0.0.1:{CHAINS[self.pool.chain][1]}/v1/members/pool-payout/addresses",
            self.demo.remote.token("chain", f"chain-api-{self.pool.chain}-deposit"),
            "POST",
        )
        if code != 201:
            raise LabError(f"chain API: the node's payout address → {code} {answer}")
        return PoolConfig(
            identity=NODE_IDENTITY,
            payout_address=answer["address"],
            chain_control_url=f"ssh://chain.lab/{self.pool.chain}",
            reward_sats=subsidy,
            mode="coinbase",
            block_subsidy_sats=subsidy,
        )

    def _chain(self, call: str, body: dict[str, Any]) -> Any:
        return self.demo.chain_control(self.pool.chain, call, body)


# -------------------------------------------------------------------- files for cluster.lab
def simnet_bundle() -> tuple[bytes, str]:
    """The work tree's simnet package as a tar (sorted, no caches) and its sha256."""
    buffer = io.BytesIO()
    root = REPO / "simnet"
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            info = tarfile.TarInfo(str(path.relative_to(REPO)))
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def unit_text() -> str:
    return f"""\
# SIMULATION (lab demo, `python -m scnode_lab demo`): simnet's Stratum V1 miners hashing
# through the %i translator on mining.lab. Not part of an SC Node; never on a real install.
[Unit]
Description=SIMULATION: demo miners on the %i translator (simnet)
Wants=network-online.target
After=network-online.target

[Service]
Environment=PYTHONPATH={DEMO_DIR} PYTHONDONTWRITEBYTECODE=1
EnvironmentFile=/etc/scnode-lab-demo/miners-%i.env
ExecStart=/usr/bin/python3 -m simnet.miners --url ${{URL}} $MINERS --control ${{CONTROL}}
DynamicUser=yes
Restart=always
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def env_text(pool: Pool, mining_ip: str) -> str:
    miners = " ".join(f"--miner {worker}={rate}" for worker, rate in WORKERS.items())
    return (
        f"URL=stratum+tcp://{mining_ip}:{pool.stratum_port}\n"
        f"MINERS={miners}\n"
        f"CONTROL=127.0.0.1:{pool.miners_control_port}\n"
    )


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    path.chmod(0o600)


# -------------------------------------------------------------------- the printout
def summary(lab: Lab, facts: DemoFacts | None) -> str:
    """What a newcomer needs: URLs, credentials, one-line commands."""
    py = ".venv/bin/python -m scnode_lab"
    lines = ["", "=== the lab's SC Node (SIMULATION: simnet daemons, miners and pool) ==="]
    lines.append(
        "APIs (loopback of their host; reach them with `" + py + " ssh HOST -- curl ...`):"
    )
    lines.append(f"  exchange (owner + member API)   apps.lab     http://127.0.0.1:{EXCHANGE_PORT}")
    for chain, (_, port, _hrp) in CHAINS.items():
        lines.append(f"  chain API {chain:<21} chain.lab    http://127.0.0.1:{port}/v1/status")
    for pool in POOLS.values():
        lines.append(
            f"  stratum stats API {pool.name:<13} mining.lab   "
            f"http://127.0.0.1:{pool.stats_port}/v1/stratum/workers"
        )
    for pool in POOLS.values():
        lines.append(
            f"  stratum (SV1) {pool.name} for miners  mining.lab   stratum+tcp://"
            f"{_host_ip(lab, 'mining')}:{pool.stratum_port}"
        )
    lines.append(f"credentials (0600, git-ignored): {CREDENTIALS}/")
    lines.append(
        "  exchange-owner.token  owner API key   member-<handle>.token  12 h member sessions"
    )
    lines.append("  stratum-api-*-read.token, chain-api-*-read.token  read keys")
    owner = owner_credentials() if facts is not None and facts.owner else None
    if owner is not None:
        lines.append(
            f"owner dashboard: {DASHBOARD_URL}/login → {DASHBOARD_URL}/owner/members  "
            f"demo owner {owner['username']} / {owner['password']}"
        )
        lines.append(
            f"  TOTP code: {py} demo owner-code  (secret, recovery codes: "
            f"{CREDENTIALS}/{OWNER_FILE})"
        )
    if facts is not None and facts.members:
        members = ", ".join(f"{h} (id {i})" for h, i in facts.members.items())
        lines.append(f"demo members: {members}; mallory.rig9 mines unregistered (suspense)")
    if facts is not None and facts.payout_id:
        lines.append(
            f"pool payout {facts.payout_id} split into the members' accounts "
            f"({facts.payout_seconds} s after its coinbase)"
        )
    if facts is not None and facts.miners_seen_seconds:
        seen = ", ".join(f"{p} {s} s" for p, s in facts.miners_seen_seconds.items())
        lines.append(f"miners seen in the stats APIs after: {seen}")
    lines += [
        "try:",
        f"  {py} demo balances                  # every demo member's balances",
        f"  {py} demo pay alice 150000          # the outside world pays alice's deposit address",
        f"  {py} demo mine 1 [--chain azcoin]   # mine a block (bitcoin by default)",
        f"  {py} demo reorg 2                   # replace the last 2 blocks",
        f"  {py} demo miners stop|start         # the simulated miners (both translators)",
        f'  curl -s -H "Authorization: Bearer $(cat {CREDENTIALS}/exchange-owner.token)" ...',
        f"    → run it on the host: {py} ssh apps -- curl -s -H 'Authorization: Bearer KEY' "
        f"http://127.0.0.1:{EXCHANGE_PORT}/v1/owner/mining/payouts",
    ]
    return "\n".join(lines)


def _host_ip(lab: Lab, host: str) -> str:
    state = lab.load()
    if state is None:
        return "?"
    return next((str(h.ip) for h in state.spec.hosts if h.name == host), "?")


# -------------------------------------------------------------------- one-line commands
def command(lab: Lab, action: str, args: list[str], chain: str = "bitcoin") -> int:
    """`demo pay HANDLE SATS`, `demo mine [N]`, `demo reorg [N]`, `demo miners start|stop`,
    `demo balances`, `demo owner-code`."""
    if action == "owner-code":
        owner = owner_credentials()
        if owner is None:
            raise LabError("no demo owner yet: run `python -m scnode_lab demo` first")
        print(totp_now(str(owner["totp_secret"])))
        return 0
    demo = Demo(lab)
    if action == "mine":
        blocks = int(args[0]) if args else 1
        answer = demo.chain_control(chain, "mine", {"blocks": blocks})
        print(f"{chain}: mined {blocks} block(s), height {answer['height']}")
        return 0
    if action == "reorg":
        depth = int(args[0]) if args else 1
        answer = demo.chain_control(chain, "reorg", {"depth": depth})
        print(f"{chain}: reorg {json.dumps(answer)}")
        return 0
    if action == "miners":
        verb = args[0] if args else "status"
        if verb not in ("start", "stop", "status"):
            raise LabError("demo miners start|stop|status")
        units = " ".join(f"scnode-demo-miners@{p}.service" for p in POOLS)
        proc = demo.remote.ssh(CLUSTER, f"systemctl {verb} {units}", check=False)
        print((proc.stdout + proc.stderr).strip() or f"miners: {verb} done")
        return proc.returncode if verb != "status" else 0
    facts = demo.facts
    if not facts.members:
        raise LabError("no demo members yet: run `python -m scnode_lab demo` first")
    if action == "balances":
        for handle, member_id in facts.members.items():
            code, body = demo.owner("GET", f"/api/owner/members/{member_id}")
            shown = {b["asset"]: b["balance"] for b in body["balances"]} if code == 200 else body
            print(f"{handle:<8} {shown}")
        return 0
    if action == "pay":
        if len(args) != 2:
            raise LabError("demo pay HANDLE SATS")
        handle, sats = args[0], int(args[1])
        token = demo.member_token(facts.members[handle])
        url = f"http://127.0.0.1:{EXCHANGE_PORT}/v1/deposits/address?chain={chain}"
        code, body = demo.remote.http("apps", url, token)
        if code != 200:
            raise LabError(f"{handle}'s deposit address → {code} {body}")
        paid = demo.chain_control(chain, "pay", {"address": body["address"], "sats": sats})
        print(
            f"paid {sats} sats to {handle} ({body['address']}), txid {paid['txid']}; "
            f"credited after {body['required_confirmations']} confirmations "
            f"(`demo mine {body['required_confirmations']}` or wait for the block timer)"
        )
        return 0
    raise LabError(f"unknown demo command {action!r}")


def run_seed(name: str = DEFAULT_NAME) -> int:
    lab = Lab(name)
    facts = Demo(lab).seed()
    print(summary(lab, facts))
    return 0
