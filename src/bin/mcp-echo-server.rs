//! A small, fast stdio MCP server for tests, examples and benchmarks: `echo` returns its
//! message, `add` sums two numbers. Synchronous on purpose: one line in, one line out.
//!
//! Modes for the pipe tests (`tests/upstream_pipes.rs`):
//! - `--serial`: reads one line, writes its whole answer with blocking writes, and only then
//!   reads the next line, like most simple servers. The default loop does the same today; the
//!   flag pins that behaviour so the tests do not depend on how the default is tuned.
//! - `--stop-reading-after N`: answers the first `N` lines, then never reads stdin again (a
//!   hung server; `0` never reads at all).

use std::io::{self, BufRead, BufWriter, Write};

use serde_json::{json, Value};

const VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// `pub(crate)`: `mcp-bridge echo-server` runs this too (src/main.rs includes this file), so the
/// subcommand's own name is skipped with the program's.
pub(crate) fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).skip_while(|a| a == "echo-server").collect();
    let stop_after = match args.iter().position(|a| a == "--stop-reading-after") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Some(n),
            None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "--stop-reading-after needs a number")),
        },
        None => None,
    };
    // `--serial` needs nothing more than the loop below: it reads the next line only once the
    // answer to this one is written and flushed (blocking while the pipe is full).
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut lines = stdin.lines();
    let mut read = 0usize;
    loop {
        if stop_after.is_some_and(|n| read >= n) {
            // Hung: alive, holding its pipes, reading nothing.
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        let Some(line) = lines.next() else { break };
        read += 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Array(batch)) => {
                let replies: Vec<Value> = batch.iter().filter_map(handle).collect();
                (!replies.is_empty()).then_some(Value::Array(replies))
            }
            Ok(msg) => handle(&msg),
            Err(e) => {
                Some(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}}))
            }
        };
        if let Some(reply) = reply {
            serde_json::to_writer(&mut out, &reply)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
    }
    Ok(())
}

fn handle(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let method = msg.get("method")?.as_str()?;
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-03-26");
            let version = if VERSIONS.contains(&asked) { asked } else { VERSIONS[VERSIONS.len() - 1] };
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mcp-echo-server", "version": env!("CARGO_PKG_VERSION")}
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": [
            {"name": "echo", "description": "Returns its message.",
             "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
            {"name": "add", "description": "Adds a and b.",
             "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}
        ]}),
        "tools/call" => {
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            match params.get("name").and_then(Value::as_str) {
                Some("echo") => {
                    let text = args.get("message").and_then(Value::as_str).unwrap_or("");
                    json!({"content": [{"type": "text", "text": text}]})
                }
                Some("add") => {
                    let sum = args.get("a").and_then(Value::as_f64).unwrap_or(0.0)
                        + args.get("b").and_then(Value::as_f64).unwrap_or(0.0);
                    json!({"content": [{"type": "text", "text": sum.to_string()}]})
                }
                other => {
                    return Some(
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("unknown tool {other:?}")}}),
                    )
                }
            }
        }
        _ => {
            return Some(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("method not found: {method}")}}),
            )
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}
