//! The helpers of `mcp-bench run`: one point's load and meter, the `perf stat` pass, the
//! checks every point must pass, and the stand-alone commands the report lists.

use std::path::Path;
use std::time::Duration;

use super::Settings;
use crate::cost::{Meter, Tree};
use crate::procs::shell_word;
use crate::stats::{self, Point};
use crate::throughput::{self, Load, Target};

pub(super) fn load(sessions: usize, duration: Duration, tool: &str, meter: Option<Meter>) -> Load {
    Load {
        sessions,
        duration,
        size: 100,
        tool: tool.to_string(),
        timeout: Duration::from_secs(10),
        client_per_session: false,
        meter,
    }
}

pub(super) fn metered(tree: &Tree, perf: bool) -> Option<Meter> {
    Some(Meter { tree: tree.clone(), perf })
}

/// `repeat` runs at `k` sessions with `perf stat` counting the tree's syscalls; the median.
pub(super) async fn perf_pass(target: &Target, k: usize, s: &Settings, tool: &str, tree: &Tree) -> Point {
    let mut pts = Vec::new();
    for _ in 0..s.repeat {
        pts.push(throughput::run(target, &load(k, s.duration, tool, metered(tree, true))).await.point());
    }
    stats::median(&pts)
}

/// A point ran (answers came back) with no wrong delivery and no error.
pub(super) fn check(failures: &mut Vec<String>, what: &str, p: &Point) {
    if p.requests == 0 {
        failures.push(format!("{what}: no request completed ({})", p.samples.join("; ")));
    }
    if p.wrong != 0 {
        failures.push(format!("{what}: {} replies reached the wrong session", p.wrong));
    }
    if p.errors != 0 {
        failures.push(format!("{what}: {} errors ({})", p.errors, p.samples.join("; ")));
    }
    // The CPU figures come from a process tree that was found: a metered target whose tree
    // came back empty (a walk gone wrong, a target already dead) measured nothing.
    if p.requests > 0 {
        match &p.cost {
            Some(c) if c.processes == 0 => failures.push(format!("{what}: no process found to meter")),
            Some(_) => {}
            None => failures.push(format!("{what}: the run was not metered")),
        }
    }
}

pub(super) fn generator_command(target: &Target, s: &Settings, tool: &str, who: &str) -> String {
    let ks = s.sessions.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
    let (transport, dest) = match target {
        Target::Sse(u) => ("sse", format!("--url {}", u.path_url())),
        Target::Streamable(u) => ("streamable", format!("--url {}", u.path_url())),
        Target::Stateless(u) => ("stateless", format!("--url {}", u.path_url())),
        Target::Forwarded { init, rest } => {
            ("streamable", format!("--url {} --forward-url {}", init.path_url(), rest.path_url()))
        }
        Target::Stdio { command, .. } => ("stdio", format!("--command {}", shell_word(&command.display().to_string()))),
    };
    let tool = if tool == "echo" { String::new() } else { format!(" --tool {tool}") };
    format!(
        "target/release/mcp-bench throughput --transport {transport} {dest} --sessions {ks} --duration {} --repeat {}{tool}    # {who}",
        humantime::format_duration(s.duration),
        s.repeat
    )
}

pub(super) fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

pub(super) fn bridge_config(echo: &Path) -> String {
    let echo = echo.display();
    format!(
        "# Written by mcp-bench. Detached sessions end after 10 s so the children of finished\n\
         # benchmark sessions do not pile up (the default is 5 min).\n\
         [sessions]\nidle_timeout = \"10s\"\n\n\
         [servers.echo]\ncommand = \"{echo}\"\n\n\
         [servers.echo-json]\ncommand = \"{echo}\"\njson_response = true\n\n\
         # One child for every session, as the Rust mcp-proxy runs its stdio backend.\n\
         [servers.echo-shared]\ncommand = \"{echo}\"\njson_response = true\nsharing = \"shared\"\n"
    )
}
