//! The HTTP layer's one error type. Handlers and middleware return `Result<Response, Error>`;
//! `impl IntoResponse for Error` is the only place a refusal gets its status code, headers and
//! body. The body is the error's `Display`: a JSON-RPC error object on the MCP endpoints, plain
//! text on the legacy SSE message endpoint, the admin API and the probes (as they always were).

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cluster::ClusterError;
use crate::ids::SessionId;
use crate::locator::OpError;
use crate::protocol::jsonrpc::{self, code, PeekError};
use crate::protocol::modern::code as modern_code;
use crate::protocol::{all_versions, MODERN_VERSIONS, SUPPORTED_VERSIONS};
use crate::session::pending::PendingError;
use crate::session::AttachError;

/// Why a request is refused. The message is what the client reads; a typed cause is kept as
/// the `source`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    // ---- JSON-RPC error bodies (the MCP endpoints, auth, origin) ----
    /// No server of that name is configured: 404.
    #[error("unknown MCP server `{0}`")]
    UnknownServer(String),
    /// A body that is not JSON-RPC: 400, with the JSON-RPC code of what is wrong.
    #[error("Parse error: {}", peek_detail(.0))]
    Parse(#[source] PeekError),
    /// The `Accept` header leaves out a media type the answer may use: 406.
    #[error("Not Acceptable: Client must accept {0}")]
    NotAcceptable(&'static str),
    /// A POST body that is not `application/json`: 415.
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A request the protocol does not allow here (a second `initialize`, a batch in a
    /// revision without them): 400, -32600.
    #[error("Invalid Request: {0}")]
    InvalidRequest(String),
    /// A missing or unsupported transport header: 400.
    #[error("Bad Request: {0}")]
    BadRequest(String),
    /// A method `/mcp/{name}` does not serve: 405 with `Allow`.
    #[error("Method not allowed.")]
    MethodNotAllowed,
    /// The request names no session this client may use (unknown, ended, someone else's): 404,
    /// -32001.
    #[error("Session not found")]
    NoSession,
    /// The session is gone, and the reason is known: 404, -32001.
    #[error("Session not found: {0}")]
    SessionNotFound(String),
    /// A resumption asked for events the log no longer holds (the session is ended): 404,
    /// -32001.
    #[error("Session not found: events were lost ({0})")]
    EventsLost(String),
    /// A second standalone stream: 409.
    #[error("Conflict: {0}")]
    Conflict(String),
    /// The client holds as many sessions as it may: 429.
    #[error("Too Many Requests: {0}")]
    PrincipalLimit(String),
    /// The session holds as many requests in flight as it may: 429.
    #[error("Too Many Requests: {0}")]
    TooManyPending(#[source] PendingError),
    /// Over an `[auth.rate_limits]` bucket or in-flight cap: 429 with `Retry-After`, a JSON-RPC
    /// error naming the request id when the body held one request.
    #[error("Too Many Requests: over auth.rate_limits.{limit}; retry in {retry_after} s")]
    RateLimited { id: Option<Box<str>>, limit: &'static str, retry_after: u64 },
    /// This instance takes no new session (its cap, or the server's circuit breaker): 503.
    #[error("Service Unavailable: {0}")]
    InstanceLimit(String),
    /// Redis, or the instance that owns the session, cannot be reached: 503.
    #[error("Service Unavailable: cluster unavailable: {0}")]
    Cluster(#[source] ClusterError),
    /// The session's upstream is not taking messages: 503 with `Retry-After`.
    #[error("Service Unavailable: {0}")]
    Busy(String),
    /// The instance that owns the session answered a forwarded request out of protocol: 502.
    #[error("Bad Gateway: {0}")]
    Forwarding(#[source] OpError),
    /// No valid credential: 401 with the `WWW-Authenticate` challenge.
    #[error("Unauthorized: a valid bearer token or API key is required")]
    Unauthorized { challenge: String },
    /// The client may not use this server: 403.
    #[error("Forbidden: this client may not use server `{server}`")]
    ServerForbidden { server: String },
    /// A repeated or non-text `Host`: 400, -32600.
    #[error("Bad Request: {0}")]
    BadHost(String),
    /// A refused `Origin`, or a `Host` that is not local on a loopback listener: 403.
    #[error("Forbidden: {0}")]
    OriginRefused(String),
    /// A 2026-07-28 request refused with a JSON-RPC error that names its id (`http/modern/`):
    /// the status and code are the revision's (-32020 header mismatch, -32602, ...).
    #[error("{message}")]
    Rpc { status: StatusCode, id: Option<Box<str>>, code: i64, message: String },
    /// A 2026-07-28 request in a revision the bridge does not serve statelessly: 400, -32022,
    /// with the versions it does serve as `data`.
    #[error(
        "Unsupported protocol version: {requested} (mcp-bridge serves {} statelessly and {} with initialize)",
        MODERN_VERSIONS.join(", "),
        SUPPORTED_VERSIONS.join(", ")
    )]
    UnsupportedVersion { id: Box<str>, requested: String },
    /// A GET or DELETE in the stateless revision, which has no standalone stream and no
    /// sessions: 405 with `Allow: POST`.
    #[error("Method Not Allowed: protocol version {0} has no standalone stream and no sessions; POST each request")]
    StatelessMethod(String),

    // ---- plain text bodies (legacy SSE, admin API, probes, unknown paths) ----
    /// A legacy SSE resumption for a session this instance does not hold: 404.
    #[error("session {0} is not held any more; open a new one")]
    SseNotHeld(SessionId),
    /// A legacy SSE resumption past the kept events; the session was ended: 410.
    #[error("session {session}: {detail}; the session is ended")]
    SseEventsLost { session: SessionId, detail: String },
    /// A session just created here could not be attached to: 500.
    #[error("{0}")]
    Attach(#[source] AttachError),
    /// A legacy message POST without `sessionId`: 400.
    #[error("missing the sessionId query parameter")]
    MissingSessionId,
    /// A legacy message POST for no session of this client's: 404.
    #[error("session not found")]
    SseNoSession,
    /// An admin API request from another origin: 403.
    #[error("{0}")]
    AdminCrossOrigin(&'static str),
    /// An admin API request without the admin token (or, without one, not from loopback):
    /// 401 with the admin realm.
    #[error("the admin API needs the admin token (or, without one, a loopback client)")]
    AdminUnauthorized,
    /// The admin API knows no such session: 404.
    #[error("{0}")]
    AdminNoSession(&'static str),
    /// The admin API cannot reach the cluster: 503.
    #[error("{context}{source}")]
    AdminCluster { context: &'static str, source: ClusterError },
    /// A reload that failed; the running configuration is unchanged: 422.
    #[error("reload refused, the running configuration is unchanged: {0:#}")]
    ReloadRefused(#[source] anyhow::Error),
    /// `/metrics` without the `[metrics]` token: 401 with the metrics realm.
    #[error("{0}")]
    MetricsUnauthorized(&'static str),
    /// The OAuth metadata document, with none configured: 404, empty.
    #[error("")]
    NoMetadata,
    /// A path the bridge does not serve: 404.
    #[error("not found: the bridge serves /sse/{{server}} and /mcp/{{server}}")]
    NoRoute,

    // ---- problem+json bodies (the REST endpoints, `http/rest/`) ----
    /// A REST call that did not complete: `application/problem+json` (RFC 9457) whose `error`
    /// member is the JSON-RPC error (the upstream's own when there was one); the status is the
    /// [`Failure`]'s.
    #[error("{detail}")]
    Rest { failure: Failure, detail: String, error: Option<Box<serde_json::Value>> },
    /// A failed call on the design note's route (`/mcp/router/route/…`): the note's envelope
    /// (`{id, jsonrpc, method, error, targetService, timestamp}`) as JSON, the status the
    /// [`Failure`]'s.
    #[error("{}", .envelope)]
    Routed { failure: Failure, envelope: Box<serde_json::Value> },
}

/// What went wrong with a REST call, as its caller should read it: [`Error::Rest`] gets its
/// status from this, in `into_response` and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No such server, tool or prompt (or the upstream has no such method): 404.
    NotFound,
    /// A request the endpoint cannot read (a body that is not JSON, no `uri`): 400.
    BadRequest,
    /// The arguments were refused (-32602): 422.
    InvalidParams,
    /// The tool asked the caller something (sampling, elicitation, roots) that a REST caller
    /// cannot answer: 409.
    NeedsInput,
    /// The caller holds as many sessions or requests as it may: 429.
    TooMany,
    /// The upstream cannot be had now (it does not start, it is crash-looping, its queue is
    /// full, the cluster is unreachable): 503 with `Retry-After` in seconds.
    Unavailable { retry_after: u64 },
    /// The bridge's request timeout (`limits.request_timeout`) ran out: 504.
    Timeout,
    /// The upstream failed the call outside the answers the protocol gives (it ended, it
    /// answered with an error that names no caller mistake): 502.
    BadGateway,
}

impl Failure {
    fn status(self) -> StatusCode {
        match self {
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::BadRequest => StatusCode::BAD_REQUEST,
            Failure::InvalidParams => StatusCode::UNPROCESSABLE_ENTITY,
            Failure::NeedsInput => StatusCode::CONFLICT,
            Failure::TooMany => StatusCode::TOO_MANY_REQUESTS,
            Failure::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON-RPC code of an error the bridge writes itself for this failure.
    fn code(self) -> i64 {
        match self {
            Failure::NotFound => code::METHOD_NOT_FOUND,
            Failure::BadRequest => code::INVALID_REQUEST,
            Failure::InvalidParams => code::INVALID_PARAMS,
            Failure::Timeout => code::REQUEST_TIMEOUT,
            Failure::NeedsInput | Failure::TooMany | Failure::Unavailable { .. } => code::CONNECTION_CLOSED,
            Failure::BadGateway => code::INTERNAL_ERROR,
        }
    }
}

/// How a refusal's body is written.
enum Body {
    /// A JSON-RPC error object with this code.
    Rpc(i64),
    /// The message as plain text.
    Text,
    /// Nothing.
    Empty,
    /// An RFC 9457 problem with the JSON-RPC error in its `error` member.
    Problem,
    /// The design note's envelope, as it is.
    Envelope,
}

impl Error {
    /// An unknown server, its name clipped for the message.
    pub(crate) fn unknown_server(name: &str) -> Error {
        Error::UnknownServer(name.chars().take(128).collect())
    }
}

impl Error {
    /// A REST failure the bridge describes itself (its JSON-RPC error is made from it).
    pub(crate) fn rest(failure: Failure, detail: impl Into<String>) -> Error {
        Error::Rest { failure, detail: detail.into(), error: None }
    }

    /// A REST failure as the design note's route answers it: `wrap` puts the JSON-RPC error
    /// into the note's envelope.
    pub(crate) fn routed(self, wrap: impl FnOnce(serde_json::Value) -> serde_json::Value) -> Error {
        let (failure, error) = match self {
            Error::Rest { failure, error: Some(e), .. } => (failure, *e),
            Error::Rest { failure, detail, error: None } => {
                (failure, serde_json::json!({ "code": failure.code(), "message": detail }))
            }
            other => (Failure::BadGateway, serde_json::json!({ "code": code::INTERNAL_ERROR, "message": other.to_string() })),
        };
        Error::Routed { failure, envelope: Box::new(wrap(error)) }
    }

    /// A failed session operation on a REST call, by what the caller should make of it.
    pub(crate) fn rest_op(e: OpError) -> Error {
        let failure = match &e {
            OpError::Limit { per_principal: true, .. } | OpError::TooManyPending(_) => Failure::TooMany,
            OpError::Limit { per_principal: false, .. } | OpError::Unavailable(_) | OpError::Busy(_) | OpError::NotFound(_) => {
                Failure::Unavailable { retry_after: 1 }
            }
            OpError::Gap(_) | OpError::Conflict(_) | OpError::Protocol { .. } | OpError::Unreadable { .. } => Failure::BadGateway,
        };
        Error::rest(failure, e.to_string())
    }
}

impl From<OpError> for Error {
    /// A failed session operation, by what the client should make of it.
    fn from(e: OpError) -> Error {
        match e {
            OpError::NotFound(detail) => Error::SessionNotFound(detail),
            OpError::Gap(detail) => Error::EventsLost(detail),
            OpError::Conflict(detail) => Error::Conflict(detail),
            OpError::Limit { per_principal: true, message } => Error::PrincipalLimit(message),
            OpError::Limit { per_principal: false, message } => Error::InstanceLimit(message),
            OpError::TooManyPending(e) => Error::TooManyPending(e),
            OpError::Unavailable(e) => Error::Cluster(e),
            OpError::Busy(detail) => Error::Busy(detail),
            e @ (OpError::Protocol { .. } | OpError::Unreadable { .. }) => Error::Forwarding(e),
        }
    }
}

impl From<ClusterError> for Error {
    /// Finding a session failed: the cluster could not be asked.
    fn from(e: ClusterError) -> Error {
        Error::Cluster(e)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        use Error::*;
        let (status, body, header): (StatusCode, Body, Option<(HeaderName, HeaderValue)>) = match &self {
            UnknownServer(_) => (StatusCode::NOT_FOUND, Body::Rpc(code::CONNECTION_CLOSED), None),
            Parse(e) => (StatusCode::BAD_REQUEST, Body::Rpc(e.code()), None),
            NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, Body::Rpc(code::CONNECTION_CLOSED), None),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, Body::Rpc(code::CONNECTION_CLOSED), None),
            InvalidRequest(_) | BadHost(_) => (StatusCode::BAD_REQUEST, Body::Rpc(code::INVALID_REQUEST), None),
            BadRequest(_) => (StatusCode::BAD_REQUEST, Body::Rpc(code::CONNECTION_CLOSED), None),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                Body::Rpc(code::CONNECTION_CLOSED),
                Some((header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"))),
            ),
            NoSession | SessionNotFound(_) | EventsLost(_) => (StatusCode::NOT_FOUND, Body::Rpc(code::SESSION_NOT_FOUND), None),
            Conflict(_) => (StatusCode::CONFLICT, Body::Rpc(code::CONNECTION_CLOSED), None),
            // The client's own doing: 429, not 503.
            PrincipalLimit(_) | TooManyPending(_) => (StatusCode::TOO_MANY_REQUESTS, Body::Rpc(code::CONNECTION_CLOSED), None),
            RateLimited { retry_after, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                Body::Rpc(code::CONNECTION_CLOSED),
                HeaderValue::from_str(&(*retry_after).max(1).to_string()).ok().map(|v| (header::RETRY_AFTER, v)),
            ),
            InstanceLimit(_) => (StatusCode::SERVICE_UNAVAILABLE, Body::Rpc(code::CONNECTION_CLOSED), None),
            Cluster(_) => (StatusCode::SERVICE_UNAVAILABLE, Body::Rpc(code::INTERNAL_ERROR), None),
            Busy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Body::Rpc(code::INTERNAL_ERROR),
                Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            ),
            Forwarding(_) => (StatusCode::BAD_GATEWAY, Body::Rpc(code::INTERNAL_ERROR), None),
            Unauthorized { challenge } => (
                StatusCode::UNAUTHORIZED,
                Body::Rpc(code::CONNECTION_CLOSED),
                HeaderValue::from_str(challenge).ok().map(|v| (header::WWW_AUTHENTICATE, v)),
            ),
            ServerForbidden { .. } | OriginRefused(_) => (StatusCode::FORBIDDEN, Body::Rpc(code::CONNECTION_CLOSED), None),
            Rpc { status, code, .. } => (*status, Body::Rpc(*code), None),
            UnsupportedVersion { .. } => (StatusCode::BAD_REQUEST, Body::Rpc(modern_code::UNSUPPORTED_PROTOCOL_VERSION), None),
            StatelessMethod(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                Body::Rpc(code::CONNECTION_CLOSED),
                Some((header::ALLOW, HeaderValue::from_static("POST"))),
            ),
            SseNotHeld(_) | SseNoSession | AdminNoSession(_) | NoRoute => (StatusCode::NOT_FOUND, Body::Text, None),
            SseEventsLost { .. } => (StatusCode::GONE, Body::Text, None),
            Attach(_) => (StatusCode::INTERNAL_SERVER_ERROR, Body::Text, None),
            MissingSessionId => (StatusCode::BAD_REQUEST, Body::Text, None),
            AdminCrossOrigin(_) => (StatusCode::FORBIDDEN, Body::Text, None),
            AdminUnauthorized => (
                StatusCode::UNAUTHORIZED,
                Body::Text,
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mcp-bridge-admin\""))),
            ),
            AdminCluster { .. } => (StatusCode::SERVICE_UNAVAILABLE, Body::Text, None),
            ReloadRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, Body::Text, None),
            MetricsUnauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                Body::Text,
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mcp-bridge-metrics\""))),
            ),
            NoMetadata => (StatusCode::NOT_FOUND, Body::Empty, None),
            Rest { failure, .. } => {
                let retry = match failure {
                    Failure::Unavailable { retry_after } => HeaderValue::from_str(&(*retry_after).max(1).to_string()).ok(),
                    _ => None,
                };
                (failure.status(), Body::Problem, retry.map(|v| (header::RETRY_AFTER, v)))
            }
            Routed { failure, .. } => {
                let retry = match failure {
                    Failure::Unavailable { retry_after } => HeaderValue::from_str(&(*retry_after).max(1).to_string()).ok(),
                    _ => None,
                };
                (failure.status(), Body::Envelope, retry.map(|v| (header::RETRY_AFTER, v)))
            }
        };
        let mut resp = match body {
            Body::Rpc(code) => {
                let body = match &self {
                    Rpc { id, .. } | RateLimited { id, .. } => jsonrpc::error(id.as_deref(), code, &self.to_string()),
                    UnsupportedVersion { id, requested } => {
                        let error = serde_json::json!({
                            "code": code,
                            "message": self.to_string(),
                            "data": { "supported": all_versions(), "requested": requested },
                        });
                        jsonrpc::error_with(id, &error)
                    }
                    _ => jsonrpc::error(None, code, &self.to_string()),
                };
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Body::Text => (status, self.to_string()).into_response(),
            Body::Envelope => (status, [(header::CONTENT_TYPE, "application/json")], self.to_string()).into_response(),
            Body::Problem => {
                let error = match &self {
                    Rest { error: Some(e), .. } => (**e).clone(),
                    Rest { failure, detail, .. } => serde_json::json!({ "code": failure.code(), "message": detail }),
                    _ => serde_json::Value::Null,
                };
                let problem = serde_json::json!({
                    "type": "about:blank",
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": self.to_string(),
                    "error": error,
                });
                (status, [(header::CONTENT_TYPE, "application/problem+json")], problem.to_string()).into_response()
            }
            Body::Empty => status.into_response(),
        };
        if let Some((name, value)) = header {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// A body parse error without the word "parse error" twice: `Parse error: expected value`,
/// not `Parse error: parse error: expected value`.
fn peek_detail(e: &PeekError) -> String {
    match e {
        PeekError::Parse(detail) => detail.clone(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rendered(e: Error) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = e.into_response();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn message(body: &str) -> (i64, String) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        (v["error"]["code"].as_i64().unwrap(), v["error"]["message"].as_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn a_gone_session_says_so_once() {
        let (status, _, body) = rendered(OpError::NotFound("session ended: upstream_exited".into()).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(message(&body), (code::SESSION_NOT_FOUND, "Session not found: session ended: upstream_exited".into()));
        let (_, _, body) = rendered(Error::Parse(PeekError::Parse("expected value".into()))).await;
        assert_eq!(message(&body), (code::PARSE_ERROR, "Parse error: expected value".into()));
    }

    #[tokio::test]
    async fn an_owner_out_of_protocol_is_a_bad_gateway_not_a_missing_session() {
        let e = OpError::Protocol { owner: "i-2".into(), request: "open" };
        let (status, _, body) = rendered(e.into()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let (code, text) = message(&body);
        assert_eq!(code, code::INTERNAL_ERROR);
        assert!(text.starts_with("Bad Gateway: ") && text.contains("i-2"), "{text}");
        // The owner could not read what it was forwarded: the failure says so on the wire.
        let failure = crate::cluster::wire::Failure {
            unreadable: true,
            ..crate::cluster::wire::Failure::new("parse error: expected value")
        };
        let e = OpError::from(ClusterError::Remote { owner: "i-3".into(), failure });
        let (status, _, body) = rendered(e.into()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(message(&body).1.contains("i-3 could not read the forwarded messages"), "{body}");
        let unreachable = OpError::Unavailable(ClusterError::Timeout("i-2".into()));
        assert_eq!(rendered(unreachable.into()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn statuses_and_headers_of_session_failures() {
        let busy = rendered(OpError::Busy("full".into()).into()).await;
        assert_eq!((busy.0, &busy.1[header::RETRY_AFTER]), (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from_static("1")));
        let limit = |per_principal| OpError::Limit { per_principal, message: "max".into() };
        assert_eq!(rendered(limit(true).into()).await.0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rendered(limit(false).into()).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rendered(OpError::Conflict("one".into()).into()).await.0, StatusCode::CONFLICT);
        let (status, headers, body) = rendered(Error::Unauthorized { challenge: "Bearer realm=\"x\"".into() }).await;
        assert_eq!(
            (status, &headers[header::WWW_AUTHENTICATE]),
            (StatusCode::UNAUTHORIZED, &HeaderValue::from_static("Bearer realm=\"x\""))
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(message(&body).1.starts_with("Unauthorized: "));
    }

    #[tokio::test]
    async fn rest_failures_are_problems_with_the_json_rpc_error() {
        let (status, headers, body) =
            rendered(Error::rest(Failure::Unavailable { retry_after: 7 }, "server `x` keeps crashing")).await;
        assert_eq!((status, &headers[header::RETRY_AFTER]), (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from_static("7")));
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["status"].as_u64(), v["title"].as_str()), (Some(503), Some("Service Unavailable")));
        assert_eq!(v["error"]["message"], "server `x` keeps crashing");
        let upstream = serde_json::json!({ "code": -32602, "message": "bad", "data": { "at": "a" } });
        let e = Error::Rest { failure: Failure::InvalidParams, detail: "bad".into(), error: Some(Box::new(upstream.clone())) };
        let (status, _, body) = rendered(e).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"], upstream, "the upstream's own error");
        let routed = Error::rest(Failure::Timeout, "slow").routed(|e| serde_json::json!({ "id": 1, "error": e }));
        let (status, headers, body) = rendered(routed).await;
        assert_eq!(
            (status, &headers[header::CONTENT_TYPE]),
            (StatusCode::GATEWAY_TIMEOUT, &HeaderValue::from_static("application/json"))
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "id": 1, "error": { "code": -32001, "message": "slow" } })
        );
    }

    #[tokio::test]
    async fn plain_and_empty_bodies() {
        let (status, headers, body) = rendered(Error::AdminUnauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers[header::WWW_AUTHENTICATE].to_str().unwrap().contains("mcp-bridge-admin"));
        assert!(body.starts_with("the admin API needs"));
        let (status, headers, body) = rendered(Error::NoMetadata).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, ""));
        assert!(headers.get(header::CONTENT_TYPE).is_none());
        assert_eq!(rendered(Error::NoRoute).await.2, "not found: the bridge serves /sse/{server} and /mcp/{server}");
    }
}
