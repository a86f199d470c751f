"""Reloads: a SIGHUP every few seconds with one key of each service toggled,
each checked to have applied."""

import asyncio
import collections
import os
import signal
import time

from .chat import CUT
from .common import RELOAD_CHECK_SOURCE, Conn
from .json_echo import is_error

RELOAD_EVERY = 5.0


class Reloader:
    """A SIGHUP every RELOAD_EVERY seconds, with one key of each service
    toggled; each reload is checked to have applied."""

    def __init__(self, soak, daemon, notify, probe, discovery, announcements):
        self.soak, self.daemon, self.notify = soak, daemon, notify
        self.probe, self.discovery, self.announcements = probe, discovery, announcements
        self.sent = 0
        self.confirmed = 0
        self.checks = collections.Counter()

    async def run(self):
        toggle = 0
        while self.soak.running:
            await asyncio.sleep(RELOAD_EVERY)
            if not self.soak.running:
                return
            toggle ^= 1
            self.daemon.write_config(toggle)
            before = self.notify.ready
            os.kill(self.daemon.proc.pid, signal.SIGHUP)
            self.sent += 1
            if not await self.notify.wait_ready(before, 10):
                self.soak.fail("reload unconfirmed", "reload: no READY=1 within 10 s of SIGHUP")
                continue
            self.confirmed += 1
            await self.check_chat(4096 + toggle)
            await self.check_json(65536 + toggle)
            await self.check_ttl(3 * (1 + toggle))

    async def check_chat(self, limit):
        """A chat client connected since the start is cut at the new max_line_bytes."""
        since = self.probe.conn.count
        await self.probe.conn.send(b"q" * 5000 + b"\n")
        got = await self.probe.conn.wait_line(lambda l: CUT.match(l) is not None, 10, since)
        if got is None or int(CUT.match(got).group(1)) != limit:
            self.soak.fail("reload chat", f"reload: a connected chat client was cut by {got!r}, "
                           f"expected the new max_line_bytes {limit}")
        else:
            self.checks["chat max_line_bytes applied to a connected client"] += 1

    async def check_json(self, limit):
        """A new JSON connection takes the new max_message_bytes: a 65537-byte value fits only 65537."""
        conn = await Conn.open(self.daemon.addrs["json_echo"], RELOAD_CHECK_SOURCE)
        try:
            value = b'"' + b"a" * 65535 + b'"'
            await conn.send(value)
            got = await conn.wait_line(lambda l: True, 10)
            fits = limit >= len(value)
            if fits and got == value + b"\n":
                self.checks["json max_message_bytes applied (value fits)"] += 1
            elif not fits and got is not None and is_error(got, f"({limit})"):
                self.checks["json max_message_bytes applied (value refused)"] += 1
            else:
                self.soak.fail("reload json", f"reload: with max_message_bytes {limit}, a "
                               f"{len(value)}-byte value got {(got or b'')[:100]!r}")
        finally:
            conn.abort()

    async def check_ttl(self, ttl):
        """Discovery replies, and announcements from now on, carry the new ttl."""
        desc = await self.discovery.probe(RELOAD_CHECK_SOURCE)
        if desc is None or desc.get("ttl") != ttl:
            self.soak.fail("reload discovery ttl", f"reload: discovery answered {desc!r}, expected ttl {ttl}")
        else:
            self.checks["discovery ttl follows the announcer's interval"] += 1
        confirmed = time.monotonic()
        for _ in range(40):
            heard = [t for at, t in self.announcements.heard if at > confirmed]
            if heard:
                if heard[0] != ttl:
                    self.soak.fail("reload announcer ttl", f"reload: announcement with ttl {heard[0]}, expected {ttl}")
                else:
                    self.checks["announcer interval applied"] += 1
                return
            await asyncio.sleep(0.1)
        self.soak.fail("reload announcer", "reload: no announcement within 4 s")
