//! OpenAPI 3.1 documents of the REST tool calls, built from the tools' `inputSchema` and
//! `outputSchema` (pure functions over JSON). Each schema becomes a component of its own, its
//! `$defs` (and draft-07 `definitions`) become components beside it, and every local `$ref` is
//! rewritten so that it still resolves: `#/$defs/X…` to X's component, any other `#…` pointer
//! into the schema's own component. The documents are built from the kept tool lists, so they
//! follow `notifications/tools/list_changed` (see `stateless/catalog.rs`).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

/// One server's tools, as a document lists them.
pub(crate) struct Listed<'a> {
    pub(crate) server: &'a str,
    pub(crate) tools: &'a [Value],
}

/// Keywords whose values are data, not schemas: a `$ref` inside them is left alone.
const DATA_KEYWORDS: &[&str] = &["const", "default", "enum", "examples", "example"];

/// The document for `servers` (`base` is the path prefix the caller sees); `unavailable`
/// names servers whose tools could not be listed now.
pub(crate) fn document(title: &str, base: &str, servers: &[Listed<'_>], unavailable: &[String]) -> Value {
    let mut schemas = Map::new();
    schemas.insert("Problem".into(), problem_schema());
    schemas.insert("CallToolResult".into(), call_tool_result_schema());
    let mut paths = Map::new();
    let mut operations = HashSet::new();
    for listed in servers {
        for tool in listed.tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            let base_name = unique(&sanitize(&format!("{}__{name}", listed.server)), |n| schemas.contains_key(n));
            let input = tool.get("inputSchema").cloned().unwrap_or_else(|| json!({ "type": "object" }));
            let input = lift(input, &format!("{base_name}.input"), &mut schemas);
            let output = tool.get("outputSchema").cloned().map(|o| lift(o, &format!("{base_name}.output"), &mut schemas));
            let operation_id = unique(&sanitize(&format!("{}__{name}", listed.server)), |n| operations.contains(n));
            operations.insert(operation_id.clone());
            let path = format!("/rest/{}/tools/{}", segment(listed.server), segment(name));
            paths.insert(path, json!({ "post": operation(listed.server, tool, name, &operation_id, input, output) }));
        }
    }
    let mut info = json!({ "title": title, "version": env!("CARGO_PKG_VERSION") });
    if !unavailable.is_empty() {
        info["x-unavailable-servers"] = json!(unavailable);
    }
    json!({
        "openapi": "3.1.0",
        "info": info,
        "servers": [{ "url": if base.is_empty() { "/" } else { base } }],
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// The `post` operation of one tool.
fn operation(server: &str, tool: &Value, name: &str, id: &str, input: Value, output: Option<Value>) -> Value {
    let result = match output {
        Some(output) => json!({
            "allOf": [
                { "$ref": "#/components/schemas/CallToolResult" },
                { "type": "object", "properties": { "structuredContent": output } },
            ]
        }),
        None => json!({ "$ref": "#/components/schemas/CallToolResult" }),
    };
    let problem = |what: &str| {
        json!({
            "description": what,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } },
        })
    };
    let mut op = json!({
        "operationId": id,
        "summary": tool.get("title").and_then(Value::as_str).unwrap_or(name),
        "tags": [server],
        "requestBody": { "required": true, "content": { "application/json": { "schema": input } } },
        "responses": {
            "200": {
                "description": "The tool's CallToolResult (a tool's own error is a result with isError: true); with \
                                Accept: text/event-stream, progress and log events, then the result event",
                "content": { "application/json": { "schema": result }, "text/event-stream": { "schema": { "type": "string" } } },
            },
            "404": problem("No such server or tool"),
            "409": problem("The tool asked the caller something a REST call cannot answer"),
            "422": problem("The arguments were rejected (-32602)"),
            "502": problem("The upstream failed the call"),
            "503": problem("The upstream is unavailable or crash-looping (see Retry-After)"),
            "504": problem("The bridge's request timeout ran out"),
        },
    });
    if let Some(d) = tool.get("description").and_then(Value::as_str) {
        op["description"] = Value::from(d);
    }
    op
}

/// Puts `schema` into `schemas` as `root` (its `$defs` beside it) and returns a `$ref` to it.
fn lift(mut schema: Value, root: &str, schemas: &mut Map<String, Value>) -> Value {
    let root = unique(root, |n| schemas.contains_key(n));
    let mut defs: Vec<(&'static str, String, Value)> = Vec::new();
    if let Value::Object(o) = &mut schema {
        // A `$schema` or `$id` would change how the refs below resolve inside the document.
        o.remove("$schema");
        o.remove("$id");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(d)) = o.remove(key) {
                defs.extend(d.into_iter().map(|(k, v)| (key, k, v)));
            }
        }
    } else {
        // `true`/`false` schemas and anything else: taken as they are.
        schemas.insert(root.clone(), schema);
        return json!({ "$ref": format!("#/components/schemas/{root}") });
    }
    let mut names: HashMap<(&'static str, String), String> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::from([root.clone()]);
    for (key, name, _) in &defs {
        let component = unique(&format!("{root}.{}", sanitize(name)), |n| schemas.contains_key(n) || taken.contains(n));
        taken.insert(component.clone());
        names.insert((*key, name.clone()), component);
    }
    let rewrite = |r: &str| rewrite_ref(r, &root, &names);
    rewrite_refs(&mut schema, &rewrite);
    schemas.insert(root.clone(), schema);
    for (key, name, mut def) in defs {
        rewrite_refs(&mut def, &rewrite);
        schemas.insert(names[&(key, name)].clone(), def);
    }
    json!({ "$ref": format!("#/components/schemas/{root}") })
}

/// Where a local `$ref` of the schema lifted as `root` points in the document.
fn rewrite_ref(r: &str, root: &str, defs: &HashMap<(&'static str, String), String>) -> Option<String> {
    let pointer = r.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(format!("#/components/schemas/{root}"));
    }
    for key in ["$defs", "definitions"] {
        if let Some(rest) = pointer.strip_prefix(&format!("/{key}/")) {
            let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
            let name = name.replace("~1", "/").replace("~0", "~");
            let component = defs.get(&(key, name))?;
            let tail = if tail.is_empty() { String::new() } else { format!("/{tail}") };
            return Some(format!("#/components/schemas/{component}{tail}"));
        }
    }
    pointer.starts_with('/').then(|| format!("#/components/schemas/{root}{pointer}"))
}

/// Rewrites every string `$ref` in a schema (not inside data keywords).
fn rewrite_refs(v: &mut Value, rewrite: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k == "$ref" {
                    if let Some(new) = child.as_str().and_then(rewrite) {
                        *child = Value::from(new);
                    }
                } else if !DATA_KEYWORDS.contains(&k.as_str()) {
                    rewrite_refs(child, rewrite);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_refs(c, rewrite)),
        _ => {}
    }
}

/// A component name (`[A-Za-z0-9._-]+`) from any text.
fn sanitize(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// `name`, or `name_2`, `name_3`… if taken.
fn unique(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_string();
    }
    (2..).map(|n| format!("{name}_{n}")).find(|n| !taken(n)).unwrap_or_default()
}

/// A path segment, percent-encoded outside the unreserved characters.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details; `error` is the JSON-RPC error of the call",
        "properties": {
            "type": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "error": {
                "type": "object",
                "properties": { "code": { "type": "integer" }, "message": { "type": "string" }, "data": {} },
                "required": ["code", "message"],
            },
        },
        "required": ["status", "error"],
    })
}

fn call_tool_result_schema() -> Value {
    json!({
        "type": "object",
        "description": "The MCP CallToolResult",
        "properties": {
            "content": { "type": "array", "items": { "type": "object" } },
            "structuredContent": { "type": "object" },
            "isError": { "type": "boolean" },
        },
        "required": ["content"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows a local `$ref` in `doc`.
    fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
        doc.pointer(r.strip_prefix('#')?)
    }

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, c)| match (k.as_str(), c.as_str()) {
                ("$ref", Some(r)) => out.push(r.to_string()),
                _ if DATA_KEYWORDS.contains(&k.as_str()) => {}
                _ => refs(c, out),
            }),
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }

    #[test]
    fn defs_become_components_and_every_ref_resolves() {
        let tool = json!({
            "name": "make tree",
            "inputSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "root": { "$ref": "#/$defs/Node" },
                    "same": { "$ref": "#/properties/root" },
                    "legacy": { "$ref": "#/definitions/Leaf" },
                    "odd": { "$ref": "#/$defs/a~1b" },
                    "self": { "$ref": "#" },
                    "literal": { "const": { "$ref": "#/$defs/Node" } },
                },
                "$defs": {
                    "Node": { "type": "object", "properties": { "children": { "type": "array", "items": { "$ref": "#/$defs/Node" } } } },
                    "a/b": { "type": "string" },
                },
                "definitions": { "Leaf": { "type": "integer" } },
            },
            "outputSchema": { "type": "object", "properties": { "n": { "$ref": "#/$defs/N" } }, "$defs": { "N": { "type": "number" } } },
        });
        let doc = document("t", "", &[Listed { server: "s", tools: &[tool] }], &[]);
        let schemas = &doc["components"]["schemas"];
        assert!(schemas.get("s__make_tree.input.Node").is_some(), "{doc:#}");
        assert!(schemas["s__make_tree.input"].get("$defs").is_none() && schemas["s__make_tree.input"].get("$schema").is_none());
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() >= 9, "{all:?}");
        for r in &all {
            assert!(resolve(&doc, r).is_some(), "{r} resolves in {doc:#}");
        }
        let input = &schemas["s__make_tree.input"]["properties"];
        assert_eq!(input["literal"]["const"]["$ref"], "#/$defs/Node", "data is left alone");
        assert_eq!(
            resolve(&doc, input["same"]["$ref"].as_str().unwrap()).unwrap()["$ref"],
            "#/components/schemas/s__make_tree.input.Node"
        );
        let op = &doc["paths"]["/rest/s/tools/make%20tree"]["post"];
        assert_eq!(op["operationId"], "s__make_tree");
        let output =
            &op["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["structuredContent"];
        assert_eq!(output["$ref"], "#/components/schemas/s__make_tree.output");
    }

    #[test]
    fn names_that_collide_stay_apart() {
        let tools = [json!({ "name": "a b" }), json!({ "name": "a_b" })];
        let doc = document("t", "/p", &[Listed { server: "s", tools: &tools }], &["down".into()]);
        let ids: Vec<&str> =
            doc["paths"].as_object().unwrap().values().map(|p| p["post"]["operationId"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(doc["servers"][0]["url"], "/p");
        assert_eq!(doc["info"]["x-unavailable-servers"], json!(["down"]));
    }
}
