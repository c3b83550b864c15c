"""Check the example gateway pair end to end with two XMPP clients (needs slixmpp).

    python examples/gateway/smoke.py

Logs in pilot@air.example (Prosody air, 127.0.0.2:5222) and ops@ground.example (Prosody
ground, 127.0.0.3:5222), makes them subscribe to each other, sends a message each way across
the X2X link between the two zerolink gateways, and prints what happened with timings. Exit
status 0 when everything arrived. Options: --air-port, --ground-port, --timeout.

The example Prosodys accept logins without TLS on loopback; with a certificate in certs/ the
clients use STARTTLS and accept it unverified (this is a local test, not a real client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
import time

from slixmpp import ClientXMPP


class Client(ClientXMPP):
    def __init__(self, jid: str, password: str) -> None:
        super().__init__(
            jid, password, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}}
        )
        self.enable_plaintext = True
        self.enable_direct_tls = False
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        self.auto_authorize = True  # approve the other's request, and ask back
        self.auto_subscribe = True
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m["body"]))
        # Set from the handlers, so that a session that starts while we wait for the other
        # client's is not missed (wait_until() only sees events after it is called).
        self.started = asyncio.Event()
        self.auth_failed = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("failed_all_auth", lambda _: self.auth_failed.set())

    async def logged_in(self) -> None:
        """Until the session has started; RuntimeError if the server refused the password."""
        started = asyncio.ensure_future(self.started.wait())
        failed = asyncio.ensure_future(self.auth_failed.wait())
        try:
            await asyncio.wait([started, failed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
            failed.cancel()
        if not self.started.is_set():
            raise RuntimeError(f"{self.boundjid.bare}: login refused (wrong password?)")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--air-port", type=int, default=5222)
    ap.add_argument("--ground-port", type=int, default=5222)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"{time.monotonic() - t0:6.2f}s  {text}", flush=True)

    pilot = Client("pilot@air.example/smoke", "pilot-pw")
    ops = Client("ops@ground.example/smoke", "ops-pw")
    step = ""
    try:
        async with asyncio.timeout(args.timeout):
            step = (
                f"pilot@air.example (127.0.0.2:{args.air_port}) and ops@ground.example "
                f"(127.0.0.3:{args.ground_port}) to log in"
            )
            pilot.connect("127.0.0.2", args.air_port)
            ops.connect("127.0.0.3", args.ground_port)
            await asyncio.gather(pilot.logged_in(), ops.logged_in())  # in whichever order
            for c in (pilot, ops):
                await c.get_roster()
                c.send_presence()
            say("both logged in")

            step = "both roster items to reach 'both' (subscription across the link)"
            pilot.send_presence(pto="ops@ground.example", ptype="subscribe")
            while not (
                pilot.client_roster["ops@ground.example"]["subscription"] == "both"
                and ops.client_roster["pilot@air.example"]["subscription"] == "both"
            ):
                await asyncio.sleep(0.05)
            say("subscription: both roster items at 'both'")

            step = "ops to get pilot's message"
            pilot.send_message(mto="ops@ground.example", mbody="hello ground", mtype="chat")
            say(f"ops got: {await ops.inbox.get()!r}")
            step = "pilot to get ops's message"
            ops.send_message(mto="pilot@air.example", mbody="hello air", mtype="chat")
            say(f"pilot got: {await pilot.inbox.get()!r}")
    except TimeoutError:
        say(
            f"FAILED: timed out after {args.timeout}s waiting for {step} "
            "(are all four servers running?)"
        )
        return 1
    except RuntimeError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        closing = [c.disconnect(wait=1) for c in (pilot, ops)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 3)
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
