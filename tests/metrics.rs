//! `/metrics` parses as Prometheus text and its ingest, routing, delivery
//! and histogram samples match the traffic that was actually sent.

mod support;

use std::time::Duration;
use support::admin::*;
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

    // Names.
    assert!(!scrape.samples.is_empty());
    for s in &scrape.samples {
        assert!(s.metric.starts_with("hookyard_"), "{}", s.metric);
        if let prometheus_parse::Value::Counter(_) = s.value {
            assert!(s.metric.ends_with("_total"), "counter {}", s.metric);
        }
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut w = line.split_whitespace().skip(2);
        let (name, kind) = (w.next().unwrap(), w.next().unwrap());
        assert!(name.starts_with("hookyard_"), "{line}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
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
        .samples
        .iter()
        .filter(|s| s.metric == "hookyard_delivery_attempts_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => panic!("not a counter"),
        })
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

    // Histograms: buckets are cumulative and end with +Inf = count.
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
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .unwrap_or_else(|| panic!("no histogram {name}"));
        let prometheus_parse::Value::Histogram(buckets) = &h.value else {
            panic!("{name} is not a histogram: {:?}", h.value);
        };
        assert!(
            buckets.windows(2).all(|w| w[0].count <= w[1].count),
            "{name}: {buckets:?}"
        );
        let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
        assert_eq!(inf.count, count, "{name}");
        let sum = get(&format!("{name}_sum"), &[label]);
        assert!(sum > 0.0, "{name}_sum = {sum}");
    }
}
