//! The OpenAPI 3.1 documents (`/rest/{server}/openapi.json`, `/rest/openapi.json`), checked by
//! a real validator (`@seriousme/openapi-schema-validator`, which also dereferences them) and
//! by resolving every `$ref` here; rebuilt after a server says its tools changed.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::support::*;
use crate::common::{self, echo_server, everything_stdio, require_node, Bridge, TempDir};

/// Runs the validator on `doc`: (valid, version, every `$ref` resolved), with the errors.
fn validate(doc: &Value) -> Value {
    let dir = TempDir::new("openapi");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let script = common::clients_dir().join("openapi_validate.mjs");
    let out = Command::new("node").arg(&script).arg(&file).current_dir(common::clients_dir()).output().expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "validator: {text} {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("validator output {text}: {e}"))
}

/// Every `$ref` in `doc` resolves inside it.
fn assert_refs_resolve(doc: &Value) -> usize {
    fn walk(doc: &Value, v: &Value, n: &mut usize) {
        match v {
            Value::Object(o) => {
                for (k, c) in o {
                    if let ("$ref", Some(r)) = (k.as_str(), c.as_str()) {
                        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is local"));
                        assert!(doc.pointer(pointer).is_some(), "{r} resolves");
                        *n += 1;
                    } else if !matches!(k.as_str(), "const" | "default" | "enum" | "examples") {
                        walk(doc, c, n);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(doc, c, n)),
            _ => {}
        }
    }
    let mut n = 0;
    walk(doc, doc, &mut n);
    n
}

fn assert_valid(doc: &Value) {
    let verdict = validate(doc);
    assert_eq!(verdict["valid"], true, "{verdict:#}");
    assert_eq!(verdict["version"], "3.1", "{verdict}");
    assert_eq!(verdict["resolved"], true, "{verdict}");
    assert!(assert_refs_resolve(doc) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_validate_and_follow_tool_changes() {
    require_node();
    let config = format!("{}{}[servers.dead]\ncommand = \"false\"\n", echo_server("echo"), everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;

    let (status, headers, doc) = get(&bridge, "/rest/everything/openapi.json", None).await;
    assert_eq!((status, header(&headers, "content-type").as_str()), (200, "application/json"), "{doc}");
    assert_valid(&doc);
    let op = &doc["paths"]["/rest/everything/tools/get-structured-content"]["post"];
    let output = &op["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["structuredContent"];
    let component = output["$ref"].as_str().expect("the outputSchema is a component");
    let schema = doc.pointer(component.strip_prefix('#').unwrap()).unwrap();
    assert!(schema["properties"]["temperature"].is_object(), "{schema}");
    let input = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    assert!(doc.pointer(input.strip_prefix('#').unwrap()).unwrap()["properties"]["location"].is_object());

    // Every server in one document; one that cannot list its tools is left out and named.
    let (status, _, all) = get(&bridge, "/rest/openapi.json", None).await;
    assert_eq!(status, 200, "{all}");
    assert_valid(&all);
    let paths = all["paths"].as_object().unwrap();
    assert!(paths.contains_key("/rest/echo/tools/add") && paths.contains_key("/rest/everything/tools/echo"), "{all}");
    assert_eq!(all["info"]["x-unavailable-servers"], serde_json::json!(["dead"]), "{}", all["info"]);

    // A second backing session of server-everything registers its conditional tools and says
    // tools/list_changed: the kept list is dropped and the next document is built afresh.
    let _ = get(&bridge, "/rest/everything/openapi.json", None).await;
    let rebuilt = "the server's tools changed";
    let before = bridge.count(rebuilt);
    let url = bridge.url("/rest/everything/tools/trigger-long-running-operation");
    let long = tokio::spawn(async move { common::http().post(url).body(r#"{"duration": 3, "steps": 3}"#).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, v) = post(&bridge, "/rest/everything/tools/echo", r#"{"message": "second session"}"#, None).await;
    assert_eq!(status, 200, "{v}");
    let (status, _, doc) = get(&bridge, "/rest/everything/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_valid(&doc);
    assert!(bridge.count(rebuilt) > before, "the list was rebuilt after tools/list_changed");
    assert_eq!(long.await.unwrap().unwrap().status(), 200);
}
