"""What every part of the soak shares: the address plan, the limits the
config and the checks agree on, the failure and counter book (Soak), a pool
of sessions of weighted kinds (session_pool), a runaway loop's check
(runaway_loop), a TCP connection whose lines are read as they come (Conn),
a datagram socket read as datagrams come (DatagramReader), and a wait on an
event up to a deadline (wait_set)."""

import asyncio
import collections
import socket
import struct
import time
import traceback

GRACE = 3.0  # [daemon] shutdown_grace of the soak config
MAX_PER_SOURCE = 32  # [chat] and [json_echo] max_per_source of the soak config
RUNAWAY = 40  # connections of one runaway loop (over MAX_PER_SOURCE)

# Every client kind has loopback addresses of its own (see bench/soak.sh).
GOOD_SOURCE = "127.0.0.3"  # every well-behaved TCP and UDP echo client
UDP_FLOOD_SOURCE = "127.0.0.2"  # one flooding address, rate-limited
DISCOVERY_SOURCE = "127.0.0.4"
DISCOVERY_FLOOD_SOURCE = "127.0.0.5"
RELOAD_CHECK_SOURCE = "127.0.0.6"
CHAT_RUNAWAY_SOURCE = "127.0.0.9"
JSON_RUNAWAY_SOURCE = "127.0.0.10"

MIB = 1024 * 1024
STREAM_LIMIT = 1 << 20


def random_source(rng, second):
    """A random loopback address 127.SECOND.x.y (x, y in 1..254)."""
    return f"127.{second}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


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


async def session_pool(soak, rng, kinds, size, run, label, task_name):
    """Keeps `size` sessions running while the load runs, each of a kind drawn
    by weight from `kinds` ({kind: (weight, at most at once)}) among those
    under their cap, started 0.05-0.3 s apart; `run(kind, n)` is session
    number n (from 1), run as the task `task_name` (a format of kind and n);
    an OSError or timeout ends it and is counted as "LABEL KIND: ERROR"."""
    active = collections.Counter()
    running = set()
    n = 0

    async def session(kind, n):
        try:
            await run(kind, n)
        except (OSError, asyncio.TimeoutError) as e:
            soak.count[f"{label} {kind}: {type(e).__name__}"] += 1
        finally:
            active[kind] -= 1

    while soak.running:
        while len(running) < size and soak.running:
            free = [k for k, (_, cap) in kinds.items() if active[k] < cap]
            kind = rng.choices(free, [kinds[k][0] for k in free])[0]
            active[kind] += 1
            n += 1
            running.add(soak.spawn(session(kind, n), task_name.format(kind=kind, n=n)))
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        done, _ = await asyncio.wait(running, timeout=1, return_when=asyncio.FIRST_COMPLETED)
        running -= done


def log(text):
    print(text, flush=True)


async def wait_set(event, deadline):
    """Clears `event` and waits for it to be set again until the loop time
    `deadline`; False if the time ran out first."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        return False
    event.clear()
    try:
        await asyncio.wait_for(event.wait(), left)
    except asyncio.TimeoutError:
        return False
    return True


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
            if self.eof or not await wait_set(self.changed, deadline):
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


class DatagramReader:
    """A non-blocking datagram socket `self.sock` read whenever it is
    readable: each datagram waiting goes to on_datagram, then
    after_datagrams runs."""

    def listen(self):
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            self.on_datagram(data)
        self.after_datagrams()

    def on_datagram(self, data):
        raise NotImplementedError

    def after_datagrams(self):
        pass

    def close(self):
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


async def runaway_loop(soak, label, served_word, crowd):
    """One runaway loop: `crowd(conns)` opens RUNAWAY connections from one
    address into `conns` and returns how many were served and how many told
    "too many"; max_per_source must be served, the rest told. Every
    connection is reset at the end."""
    conns = []
    try:
        served, crowded = await crowd(conns)
        if (served, crowded) != (MAX_PER_SOURCE, RUNAWAY - MAX_PER_SOURCE):
            soak.fail(f"{label} per-source", f"{label} runaway: {served} {served_word} and {crowded} told "
                      f"'too many', expected {MAX_PER_SOURCE} and {RUNAWAY - MAX_PER_SOURCE}")
        soak.count[f"{label} runaway loops ({RUNAWAY} connections from one address)"] += 1
    except (OSError, asyncio.TimeoutError) as e:
        soak.count[f"{label} runaway: {type(e).__name__}"] += 1
    finally:
        for c in conns:
            c.rst()


def drain(soak, socks, counter):
    """Reads and counts the replies waiting on `socks`, then closes them."""
    for s in socks:
        while True:
            try:
                s.recv(65536)
                soak.count[counter] += 1
            except (BlockingIOError, ConnectionRefusedError):
                break
        s.close()
