//! The malformed-request table of tests/hostile.rs: bad JSON and JSON-RPC shapes, huge ids, deep
//! nesting, the 2026-07-28 path's headers and `_meta`, invalid UTF-8, header injection, path
//! traversal, broken HTTP framing and oversized bodies, each with the statuses it may get.

use super::raw::{lines, request, Case, Cases};
use crate::common::{echo_call, initialize_request, ACCEPT_BOTH, PROTOCOL};

pub(crate) const BAD: &[u16] = &[400];
pub(crate) const OK: &[u16] = &[200];
pub(crate) const NOT_FOUND: &[u16] = &[404];

pub(crate) fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// The malformed-request table. `s` is a live streamable session on `good`, `l` a live legacy
/// one; both belong to the attacker, not to the well-behaved client.
pub(crate) fn malformed_cases(port: u16, s: &str, l: &str) -> Vec<Case> {
    let mut c = Cases { port, list: Vec::new() };
    let p = "/mcp/good";
    let post = [("accept", ACCEPT_BOTH), ("content-type", "application/json")];
    let with_s = [
        ("accept", ACCEPT_BOTH),
        ("content-type", "application/json"),
        ("mcp-session-id", s),
        ("mcp-protocol-version", PROTOCOL),
    ];
    let msg = format!("/sse/good/message?sessionId={l}");
    let ping = |id: &str, params: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{params}}}"#);

    // Bad JSON.
    for (what, body) in [
        ("truncated object", &b"{"[..]),
        ("empty body", b""),
        ("unterminated", br#"{"jsonrpc":"2.0","#),
        ("bare word", b"nul"),
        ("two values", br#"{"a":1} {"b":2}"#),
        ("binary", b"\x00\x01\x02\x03"),
        ("NaN id", br#"{"jsonrpc":"2.0","id":NaN,"method":"ping"}"#),
        ("single quotes", b"{'jsonrpc':'2.0'}"),
        ("byte order mark", b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"),
        ("comment", br#"{/*x*/"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        ("unterminated string", br#"{"jsonrpc":"2.0","id":"abc}"#),
        ("trailing comma", br#"{"jsonrpc":"2.0","id":1,"method":"ping",}"#),
        ("control character in a string", b"{\"jsonrpc\":\"2.0\",\"id\":\"a\x01b\",\"method\":\"ping\"}"),
    ] {
        c.add(format!("bad JSON: {what}"), "POST", p, &post, body, BAD).containing("-32700");
    }

    // Wrong JSON-RPC shapes.
    for (what, body) in [
        ("null", "null"),
        ("number", "42"),
        ("string", "\"initialize\""),
        ("boolean", "true"),
        ("empty batch", "[]"),
        ("batch of numbers", "[1,2,3]"),
        ("nested empty batch", "[[]]"),
        ("empty object", "{}"),
        ("jsonrpc 1.0", r#"{"jsonrpc":"1.0","id":1,"method":"initialize"}"#),
        ("jsonrpc as a number", r#"{"jsonrpc":2.0,"id":1,"method":"initialize"}"#),
        ("no jsonrpc", r#"{"id":1,"method":"initialize"}"#),
        ("method is a number", r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
        ("method null", r#"{"jsonrpc":"2.0","id":1,"method":null}"#),
        ("id is an object", r#"{"jsonrpc":"2.0","id":{"a":1},"method":"initialize"}"#),
        ("id is an array", r#"{"jsonrpc":"2.0","id":[1],"method":"initialize"}"#),
        ("id is a boolean", r#"{"jsonrpc":"2.0","id":true,"method":"initialize"}"#),
        ("result and error", r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#),
        ("params is a string", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}"#),
        ("_meta is a number", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":5}}"#),
        ("duplicate id", r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"initialize"}"#),
        ("two initialize in a batch", &format!("[{},{}]", initialize_request(1), initialize_request(2))),
        ("an array as the message", r#"[["2.0",1,"initialize",null,null,null]]"#),
        ("params as an array", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":[]}"#),
    ] {
        c.add(format!("JSON-RPC shape: {what}"), "POST", p, &post, body.as_bytes(), BAD);
    }
    c.add("initialize as a notification, no session", "POST", p, &post, br#"{"jsonrpc":"2.0","method":"initialize"}"#, BAD);
    c.add(
        "a batch on a 2025-06-18 session",
        "POST",
        p,
        &with_s,
        format!("[{},{}]", ping("1", "{}"), ping("2", "{}")).as_bytes(),
        BAD,
    );
    c.add("a response without id, on the session", "POST", p, &with_s, br#"{"jsonrpc":"2.0","result":{}}"#, &[202]);
    c.add("a response to nothing, legacy", "POST", &msg, &post, br#"{"jsonrpc":"2.0","id":999,"result":{}}"#, &[202]);
    c.add("float id", "POST", p, &with_s, ping("1.5", "{}").as_bytes(), OK).containing("\"id\":1.5");
    c.add("object progress token", "POST", p, &with_s, ping("3", r#"{"_meta":{"progressToken":{"a":[1]}}}"#).as_bytes(), OK);

    // Huge ids: answered with the same id, or (when the upstream cannot echo the id back as sent)
    // by the bridge's request timeout: never left hanging.
    let long_id = format!("\"{}\"", "i".repeat(100_000));
    c.add("100 KB string id", "POST", p, &with_s, ping(&long_id, "{}").as_bytes(), OK).containing(long_id.clone());
    c.add("u64::MAX id", "POST", p, &with_s, ping("18446744073709551615", "{}").as_bytes(), OK)
        .containing("18446744073709551615");
    c.add("i64::MIN id", "POST", p, &with_s, ping("-9223372036854775808", "{}").as_bytes(), OK)
        .containing("-9223372036854775808");
    c.add("empty string id", "POST", p, &with_s, ping("\"\"", "{}").as_bytes(), OK).containing("\"id\":\"\"");
    c.add("id with CR LF and NUL escapes", "POST", p, &with_s, ping(r#""a\r\nSet-Cookie: x\u0000""#, "{}").as_bytes(), OK)
        .containing(r#"\r\nSet-Cookie"#);
    c.add("1e400 id", "POST", p, &with_s, ping("1e400", "{}").as_bytes(), OK).containing("1e400");
    c.add("2^100 id", "POST", p, &with_s, ping("1267650600228229401496703205376", "{}").as_bytes(), OK)
        .containing("1267650600228229401496703205376");

    // Deep nesting.
    let deep_arrays = nested("[", "]", 100_000, "");
    c.add("100k nested arrays", "POST", p, &post, deep_arrays.as_bytes(), BAD);
    c.add("100k nested objects", "POST", p, &post, nested("{\"a\":", "}", 100_000, "1").as_bytes(), BAD);
    c.add("100k nested arrays in params", "POST", p, &with_s, ping("4", &nested("[", "]", 100_000, "")).as_bytes(), BAD);
    // Passed through without recursion (serde_json skips nested values iteratively); the child
    // cannot parse it, so the bridge's request timeout answers.
    let deep_params = format!("{{\"x\":{}}}", nested("[", "]", 100_000, ""));
    c.add("100k nested arrays inside params", "POST", p, &with_s, ping("21", &deep_params).as_bytes(), OK).containing("-32001");
    c.add("100k nested arrays, legacy", "POST", &msg, &post, deep_arrays.as_bytes(), BAD);
    c.add(
        "120 nested arrays in params",
        "POST",
        p,
        &with_s,
        ping("5", &format!("{{\"x\":{}}}", nested("[", "]", 120, ""))).as_bytes(),
        OK,
    )
    .containing("\"id\":5");

    // The 2026-07-28 (stateless) path: the mirrored headers and per-request _meta are checked
    // before anything reaches an upstream.
    let meta =
        r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let modern = |method: &'static str, name: &str| -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("accept", ACCEPT_BOTH.to_string()),
            ("content-type", "application/json".to_string()),
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", method.to_string()),
        ];
        if !name.is_empty() {
            h.push(("mcp-name", name.to_string()));
        }
        h
    };
    let call =
        |params: &str| format!(r#"{{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{{"name":"echo",{params}{meta}}}}}"#);
    let as_refs = |h: &[(&'static str, String)]| h.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    for (what, headers, body, statuses, code) in [
        ("Mcp-Method of another method", modern("tools/list", "echo"), call(""), BAD, "-32020"),
        ("100 KB Mcp-Name", modern("tools/call", &"n".repeat(100_000)), call(""), &[400, 431][..], ""),
        ("Mcp-Name in broken Base64", modern("tools/call", "=?base64?ZWNo*G8=?="), call(""), BAD, "-32020"),
        (
            "Mcp-Name Base64 of a long other name",
            modern("tools/call", &format!("=?base64?{}?=", "QUFB".repeat(5_000))),
            call(""),
            BAD,
            "-32020",
        ),
        (
            "_meta version as a number",
            modern("tools/call", "echo"),
            call("").replace(r#""2026-07-28""#, "20260728"),
            BAD,
            "-32602",
        ),
        (
            "100 KB requestState",
            modern("tools/call", "echo"),
            call(&format!(r#""requestState":"{}","#, "s".repeat(100_000))),
            OK,
            "-32602",
        ),
        (
            "requestState of no session",
            modern("tools/call", "echo"),
            call(r#""requestState":"mcpb1.00000000000000000000000000000001.1.1.0","inputResponses":{"1,\"result\":{}":{}},"#),
            OK,
            "-32602",
        ),
        ("inputResponses as a string", modern("tools/call", "echo"), call(r#""inputResponses":"x","#), BAD, "-32602"),
        (
            "10k nested clientCapabilities",
            modern("tools/call", "echo"),
            call("").replace(
                r#""io.modelcontextprotocol/clientCapabilities":{}"#,
                &format!(r#""io.modelcontextprotocol/clientCapabilities":{}"#, nested("{\"a\":", "}", 10_000, "1")),
            ),
            BAD,
            "-32602",
        ),
        ("a batch of modern requests", modern("tools/call", "echo"), format!("[{},{}]", call(""), call("")), BAD, "-32600"),
    ] {
        let headers = as_refs(&headers);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let case = c.add(format!("2026-07-28: {what}"), "POST", p, &headers, body.as_bytes(), statuses);
        if !code.is_empty() {
            case.containing(code);
        }
    }

    // Invalid UTF-8.
    c.add(
        "invalid UTF-8 in a string",
        "POST",
        p,
        &with_s,
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}",
        BAD,
    );
    c.add(
        "overlong UTF-8",
        "POST",
        p,
        &with_s,
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":{\"x\":\"\xc0\xaf\"}}",
        BAD,
    );
    c.add(
        "UTF-16 body",
        "POST",
        p,
        &post,
        &initialize_request(1).to_string().encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>(),
        BAD,
    );
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: \xff\xfe\xfd\r\n");
    c.raw("invalid UTF-8 in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("7", "{}").as_bytes()), NOT_FOUND);
    let mut h = lines(&[("accept", "text/event-stream")]);
    h.extend_from_slice(b"Last-Event-ID: \xff\xfe-0-1\r\n");
    c.raw("invalid UTF-8 in Last-Event-ID (a new session)", request(port, "GET", b"/sse/good", &h, b""), OK)
        .containing("event: endpoint");
    c.add("%FF in sessionId", "POST", "/sse/good/message?sessionId=%FF%FE", &post, ping("8", "{}").as_bytes(), NOT_FOUND);
    c.add("%FF in the server name", "POST", "/mcp/%FF", &post, &[], BAD);
    c.raw("raw byte 0xFF in the path", request(port, "GET", b"/sse/\xff", b"", b""), BAD);

    // Header injection.
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\nSet-Cookie: pwn=1\r\n");
    c.raw(
        "CRLF: a second header after Mcp-Session-Id",
        request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()),
        NOT_FOUND,
    );
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\rSet-Cookie: pwn=1\r\n");
    c.raw("bare CR in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\nX-Injected: 1\r\n");
    c.raw("bare LF in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), NOT_FOUND);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\x00def\r\n");
    c.raw("NUL in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id : abc\r\n");
    c.raw("space before the colon", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let sid_crlf = format!("{s}\r\nX-Injected: 1");
    let crlf_text = [("accept", ACCEPT_BOTH), ("content-type", "application/json"), ("mcp-session-id", sid_crlf.as_str())];
    // Raw CRLF in a header only makes another request header: the request is served, and the
    // "header" is never reflected in the answer.
    c.add("a session id followed by CRLF and a header", "POST", p, &crlf_text, ping("10", "{}").as_bytes(), OK)
        .containing("\"id\":10");
    c.add(
        "CRLF in sessionId (encoded)",
        "POST",
        "/sse/good/message?sessionId=abc%0d%0aSet-Cookie:%20pwn=1",
        &post,
        ping("11", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "CRLF after a live sessionId",
        "POST",
        &format!("{msg}%0d%0aSet-Cookie:%20pwn=1"),
        &post,
        ping("12", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add("duplicate sessionId", "POST", &format!("{msg}&sessionId=zz"), &post, ping("13", "{}").as_bytes(), BAD);
    c.add(
        "Last-Event-ID with %0d%0a (a new session)",
        "GET",
        "/sse/good",
        &[("last-event-id", "abc%0d%0aSet-Cookie:%20x-0-1")],
        b"",
        OK,
    )
    .containing("event: endpoint");
    c.add(
        "X-Forwarded-Prefix with markup (sanitized)",
        "GET",
        "/sse/good",
        &[("x-forwarded-prefix", "/x\"><script>alert(1)</script>")],
        b"",
        OK,
    )
    .containing("data: /sse/good/message?sessionId=");
    c.add("log injection in the server name", "POST", "/mcp/x%0aFAKE%20session%20ended%20reason=shutdown", &post, &[], NOT_FOUND);
    c.add(
        "a junk protocol version",
        "POST",
        p,
        &[with_s[0], with_s[1], with_s[2], ("mcp-protocol-version", "2099-99-99")],
        ping("14", "{}").as_bytes(),
        BAD,
    );
    let long_version = "v".repeat(10_000);
    c.add(
        "a 10 KB protocol version",
        "POST",
        p,
        &[with_s[0], with_s[1], with_s[2], ("mcp-protocol-version", &long_version)],
        ping("15", "{}").as_bytes(),
        BAD,
    );
    c.add(
        "uppercase session id",
        "POST",
        p,
        &[post[0], post[1], ("mcp-session-id", &s.to_ascii_uppercase())],
        ping("16", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "the legacy session's id on /mcp",
        "POST",
        p,
        &[post[0], post[1], ("mcp-session-id", l)],
        ping("17", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "the streamable session's id on the legacy endpoint",
        "POST",
        &format!("/sse/good/message?sessionId={s}"),
        &post,
        ping("18", "{}").as_bytes(),
        NOT_FOUND,
    );
    let big = "h".repeat(64 * 1024);
    c.add("a 64 KB header", "GET", "/healthz", &[("x-junk", &big)], b"", OK);
    let huge = "h".repeat(1024 * 1024);
    c.add("a 1 MB header", "GET", "/healthz", &[("x-junk", &huge)], b"", &[431]);
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.add("200 headers", "GET", "/healthz", &many, b"", &[431]);

    // Path traversal in server names.
    for path in [
        "/sse/..%2F..%2Fetc",
        "/sse/..%2F..%2Fetc%2Fpasswd",
        "/sse/%2e%2e",
        "/sse/%2e",
        "/sse/good%00",
        "/sse/%00",
        "/sse/..",
        "/sse/../healthz",
        "/sse/good/../../etc/passwd",
        "/sse/",
        "//sse/good",
        "/sse/good/..",
        "/sse/%2E%2E%2Fgood",
    ] {
        c.add(format!("traversal GET {path}"), "GET", path, &[("accept", "text/event-stream")], b"", NOT_FOUND);
    }
    for path in ["/mcp/%2e%2e", "/mcp/%2E%2E%2Fgood", "/mcp/..%2fgood", "/mcp/good%2F..%2F..", "/mcp/good/..", "/mcp/.%2e/good"] {
        c.add(format!("traversal POST {path}"), "POST", path, &post, initialize_request(1).to_string().as_bytes(), NOT_FOUND);
    }
    c.add(
        "the message route spelled with %2F",
        "POST",
        &format!("/sse/good%2Fmessage?sessionId={l}"),
        &post,
        ping("19", "{}").as_bytes(),
        &[405],
    );
    let long_name = format!("/sse/{}", "n".repeat(300));
    c.add("a 300-character server name", "GET", &long_name, &[], b"", NOT_FOUND);
    c.raw(
        "absolute-form target with traversal",
        format!("GET http://127.0.0.1:{port}/sse/..%2Fetc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        NOT_FOUND,
    );
    c.raw(
        "a foreign Host (DNS rebinding)",
        b"GET /sse/good HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n".to_vec(),
        &[403],
    );
    c.add(
        "a foreign Origin",
        "POST",
        p,
        &[post[0], post[1], ("origin", "https://evil.example")],
        initialize_request(1).to_string().as_bytes(),
        &[403],
    );

    // Methods and broken HTTP framing.
    c.add("TRACE", "TRACE", p, &[], b"", &[405]);
    c.add("OPTIONS without Origin", "OPTIONS", p, &[], b"", &[405]);
    c.add("HEAD /healthz", "HEAD", "/healthz", &[], b"", OK);
    c.raw("HTTP/1.0", format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes(), OK);
    c.raw("HTTP/0.9 request line", b"GET /healthz\r\n\r\n".to_vec(), BAD);
    // 0: hyper closes the connection without an answer.
    c.raw("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[0]);
    c.raw("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), BAD);
    c.raw("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".to_vec(), NOT_FOUND);
    c.raw("garbage", b"\x00\x00\x00\x00\r\n\r\n".to_vec(), BAD);
    let init = initialize_request(1).to_string();
    // RFC 9112: Transfer-Encoding wins over Content-Length, and hyper closes the connection
    // afterwards, so nothing is left to smuggle into a next request.
    c.raw(
        "Content-Length and Transfer-Encoding",
        format!(
            "POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{init}\r\n0\r\n\r\n",
            init.len()
        )
        .into_bytes(),
        OK,
    );
    c.raw(
        "two different Content-Lengths",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}").into_bytes(),
        BAD,
    );
    c.raw(
        "negative Content-Length",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: -1\r\n\r\n").into_bytes(),
        BAD,
    );
    c.raw(
        "a bad chunk size",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        BAD,
    );
    c.raw(
        "Transfer-Encoding gzip, chunked",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        BAD,
    );

    // Oversized bodies (max_body is 1 MiB here).
    let over = echo_call(20, &"o".repeat(2 * 1024 * 1024)).to_string();
    c.add("2 MiB on the session", "POST", p, &with_s, over.as_bytes(), &[413]);
    c.add("2 MiB initialize", "POST", p, &post, over.as_bytes(), &[413]);
    c.add("2 MiB on the legacy endpoint", "POST", &msg, &post, over.as_bytes(), &[413]);
    let mut chunked = format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 65536, "c".repeat(65536)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.raw("2.5 MiB chunked", chunked, &[413]);
    let mut claimed = format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n").into_bytes();
    claimed.extend_from_slice(&vec![b' '; 1100 * 1024]);
    c.raw("a claimed 1 TB body", claimed, &[413]);
    c.list
}
