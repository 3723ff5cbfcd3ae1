"""An independent HTTP/3 client for the HTTP front's test: aioquic's QUIC and HTTP/3 layers.

    python h3_get.py URL CA_FILE OUT_FILE [RANGE]

GETs URL over HTTP/3 (ALPN h3, the server's certificate checked against CA_FILE), writes the
body to OUT_FILE and prints one JSON line with the status and headers. Exits 1 on any error.
"""

import asyncio
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters = {}
        self.answers = {}

    async def get(self, authority, path, extra):
        stream = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ] + [(k.encode(), v.encode()) for k, v in extra]
        self.h3.send_headers(stream_id=stream, headers=headers, end_stream=True)
        waiter = self._loop.create_future()
        self.waiters[stream] = waiter
        self.answers[stream] = {"headers": [], "body": bytearray()}
        self.transmit()
        return await asyncio.wait_for(waiter, timeout=20)

    def quic_event_received(self, event):
        for h3_event in self.h3.handle_event(event):
            answer = self.answers.get(h3_event.stream_id)
            if answer is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                answer["headers"] += h3_event.headers
            elif isinstance(h3_event, DataReceived):
                answer["body"] += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                self.waiters.pop(h3_event.stream_id).set_result(answer)


async def main(url, ca, out, byte_range):
    parsed = urlparse(url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = "localhost"
    extra = [("range", byte_range)] if byte_range else []
    async with connect(
        parsed.hostname, parsed.port, configuration=config, create_protocol=Client
    ) as client:
        answer = await client.get(parsed.netloc, parsed.path, extra)
    with open(out, "wb") as f:
        f.write(answer["body"])
    headers = {k.decode(): v.decode() for k, v in answer["headers"]}
    print(json.dumps({"status": int(headers.pop(":status")), "headers": headers}))


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(*sys.argv[1:4], (sys.argv[4:] or [None])[0]), 30))
    except Exception as e:  # a clear line for the test's failure message
        print(f"h3_get failed: {e!r}", file=sys.stderr)
        sys.exit(1)
