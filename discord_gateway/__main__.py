"""Command line: ``python -m discord_gateway <command>``.

Each command is one entry of ``COMMANDS`` (help text and the function that runs
it) plus, if it takes options, a function in ``ARGUMENTS`` that adds them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .fsm import mermaid_diagram


def _diagram(args: argparse.Namespace) -> int:
    sys.stdout.write(mermaid_diagram())
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--tls", action="store_true", help="serve wss:// with a throwaway test CA (needs trustme)"
    )
    parser.add_argument(
        "--ca-file", help="with --tls: where to write the CA certificate (PEM) clients must trust"
    )
    parser.add_argument(
        "--heartbeat-interval", type=int, default=41250, metavar="MS", help="HELLO's interval"
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
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

    if not args.quiet:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
        )
    config = ServerConfig(
        tokens=frozenset(args.token or [DEFAULT_TOKEN]),
        heartbeat_interval=args.heartbeat_interval / 1000,
        session_ttl=args.session_ttl,
        allowed_intents=0 if args.no_privileged_intents else ServerConfig().allowed_intents,
    )
    deviations = deviations_profile(args.profile or [])
    ssl_context = None
    ca_file = None
    if args.tls:
        tls = tls_contexts()
        ssl_context = tls.server
        if args.ca_file:
            ca_file = args.ca_file
        else:
            import tempfile

            with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as tmp:
                ca_file = tmp.name
        with open(ca_file, "wb") as out:
            out.write(tls.ca_pem)

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
            lines.append("Serving until Ctrl-C.")
            print("\n".join(lines), flush=True)
            await gateway.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="how long the demo runs (default 6)"
    )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.seconds)


def _connect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--intents", type=int, default=513, help="gateway intents (default 513: GUILDS|MESSAGES)"
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument(
        "--api-base",
        default="https://discord.com/api/v10",
        help="REST base URL for GET /gateway/bot (the local server has one too)",
    )


def _connect(args: argparse.Namespace) -> int:
    from .demo import run_connect

    return run_connect(intents=args.intents, seconds=args.seconds, api_base=args.api_base)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "demo": ("run the offline demo against the embedded local gateway", _demo),
    "connect": ("connect to the real Discord gateway with DISCORD_TOKEN", _connect),
    "diagram": ("print the lifecycle state diagram (mermaid)", _diagram),
    "serve": ("run a local Discord gateway on 127.0.0.1 for offline tests", _serve),
}

#: Options of the commands that take some.
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "demo": _demo_arguments,
    "connect": _connect_arguments,
    "serve": _serve_arguments,
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
    parser = argparse.ArgumentParser(prog="python -m discord_gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name in ARGUMENTS:
            ARGUMENTS[name](command_parser)
    args = parser.parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    raise SystemExit(main())
