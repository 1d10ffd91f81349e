"""Run the member dashboard: ``python -m scnode_dashboard --env-file FILE``.

``python -m scnode_dashboard --env-file FILE add-local-user USERNAME MEMBER_HANDLE`` adds a
local account (a node without BTCofAZ); ``add-local-user --owner USERNAME`` adds an owner
account (the ``/owner`` pages, no exchange member). The password is read from standard input.
"""

from __future__ import annotations

import re
import sys

from scnode_core import cli
from scnode_dashboard.settings import DashboardSettings


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("scnode-dashboard", __doc__, "SCNODE_DASHBOARD_")
    cli.add_listen_arguments(parser, 8430)
    commands = parser.add_subparsers(dest="command")
    add = commands.add_parser("add-local-user", help="add a local account (password on stdin)")
    add.add_argument("username")
    add.add_argument("member_handle", nargs="?", help="the member's exchange handle")
    add.add_argument("--owner", action="store_true", help="the node's owner (no member handle)")
    args = parser.parse_args(argv)
    if args.command == "add-local-user" and args.owner == (args.member_handle is not None):
        parser.error("add-local-user needs a MEMBER_HANDLE, or --owner without one")
    cli.setup_logging(args.log_level)
    settings = cli.load_settings(DashboardSettings, args.env_file)
    if settings is None:
        return 2
    if args.command == "add-local-user":
        if args.owner:
            if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,48}", args.username):
                print("owner username: 1-48 letters, digits and _.@+-", file=sys.stderr)
                return 2
            return _add_local_user(settings, args.username, f"owner:{args.username}", "owner")
        return _add_local_user(settings, args.username, args.member_handle)
    from scnode_dashboard.app import create_app

    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    cli.serve(app, args.host, args.port, args.log_level)
    return 0


def _add_local_user(
    settings: DashboardSettings, username: str, handle: str, role: str = "member"
) -> int:
    from scnode_dashboard.security import hash_password
    from scnode_dashboard.store import Store

    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("password: at least 12 characters", file=sys.stderr)
        return 2
    store = Store(settings.database_path)
    try:
        if store.local_user(username) is not None or store.user_by_handle(handle) is not None:
            print(f"{username!r} or member {handle!r} already has an account", file=sys.stderr)
            return 1
        store.add_local_user(username, hash_password(password), handle, role)
    finally:
        store.close()
    what = "owner" if role == "owner" else f"member {handle!r}"
    print(f"local account {username!r} -> {what} added (TOTP set up at first sign-in)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
