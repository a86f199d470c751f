"""The run, from start to verdict: start the daemon, connect the long-lived
clients, spawn every load, sample until the time is up, stop the load and
check nothing was lost, check the daemon is idle again, SIGTERM it, and
print the summary and PASS or FAIL."""

import argparse
import asyncio
import collections
import os
import signal
import sys
import time

from . import __doc__ as package_doc
from .chat import BLAST_LINES, CHAT_RATE, GOOD_CHAT, ChatPeer, chat_load, chat_runaway
from .common import GRACE, Soak, log
from .daemon import Daemon, Notify
from .discovery import AnnouncementListener, DiscoveryChecker, discovery_flood
from .json_echo import GOOD_JSON, JsonPeer, json_load, json_runaway
from .judge import judge_leaks, mib
from .reload import Reloader
from .udp_echo import UdpChecker, udp_flood

SAMPLE_EVERY = 5.0
PRINT_EVERY = 30.0
EXIT_MARGIN = 3.0  # beyond GRACE, for the daemon to exit after SIGTERM


class Clients:
    """The well-behaved clients and checkers, which must lose nothing."""

    def __init__(self, soak, daemon, notify, announcements):
        self.peers = [ChatPeer(soak, f"good{i + 1}", CHAT_RATE) for i in range(GOOD_CHAT)]
        self.probe = ChatPeer(soak, "probe", 0)  # talks only to check reloads
        self.jsons = [JsonPeer(soak, i + 1) for i in range(GOOD_JSON)]
        self.udp = UdpChecker(soak)
        self.disc = DiscoveryChecker(soak, daemon)
        self.announcements = announcements
        self.reloader = Reloader(soak, daemon, notify, self.probe, self.disc, announcements)

    def long_lived(self):
        """The TCP clients connected from start to end."""
        return self.peers + [self.probe] + self.jsons

    async def connect(self, addrs):
        for p in self.peers + [self.probe]:
            await p.join(addrs["chat"])
        for j in self.jsons:
            await j.open(addrs["json_echo"])


async def start(soak, args, daemon, notify, announcements):
    await daemon.start(notify.sock.getsockname())
    if not await notify.wait_ready(0, 10):
        raise RuntimeError("no READY=1 from the daemon")
    announcements.start(daemon)
    log(f"soak: pinetd pid {daemon.proc.pid} ({args.pinetd}), {args.minutes:g} min, warm-up "
        f"{soak.warmup:.0f} s; " + ", ".join(f"{k} {v[0]}:{v[1]}" for k, v in daemon.addrs.items())
        + f"; announcements to 127.255.255.255:{announcements.port}; work dir {args.work}"
        + (f"; chat bridged through {args.bridge_url}" if args.bridge_url else ""))


def spawn_load(soak, addrs, c):
    for p in c.peers:
        soak.spawn(p.talk(), f"talk-{p.name}")
    for j in c.jsons:
        soak.spawn(j.talk(), f"talk-{j.name}")
    soak.spawn(c.udp.run(addrs["udp_echo"]), "udp-checker")
    soak.spawn(c.disc.run(), "discovery-checker")
    soak.spawn(chat_load(soak, addrs["chat"]), "chat-load")
    soak.spawn(chat_runaway(soak, addrs["chat"]), "chat-runaway")
    soak.spawn(json_load(soak, addrs["json_echo"]), "json-load")
    soak.spawn(json_runaway(soak, addrs["json_echo"]), "json-runaway")
    soak.spawn(udp_flood(soak, addrs["udp_echo"]), "udp-flood")
    soak.spawn(discovery_flood(soak, addrs["discovery"]), "discovery-flood")
    soak.spawn(c.reloader.run(), "reloader")


def print_sample(s, soak, c):
    chat = sum(p.checked for p in c.peers)
    js = sum(p.checked for p in c.jsons)
    log(f"[{s['t']:6.0f}s] rss {mib(s['rss'])}  fds {s['fds']}  tcp {s['tcp']}  cpu {s['cpu']:.1f}s  "
        f"udp-drops {s['udp_drops']}  | STATUS {s['status']}  | checked: chat {chat} json {js} "
        f"udp {c.udp.checked} discovery {c.disc.checked} announcements {c.announcements.checked} "
        f"reloads {c.reloader.confirmed}  | failures {len(soak.failures)}")


async def sample_until_end(soak, daemon, notify, c):
    """A sample every SAMPLE_EVERY until the run's end (or the daemon's)."""
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
            print_sample(s, soak, c)
            next_print += PRINT_EVERY
        for client in c.long_lived():
            if client.conn.eof and not soak.stopping:
                soak.fail(f"{client.name} dropped", f"{client.name}, a well-behaved client, was "
                          f"disconnected ({client.conn.error!r})")
    return samples


async def stop_load(soak, c):
    """Stops the load; what the well-behaved clients sent must all arrive."""
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
    while time.monotonic() < deadline and (any(p.lost() for p in c.peers)
                                           or any(j.pending for j in c.jsons)):
        await asyncio.sleep(0.2)
    for p in c.peers:
        if p.lost():
            soak.fail(f"{p.name} lost", f"{p.name} never received (sender: lines) {p.lost()}")
    for j in c.jsons:
        if j.pending:
            soak.fail(f"{j.name} lost", f"{j.name}: {len(j.pending)} values got no reply")


async def idle_again(soak, daemon, notify, c, base):
    """Only the long-lived clients left: the fds must be back where they were."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        quiet = daemon.sample(notify)
        if quiet["fds"] <= base["fds"] and quiet["tcp"] == base["tcp"]:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(2.5)  # a fresh STATUS line
    quiet = daemon.sample(notify)
    if quiet["tcp"] != base["tcp"] or notify.clients() != len(c.long_lived()):
        soak.fail("clients left over", f"after the load: {quiet['tcp']} TCP connections "
                  f"(start: {base['tcp']}), STATUS {notify.status}")
    log(f"soak: load stopped; idle again: rss {mib(quiet['rss'])}, fds {quiet['fds']}, tcp "
        f"{quiet['tcp']}, STATUS {notify.status}")
    return quiet


async def terminate(soak, daemon, c):
    """SIGTERM: exit 0 within the grace, every long-lived client told and
    closed. Returns the exit status and the seconds it took."""
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
    for client in c.long_lived():
        await client.conn.wait_eof(3)
    for client in c.long_lived():
        if not client.shutdown_notice and client is not c.probe:
            soak.fail("shutdown notice", f"{client.name} was not told the server is shutting down")
        if not client.conn.eof:
            soak.fail("shutdown close", f"{client.name} was not closed at shutdown")
    await daemon.stderr_task
    return rc, took


def summary_lines(soak, daemon, c, final, rc, took, last_status):
    lines = [f"daemon CPU {final['cpu']:.1f} s over {final['t']:.0f} s; kernel UDP drops on its "
             f"sockets {final['udp_drops']}; log lines {dict(daemon.levels)}; SIGTERM: exit "
             f"{rc} in {took:.2f} s",
             f"last STATUS: {last_status}",
             f"reloads: {c.reloader.sent} SIGHUP, {c.reloader.confirmed} confirmed (READY=1), "
             f"checks {dict(c.reloader.checks)}"]
    for p in c.peers:
        by = collections.Counter("blast" if s.startswith("blast") else s for s in p.expect)
        lines.append(f"chat {p.name}: sent {soak.sent.get(p.name, 0)} lines, checked {p.checked} "
                     f"lines of well-behaved senders ({dict(by)} senders), {p.other} other lines")
    for j in c.jsons:
        lines.append(f"json {j.name}: sent {j.sent} values, checked {j.checked} replies")
    lines.append(f"udp echo checker: {c.udp.checked} datagrams checked, {c.udp.retries} sent again "
                 f"after 0.5 s without reply, {c.udp.late} late replies")
    lines.append(f"discovery checker: {c.disc.checked} replies checked, {c.disc.retries} probes sent again")
    lines.append(f"announcements: {c.announcements.checked} checked, seq gaps {c.announcements.gaps}")
    lines.append(f"blasters that left cleanly: {len(soak.blasters_done)} x {BLAST_LINES} lines")
    for k in sorted(soak.count):
        lines.append(f"hostile: {k}: {soak.count[k]}")
    return lines


def verdict(soak, summary):
    """Prints the summary and PASS or FAIL; returns the exit status."""
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


async def run(args):
    soak = Soak(args.minutes)
    notify = Notify(os.path.join(args.work, "notify.sock"))
    announcements = AnnouncementListener(soak)
    daemon = Daemon(soak, args.pinetd, args.work, announcements.port, args.bridge_url)
    summary = []
    try:
        await start(soak, args, daemon, notify, announcements)
        c = Clients(soak, daemon, notify, announcements)
        await c.connect(daemon.addrs)
        await asyncio.sleep(3)  # a STATUS line with the clients
        base = daemon.sample(notify)
        log(f"soak: with the {len(c.long_lived())} long-lived clients connected: "
            f"rss {mib(base['rss'])}, fds {base['fds']}, tcp {base['tcp']}, STATUS {notify.status}")

        spawn_load(soak, daemon.addrs, c)
        samples = await sample_until_end(soak, daemon, notify, c)
        await stop_load(soak, c)
        quiet = await idle_again(soak, daemon, notify, c, base)
        summary += judge_leaks(soak, samples, base, quiet)
        last_status = notify.status
        rc, took = await terminate(soak, daemon, c)
        final = samples[-1] if samples else base
        summary += summary_lines(soak, daemon, c, final, rc, took, last_status)
    finally:
        soak.running = False
        for t in soak.tasks:
            t.cancel()
        if daemon.alive():
            daemon.proc.kill()
            await daemon.proc.wait()
        notify.close()
    return verdict(soak, summary)


def main():
    parser = argparse.ArgumentParser(prog="python3 -m soak", description=package_doc.split("\n")[0])
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
