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

// ---- outbound TLS (config/tls.rs) and session sizes (config/sessions.rs) in a whole file

#[test]
fn bad_pem_files_are_config_errors_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("mcpb-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.join("missing.pem");
    let e = toml(&format!("[servers.r]\nurl = \"https://h/mcp\"\nca_file = {:?}\n", junk)).unwrap_err().to_string();
    assert!(e.contains("servers.r.ca_file") && e.contains("junk.pem") && e.contains("no PEM certificate"), "{e}");
    let e = toml(&format!("[servers.r]\nurl = \"https://h/mcp\"\nca_file = {:?}\n", missing)).unwrap_err().to_string();
    assert!(e.contains("missing.pem") && e.contains("cannot read"), "{e}");
    let e = toml(&format!("[servers.r]\nurl = \"https://h/mcp\"\nclient_cert = {:?}\n", junk)).unwrap_err().to_string();
    assert!(e.contains("go together"), "{e}");
    let e = toml(&format!("[servers.r]\ncommand = \"x\"\nca_file = {:?}\n", junk)).unwrap_err().to_string();
    assert!(e.contains("remote"), "{e}");
    let e = toml("[servers.r]\nurl = \"https://h/mcp\"\nproxy = \"::nope\"\n").unwrap_err().to_string();
    assert!(e.contains("servers.r.proxy"), "{e}");
    let e = toml(&format!("redis = \"rediss://h\"\nredis_ca_file = {:?}\n[servers.a]\ncommand = \"x\"\n", junk)).unwrap_err();
    assert!(e.to_string().contains("redis_ca_file") && e.to_string().contains("junk.pem"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_proxy_alone_gets_its_own_client_in_both_forms() {
    let c = toml("[servers.r]\nurl = \"https://h/mcp\"\nproxy = \"http://127.0.0.1:3128\"\n").unwrap();
    assert_eq!(c.servers["r"].outbound.as_ref().unwrap().options.proxy.as_deref(), Some("http://127.0.0.1:3128"));
    let c =
        Config::parse(r#"{"mcpServers": {"r": {"url": "https://h/sse", "type": "sse", "proxy": "http://p:1"}}}"#, "c.json", true)
            .unwrap();
    assert!(c.servers["r"].outbound.is_some());
    assert!(toml("[servers.r]\nurl = \"https://h/mcp\"\n").unwrap().servers["r"].outbound.is_none());
}

#[test]
fn the_keys_in_a_config_file() {
    let parse = |sessions: &str| {
        let text = format!("[sessions]\n{sessions}\n[servers.a]\ncommand = \"x\"\n");
        Config::parse(&text, "t.toml", false)
    };
    let c = parse("event_log_bytes = \"8MiB\"\nmax_event_log_memory = 1073741824").unwrap();
    assert_eq!((c.sessions.event_log_bytes, c.sessions.max_event_log_memory), (8 << 20, 1 << 30));
    let d = parse("").unwrap();
    assert_eq!(
        (d.sessions.event_log_bytes, d.sessions.max_event_log_memory),
        (sessions::EVENT_LOG_BYTES, sessions::MAX_EVENT_LOG_MEMORY)
    );
    let e = parse("event_log_bytes = \"8 parsecs\"").unwrap_err().to_string();
    assert!(e.contains("event_log_bytes") && e.contains("unknown unit"), "{e}");
    let e = parse("event_log_bytes = \"8MiB\"\nmax_event_log_memory = \"1MiB\"").unwrap_err().to_string();
    assert!(e.contains("sessions.max_event_log_memory"), "{e}");
}
