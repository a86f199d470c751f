"""JSON echo load: random JSON values and their compact form, well-behaved
clients that check every reply, hostile sessions (invalid JSON, resets,
slowloris, silence, too deep, too big) and runaway loops from one address."""

import asyncio
import collections
import json
import random

from .common import (GOOD_SOURCE, JSON_RUNAWAY_SOURCE, RUNAWAY, Conn, random_source, runaway_loop,
                     session_pool)

GOOD_JSON = 2
JSON_EVERY = 0.05  # a batch of 1-4 values per connection this often
JSON_IN_FLIGHT = 64
JSON_HOSTILE = 6  # hostile JSON sessions at once

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
    await session_pool(soak, rng, JSON_KINDS, JSON_HOSTILE,
                       lambda kind, n: json_hostile(soak, addr, kind, rng), "json", "json-{kind}")


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
        await runaway_loop(soak, "json", "served", lambda conns: json_crowd(addr, conns))
        await asyncio.sleep(30)


async def json_crowd(addr, conns):
    """RUNAWAY connections from one address into `conns`: how many were served, how many told "too many"."""
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
    return served, crowded
