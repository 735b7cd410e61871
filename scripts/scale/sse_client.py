"""The wire side of scripts/scale/idle_clients.py: one SSE stream read as an asyncio protocol
(response head, chunked framing, SSE blocks, heartbeat lateness), keep-alive POSTs, and the
figures the process measures. Standard library only."""

import asyncio
import json
import time
from collections import Counter

HEADER_LIMIT = 16384


class Stats:
    """What the process measured: heartbeat lateness (ms buckets), loop lag, errors."""

    def __init__(self):
        self.late = Counter()
        self.beats = 0
        self.lag_max = 0.0
        self.lag_max_all = 0.0
        self.lag = Counter()
        self.errors = Counter()
        self.replayed = 0
        self.forced_replayed = 0
        self.gaps = 0
        self.dups = 0
        self.examples = []
        self.mismatched = 0

    def reset_window(self):
        self.late.clear()
        self.beats = 0
        self.lag.clear()
        self.lag_max = 0.0


STATS = Stats()
MEASURING = [False]


class SseStream(asyncio.Protocol):
    """One GET /sse stream: the response head, chunked framing, SSE blocks."""

    def __init__(self, session, interval, opened, on_lost, replay_upto=0):
        self.s = session
        self.on_lost = on_lost
        self.interval = interval
        self.opened = opened
        self.buf = bytearray()
        self.sse = bytearray()
        self.head = None
        self.status = 0
        self.chunked = False
        self.left = 0
        self.last = time.monotonic()
        self.last_beat = False
        self.transport = None
        self.closed = False
        self.replaying = [replay_upto, 1]

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf
        buf += data
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEADER_LIMIT:
                    self.fail("response head too long")
                return
            self.head = bytes(buf[:end])
            del buf[:end + 4]
            first = self.head.split(b"\r\n", 1)[0].split()
            self.status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
            self.chunked = b"transfer-encoding: chunked" in self.head.lower()
            if self.status != 200:
                self.fail("status %d" % self.status)
                return
            if not self.opened.done():
                self.opened.set_result(self)
        if self.chunked:
            self.dechunk()
        else:
            self.sse += buf
            buf.clear()
        self.blocks()

    def dechunk(self):
        buf = self.buf
        while buf:
            if self.left == 0:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buf[:line_end]).split(b";")[0] or b"0", 16)
                del buf[:line_end + 2]
                if size == 0:
                    return
                self.left = size + 2
            take = min(len(buf), self.left)
            body = min(take, max(self.left - 2, 0))
            if body:
                self.sse += buf[:body]
            del buf[:take]
            self.left -= take

    def blocks(self):
        sse = self.sse
        while True:
            end = sse.find(b"\n\n")
            if end < 0:
                return
            block = bytes(sse[:end])
            del sse[:end + 2]
            now = time.monotonic()
            if block.startswith(b":"):
                if b"heartbeat" in block and MEASURING[0]:
                    STATS.beats += 1
                    # Beat to beat only: after an event the bridge's timer restarts when it sent
                    # the event, which a busy client may have read late.
                    if self.last_beat:
                        late = now - self.last - self.interval
                        STATS.late[int(round(late * 1000))] += 1
                self.last = now
                self.last_beat = True
                continue
            ev_id = event = None
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"id:"):
                    ev_id = line[3:].strip().decode()
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
            if data:
                self.last = now
                self.last_beat = False
                self.s.on_event(ev_id, event, b"\n".join(data), self.replaying)

    def fail(self, why):
        STATS.errors["stream: " + why] += 1
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport:
            self.transport.close()

    def connection_lost(self, exc):
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the response"))
            return
        if self.s.proto is self:
            self.s.proto = None
            self.on_lost(self.s)


async def read_chunked(reader):
    """A chunked response body (the bridge's error answers may be chunked)."""
    body = b""
    for _ in range(10000):
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return body
        body += (await reader.readexactly(size + 2))[:-2]
    raise ValueError("too many chunks")


class PostPool:
    """A few keep-alive connections per instance for the sessions' POSTs."""

    def __init__(self, host, port, src, size):
        self.host, self.port, self.src = host, port, src
        self.queue = asyncio.Queue()
        self.workers = [asyncio.ensure_future(self.worker()) for _ in range(size)]

    async def post(self, path, body, timeout=30.0):
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((path, json.dumps(body).encode(), fut))
        return await asyncio.wait_for(fut, timeout)

    async def worker(self):
        reader = writer = None
        while True:
            path, body, fut = await self.queue.get()
            if fut.done():
                continue
            for attempt in range(2):
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(
                            self.host, self.port, local_addr=(self.src, 0)), 10)
                    writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), self.port,
                                                                   len(body), body))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                    status = int(head.split(None, 2)[1])
                    length = 0
                    lower = head.lower()
                    for line in lower.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            length = int(line[15:])
                    if b"transfer-encoding: chunked" in lower:
                        text = await asyncio.wait_for(read_chunked(reader), 30)
                    else:
                        text = await asyncio.wait_for(reader.readexactly(length), 30) if length else b""
                    if b"connection: close" in head.lower():
                        writer.close()
                        writer = None
                    if not fut.done():
                        fut.set_result((status, text))
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
                    if writer is not None:
                        writer.close()
                    writer = None
                    if attempt == 1 and not fut.done():
                        fut.set_exception(ConnectionError("POST: %r" % e))
