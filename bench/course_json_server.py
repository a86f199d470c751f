"""The course's JSON server, as the course writes it: one client at a time,
one recv(1024) per object, json.loads, send the same data back. The baseline
of bench/json_compare.sh (one connection, one object in flight: the only load
it survives); binds 127.0.0.1 only and prints the port it got."""
import json
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
print(server.getsockname()[1], flush=True)
while True:
    conn, addr = server.accept()
    with conn:
        while True:
            data = conn.recv(1024)
            if not data:
                break
            obj = json.loads(data.decode("utf-8"))
            conn.sendall((json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8"))
