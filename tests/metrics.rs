//! `/metrics` parses strictly as OpenMetrics text, its ingest, routing,
//! delivery and histogram samples match the traffic that was actually
//! sent, and the admin API's counts are the same numbers.

mod support;

use std::time::Duration;
use support::admin::*;
use support::openmetrics::{self, Kind};
use support::*;

// ---------------------------------------------------------------------------
// Metrics.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_what_was_sent() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "router");
    // The first answer fails, then everything succeeds.
    let sink = Sink::start(vec![answer(500)]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ orders_target = \"t\", alerts_target = \"t\" }}\n\n\
         [sources.shop]\nplugins = [\"router\"]\n\n\
         [sources.gh]\nverify = {{ scheme = \"github\", secret = \"x\" }}\n\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\"]\njitter = 0\n",
        server_section(tmp.path()),
        sink.url("/orders"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // 3 routed (order.created), 2 dropped (ping; no type).
    let bodies = [
        r#"{"type":"order.created","n":0}"#,
        r#"{"type":"ping","n":1}"#,
        r#"{"type":"order.created","n":2}"#,
        r#"{"n":3}"#,
        r#"{"type":"order.created","n":4}"#,
    ];
    let mut ids = Vec::new();
    for b in bodies {
        ids.push(hy.send("shop", b).await);
    }
    let mut reject_reason = String::new();
    for _ in 0..2 {
        let (status, v) = hy.post("gh", r#"{"zen":"hi"}"#).await;
        assert_eq!(status, 401, "{v}");
        reject_reason = v["code"].as_str().unwrap().to_string();
    }
    assert_eq!(reject_reason, "missing_header");
    for (id, b) in ids.iter().zip(bodies) {
        let v = hy
            .wait_event(id, Duration::from_secs(15), |v| v["status"] != "pending")
            .await;
        if b.contains("order.created") {
            let v = hy
                .wait_event(id, Duration::from_secs(15), is_final_delivered)
                .await;
            assert_eq!(v["status"], "routed", "{v:#}");
        } else {
            assert_eq!(v["status"], "dropped", "{v:#}");
        }
    }
    sink.wait_for(4, Duration::from_secs(10)).await;
    // Gauges are updated just after the store: scrape until the queue is
    // empty.
    let text = poll(Duration::from_secs(10), "scheduled = 0", async || {
        let text = hy.admin_text("/metrics").await;
        let s = parse_metrics(&text);
        match find_sample(&s, "hookyard_deliveries_scheduled", &[("target", "t")]) {
            Some(0.0) => Ok(text),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let scrape = parse_metrics(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        find_sample(&scrape, name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{text}"))
    };

    // The format: what Prometheus negotiates for OpenMetrics.
    let r = reqwest::get(format!("{}/metrics", hy.admin)).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );

    // Names. (The reader already checked that each counter's samples end
    // in `_total` and each histogram's in `_bucket`, `_sum`, `_count`.)
    assert!(scrape.samples().next().is_some());
    for f in &scrape.families {
        assert!(f.name.starts_with("hookyard_"), "{}", f.name);
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{}",
            f.name
        );
        if f.kind == Kind::Counter {
            assert!(!f.name.ends_with("_total"), "{}", f.name);
        }
    }

    // Ingest.
    assert_eq!(
        get("hookyard_requests_accepted_total", &[("source", "shop")]),
        5.0
    );
    assert_eq!(
        get(
            "hookyard_requests_rejected_total",
            &[("source", "gh"), ("reason", "missing_header")]
        ),
        2.0
    );
    assert_eq!(
        get("hookyard_requests_received_total", &[("source", "shop")]),
        5.0
    );
    assert_eq!(
        get("hookyard_requests_received_total", &[("source", "gh")]),
        2.0
    );
    assert_eq!(
        find_sample(
            &scrape,
            "hookyard_requests_rejected_total",
            &[("source", "shop")]
        ),
        None
    );
    assert_eq!(
        find_sample(
            &scrape,
            "hookyard_requests_accepted_total",
            &[("source", "gh")]
        )
        .unwrap_or(0.0),
        0.0
    );

    // Routing.
    let plugin = |result: &str| {
        get(
            "hookyard_plugin_events_total",
            &[("plugin", "router"), ("result", result)],
        )
    };
    assert_eq!(plugin("routed"), 3.0);
    assert_eq!(plugin("dropped"), 2.0);
    assert_eq!(
        find_sample(
            &scrape,
            "hookyard_plugin_events_total",
            &[("plugin", "router"), ("result", "failed")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        get("hookyard_plugin_calls_total", &[("plugin", "router")]),
        5.0
    );
    assert_eq!(
        get(
            "hookyard_plugin_call_duration_seconds_count",
            &[("plugin", "router")]
        ),
        5.0
    );
    assert_eq!(get("hookyard_events_total", &[("result", "routed")]), 3.0);
    assert_eq!(get("hookyard_events_total", &[("result", "dropped")]), 2.0);
    assert_eq!(get("hookyard_plugin_up", &[("plugin", "router")]), 1.0);

    // Delivery.
    let attempts = |result: &str| {
        get(
            "hookyard_delivery_attempts_total",
            &[("target", "t"), ("result", result)],
        )
    };
    assert_eq!(attempts("success"), 3.0);
    assert_eq!(attempts("http_error"), 1.0);
    let all_attempts: f64 = scrape
        .samples()
        .filter(|s| s.name == "hookyard_delivery_attempts_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(all_attempts, 4.0);
    assert_eq!(
        get(
            "hookyard_delivery_attempt_duration_seconds_count",
            &[("target", "t")]
        ),
        all_attempts
    );
    assert_eq!(
        get(
            "hookyard_deliveries_total",
            &[("target", "t"), ("result", "delivered")]
        ),
        3.0
    );
    assert_eq!(
        find_sample(
            &scrape,
            "hookyard_deliveries_total",
            &[("target", "t"), ("result", "dead")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        get("hookyard_deliveries_scheduled", &[("target", "t")]),
        0.0
    );
    assert_eq!(
        get("hookyard_deliveries_in_flight", &[("target", "t")]),
        0.0
    );
    assert_eq!(
        get(
            "hookyard_target_state",
            &[("target", "t"), ("state", "closed")]
        ),
        1.0
    );
    assert!(get("hookyard_store_size_bytes", &[]) > 0.0);

    // Histograms: the reader checked that buckets are cumulative and end
    // with +Inf = count; the bounds are the ones dashboards were built on.
    let bounds = [
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        f64::INFINITY,
    ];
    for (name, label, count) in [
        (
            "hookyard_delivery_attempt_duration_seconds",
            ("target", "t"),
            4.0,
        ),
        (
            "hookyard_plugin_call_duration_seconds",
            ("plugin", "router"),
            5.0,
        ),
    ] {
        let h = scrape
            .histogram(name, &[label])
            .unwrap_or_else(|| panic!("no histogram {name}"));
        let les: Vec<f64> = h.buckets.iter().map(|(le, _)| *le).collect();
        assert_eq!(les, bounds, "{name}");
        assert_eq!(h.count, count, "{name}");
        assert_eq!(h.buckets.last().unwrap().1, count, "{name}");
        assert!(h.sum > 0.0, "{name}_sum = {}", h.sum);
    }

    // The admin API shows the same counts (one counting system).
    let sources = hy.admin_json("/admin/sources").await;
    let counts = |name: &str| {
        sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no source {name}: {sources}"))["counts"]
            .clone()
    };
    assert_eq!(counts("shop"), serde_json::json!({"accepted": 5}));
    assert_eq!(counts("gh"), serde_json::json!({"missing_header": 2}));
    let plugins = hy.admin_json("/admin/plugins").await;
    let stats = &plugins["plugins"][0]["stats"];
    assert_eq!(plugins["plugins"][0]["name"], "router", "{plugins}");
    assert_eq!(stats["calls"], 5, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
    assert!(stats["latency_us"]["max"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["latency_us"]["p50"].as_u64().unwrap()
            <= stats["latency_us"]["max"].as_u64().unwrap(),
        "{stats}"
    );
}

// ---------------------------------------------------------------------------
// The reader itself: it accepts what is served and refuses what is not.

const GOOD: &str = "# HELP a_requests Requests.\n\
    # TYPE a_requests counter\n\
    a_requests_total{source=\"x\\\"y\",reason=\"r\"} 3\n\
    # HELP a_wait_seconds Wait.\n\
    # TYPE a_wait_seconds histogram\n\
    # UNIT a_wait_seconds seconds\n\
    a_wait_seconds_sum{t=\"a\"} 1.5\n\
    a_wait_seconds_count{t=\"a\"} 2\n\
    a_wait_seconds_bucket{le=\"0.5\",t=\"a\"} 1\n\
    a_wait_seconds_bucket{le=\"+Inf\",t=\"a\"} 2\n\
    # TYPE a_up gauge\n\
    a_up 1\n\
    # EOF\n";

#[test]
fn the_reader_reads_what_is_served() {
    let s = openmetrics::parse(GOOD).unwrap();
    assert_eq!(
        s.sample("a_requests_total", &[("source", "x\"y")]),
        Some(3.0)
    );
    assert_eq!(
        s.family("a_wait_seconds").unwrap().unit.as_deref(),
        Some("seconds")
    );
    let h = s.histogram("a_wait_seconds", &[("t", "a")]).unwrap();
    assert_eq!(h.buckets, vec![(0.5, 1.0), (f64::INFINITY, 2.0)]);
    assert_eq!((h.count, h.sum), (2.0, 1.5));
    assert_eq!(s.sample("a_up", &[]), Some(1.0));
}

#[test]
fn the_reader_refuses_what_is_malformed() {
    for (bad, why) in [
        (GOOD.replace("# EOF\n", ""), "no EOF"),
        (GOOD.replace("a_up 1\n", "a_up 1\n\n"), "empty line"),
        (
            GOOD.replace("a_requests_total{", "a_requests{"),
            "counter without _total",
        ),
        (GOOD.replace("# TYPE a_up gauge\n", ""), "no TYPE"),
        (GOOD.replace("} 3\n", "} 3 123\n"), "timestamp"),
        (GOOD.replace("} 3\n", "} -3\n"), "negative count"),
        (GOOD.replace("} 3\n", "} inf\n"), "Rust float spelling"),
        (GOOD.replace(",reason=", ",source="), "label twice"),
        (GOOD.replace("x\\\"y", "x\\ty"), "bad escape"),
        (
            GOOD.replace("} 2\n# TYPE", "} 3\n# TYPE"),
            "+Inf is not _count",
        ),
        (
            GOOD.replace("le=\"0.5\",t=\"a\"} 1", "le=\"0.5\",t=\"a\"} 5"),
            "not cumulative",
        ),
        (
            GOOD.replace("a_up 1\n", "a_up 1\n# TYPE a_requests counter\n"),
            "declared twice",
        ),
        (
            GOOD.replace(
                "# UNIT a_wait_seconds seconds",
                "# UNIT a_wait_seconds bytes",
            ),
            "unit",
        ),
        (GOOD.replace("a_up 1", "a_up 1 # {a=\"b\"} 1"), "exemplar"),
        (
            GOOD.replace("a_up 1", "a_down 1"),
            "sample of another family",
        ),
    ] {
        assert_ne!(bad, GOOD, "{why}: the replacement did nothing");
        assert!(openmetrics::parse(&bad).is_err(), "{why}: accepted\n{bad}");
    }
}
