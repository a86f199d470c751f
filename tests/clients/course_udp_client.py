"""The course's UDP client, unchanged but for the port (argv[1]; the course
hard-codes 20001): send "Hello UDP Listener", wait 5 s for one reply."""
import socket
import sys

msgFromClient = "Hello UDP Listener"
bytesToSend = str.encode(msgFromClient)
serverAddressPort = ("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 20001)
bufferSize = 1024

UDPClientSocket = socket.socket(family=socket.AF_INET, type=socket.SOCK_DGRAM)
UDPClientSocket.settimeout(5)
UDPClientSocket.sendto(bytesToSend, serverAddressPort)
msgFromServer = UDPClientSocket.recvfrom(bufferSize)
msg = "Message from Server {}".format(msgFromServer[0])
print(msg)
