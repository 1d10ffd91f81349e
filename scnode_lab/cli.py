"""`python -m scnode_lab image|up|down|status|ssh|inventory|demo`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict

from scnode_lab import demo, forward, image, mirror
from scnode_lab.lab import DEFAULT_NAME, DEFAULT_SUBNET, Lab, lab_spec, running_labs
from scnode_lab.process import LabError
from scnode_lab.settings import LabPaths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scnode_lab",
        description="Debian trixie test hosts: systemd-nspawn containers in network namespaces.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("image", help="build the cached image if its package list changed")
    build.add_argument("--rebuild", action="store_true", help="build even if cached")
    build.add_argument("--key", action="store_true", help="print the image key and exit")

    up = sub.add_parser("up", help="start a lab (idempotent); ready when SSH answers")
    up.add_argument("--name", default=DEFAULT_NAME)
    up.add_argument("--subnet", default=str(DEFAULT_SUBNET))
    up.add_argument(
        "--hosts",
        help="name=ip,... (ip: address or host number; a bare name takes the next from .11); "
        "default: cluster=2,chain=11,lightning=12,mining=13,apps=14",
    )
    up.add_argument("--timeout", type=float, default=90, help="seconds to wait for SSH")

    down = sub.add_parser("down", help="remove a lab: processes, mounts, namespaces, layers")
    down.add_argument("--name", default=DEFAULT_NAME)
    down.add_argument("--all", action="store_true", help="every lab on this machine")

    status = sub.add_parser("status", help="what is up and where; exit 1 unless all healthy")
    status.add_argument("--name", default=DEFAULT_NAME)
    status.add_argument("--all", action="store_true", help="every lab on this machine")
    status.add_argument("--json", action="store_true")

    ssh = sub.add_parser("ssh", help="run a command on (or log in to) a lab host")
    ssh.add_argument("--name", default=DEFAULT_NAME)
    ssh.add_argument("host")
    ssh.add_argument("remote", nargs=argparse.REMAINDER)

    inv = sub.add_parser("inventory", help="print the path of a lab's Ansible inventory")
    inv.add_argument("--name", default=DEFAULT_NAME)

    seed = sub.add_parser(
        "demo",
        help="seed the converged lab with demo data (make lab), or drive it: "
        "pay HANDLE SATS | mine [N] | reorg [N] | miners start|stop|status | balances | show"
        " | owner-code",
    )
    seed.add_argument("--name", default=DEFAULT_NAME)
    seed.add_argument("--chain", choices=sorted(demo.CHAINS), default="bitcoin")
    seed.add_argument("action", nargs="?", default="seed")
    seed.add_argument("args", nargs="*")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    paths = LabPaths.from_env()
    try:
        return _dispatch(args, paths)
    except LabError as error:
        print(f"scnode-lab: error: {error}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, paths: LabPaths) -> int:
    if args.command == "image":
        if args.key:
            print(image.image_for(paths).key)
            return 0
        built = image.ensure_image(paths, rebuild=args.rebuild)
        print(built.tarball)
        return 0
    if args.command == "up":
        spec = lab_spec(args.name, args.subnet, args.hosts)
        lab = Lab(args.name, paths)
        state = lab.up(spec, timeout=args.timeout)
        if lab.name == DEFAULT_NAME:
            hosts = {h.name: h.ip for h in state.spec.hosts}
            print(forward.ensure(lab.name, lab.state_dir, hosts), file=sys.stderr)
        print(lab.inventory_path)
        return 0
    if args.command == "down":
        labs = running_labs(paths) if args.all else [Lab(args.name, paths)]
        for lab in labs:
            forward.stop(lab.state_dir)
            if not lab.down():
                print(f"scnode-lab: lab {lab.name} is not up", file=sys.stderr)
        return 0
    if args.command == "status":
        return _status(paths, None if args.all else args.name, as_json=args.json)
    if args.command == "ssh":
        lab = Lab(args.name, paths)
        remote = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
        # Like ssh itself: the words are joined into one remote shell command.
        argv = lab.ssh(args.host, " ".join(remote))
        if not remote:
            # An interactive login: no remote command, and a terminal.
            argv = [argv[0], "-t", *argv[1:-1]]
        return subprocess.call(argv)
    if args.command == "inventory":
        lab = Lab(args.name, paths)
        if lab.load() is None:
            raise LabError(f"lab {args.name} is not up")
        print(lab.inventory_path)
        return 0
    if args.command == "demo":
        if args.action == "seed":
            return demo.run_seed(args.name)
        lab = Lab(args.name, paths)
        if args.action == "show":
            print(demo.summary(lab, demo.load_facts(lab)))
            return 0
        return demo.command(lab, args.action, args.args, args.chain)
    raise LabError(f"unknown command {args.command}")


def _status(paths: LabPaths, name: str | None, *, as_json: bool) -> int:
    labs = [Lab(name, paths)] if name else running_labs(paths)
    report = []
    healthy = True
    for lab in labs:
        state = lab.load()
        if state is None:
            report.append({"name": lab.name, "up": False, "hosts": []})
            healthy = False
            continue
        hosts = lab.status()
        forwarding = forward.running(lab.state_dir)
        healthy = healthy and all(h.running and h.ssh for h in hosts)
        report.append(
            {
                "name": lab.name,
                "up": True,
                "subnet": str(state.spec.subnet),
                "inventory": str(lab.inventory_path),
                "mirror": (mirror.info(lab.state_dir) or {}).get("url"),
                "forwards": forward.describe(lab.state_dir) if forwarding else "",
                "sign_in": forward.demo_logins(lab) if forwarding else [],
                "hosts": [asdict(h) for h in hosts],
            }
        )
    if as_json:
        print(json.dumps(report, indent=2))
    elif not report:
        print("no lab is up (python -m scnode_lab up)")
    for lab_report in [] if as_json else report:
        _print_lab(lab_report)
        lab = Lab(str(lab_report["name"]), paths)
        facts = demo.load_facts(lab) if lab_report["up"] else None
        if facts is not None:
            print(demo.summary(lab, facts))
    return 0 if healthy and report else 1


def _print_lab(lab: dict[str, object]) -> None:
    if not lab["up"]:
        print(f"lab {lab['name']}: not up")
        return
    print(f"lab {lab['name']} on {lab['subnet']} — inventory {lab['inventory']}")
    print(f"  {'host':<12} {'address':<15} {'running':<8} {'ssh':<5} {'systemd':<12} RAM (PSS)")
    hosts = lab["hosts"]
    assert isinstance(hosts, list)
    for host in hosts:
        pss = "-" if host["pss_mib"] is None else f"{host['pss_mib']:.0f} MiB"
        print(
            f"  {host['name']:<12} {host['ip']:<15} {'yes' if host['running'] else 'NO':<8} "
            f"{'yes' if host['ssh'] else 'NO':<5} {host['system_state']:<12} {pss}"
        )
    print(f"  log in: python -m scnode_lab ssh --name {lab['name']} <host>")
    if lab.get("mirror"):
        print(f"  release mirror (SIMULATION archives): {lab['mirror']} inside the lab")
    if lab.get("forwards"):
        print("  on this machine (the dashboard's certificate is self-signed):")
        for line in str(lab["forwards"]).splitlines():
            print(f"    {line}")
    sign_in = lab.get("sign_in")
    if isinstance(sign_in, list) and sign_in:
        print("  demo members sign in with BTCofAZ (SIMULATION) as:")
        for login in sign_in:
            print(f"    {login['login']} / {login['password']}")
