//! HTTPS upstreams: nginx (started here) terminates TLS with a certificate from a CA this
//! test makes with `openssl`, in front of server-everything in `streamableHttp` and `sse`
//! mode. The official TypeScript and Python SDK clients run the full scenario through the
//! bridge with `ca_file`; without it (or with `SSL_CERT_FILE`) the error names the
//! certificate; with `ssl_verify_client on`, `client_cert`/`client_key` are needed.

mod common;
mod support_nginx;

use std::process::{Command, Stdio};

use common::scenario::assert_full;
use common::{http, post_initialize, responses, run_client, toml_str, Bridge, Everything, Pki, Sdk, TempDir};
use futures_util::future::join_all;
use serde_json::Value;
use support_nginx::Nginx;

/// nginx terminating TLS in front of `backend`; with `verify_client`, it asks for a client
/// certificate signed by the test CA. On 127.0.0.3 it shows the expired certificate.
fn tls_nginx(pki: &Pki, backend: u16, verify_client: bool) -> Nginx {
    let p = |f: &str| pki.path(f).display().to_string();
    let verify = if verify_client {
        format!("ssl_client_certificate {};\n        ssl_verify_client on;", p("ca.pem"))
    } else {
        String::new()
    };
    Nginx::start_with(|port| {
        format!(
            r#"worker_processes 1;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log logs/access.log;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        listen 127.0.0.2:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {verify}
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
    server {{
        listen 127.0.0.3:{port} ssl;
        ssl_certificate {expired_cert};
        ssl_certificate_key {expired_key};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}
}}
"#,
            cert = p("server.pem"),
            key = p("server.key"),
            expired_cert = p("expired.pem"),
            expired_key = p("expired.key"),
        )
    })
}

fn https(nginx: &Nginx, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", nginx.port)
}

/// A Streamable `initialize` to `/mcp/{server}`: every message of the answer, as text.
async fn initialize(bridge: &Bridge, server: &str) -> String {
    let resp = post_initialize(&http(), &bridge.url(&format!("/mcp/{server}"))).await;
    let answers = responses(resp).await;
    serde_json::to_string(&answers).expect("JSON")
}

fn initialized(answer: &str) -> bool {
    serde_json::from_str::<Vec<Value>>(answer)
        .is_ok_and(|a| a.iter().any(|m| m["id"] == 1 && m["result"]["serverInfo"]["name"].is_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_full_scenario_through_https_streamable_and_sse_upstreams_with_ca_file() {
    let pki = Pki::new();
    let (streamable, sse) = (Everything::start("streamableHttp").await, Everything::start("sse").await);
    let (n1, n2) = (tls_nginx(&pki, streamable.port, false), tls_nginx(&pki, sse.port, false));
    let config = format!(
        "[servers.https]\nurl = {}\nca_file = {}\n[servers.https-sse]\nurl = {}\ntype = \"sse\"\nca_file = {}\n",
        toml_str(&https(&n1, "/mcp")),
        pki.toml("ca.pem"),
        toml_str(&https(&n2, "/sse")),
        pki.toml("ca.pem"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let (mcp, legacy) = (bridge.url("/mcp/https"), bridge.url("/sse/https-sse"));
    let runs = join_all([
        run_client(Sdk::Ts, "streamable", &mcp, &[]),
        run_client(Sdk::Py, "streamable", &mcp, &[]),
        run_client(Sdk::Ts, "sse", &legacy, &[]),
        run_client(Sdk::Py, "sse", &legacy, &[]),
    ])
    .await;
    for run in &runs {
        assert_full(run);
    }
    // nginx saw the bridge's requests, so the traffic went through TLS.
    let access = n1.access_log() + &n2.access_log();
    assert!(access.contains("POST /mcp") && access.contains("POST /message"), "nginx access logs:\n{access}");
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_file_the_error_names_the_certificate_and_ssl_cert_file_is_trusted() {
    let pki = Pki::new();
    let everything = Everything::start("streamableHttp").await;
    let nginx = tls_nginx(&pki, everything.port, false);
    let config = format!("[servers.https]\nurl = {}\n", toml_str(&https(&nginx, "/mcp")));
    // 127.0.0.2 is not in the certificate's subjectAltName.
    let wrong_name = format!("https://127.0.0.2:{}/mcp", nginx.port);
    let wrong = format!("[servers.wrong-name]\nurl = {}\nca_file = {}\n", toml_str(&wrong_name), pki.toml("ca.pem"));

    // A port that speaks plain HTTP: the handshake fails, and the error says how.
    let plain = format!("[servers.plain]\nurl = {}\n", toml_str(&format!("https://127.0.0.1:{}/mcp", everything.port)));

    // 127.0.0.3 shows a certificate from the right CA that expired in 2020.
    let expired_url = format!("https://127.0.0.3:{}/mcp", nginx.port);
    let expired = format!("[servers.expired]\nurl = {}\nca_file = {}\n", toml_str(&expired_url), pki.toml("ca.pem"));

    let bridge = Bridge::start(&format!("{config}{wrong}{plain}{expired}"), &[]).await;
    let answer = initialize(&bridge, "plain").await;
    assert!(answer.contains("TLS: received corrupt message"), "the client's error names the failed handshake: {answer}");
    let answer = initialize(&bridge, "https").await;
    let want = "TLS: invalid peer certificate: UnknownIssuer";
    assert!(answer.contains(want) && answer.contains(&https(&nginx, "/mcp")), "the client's error names the cause: {answer}");
    bridge.wait_for_log_line("naming the TLS cause", std::time::Duration::from_secs(10), |l| l.contains(want)).await;
    let answer = initialize(&bridge, "wrong-name").await;
    let want = r#"TLS: invalid peer certificate: certificate not valid for name \"127.0.0.2\""#;
    assert!(answer.contains(want), "the client's error names the mismatch: {answer}");
    let answer = initialize(&bridge, "expired").await;
    let want = "TLS: invalid peer certificate: certificate expired";
    assert!(answer.contains(want) && answer.contains(&expired_url), "the client's error names the expiry: {answer}");
    bridge.wait_for_log_line("naming the expiry", std::time::Duration::from_secs(10), |l| l.contains(want)).await;
    drop(bridge);

    // The same config with SSL_CERT_FILE naming the CA: the platform store is replaced by it.
    let ca = pki.path("ca.pem").display().to_string();
    let bridge = Bridge::start_env(&config, &[], &[("SSL_CERT_FILE", &ca)]).await;
    let answer = initialize(&bridge, "https").await;
    assert!(initialized(&answer), "with SSL_CERT_FILE the handshake succeeds: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_with_client_cert_and_key_and_fails_without() {
    let pki = Pki::new();
    let everything = Everything::start("streamableHttp").await;
    let nginx = tls_nginx(&pki, everything.port, true);
    let url = toml_str(&https(&nginx, "/mcp"));
    let ca = pki.toml("ca.pem");
    let config = format!(
        "[servers.mtls]\nurl = {url}\nca_file = {ca}\nclient_cert = {}\nclient_key = {}\n\
         [servers.nocert]\nurl = {url}\nca_file = {ca}\n",
        pki.toml("client.pem"),
        pki.toml("client.key"),
    );
    let bridge = Bridge::start(&config, &[]).await;

    let refused = initialize(&bridge, "nocert").await;
    assert!(refused.contains("No required SSL certificate was sent"), "nginx's refusal reaches the client: {refused}");

    let run = run_client(Sdk::Py, "streamable", &bridge.url("/mcp/mtls"), &[]).await;
    assert_full(&run);
    let access = nginx.access_log();
    assert!(access.contains(" 400 ") && access.contains(" 200 "), "nginx refused one and served the other:\n{access}");
}

/// The `mcpServers` JSON form takes the same keys, and `check-config` reports a bad PEM by
/// key and file.
#[test]
fn mcp_servers_json_takes_the_tls_keys_and_check_config_names_a_bad_pem() {
    let pki = Pki::new();
    let dir = TempDir::new("tls-config");
    let check = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write config");
        let out =
            Command::new(env!("CARGO_BIN_EXE_mcp-bridge")).arg("check-config").arg(&file).output().expect("run check-config");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let p = |f: &str| serde_json::to_string(&pki.path(f).display().to_string()).expect("JSON string");
    let good = format!(
        r#"{{"mcpServers": {{"r": {{"url": "https://127.0.0.1:1/mcp", "ca_file": {}, "client_cert": {}, "client_key": {}, "proxy": "http://127.0.0.1:3128"}}}}}}"#,
        p("ca.pem"),
        p("client.pem"),
        p("client.key"),
    );
    let (ok, out) = check("good.json", &good);
    assert!(ok, "{out}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").expect("write junk");
    let bad =
        format!(r#"{{"mcpServers": {{"r": {{"url": "https://h/mcp", "ca_file": {}}}}}}}"#, serde_json::to_string(&junk).unwrap());
    let (ok, out) = check("bad.json", &bad);
    assert!(!ok && out.contains("servers.r.ca_file") && out.contains(&junk.display().to_string()), "{out}");
    let (ok, out) = check(
        "key.toml",
        &format!(
            "[servers.r]\nurl = \"https://h/mcp\"\nclient_cert = {}\nclient_key = {}\n",
            pki.toml("client.pem"),
            pki.toml("ca.pem")
        ),
    );
    assert!(!ok && out.contains("servers.r.client_key"), "a certificate is not a key: {out}");
}

/// A redis-server that speaks only TLS (`--port 0 --tls-port P`), with the test CA's server
/// certificate; killed on drop.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl TlsRedis {
    fn start(pki: &Pki) -> TlsRedis {
        let dir = TempDir::new("redis-tls");
        let port = common::free_port();
        let p = |f: &str| pki.path(f).display().to_string();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &p("server.pem"), "--tls-key-file", &p("server.key"), "--tls-ca-cert-file", &p("ca.pem")])
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("missing redis-server ({e}): run scripts/test-deps (apt-get install redis-server)"));
        let mut me = TlsRedis { child, port, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = me.child.try_wait() {
                let out = std::mem::replace(&mut me.child, Command::new("true").spawn().expect("spawn true")).wait_with_output();
                let out = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
                panic!("redis-server --tls-port exited ({status}); does this build support TLS?\n{out}");
            }
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen on its TLS port {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        me
    }

    /// `redis-cli` over TLS, trusting the test CA.
    fn cli(&self, pki: &Pki, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                &pki.path("ca.pem").display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cluster mode on a `rediss://` Redis: with `redis_ca_file` the bridge joins and writes its
/// sessions there; without it, it refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_redis_ca_file_and_without() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let servers = common::echo_server("echo");
    let config = format!("redis = {}\nredis_ca_file = {}\n{servers}", toml_str(&url), pki.toml("ca.pem"));
    let bridge = Bridge::start(&config, &[]).await;
    let session = common::McpSession::open(&bridge.url("/mcp/echo")).await;
    assert_eq!(session.echo(2, "over rediss").await, "over rediss");
    let keys = redis.cli(&pki, &["--scan", "--pattern", "mcpb:*"]);
    assert!(keys.contains(&session.id), "the session's keys are in the TLS Redis: {keys}");
    drop(bridge);

    // Without redis_ca_file the test CA is unknown: the bridge exits naming the certificate.
    let dir = TempDir::new("rediss-noca");
    let file = dir.path().join("mcp-bridge.toml");
    std::fs::write(&file, format!("redis = {}\n{servers}", toml_str(&url))).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", common::free_port()), "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp-bridge");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the bridge kept running without a way to verify the Redis certificate");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("cannot join the cluster") && text.contains("UnknownIssuer"), "{text}");
}

/// A forward proxy on a loopback port that records the targets it reaches. (No proxy server
/// is installed here; this one does only what a proxy must: `CONNECT` for HTTPS, then bytes;
/// for plain HTTP, an absolute-form request (`POST http://host:port/path HTTP/1.1`), sent on
/// in origin form, then bytes.)
struct ConnectProxy {
    port: u16,
    targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = targets.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut reader = tokio::io::BufReader::new(sock);
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_line(&mut line)).await {
                            Ok(Ok(n)) if n > 0 && line != "\r\n" => head.push_str(&line),
                            _ => break,
                        }
                    }
                    if let Some(target) = head.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()).map(str::to_string) {
                        seen.lock().unwrap().push(target.clone());
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else { return };
                        let mut client = reader.into_inner();
                        if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                        return;
                    }
                    // `METHOD http://host:port/path HTTP/1.1`: the body may already be buffered.
                    let Some((method, rest)) = head.split_once(" http://") else { return };
                    let Some((authority, rest)) = rest.split_once('/') else { return };
                    let target = authority.to_string();
                    seen.lock().unwrap().push(format!("http://{target}"));
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else { return };
                    let buffered = reader.buffer().to_vec();
                    let mut client = reader.into_inner();
                    let first = format!("{method} /{rest}\r\n");
                    if upstream.write_all(first.as_bytes()).await.is_ok() && upstream.write_all(&buffered).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        ConnectProxy { port, targets }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.targets.lock().unwrap())
    }
}

/// A per-server `proxy`, `HTTPS_PROXY` with and without `NO_PROXY`, and `HTTP_PROXY` for a
/// plain `http://` upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_proxies_per_server_and_from_the_environment() {
    let pki = Pki::new();
    let everything = Everything::start("streamableHttp").await;
    let nginx = tls_nginx(&pki, everything.port, false);
    let proxy = ConnectProxy::start().await;
    let target = format!("127.0.0.1:{}", nginx.port);
    let (url, ca) = (toml_str(&https(&nginx, "/mcp")), pki.toml("ca.pem"));

    let config = format!(
        "[servers.proxied]\nurl = {url}\nca_file = {ca}\nproxy = {}\n[servers.direct]\nurl = {url}\nca_file = {ca}\n",
        toml_str(&proxy.url())
    );
    let bridge = Bridge::start(&config, &[]).await;
    assert!(initialized(&initialize(&bridge, "direct").await));
    assert!(proxy.take().is_empty(), "a server without `proxy` goes direct");
    assert!(initialized(&initialize(&bridge, "proxied").await));
    assert!(proxy.take().contains(&target), "the per-server proxy tunnelled to nginx");
    drop(bridge);

    let config = format!("[servers.direct]\nurl = {url}\nca_file = {ca}\n");
    let bridge = Bridge::start_env(&config, &[], &[("HTTPS_PROXY", &proxy.url())]).await;
    assert!(initialized(&initialize(&bridge, "direct").await));
    assert!(proxy.take().contains(&target), "HTTPS_PROXY is honoured");
    drop(bridge);

    let bridge = Bridge::start_env(&config, &[], &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")]).await;
    assert!(initialized(&initialize(&bridge, "direct").await));
    assert!(proxy.take().is_empty(), "NO_PROXY is honoured");
    drop(bridge);

    let plain = format!("http://127.0.0.1:{}", everything.port);
    let config = format!("[servers.plain]\nurl = {}\n", toml_str(&format!("{plain}/mcp")));
    let bridge = Bridge::start_env(&config, &[], &[("HTTP_PROXY", &proxy.url())]).await;
    assert!(initialized(&initialize(&bridge, "plain").await));
    assert!(proxy.take().contains(&plain), "HTTP_PROXY carried the plain-HTTP request");
}
