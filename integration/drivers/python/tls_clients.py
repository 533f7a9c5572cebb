"""TLS clients and a TLS man in the middle, for the security tests.

  tls_clients.py direct HOST PORT USER PASSWORD
      psycopg on libpq >= 17: sslnegotiation=direct and channel_binding=require.
  tls_clients.py raw-hello HOST PORT ALPN
      A direct TLS start with Python's ssl module offering ALPN (or none when
      ALPN is "-"), then a StartupMessage: prints what the server did.
  tls_clients.py proxy CERT KEY UPSTREAM_HOST UPSTREAM_PORT
      Accepts PostgreSQL clients, answers their SSLRequest with TLS under its
      own certificate, and relays to the upstream over a second TLS session
      (as a TLS-terminating proxy does). Prints its port; runs until killed.
"""
import asyncio
import socket
import ssl
import struct
import sys

TIMEOUT = 10
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def startup_message(user):
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0velostream\0\0"
    return struct.pack("!i", len(body) + 4) + body


def direct(host, port, user, password):
    import psycopg

    assert psycopg.pq.version() >= 170000, f"libpq {psycopg.pq.version()} has no direct TLS"
    with psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="velostream",
        sslmode="require", sslnegotiation="direct", channel_binding="require",
        connect_timeout=TIMEOUT,
    ) as conn:
        value = conn.execute("SELECT x FROM (VALUES ('over-tls')) AS t(x)").fetchone()[0]
        print(f"direct {value} ssl_in_use={conn.pgconn.ssl_in_use}")


def raw_hello(host, port, alpn):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn != "-":
        context.set_alpn_protocols([alpn])
    with socket.create_connection((host, port), timeout=TIMEOUT) as tcp:
        try:
            tls = context.wrap_socket(tcp)
        except (ssl.SSLError, ConnectionError) as e:
            print(f"handshake refused: {e}")
            return
        tls.sendall(startup_message("alice"))
        try:
            reply = tls.recv(1)
        except (ssl.SSLError, ConnectionError) as e:
            reply = b""
            print(f"read failed: {e}")
        print("closed without a reply" if reply == b"" else f"server answered {reply!r}")


async def relay(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve_client(reader, writer, server_context, upstream):
    if await asyncio.wait_for(reader.readexactly(8), TIMEOUT) != SSL_REQUEST:
        writer.close()
        return
    writer.write(b"S")
    await writer.drain()
    await writer.start_tls(server_context)
    up_reader, up_writer = await asyncio.open_connection(*upstream)
    up_writer.write(SSL_REQUEST)
    assert await up_reader.readexactly(1) == b"S", "upstream has no TLS"
    upstream_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    upstream_context.check_hostname = False
    upstream_context.verify_mode = ssl.CERT_NONE
    await up_writer.start_tls(upstream_context)
    await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))


async def proxy(cert, key, upstream_host, upstream_port):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: serve_client(r, w, context, (upstream_host, upstream_port)),
        "127.0.0.1",
        0,
    )
    print(f"proxy listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "direct":
        direct(args[0], int(args[1]), args[2], args[3])
    elif command == "raw-hello":
        raw_hello(args[0], int(args[1]), args[2])
    elif command == "proxy":
        asyncio.run(proxy(args[0], args[1], args[2], int(args[3])))
    else:
        sys.exit(f"unknown command {command}")
