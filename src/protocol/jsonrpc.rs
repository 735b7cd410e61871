//! The little the bridge needs to know about JSON-RPC: what kind a message is, its id, its
//! method and progress token. Messages are only peeked at, never re-serialized: the bytes a
//! peer sent are the bytes the other peer gets.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON-RPC error codes the bridge itself answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// A server's "the user must open a URL first" (URL-mode elicitation as an error).
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
    /// The TypeScript SDK's code for transport-level rejections.
    pub const CONNECTION_CLOSED: i64 = -32000;
    /// Unknown session, as the TypeScript SDK and the spec's examples answer.
    pub const SESSION_NOT_FOUND: i64 = -32001;
    pub const REQUEST_TIMEOUT: i64 = -32001;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// What the bridge reads out of one message.
#[derive(Debug, Clone)]
pub struct Peek {
    pub kind: Kind,
    /// The id's JSON text (`1`, `"a"`), used as a map key; ids are compared as sent.
    pub id: Option<Box<str>>,
    pub method: Option<String>,
    /// `params._meta.progressToken` of a request, or `params.progressToken` of a progress
    /// notification, as JSON text.
    pub progress_token: Option<Box<str>>,
    /// `result.protocolVersion`, present on initialize responses.
    pub protocol_version: Option<String>,
    /// The message is an error response.
    pub error: bool,
}

#[derive(Deserialize)]
struct Wire<'a> {
    jsonrpc: Option<&'a str>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    params: Option<Params<'a>>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta")]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ResultPeek {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeekError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
}

impl PeekError {
    pub fn code(&self) -> i64 {
        match self {
            PeekError::Parse(_) => code::PARSE_ERROR,
            PeekError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

/// Peeks at one message (a JSON object).
pub fn peek(raw: &[u8]) -> Result<Peek, PeekError> {
    let w: Wire = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            PeekError::Invalid("not a JSON-RPC object")
        } else {
            PeekError::Parse(e.to_string())
        }
    })?;
    // serde also reads a struct from a JSON array (`["2.0",1,"initialize"]`): only an object is a message.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(PeekError::Invalid("not a JSON-RPC object"));
    }
    if w.jsonrpc != Some("2.0") {
        return Err(PeekError::Invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = w.id.map(|id| id.get()).filter(|id| *id != "null");
    if let Some(id) = id {
        if !(id.starts_with('"') || id.starts_with('-') || id.as_bytes()[0].is_ascii_digit()) {
            return Err(PeekError::Invalid("`id` must be a string or a number"));
        }
    }
    let kind = match (&w.method, id, w.result.is_some() || w.error.is_some()) {
        (Some(_), Some(_), false) => Kind::Request,
        (Some(_), None, false) => Kind::Notification,
        (None, _, true) if w.result.is_some() != w.error.is_some() => Kind::Response,
        _ => return Err(PeekError::Invalid("not a request, notification or response")),
    };
    let progress_token = w.params.as_ref().and_then(|p| {
        if kind == Kind::Notification {
            p.progress_token
        } else {
            p.meta.as_ref().and_then(|m| m.progress_token)
        }
    });
    Ok(Peek {
        error: w.error.is_some(),
        kind,
        id: id.map(Box::from),
        method: w.method,
        progress_token: progress_token.map(|t| Box::from(t.get())),
        protocol_version: w
            .result
            .filter(|r| r.get().starts_with('{') && r.get().contains("\"protocolVersion\""))
            .and_then(|r| serde_json::from_str::<ResultPeek>(r.get()).ok())
            .and_then(|r| r.protocol_version),
    })
}

/// Splits a body into its messages: one object, or the elements of a batch. Returns each
/// element's bytes and whether the body was a batch. A single message is a slice of `body`
/// (no copy; it keeps `body`'s buffer alive, so a caller that keeps it for long copies it);
/// a batch's elements are copies, so one kept element does not hold the whole batch.
pub fn split(body: &Bytes) -> Result<(Vec<Bytes>, bool), PeekError> {
    let text = std::str::from_utf8(body).map_err(|e| PeekError::Parse(e.to_string()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| PeekError::Parse(e.to_string()))?;
        if items.is_empty() {
            return Err(PeekError::Invalid("empty batch"));
        }
        Ok((items.into_iter().map(|r| Bytes::copy_from_slice(r.get().as_bytes())).collect(), true))
    } else {
        // Validate it is one JSON value before passing it on untouched.
        let _: &RawValue = serde_json::from_str(text).map_err(|e| PeekError::Parse(e.to_string()))?;
        Ok((vec![body.slice_ref(text.trim().as_bytes())], false))
    }
}

/// A JSON-RPC error message; `id` is the id's JSON text, or `None` for `null`.
/// A JSON-RPC error response whose error object the caller built (one with `data`). `id` is
/// the request's id as its raw JSON.
pub fn error_with(id: &str, error: &serde_json::Value) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#))
}

pub fn error(id: Option<&str>, code: i64, message: &str) -> Bytes {
    let msg = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{msg}}}}}"#, id.unwrap_or("null")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_ids_and_tokens() {
        let p = peek(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":"t1"}}}"#).unwrap();
        assert_eq!((p.kind, p.id.as_deref(), p.progress_token.as_deref()), (Kind::Request, Some("7"), Some("\"t1\"")));
        let p =
            peek(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":5,"progress":1}}"#).unwrap();
        assert_eq!((p.kind, p.progress_token.as_deref()), (Kind::Notification, Some("5")));
        let p = peek(br#"{"jsonrpc":"2.0","id":"a","result":{"protocolVersion":"2025-06-18","x":[1]}}"#).unwrap();
        assert_eq!((p.kind, p.protocol_version.as_deref()), (Kind::Response, Some("2025-06-18")));
        let p = peek(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#).unwrap();
        assert_eq!((p.kind, p.id), (Kind::Response, None));
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(peek(b"{"), Err(PeekError::Parse(_))));
        assert!(matches!(peek(b"[1]"), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"["2.0",1,"initialize",null,null,null]"#), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"{"jsonrpc":"1.0","method":"x"}"#), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"{"jsonrpc":"2.0","id":1}"#), Err(PeekError::Invalid(_))));
        assert!(matches!(peek(br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#), Err(PeekError::Invalid(_))));
    }

    #[test]
    fn split_keeps_bytes_untouched() {
        let (items, batch) = split(&Bytes::from_static(br#" [ {"a": 1} ,{"b":2}] "#)).unwrap();
        assert!(batch);
        assert_eq!(items, vec![Bytes::from_static(br#"{"a": 1}"#), Bytes::from_static(br#"{"b":2}"#)]);
        assert!(split(&Bytes::from_static(b"[]")).is_err());
        assert!(split(&Bytes::from_static(b"{\"a\":1} x")).is_err());
        assert!(split(&Bytes::from_static(b"\xff")).is_err());
    }

    #[test]
    fn error_body_escapes() {
        let e = error(Some("3"), -1, "a \"b\"");
        assert_eq!(&e[..], br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"a \"b\""}}"#);
    }
}
