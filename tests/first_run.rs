//! The README's first command, `serve --config examples/mcp-bridge.toml`, on the shipped
//! example: `check-config` accepts it, and served (only its listen address and the echo
//! server's binary path changed) it answers `initialize` and an echo call on `/mcp/echo` and
//! `/sse/echo`, and its `npx` server starts where Node comes from nvm or Homebrew (a directory
//! not on the child's minimal PATH).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{free_port, require_node, root, toml_str, Bridge, Legacy, McpSession, TempDir};

const EXAMPLE: &str = "examples/mcp-bridge.toml";

/// What the offline `npx` writes to its stderr (which the bridge logs), so the test knows it,
/// and not the system's `/usr/bin/npx`, served.
const MARKER: &str = "offline npx stand-in from the nvm-like directory";

/// The example as shipped, with `listen` on a free port and the echo server run by the binary
/// under test (the example names `target/release/mcp-bridge`, which a debug test run has not
/// built). Everything else stays as shipped; each replaced line must be there.
fn example_config() -> String {
    let shipped = std::fs::read_to_string(root().join(EXAMPLE)).expect("read the example config");
    let listen = "listen = \"127.0.0.1:8051\"";
    let echo = "command = \"target/release/mcp-bridge\"";
    assert_eq!(shipped.matches(listen).count(), 1, "the example's listen line changed: update this test");
    assert_eq!(shipped.matches(echo).count(), 1, "the example's echo command changed: update this test");
    shipped
        .replace(listen, &format!("listen = \"127.0.0.1:{}\"", free_port()))
        .replace(echo, &format!("command = {}", toml_str(env!("CARGO_BIN_EXE_mcp-bridge"))))
}

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .args(["check-config", EXAMPLE])
        .current_dir(root())
        .output()
        .expect("run mcp-bridge check-config");
    assert!(
        out.status.success(),
        "check-config {EXAMPLE}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_echo_on_both_transports() {
    let bridge = Bridge::start(&example_config(), &[]).await;
    let modern = McpSession::open(&bridge.url("/mcp/echo")).await;
    assert_eq!(modern.echo(2, "first run, streamable").await, "first run, streamable");
    let mut legacy = Legacy::open(&bridge.base(), "echo").await;
    assert_eq!(legacy.echo(2, "first run, sse").await, "first run, sse");
}

/// The first directory on this process's PATH holding an executable `name`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A directory laid out as nvm or Homebrew lay out Node: `node` (here named `node-nvm`, so the
/// system's `/usr/bin/node` cannot stand in for it) and, beside it, an `npx` that is a script
/// run by `#!/usr/bin/env node-nvm`. This `npx` works offline: it checks it got the example's
/// arguments, then serves the server-everything installed in tests/clients.
fn nvm_like_dir(dir: &Path) {
    let node = on_path("node").unwrap_or_else(|| panic!("node is not on PATH: install Node.js 20 (scripts/test-deps)"));
    std::os::unix::fs::symlink(&node, dir.join("node-nvm")).expect("symlink node-nvm");
    let stdio = root().join("tests/clients/node_modules/@modelcontextprotocol/server-everything/dist/transports/stdio.js");
    assert!(stdio.is_file(), "{} is missing: run scripts/test-deps", stdio.display());
    let npx = format!(
        "#!/usr/bin/env node-nvm\n\
         const args = process.argv.slice(2).join(' ');\n\
         if (args !== '-y @modelcontextprotocol/server-everything') {{ console.error('unexpected npx args: ' + args); process.exit(2); }}\n\
         console.error('{MARKER}');\n\
         import({});\n",
        serde_json::to_string(&format!("file://{}", stdio.display())).expect("JSON string")
    );
    let path = dir.join("npx");
    std::fs::write(&path, npx).expect("write npx");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod npx");
}

/// The example's `everything` server is `npx -y @modelcontextprotocol/server-everything`. The
/// real npx needs the network, so the bridge's PATH leads with an nvm-like directory whose
/// offline `npx` stands in for it (see [`nvm_like_dir`]); the config is the example's, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_npx_server_starts_with_node_from_the_bridges_path() {
    require_node();
    let nvm = TempDir::new("nvm-bin");
    nvm_like_dir(nvm.path());
    let path = format!("{}:{}", nvm.path().display(), std::env::var("PATH").unwrap_or_default());
    let bridge = Bridge::start_env(&example_config(), &[], &[("PATH", &path)]).await;
    let s = McpSession::open(&bridge.url("/mcp/everything")).await;
    let text = s.echo(2, "via npx").await;
    assert!(text.contains("via npx"), "server-everything's echo: {text}\n{}", bridge.log());
    assert!(bridge.log().contains(MARKER), "the npx of the bridge's PATH served, not another one\n{}", bridge.log());
}
