//! `hookyard events show`: one event laid out for reading — the request,
//! its body, the routing outcome, then every delivery with its attempts —
//! so "why did this not arrive" is answered on one screen.

use std::fmt::Write as _;

use anyhow::Result;

use super::output::{emit, print_json};
use super::{Conn, decode};
use crate::api::types::{DeliveryView, EventView};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};
use crate::model::records::DeliveryStatus;
use crate::model::word::Word;

pub(super) async fn events_show(
    client: &AdminClient,
    conn: &Conn,
    id: &str,
    received: bool,
) -> Result<()> {
    let v = client.get(&["admin", "events", id], &[]).await?;
    if conn.json {
        return print_json(&v);
    }
    emit(&render_event(&decode(v)?, received))
}

/// A readable event: request, body (decoded, or as `received`), routing,
/// then each delivery with its attempts, so "why did this not arrive" is
/// answered on one screen.
fn render_event(v: &EventView, received: bool) -> String {
    let e = &v.event.event;
    let mut out = String::new();
    let mut request = format!("{} {}", e.method, e.path);
    if !e.query.is_empty() {
        request = format!("{request}?{}", e.query);
    }
    let _ = writeln!(out, "event     {}", e.id);
    let _ = writeln!(out, "source    {}", table::text(Some(&e.source)));
    if let Some(version) = &e.version {
        let _ = writeln!(out, "version   {}", table::text(Some(version)));
    }
    let _ = writeln!(out, "received  {}", table::time(e.received_at));
    let _ = writeln!(out, "request   {request}");
    let _ = writeln!(out, "status    {}", v.status);
    if let Some(reason) = v.pending_reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "waiting   {reason}");
    }

    if !e.headers.is_empty() {
        out.push_str("\nheaders\n");
        for (k, val) in &e.headers {
            let _ = writeln!(out, "  {k}: {val}");
        }
    }

    let as_received = v.event.received_body.as_ref().filter(|_| received);
    let body = as_received.unwrap_or(&v.event.body);
    match (&e.content_encoding, &v.event.received_body) {
        (Some(coding), Some(r)) if as_received.is_some() => {
            let _ = writeln!(
                out,
                "\nbody as received ({coding}, {})",
                table::size(r.size as u64)
            );
        }
        (Some(coding), Some(r)) => {
            let _ = writeln!(
                out,
                "\nbody ({}; received as {coding}, {}: --received shows it)",
                table::size(body.size as u64),
                table::size(r.size as u64)
            );
        }
        _ => {
            let _ = writeln!(out, "\nbody ({})", table::size(body.size as u64));
        }
    }
    match body.text.as_deref() {
        Some("") => out.push_str("  (empty)\n"),
        Some(text) => {
            // Indent JSON bodies (most webhooks); anything else verbatim.
            let shown = crate::api::json::reindent_json(text).unwrap_or_else(|| text.to_string());
            for line in shown.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None if body.size == 0 => out.push_str("  (empty)\n"),
        None => out.push_str("  not UTF-8 text; --json shows it as base64\n"),
    }

    if let Some(outcome) = &v.outcome {
        let outcome = &outcome.outcome;
        let _ = writeln!(out, "\nrouting ({})", table::time(outcome.routed_at));
        if outcome.plugins.is_empty() {
            out.push_str("  no plugins; passthrough targets only\n");
        } else {
            let mut t = Table::new(&["PLUGIN", "RESULT", "DELIVERIES", "TIME", "REASON"])
                .right_align(&[2, 3])
                .max_width(4, 80);
            for p in &outcome.plugins {
                t.row(vec![
                    p.plugin.clone(),
                    p.result.as_str().to_string(),
                    p.deliveries.to_string(),
                    table::millis(p.duration_us as f64 / 1000.0),
                    p.reason.clone().unwrap_or_default(),
                ]);
            }
            out.push_str(&indent(&t.render(), "  "));
        }
    }

    if v.deliveries.is_empty() {
        out.push_str("\nno deliveries\n");
    } else {
        out.push_str("\ndeliveries\n");
        for d in &v.deliveries {
            out.push_str(&render_delivery(d));
        }
    }
    out
}

fn render_delivery(v: &DeliveryView) -> String {
    let d = &v.delivery;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {} -> {}  {}  ({}, {} attempt{})",
        d.id,
        d.target,
        d.status,
        d.origin,
        d.attempts,
        if d.attempts == 1 { "" } else { "s" },
    );
    if d.status == DeliveryStatus::Scheduled
        && let Some(at) = d.next_attempt_at
    {
        let _ = writeln!(out, "    next attempt {}", table::time(at));
    }
    if let Some(body) = &v.body {
        let _ = writeln!(
            out,
            "    body rewritten by the plugin ({})",
            table::size(body.size as u64)
        );
    }
    if !v.attempt_log.is_empty() {
        let mut t = Table::new(&["#", "AT", "RESULT", "LATENCY", "RESPONSE"])
            .right_align(&[0, 3])
            .max_width(2, 60)
            .max_width(4, 40);
        for a in &v.attempt_log {
            let result = match (a.status_code, a.error.as_deref()) {
                (Some(code), Some(err)) => format!("HTTP {code}: {err}"),
                (Some(code), None) => format!("HTTP {code}"),
                (None, Some(err)) => err.to_string(),
                (None, None) => "-".to_string(),
            };
            t.row(vec![
                a.n.to_string(),
                table::time(a.at),
                result,
                table::millis(a.latency_ms),
                a.response_body.clone(),
            ]);
        }
        out.push_str(&indent(&t.render(), "    "));
    } else if let Some(err) = &d.last_error {
        let _ = writeln!(out, "    last error: {}", table::fit(err, 120));
    }
    out
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
            crate::api::json::reindent_json(body).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \
             \"s\": \"x,{\\\"y\\\":[]}\",\n  \"e\": [],\n  \"n\": {\n    \"k\": null\n  }\n}"
        );
        assert_eq!(crate::api::json::reindent_json("[]").unwrap(), "[]");
        assert!(crate::api::json::reindent_json("42").is_none());
        assert!(crate::api::json::reindent_json("{not json").is_none());
    }

    fn sample_event() -> EventView {
        serde_json::from_value(json!({
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
                "deliveries": ["msg_1"], "deliveries_total": 1},
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
            }],
            "deliveries_next_cursor": null
        }))
        .unwrap()
    }

    #[test]
    fn an_event_reads_top_to_bottom() {
        let text = render_event(&sample_event(), false);
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
        let v: EventView = serde_json::from_value(json!({
            "event": {"id": "evt_2", "source": "shop", "received_at": 1_763_892_000_000u64,
                      "method": "POST", "path": "/hooks/shop", "query": "", "headers": [],
                      "body": {"size": 3, "text": null, "base64": "AAEC"}},
            "status": "pending", "pending_reason": "plugin router is not loaded",
            "outcome": null, "deliveries": [], "deliveries_next_cursor": null
        }))
        .unwrap();
        let text = render_event(&v, false);
        assert!(
            text.contains("waiting   plugin router is not loaded"),
            "{text}"
        );
        assert!(text.contains("not UTF-8"), "{text}");
        assert!(text.contains("no deliveries"), "{text}");
    }

    #[test]
    fn an_encoded_event_shows_its_decoded_body_or_the_received_one() {
        let v: EventView = serde_json::from_value(json!({
            "event": {"id": "evt_3", "source": "gh", "received_at": 1_763_892_000_000u64,
                      "method": "POST", "path": "/hooks/gh", "query": "", "headers": [],
                      "content_encoding": "gzip",
                      "body": {"size": 7, "text": "{\"n\":1}", "base64": "eyJuIjoxfQ=="},
                      "received_body": {"size": 3, "text": null, "base64": "H4sI"}},
            "status": "pending", "pending_reason": null,
            "outcome": null, "deliveries": [], "deliveries_next_cursor": null
        }))
        .unwrap();
        let decoded = render_event(&v, false);
        assert!(
            decoded.contains("body (7 B; received as gzip, 3 B: --received shows it)"),
            "{decoded}"
        );
        assert!(decoded.contains("\"n\": 1"), "{decoded}");
        let received = render_event(&v, true);
        assert!(
            received.contains("body as received (gzip, 3 B)"),
            "{received}"
        );
        assert!(received.contains("not UTF-8"), "{received}");
    }
}
