//! `hookyard events show`: one event laid out for reading — the request,
//! its body, the routing outcome, then every delivery with its attempts —
//! so "why did this not arrive" is answered on one screen.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::Conn;
use super::output::{emit, print_json};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};

pub(super) async fn events_show(client: &AdminClient, conn: &Conn, id: &str) -> Result<()> {
    let v = client.get(&["admin", "events", id], &[]).await?;
    if conn.json {
        return print_json(&v);
    }
    emit(&render_event(&v))
}

/// A readable event: request, body, routing, then each delivery with its
/// attempts, so "why did this not arrive" is answered on one screen.
fn render_event(v: &Value) -> String {
    // The request fields sit under "event" next to status and deliveries;
    // accept them at the top level too rather than print nothing.
    let e = if v["event"].is_object() {
        &v["event"]
    } else {
        v
    };
    let mut out = String::new();
    let status = if v["status"].is_null() {
        &e["status"]
    } else {
        &v["status"]
    };
    let mut request = format!("{} {}", table::text(&e["method"]), table::text(&e["path"]));
    if let Some(q) = e["query"].as_str().filter(|q| !q.is_empty()) {
        request = format!("{request}?{q}");
    }
    let _ = writeln!(out, "event     {}", table::text(&e["id"]));
    let _ = writeln!(out, "source    {}", table::text(&e["source"]));
    let _ = writeln!(out, "received  {}", table::time_of(&e["received_at"]));
    let _ = writeln!(out, "request   {request}");
    let _ = writeln!(out, "status    {}", table::text(status));
    if let Some(reason) = v["pending_reason"].as_str().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "waiting   {reason}");
    }

    let headers = header_pairs(&e["headers"]);
    if !headers.is_empty() {
        out.push_str("\nheaders\n");
        for (k, val) in headers {
            let _ = writeln!(out, "  {k}: {val}");
        }
    }

    let body = &e["body"];
    let size = body["size"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "\nbody ({})", table::size(size));
    match body["text"].as_str() {
        Some("") => out.push_str("  (empty)\n"),
        Some(text) => {
            // Indent JSON bodies (most webhooks); anything else verbatim.
            let shown = reindent_json(text).unwrap_or_else(|| text.to_string());
            for line in shown.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None if size == 0 => out.push_str("  (empty)\n"),
        None => out.push_str("  not UTF-8 text; --json shows it as base64\n"),
    }

    let outcome = &v["outcome"];
    if outcome.is_object() {
        let _ = writeln!(out, "\nrouting ({})", table::time_of(&outcome["routed_at"]));
        let plugins = outcome["plugins"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if plugins.is_empty() {
            out.push_str("  no plugins; passthrough targets only\n");
        } else {
            let mut t = Table::new(&["PLUGIN", "RESULT", "DELIVERIES", "TIME", "REASON"])
                .right_align(&[2, 3])
                .max_width(4, 80);
            for p in plugins {
                t.row(vec![
                    table::text(&p["plugin"]),
                    table::text(&p["result"]),
                    table::text(&p["deliveries"]),
                    p["duration_us"]
                        .as_f64()
                        .map(|us| table::millis(us / 1000.0))
                        .unwrap_or_default(),
                    p["reason"].as_str().unwrap_or("").to_string(),
                ]);
            }
            out.push_str(&indent(&t.render(), "  "));
        }
    }

    let deliveries = v["deliveries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if deliveries.is_empty() {
        out.push_str("\nno deliveries\n");
    } else {
        out.push_str("\ndeliveries\n");
        for d in deliveries {
            out.push_str(&render_delivery(d));
        }
    }
    out
}

fn render_delivery(d: &Value) -> String {
    let mut out = String::new();
    let attempts = d["attempts"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "  {} -> {}  {}  ({}, {attempts} attempt{})",
        table::text(&d["id"]),
        table::text(&d["target"]),
        table::text(&d["status"]),
        table::text(&d["origin"]),
        if attempts == 1 { "" } else { "s" },
    );
    if d["status"] == "scheduled" && d["next_attempt_at"].is_u64() {
        let _ = writeln!(
            out,
            "    next attempt {}",
            table::time_of(&d["next_attempt_at"])
        );
    }
    if let Some(size) = d["body"]["size"].as_u64() {
        let _ = writeln!(
            out,
            "    body rewritten by the plugin ({})",
            table::size(size)
        );
    }
    let log = d["attempt_log"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !log.is_empty() {
        let mut t = Table::new(&["#", "AT", "RESULT", "LATENCY", "RESPONSE"])
            .right_align(&[0, 3])
            .max_width(2, 60)
            .max_width(4, 40);
        for a in log {
            let result = match (a["status_code"].as_u64(), a["error"].as_str()) {
                (Some(code), Some(err)) => format!("HTTP {code}: {err}"),
                (Some(code), None) => format!("HTTP {code}"),
                (None, Some(err)) => err.to_string(),
                (None, None) => "-".to_string(),
            };
            t.row(vec![
                table::text(&a["n"]),
                table::time_of(&a["at"]),
                result,
                a["latency_ms"]
                    .as_f64()
                    .map(table::millis)
                    .unwrap_or_default(),
                a["response_body"].as_str().unwrap_or("").to_string(),
            ]);
        }
        out.push_str(&indent(&t.render(), "    "));
    } else if let Some(err) = d["last_error"].as_str() {
        let _ = writeln!(out, "    last error: {}", table::fit(err, 120));
    }
    out
}

/// A JSON object or array laid out two spaces per level, keys and numbers
/// exactly as sent (parsing into a `Value` would sort the keys and could
/// reformat numbers, and this is the body the provider sent). `None` when
/// the text is not a JSON object or array.
fn reindent_json(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    if !(v.is_object() || v.is_array()) {
        return None;
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next()?);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Headers arrive as `[name, value]` pairs (order and repeats kept); an
/// object is accepted too.
fn header_pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|h| {
                Some((
                    h.get(0)?.as_str()?.to_string(),
                    h.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), table::text(v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_bodies_are_indented_without_reordering() {
        let body = r#"{"z":1,"a":[1, 2.50,{}],"s":"x,{\"y\":[]}","e":[] ,"n":{"k":null}}"#;
        assert_eq!(
            reindent_json(body).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \
             \"s\": \"x,{\\\"y\\\":[]}\",\n  \"e\": [],\n  \"n\": {\n    \"k\": null\n  }\n}"
        );
        assert_eq!(reindent_json("[]").unwrap(), "[]");
        assert!(reindent_json("42").is_none());
        assert!(reindent_json("{not json").is_none());
    }

    fn sample_event() -> Value {
        json!({
            "event": {
                "id": "evt_1", "source": "shop", "received_at": 1_763_892_000_000u64,
                "method": "POST", "path": "/hooks/shop", "query": "a=1",
                "headers": [["content-type", "application/json"], ["x-n", "1"]],
                "body": {"size": 12, "text": "{\"n\":1}", "base64": "eyJuIjoxfQ=="}
            },
            "status": "routed",
            "pending_reason": null,
            "outcome": {"status": "routed", "routed_at": 1_763_892_000_100u64,
                "plugins": [{"plugin": "router", "result": "drop", "reason": "not an order",
                             "deliveries": 0, "duration_us": 1500}],
                "deliveries": ["msg_1"]},
            "deliveries": [{
                "id": "msg_1", "event_id": "evt_1", "target": "orders", "origin": "passthrough",
                "headers": [], "created_at": 1_763_892_000_100u64, "status": "dead", "attempts": 2,
                "last_error": "HTTP 500", "body": null,
                "attempt_log": [
                    {"n": 1, "at": 1_763_892_000_200u64, "status_code": 500, "latency_ms": 12.4,
                     "response_body": "oops\nline two"},
                    {"n": 2, "at": 1_763_892_001_200u64, "latency_ms": 3.0,
                     "error": "connection refused", "response_body": ""}
                ]
            }]
        })
    }

    #[test]
    fn an_event_reads_top_to_bottom() {
        let text = render_event(&sample_event());
        for want in [
            "event     evt_1",
            "received  2025-11-23T10:00:00Z",
            "request   POST /hooks/shop?a=1",
            "status    routed",
            "  content-type: application/json",
            "body (12 B)",
            "    \"n\": 1",
            "router  drop",
            "not an order",
            "msg_1 -> orders  dead  (passthrough, 2 attempts)",
            "HTTP 500",
            "oops line two",
            "connection refused",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_binary_or_pending_event_still_renders() {
        let v = json!({
            "event": {"id": "evt_2", "body": {"size": 3, "text": null, "base64": "AAEC"}},
            "status": "pending", "pending_reason": "plugin router is not loaded",
            "outcome": null, "deliveries": []
        });
        let text = render_event(&v);
        assert!(
            text.contains("waiting   plugin router is not loaded"),
            "{text}"
        );
        assert!(text.contains("not UTF-8"), "{text}");
        assert!(text.contains("no deliveries"), "{text}");
    }
}
