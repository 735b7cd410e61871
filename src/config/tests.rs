//! Unit tests of the configuration model: both file forms, defaults, and the errors that name
//! the file, the key and the reason.

use super::*;

fn toml(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "t.toml", false)
}

#[test]
fn toml_with_every_kind() {
    let c = toml(
        r#"
        listen = "127.0.0.1:9000"
        [heartbeat]
        interval = "2s"
        format = "event"
        [servers.a]
        command = "node"
        args = ["x.js"]
        env = { K = "v" }
        [servers.b]
        url = "http://127.0.0.1:1/mcp"
        [servers.c]
        url = "http://127.0.0.1:1/sse"
        type = "sse"
        heartbeat = { interval = "off" }
        "#,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.servers["a"].heartbeat.interval, Some(Duration::from_secs(2)));
    assert_eq!(c.servers["a"].heartbeat.format, HeartbeatFormat::Event);
    assert!(matches!(c.servers["b"].upstream, UpstreamSpec::StreamableHttp { .. }));
    assert!(matches!(c.servers["c"].upstream, UpstreamSpec::Sse { .. }));
    assert_eq!(c.servers["c"].heartbeat.interval, None);
    assert!(c.allowed_origins.is_empty());
}

#[test]
fn allowed_origins_are_checked() {
    let c = toml("allowed_origins = [\"https://app.example.com\", \"*\"]\n[servers.a]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.allowed_origins, ["https://app.example.com", "*"]);
    let e = toml("allowed_origins = [\"app.example.com\"]\n[servers.a]\ncommand = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("allowed_origins") && e.contains("app.example.com"), "{e}");
}

#[test]
fn pools_of_remote_instances() {
    let c = toml("[servers.p]\nurls = [\"http://a/mcp\", \"http://b/mcp\"]\nbalance = \"least-sessions\"\nhealth_check_interval = \"5s\"\n").unwrap();
    let pool = c.servers["p"].pool.clone().unwrap();
    assert_eq!(pool.urls.len(), 2);
    assert_eq!(pool.balance, Balance::LeastSessions);
    assert_eq!(pool.health_check_interval, Some(Duration::from_secs(5)));
    let e = toml("[servers.p]\nurl = \"http://a\"\nurls = [\"http://b\"]\n").unwrap_err().to_string();
    assert!(e.contains("urls"), "{e}");
    let e = toml("[servers.p]\nurls = [\"http://b\"]\nbalance = \"random\"\n").unwrap_err().to_string();
    assert!(e.contains("balance"), "{e}");
}

#[test]
fn mcp_servers_json() {
    let c = Config::parse(
        r#"{"mcpServers": {"e": {"command": "npx", "args": ["-y", "x"], "env": {"A": "1"}},
                           "r": {"url": "https://h/sse", "type": "sse"}}}"#,
        "c.json",
        true,
    )
    .unwrap();
    assert_eq!(c.servers.len(), 2);
    assert_eq!(c.sessions.heartbeat, Heartbeat::default());
}

#[test]
fn errors_name_file_key_and_reason() {
    let e = Config::parse(r#"{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}"#, "c.json", true).unwrap_err();
    assert!(e.to_string().contains("c.json") && e.to_string().contains("duplicate server name `a`"), "{e}");
    let e = toml("[servers.a]\nargs = []\n").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("servers.a") && e.contains("needs `command`"), "{e}");
    let e = toml("[servers.a]\ncommand = \"x\"\nbogus = 1\n").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("bogus"), "{e}");
    let e = toml("[servers.a]\ncommand = \"x\"\n[servers.a]\ncommand = \"y\"\n").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("a"), "{e}");
    let e = toml("[servers.\"../x\"]\ncommand = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("servers.../x"), "{e}");
    let e = toml("[heartbeat]\ninterval = \"soon\"\n[servers.a]\ncommand = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("heartbeat.interval"), "{e}");
    let e = toml("[sessions]\nidle_timeout = \"500000000000years\"\n[servers.a]\ncommand = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("sessions.idle_timeout") && e.contains("100 years"), "{e}");
}
