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

    let rs = dir.join("cargo/bin/mcp-proxy");
    let rs_version = std::fs::read_to_string(dir.join(".rust-version")).ok().map(|v| v.trim().to_string());
    out.push(match rs_version {
        Some(version) if rs.exists() => {
            let config = work.join("rust-mcp-proxy.toml");
            let text = format!(
                "[proxy]\nname = \"bench\"\nseparator = \"/\"\n\n[proxy.listen]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
                 [[backends]]\nname = \"echo\"\ntransport = \"stdio\"\ncommand = \"{echo}\"\n"
            );
            Ok(Peer {
                name: "Rust mcp-proxy",
                version,
                program: rs,
                args: vec!["--config".into(), config.display().to_string()],
                env: vec![("RUST_LOG", "warn".into())],
                endpoints: vec![Endpoint { transport: "streamable", path: "/" }],
                tool: "echo/echo",
                config: Some((config, text)),
            })
        }
        _ => Err("Rust mcp-proxy: not built (opt-in: scripts/bench-peers --rust)".to_string()),
    });
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
