"""Chat load: well-behaved clients that check every line of the others,
blasters over the rate limit, hostile sessions, stalled readers and runaway
loops of connections from one address."""

import asyncio
import random
import re
import socket
import struct
import time

from .common import (CHAT_RUNAWAY_SOURCE, GOOD_SOURCE, RUNAWAY, Conn, connect, random_source,
                     runaway_loop, session_pool)

CHAT_RATE = 20.0  # lines/s per well-behaved chat client (rate_limit is 100)
GOOD_CHAT = 3
BLAST_LINES = 300
CHATTERS = 10  # hostile chat sessions at once

WELL_BEHAVED = re.compile(r"^\[((?:good|blast)\d+)\] \1 (\d+) (.*)$", re.S)
# C0 controls but tab (the line's own \n is stripped), and C1.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x80-\x9f]")
CUT = re.compile(rb"^\*\*\* your line was longer than (\d+) bytes and was cut")


def body_for(sender, seq):
    """The text a well-behaved chat sender says as line `seq`."""
    return f"{seq:06d} 안녕하세요 🙂 café\tπ {sender} " + "x" * (seq % 40) + "."


class ChatPeer:
    """A well-behaved chat client: reads everything, checks the well-behaved
    senders' lines (each once, in order, intact), and (if `rate`) sends its own."""

    def __init__(self, soak, name, rate):
        self.soak, self.name, self.rate = soak, name, rate
        self.expect = {}  # sender -> next seq
        self.checked = 0
        self.other = 0
        self.shutdown_notice = False
        self.conn = None

    async def join(self, addr):
        self.conn = await Conn.open(addr, GOOD_SOURCE, on_line=self.on_line,
                                    keep=lambda line: line.startswith(b"*** "))
        await self.conn.send(f"/nick {self.name}\n".encode())
        got = await self.conn.wait_line(lambda l: l.startswith(f"*** you are now {self.name}".encode()), 10)
        if got is None:
            raise RuntimeError(f"{self.name} could not take its name")

    def on_line(self, raw):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.soak.fail("chat relayed invalid UTF-8", f"{self.name} received invalid UTF-8: {line[:80]!r}")
            text = line.decode("utf-8", "replace")
        if CONTROL.search(text):
            self.soak.fail("chat relayed a control character",
                           f"{self.name} received a raw control character: {line[:80]!r}")
        if text.startswith("*** "):
            if "skipped" in text:
                self.soak.fail(f"{self.name} skipped", f"{self.name} lagged: {text}")
            if "shutting down" in text:
                self.shutdown_notice = True
            return
        m = WELL_BEHAVED.match(text)
        if not m:
            self.other += 1
            return
        sender, seq, body = m.group(1), int(m.group(2)), m.group(3)
        if sender == self.name:
            self.soak.fail("own line echoed", f"{self.name} got its own line back: {text[:80]!r}")
            return
        want = self.expect.get(sender, 0)
        self.expect[sender] = seq + 1
        if seq != want:
            self.soak.fail(f"chat order {self.name}",
                           f"{self.name}: from {sender} got line {seq}, expected {want} (lost, repeated or reordered)")
        elif body != body_for(sender, seq):
            self.soak.fail(f"chat text {self.name}",
                           f"{self.name}: line {seq} of {sender} arrived changed: {text[:100]!r}")
        else:
            self.checked += 1

    async def talk(self):
        seq = 0
        self.soak.sent[self.name] = 0
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while self.soak.running:
            await self.conn.send(f"{self.name} {seq} {body_for(self.name, seq)}\n".encode())
            seq += 1
            self.soak.sent[self.name] = seq
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def lost(self):
        """Well-behaved lines not (yet) received: {sender: missing count}."""
        wanted = dict(self.soak.sent)
        wanted.update(self.soak.blasters_done)
        wanted.pop(self.name, None)
        return {s: n - self.expect.get(s, 0) for s, n in wanted.items() if self.expect.get(s, 0) != n}


HOSTILE_LINES = [
    b"hello everyone\n", "안녕하세요 여러분 🙂\n".encode(), b"\x1b[31mred\x1b[0m and a bell \x07\n",
    b"invalid utf-8 \xff\xfe\xc3\n", b"carriage\r\n", b"tab\there\n", b"/who\n", b"/help\n",
    b"/nick bad name\n", b"/nick good1\n", b"/frobnicate\n", b"\n", b"   \n",
    b"[good1] impersonation attempt\n", b"z" * 5000 + b"\n", b"\xc2\x9b C1 CSI and \x9b raw\n",
    b"good2 7 " + body_for("good2", 7).encode() + b"\n",
]

CHAT_KINDS = {  # kind: (weight, at most at once)
    "talker": (50, 99), "course": (12, 99), "overlong": (8, 99), "silent": (10, 99),
    "stalled": (10, 2), "blaster": (6, 1),
}


async def chat_load(soak, addr):
    rng = random.Random(1)
    await session_pool(soak, rng, CHAT_KINDS, CHATTERS,
                       lambda kind, n: chatter(soak, addr, kind, n, rng), "chat", "chat-{kind}-{n}")


async def chatter(soak, addr, kind, n, rng):
    source = random_source(rng, 1)
    if kind == "stalled":
        return await stalled_reader(soak, addr, source, rng)
    conn = await Conn.open(addr, source, keep=lambda l: l.startswith(b"*** "))
    try:
        welcome = await conn.wait_line(lambda l: True, 10)
        if welcome is None or not welcome.startswith(b"*** welcome"):
            soak.fail("chat welcome", f"chat: a new client got {welcome!r} instead of a welcome")
            return
        soak.count["chat joins"] += 1
        if kind == "blaster":
            return await blaster(soak, conn, n)
        if kind == "course":
            # The course's client: no newline; quiet ends each message; `bye` leaves.
            await conn.send(f"[chat{n}] hi from the course client".encode())
            await asyncio.sleep(1.0)
            since = conn.count
            await conn.send(b"bye")
            if await conn.wait_line(lambda l: l == b"*** bye\n", 10, since) is None:
                soak.fail("chat course bye", "chat: a course-style client's `bye` got no `*** bye`")
            else:
                soak.count["chat course-style bye"] += 1
            await conn.wait_eof(5)
            return
        if kind == "overlong":
            since = conn.count
            await conn.send(b"y" * 9000 + b"\n")
            got = await conn.wait_line(lambda l: CUT.match(l) is not None, 10, since)
            if got is None:
                soak.fail("chat cut notice", "chat: a 9000-byte line got no cut notice")
            else:
                soak.count["chat overlong lines cut"] += 1
        elif kind == "silent":
            await asyncio.sleep(rng.uniform(3, 15))
        else:
            if rng.random() < 0.5:
                await conn.send(f"/nick chat{n}\n".encode())
            for _ in range(rng.randint(1, 8)):
                await conn.send(rng.choice(HOSTILE_LINES))
                soak.count["chat hostile lines"] += 1
                await asyncio.sleep(rng.uniform(0.05, 0.8))
        await leave(soak, conn, rng.choice(["bye", "close", "rst"]))
    finally:
        conn.abort()


async def leave(soak, conn, how):
    if how == "bye":
        since = conn.count
        await conn.send(b"bye\n")
        if await conn.wait_line(lambda l: l == b"*** bye\n", 10, since) is None:
            soak.fail("chat bye", "chat: `bye` got no `*** bye`")
        await conn.wait_eof(5)
        await conn.close()
    elif how == "close":
        await conn.close()
    else:
        conn.rst()
    soak.count[f"chat leaves by {how}"] += 1


async def blaster(soak, conn, n):
    """Says BLAST_LINES lines at once (over rate_limit: read less, nothing
    lost), then leaves cleanly: every line must reach every well-behaved client."""
    name = f"blast{n}"
    since = conn.count
    await conn.send(f"/nick {name}\n".encode())
    if await conn.wait_line(lambda l: l.startswith(f"*** you are now {name}".encode()), 10, since) is None:
        soak.fail("blaster name", f"chat: {name} could not take its name")
        return
    data = "".join(f"{name} {i} {body_for(name, i)}\n" for i in range(BLAST_LINES)).encode()
    await conn.send(data)
    conn.w.write_eof()
    if not await conn.wait_eof(60):
        soak.fail("blaster close", f"chat: {name} was not closed by the hub after its EOF")
        return
    soak.blasters_done[name] = BLAST_LINES
    soak.count["chat blasters (300 lines over the rate limit, then EOF)"] += 1


async def stalled_reader(soak, addr, source, rng):
    """Never reads (a tiny receive buffer) for 20-40 s, then reads what is
    there for a moment and resets: counts whether the hub skipped messages
    for it (on_lag) or dropped it (write_timeout)."""
    sock = await connect(addr, source, rcvbuf=4096)
    try:
        await asyncio.sleep(rng.uniform(20, 40))
        data, outcome = b"", "still connected"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 16)
            except BlockingIOError:
                await asyncio.sleep(0.05)
                continue
            except OSError:
                outcome = "reset by the hub"
                break
            if not chunk:
                outcome = "dropped by the hub"
                break
            data = (data + chunk)[-200:]
            if b"messages skipped" in data:
                soak.count["chat stalled readers told they skipped messages"] += 1
                data = b""
        soak.count[f"chat stalled readers (not read 20-40 s): {outcome}"] += 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


async def chat_runaway(soak, addr):
    """A runaway loop: RUNAWAY connections from one address; max_per_source are welcomed."""
    while soak.running:
        await asyncio.sleep(30)
        if not soak.running:
            return
        await runaway_loop(soak, "chat", "welcomed", lambda conns: chat_crowd(addr, conns))


async def chat_crowd(addr, conns):
    """RUNAWAY connections from one address into `conns`: how many were welcomed, how many told "too many"."""
    for _ in range(RUNAWAY):
        conns.append(await Conn.open(addr, CHAT_RUNAWAY_SOURCE, keep=lambda l: l.startswith(b"*** ")))
        await conns[-1].wait_line(lambda l: True, 10)
    first = [c.lines[0][1] if c.lines else b"" for c in conns]
    welcomed = sum(l.startswith(b"*** welcome") for l in first)
    crowded = sum(l.startswith(b"*** too many connections from your address") for l in first)
    return welcomed, crowded
