#!/usr/bin/env python3
"""The page with 10,000 chat clients connected: how long the API and a
page's first snapshot take, and how long a line takes to reach a client
meanwhile. Starts the release build on 127.0.0.1 (chat 19998, web 18081)
with bench/web_ten_thousand.toml and stops it; needs an open-files limit of
20,000 or more (the script raises its soft limit to the hard one).

    python3 bench/web_ten_thousand.py
"""
import os
import socket, subprocess, time, resource, urllib.request
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
d = subprocess.Popen(['./target/release/pinetd', '--config', 'bench/web_ten_thousand.toml'], stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try: socket.create_connection(('127.0.0.1', 18081)).close(); break
        except OSError: time.sleep(0.05)
    socks = []
    for i in range(10000):
        socks.append(socket.create_connection(('127.0.0.1', 19998)))
    time.sleep(3)
    def timed(path, n=5):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            body = urllib.request.urlopen('http://127.0.0.1:18081' + path).read()
            ts.append(time.perf_counter() - t)
            time.sleep(0.1)
        ts.sort()
        return ts[len(ts)//2] * 1000, len(body)
    print('connections since  median %.1f ms, %d bytes' % timed('/api/v1/connections?service=chat&limit=100'))
    print('connections name   median %.1f ms, %d bytes' % timed('/api/v1/connections?service=chat&sort=name&limit=100'))
    print('status             median %.1f ms, %d bytes' % timed('/api/v1/status'))
    # the first snapshot of a stream
    ts = []
    for _ in range(5):
        s = socket.create_connection(('127.0.0.1', 18081))
        t = time.perf_counter()
        s.sendall(b'GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        buf = b''
        while b'\n\n' not in buf.split(b'event: snapshot', 1)[-1] if b'event: snapshot' in buf else True:
            buf += s.recv(65536)
        ts.append(time.perf_counter() - t); s.close(); time.sleep(0.3)
    ts.sort(); print('first snapshot     median %.1f ms, %d bytes' % (ts[2]*1000, len(buf)))
    # a page open: how long does one chat line take to reach a client (runtime not blocked)?
    page = socket.create_connection(('127.0.0.1', 18081)); page.sendall(b'GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    a, b = socks[0], socks[1]
    b.setblocking(True)
    # drain b
    b.settimeout(0.5)
    try:
        while b.recv(65536): pass
    except socket.timeout: pass
    lat = []
    for i in range(20):
        t = time.perf_counter(); a.sendall(b'ping %d\n' % i)
        got = b''
        b.settimeout(5)
        while (b'ping %d' % i) not in got: got += b.recv(65536)
        lat.append(time.perf_counter() - t); time.sleep(0.1)
    lat.sort(); print('a line to one of 10,000, page open: median %.1f ms, max %.1f ms' % (lat[10]*1000, lat[-1]*1000))
    page.close()
finally:
    d.terminate(); d.wait()
