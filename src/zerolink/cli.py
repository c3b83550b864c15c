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


def cmd_user(args: argparse.Namespace) -> int:
    """`zerolink user -c FILE add|passwd|delete|list`."""
    from zerolink import users
    from zerolink.store import AccountStore, StoreError

    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        db = users.open_database(cfg)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    store = AccountStore(db)
    try:
        if args.action == "list":
            for local, domain in store.list(args.domain):
                print(f"{local}@{domain}")
            return 0
        jid = users.hosted_jid(cfg, args.jid)
        if args.action == "delete":
            users.delete_user(store, jid)
            print(f"deleted {jid}")
            return 0
        password = args.password
        if password is None:
            password = _prompt_password(str(jid))
        if args.action == "add":
            users.add_user(store, jid, password)
            print(f"created {jid}")
        else:
            users.set_password(store, jid, password)
            print(f"password of {jid} changed")
        return 0
    except (users.UserError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _prompt_password(jid: str) -> str:
    import getpass

    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n")
    first = getpass.getpass(f"password for {jid}: ")
    if getpass.getpass("again: ") != first:
        from zerolink.users import UserError

        raise UserError("the passwords do not match")
    return first


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zerolink.demo import demo

    _setup_logging(args.log_level)
    if args.rtt < 0 or (args.rate is not None and args.rate <= 0):
        print("error: --rtt must be >= 0 and --rate > 0", file=sys.stderr)
        return 1
    try:
        return asyncio.run(demo(Path(args.dir), rtt=args.rtt, rate=args.rate))
    except OSError as exc:
        log.error("cannot start the demo: %s", exc)
        return 1


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

    user = sub.add_parser("user", help="manage accounts of the hosted domains")
    user.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    actions = user.add_subparsers(dest="action", required=True)
    for name, text in (("add", "create an account"), ("passwd", "change a password")):
        p = actions.add_parser(name, help=text)
        p.add_argument("jid", help="bare JID, e.g. pilot@air.example")
        p.add_argument(
            "--password", help="the password (prompted for, or read from stdin, when omitted)"
        )
    p = actions.add_parser("delete", help="delete an account with its roster and offline messages")
    p.add_argument("jid")
    p = actions.add_parser("list", help="list accounts")
    p.add_argument("domain", nargs="?", help="only this domain")
    user.set_defaults(func=cmd_user)

    demo = sub.add_parser(
        "demo", help="run an air and a ground server with users, no other XMPP server needed"
    )
    demo.add_argument(
        "--dir",
        default="zerolink-demo",
        help="where the demo keeps its data (default: ./zerolink-demo)",
    )
    demo.add_argument(
        "--rtt", type=float, default=0.0, help="emulated round-trip time of the X2X link in seconds"
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=None,
        help="emulated bit rate of the X2X link in bit/s, each way",
    )
    demo.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
