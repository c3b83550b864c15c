"""Two self-made network namespaces joined by a veth pair, for fault tests (needs root).

    with VethPair.create() as pair:           # namespaces and veth exist only inside
        pair.exec_prefix("a")                 # ["ip", "netns", "exec", NS_A]
        sock = pair.socket("b")               # a TCP socket that lives in namespace b
        pair.link("b", up=False)              # b vanishes: no FIN, no RST reaches a

Everything is created under names unique to this process and deleted on exit, even when the
test fails; deleting a namespace also deletes its end of the veth (and so the pair). Nothing
is changed in the namespace the tests run in.

`socket()` makes a socket inside a namespace without a subprocess: a short-lived thread joins
the namespace with setns(2) (per thread for network namespaces) and creates the socket there;
a socket keeps the namespace it was created in, so the test's event loop can then use it.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace or veth operation failed (message says which and why)."""


def ip(*args: str) -> str:
    """Run `ip ARGS`; NetnsError with its stderr on failure."""
    try:
        res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`ip {' '.join(args)}` could not run: {exc}") from exc
    if res.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {res.stderr.strip() or res.returncode}")
    return res.stdout


@dataclass
class VethPair:
    """Namespaces `a` and `b`, each with loopback up and one end of a veth pair."""

    ns: dict[str, str]
    dev: dict[str, str]
    addr: dict[str, str]
    prefix: int = 30

    @classmethod
    @contextmanager
    def create(cls, a_addr: str = "10.200.0.1", b_addr: str = "10.200.0.2") -> Iterator[VethPair]:
        tag = f"{os.getpid() % 100000}"
        pair = cls(
            ns={"a": f"zerolink-test-{tag}-a", "b": f"zerolink-test-{tag}-b"},
            dev={"a": f"zlt{tag}a", "b": f"zlt{tag}b"},  # interface names: 15 bytes at most
            addr={"a": a_addr, "b": b_addr},
        )
        try:
            pair._setup()
            yield pair
        finally:
            pair.destroy()

    def _setup(self) -> None:
        for side in ("a", "b"):
            ip("netns", "add", self.ns[side])
        ip("link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"])
        for side in ("a", "b"):
            ns, dev = self.ns[side], self.dev[side]
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{self.addr[side]}/{self.prefix}", "dev", dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")

    def destroy(self) -> None:
        """Delete both namespaces (and with them the veth); quiet about what is not there."""
        errors = []
        for side in ("a", "b"):
            try:
                ip("netns", "del", self.ns[side])
            except NetnsError as exc:
                if "No such file" not in str(exc):
                    errors.append(str(exc))
        # If the veth was made but never moved into a namespace, it is still here.
        subprocess.run(
            ["ip", "link", "del", self.dev["a"]], capture_output=True, timeout=10, check=False
        )
        if errors:
            raise NetnsError("; ".join(errors))

    def exec_prefix(self, side: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side]]

    def link(self, side: str, *, up: bool) -> None:
        """Bring one end of the veth down (the other end loses its carrier) or up again."""
        ip("-n", self.ns[side], "link", "set", self.dev[side], "up" if up else "down")

    def socket(self, side: str, family: int = socket.AF_INET) -> socket.socket:
        """A non-blocking TCP socket created inside namespace `side`."""
        return socket_in(self.ns[side], family)


def socket_in(ns: str, family: int = socket.AF_INET) -> socket.socket:
    out: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                out.append(sock)
            finally:
                os.close(fd)
        except BaseException as exc:  # handed to the caller's thread
            out.append(exc)

    thread = threading.Thread(target=work, name=f"setns-{ns}")
    thread.start()
    thread.join()
    result = out[0]
    if isinstance(result, BaseException):
        raise NetnsError(f"cannot make a socket in namespace {ns}: {result}") from result
    return result
