"""The soak test's driver (bench/soak.sh starts it with `python3 -m soak`):
runs pinetd for a while under mixed load, on 127.0.0.0/8 only, and judges it.

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

One module per kind of load (chat, json_echo, udp_echo, discovery with the
announcer, reload), the daemon and its samples in daemon, what they share in
common, the leak rules in judge, and the run from start to verdict in
__main__. The leak and pass/fail rules are in bench/soak.sh's header.
"""
