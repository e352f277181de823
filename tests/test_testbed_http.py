"""REST routes and the control API on the local gateway's port (real loopback sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

from discord_gateway import CloseDiscordConnection, DiscordConnection, Dispatch, Hello
from discord_gateway.testing import AnyToken, LocalGateway, ServerConfig, serve


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def http(
    gateway: LocalGateway,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = "default",
) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    raw = b"" if body is None else json.dumps(body).encode()
    auth = (
        ""
        if token is None
        else f"Authorization: Bot {gateway.token if token == 'default' else token}\r\n"
    )
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(raw)}\r\n\r\n".encode()
        + raw
    )
    response = await reader.read()  # the server closes after answering
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload) if payload else None


class Bot:
    """Our own connection over a socket, enough to see dispatches."""

    def __init__(self, gateway: LocalGateway) -> None:
        self.conn = DiscordConnection(gateway.url)
        self.gateway = gateway
        self.names: list[str] = []
        self.data: list[Any] = []

    async def start(self) -> None:
        host, port = self.conn.destination
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(self.conn.connect())
        self.task = asyncio.ensure_future(self._loop())
        await self.gateway.wait_for(lambda: "READY" in self.names)

    async def _loop(self) -> None:
        while data := await self.reader.read(65536):
            try:
                out = self.conn.receive(data)
            except CloseDiscordConnection:
                return
            for chunk in out:
                self.writer.write(chunk)
            for event in self.conn.events():
                if isinstance(event, Hello):
                    # GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT: guild messages with content
                    intents = 513 | 1 << 15
                    self.writer.write(self.conn.identify(token=self.gateway.token, intents=intents))
                elif isinstance(event, Dispatch):
                    self.names.append(event.name)
                    self.data.append(event.data)

    async def stop(self) -> None:
        self.task.cancel()
        self.writer.close()


def test_login_routes_answer_on_v9_and_v10_and_are_recorded() -> None:
    async def main() -> None:
        async with serve(ServerConfig(guild_ids=(5,))) as gateway:
            for version in (9, 10):
                status, me = await http(gateway, "GET", f"/api/v{version}/users/@me")
                assert status == 200 and me["id"] == gateway.world.bot["id"] and me["bot"]
            status, app = await http(gateway, "GET", "/api/v10/oauth2/applications/@me")
            assert status == 200 and app["id"] == gateway.world.bot["id"]
            assert app["owner"]["id"] == gateway.world.owner["id"]
            assert (await http(gateway, "GET", "/api/v10/applications/@me"))[0] == 200
            assert await http(gateway, "GET", "/api/v10/gateway", token=None) == (
                200,
                {"url": gateway.url},
            )
            channel = gateway.world.channel()
            status, got = await http(gateway, "GET", f"/api/v10/channels/{channel['id']}")
            assert status == 200 and got["guild_id"] == "5" and got["name"] == "general"
            status, guild = await http(gateway, "GET", "/api/v10/guilds/5")
            assert status == 200 and guild["id"] == "5" and guild["roles"][0]["name"] == "@everyone"
            assert await http(gateway, "GET", "/api/v10/guilds/6") == (
                404,
                {"message": "Unknown Guild", "code": 10004},
            )
            assert await http(gateway, "GET", "/api/v10/channels/1") == (
                404,
                {"message": "Unknown Channel", "code": 10003},
            )
            assert (await http(gateway, "GET", "/api/v10/users/@me", token=None))[0] == 401
            assert (await http(gateway, "GET", "/api/v10/users/@me", token="wrong"))[0] == 401
            assert (await http(gateway, "DELETE", "/api/v10/users/@me"))[0] == 405
            assert await http(gateway, "GET", "/api/v10/users/@me/guilds") == (
                404,
                {"message": "404: Not Found", "code": 0},
            )
            recorded = [(r.method, r.version, r.route, r.status) for r in gateway.rest.requests]
            assert recorded[:2] == [("GET", 9, "users/@me", 200), ("GET", 10, "users/@me", 200)]
            assert recorded[-1] == ("GET", 10, "users/@me/guilds", 404)
            assert gateway.connections == []  # plain HTTP is no gateway connection

    run(main())


def test_a_posted_message_is_returned_and_dispatched_to_the_bot() -> None:
    async def main() -> None:
        async with serve(ServerConfig(guild_ids=(5,), heartbeat_interval=5.0)) as gateway:
            bot = Bot(gateway)
            await bot.start()
            channel_id = gateway.world.channel()["id"]
            path = f"/api/v10/channels/{channel_id}/messages"
            assert (await http(gateway, "POST", path, {"content": ""}))[0] == 400
            status, message = await http(gateway, "POST", path, {"content": "pong", "nonce": "7"})
            assert status == 200 and message["content"] == "pong" and message["nonce"] == "7"
            assert message["author"]["id"] == gateway.world.bot["id"]
            await gateway.wait_for(lambda: "MESSAGE_CREATE" in bot.names)
            assert gateway.rest.requests[-1].json == {"content": "pong", "nonce": "7"}
            status, reply = await http(
                gateway,
                "POST",
                path,
                {"content": "re", "message_reference": {"message_id": message["id"]}},
            )
            assert reply["type"] == 19 and reply["referenced_message"]["id"] == message["id"]
            assert gateway.world.channel()["last_message_id"] == reply["id"]
            await bot.stop()

    run(main())


def test_any_token_is_accepted_when_asked() -> None:
    async def main() -> None:
        async with serve(ServerConfig(tokens=AnyToken())) as gateway:
            assert (await http(gateway, "GET", "/api/v10/users/@me", token="whatever"))[0] == 200
            assert (await http(gateway, "GET", "/api/v10/users/@me", token=""))[0] == 401
            assert gateway.token.count(".") == 2

    run(main())


def test_control_api_pushes_injects_and_lists() -> None:
    async def main() -> None:
        async with serve(ServerConfig(guild_ids=(5,), heartbeat_interval=5.0)) as gateway:
            waiting = asyncio.ensure_future(http(gateway, "GET", "/control/wait-ready?timeout=5"))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            bot = Bot(gateway)
            await bot.start()
            assert await waiting == (200, {"ready": True})
            status, pushed = await http(gateway, "POST", "/control/push/message", {"content": "hi"})
            assert status == 200 and pushed["name"] == "MESSAGE_CREATE" and pushed["seqs"]
            status, raw = await http(
                gateway, "POST", "/control/dispatch", {"name": "X_EVENT", "data": {"a": 1}}
            )
            assert status == 200 and len(raw["seqs"]) == 1
            await gateway.wait_for(lambda: "X_EVENT" in bot.names)
            assert bot.data[bot.names.index("MESSAGE_CREATE")]["content"] == "hi"
            status, sessions = await http(gateway, "GET", "/control/sessions")
            assert status == 200 and sessions[0]["connected"] and sessions[0]["connection"] == 1
            status, connections = await http(gateway, "GET", "/control/connections")
            assert [c["index"] for c in connections] == [1]  # control requests are not counted
            assert (await http(gateway, "POST", "/control/fault", {"fault": "nope"}))[0] == 400
            assert (await http(gateway, "POST", "/control/push/nope", {}))[0] == 400
            status, done = await http(
                gateway, "POST", "/control/fault", {"fault": "close", "code": 4000}
            )
            assert status == 200 and done["connection"] == 1
            await gateway.wait_for(lambda: gateway.connections[0].close_code == 4000)
            status, requests = await http(gateway, "GET", "/control/requests")
            assert status == 200 and requests == []  # control calls are not REST requests
            await bot.stop()

    run(main())


def test_control_api_refuses_what_it_cannot_do() -> None:
    async def main() -> None:
        async with serve(ServerConfig(guild_ids=(5,))) as gateway:
            status, body = await http(gateway, "GET", "/control/wait-ready?timeout=0.05")
            assert status == 408 and "no READY" in body["message"]
            assert (
                await http(gateway, "POST", "/control/fault", {"fault": "reset", "connection": 3})
            )[0] == 400
            assert (await http(gateway, "POST", "/control/dispatch", {"data": {}}))[0] == 400
            assert (await http(gateway, "POST", "/control/dispatch", [1]))[0] == 400
            assert (await http(gateway, "GET", "/control/nope"))[0] == 404
            assert (await http(gateway, "GET", "/elsewhere"))[0] == 404  # not under /api

    run(main())


def test_rest_answers_are_complete_http_responses_and_a_huge_body_is_refused() -> None:
    async def exchange(gateway: LocalGateway, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
        writer.write(request)
        answer = await reader.read()  # the server closes after answering
        writer.close()
        return answer

    async def main() -> None:
        async with serve() as gateway:
            answer = await exchange(gateway, b"GET /api/v10/gateway HTTP/1.1\r\nHost: x\r\n\r\n")
            body = json.dumps({"url": gateway.url}, separators=(",", ":")).encode()
            assert answer == (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            huge = (
                b"POST /api/v10/channels/1/messages HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 99999999\r\n\r\n"
            )
            head, _, body = (await exchange(gateway, huge)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 Payload Too Large\r\n"), head
            assert json.loads(body) == {"message": "Request entity too large", "code": 0}
            # the huge one was refused before it reached the routes
            assert [r.route for r in gateway.rest.requests] == ["gateway"]

    run(main())
