"""The daemon under soak: its config (written whole, toggled on reload), its
process and log, its sd_notify socket, and the samples of RSS, fds, TCP
connections and UDP drops taken from /proc."""

import asyncio
import collections
import os
import re
import socket

from .common import GRACE, MAX_PER_SOURCE, DatagramReader, wait_set


def config_text(announce_port, toggle, bridge_url=""):
    """The soak's config; `toggle` (0 or 1) changes one key of every service;
    with `bridge_url`, the chat room is bridged through that NATS server."""
    bridge = f'bridge_url = "{bridge_url}"\nbridge_subject = "pinetd.soak"\n' if bridge_url else ""
    return f"""# written by bench/soak (the soak driver); every service on 127.0.0.1, ports from the kernel
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


class Notify(DatagramReader):
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
        self.listen()

    def on_datagram(self, data):
        for line in data.decode("utf-8", "replace").split("\n"):
            if line == "READY=1":
                self.ready += 1
            elif line == "RELOADING=1":
                self.reloading += 1
            elif line == "STOPPING=1":
                self.stopping += 1
            elif line.startswith("STATUS="):
                self.status = line[len("STATUS="):]

    def after_datagrams(self):
        self.event.set()

    async def wait_ready(self, more_than, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ready <= more_than:
            if not await wait_set(self.event, deadline):
                return False
        return True

    def clients(self):
        """Connected clients over every service of the last STATUS= line
        ("chat 4 clients 120 lines, ..., json_echo 2 clients 40 values"); -1
        before the first."""
        counts = re.findall(r"(\d+) clients\b", self.status)
        return sum(map(int, counts)) if counts else -1


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

    def sockets(self, table, services):
        """The rows (split into fields) of /proc/net/TABLE whose local address
        is 127.0.0.1 and the port of one of `services`."""
        ports = {f"0100007F:{self.addrs[s][1]:04X}" for s in services}
        with open(f"/proc/net/{table}") as f:
            next(f)
            return [parts for parts in map(str.split, f) if parts[1] in ports]

    def tcp_established(self):
        return sum(1 for parts in self.sockets("tcp", ("chat", "json_echo")) if parts[3] == "01")

    def udp_drops(self):
        """Datagrams the kernel dropped on the daemon's UDP sockets (full receive buffer)."""
        return sum(int(parts[-1]) for parts in self.sockets("udp", ("udp_echo", "discovery")))
