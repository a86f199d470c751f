"""The course's JSON client, unchanged but for the port (argv[1]; the course
hard-codes 9000): one object with one sendall(), no newline, one recv(1024),
json.loads."""
import json
import socket
import sys

HOST = "127.0.0.1"
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000

data = {"name": "jung", "count": 3}
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.connect((HOST, PORT))
    s.sendall(json.dumps(data).encode("utf-8"))
    received = s.recv(1024)
    reply = json.loads(received.decode("utf-8"))
    print("Received:", reply)
