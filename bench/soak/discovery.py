"""Discovery and the announcer: a checker that probes, floods of probes from
fresh ports, and a listener for every announcement; each self-description is
checked (ports, ttl, a constant instance, seq without gaps)."""

import asyncio
import json
import random
import socket
import time

from .common import DISCOVERY_FLOOD_SOURCE, DISCOVERY_SOURCE, DatagramReader, drain, random_source


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


class AnnouncementListener(DatagramReader):
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
        self.listen()

    def on_datagram(self, data):
        try:
            desc = json.loads(data)
        except ValueError:
            self.soak.fail("announcement json", f"announcer: not JSON: {data[:100]!r}")
            return
        if not check_description(self.soak, "announcer", desc, self.daemon.addrs, (3, 6)):
            return
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
