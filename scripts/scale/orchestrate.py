#!/usr/bin/env python3
"""The scale run of issue 15, driven by scripts/scale-run (which sets the open-file limit, the
hard deadline and the cleanup trap; run that, not this).

It starts its own Redis (a 3-primary Redis Cluster, or one redis-server with --single), N
release bridge instances sharing one stdio child per instance (`sharing = "shared"`), and
load-generator processes (scripts/scale/idle_clients.py, at most --per-generator sessions
each). Then:
  1. ramp: every session opens (GET /sse/echo, endpoint, initialize) in rate-limited batches;
  2. idle: after --settle seconds, a --window seconds window measures Redis commands per second
     (total_commands_processed over every node), bridge CPU (utime+stime from /proc), RSS per
     session, and heartbeat lateness as the clients saw it;
  3. kill -9 of one instance: its sessions resume on the others (Last-Event-ID, then a ping
     answered on the new stream); the time until the last is served, events replayed, and
     every event id checked (nothing lost, nothing twice);
  4. a short window after the failover: every session still gets its heartbeats.
Prints a report and writes it as JSON under target/scale/. Exit status 1 if a check failed.
"""

import argparse
import json
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

from report import checks, report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")
PROCS = []  # (name, Popen), everything this run started


def log(msg):
    print("[scale %s] %s" % (time.strftime("%H:%M:%S", time.gmtime()), msg), flush=True)


def fail(msg):
    log("error: " + msg)
    sys.exit(2)


# ---- processes ----------------------------------------------------------------------------------

def start(name, argv, run_dir, **kw):
    out = open(os.path.join(run_dir, name + ".log"), "ab")
    p = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, start_new_session=True, **kw)
    PROCS.append((name, p))
    with open(os.path.join(run_dir, "pids"), "a") as f:
        f.write("%d\n" % p.pid)
    return p


def stop_all():
    """Stops every process group this run started, newest first (generators, bridges, then Redis,
    so a bridge can still flush on its way out): SIGTERM, a bounded wait, then SIGKILL."""
    for group in (lambda n: n.startswith("gen-"), lambda n: not n.startswith(("gen-", "redis-")),
                  lambda n: n.startswith("redis-")):
        procs = [p for n, p in PROCS if group(n)]
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count, lo, hi, bus=False):
    """`count` consecutive free loopback ports in [lo, hi), (and port + 10000 for a cluster bus)."""
    step = 97
    for base in range(lo + (os.getpid() * 7) % 1000, hi - count, step):
        ports = list(range(base, base + count))
        if all(port_free(p) and (not bus or port_free(p + 10000)) for p in ports):
            return ports
    fail("no %d free ports in %d..%d" % (count, lo, hi))


def wait_until(what, check, timeout, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(every)
    fail("%s: not within %s s" % (what, timeout))


# ---- Redis -------------------------------------------------------------------------------------

def redis_cli(port, *args, timeout=20):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=timeout).stdout


def start_redis(a, run_dir):
    if a.single:
        ports = free_ports(1, 20000, 29000)
    else:
        ports = free_ports(3, 20000, 29000, bus=True)
    for p in ports:
        d = os.path.join(run_dir, "redis-%d" % p)
        os.makedirs(d, exist_ok=True)
        argv = ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", d, "--maxclients", "4096"]
        if not a.single:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "5000"]
        start("redis-%d" % p, argv, run_dir)
    for p in ports:
        wait_until("redis on %d" % p, lambda p=p: "PONG" in redis_cli(p, "ping", timeout=2), 20)
    if not a.single:
        out = subprocess.run(["redis-cli", "--cluster", "create", *["127.0.0.1:%d" % p for p in ports],
                              "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            fail("redis-cli --cluster create: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        for p in ports:
            wait_until("cluster_state:ok on %d" % p, lambda p=p: "cluster_state:ok" in redis_cli(p, "cluster", "info"), 30)
    return ports


def redis_stats(ports):
    total, inst, calls = 0, 0, Counter()
    for p in ports:
        for line in redis_cli(p, "info", "all").splitlines():
            k, _, v = line.partition(":")
            if k == "total_commands_processed":
                total += int(v)
            elif k == "instantaneous_ops_per_sec":
                inst += int(v)
            elif k.startswith("cmdstat_"):
                calls[k[8:]] += int(v.split(",")[0].split("=")[1])
    return {"total": total, "instantaneous": inst, "calls": calls, "t": time.monotonic()}


# ---- bridges -----------------------------------------------------------------------------------

def bridge_config(a, run_dir):
    path = os.path.join(run_dir, "bridge.toml")
    with open(path, "w") as f:
        f.write('[heartbeat]\ninterval = "%ss"\n\n[servers.echo]\ncommand = "%s"\nsharing = "shared"\n'
                % (a.heartbeat, a.echo))
    return path


def start_bridges(a, run_dir, redis_ports):
    help_text = subprocess.run([a.bin, "serve", "--help"], capture_output=True, text=True).stdout
    if a.single:
        redis_args = ["--redis", "redis://127.0.0.1:%d" % redis_ports[0]]
    else:
        if "--redis-cluster" not in help_text:
            fail("%s has no --redis-cluster yet (main before issue 15's Redis Cluster): run with --single" % a.bin)
        redis_args = ["--redis-cluster", ",".join("redis://127.0.0.1:%d" % p for p in redis_ports)]
    cfg = bridge_config(a, run_dir)
    ports = free_ports(a.instances, 29000, 32000)
    bridges = []
    for i, port in enumerate(ports):
        name = "s%d" % (i + 1)
        p = start(name, [a.bin, "serve", "--config", cfg, "--listen", "127.0.0.1:%d" % port,
                         "--instance-id", name, *redis_args], run_dir, env=dict(os.environ, RUST_LOG=a.rust_log))
        bridges.append({"name": name, "port": port, "proc": p})
    for b in bridges:
        url = "http://127.0.0.1:%d/readyz" % b["port"]
        wait_until("%s /readyz" % b["name"], lambda url=url: urllib.request.urlopen(url, timeout=2).status == 200, 30)
        b["rss0"] = proc_rss(b["proc"].pid)
    return bridges


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def nofile_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


# ---- generators ---------------------------------------------------------------------------------

class Generators:
    def __init__(self, a, run_dir, bridges):
        n = a.sessions
        count = max(1, math.ceil(n / a.per_generator))
        targets = ",".join("127.0.0.1:%d" % b["port"] for b in bridges)
        self.procs = []
        first = 0
        for k in range(count):
            size = n // count + (1 if k < n % count else 0)
            argv = [sys.executable, os.path.join(ROOT, "scripts/scale/idle_clients.py"), "--targets", targets,
                    "--sessions", str(size), "--first", str(first), "--interval", str(a.heartbeat),
                    "--source-ip", "127.0.%d.%d" % (1 + k // 200, 10 + k % 200), "--rate", str(a.rate / count),
                    "--forget", str(a.forget), "--batch", str(a.batch),
                    "--ramp-timeout", str(a.ramp_timeout)]
            self.procs.append(start("gen-%d" % k, argv, run_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
            first += size
        self.sel = selectors.DefaultSelector()
        self.bufs = {}
        for p in self.procs:
            os.set_blocking(p.stdout.fileno(), False)
            self.sel.register(p.stdout, selectors.EVENT_READ, p)
            self.bufs[p.pid] = b""
        self.replies(60, "ready")

    def send(self, obj, only=None):
        for p in (only or self.procs):
            p.stdin.write((json.dumps(obj) + "\n").encode())
            p.stdin.flush()

    def replies(self, timeout, what, only=None, tick=None):
        """One JSON line from each generator (in `only`), within `timeout` seconds; `tick()` every 15 s."""
        want = {p.pid for p in (only or self.procs)}
        got = {}
        deadline = time.monotonic() + timeout
        ticked = time.monotonic()
        while want - set(got):
            if tick and time.monotonic() - ticked > 15:
                ticked = time.monotonic()
                tick()
            left = deadline - time.monotonic()
            if left <= 0:
                fail("generators %s did not answer %s within %s s" % (sorted(want - set(got)), what, timeout))
            for key, _ in self.sel.select(min(left, 1.0)):
                p = key.data
                chunk = os.read(p.stdout.fileno(), 1 << 20)
                if not chunk:
                    fail("generator %d exited during %s (see its log)" % (p.pid, what))
                self.bufs[p.pid] += chunk
                while b"\n" in self.bufs[p.pid] and p.pid not in got:
                    line, self.bufs[p.pid] = self.bufs[p.pid].split(b"\n", 1)
                    got[p.pid] = json.loads(line)
        return [got[p.pid] for p in (only or self.procs) if p.pid in got]

    def ask(self, obj, timeout, only=None):
        self.send(obj, only)
        return self.replies(timeout, obj["cmd"], only)


LOG_MARKS = {"fenced": "instance fenced", "moved": "reason=moved", "records_lost": "whose record Redis had lost",
             "redis_write_failed": "redis write failed", "taken_over": "session taken over"}


def log_marks(a, bridges):
    """How often each instance logged the lines that matter here (fencing, takeovers, failures)."""
    out = {}
    for b in bridges:
        with open(os.path.join(a.run_dir, b["name"] + ".log"), errors="replace") as f:
            text = f.read()
        out[b["name"]] = {k: text.count(v) for k, v in LOG_MARKS.items()}
    return out


def marks_delta(before, after):
    return {k: sum(after[n][k] - before[n][k] for n in after) for k in LOG_MARKS}


def progress(a, bridges):
    """One line while the ramp runs: load, streams per instance (open files), fencing so far."""
    fds = [proc_fds(b["proc"].pid) for b in bridges if b["proc"].poll() is None]
    fenced = sum(m["fenced"] for m in log_marks(a, bridges).values())
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    log("  ramp: open files per instance %s (%d in all), load %s, fenced so far %d" % (fds, sum(fds), load, fenced))


def merged(dicts):
    c = Counter()
    for d in dicts:
        for k, v in d.items():
            c[int(k)] += v
    return c


def pct(hist, q):
    total = sum(hist.values())
    if not total:
        return None
    want = q * total
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= want:
            return k
    return max(hist)


def quantiles(values):
    v = sorted(values)
    if not v:
        return {"n": 0}
    q = lambda x: round(v[min(len(v) - 1, int(x * len(v)))], 3)
    return {"n": len(v), "p50": q(0.5), "p99": q(0.99), "max": round(v[-1], 3)}


def held(gens):
    per = Counter()
    for r in gens.ask({"cmd": "stats"}, 60):
        for k, v in r["by_instance"].items():
            per[int(k)] += v
    return per


# ---- the phases ---------------------------------------------------------------------------------

def measure(a, gens, bridges, redis_ports, window, live):
    """One idle window: Redis commands/s, bridge CPU, heartbeat lateness, RSS."""
    gens.ask({"cmd": "measure_start"}, 30)
    r0 = redis_stats(redis_ports)
    c0 = {b["name"]: proc_cpu(b["proc"].pid) for b in live}
    time.sleep(window)
    r1 = redis_stats(redis_ports)
    c1 = {b["name"]: proc_cpu(b["proc"].pid) for b in live}
    replies = gens.ask({"cmd": "measure_stop"}, 30)
    secs = r1["t"] - r0["t"]
    per = held(gens)
    late = merged(r["late_ms"] for r in replies)
    lag = merged(r["lag_ms"] for r in replies)
    cmds = (r1["total"] - r0["total"]) / secs
    calls = {k: round((r1["calls"][k] - r0["calls"].get(k, 0)) / secs, 1) for k in r1["calls"]}
    inst = {}
    for i, b in enumerate(bridges):
        if b in live:
            rss = proc_rss(b["proc"].pid)
            inst[b["name"]] = {"sessions": per.get(i, 0), "cpu_pct": round(100 * (c1[b["name"]] - c0[b["name"]]) / secs, 1),
                               "rss_mib": round(rss / 2**20, 1), "rss_start_mib": round(b["rss0"] / 2**20, 1),
                               "rss_per_session_kib": round(rss / 1024 / max(1, per.get(i, 0)), 1),
                               "added_rss_per_session_kib": round((rss - b["rss0"]) / 1024 / max(1, per.get(i, 0)), 1),
                               "fds": proc_fds(b["proc"].pid)}
    sessions = sum(per.values())
    expected = sessions * secs / a.heartbeat
    return {
        "seconds": round(secs, 1), "sessions": sessions, "instances": len(live),
        "redis_commands_per_sec": round(cmds, 1), "redis_commands_per_sec_per_instance": round(cmds / len(live), 1),
        "redis_instantaneous_ops_per_sec": r1["instantaneous"],
        "redis_calls_per_sec": {k: v for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v > 0},
        "bridge_cpu_pct_total": round(sum(v["cpu_pct"] for v in inst.values()), 1),
        "rss_per_session_kib": round(sum(proc_rss(b["proc"].pid) for b in live) / 1024 / max(1, sessions), 1),
        "instances_detail": inst,
        "heartbeats": sum(r["beats"] for r in replies), "heartbeats_expected": round(expected),
        "lateness_ms": {"p50": pct(late, 0.5), "p99": pct(late, 0.99), "max": max(late) if late else None},
        "client_loop_lag_ms": {"p50": pct(lag, 0.5), "p99": pct(lag, 0.99), "max": max(lag) if lag else None},
    }


def retire_for_headroom(a, gens, bridges, victim, per, log_lines):
    """Survivors must stay under their open-file limit once they hold the victim's sessions too:
    close the excess idle sessions on them first (and say so)."""
    survivors = [i for i in range(len(bridges)) if i != victim]
    share = math.ceil(per.get(victim, 0) / len(survivors))
    retired = {}
    for i in survivors:
        pid = bridges[i]["proc"].pid
        other = proc_fds(pid) - per.get(i, 0)
        room = (a.fd_limit or nofile_limit(pid)) - 500 - other
        excess = per.get(i, 0) + share - room
        if excess > 0:
            left = excess
            for r, p in zip(gens.ask({"cmd": "stats"}, 60), gens.procs):
                if left <= 0:
                    break
                n = min(left, r["by_instance"].get(str(i), 0))
                if n:
                    done = gens.ask({"cmd": "retire", "instance": i, "count": n}, 30, only=[p])[0]
                    left -= done["closed"]
            retired[bridges[i]["name"]] = excess - left
    if retired:
        log_lines.append("closed %s idle sessions on the survivors first, so that each stays under its open-file "
                         "limit (less 500) once it holds its share of the victim's %d" % (retired, per.get(victim, 0)))
    return retired


def kill_phase(a, gens, bridges, redis_ports, notes):
    victim = len(bridges) - 1 if a.victim is None else a.victim
    b = bridges[victim]
    per = held(gens)
    retired = retire_for_headroom(a, gens, bridges, victim, per, notes)
    if retired:
        time.sleep(2)
        per = held(gens)
    before = gens.ask({"cmd": "stats"}, 60)
    lost_before = sum(r["lost"] for r in before)
    on_victim = per.get(victim, 0)
    r0 = redis_stats(redis_ports)
    log("kill -9 %s (pid %d), holding %d sessions" % (b["name"], b["proc"].pid, on_victim))
    t_kill = time.monotonic()
    killed_wall = time.time()
    killed_utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(killed_wall)) + ".%03dZ" % (killed_wall % 1 * 1000)
    os.kill(b["proc"].pid, signal.SIGKILL)
    b["proc"].wait(timeout=10)
    gens.ask({"cmd": "dead", "instance": victim}, 30)
    deadline = t_kill + a.recovery_timeout
    timeline = []
    while True:
        time.sleep(1)
        st = gens.ask({"cmd": "stats"}, 60)
        lost = sum(r["lost"] for r in st) - lost_before
        rec = sum(r["recovered"] for r in st)
        resuming = sum(r["resuming"] for r in st)
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        timeline.append([round(time.monotonic() - t_kill, 1), lost, rec, load])
        log("  %.1f s: %d streams lost, %d served again, %d resuming" % (time.monotonic() - t_kill, lost, rec, resuming))
        if lost >= on_victim and resuming == 0:
            break
        if time.monotonic() > deadline:
            notes.append("recovery did not finish within %s s" % a.recovery_timeout)
            break
    r1 = redis_stats(redis_ports)
    times = [t - t_kill for r in st for t in r["recovered_at"]]
    firsts = [r["first_lost_at"] - t_kill for r in st if r["first_lost_at"]]
    failed = Counter()
    for r in st:
        failed.update(r["resume_failed"])
    result = {
        "victim": b["name"], "sessions_on_victim": on_victim, "retired_before_kill": retired,
        "streams_lost": lost, "served_again": rec, "gave_up": failed.get("gave up", 0),
        "all_served_after_s": round(max(times), 3) if times else None,
        "killed_at": killed_utc, "timeline_s_lost_served_load": timeline,
        "takeovers_logged_s": takeover_times(a, [x for x in bridges if x is not b], killed_wall),
        "resume_sent_s": quantiles([t - t_kill for r in st for t in r["sent_at"]]),
        "resume_stream_open_s": quantiles([t - t_kill for r in st for t in r["opened_at"]]),
        "client_loop_lag_max_ms": max(r["lag_max_ms"] for r in st),
        "served_again_s": quantiles(times), "first_loss_seen_s": round(min(firsts), 3) if firsts else None,
        "events_replayed": sum(r["replayed"] for r in st),
        "forced_replays_checked": sum(r["forced_replayed"] for r in st),
        "replay_mismatches": sum(r["mismatched"] for r in st),
        "gaps": sum(r["gaps"] for r in st), "duplicates": sum(r["dups"] for r in st),
        "duplicate_examples": [e for r in st for e in r["dup_examples"]][:20],
        "unexpected_losses": sum(sum(r["unexpected_lost"].values()) for r in st),
        "resume_attempts": dict(sum((Counter(r["attempts"]) for r in st), Counter())),
        "resume_errors": dict(failed.most_common(8)),
        "redis_commands_during": r1["total"] - r0["total"],
        "takeovers_logged": sum(open(os.path.join(a.run_dir, x["name"] + ".log"), errors="replace").read()
                                .count("taken over") for x in bridges if x is not b),
    }
    return result, victim


def takeover_times(a, bridges, since):
    """When the survivors logged each `session taken over`, in seconds after `since` (their own
    clocks: independent of how fast the clients read)."""
    import datetime
    out = []
    for b in bridges:
        with open(os.path.join(a.run_dir, b["name"] + ".log"), errors="replace") as f:
            for line in f:
                if "session taken over" in line:
                    stamp = line.split(" ", 1)[0].rstrip("Z")[:26]
                    t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
                    if t >= since:
                        out.append(t - since)
    return quantiles(out) | ({"first": round(min(out), 3)} if out else {})


def main():
    p = argparse.ArgumentParser(description="the issue 15 scale run (use scripts/scale-run)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--smoke", action="store_true", help="2 instances, 600 sessions, short windows")
    p.add_argument("--single", action="store_true", help="one redis-server (--redis) instead of a Redis Cluster")
    p.add_argument("--sessions", type=int)
    p.add_argument("--instances", type=int)
    p.add_argument("--per-generator", type=int, default=15000)
    p.add_argument("--heartbeat", type=float, help="seconds (5, or 2 with --smoke)")
    p.add_argument("--settle", type=float)
    p.add_argument("--window", type=float)
    p.add_argument("--rate", type=float, help="sessions opened per second, over all generators")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--ramp-timeout", type=float, help="seconds after which no more sessions open (480; 60 with --smoke)")
    p.add_argument("--forget", type=float, default=0.1, help="share of resumes that ask for a replay")
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--victim", type=int, help="index of the instance to kill (default: the last)")
    p.add_argument("--fd-limit", type=int, help="the open-file limit the headroom check assumes (default: the bridge's own)")
    p.add_argument("--recovery-timeout", type=float, default=180.0)
    p.add_argument("--rust-log", default="info")
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/mcp-bridge"))
    p.add_argument("--echo", default=os.path.join(ROOT, "target/release/mcp-echo-server"))
    a = p.parse_args()
    smoke = a.smoke
    a.sessions = a.sessions or (600 if smoke else 100_000)
    a.heartbeat = a.heartbeat or (2.0 if smoke else 5.0)
    a.ramp_timeout = a.ramp_timeout or (60 if smoke else 480)
    a.instances = a.instances or (2 if smoke else 6)
    a.settle = a.settle if a.settle is not None else (3 if smoke else 15)
    a.window = a.window or (10 if smoke else 30)
    a.rate = a.rate or (300 if smoke else 1000)
    # Lateness is measured beat to beat: let every stream send one heartbeat after the ramp first.
    a.settle = max(a.settle, a.heartbeat + 1)
    os.makedirs(a.run_dir, exist_ok=True)
    for f in (a.bin, a.echo):
        if not os.access(f, os.X_OK):
            fail("%s missing: cargo build --release" % f)

    def on_signal(sig, _):
        log("signal %d: stopping everything this run started" % sig)
        stop_all()
        sys.exit(3)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    # The newest commit of main this checkout contains (main itself may have moved on since).
    main_commit = subprocess.run(["git", "-C", ROOT, "merge-base", "HEAD", "main"], capture_output=True,
                                 text=True).stdout.strip()
    notes = []
    summary = {"config": {"sessions": a.sessions, "instances": a.instances, "redis": "single" if a.single else "cluster-3",
                          "heartbeat_s": a.heartbeat, "window_s": a.window, "rate": a.rate, "commit": commit,
                          "main": main_commit, "bin": a.bin,
                          "bin_built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(a.bin))), "smoke": smoke, "per_generator": a.per_generator, "forget": a.forget,
                          "nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0]},
               "notes": notes}
    try:
        redis_ports = start_redis(a, a.run_dir)
        log("Redis %s on %s" % ("single" if a.single else "cluster", redis_ports))
        bridges = start_bridges(a, a.run_dir, redis_ports)
        log("%d bridges on %s" % (len(bridges), [b["port"] for b in bridges]))
        gens = Generators(a, a.run_dir, bridges)
        log("%d load generators; ramping %d sessions at %s/s" % (len(gens.procs), a.sessions, a.rate))
        gens.send({"cmd": "ramp"})
        ramps = gens.replies(a.ramp_timeout + 150, "ramp", tick=lambda: progress(a, bridges))
        marks = [log_marks(a, bridges)]
        summary["ramp"] = {"ok": sum(r["ok"] for r in ramps), "failed": sum(r["failed"] for r in ramps),
                           "seconds": max(r["seconds"] for r in ramps)}
        log("ramp: %s" % summary["ramp"])
        time.sleep(a.settle)
        live = list(bridges)
        marks.append(log_marks(a, bridges))
        summary["idle"] = measure(a, gens, bridges, redis_ports, a.window, live)
        marks.append(log_marks(a, bridges))
        log("idle: %d sessions, Redis %s commands/s, lateness %s" % (summary["idle"]["sessions"],
            summary["idle"]["redis_commands_per_sec"], summary["idle"]["lateness_ms"]))
        if not a.no_kill and len(bridges) > 1:
            summary["kill"], victim = kill_phase(a, gens, bridges, redis_ports, notes)
            live = [b for i, b in enumerate(bridges) if i != victim]
            time.sleep(a.settle)
            summary["after"] = measure(a, gens, bridges, redis_ports, max(a.window / 2, 2 * a.heartbeat), live)
        marks.append(log_marks(a, bridges))
        summary["bridge_log"] = {"ramp": {k: sum(m[k] for m in marks[0].values()) for k in LOG_MARKS},
                                 "settle": marks_delta(marks[0], marks[1]), "idle": marks_delta(marks[1], marks[2]),
                                 "kill_and_after": marks_delta(marks[2], marks[3])}
        summary["generators"] = gens.ask({"cmd": "stats"}, 60)
        for g in summary["generators"]:
            for key in ("recovered_at", "sent_at", "opened_at"):
                g.pop(key, None)
        gens.send({"cmd": "quit"})
    finally:
        stop_all()
    summary["failed"] = checks(summary)
    out_dir = os.path.dirname(a.run_dir.rstrip("/"))
    name = "scale-%s%s.json" % (time.strftime("%Y%m%dT%H%M%S"), "-smoke" if smoke else "")
    for path in (os.path.join(out_dir, name), os.path.join(a.run_dir, "summary.json")):
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)
    report(summary)
    log("summary: %s" % os.path.join(out_dir, name))
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
