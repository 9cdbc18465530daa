"""WebSocket echo server and round-trip client for bench/websocket.sh (loopback only). Not named
websocket.py: that would shadow the websocket-client package it imports.

    python3 ws_echo.py serve PORT            echo every message back (websockets, no compression)
    python3 ws_echo.py client URL COUNT SIZE  COUNT round trips of SIZE-byte text messages over one
                                                connection; prints messages per second
"""
import sys
import time


def serve(port):
    import asyncio
    from websockets.asyncio.server import serve as ws_serve

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        async with ws_serve(echo, "127.0.0.1", port, compression=None, max_size=None):
            await asyncio.Future()

    asyncio.run(main())


def client(url, count, size):
    import websocket

    connection = websocket.create_connection(url, timeout=10)
    payload = "x" * size
    for _ in range(min(500, count)):  # warm-up, not measured
        connection.send(payload)
        connection.recv()
    start = time.perf_counter()
    for _ in range(count):
        connection.send(payload)
        if connection.recv() != payload:
            raise SystemExit("echo mismatch")
    elapsed = time.perf_counter() - start
    connection.close()
    print(f"{count / elapsed:.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
