//! nginx balancing round-robin over the instances of a test cluster: deploy/nginx/nginx.conf
//! rendered for several backends, with an access log that names the upstream of every request.

use crate::common::root;
use crate::support_nginx::Nginx;

use super::require;

/// The access log format the balancer writes: which instance served which request of which
/// session (`$arg_sessionId` for the legacy transport, `Mcp-Session-Id` for Streamable HTTP).
const ACCESS_FORMAT: &str =
    r#"log_format cluster '$upstream_addr $request_method $uri q=$arg_sessionId h=$http_mcp_session_id status=$status';"#;

/// deploy/nginx/nginx.conf for a test: listens on `listen`, balances round-robin over
/// `backends`, logs the upstream of each request.
pub(crate) fn render(template: &str, listen: u16, backends: &[u16]) -> String {
    let mut out = Vec::new();
    let (mut listens, mut upstream, mut servers_done, mut logs) = (0, false, false, 0);
    for line in template.lines() {
        let t = line.trim_start();
        if t.starts_with("listen ") {
            listens += 1;
            out.push(format!("        listen 127.0.0.1:{listen};"));
        } else if t.starts_with("worker_processes ") {
            out.push("worker_processes 1;".to_string());
        } else if t.starts_with("error_log ") {
            out.push("error_log logs/error.log info;".to_string());
        } else if t.starts_with("access_log ") {
            logs += 1;
            out.push(format!("    {ACCESS_FORMAT}\n    access_log logs/access.log cluster;"));
        } else if t.starts_with("upstream mcp_router_backend") {
            upstream = true;
            out.push(line.to_string());
        } else if upstream && (t.starts_with("least_conn") || t.starts_with("ip_hash") || t.starts_with("hash ")) {
            // Round-robin: the plainest balancing, and the one sticky-less routing must survive.
        } else if upstream && t.starts_with("server ") {
            if !servers_done {
                for b in backends {
                    out.push(format!("        server 127.0.0.1:{b} max_fails=0;"));
                }
                servers_done = true;
            }
        } else {
            if upstream && t.starts_with('}') {
                upstream = false;
            }
            out.push(line.to_string());
        }
    }
    assert_eq!(listens, 1, "deploy/nginx/nginx.conf should have one listen line; update tests/cluster_support");
    assert!(servers_done, "deploy/nginx/nginx.conf should have `upstream mcp_router_backend` with server lines");
    assert_eq!(logs, 1, "deploy/nginx/nginx.conf should have one access_log line; update tests/cluster_support");
    out.join("\n")
}

/// nginx balancing round-robin over bridge instances (the shared test nginx, with the deployed
/// config rendered for several backends).
pub(crate) struct Balancer {
    nginx: Nginx,
    pub(crate) port: u16,
}

impl Balancer {
    pub(crate) fn start(backends: &[u16]) -> Balancer {
        require("nginx", "nginx");
        let conf = root().join("deploy/nginx/nginx.conf");
        let template = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("read {}: {e} (the deployed nginx config the cluster runs behind)", conf.display()));
        let nginx = Nginx::start_with(|port| render(&template, port, backends));
        Balancer { port: nginx.port, nginx }
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub(crate) fn error_log(&self) -> String {
        self.nginx.error_log()
    }

    /// (upstream address, method, uri, session id, status) of every request so far.
    pub(crate) fn requests(&self) -> Vec<AccessLine> {
        self.nginx.access_log().lines().filter_map(AccessLine::parse).collect()
    }
}

/// One line of the balancer's access log.
#[derive(Debug, Clone)]
pub(crate) struct AccessLine {
    /// The last upstream that was tried (after a failed one nginx lists several).
    pub(crate) upstream: String,
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) session: String,
    pub(crate) status: u16,
}

impl AccessLine {
    fn parse(line: &str) -> Option<AccessLine> {
        let (upstreams, rest) = line.split_once(' ')?;
        let mut parts = rest.split(' ');
        let method = parts.next()?.to_string();
        let uri = parts.next()?.to_string();
        // nginx logs an empty variable as `-`; a session id is never `-`.
        let query = parts.next()?.strip_prefix("q=")?;
        let header = parts.next()?.strip_prefix("h=")?;
        let session = if query != "-" {
            query
        } else if header != "-" {
            header
        } else {
            ""
        }
        .to_string();
        let status = parts.next()?.strip_prefix("status=")?.parse().ok()?;
        let upstream = upstreams.rsplit(", ").next()?.to_string();
        Some(AccessLine { upstream, method, uri, session, status })
    }
}
