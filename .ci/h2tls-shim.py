#!/usr/bin/env python3
"""TLS in front of a cleartext HTTP/2 test client: listens on 127.0.0.1:LISTEN and carries
each connection's bytes over TLS (ALPN h2 only) to 127.0.0.1:TARGET, so that httpwg, which
speaks h2c only, tests the gateway's h2-over-TLS listener. Usage: h2tls-shim.py LISTEN TARGET"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def carry(target, client_r, client_w):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target, ssl=ctx, server_hostname="localhost")
    except (ConnectionError, OSError):
        client_w.close()
        return
    assert up_w.get_extra_info("ssl_object").selected_alpn_protocol() == "h2", "the gateway did not choose h2"
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    client_w.close()
    up_w.close()


async def main(listen, target):
    server = await asyncio.start_server(lambda r, w: carry(target, r, w), "127.0.0.1", listen, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
