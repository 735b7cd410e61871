#!/usr/bin/env python3
"""Idle legacy SSE clients for scripts/scale-run: one process holds up to ~15,000 sessions.

Each session is a real 2024-11-05 HTTP+SSE client: `GET /sse/NAME`, the `endpoint` event, an
`initialize` and `notifications/initialized` POSTed to the endpoint (the answer read on the
stream), then nothing but heartbeats. The process measures every heartbeat's lateness (the
gap since the stream's previous event or heartbeat, minus the configured interval) and its own
event-loop lag, so a late heartbeat can be told from a busy client.

When a stream ends (its instance was killed), the session resumes on another live instance
with `Last-Event-ID`, POSTs a `ping` there and waits for the answer on the new stream. Every
event id (`{session}-0-{seq}`) is checked: each seq exactly once, in order, none missing. A
share of the sessions (`--forget`) resumes from their first event instead of their last, so the
replay from Redis is checked under load (each replayed event must equal the original).

Driven over stdin/stdout by scripts/scale/orchestrate.py, one JSON object per line:
  {"cmd": "ramp"}            open the sessions (batched, rate-limited); answers when done
  {"cmd": "measure_start"}   reset the lateness histogram and the loop-lag figures
  {"cmd": "measure_stop"}    the histogram and loop lag since measure_start
  {"cmd": "dead", "instance": K}   K is gone: never resume there
  {"cmd": "retire", "instance": K, "count": C}   close C idle sessions held by instance K
  {"cmd": "stats"}           sessions by instance, recovery figures, errors
  {"cmd": "quit"}            close everything and exit
Standard library only (asyncio). Every wait has a timeout; every retry loop a count.
"""

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import zlib
from collections import Counter

from sse_client import MEASURING, STATS, PostPool, SseStream

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "scale-run", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
PING_ID = 1000


# How far a taken-over stream's numbering jumps (src/cluster/restore.rs, SEQ_GAP = 2^20), less
# what an owner may have sent without writing it to Redis.
TAKEOVER_JUMP = (1 << 20) - 4096

class Session:
    """One legacy SSE client session; `proto` is its current stream, if any."""

    __slots__ = ("idx", "inst", "sid", "endpoint", "last_seq", "crcs", "proto", "waiters", "answers",
                 "lost_at", "resumed_at", "sent_at", "attempts", "ping_id", "forget", "done", "retired", "from_inst")

    def __init__(self, idx, inst):
        self.idx = idx
        self.inst = inst
        self.sid = None
        self.endpoint = None
        self.last_seq = 0
        self.crcs = {}  # seq -> crc32 of the event's data, to check replays
        self.proto = None
        self.waiters = {}
        self.answers = Counter()
        self.lost_at = None
        self.resumed_at = None
        self.sent_at = None
        self.ping_id = PING_ID
        self.attempts = 0
        self.forget = False
        self.done = False
        self.retired = False
        self.from_inst = None

    def example(self, kind, what, data):
        """Keeps the first few duplicates, with what the session knew, for the report."""
        if len(STATS.examples) < 20:
            STATS.examples.append({"kind": kind, "session": self.sid, "seq_or_id": what, "last_seq": self.last_seq,
                                   "instance": self.inst, "from_instance": self.from_inst, "attempt": self.attempts,
                                   "done": self.done, "data": data[:160].decode(errors="replace")})

    def on_event(self, ev_id, event, data, replaying_upto):
        if ev_id:
            sid, _, seq = ev_id.rpartition("-")
            seq = int(seq)
            sid = sid.rsplit("-", 1)[0]
            if self.sid is None:
                self.sid = sid
            if seq <= replaying_upto[0]:
                # A replay the session asked for (resumed from an older id): must equal the original.
                STATS.forced_replayed += 1
                if self.crcs.get(seq) != zlib.crc32(data):
                    STATS.mismatched += 1
                if seq == replaying_upto[0]:
                    replaying_upto[0] = 0
                if seq != replaying_upto[1] + 1 and seq - replaying_upto[1] < TAKEOVER_JUMP:
                    STATS.gaps += 1
                replaying_upto[1] = seq
                return
            if seq <= self.last_seq:
                STATS.dups += 1
                self.example("seq again", seq, data)
                return
            # A session taken over numbers its events on from 2^20 past the last one in Redis
            # (so none shares a number with one the dead owner sent): that jump is no gap.
            if seq != self.last_seq + 1 and seq - self.last_seq < TAKEOVER_JUMP:
                STATS.gaps += 1
            if self.lost_at is not None and not self.done and b'"id":%d,' % self.ping_id not in data:
                # An event made while the stream was away, replayed before the ping's answer.
                STATS.replayed += 1
            self.last_seq = seq
            self.crcs[seq] = zlib.crc32(data)
        if event == b"endpoint":
            self.endpoint = data.decode()
            fut = self.waiters.pop("endpoint", None)
            if fut and not fut.done():
                fut.set_result(True)
            return
        try:
            msg = json.loads(data)
        except ValueError:
            STATS.errors["bad json event"] += 1
            return
        mid = msg.get("id") if isinstance(msg, dict) else None
        if mid is not None and "method" not in msg:
            self.answers[mid] += 1
            if self.answers[mid] > 1:
                STATS.dups += 1
                self.example("answer again", mid, data)
            fut = self.waiters.pop(mid, None)
            if fut and not fut.done():
                fut.set_result(msg)


class Generator:
    def __init__(self, args):
        self.a = args
        self.targets = [(h, int(p)) for h, p in (t.rsplit(":", 1) for t in args.targets.split(","))]
        self.dead = set()
        self.sessions = [Session(i, (args.first + i) % len(self.targets)) for i in range(args.sessions)]
        self.pools = {}
        self.lost = 0
        self.lost_by_instance = Counter()
        self.resume_tasks = set()
        self.recovered_ms = []
        self.resume_failed = Counter()
        self.out = sys.stdout

    def pool(self, inst):
        if inst not in self.pools:
            host, port = self.targets[inst]
            self.pools[inst] = PostPool(host, port, self.a.source_ip, self.a.post_conns)
        return self.pools[inst]

    async def stream(self, s, inst, last_event_id=None, replay_upto=0, timeout=15):
        host, port = self.targets[inst]
        loop = asyncio.get_running_loop()
        opened = loop.create_future()
        req = b"GET /sse/%s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n" % (
            self.a.server.encode(), host.encode(), port)
        if last_event_id:
            req += b"Last-Event-ID: %s\r\n" % last_event_id.encode()
        req += b"\r\n"
        transport, proto = await asyncio.wait_for(loop.create_connection(
            lambda: SseStream(s, self.a.interval, opened, self.on_stream_lost, replay_upto), host, port,
            local_addr=(self.a.source_ip, 0)), 10)
        s.proto = proto
        transport.write(req)
        try:
            await asyncio.wait_for(opened, timeout)
        except BaseException:
            s.proto = None
            transport.close()
            raise
        s.inst = inst
        return proto

    async def answer(self, s, key, timeout):
        fut = asyncio.get_running_loop().create_future()
        s.waiters[key] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            s.waiters.pop(key, None)

    async def open_once(self, s):
        endpoint = asyncio.get_running_loop().create_future()
        s.waiters["endpoint"] = endpoint
        await self.stream(s, s.inst)
        await asyncio.wait_for(endpoint, 15)
        if self.a.no_init:
            return
        answered = asyncio.ensure_future(self.answer(s, 1, 30))
        try:
            status, text = await self.pool(s.inst).post(s.endpoint, INIT)
            if status != 202:
                raise ConnectionError("initialize: %d %s" % (status, text[:200]))
            await answered
        finally:
            answered.cancel()
        status, text = await self.pool(s.inst).post(s.endpoint, INITIALIZED)
        if status != 202:
            raise ConnectionError("initialized: %d %s" % (status, text[:200]))

    async def open(self, s):
        """A new session, as a client would: up to three tries (a fresh session each time)."""
        for attempt in range(3):
            try:
                await self.open_once(s)
                return
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                if attempt == 2:
                    raise
                STATS.errors["open retried: %s" % (str(e)[:100] or type(e).__name__)] += 1
                p, s.proto = s.proto, None
                if p is not None and p.transport:
                    p.transport.close()
                s.sid, s.endpoint, s.last_seq, s.crcs, s.answers = None, None, 0, {}, Counter()
                await asyncio.sleep(0.5 * (attempt + 1))

    async def ramp(self):
        """Opens every session: at most `rate` a second, at most `batch` opening at once."""
        t0 = time.monotonic()
        counts = Counter()
        window = asyncio.Semaphore(max(1, self.a.batch))

        async def one(s):
            try:
                await self.open(s)
                counts["ok"] += 1
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                counts["failed"] += 1
                STATS.errors["open: %s" % (str(e)[:120] or type(e).__name__)] += 1
                s.retired = True
                if s.proto is not None and s.proto.transport:
                    s.proto.transport.close()
            finally:
                window.release()

        tasks = []
        for i, s in enumerate(self.sessions):
            if time.monotonic() - t0 > self.a.ramp_timeout:
                STATS.errors["ramp timeout"] += len(self.sessions) - i
                counts["failed"] += len(self.sessions) - i
                break
            due = t0 + i / self.a.rate - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
            await window.acquire()
            tasks.append(asyncio.ensure_future(one(s)))
        if tasks:
            await asyncio.wait(tasks, timeout=120)
        return {"event": "ramped", "ok": counts["ok"], "failed": counts["failed"],
                "seconds": round(time.monotonic() - t0, 2), "by_instance": self.by_instance()}

    def by_instance(self):
        c = Counter(s.inst for s in self.sessions if s.proto is not None and not s.retired)
        return {str(k): v for k, v in sorted(c.items())}

    def on_stream_lost(self, s):
        if s.retired:
            return
        now = time.monotonic()
        self.lost += 1
        self.lost_by_instance[s.inst] += 1
        s.lost_at = now
        s.from_inst = s.inst
        s.done = False
        task = asyncio.ensure_future(self.resume(s))
        self.resume_tasks.add(task)
        task.add_done_callback(self.resume_tasks.discard)

    async def resume(self, s):
        """Resume elsewhere with Last-Event-ID, then a ping answered on the new stream. Like a
        client behind a balancer: after the stream's `retry:` (with jitter), on one survivor,
        and on another only if that one refuses the connection."""
        n = len(self.targets)
        deadline = time.monotonic() + self.a.resume_timeout
        forget = (s.idx * 7919) % 1000 < self.a.forget * 1000 and s.last_seq > 1
        live = [i for i in range(n) if i not in self.dead and i != s.from_inst] or \
            [i for i in range(n) if i not in self.dead]
        pick = s.idx
        inst = live[pick % len(live)]
        await asyncio.sleep(random.uniform(0, self.a.reconnect_jitter))
        for attempt in range(self.a.resume_attempts):
            if time.monotonic() > deadline:
                break
            s.attempts = attempt + 1
            upto = s.last_seq if forget else 0
            last = "%s-0-%d" % (s.sid, 1 if forget else s.last_seq)
            ping_id = PING_ID + attempt
            s.ping_id = ping_id
            got = None
            try:
                s.sent_at = time.monotonic()
                await self.stream(s, inst, last, replay_upto=upto, timeout=self.a.resume_open_timeout)
                s.resumed_at = time.monotonic()
                got = asyncio.ensure_future(self.answer(s, ping_id, 30))
                status, text = await self.pool(inst).post(s.endpoint, {"jsonrpc": "2.0", "id": ping_id, "method": "ping"})
                if status != 202:
                    raise ConnectionError("ping: %d %s" % (status, text[:120]))
                await got
                s.done = True
                self.recovered_ms.append(time.monotonic())
                return
            except (OSError, ConnectionError, asyncio.TimeoutError) as e:
                self.resume_failed["attempt: %s" % (str(e)[:100] or type(e).__name__)] += 1
                if s.proto is not None and s.proto.transport:
                    p, s.proto = s.proto, None
                    p.transport.close()
                if isinstance(e, ConnectionRefusedError):
                    pick += 1
                    inst = live[pick % len(live)]
                await asyncio.sleep(min(0.25 * 2 ** attempt, 4.0))
            finally:
                if got is not None:
                    got.cancel()
        self.resume_failed["gave up"] += 1

    def retire(self, inst, count):
        closed = 0
        for s in reversed(self.sessions):
            if closed >= count:
                break
            if s.inst == inst and s.proto is not None and not s.retired:
                s.retired = True
                p, s.proto = s.proto, None
                p.transport.close()
                closed += 1
        return {"event": "retired", "instance": inst, "closed": closed}

    def stats(self):
        lost = [s for s in self.sessions if s.lost_at is not None]
        return {
            "event": "stats", "by_instance": self.by_instance(), "sessions": len(self.sessions),
            "open": sum(1 for s in self.sessions if s.proto is not None),
            "lost": len(lost), "recovered": sum(1 for s in lost if s.done),
            "recovered_at": self.recovered_ms,
            "sent_at": [s.sent_at for s in lost if s.done], "opened_at": [s.resumed_at for s in lost if s.done],
            "lag_max_ms": round(STATS.lag_max_all * 1000, 1), "first_lost_at": min((s.lost_at for s in lost), default=None),
            "resuming": len(self.resume_tasks),
            "unexpected_lost": {str(k): v for k, v in self.lost_by_instance.items() if k not in self.dead},
            "resume_failed": dict(self.resume_failed), "replayed": STATS.replayed,
            "forced_replayed": STATS.forced_replayed, "mismatched": STATS.mismatched, "gaps": STATS.gaps,
            "dups": STATS.dups, "dup_examples": STATS.examples, "errors": dict(STATS.errors),
            "attempts": dict(Counter(str(s.attempts) for s in lost)),
        }

    async def lag_probe(self):
        """The loop's own lateness: a 100 ms sleep that wakes late means the client is busy."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            late = time.monotonic() - t - 0.1
            STATS.lag_max_all = max(STATS.lag_max_all, late)
            if MEASURING[0]:
                STATS.lag[int(round(late * 1000))] += 1
                STATS.lag_max = max(STATS.lag_max, late)

    def say(self, obj):
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    async def control(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        asyncio.ensure_future(self.lag_probe())
        self.say({"event": "ready", "pid": __import__("os").getpid()})
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = json.loads(line)
            c = cmd.get("cmd")
            if c == "ramp":
                self.say(await self.ramp())
            elif c == "measure_start":
                STATS.reset_window()
                MEASURING[0] = True
                self.say({"event": "measuring"})
            elif c == "measure_stop":
                MEASURING[0] = False
                self.say({"event": "measured", "late_ms": {str(k): v for k, v in STATS.late.items()},
                          "beats": STATS.beats, "lag_ms": {str(k): v for k, v in STATS.lag.items()},
                          "lag_max_ms": round(STATS.lag_max * 1000, 1)})
            elif c == "dead":
                self.dead.add(int(cmd["instance"]))
                self.say({"event": "noted"})
            elif c == "retire":
                self.say(self.retire(int(cmd["instance"]), int(cmd["count"])))
            elif c == "stats":
                self.say(self.stats())
            elif c == "quit":
                return


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", required=True, help="host:port,... of the bridge instances")
    p.add_argument("--sessions", type=int, required=True, help="sessions this process holds")
    p.add_argument("--first", type=int, default=0, help="global index of the first session (spreads them)")
    p.add_argument("--server", default="echo")
    p.add_argument("--interval", type=float, default=5.0, help="the bridge's heartbeat interval, seconds")
    p.add_argument("--source-ip", default="127.0.0.1", help="local address (its own ephemeral ports)")
    p.add_argument("--batch", type=int, default=250, help="sessions opening at once, at most")
    p.add_argument("--rate", type=float, default=500.0, help="sessions opened per second at most")
    p.add_argument("--ramp-timeout", type=float, default=600.0)
    p.add_argument("--post-conns", type=int, default=16, help="keep-alive POST connections per instance")
    p.add_argument("--forget", type=float, default=0.1, help="share of resumes that ask for a replay")
    p.add_argument("--resume-attempts", type=int, default=20)
    p.add_argument("--resume-timeout", type=float, default=170.0, help="seconds a session keeps trying to resume")
    p.add_argument("--resume-open-timeout", type=float, default=60.0, help="seconds one resume waits for its stream")
    p.add_argument("--reconnect-jitter", type=float, default=1.0, help="a lost stream resumes after 0..this seconds")
    p.add_argument("--no-init", action="store_true", help="no initialize handshake")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.sessions + args.post_conns * len(args.targets.split(",")) + 64
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        sys.exit("idle_clients: %d sessions need %d open files; the limit is %d (hard %d): "
                 "use more processes or raise it with `ulimit -n`" % (args.sessions, need, soft, hard))
    asyncio.run(Generator(args).control())


if __name__ == "__main__":
    main()
