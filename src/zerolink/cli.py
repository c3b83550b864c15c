"""The `zerolink` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from zerolink import __version__
from zerolink.errors import ConfigError

log = logging.getLogger("zerolink")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(path: str):
    from zerolink.config import load_config

    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    from zerolink.config import summary, warnings_for

    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(summary(cfg))
    for warning in warnings_for(cfg):
        print(f"warning: {warning}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    _setup_logging(args.log_level or cfg.server.log_level)
    try:
        asyncio.run(_serve(cfg))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


async def _serve(cfg) -> None:
    from zerolink.app import Server

    server = Server(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("stopping")
    await server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerolink",
        description="XMPP server for constrained links (XEP-0361 zero-handshake S2S).",
    )
    parser.add_argument("--version", action="version", version=f"zerolink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the server")
    run.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="override server.log_level",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", help="configuration file (TOML)")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
