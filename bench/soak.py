#!/usr/bin/env python3
"""The soak test's driver (bench/soak.sh starts it): runs pinetd for a while
under mixed load, on 127.0.0.0/8 only, and judges it.

Python 3.11 standard library only. One asyncio loop drives everything:
- well-behaved clients that must lose nothing: chat clients sending numbered
  lines (each checks every line of the others, once, in order, intact),
  "blasters" that send 300 numbered lines over the rate limit and leave
  cleanly (every line must reach every well-behaved client), JSON clients
  (each reply is the compact form of the value sent), a UDP echo client, a
  discovery client, an announcement listener;
- hostile load: chat clients that join, talk garbage, leave (bye, close or
  RST), stop reading; JSON clients sending invalid JSON, slowloris, resets
  mid-value, oversize and too-deep values, silence; runaway loops of
  connections from one address; UDP echo and discovery floods from many
  source ports and addresses;
- a SIGHUP every RELOAD_EVERY seconds with a config that toggles one key per
  service, each reload checked to have applied (chat cut notice, JSON limit,
  discovery and announcement ttl);
- a sample of RSS, fds and TCP connections every SAMPLE_EVERY seconds, one
  line every PRINT_EVERY, STATUS= lines read from a NOTIFY_SOCKET of its own.

The leak and pass/fail rules are in bench/soak.sh's header.
"""

import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import traceback

SAMPLE_EVERY = 5.0
PRINT_EVERY = 30.0
RELOAD_EVERY = 5.0
GRACE = 3.0  # [daemon] shutdown_grace of the soak config
EXIT_MARGIN = 3.0

GOOD_CHAT = 3
CHAT_RATE = 20.0  # lines/s per well-behaved chat client (rate_limit is 100)
GOOD_JSON = 2
JSON_EVERY = 0.05  # a batch of 1-4 values per connection this often
JSON_IN_FLIGHT = 64
BLAST_LINES = 300

CHATTERS = 10  # hostile chat sessions at once
JSON_HOSTILE = 6  # hostile JSON sessions at once
RUNAWAY = 40  # connections of one runaway loop (max_per_source is 32)
MAX_PER_SOURCE = 32

GOOD_SOURCE = "127.0.0.3"  # every well-behaved TCP and UDP echo client
UDP_FLOOD_SOURCE = "127.0.0.2"  # one flooding address, rate-limited
DISCOVERY_SOURCE = "127.0.0.4"
DISCOVERY_FLOOD_SOURCE = "127.0.0.5"
RELOAD_CHECK_SOURCE = "127.0.0.6"
CHAT_RUNAWAY_SOURCE = "127.0.0.9"
JSON_RUNAWAY_SOURCE = "127.0.0.10"

MIB = 1024 * 1024
STREAM_LIMIT = 1 << 20

WELL_BEHAVED = re.compile(r"^\[((?:good|blast)\d+)\] \1 (\d+) (.*)$", re.S)
# C0 controls but tab (the line's own \n is stripped), and C1.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x80-\x9f]")
CUT = re.compile(rb"^\*\*\* your line was longer than (\d+) bytes and was cut")


def body_for(sender, seq):
    """The text a well-behaved chat sender says as line `seq`."""
    return f"{seq:06d} 안녕하세요 🙂 café\tπ {sender} " + "x" * (seq % 40) + "."


def config_text(announce_port, toggle, bridge_url=""):
    """The soak's config; `toggle` (0 or 1) changes one key of every service;
    with `bridge_url`, the chat room is bridged through that NATS server."""
    bridge = f'bridge_url = "{bridge_url}"\nbridge_subject = "pinetd.soak"\n' if bridge_url else ""
    return f"""# written by bench/soak.py; every service on 127.0.0.1, ports from the kernel
[daemon]
shutdown_grace = "{GRACE:g}s"
log = "info"

[chat]
listen = "127.0.0.1:0"
max_clients = 1000
max_per_source = {MAX_PER_SOURCE}
max_line_bytes = {4096 + toggle}
queue = 1024
on_lag = "skip"
rate_limit = 100
write_timeout = "10s"
{bridge}
[json_echo]
listen = "127.0.0.1:0"
max_clients = 1000
max_per_source = {MAX_PER_SOURCE}
max_message_bytes = {65536 + toggle}
idle_timeout = "15s"

[udp_echo]
listen = "127.0.0.1:0"
rate_limit = {200 + toggle}

[announcer]
to = ["127.255.255.255:{announce_port}"]
interval = "{1 + toggle}s"

[discovery]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]
max_delay = "{120 - 20 * toggle}ms"
rate_limit = 10
"""


def random_source(rng, second):
    """A random loopback address 127.SECOND.x.y (x, y in 1..254)."""
    return f"127.{second}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


# ---------------------------------------------------------------- JSON values

NUMBERS = ["0", "-0", "1", "-17", "3.14", "1.50", "1e308", "-2.5E-3",
           "18446744073709551617", "123456789012345678901234567890"]
STRINGS = ["jung", "안녕하세요", "🙂 emoji", "café", "tab\there", 'quote " and \\ backslash',
           "/slash", "", "line\nbreak", "\u2028 separator"]
RAW_STRINGS = ['"\\u00e9\\/x"', '"\\ud83d\\ude42"', '"\\b\\f\\n\\r\\t"']


def gen_value(rng, depth=0):
    """A JSON value as a tree: ('obj', [(key, v)]), ('arr', [v]) or ('lit', text)."""
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        return ("obj", [(json.dumps(f"k{i}" if rng.random() < 0.7 else rng.choice(STRINGS),
                                    ensure_ascii=rng.random() < 0.5),
                         gen_value(rng, depth + 1)) for i in range(rng.randint(0, 4))])
    if depth < 3 and roll < 0.5:
        return ("arr", [gen_value(rng, depth + 1) for _ in range(rng.randint(0, 4))])
    roll = rng.random()
    if roll < 0.4:
        return ("lit", rng.choice(NUMBERS) if rng.random() < 0.5 else str(rng.randint(-10**6, 10**6)))
    if roll < 0.8:
        return ("lit", json.dumps(rng.choice(STRINGS), ensure_ascii=rng.random() < 0.5))
    if roll < 0.9:
        return ("lit", rng.choice(RAW_STRINGS))
    return ("lit", rng.choice(["true", "false", "null"]))


def emit(value, ws):
    """The text of `value` with ws() between tokens ("" gives the compact form)."""
    kind, body = value
    if kind == "lit":
        return body
    if kind == "arr":
        inner = ("," + ws()).join(ws() + emit(v, ws) + ws() for v in body)
        return "[" + inner + "]"
    inner = ",".join(ws() + k + ws() + ":" + ws() + emit(v, ws) + ws() for k, v in body)
    return "{" + inner + "}"


def gen_top(rng):
    """One top-level value: (bytes to send with what follows it, compact reply,
    whether it is a bare scalar)."""
    value = gen_value(rng)
    while value[0] == "lit" and rng.random() < 0.8:
        value = gen_value(rng)
    spaces = [" ", "\n", "\t", "  ", "\r\n", ""]
    sent = emit(value, lambda: rng.choice(spaces) if rng.random() < 0.3 else "")
    compact = emit(value, lambda: "")
    scalar = value[0] == "lit" and not value[1].startswith('"')
    # Scalars need a delimiter (12 then 34 would be 1234); the rest may be concatenated.
    after = rng.choice([" ", "\n"]) if scalar else rng.choice(["", "", " ", "\n"])
    return (sent + after).encode(), compact.encode(), scalar


# ---------------------------------------------------------------- plumbing

class Soak:
    """Shared state: the failures, the counters, the stop flags."""

    def __init__(self, minutes):
        self.duration = minutes * 60.0
        self.warmup = max(60.0, self.duration / 5)
        self.failures = collections.OrderedDict()  # message key -> (count, first message)
        self.count = collections.Counter()  # hostile actions and outcomes
        self.running = True  # load runs
        self.stopping = False  # the daemon is being stopped: EOFs are expected
        self.tasks = []
        self.start = time.monotonic()
        self.blasters_done = {}  # name -> lines sent, for blasters that left cleanly
        self.sent = {}  # well-behaved chat sender -> lines sent
        self.announcements = []  # (time, dict)

    def elapsed(self):
        return time.monotonic() - self.start

    def fail(self, key, message=None):
        count, first = self.failures.get(key, (0, message or key))
        self.failures[key] = (count + 1, first)
        if count == 0:
            log(f"FAIL: {first}")

    def spawn(self, coro, name):
        if len(self.tasks) > 1000:
            self.tasks = [t for t in self.tasks if not t.done()]
        task = asyncio.get_running_loop().create_task(self.guard(coro, name), name=name)
        self.tasks.append(task)
        return task

    async def guard(self, coro, name):
        """Runs a load task; an exception that is not I/O is a bug of the soak: fail."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self.fail(f"soak task {name} crashed",
                      f"soak task {name} crashed: {e!r}\n{traceback.format_exc()}")


def log(text):
    print(text, flush=True)


async def connect(addr, source=None, rcvbuf=None):
    """A non-blocking TCP socket connected from `source` (an IP) to `addr`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, addr), 10)
    except BaseException:
        sock.close()
        raise
    return sock


class Conn:
    """A stream connection whose lines are read as they come: `on_line` sees
    each, `keep` says which are kept for wait_line."""

    def __init__(self, reader, writer, on_line=None, keep=lambda line: True):
        self.r, self.w = reader, writer
        self.on_line, self.keep = on_line, keep
        self.lines = collections.deque(maxlen=500)
        self.count = 0
        self.eof = False
        self.error = None
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, addr, source=None, **kw):
        sock = await connect(addr, source)
        reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
        return cls(reader, writer, **kw)

    async def _read(self):
        try:
            while True:
                line = await self.r.readline()
                if not line:
                    break
                self.count += 1
                if self.on_line:
                    self.on_line(line)
                if self.keep(line):
                    self.lines.append((self.count, line))
                    self.changed.set()
        except (OSError, ValueError) as e:
            self.error = e
        finally:
            self.eof = True
            self.changed.set()

    async def send(self, data):
        self.w.write(data)
        await asyncio.wait_for(self.w.drain(), 30)

    async def wait_line(self, pred, timeout, since=0):
        """The first kept line after number `since` matching pred; None on EOF or timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, line in self.lines:
                if i > since and pred(line):
                    return line
            left = deadline - loop.time()
            if self.eof or left <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                return None

    async def wait_eof(self, timeout):
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except asyncio.TimeoutError:
            pass
        return self.eof

    def rst(self):
        """Closes with a reset (SO_LINGER 0)."""
        sock = self.w.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.w.transport.abort()
        self.task.cancel()

    async def close(self):
        self.w.close()
        try:
            await asyncio.wait_for(self.w.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass
        self.task.cancel()

    def abort(self):
        self.w.transport.abort()
        self.task.cancel()


# ---------------------------------------------------------------- the daemon

class Notify:
    """systemd's side of sd_notify: a datagram socket the daemon reports to."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.ready = 0
        self.reloading = 0
        self.stopping = 0
        self.status = ""
        self.event = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            for line in data.decode("utf-8", "replace").split("\n"):
                if line == "READY=1":
                    self.ready += 1
                elif line == "RELOADING=1":
                    self.reloading += 1
                elif line == "STOPPING=1":
                    self.stopping += 1
                elif line.startswith("STATUS="):
                    self.status = line[len("STATUS="):]
        self.event.set()

    async def wait_ready(self, more_than, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ready <= more_than:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    def clients(self):
        m = re.match(r"clients (\d+)", self.status)
        return int(m.group(1)) if m else -1

    def close(self):
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class Daemon:
    def __init__(self, soak, binary, work, announce_port, bridge_url=""):
        self.soak, self.binary, self.work = soak, binary, work
        self.bridge_url = bridge_url
        self.announce_port = announce_port
        self.config = os.path.join(work, "pinetd.toml")
        self.addrs = {}
        self.levels = collections.Counter()
        self.bad_lines = []
        self.toggle = 0
        self.proc = None

    def write_config(self, toggle):
        """Written whole, then renamed: a reload never reads half a file."""
        self.toggle = toggle
        tmp = self.config + ".new"
        with open(tmp, "w") as f:
            f.write(config_text(self.announce_port, toggle, self.bridge_url))
        os.replace(tmp, self.config)

    async def start(self, notify_path):
        self.write_config(0)
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        env["NOTIFY_SOCKET"] = notify_path
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--config", self.config, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
        with open(os.path.join(self.work, "daemon.pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        self.logfile = open(os.path.join(self.work, "pinetd.log"), "wb")
        started = asyncio.get_running_loop().create_future()
        self.stderr_task = asyncio.get_running_loop().create_task(self._stderr(started))
        await asyncio.wait_for(started, 30)

    async def _stderr(self, started):
        listening = re.compile(rb"listening service=(\w+) addr=([0-9.]+):(\d+)")
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            self.logfile.write(line)
            self.logfile.flush()
            words = line.split()
            level = words[1].decode(errors="replace") if len(words) > 1 else "?"
            self.levels[level] += 1
            if level in ("WARN", "ERROR") and len(self.bad_lines) < 20:
                self.bad_lines.append(line.decode("utf-8", "replace").rstrip())
            if level == "ERROR":
                self.soak.fail("daemon logged ERROR", "daemon logged ERROR: "
                               + line.decode("utf-8", "replace").rstrip())
            m = listening.search(line)
            if m and not started.done():
                self.addrs[m.group(1).decode()] = (m.group(2).decode(), int(m.group(3)))
            if b" started " in line and not started.done():
                started.set_result(True)
        if not started.done():
            started.set_exception(RuntimeError("pinetd exited before it started; see pinetd.log"))

    def alive(self):
        return self.proc is not None and self.proc.returncode is None

    def sample(self, notify):
        pid = self.proc.pid
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return {"t": self.soak.elapsed(), "rss": rss, "fds": fds, "tcp": self.tcp_established(),
                "udp_drops": self.udp_drops(), "cpu": cpu, "status": notify.status}

    def tcp_established(self):
        ports = {f"0100007F:{self.addrs[s][1]:04X}" for s in ("chat", "json_echo")}
        n = 0
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "01" and parts[1] in ports:
                    n += 1
        return n

    def udp_drops(self):
        """Datagrams the kernel dropped on the daemon's UDP sockets (full receive buffer)."""
        ports = {f"0100007F:{self.addrs[s][1]:04X}" for s in ("udp_echo", "discovery")}
        drops = 0
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] in ports:
                    drops += int(parts[-1])
        return drops


# ---------------------------------------------------------------- chat

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
    active = collections.Counter()
    running = set()
    n = 0

    async def session(kind, n):
        try:
            await chatter(soak, addr, kind, n, rng)
        except (OSError, asyncio.TimeoutError) as e:
            soak.count[f"chat {kind}: {type(e).__name__}"] += 1
        finally:
            active[kind] -= 1

    while soak.running:
        while len(running) < CHATTERS and soak.running:
            kinds = [k for k, (_, cap) in CHAT_KINDS.items() if active[k] < cap]
            kind = rng.choices(kinds, [CHAT_KINDS[k][0] for k in kinds])[0]
            active[kind] += 1
            n += 1
            running.add(soak.spawn(session(kind, n), f"chat-{kind}-{n}"))
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        done, _ = await asyncio.wait(running, timeout=1, return_when=asyncio.FIRST_COMPLETED)
        running -= done


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
        conns = []
        try:
            for _ in range(RUNAWAY):
                conns.append(await Conn.open(addr, CHAT_RUNAWAY_SOURCE, keep=lambda l: l.startswith(b"*** ")))
                await conns[-1].wait_line(lambda l: True, 10)
            first = [c.lines[0][1] if c.lines else b"" for c in conns]
            welcomed = sum(l.startswith(b"*** welcome") for l in first)
            crowded = sum(l.startswith(b"*** too many connections from your address") for l in first)
            if (welcomed, crowded) != (MAX_PER_SOURCE, RUNAWAY - MAX_PER_SOURCE):
                soak.fail("chat per-source", f"chat runaway: {welcomed} welcomed and {crowded} told "
                          f"'too many', expected {MAX_PER_SOURCE} and {RUNAWAY - MAX_PER_SOURCE}")
            soak.count["chat runaway loops (40 connections from one address)"] += 1
        except (OSError, asyncio.TimeoutError) as e:
            soak.count[f"chat runaway: {type(e).__name__}"] += 1
        finally:
            for c in conns:
                c.rst()


# ---------------------------------------------------------------- JSON

class JsonPeer:
    """A well-behaved JSON client: values (some concatenated, some spread over
    lines), up to JSON_IN_FLIGHT in flight; each reply must be the compact value."""

    def __init__(self, soak, idx):
        self.soak, self.name = soak, f"json{idx}"
        self.rng = random.Random(100 + idx)
        self.pending = collections.deque()
        self.checked = 0
        self.sent = 0
        self.shutdown_notice = False
        self.conn = None

    async def open(self, addr):
        self.conn = await Conn.open(addr, GOOD_SOURCE, on_line=self.on_line, keep=lambda l: False)

    def on_line(self, raw):
        line = raw.rstrip(b"\n")
        if self.soak.stopping and line.startswith(b'{"error"') and b"shutting down" in line:
            self.shutdown_notice = True
            return
        if not self.pending:
            self.soak.fail(f"{self.name} unexpected", f"{self.name}: unexpected reply {line[:100]!r}")
            return
        want = self.pending.popleft()
        if line != want:
            self.soak.fail(f"{self.name} mismatch",
                           f"{self.name}: reply {line[:100]!r} to a value whose compact form is {want[:100]!r}")
        else:
            self.checked += 1

    async def talk(self):
        while self.soak.running:
            if len(self.pending) < JSON_IN_FLIGHT:
                data = b""
                scalars = []  # where top-level scalars are in data
                for _ in range(self.rng.randint(1, 4)):
                    sent, compact, scalar = gen_top(self.rng)
                    if scalar:
                        scalars.append((len(data), len(data) + len(sent)))
                    data += sent
                    self.pending.append(compact)
                    self.sent += 1
                if self.rng.random() < 0.3:
                    # Split anywhere (inside a string, a UTF-8 character, a
                    # nested number) but inside a bare top-level number: `12`
                    # then quiet is a whole value, by design.
                    cut = self.rng.randint(0, len(data))
                    cut = next((end for start, end in scalars if start < cut < end), cut)
                    await self.conn.send(data[:cut])
                    await asyncio.sleep(0.005)
                    data = data[cut:]
                await self.conn.send(data)
            await asyncio.sleep(JSON_EVERY)


INVALID_JSON = [
    (b'{"a": tru}', 0), (b"[1,,2]", 0), (b'{"a" 1}', 0), (b"}", 0), (b'"ctrl \x01 in string"', 0),
    (b"\xff\xfe", 0), (b"[1, 2]]", 1), (b'{"ok": true} {"bad": nul}', 1), (b"nan", 0),
    (b'{"a":1,}', 0), (b'"\xc3\x28"', 0),
]

JSON_KINDS = {  # kind: (weight, at most at once)
    "invalid": (30, 99), "reset": (30, 99), "slowloris": (15, 4), "silent": (5, 2),
    "deep": (8, 99), "oversize": (4, 1), "course": (8, 99),
}


def is_error(line, words=None):
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("error"), str) and (
        words is None or words in obj["error"])


def is_error_at(line):
    """An error object with a line and column."""
    if not is_error(line):
        return False
    obj = json.loads(line)
    return isinstance(obj.get("line"), int) and isinstance(obj.get("column"), int)


async def json_load(soak, addr):
    rng = random.Random(2)
    active = collections.Counter()
    running = set()

    async def session(kind):
        try:
            await json_hostile(soak, addr, kind, rng)
        except (OSError, asyncio.TimeoutError) as e:
            soak.count[f"json {kind}: {type(e).__name__}"] += 1
        finally:
            active[kind] -= 1

    while soak.running:
        while len(running) < JSON_HOSTILE and soak.running:
            kinds = [k for k, (_, cap) in JSON_KINDS.items() if active[k] < cap]
            kind = rng.choices(kinds, [JSON_KINDS[k][0] for k in kinds])[0]
            active[kind] += 1
            running.add(soak.spawn(session(kind), f"json-{kind}"))
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        done, _ = await asyncio.wait(running, timeout=1, return_when=asyncio.FIRST_COMPLETED)
        running -= done


async def json_hostile(soak, addr, kind, rng):
    conn = await Conn.open(addr, random_source(rng, 1))
    try:
        if kind == "invalid":
            data, answered = rng.choice(INVALID_JSON)
            await conn.send(data)
            await conn.wait_eof(10)
            lines = [l.rstrip(b"\n") for _, l in conn.lines]
            if not conn.eof or len(lines) != answered + 1 or not is_error_at(lines[-1]):
                soak.fail("json invalid", f"json: {data!r} got {lines!r} (eof {conn.eof}); expected "
                          f"{answered} replies, one error object with line and column, then close")
            else:
                soak.count["json invalid values: error object, then closed"] += 1
        elif kind == "reset":
            sent = gen_top(rng)[0]
            value = b'{"half": [1, 2, {"x": "' + sent
            await conn.send(value[: rng.randint(1, len(value) - 1)])
            await asyncio.sleep(rng.uniform(0, 0.5))
            conn.rst()
            soak.count["json resets mid-value"] += 1
        elif kind == "slowloris":
            sent, compact = b'{"slow": [1, 2, 3], "n": -0, "s": "\xec\x95\x88"}', b'{"slow":[1,2,3],"n":-0,"s":"\xec\x95\x88"}'
            for i in range(len(sent)):
                if conn.eof:
                    break
                await conn.send(sent[i:i + 1])
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                if not soak.running:
                    return
            got = await conn.wait_line(lambda l: True, 10)
            if got != compact + b"\n":
                soak.fail("json slowloris", f"json: a value sent a byte a second got {got!r}")
            else:
                soak.count["json slowloris values (a byte a second) answered"] += 1
        elif kind == "silent":
            await conn.send(b'{"sil')
            got = await conn.wait_line(lambda l: True, 40)
            await conn.wait_eof(10)
            if got is None or not is_error(got, "idle") or not conn.eof:
                soak.fail("json idle", f"json: a silent client got {got!r} (eof {conn.eof}), "
                          "expected an idle timeout error, then close")
            else:
                soak.count["json silent clients closed by idle_timeout"] += 1
        elif kind == "deep":
            await conn.send(b"[" * 200)
            got = await conn.wait_line(lambda l: True, 10)
            if got is None or not is_error(got, "nesting"):
                soak.fail("json deep", f"json: 200 nested arrays got {got!r}")
            else:
                soak.count["json too-deep values refused"] += 1
        elif kind == "oversize":
            try:
                await conn.send(b'"' + b"b" * 70000)
                got = await conn.wait_line(lambda l: True, 10)
            except (ConnectionResetError, BrokenPipeError):
                got = None
            if got is not None and not is_error(got, "max_message_bytes"):
                soak.fail("json oversize", f"json: a 70000-byte value got {got[:100]!r}")
            # The hub may reset rather than close: what we had not sent was unread.
            soak.count["json oversize values: " + ("error object" if got else "reset")] += 1
        elif kind == "course":
            for _ in range(rng.randint(1, 3)):
                since = conn.count
                await conn.send(b'{"name": "jung", "count": 3}')
                got = await conn.wait_line(lambda l: True, 10, since)
                if got != b'{"name":"jung","count":3}\n':
                    soak.fail("json course", f"json: the course's object got {got!r}")
                    break
                soak.count["json course-style exchanges"] += 1
            await conn.close()
    finally:
        conn.abort()


async def json_runaway(soak, addr):
    """RUNAWAY connections from one address: max_per_source are served, the rest told why."""
    await asyncio.sleep(15)
    while soak.running:
        conns = []
        try:
            for _ in range(RUNAWAY):
                conns.append(await Conn.open(addr, JSON_RUNAWAY_SOURCE))
            await asyncio.sleep(1)
            crowded = sum(1 for c in conns if c.lines and is_error(c.lines[0][1], "too many connections"))
            served = 0
            for c in conns:
                if not c.lines and not c.eof:
                    await c.send(b'{"ok": 1}')
                    if await c.wait_line(lambda l: True, 10) == b'{"ok":1}\n':
                        served += 1
            if (served, crowded) != (MAX_PER_SOURCE, RUNAWAY - MAX_PER_SOURCE):
                soak.fail("json per-source", f"json runaway: {served} served and {crowded} told "
                          f"'too many', expected {MAX_PER_SOURCE} and {RUNAWAY - MAX_PER_SOURCE}")
            soak.count["json runaway loops (40 connections from one address)"] += 1
        except (OSError, asyncio.TimeoutError) as e:
            soak.count[f"json runaway: {type(e).__name__}"] += 1
        finally:
            for c in conns:
                c.rst()
        await asyncio.sleep(30)


# ---------------------------------------------------------------- UDP

class UdpChecker:
    """A UDP echo client from its own address: every datagram must come back
    unchanged (a datagram with no reply in 0.5 s is sent again, counted)."""

    def __init__(self, soak):
        self.soak = soak
        self.checked = 0
        self.retries = 0
        self.late = 0

    async def run(self, addr):
        loop = asyncio.get_running_loop()
        rng = random.Random(3)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((GOOD_SOURCE, 0))
        sock.connect(addr)
        sock.setblocking(False)
        seq = 0
        try:
            while self.soak.running:
                payload = struct.pack("!Q", seq) + rng.randbytes(rng.randint(0, 1200))
                for _ in range(10):
                    sock.send(payload)
                    reply = await self.receive(loop, sock, seq, 0.5)
                    if reply is not None:
                        break
                    self.retries += 1
                else:
                    self.soak.fail("udp lost", f"udp echo: datagram {seq} got no reply in 10 tries")
                    reply = payload
                if reply != payload:
                    self.soak.fail("udp changed", f"udp echo: datagram {seq} came back changed")
                else:
                    self.checked += 1
                seq += 1
                await asyncio.sleep(0.05)
        finally:
            sock.close()

    async def receive(self, loop, sock, seq, timeout):
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except asyncio.TimeoutError:
                return None
            if len(reply) >= 8 and struct.unpack("!Q", reply[:8])[0] < seq:
                self.late += 1  # the reply to a datagram sent again
                continue
            return reply


async def udp_flood(soak, addr):
    """Every 0.25 s, 16 new sockets (new source ports) send 8 datagrams each:
    half from one address (rate-limited), half from random 127.2.x.y."""
    rng = random.Random(4)
    previous = []
    try:
        while soak.running:
            socks = []
            for i in range(16):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.bind((UDP_FLOOD_SOURCE if i % 2 else random_source(rng, 2), 0))
                socks.append(s)
                for _ in range(8):
                    size = 60000 if rng.random() < 0.002 else rng.randint(0, 512)
                    try:
                        s.sendto(rng.randbytes(size), addr)
                        soak.count["udp flood datagrams sent"] += 1
                    except BlockingIOError:
                        soak.count["udp flood datagrams not sent (EAGAIN)"] += 1
            await asyncio.sleep(0.25)
            drain(soak, previous, "udp flood replies")
            previous = socks
    finally:
        drain(soak, previous, "udp flood replies")


def drain(soak, socks, counter):
    for s in socks:
        while True:
            try:
                s.recv(65536)
                soak.count[counter] += 1
            except (BlockingIOError, ConnectionRefusedError):
                break
        s.close()


# ---------------------------------------------------------------- discovery, announcer

def check_description(soak, who, desc, addrs, ttls):
    """Checks a self-description (announcement or discovery reply)."""
    want = {"chat": addrs["chat"][1], "json_echo": addrs["json_echo"][1],
            "udp_echo": addrs["udp_echo"][1], "discovery": addrs["discovery"][1]}
    problems = []
    if desc.get("pinetd") != 1:
        problems.append("pinetd != 1")
    if desc.get("services") != want:
        problems.append(f"services {desc.get('services')} != {want}")
    if desc.get("ttl") not in ttls:
        problems.append(f"ttl {desc.get('ttl')} not in {ttls}")
    if not isinstance(desc.get("seq"), int) or not isinstance(desc.get("instance"), str):
        problems.append("no seq or instance")
    if problems:
        soak.fail(f"{who} description", f"{who}: bad self-description ({'; '.join(problems)}): {desc}")
        return False
    return True


class DiscoveryChecker:
    def __init__(self, soak, daemon):
        self.soak, self.daemon = soak, daemon
        self.checked = 0
        self.retries = 0
        self.instance = None

    async def probe(self, source, timeout=1.5, tries=3):
        """One probe's reply, parsed; None if none came."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.connect(self.daemon.addrs["discovery"])
        sock.setblocking(False)
        try:
            for attempt in range(tries):
                if attempt:
                    self.retries += 1
                sock.send(b"pinetd? soak probe")
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
                except asyncio.TimeoutError:
                    continue
                try:
                    return json.loads(data)
                except ValueError:
                    self.soak.fail("discovery json", f"discovery: reply is not JSON: {data[:100]!r}")
                    return {}
            return None
        finally:
            sock.close()

    async def run(self):
        while self.soak.running:
            desc = await self.probe(DISCOVERY_SOURCE)
            if desc is None:
                self.soak.fail("discovery lost", "discovery: a probe got no reply in 3 tries")
            elif check_description(self.soak, "discovery", desc, self.daemon.addrs, (3, 6)):
                if self.instance is None:
                    self.instance = desc["instance"]
                if desc["instance"] != self.instance:
                    self.soak.fail("discovery instance", "discovery: the instance id changed")
                self.checked += 1
            await asyncio.sleep(2)


async def discovery_flood(soak, addr):
    """Every 3 s, 30 probes from one address and 10 from random 127.3.x.y, each from a new port."""
    rng = random.Random(5)
    while soak.running:
        socks = []
        for i in range(40):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind((DISCOVERY_FLOOD_SOURCE if i < 30 else random_source(rng, 3), 0))
            s.sendto(rng.randbytes(rng.randint(0, 600)), addr)
            soak.count["discovery flood probes sent"] += 1
            socks.append(s)
        await asyncio.sleep(3)
        drain(soak, socks, "discovery flood replies")


class AnnouncementListener:
    """Bound to 127.255.255.255:PORT: every announcement, with seq +1 each time."""

    def __init__(self, soak):
        self.soak = soak
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.255.255.255", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.checked = 0
        self.gaps = 0
        self.last_seq = None
        self.instance = None
        self.heard = []  # (time, ttl), the recent ones
        self.daemon = None

    def start(self, daemon):
        self.daemon = daemon
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            try:
                desc = json.loads(data)
            except ValueError:
                self.soak.fail("announcement json", f"announcer: not JSON: {data[:100]!r}")
                continue
            if not check_description(self.soak, "announcer", desc, self.daemon.addrs, (3, 6)):
                continue
            if self.instance is None:
                self.instance = desc["instance"]
            if desc["instance"] != self.instance:
                self.soak.fail("announcement instance", "announcer: the instance id changed")
            seq = desc["seq"]
            if self.last_seq is not None and seq <= self.last_seq:
                self.soak.fail("announcement seq", f"announcer: seq {seq} after {self.last_seq}")
            elif self.last_seq is not None and seq != self.last_seq + 1:
                self.gaps += seq - self.last_seq - 1
                self.soak.fail("announcement gap", f"announcer: seq {seq} after {self.last_seq} "
                               "(announcements lost on loopback, or seq skipped)")
            self.last_seq = seq
            self.checked += 1
            self.heard.append((time.monotonic(), desc["ttl"]))
            del self.heard[:-20]

    def close(self):
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


# ---------------------------------------------------------------- reloads

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


# ---------------------------------------------------------------- judging

def mib(n):
    return f"{n / MIB:.1f} MiB"


def quarters(values):
    k = len(values) // 4
    return [values[i * k:(i + 1) * k] for i in range(4)] if k else []


def judge_leaks(soak, samples, base, quiet):
    """The leak rules (see bench/soak.sh). Returns summary lines."""
    warm = [s for s in samples if s["t"] < soak.warmup]
    post = [s for s in samples if s["t"] >= soak.warmup]
    lines = []
    if not warm or len(post) < 4:
        soak.fail("too short", "too few samples after the warm-up to judge leaks")
        return lines
    rss_ref = max(s["rss"] for s in warm)
    rss_last = max(s["rss"] for s in quarters(post)[-1])
    growth = rss_last - rss_ref
    if growth > 8 * MIB and growth > 0.2 * rss_ref:
        soak.fail("rss grew", f"RSS grew: {mib(rss_last)} in the last quarter, warm-up max {mib(rss_ref)}")
    rss_floors = [min(s["rss"] for s in q) for q in quarters(post)]
    if all(b > a for a, b in zip(rss_floors, rss_floors[1:])) and rss_floors[-1] - rss_floors[0] > 4 * MIB:
        soak.fail("rss floor rose", f"RSS floor rose in every quarter: {[mib(f) for f in rss_floors]}")
    fd_floors = [min(s["fds"] for s in q) for q in quarters(post)]
    if all(b > a for a, b in zip(fd_floors, fd_floors[1:])) and fd_floors[-1] - fd_floors[0] >= 8:
        soak.fail("fd floor rose", f"open fds floor rose in every quarter: {fd_floors}")
    if quiet["fds"] > base["fds"] + 2:
        soak.fail("fds leaked", f"open fds after the load stopped: {quiet['fds']}, "
                  f"at the start with the same clients: {base['fds']}")
    warm_end = warm[-1]
    lines.append(f"RSS    start {mib(base['rss'])}, warm-up end {mib(warm_end['rss'])} (warm-up max "
                 f"{mib(rss_ref)}), max after warm-up {mib(max(s['rss'] for s in post))}, "
                 f"last sample under load {mib(post[-1]['rss'])}, idle at the end {mib(quiet['rss'])}; "
                 f"quarter floors {', '.join(mib(f) for f in rss_floors)}")
    lines.append(f"fds    start {base['fds']}, warm-up end {warm_end['fds']}, max after warm-up "
                 f"{max(s['fds'] for s in post)}, last sample under load {post[-1]['fds']}, "
                 f"idle at the end {quiet['fds']}; quarter floors {', '.join(map(str, fd_floors))}")
    return lines


def print_sample(s, soak, peers, jsons, udp, disc, ann, reloader):
    chat = sum(p.checked for p in peers)
    js = sum(p.checked for p in jsons)
    log(f"[{s['t']:6.0f}s] rss {mib(s['rss'])}  fds {s['fds']}  tcp {s['tcp']}  cpu {s['cpu']:.1f}s  "
        f"udp-drops {s['udp_drops']}  | STATUS {s['status']}  | checked: chat {chat} json {js} "
        f"udp {udp.checked} discovery {disc.checked} announcements {ann.checked} "
        f"reloads {reloader.confirmed}  | failures {len(soak.failures)}")


# ---------------------------------------------------------------- main

async def run(args):
    soak = Soak(args.minutes)
    loop = asyncio.get_running_loop()
    notify = Notify(os.path.join(args.work, "notify.sock"))
    announcements = AnnouncementListener(soak)
    daemon = Daemon(soak, args.pinetd, args.work, announcements.port, args.bridge_url)
    summary = []
    try:
        await daemon.start(notify.sock.getsockname())
        if not await notify.wait_ready(0, 10):
            raise RuntimeError("no READY=1 from the daemon")
        announcements.start(daemon)
        addrs = daemon.addrs
        log(f"soak: pinetd pid {daemon.proc.pid} ({args.pinetd}), {args.minutes:g} min, warm-up "
            f"{soak.warmup:.0f} s; " + ", ".join(f"{k} {v[0]}:{v[1]}" for k, v in addrs.items())
            + f"; announcements to 127.255.255.255:{announcements.port}; work dir {args.work}"
            + (f"; chat bridged through {args.bridge_url}" if args.bridge_url else ""))

        peers = [ChatPeer(soak, f"good{i + 1}", CHAT_RATE) for i in range(GOOD_CHAT)]
        probe = ChatPeer(soak, "probe", 0)
        for p in peers + [probe]:
            await p.join(addrs["chat"])
        jsons = [JsonPeer(soak, i + 1) for i in range(GOOD_JSON)]
        for j in jsons:
            await j.open(addrs["json_echo"])
        await asyncio.sleep(3)  # a STATUS line with the clients
        base = daemon.sample(notify)
        log(f"soak: with the {len(peers) + 1 + len(jsons)} long-lived clients connected: "
            f"rss {mib(base['rss'])}, fds {base['fds']}, tcp {base['tcp']}, STATUS {notify.status}")

        udp = UdpChecker(soak)
        disc = DiscoveryChecker(soak, daemon)
        reloader = Reloader(soak, daemon, notify, probe, disc, announcements)
        for p in peers:
            soak.spawn(p.talk(), f"talk-{p.name}")
        for j in jsons:
            soak.spawn(j.talk(), f"talk-{j.name}")
        soak.spawn(udp.run(addrs["udp_echo"]), "udp-checker")
        soak.spawn(disc.run(), "discovery-checker")
        soak.spawn(chat_load(soak, addrs["chat"]), "chat-load")
        soak.spawn(chat_runaway(soak, addrs["chat"]), "chat-runaway")
        soak.spawn(json_load(soak, addrs["json_echo"]), "json-load")
        soak.spawn(json_runaway(soak, addrs["json_echo"]), "json-runaway")
        soak.spawn(udp_flood(soak, addrs["udp_echo"]), "udp-flood")
        soak.spawn(discovery_flood(soak, addrs["discovery"]), "discovery-flood")
        soak.spawn(reloader.run(), "reloader")

        samples = []
        next_print = PRINT_EVERY
        end = soak.start + soak.duration
        while time.monotonic() < end:
            await asyncio.sleep(min(SAMPLE_EVERY, max(0.0, end - time.monotonic())))
            if not daemon.alive():
                soak.fail("daemon died", f"the daemon exited with {daemon.proc.returncode} during the soak")
                break
            s = daemon.sample(notify)
            samples.append(s)
            if s["t"] >= next_print - 0.5:
                print_sample(s, soak, peers, jsons, udp, disc, announcements, reloader)
                next_print += PRINT_EVERY
            for c in peers + [probe] + jsons:
                if c.conn.eof and not soak.stopping:
                    soak.fail(f"{c.name} dropped", f"{c.name}, a well-behaved client, was disconnected "
                              f"({c.conn.error!r})")

        # Stop the load; what the well-behaved clients sent must all arrive.
        soak.running = False
        await asyncio.sleep(1)
        for t in soak.tasks:
            if t.get_name().startswith(("chat-", "json-", "udp-", "discovery-", "reloader")) \
                    and not t.get_name().startswith(("chat-blaster",)):
                t.cancel()
        await asyncio.wait(soak.tasks, timeout=70)
        for t in soak.tasks:
            t.cancel()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (any(p.lost() for p in peers)
                                               or any(j.pending for j in jsons)):
            await asyncio.sleep(0.2)
        for p in peers:
            if p.lost():
                soak.fail(f"{p.name} lost", f"{p.name} never received (sender: lines) {p.lost()}")
        for j in jsons:
            if j.pending:
                soak.fail(f"{j.name} lost", f"{j.name}: {len(j.pending)} values got no reply")

        # Quiet: only the long-lived clients left; the fds must be back where they were.
        quiet = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            quiet = daemon.sample(notify)
            if quiet["fds"] <= base["fds"] and quiet["tcp"] == base["tcp"]:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(2.5)  # a fresh STATUS line
        quiet = daemon.sample(notify)
        if quiet["tcp"] != base["tcp"] or notify.clients() != len(peers) + 1 + len(jsons):
            soak.fail("clients left over", f"after the load: {quiet['tcp']} TCP connections "
                      f"(start: {base['tcp']}), STATUS {notify.status}")
        log(f"soak: load stopped; idle again: rss {mib(quiet['rss'])}, fds {quiet['fds']}, tcp "
            f"{quiet['tcp']}, STATUS {notify.status}")
        summary += judge_leaks(soak, samples, base, quiet)
        last_status = notify.status

        # SIGTERM: exit 0 within the grace, clients told.
        soak.stopping = True
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(daemon.proc.wait(), GRACE + EXIT_MARGIN)
        except asyncio.TimeoutError:
            rc = None
        took = time.monotonic() - t0
        if rc != 0:
            soak.fail("sigterm", f"SIGTERM: exit status {rc} after {took:.1f} s "
                      f"(expected 0 within {GRACE + EXIT_MARGIN:g} s)")
        for c in peers + [probe] + jsons:
            await c.conn.wait_eof(3)
        for c in peers + [probe] + jsons:
            if not c.shutdown_notice and c in peers + jsons:
                soak.fail("shutdown notice", f"{c.name} was not told the server is shutting down")
            if not c.conn.eof:
                soak.fail("shutdown close", f"{c.name} was not closed at shutdown")
        await daemon.stderr_task

        final = samples[-1] if samples else base
        summary.append(f"daemon CPU {final['cpu']:.1f} s over {final['t']:.0f} s; kernel UDP drops on its "
                       f"sockets {final['udp_drops']}; log lines {dict(daemon.levels)}; SIGTERM: exit "
                       f"{rc} in {took:.2f} s")
        summary.append(f"last STATUS: {last_status}")
        summary.append(f"reloads: {reloader.sent} SIGHUP, {reloader.confirmed} confirmed (READY=1), "
                       f"checks {dict(reloader.checks)}")
        for p in peers:
            by = collections.Counter("blast" if s.startswith("blast") else s for s in p.expect)
            summary.append(f"chat {p.name}: sent {soak.sent.get(p.name, 0)} lines, checked {p.checked} "
                           f"lines of well-behaved senders ({dict(by)} senders), {p.other} other lines")
        for j in jsons:
            summary.append(f"json {j.name}: sent {j.sent} values, checked {j.checked} replies")
        summary.append(f"udp echo checker: {udp.checked} datagrams checked, {udp.retries} sent again "
                       f"after 0.5 s without reply, {udp.late} late replies")
        summary.append(f"discovery checker: {disc.checked} replies checked, {disc.retries} probes sent again")
        summary.append(f"announcements: {announcements.checked} checked, seq gaps {announcements.gaps}")
        summary.append(f"blasters that left cleanly: {len(soak.blasters_done)} x {BLAST_LINES} lines")
        for k in sorted(soak.count):
            summary.append(f"hostile: {k}: {soak.count[k]}")
    finally:
        soak.running = False
        for t in soak.tasks:
            t.cancel()
        if daemon.alive():
            daemon.proc.kill()
            await daemon.proc.wait()
        notify.close()
    log("")
    log("soak summary")
    for line in summary:
        log("  " + line)
    if soak.failures:
        log(f"soak: FAIL ({len(soak.failures)} kinds of failure)")
        for key, (count, first) in soak.failures.items():
            log(f"  {first}" + (f"  [{count} times]" if count > 1 else ""))
        return 1
    log("soak: PASS")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--pinetd", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--bridge-url", default="", help="bridge the chat room through this NATS server")
    args = parser.parse_args()
    try:
        code = asyncio.run(asyncio.wait_for(run(args), args.minutes * 60 + 240))
    except asyncio.TimeoutError:
        log("soak: FAIL (the soak itself did not finish in time)")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
