//! The peers measured beside the bridge, as installed by `scripts/bench-peers` into
//! bench/.peers: how to start each one in front of the same stdio echo server, bound to
//! 127.0.0.1, and which of its endpoints speak which transport.

use std::path::{Path, PathBuf};

/// A transport endpoint a peer exposes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `sse` or `streamable`.
    pub transport: &'static str,
    /// Path on the peer's port.
    pub path: &'static str,
}

/// One way to run one peer.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: &'static str,
    pub version: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub endpoints: Vec<Endpoint>,
    /// The echo tool's name as this peer publishes it.
    pub tool: &'static str,
    /// A config file to write before starting: (path, contents).
    pub config: Option<(PathBuf, String)>,
}

/// Every peer, or why it is missing (not installed). `port` is where it must listen.
pub fn all(dir: &Path, pins: &Path, echo: &Path, port: u16, work: &Path) -> Vec<Result<Peer, String>> {
    let echo = echo.display().to_string();
    let node_mod = dir.join("node_modules");
    let npm_version = |pkg: &str| -> Option<String> {
        let text = std::fs::read_to_string(node_mod.join(pkg).join("package.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("version")?.as_str().map(str::to_string)
    };
    let missing = |what: &str| format!("{what} is not installed: run scripts/bench-peers");
    let loopback = pins.join("listen-loopback.cjs").display().to_string();
    let mut out = Vec::new();

    let sg = node_mod.join("supergateway/dist/index.js");
    for (mode, transport, path, extra) in
        [("sse", "sse", "/sse", vec![]), ("streamableHttp", "streamable", "/mcp", vec!["--stateful".to_string()])]
    {
        let name = if mode == "sse" { "supergateway (SSE)" } else { "supergateway (Streamable, stateful)" };
        out.push(match npm_version("supergateway") {
            Some(version) if sg.exists() => {
                let mut args = vec!["--require".into(), loopback.clone(), sg.display().to_string()];
                args.extend(["--stdio".into(), echo.clone(), "--port".into(), port.to_string()]);
                args.extend(["--outputTransport".into(), mode.into(), "--logLevel".into(), "none".into()]);
                args.extend(extra);
                Ok(Peer {
                    name,
                    version,
                    program: "node".into(),
                    args,
                    env: vec![],
                    endpoints: vec![Endpoint { transport, path }],
                    tool: "echo",
                    config: None,
                })
            }
            _ => Err(format!("{name}: {}", missing("supergateway"))),
        });
    }

    let tsp = node_mod.join("mcp-proxy/dist/bin/mcp-proxy.mjs");
    out.push(match npm_version("mcp-proxy") {
        Some(version) if tsp.exists() => Ok(Peer {
            name: "TypeScript mcp-proxy",
            version,
            program: "node".into(),
            args: vec![
                tsp.display().to_string(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                echo.clone(),
            ],
            env: vec![],
            endpoints: vec![Endpoint { transport: "sse", path: "/sse" }, Endpoint { transport: "streamable", path: "/mcp" }],
            tool: "echo",
            config: None,
        }),
        _ => Err(format!("TypeScript mcp-proxy: {}", missing("npm mcp-proxy"))),
    });

    let py = dir.join("venv/bin/mcp-proxy");
    out.push(match py_version(dir) {
        Some(version) if py.exists() => Ok(Peer {
            name: "Python mcp-proxy",
            version,
            program: py,
            args: vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--log-level".into(),
                "WARNING".into(),
                echo.clone(),
            ],
            env: vec![],
            endpoints: vec![Endpoint { transport: "sse", path: "/sse" }, Endpoint { transport: "streamable", path: "/mcp" }],
            tool: "echo",
            config: None,
        }),
        _ => Err(format!("Python mcp-proxy: {}", missing("the PyPI mcp-proxy venv"))),
    });

    // The Rust mcp-proxy, as scripts/bench-peers builds it twice: its default features (otel,
    // oauth, openapi, websocket, ...) and --no-default-features, each in a root of its own.
    for (root, name) in
        [("cargo-default", "Rust mcp-proxy (default features)"), ("cargo", "Rust mcp-proxy (--no-default-features)")]
    {
        let rs = dir.join(root).join("bin/mcp-proxy");
        let version = std::fs::read_to_string(dir.join(root).join(".version")).ok().map(|v| v.trim().to_string());
        out.push(match version {
            Some(version) if rs.exists() => {
                let config = work.join(format!("rust-mcp-proxy-{root}.toml"));
                let text = format!(
                    "[proxy]\nname = \"bench\"\nseparator = \"/\"\n\n[proxy.listen]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
                     [[backends]]\nname = \"echo\"\ntransport = \"stdio\"\ncommand = \"{echo}\"\n"
                );
                Ok(Peer {
                    name,
                    version,
                    program: rs,
                    args: vec!["--config".into(), config.display().to_string()],
                    env: vec![("RUST_LOG", "warn".into())],
                    endpoints: vec![Endpoint { transport: "streamable", path: "/" }],
                    tool: "echo/echo",
                    config: Some((config, text)),
                })
            }
            _ => Err(format!("{name}: not built (opt-in: scripts/bench-peers --rust)")),
        });
    }
    out
}

fn py_version(dir: &Path) -> Option<String> {
    let lib = dir.join("venv/lib");
    for py in std::fs::read_dir(lib).ok()?.flatten() {
        for e in std::fs::read_dir(py.path().join("site-packages")).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(v) = name.strip_prefix("mcp_proxy-").and_then(|r| r.strip_suffix(".dist-info")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rust_builds_are_listed_each_from_its_own_root() {
        let dir = std::env::temp_dir().join(format!("mcp-bench-peers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rust = |all: &[Result<Peer, String>]| -> Vec<Result<(String, PathBuf), String>> {
            all.iter()
                .filter(|p| p.as_ref().map_or_else(|e| e.starts_with("Rust"), |p| p.name.starts_with("Rust")))
                .map(|p| p.as_ref().map(|p| (p.name.to_string(), p.program.clone())).map_err(Clone::clone))
                .collect()
        };
        let none = rust(&all(&dir, &dir, Path::new("/bin/echo"), 1, &dir));
        assert_eq!(none.len(), 2);
        assert!(none.iter().all(|r| r.as_ref().is_err_and(|e| e.contains("scripts/bench-peers --rust"))), "{none:?}");
        for root in ["cargo", "cargo-default"] {
            std::fs::create_dir_all(dir.join(root).join("bin")).unwrap();
            std::fs::write(dir.join(root).join("bin/mcp-proxy"), "").unwrap();
            std::fs::write(dir.join(root).join(".version"), "0.6.0\n").unwrap();
        }
        let both = rust(&all(&dir, &dir, Path::new("/bin/echo"), 1, &dir));
        let _ = std::fs::remove_dir_all(&dir);
        let both: Vec<(String, PathBuf)> = both.into_iter().map(Result::unwrap).collect();
        assert_eq!(both[0].0, "Rust mcp-proxy (default features)");
        assert!(both[0].1.ends_with("cargo-default/bin/mcp-proxy"));
        assert_eq!(both[1].0, "Rust mcp-proxy (--no-default-features)");
        assert!(both[1].1.ends_with("cargo/bin/mcp-proxy"));
    }
}
