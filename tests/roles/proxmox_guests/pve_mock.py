"""A Proxmox VE API stand-in on loopback HTTPS, for the proxmox_guests role's tests.

It answers the requests the role's modules (community.proxmox via proxmoxer, and `uri`) make,
with the shapes of the PVE API (PROTOCOLS.md "Proxmox VE"): every answer wrapped in
`{"data": ...}`, API-token auth by the `PVEAPIToken=<user>!<token>=<secret>` header, container
create/start as tasks (UPIDs) that answer `status: running` a few times before `stopped` /
`exitstatus: OK`, a missing container's config as HTTP 500, a bad template as 400 "Parameter
verification failed.". Every request is recorded so a test can assert exactly what was sent.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PVE_VERSION = {"version": "9.0.10", "release": "9.0", "repoid": "deadbeef"}


@dataclass
class Request:
    method: str
    path: str  # after /api2/json
    query: dict[str, str]
    form: dict[str, str]


@dataclass
class Container:
    vmid: int
    config: dict[str, Any]
    status: str = "stopped"


@dataclass
class Task:
    node: str
    kind: str
    vmid: str
    polls_left: int
    exitstatus: str = "OK"


@dataclass
class PveMock:
    """The state of one simulated single-node PVE: templates, containers, tasks."""

    node: str = "sc-node"
    token: str = "automation@pve!ansible"
    secret: str = "00000000-0000-0000-0000-000000000000"
    templates: set[str] = field(default_factory=set)
    containers: dict[int, Container] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # how many times a task answers `running` before `stopped`
    task_polls: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self) -> int:
        """Index of the next request, to look only at what a later run sent."""
        return len(self.requests)

    def since(self, mark: int) -> list[Request]:
        return self.requests[mark:]

    def _task(self, kind: str, vmid: str, on_done: str = "") -> str:
        upid = (
            f"UPID:{self.node}:{len(self.tasks) + 0x1000:08X}:0001C3D4:6745F0A1:"
            f"{kind}:{vmid}:{self.token}:"
        )
        self.tasks[upid] = Task(self.node, kind, vmid, self.task_polls)
        return upid

    # ---------------------------------------------------------------- the API
    def handle(self, method: str, path: str, query: dict[str, str], form: dict[str, str]) -> Any:
        """The `data` of the answer, or raise ApiError."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and parts == ["version"]:
            return PVE_VERSION
        if method == "GET" and parts == ["nodes"]:
            return [{"node": self.node, "status": "online", "type": "node", "maxcpu": 4}]
        if method == "GET" and parts == ["cluster", "resources"]:
            return [
                {
                    "id": f"lxc/{c.vmid}",
                    "vmid": c.vmid,
                    "name": c.config["hostname"],
                    "node": self.node,
                    "type": "lxc",
                    "status": c.status,
                    "template": 0,
                }
                for c in self.containers.values()
            ]
        if len(parts) < 2 or parts[0] != "nodes" or parts[1] != self.node:
            raise ApiError(501, f"Method '{method} /{path}' not implemented")
        rest = parts[2:]
        if method == "GET" and len(rest) == 3 and rest[0] == "storage" and rest[2] == "content":
            return [
                {"volid": volid, "content": "vztmpl", "format": "tzst", "size": 129_000_000}
                for volid in sorted(self.templates)
                if volid.startswith(rest[1] + ":")
            ]
        if method == "POST" and rest == ["aplinfo"]:
            volid = f"{form['storage']}:vztmpl/{form['template']}"
            self.templates.add(volid)
            return self._task("download", form["template"])
        if method == "GET" and rest == ["lxc"]:
            return [
                {"vmid": c.vmid, "name": c.config["hostname"], "status": c.status, "type": "lxc"}
                for c in self.containers.values()
            ]
        if method == "POST" and rest == ["lxc"]:
            return self._create(form)
        if len(rest) >= 3 and rest[0] == "lxc":
            return self._container(method, int(rest[1]), rest[2:], form)
        if method == "GET" and len(rest) == 3 and rest[0] == "tasks":
            task = self.tasks.get(rest[1])
            if task is None:
                raise ApiError(500, "no such task")
            if rest[2:] == ["status"]:
                if task.polls_left > 0:
                    task.polls_left -= 1
                    return {"upid": rest[1], "status": "running", "type": task.kind}
                return {
                    "upid": rest[1],
                    "status": "stopped",
                    "exitstatus": task.exitstatus,
                    "type": task.kind,
                }
            if rest[2:] == ["log"]:
                return [{"n": 1, "t": f"{task.kind} {task.vmid}"}]
        raise ApiError(501, f"Method '{method} /{path}' not implemented")

    def _create(self, form: dict[str, str]) -> str:
        vmid = int(form["vmid"])
        if form.get("ostemplate") not in self.templates:
            raise ApiError(
                400,
                "Parameter verification failed.",
                {"ostemplate": f"volume '{form.get('ostemplate')}' does not exist"},
            )
        if vmid in self.containers:
            raise ApiError(500, f"CT {vmid} already exists on node '{self.node}'")
        config: dict[str, Any] = {
            "arch": "amd64",
            "ostype": "debian",
            "digest": "0" * 40,
        }
        for key, value in form.items():
            if key in ("vmid", "ostemplate", "ssh-public-keys", "password", "storage"):
                continue
            config[key] = int(value) if value.isdigit() else value
        storage, size = str(form["rootfs"]).split(":", 1)
        config["rootfs"] = f"{storage}:vm-{vmid}-disk-0,size={size}G"
        net0 = str(form.get("net0", ""))
        if net0:
            config["net0"] = f"{net0},hwaddr=BC:24:11:00:00:{vmid % 256:02X},type=veth"
        self.containers[vmid] = Container(vmid, config)
        return self._task("vzcreate", str(vmid))

    def _container(self, method: str, vmid: int, rest: list[str], form: dict[str, str]) -> Any:
        container = self.containers.get(vmid)
        if container is None:
            conf = f"nodes/{self.node}/lxc/{vmid}.conf"
            raise ApiError(500, f"Configuration file '{conf}' does not exist")
        if rest == ["config"] and method == "GET":
            return dict(container.config)
        if rest == ["config"] and method == "PUT":
            for key, value in form.items():
                if key in ("vmid", "node"):
                    continue
                container.config[key] = int(value) if value.isdigit() else value
            return None
        if rest == ["status", "current"] and method == "GET":
            return {"vmid": vmid, "status": container.status, "name": container.config["hostname"]}
        if rest == ["status", "start"] and method == "POST":
            container.status = "running"
            return self._task("vzstart", str(vmid))
        raise ApiError(501, f"Method '{method} lxc/{vmid}/{'/'.join(rest)}' not implemented")

    def authorized(self, header: str | None) -> bool:
        return header == f"PVEAPIToken={self.token}={self.secret}"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


def _handler(mock: PveMock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test asserts on mock.requests instead."""

        def _answer(self, status: int, body: dict[str, Any], reason: str | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status, reason)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            if not url.path.startswith("/api2/json/"):
                self._answer(404, {"data": None}, "not found")
                return
            path = url.path[len("/api2/json/") :]
            if path == "_mock/pct-set":
                order = json.loads(raw)
                with mock.lock:
                    mock.containers[int(order["vmid"])].config[order["key"]] = order["value"]
                self._answer(200, {"data": None})
                return
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
            with mock.lock:
                mock.requests.append(Request(self.command, path, query, form))
                if not mock.authorized(self.headers.get("Authorization")):
                    self._answer(401, {"data": None}, "invalid token value!")
                    return
                try:
                    data = mock.handle(self.command, path, query, form)
                except ApiError as error:
                    body: dict[str, Any] = {"data": None}
                    if error.errors:
                        body["errors"] = error.errors
                    self._answer(error.status, body, error.reason)
                    return
            self._answer(200, {"data": data})

        # http.server dispatches on these names
        do_GET = _serve  # noqa: N815
        do_POST = _serve  # noqa: N815
        do_PUT = _serve  # noqa: N815

    return Handler


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA): (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve-mock")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "pve-mock.pem", directory / "pve-mock.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@contextmanager
def serve(mock: PveMock, directory: Path) -> Iterator[tuple[int, Path]]:
    """Serve `mock` on https://127.0.0.1:<free port>; yields (port, CA file)."""
    cert, key = make_certificate(directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(mock))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
