"""One test host: an overlay root over the shared image, its identity written from the
machine, and systemd-nspawn booting it inside the host's network namespace."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from scnode_lab.network import NETNS_DIR
from scnode_lab.process import LabError, TrackedProcess, run, spawn_detached


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first (the order to unmount them)."""
    prefix = str(directory).rstrip("/") + "/"
    found: list[Path] = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix.rstrip("/") or point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all(directory: Path) -> None:
    for point in mounts_under(directory):
        if run(["umount", str(point)], check=False).returncode != 0:
            # Something (a shell, a lingering process) still uses it: detach it so `down`
            # completes; the kernel frees it when the last user goes.
            run(["umount", "-l", str(point)])


def mount_root(layers: Path, lower: Path) -> Path:
    """An overlayfs root for one host: shared read-only image below, own writable layer above."""
    upper, work, merged = layers / "upper", layers / "work", layers / "root"
    for directory in (upper, work, merged):
        directory.mkdir(parents=True, exist_ok=True)
    run(
        [
            "mount", "-t", "overlay", "overlay",
            "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(merged),
        ]
    )  # fmt: skip
    return merged


def write_identity(
    root: Path, hostname: str, fqdn: str, hosts_lines: Sequence[str], authorized_key: str
) -> None:
    """What makes one host distinct: machine-id, hostname, host keys, root's authorized key."""
    etc = root / "etc"
    (etc / "machine-id").unlink(missing_ok=True)
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    (etc / "machine-id").chmod(0o444)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{fqdn} {hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        "# the lab's hosts (scnode-lab)\n" + "".join(line + "\n" for line in hosts_lines)
    )
    for old in (etc / "ssh").glob("ssh_host_*"):
        old.unlink()
    run(["ssh-keygen", "-q", "-A", "-f", str(root)])
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key.strip() + "\n")
    keys.chmod(0o600)
    os.chown(ssh_dir, 0, 0)
    os.chown(keys, 0, 0)
    trust_local_cas(root)


LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def trust_local_cas(root: Path, source: Path = LOCAL_CAS) -> list[str]:
    """Make the host trust the CA certificates this machine added locally (a TLS-inspecting
    egress proxy's, a company CA), so its HTTPS to the registries works as the machine's does.

    The certificates go where `update-ca-certificates` finds them and are appended to the
    bundle it would build, so a later run of it on the host keeps them. Returns their names.
    """
    names: list[str] = []
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    if not source.is_dir() or not bundle.exists():
        return names
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    pems = []
    for cert in sorted(source.glob("*.crt")):
        text = cert.read_text()
        if "BEGIN CERTIFICATE" not in text:
            continue
        (target / cert.name).write_text(text)
        link = root / "etc/ssl/certs" / (cert.stem + ".pem")
        link.unlink(missing_ok=True)
        link.symlink_to(f"/usr/local/share/ca-certificates/{cert.name}")
        pems.append(text if text.endswith("\n") else text + "\n")
        names.append(cert.name)
    if pems:
        with open(bundle, "a") as out:
            out.write("".join(pems))
    return names


def nspawn_argv(root: Path, machine: str, hostname: str, netns: str) -> list[str]:
    return [
        "systemd-nspawn",
        "-D", str(root),
        "-M", machine,
        f"--hostname={hostname}",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={NETNS_DIR / netns}",
        "--capability=CAP_NET_ADMIN",
        "--console=read-only",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
    ]  # fmt: skip


CGROUP_PARENT = "scnode-lab"


def _cgroup_roots() -> list[Path]:
    """Mount points of the cgroup hierarchies systemd uses: cgroup2 and v1 `name=systemd`."""
    roots = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype, options = line.split()[:4]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(point))
    return roots


def cgroup_dirs(lab: str, host: str) -> list[Path]:
    """The host's own cgroups. nspawn puts its container in a `payload` group below the cgroup
    it was started in; started from the root (no systemd on this machine), every container
    would share `/payload` and their systemds would remove each other's unit cgroups."""
    return [root / CGROUP_PARENT / lab / host for root in _cgroup_roots()]


def remove_cgroups(lab: str) -> None:
    """Remove the lab's (empty, once its containers stopped) cgroups, deepest first."""
    for root in _cgroup_roots():
        top = root / CGROUP_PARENT / lab
        if not top.is_dir():
            continue
        dirs = sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for directory in [*dirs, top]:
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # its last processes are still exiting
            else:
                raise LabError(f"cgroup {directory} still has processes")


def boot(
    root: Path, machine: str, hostname: str, netns: str, cgroups: Sequence[Path], log: Path
) -> TrackedProcess:
    """Start systemd-nspawn detached in its own cgroups; its PID is what `down` stops."""
    env = dict(os.environ)
    # A pure cgroup v2 view inside: trixie boots with it, and future systemd drops v1.
    env.setdefault("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
    for directory in cgroups:
        directory.mkdir(parents=True, exist_ok=True)
    # The shell joins the cgroups, then becomes nspawn (same PID, so the recorded PID is it).
    join = "".join(f'echo $$ > "{d}/cgroup.procs" && ' for d in cgroups)
    argv = ["sh", "-c", join + 'exec "$@"', "sh", *nspawn_argv(root, machine, hostname, netns)]
    process = spawn_detached(argv, log, env)
    time.sleep(0.05)
    if not process.alive():
        raise LabError(f"systemd-nspawn for {machine} exited at once: see {log}")
    return process
