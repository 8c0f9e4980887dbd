//! N events in through the quickstart plugin; the right deliveries out,
//! signed; drops and failures recorded with their reasons.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_routes_signs_and_records_drops() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "router");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ orders_target = \"orders\", alerts_target = \"alerts\" }}\n\n\
         [sources.shop]\nplugins = [\"router\"]\ntargets = [\"archive\"]\n\n\
         [targets.orders]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nheaders = {{ x-team = \"fulfilment\" }}\n\n\
         [targets.alerts]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [targets.archive]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/orders"),
        sink.url("/alerts"),
        sink.url("/archive"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    const N: usize = 30;
    let mut orders = vec![];
    let mut alerts = vec![];
    let mut pings = vec![];
    for i in 0..N {
        let (kind, list) = match i % 3 {
            0 => ("order.created", &mut orders),
            1 => ("user.signup", &mut alerts),
            _ => ("ping", &mut pings),
        };
        let body = json!({ "type": kind, "n": i }).to_string();
        let id = hy.send("shop", &body).await;
        list.push((id, body));
    }
    let bad = hy.send("shop", "this is not json").await;

    // Every event passes through to the archive target; orders and alerts
    // also go to their own targets. Pings are only archived.
    let expected = N + orders.len() + alerts.len() + 1;
    sink.wait_for(expected, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.received();
    assert_eq!(got.len(), expected, "no extra deliveries");
    assert!(
        got.iter().all(|r| r.signature_ok),
        "every delivery verifies"
    );

    let at_orders = sink.received_on("/orders");
    assert_eq!(at_orders.len(), orders.len());
    for (id, body) in &orders {
        let r = at_orders
            .iter()
            .find(|r| r.body == body.as_bytes())
            .unwrap_or_else(|| panic!("order {id} not delivered unchanged"));
        assert_eq!(r.header("x-hookyard-event-type"), Some("order.created"));
        assert_eq!(r.header("x-team"), Some("fulfilment"), "target header");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("webhook-id").unwrap().starts_with("msg_"));
    }
    // The plugin's KV counter runs 1..=n across events of one type.
    let mut counts: Vec<u64> = at_orders
        .iter()
        .map(|r| r.header("x-hookyard-type-count").unwrap().parse().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, (1..=orders.len() as u64).collect::<Vec<_>>());

    let at_alerts = sink.received_on("/alerts");
    assert_eq!(at_alerts.len(), alerts.len());
    for (id, body) in &alerts {
        let r = at_alerts
            .iter()
            .find(|r| r.json()["event_id"] == id.as_str())
            .unwrap_or_else(|| panic!("alert for {id} missing"));
        assert_eq!(r.json()["text"], "user.signup from shop");
        assert_eq!(
            r.json()["payload"],
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
    }
    assert_eq!(sink.received_on("/archive").len(), N + 1);

    for (id, _) in &pings {
        let v = hy.event(id).await;
        assert_eq!(v["status"], "routed", "archived by passthrough: {v}");
        assert_eq!(v["outcome"]["plugins"][0]["result"], "drop");
        assert_eq!(
            v["outcome"]["plugins"][0]["reason"],
            "ping events are not routed"
        );
        // What the plugin logged for this event is kept with it.
        let log = &v["outcome"]["plugins"][0]["logs"][0];
        assert_eq!(log["level"], "info", "{v}");
        assert_eq!(
            log["message"],
            format!("event {id} dropped: ping events are not routed")
        );
        assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
    }
    let v = hy
        .wait_event(&bad, Duration::from_secs(10), delivered)
        .await;
    assert_eq!(v["status"], "failed");
    let reason = v["outcome"]["plugins"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("body is not JSON"), "{reason}");

    // The admin view has the event as received, and the attempt.
    let (id, body) = &orders[0];
    let v = hy.wait_event(id, Duration::from_secs(10), delivered).await;
    assert_eq!(v["event"]["body"]["text"], body.as_str());
    assert_eq!(v["event"]["source"], "shop");
    assert_eq!(v["event"]["path"], "/hooks/shop");
    let d = &v["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    for d in d.iter() {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["attempt_log"][0]["status_code"], 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_only_dropping_plugins_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "router");
    let config = format!(
        "{}\n[sources.s]\nplugins = [\"router\"]\n\n[targets.orders]\nurl = \"http://127.0.0.1:9/\"\n[targets.alerts]\nurl = \"http://127.0.0.1:9/\"\n",
        server_section(tmp.path())
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let id = hy.send("s", r#"{"type":"ping"}"#).await;
    let v = hy
        .wait_event(&id, Duration::from_secs(10), |v| v["status"] != "pending")
        .await;
    assert_eq!(v["status"], "dropped");
    assert_eq!(
        v["outcome"]["plugins"][0]["reason"],
        "ping events are not routed"
    );
    assert!(v["deliveries"].as_array().unwrap().is_empty());
}
