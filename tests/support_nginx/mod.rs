//! nginx for the integration tests: renders deploy/nginx/nginx.conf for one test (a free port,
//! one backend, the overrides a test asks for), runs nginx in the foreground with its own prefix
//! dir, and stops it on Drop. Also a small TCP proxy that cuts every connection after a fixed
//! lifetime, standing in for a load balancer that caps stream time.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::{children_of, free_port, root, stop, TempDir};

/// What a test changes in the deployed configuration.
#[derive(Clone, Copy)]
pub(crate) struct NginxOpts {
    /// Replaces the deployed `proxy_read_timeout`.
    pub(crate) read_timeout: &'static str,
    /// `proxy_buffering on` instead of off.
    pub(crate) buffering: bool,
    /// `gzip on; gzip_types *;` at the http level (the server level keeps its `gzip off`).
    pub(crate) http_gzip: bool,
    /// Removes the deployed `gzip off`, to show what it guards against.
    pub(crate) drop_gzip_off: bool,
}

impl Default for NginxOpts {
    fn default() -> Self {
        NginxOpts { read_timeout: "60s", buffering: false, http_gzip: false, drop_gzip_off: false }
    }
}

pub(crate) fn deploy_conf_path() -> PathBuf {
    root().join("deploy/nginx/nginx.conf")
}

/// The nginx binary (on PATH, or Debian's /usr/sbin); fails with how to install it.
pub(crate) fn nginx_bin() -> PathBuf {
    let candidates = [PathBuf::from("nginx"), PathBuf::from("/usr/sbin/nginx")];
    for c in candidates {
        let ok = Command::new(&c).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return c;
        }
    }
    panic!("missing nginx: run scripts/test-deps (apt-get install nginx)");
}

/// Replaces the one line of `conf` that starts (after indentation) with `prefix`.
fn replace_line(conf: &str, prefix: &str, with: &str) -> String {
    let hits = conf.lines().filter(|l| l.trim_start().starts_with(prefix)).count();
    assert_eq!(
        hits, 1,
        "deploy/nginx/nginx.conf should have exactly one line starting with `{prefix}`; update tests/support_nginx"
    );
    conf.lines()
        .map(|l| if l.trim_start().starts_with(prefix) { with.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// deploy/nginx/nginx.conf as a test runs it.
pub(crate) fn render(template: &str, listen: u16, backend: u16, opts: &NginxOpts) -> String {
    let mut conf = replace_line(template, "listen 80;", &format!("        listen 127.0.0.1:{listen};"));
    conf = replace_line(&conf, "worker_processes ", "worker_processes 1;");
    conf = replace_line(&conf, "error_log ", "error_log logs/error.log info;");
    let backends = conf.lines().filter(|l| l.trim_start().starts_with("server 127.0.0.1:805")).count();
    assert_eq!(backends, 3, "the deployed upstream should list 127.0.0.1:8051-8053; update tests/support_nginx");
    conf = replace_line(&conf, "server 127.0.0.1:8051", &format!("        server 127.0.0.1:{backend};"));
    conf = conf.lines().filter(|l| !l.trim_start().starts_with("server 127.0.0.1:805")).collect::<Vec<_>>().join("\n");
    conf = replace_line(&conf, "proxy_read_timeout ", &format!("        proxy_read_timeout {};", opts.read_timeout));
    if opts.buffering {
        conf = replace_line(&conf, "proxy_buffering off;", "        proxy_buffering on;");
    }
    if opts.http_gzip {
        conf = replace_line(&conf, "http {", "http {\n    gzip on; gzip_types *; gzip_min_length 1;");
    }
    if opts.drop_gzip_off {
        conf = replace_line(&conf, "gzip off;", "");
    }
    conf
}

/// A running nginx with its own prefix dir (config, logs, temp files).
pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in front of `backend` (a loopback port); returns once it accepts connections.
    pub(crate) fn start(backend: u16, opts: &NginxOpts) -> Nginx {
        let template = std::fs::read_to_string(deploy_conf_path()).expect("read deploy/nginx/nginx.conf");
        Nginx::start_with(|port| render(&template, port, backend, opts))
    }

    /// Starts nginx with the configuration `conf` renders for a listen port; tries another free
    /// port when one was taken meanwhile.
    pub(crate) fn start_with(conf: impl Fn(u16) -> String) -> Nginx {
        let bin = nginx_bin();
        for attempt in 0..3 {
            let dir = TempDir::new("nginx");
            for sub in ["logs", "temp"] {
                std::fs::create_dir_all(dir.path().join(sub)).expect("create nginx prefix dirs");
            }
            let port = free_port();
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf(port)).expect("write nginx.conf");
            let out = std::fs::File::create(dir.path().join("logs/stderr.log")).expect("create nginx stderr log");
            let child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .args(["-e", "logs/error.log", "-c"])
                .arg(&conf_path)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .expect("spawn nginx");
            let mut nginx = Nginx { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = nginx.child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return nginx;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = nginx.error_log();
            if attempt < 2 && log.contains("Address already in use") {
                continue;
            }
            panic!("nginx did not start on port {port}; error.log:\n{log}");
        }
        unreachable!("the loop returns or panics")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// error.log (and what nginx wrote to stderr) so far.
    pub(crate) fn error_log(&self) -> String {
        let read = |p: &str| std::fs::read_to_string(self.dir.path().join(p)).unwrap_or_default();
        format!("{}{}", read("logs/stderr.log"), read("logs/error.log"))
    }

    pub(crate) fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- nginx error.log ({}) ----\n{}", self.dir.path().display(), self.error_log());
        }
        let workers = children_of(self.child.id());
        // SIGTERM: fast shutdown, the master stops its workers and exits.
        if !stop(&mut self.child, Signal::SIGTERM, Duration::from_secs(5)) {
            for w in workers {
                let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
            }
        }
    }
}

/// A TCP proxy on a free loopback port that forwards to `backend` and closes each connection
/// `lifetime` after it was accepted, whatever flows: a layer that caps total stream time.
pub(crate) struct CapProxy {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl CapProxy {
    pub(crate) async fn start(backend: u16, lifetime: Duration) -> CapProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the cap proxy");
        let port = listener.local_addr().expect("cap proxy address").port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                    let _ = tokio::time::timeout(lifetime, copy).await;
                    // Dropping both sockets closes them: the client sees the stream end mid-body.
                });
            }
        });
        CapProxy { port, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for CapProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}
