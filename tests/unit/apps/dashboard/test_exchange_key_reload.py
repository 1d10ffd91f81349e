"""The dashboard follows its exchange key files (``SCNODE_DASHBOARD_EXCHANGE_API_KEY_FILE``,
``..._OWNER_API_KEY_FILE``, as the apps role writes them): the ``dashboard`` key that asks for
member session tokens and the ``owner`` key of the owner pages are read from their files on every
request, so a key rotated by the rotation job (new file renamed over the old, old key revoked) is
used by the very next request without a restart; a 401 re-reads the file once and repeats that
one request with its new key — never twice, and not when the file holds the refused key.

A small fake exchange on 127.0.0.1 records every request with the key it carried."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from scnode_dashboard.app import create_app
from scnode_dashboard.exchange import ExchangeClient, ExchangeError
from scnode_dashboard.owner import OwnerExchange
from scnode_dashboard.settings import DashboardSettings
from scnode_dashboard.store import OWNER, User
from tests.integration.exchange_keyreload.keyfiles import rewrite_unseen, write_key_file


def new_key() -> str:
    return f"scnk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


class FakeExchange:
    """The two routes' auth as the exchange does it: ``X-API-Key`` must be a valid key of the
    route's scope (401 otherwise). Records (route, key, acting owner, JSON body)."""

    def __init__(self) -> None:
        self.dashboard_keys: set[str] = set()
        self.owner_keys: set[str] = set()
        self.seen: list[tuple[str, str, str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/dashboard/sessions", self._session)
        app.router.add_get("/api/owner/members", self._members)
        app.router.add_post("/api/owner/members/7/freeze", self._freeze)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _record(self, request: web.Request, valid: set[str]) -> Any:
        key = request.headers.get("X-API-Key", "")
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.path, key, request.headers.get("X-Acting-Owner", ""), body))
        if key not in valid:
            raise web.HTTPUnauthorized(
                text='{"detail": "invalid API key"}', content_type="application/json"
            )
        return body

    async def _session(self, request: web.Request) -> web.Response:
        body = await self._record(request, self.dashboard_keys)
        return web.json_response(
            {"token": f"tok-{body['handle']}", "member_id": 1, "frozen": False,
             "expires_at": 4_000_000_000},
            status=201,
        )  # fmt: skip

    async def _members(self, request: web.Request) -> web.Response:
        await self._record(request, self.owner_keys)
        return web.json_response([{"id": 7, "handle": "alice"}])

    async def _freeze(self, request: web.Request) -> web.Response:
        body = await self._record(request, self.owner_keys)
        return web.json_response({"id": 7, "frozen": True, "reason": body["reason"]})

    def keys(self, path: str) -> list[str]:
        return [key for p, key, _, _ in self.seen if p == path]


def serve(scenario: Callable[[FakeExchange], Awaitable[None]]) -> FakeExchange:
    exchange = FakeExchange()

    async def main() -> None:
        await exchange.start()
        try:
            await asyncio.wait_for(scenario(exchange), 20)
        finally:
            assert exchange.runner is not None
            await exchange.runner.cleanup()

    asyncio.run(main())
    return exchange


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    dashboard, owner = tmp_path / "exchange-dashboard.token", tmp_path / "exchange-owner.token"
    dashboard.write_text(new_key() + "\n", encoding="utf-8")
    owner.write_text(new_key() + "\n", encoding="utf-8")
    return dashboard, owner


def settings_for(tmp_path: Path, url: str, dashboard: Path, owner: Path) -> DashboardSettings:
    """The settings as the apps role writes them: key files, no key in the env."""
    return DashboardSettings(
        environment="test",
        public_url="http://testserver/",
        database_path=tmp_path / "dashboard.sqlite3",
        exchange_url=url,
        exchange_api_key_file=dashboard,
        exchange_owner_api_key_file=owner,
        cookie_secure=False,
    )  # type: ignore[call-arg]  # exchange_api_key comes from its file


def olivia() -> User:
    return User(
        1, "local", None, None, "olivia", "owner:olivia", None, None, None, 0, 0, 0.0, OWNER
    )


def sessions(
    tmp_path: Path,
    key_files: tuple[Path, Path],
    script: Callable[[FakeExchange, ExchangeClient], Awaitable[None]],
) -> FakeExchange:
    """Run ``script`` with the dashboard's exchange client built from the role's settings."""

    async def scenario(ex: FakeExchange) -> None:
        settings = settings_for(tmp_path, ex.url, *key_files)
        client = ExchangeClient(settings.exchange_url, settings.exchange_key)
        try:
            await script(ex, client)
        finally:
            await client.aclose()

    return serve(scenario)


@pytest.mark.parametrize(
    ("rewrite", "asked_with"),
    [
        # renamed over the old file, as the rotation does: the next request sends the new key
        (write_key_file, ["old", "new", "new"]),
        # rewritten within one tick of the file clock: refused once, repeated with the new key
        (rewrite_unseen, ["old", "old", "new", "new"]),
    ],
)
def test_a_rotated_dashboard_key_is_used_without_a_restart(
    tmp_path: Path,
    key_files: tuple[Path, Path],
    rewrite: Callable[[Path, str], None],
    asked_with: list[str],
) -> None:
    dashboard = key_files[0]
    old, new = dashboard.read_text().strip(), new_key()

    async def script(ex: FakeExchange, client: ExchangeClient) -> None:
        ex.dashboard_keys = {old}
        assert (await client.member_token("alice")).token == "tok-alice"
        rewrite(dashboard, new)  # the rotation: new key, the old one revoked at once
        ex.dashboard_keys = {new}
        assert (await client.member_token("alice")).token == "tok-alice"
        assert (await client.member_token("bob")).token == "tok-bob"

    ex = sessions(tmp_path, key_files, script)
    names = {old: "old", new: "new"}
    assert [names[key] for key in ex.keys("/api/dashboard/sessions")] == asked_with
    # a repeated request carries the same body
    assert [body["handle"] for _, _, _, body in ex.seen] == ["alice"] * (len(asked_with) - 1) + [
        "bob"
    ]


def test_a_401_with_the_files_own_key_is_not_repeated(
    tmp_path: Path, key_files: tuple[Path, Path]
) -> None:
    key = key_files[0].read_text().strip()
    raised: list[ExchangeError] = []

    async def script(ex: FakeExchange, client: ExchangeClient) -> None:
        ex.dashboard_keys = set()  # revoked, and the file has nothing newer
        with pytest.raises(ExchangeError) as caught:
            await client.member_token("alice")
        raised.append(caught.value)

    ex = sessions(tmp_path, key_files, script)
    assert raised[0].status == 401
    assert ex.keys("/api/dashboard/sessions") == [key]


def test_the_owner_pages_follow_their_rotated_key_file(
    tmp_path: Path, key_files: tuple[Path, Path]
) -> None:
    dashboard, owner = key_files
    old, new, newer = owner.read_text().strip(), new_key(), new_key()

    async def scenario(ex: FakeExchange) -> None:
        ex.owner_keys = {old}
        settings = settings_for(tmp_path, ex.url, dashboard, owner)
        async with OwnerExchange(settings, olivia()) as page:  # one page's client
            assert await page.get("/api/owner/members") == [{"id": 7, "handle": "alice"}]
        write_key_file(owner, new)
        ex.owner_keys = {new}
        async with OwnerExchange(settings, olivia()) as page:
            assert await page.get("/api/owner/members") == [{"id": 7, "handle": "alice"}]
            # rotated again within one tick while the page works: its POST is refused once,
            # then repeated with the same body and the file's newest key
            rewrite_unseen(owner, newer)
            ex.owner_keys = {newer}
            body = {"reason": "lost phone"}
            answer = await page.call("POST", "/api/owner/members/7/freeze", json=body)
            assert answer == {"id": 7, "frozen": True, "reason": "lost phone"}

    ex = serve(scenario)
    assert ex.keys("/api/owner/members") == [old, new]
    assert [(key, who, body) for p, key, who, body in ex.seen if p.endswith("/freeze")] == [
        (new, "olivia", {"reason": "lost phone"}),
        (newer, "olivia", {"reason": "lost phone"}),
    ]
    assert {who for path, _, who, _ in ex.seen if "/owner/" in path} == {"olivia"}


def test_key_file_settings(tmp_path: Path, key_files: tuple[Path, Path]) -> None:
    dashboard, owner = key_files
    base: dict[str, Any] = {
        "environment": "test",
        "public_url": "http://testserver/",
        "database_path": tmp_path / "d.sqlite3",
        "cookie_secure": False,
    }
    # inline keys still work, fixed (no file to follow); no owner key: no owner pages
    inline = DashboardSettings(**base, exchange_api_key=SecretStr("k"))
    assert inline.exchange_key.path is None and inline.exchange_key.current() == "k"
    assert inline.exchange_owner_key is None
    # a key file is read at start: missing or empty is a settings error naming the file only
    with pytest.raises(ValidationError, match=r"API key file .*nope"):
        DashboardSettings(**base, exchange_api_key_file=tmp_path / "nope")
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ValidationError, match=r"API key file .*empty.token is empty"):
        DashboardSettings(
            **base, exchange_api_key=SecretStr("k"), exchange_owner_api_key_file=empty
        )
    # from the env file the role writes
    env = tmp_path / "settings.env"
    env.write_text(
        "SCNODE_DASHBOARD_PUBLIC_URL=https://node.example/\n"
        f"SCNODE_DASHBOARD_EXCHANGE_API_KEY_FILE={dashboard}\n"
        f"SCNODE_DASHBOARD_EXCHANGE_OWNER_API_KEY_FILE={owner}\n"
    )
    settings = DashboardSettings(_env_file=env)  # type: ignore[call-arg]
    assert settings.exchange_key.path == dashboard
    assert settings.exchange_owner_key is not None
    assert settings.exchange_owner_key.current() == owner.read_text().strip()
    assert settings.exchange_key is settings.exchange_key  # one source per process
    assert dashboard.read_text().strip() not in repr(settings.exchange_key)


def test_the_app_builds_its_exchange_client_on_the_followed_key(
    tmp_path: Path, key_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard, owner = key_files
    built: list[Any] = []

    class Recording(ExchangeClient):
        def __init__(self, base_url: str, api_key: Any, **kwargs: Any) -> None:
            built.append(api_key)
            super().__init__(base_url, api_key, **kwargs)

    monkeypatch.setattr("scnode_dashboard.app.ExchangeClient", Recording)
    settings = settings_for(tmp_path, "http://127.0.0.1:9", dashboard, owner)
    create_app(settings)
    assert built == [settings.exchange_key]
    assert built[0].path == dashboard
