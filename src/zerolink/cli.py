"""The `zerolink` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from zerolink import __version__
from zerolink.errors import ConfigError

log = logging.getLogger("zerolink")


def _setup_logging(level: str) -> None:
    from zerolink.logs import make_handler

    # One line per message, whatever a peer put in it (zerolink.logs).
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), handlers=[make_handler(sys.stderr)]
    )


def reopen_log_files() -> int:
    """Reopen the files that logging writes to (after logrotate moved them); how many."""
    count = 0
    handlers = {*logging.getLogger().handlers, *logging.getLogger("zerolink").handlers}
    for handler in handlers:
        if isinstance(handler, logging.FileHandler):
            old = handler.setStream(handler._open())
            if old is not None:
                old.close()
            count += 1
    return count


def _on_sighup() -> None:
    """SIGHUP, the daemon convention for "reload": until the configuration can be reloaded,
    reopen the log files and say so; never stop."""
    n = reopen_log_files()
    text = "configuration reload is not supported (restart to apply changes)"
    if n:  # logrotate's postrotate: routine
        log.info("SIGHUP: reopened %d log file(s); %s", n, text)
    else:  # nothing to reopen: whoever sent it probably expected a reload
        log.warning("SIGHUP: no log file to reopen (logging to stderr); %s", text)


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
    from zerolink.app import StartupError

    try:
        asyncio.run(_serve(cfg))
    except (OSError, StartupError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


async def _serve(cfg) -> None:
    from zerolink.app import Server
    from zerolink.logs import flush_repeats
    from zerolink.net import process

    loop = asyncio.get_running_loop()
    process.install(loop)
    before, after = process.raise_fd_limit()
    if after > before:
        log.debug("open-file limit raised from %d to %d", before, after)
    server = Server(cfg)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _on_sighup)
    await server.start()

    async def summaries() -> None:  # "... N more like this" lines of rate-limited logs
        while True:
            await asyncio.sleep(60)
            flush_repeats()

    task = asyncio.create_task(summaries())
    await stop.wait()
    task.cancel()
    log.info("stopping")
    await server.stop()
    flush_repeats(everything=True)


def cmd_user(args: argparse.Namespace) -> int:
    """`zerolink user -c FILE add|passwd|delete|list`."""
    from zerolink import users
    from zerolink.store import AccountStore, StoreError

    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if cfg.host is None:
        print(
            f"error: {args.config} hosts no users: accounts belong to the embedded host, "
            "configured in a [host] table",
            file=sys.stderr,
        )
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


def cmd_gen_cert(args: argparse.Namespace) -> int:
    """`zerolink gen-cert DOMAIN... --out DIR` or `zerolink gen-cert --ca-only --out DIR`."""
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from zerolink import certgen, pins

    def fail(text: str) -> int:
        print(f"error: {text}", file=sys.stderr)
        return 1

    if args.days is not None and args.days <= 0:
        return fail("--days must be a positive number of days")
    if args.ca_only:
        if args.domains:
            return fail("--ca-only makes a CA and takes no DOMAIN")
        if args.ca or args.ca_key:
            return fail("--ca-only makes a new CA; it cannot use --ca/--ca-key")
    elif not args.domains:
        return fail("give at least one DOMAIN, or --ca-only to make a CA")
    if bool(args.ca) != bool(args.ca_key):
        return fail("--ca and --ca-key go together (the CA certificate and its private key)")

    try:
        if args.ca_only:
            stem = args.name or "ca"
            cert_pem, key_pem = certgen.generate_ca(days=args.days or 3650)
        else:
            stem = args.name or certgen.default_stem(args.domains[0])
            ca: dict[str, bytes] = {}
            for opt, path in (("ca_cert_pem", args.ca), ("ca_key_pem", args.ca_key)):
                if path:
                    try:
                        ca[opt] = Path(path).read_bytes()
                    except OSError as exc:
                        return fail(f"cannot read {path}: {exc.strerror or exc}")
            cert_pem, key_pem = certgen.generate_cert(args.domains, days=args.days or 825, **ca)
        cert_path, key_path = certgen.write_pair(
            Path(args.out), stem, cert_pem, key_pem, force=args.force
        )
    except certgen.CertGenError as exc:
        return fail(str(exc))
    except FileExistsError as exc:
        return fail(f"{exc} (use --force to replace)")
    except OSError as exc:
        return fail(f"cannot write to {args.out}: {exc.strerror or exc}")

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    print(f"certificate: {cert_path}")
    print(f"key:         {key_path} (mode 0600, keep it secret)")
    if args.ca_only:
        print(f"CA fingerprint: {pins.cert_pin(der)}")
        print(
            f"sign with: zerolink gen-cert DOMAIN --ca {cert_path} --ca-key {key_path} "
            f"--out {args.out}"
        )
    else:
        print("pins for the peer's configuration (either one):")
        print(f"  public key (SPKI): {pins.spki_pin(der)}")
        print(f"  certificate:       {pins.cert_pin(der)}")
    return 0


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

    gen = sub.add_parser(
        "gen-cert",
        help="make an ECDSA P-256 certificate and key for mutual TLS, or a test CA",
        description="Write STEM.pem and STEM.key (a certificate naming each DOMAIN as dNSName "
        "and XmppAddr, for TLS client and server use; self-signed, or signed by --ca) and "
        "print the pins to put in the peer's configuration. With --ca-only, write a CA.",
    )
    gen.add_argument("domains", nargs="*", metavar="DOMAIN", help="domains the certificate names")
    gen.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    gen.add_argument("--ca", metavar="CA.pem", help="sign with this CA certificate")
    gen.add_argument("--ca-key", metavar="CA.key", help="the CA's private key (with --ca)")
    gen.add_argument("--ca-only", action="store_true", help="make a CA instead (ca.pem, ca.key)")
    gen.add_argument(
        "--name",
        metavar="STEM",
        help="file name stem (default: the first DOMAIN's first label, or 'ca')",
    )
    gen.add_argument("--days", type=int, help="validity in days (default: 825, or 3650 for a CA)")
    gen.add_argument("--force", action="store_true", help="replace existing files")
    gen.set_defaults(func=cmd_gen_cert)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`zerolink check-config FILE | head`): stop quietly. stdout
        # now points at /dev/null so that the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
