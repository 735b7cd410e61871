//! Fuzz target: configuration loading (`Config::parse`, TOML and `mcpServers` JSON). Any text
//! must be accepted or refused with an error, never a panic; what is accepted must build the
//! server's auth and origin checks (the router `expect`s that) and have server names that are
//! safe in URL paths.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::{valid_name, Config};

/// The bridge adds configured durations to `Instant::now()` (deadlines, heartbeats, expiry) and
/// to each other: an accepted duration must not overflow there.
fn usable(what: &str, d: Duration) {
    let far = d.checked_add(Duration::from_secs(3600)).and_then(|d| Instant::now().checked_add(d));
    assert!(far.is_some(), "`{what}` = {d:?} was accepted but overflows a deadline");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for is_json in [false, true] {
        let Ok(config) = Config::parse(&text, "fuzz", is_json) else { continue };
        assert!(config.servers.keys().all(|n| valid_name(n)), "an unsafe server name was accepted");
        let s = &config.sessions;
        usable("sessions.idle_timeout", s.idle_timeout);
        usable("sessions.event_log_age", s.event_log_age);
        usable("sessions.retry", s.retry);
        usable("sessions.drain_grace", s.drain_grace);
        s.max_stream_lifetime.into_iter().for_each(|d| usable("sessions.max_stream_lifetime", d));
        s.heartbeat.interval.into_iter().for_each(|d| usable("heartbeat.interval", d));
        config.limits.request_timeout.into_iter().for_each(|d| usable("limits.request_timeout", d));
        usable("limits.header_read_timeout", config.limits.header_read_timeout);
        for server in config.servers.values() {
            server.heartbeat.interval.into_iter().for_each(|d| usable("servers.*.heartbeat.interval", d));
        }
        let _ = mcp_bridge::fuzzing::Policy::new(config.listen, &config.allowed_origins);
        if let Some(auth) = config.auth.clone() {
            let names: Vec<&str> = config.servers.keys().map(String::as_str).collect();
            assert!(mcp_bridge::fuzzing::Auth::from_model(auth, &names).is_ok(), "a validated [auth] does not build");
        }
    }
});
