"""UDP echo load: a checker whose every datagram must come back unchanged,
and floods from fresh source ports."""

import asyncio
import random
import socket
import struct

from .common import GOOD_SOURCE, UDP_FLOOD_SOURCE, drain, random_source


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
