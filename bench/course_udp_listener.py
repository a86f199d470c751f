"""The course's UDP listener, as the course writes it: one blocking loop,
answering each datagram with "Hello UDP Client". The baseline of
bench/udp_compare.sh; binds 127.0.0.1 only and prints the port it got."""
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 20001
server = socket.socket(family=socket.AF_INET, type=socket.SOCK_DGRAM)
server.bind(("127.0.0.1", port))
print(server.getsockname()[1], flush=True)
while True:
    message, address = server.recvfrom(1024)
    server.sendto(str.encode("Hello UDP Client"), address)
