"""Command line: ``python -m discord_gateway <command>``.

Each command is one entry of ``COMMANDS`` (help text and the function that runs
it) plus, if it takes options, a function in ``ARGUMENTS`` that adds them.

Every error a user can cause (a bad option value, a port in use, a host that
does not resolve, a missing optional package, a fatal close in ``connect``)
is one line on stderr and a non-zero exit status: 2 for a bad command line,
1 for a failure while running. ``--help`` shows every default.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .fsm import mermaid_diagram


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem and where help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, not {port}")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _diagram(args: argparse.Namespace) -> int:
    sys.stdout.write(mermaid_diagram())
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=_port, default=0, help="port (0: a free one)")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve wss:// with a throwaway test CA (needs trustme: the 'test' extra)",
    )
    parser.add_argument(
        "--ca-file", help="with --tls: where to write the CA certificate (PEM) clients must trust"
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=_positive_int,
        default=41250,
        metavar="MS",
        help="HELLO's heartbeat interval, in milliseconds",
    )
    parser.add_argument(
        "--session-ttl",
        type=_seconds,
        default=120.0,
        metavar="S",
        help="how long a disconnected session stays resumable",
    )
    parser.add_argument(
        "--token", action="append", help="a token to accept (repeatable; default: a fixed one)"
    )
    parser.add_argument(
        "--no-privileged-intents",
        action="store_true",
        help="refuse privileged intents with 4014, like an app without them enabled",
    )
    parser.add_argument(
        "--no-identify-limits",
        action="store_true",
        help="accept IDENTIFYs back to back, for bots restarted often: no op 9 for a second "
        "IDENTIFY in a max_concurrency bucket within 5 s, no 4004 after 1000 sessions "
        "(default: both enforced, like Discord)",
    )
    parser.add_argument("--seed", default="0", help="seed for session ids and fault randomness")
    from .testing.profiles import PROFILES

    parser.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        metavar="NAME",
        help="behave like a server that deviates from Discord (repeatable: the deviations "
        f"add up); one of: {', '.join(sorted(PROFILES))}",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="don't log connections")


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .testing import DEFAULT_TOKEN, ServerConfig, deviations_profile, serve, tls_contexts

    if args.ca_file and not args.tls:
        return _fail("serve", "--ca-file needs --tls")
    if args.token is not None and not all(token.strip() for token in args.token):
        return _fail("serve", "--token must not be empty")
    if not args.quiet:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
        )
    try:
        config = ServerConfig(
            tokens=frozenset(args.token or [DEFAULT_TOKEN]),
            heartbeat_interval=args.heartbeat_interval / 1000,
            session_ttl=args.session_ttl,
            allowed_intents=0 if args.no_privileged_intents else ServerConfig().allowed_intents,
            enforce_identify_concurrency=not args.no_identify_limits,
            enforce_session_start_limit=not args.no_identify_limits,
        )
    except ValueError as exc:  # ServerConfig's own checks
        return _fail("serve", str(exc))
    deviations = deviations_profile(args.profile or [])
    ssl_context = None
    ca_file = None
    if args.tls:
        try:
            tls = tls_contexts()
        except ImportError:
            return _fail(
                "serve",
                "--tls needs the trustme package: pip install 'discord-gateway[test]'",
            )
        ssl_context = tls.server
        if args.ca_file:
            ca_file = args.ca_file
        else:
            import tempfile

            with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as tmp:
                ca_file = tmp.name
        try:
            with open(ca_file, "wb") as out:
                out.write(tls.ca_pem)
        except OSError as exc:
            return _fail("serve", f"cannot write the CA certificate to {ca_file}: {exc.strerror}")

    async def run() -> None:
        gateway = serve(
            config,
            host=args.host,
            port=args.port,
            ssl_context=ssl_context,
            seed=args.seed,
            deviations=deviations,
        )
        async with gateway:
            http = "https" if args.tls else "http"
            base = f"{http}://{gateway.host}:{gateway.port}"
            lines = [
                f"Local Discord gateway: {gateway.url}",
                f"  token:   {gateway.token}",
                f"  connect: {gateway.url}?v=10&encoding=json",
                f"  REST:    {base}/api/v10/gateway and /api/v10/gateway/bot "
                "(Authorization: Bot <token>)",
            ]
            if ca_file:
                lines.append(f"  CA:      {ca_file} (trust it for wss://)")
            if deviations.names:
                lines.append(f"  deviates from Discord: {', '.join(deviations.names)}")
            if args.no_identify_limits:
                lines.append("  identify limits: off (IDENTIFYs may come back to back)")
            lines.append("Serving until Ctrl-C.")
            print("\n".join(lines), flush=True)
            await gateway.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except OSError as exc:  # the port is in use, the host does not resolve or is not ours
        import errno
        import os

        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            why += " (choose another --port, or 0 for a free one)"
        return _fail("serve", f"cannot listen on {args.host}:{args.port}: {why}")
    return 0


def _fail(command: str, message: str) -> int:
    print(f"python -m discord_gateway {command}: {message}", file=sys.stderr)
    return 1


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=_seconds, default=6.0, help="how long the demo runs")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.seconds)


def _connect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--intents",
        type=_intents,
        default=513,
        help="gateway intents: a number or names joined by | (513: GUILDS|GUILD_MESSAGES)",
    )
    parser.add_argument(
        "--seconds", type=_seconds, help="stop after this many seconds (default: at Ctrl-C)"
    )
    parser.add_argument(
        "--api-base",
        default="https://discord.com/api/v10",
        help="REST base URL for GET /gateway/bot (the local server has one too)",
    )


def _intents(text: str) -> int:
    from .commands import INTENTS_LIMIT
    from .intents import Intents

    value = 0
    for part in text.split("|"):
        name = part.strip()
        if name.isdigit():
            value |= int(name)
        elif name.upper() in Intents.__members__:
            value |= Intents[name.upper()]
        else:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not an intent: give a number or names such as GUILDS|GUILD_MESSAGES"
            )
    if value >= INTENTS_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} has bits Discord does not know")
    return value


def _connect(args: argparse.Namespace) -> int:
    from .demo import run_connect

    return run_connect(intents=args.intents, seconds=args.seconds, api_base=args.api_base)


# -- cluster-demo (issue 14) --
def _cluster_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", help="a Redis URL (default: start a throwaway redis-server)")
    parser.add_argument("--shards", type=int, default=4, help="shard count (default 4)")
    parser.add_argument("--lease", type=float, default=2.0, help="lease in seconds (default 2)")


def _cluster_demo(args: argparse.Namespace) -> int:
    from .cluster.demo import run_cluster_demo

    return run_cluster_demo(args.redis, shards=args.shards, lease=args.lease)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "demo": ("run the offline demo against the embedded local gateway", _demo),
    "connect": ("connect to the real Discord gateway with DISCORD_TOKEN", _connect),
    "diagram": ("print the lifecycle state diagram (mermaid)", _diagram),
    "serve": ("run a local Discord gateway on 127.0.0.1 for offline tests", _serve),
    "cluster-demo": (
        "two gateway processes and two workers on Redis: pacing, kill -9, takeover",
        _cluster_demo,
    ),
}

#: Options of the commands that take some.
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "demo": _demo_arguments,
    "connect": _connect_arguments,
    "serve": _serve_arguments,
    "cluster-demo": _cluster_demo_arguments,
}


# --- issue 16: `ctl` drives a running `serve` over its control API ---------------------------


def _ctl_arguments(parser: argparse.ArgumentParser) -> None:
    from .testing.control import ctl_arguments

    ctl_arguments(parser)


def _ctl(args: argparse.Namespace) -> int:
    from .testing.control import ctl

    return ctl(args)


COMMANDS["ctl"] = ("drive a running local gateway: push events, inject faults, list sessions", _ctl)
ARGUMENTS["ctl"] = _ctl_arguments
# --- end of issue 16's block ---------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m discord_gateway", formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, _) in COMMANDS.items():
        command_parser = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Help
        )
        if name in ARGUMENTS:
            ARGUMENTS[name](command_parser)
    args = parser.parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    raise SystemExit(main())
