"""The scale run's verdict and printed report, from its JSON summary (scripts/scale/orchestrate.py)."""

import os


def too_few_beats(window, interval_s):
    """Whether a window's streams got fewer heartbeats than on-time beats give. Each stream gets
    floor(W/h) or ceil(W/h) beats in a window of W seconds, by its phase; streams whose timers
    were reset together (the ones resumed after the kill) share a phase, so the total can sit
    well below sessions * W/h with every beat on time. Too few is below 90 % of that mean and
    below the floor every stream gets."""
    floor = window["sessions"] * int(window["seconds"] // interval_s)
    return window["heartbeats"] < 0.9 * window["heartbeats_expected"] and window["heartbeats"] < floor


def checks(summary):
    bad = []
    idle = summary["idle"]
    interval = summary["config"]["heartbeat_s"]
    if idle["sessions"] < summary["config"]["sessions"]:
        bad.append("only %d of %d sessions open" % (idle["sessions"], summary["config"]["sessions"]))
    if too_few_beats(idle, interval):
        bad.append("heartbeats: %d of ~%d expected" % (idle["heartbeats"], idle["heartbeats_expected"]))
    k = summary.get("kill")
    if k:
        if k["served_again"] != k["sessions_on_victim"] or k["streams_lost"] != k["sessions_on_victim"]:
            bad.append("kill: %d of %d sessions served again (%d streams lost)"
                       % (k["served_again"], k["sessions_on_victim"], k["streams_lost"]))
        for key in ("gaps", "duplicates", "replay_mismatches", "unexpected_losses", "gave_up"):
            if k[key]:
                bad.append("kill: %s = %d" % (key, k[key]))
    for phase, m in summary.get("bridge_log", {}).items():
        for key in ("fenced", "moved", "records_lost", "redis_write_failed"):
            if m[key]:
                bad.append("bridge logs during %s: %s %d" % (phase, key, m[key]))
    after = summary.get("after")
    if after and too_few_beats(after, interval):
        bad.append("after the kill: heartbeats %d of ~%d expected" % (after["heartbeats"], after["heartbeats_expected"]))
    return bad


def report(s):
    c, idle = s["config"], s["idle"]
    lines = ["", "scale run: %d sessions, %d instances, Redis %s, heartbeat %ss; %s at %s (main %s)"
             % (c["sessions"], c["instances"], c["redis"], c["heartbeat_s"], os.path.basename(c["bin"]),
                c["commit"][:10], c["main"][:10]),
             "ramp: %d opened, %d failed, %.1f s" % (s["ramp"]["ok"], s["ramp"]["failed"], s["ramp"]["seconds"])]
    for name, w in (("idle", idle), ("after the kill", s.get("after"))):
        if not w:
            continue
        lines += [
            "%s (%s s, %d sessions on %d instances):" % (name, w["seconds"], w["sessions"], w["instances"]),
            "  Redis commands/s: %s total, %s per instance (INFO instantaneous_ops_per_sec: %s); top: %s"
            % (w["redis_commands_per_sec"], w["redis_commands_per_sec_per_instance"], w["redis_instantaneous_ops_per_sec"],
               ", ".join("%s %s" % kv for kv in list(w["redis_calls_per_sec"].items())[:5])),
            "  bridge CPU: %s%% of a core in total; per instance: %s" % (w["bridge_cpu_pct_total"],
               ", ".join("%s %s%%" % (k, v["cpu_pct"]) for k, v in w["instances_detail"].items())),
            "  RSS per session: %s KiB (RSS / sessions held); added since start: %s KiB"
            % (w["rss_per_session_kib"], ", ".join("%s %s" % (k, v["added_rss_per_session_kib"])
                                                   for k, v in w["instances_detail"].items())),
            "  heartbeat lateness ms: p50 %s, p99 %s, max %s (%d heartbeats, ~%d expected); client loop lag ms: p50 %s, p99 %s, max %s"
            % (w["lateness_ms"]["p50"], w["lateness_ms"]["p99"], w["lateness_ms"]["max"], w["heartbeats"],
               w["heartbeats_expected"], w["client_loop_lag_ms"]["p50"], w["client_loop_lag_ms"]["p99"],
               w["client_loop_lag_ms"]["max"]),
        ]
    k = s.get("kill")
    if k:
        lines += [
            "kill -9 %s holding %d sessions: %d streams lost, %d served again; all served again after %s s "
            "(per session: %s); events replayed %d; forced replays checked %d; gaps %d, duplicates %d, mismatches %d"
            % (k["victim"], k["sessions_on_victim"], k["streams_lost"], k["served_again"], k["all_served_after_s"],
               k["served_again_s"], k["events_replayed"], k["forced_replays_checked"], k["gaps"], k["duplicates"],
               k["replay_mismatches"]),
            "  resume attempts per session: %s; errors on the way: %s" % (k["resume_attempts"], k["resume_errors"]),
            "  the survivors logged their takeovers at %s s after the kill" % (k["takeovers_logged_s"],),
            "  the successful resume's GET sent at %s s, its stream open at %s s (after the kill at %s); client loop lag max %s ms"
            % (k["resume_sent_s"], k["resume_stream_open_s"], k["killed_at"], k["client_loop_lag_max_ms"]),
        ]
    if s.get("bridge_log"):
        lines.append("bridge log lines by phase: %s" % s["bridge_log"])
    lines += ["note: " + n for n in s["notes"]]
    lines.append("verdict: " + ("ok" if not s["failed"] else "FAILED: " + "; ".join(s["failed"])))
    print("\n".join(lines), flush=True)
