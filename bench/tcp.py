"""Raw TCP throughput helper for bench/tcp.sh.

    python3 tcp.py sink PORT
        Listens on 127.0.0.1:PORT. Each connection: read and discard until EOF, then send back
        the byte count (8 bytes, big-endian) and close.
    python3 tcp.py push SINK_PORT MIB [PROXY_PORT]
        Sends MIB MiB to the sink (through a CONNECT tunnel when PROXY_PORT is given), closes its
        side, waits for the sink's count and prints "<bytes> <seconds> <MB/s>". Exits 1 if the
        count is not what was sent.
"""
import socket
import sys
import threading
import time

CHUNK = 256 * 1024


def sink(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)

    def serve(conn):
        buffer = bytearray(1024 * 1024)
        view = memoryview(buffer)
        total = 0
        while True:
            n = conn.recv_into(view)
            if n == 0:
                break
            total += n
        conn.sendall(total.to_bytes(8, "big"))
        conn.close()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def push(sink_port, mib, proxy_port=None):
    total = mib * 1024 * 1024
    if proxy_port:
        conn = socket.create_connection(("127.0.0.1", proxy_port))
        target = f"127.0.0.1:{sink_port}"
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            byte = conn.recv(1)
            if not byte:
                sys.exit("proxy closed the connection during CONNECT")
            head += byte
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit(f"CONNECT failed: {head!r}")
    else:
        conn = socket.create_connection(("127.0.0.1", sink_port))
    # Not HTTP, not TLS: the first byte is 0x00.
    chunk = bytes(CHUNK)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        conn.sendall(chunk[:n] if n < CHUNK else chunk)
        sent += n
    conn.shutdown(socket.SHUT_WR)
    reply = b""
    while len(reply) < 8:
        part = conn.recv(8 - len(reply))
        if not part:
            break
        reply += part
    elapsed = time.perf_counter() - start
    received = int.from_bytes(reply, "big") if len(reply) == 8 else -1
    print(f"{received} {elapsed:.3f} {total / elapsed / 1e6:.1f}")
    sys.exit(0 if received == total else 1)


if __name__ == "__main__":
    if sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    else:
        push(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
