//! Versioned events against the real binary and a real sink: the version
//! found in a header or by a JSON pointer is stored, shown and filtered by
//! the admin API and the CLI, and carried out under a target's
//! `version_header`; and a plugin built against `hookyard:plugin@0.1.0`
//! routes next to a 0.2.0 one, which sees the version.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// POSTs `body` to `source` with extra headers; the new event's id.
async fn send_with(hy: &Hookyard, source: &str, body: &str, headers: &[(&str, &str)]) -> String {
    let mut req = reqwest::Client::new()
        .post(format!("{}/hooks/{source}", hy.public))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn listed_ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs the CLI against the router's admin listener; its stdout.
async fn cli(hy: &Hookyard, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"));
    cmd.args(args)
        .arg("--admin")
        .arg(&hy.admin)
        .env_remove("HOOKYARD_ADMIN_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_stored_shown_filtered_and_sent_on() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[sources.stripe]\nversion = {{ header = \"Stripe-Version\" }}\ntargets = [\"out\"]\n\n\
         [sources.gh]\nversion = {{ json_pointer = \"/meta/api_version\" }}\ntargets = [\"out\", \"plain\"]\n\n\
         [targets.out]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nversion_header = \"X-Webhook-Version\"\n\n\
         [targets.plain]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/out"),
        sink.url("/plain"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let by_header = send_with(
        &hy,
        "stripe",
        r#"{"n":1}"#,
        &[("stripe-version", "2024-06-20")],
    )
    .await;
    let no_header = send_with(&hy, "stripe", r#"{"n":2}"#, &[]).await;
    let by_pointer = hy
        .send(
            "gh",
            &json!({"n": 3, "meta": {"api_version": "v3"}}).to_string(),
        )
        .await;
    let numeric = hy
        .send(
            "gh",
            &json!({"n": 4, "meta": {"api_version": 4}}).to_string(),
        )
        .await;
    let too_long = hy
        .send(
            "gh",
            &json!({"n": 5, "meta": {"api_version": "x".repeat(129)}}).to_string(),
        )
        .await;

    // Stored with the event and shown by the admin API.
    let version_of = |v: &Value| v["event"].get("version").cloned();
    let shown = hy.event(&by_header).await;
    assert_eq!(version_of(&shown), Some(json!("2024-06-20")), "{shown}");
    assert_eq!(version_of(&hy.event(&by_pointer).await), Some(json!("v3")));
    assert_eq!(version_of(&hy.event(&numeric).await), Some(json!("4")));
    // Absent, or past the 128-byte bound: stored without one (and no key).
    assert_eq!(version_of(&hy.event(&no_header).await), None);
    assert_eq!(version_of(&hy.event(&too_long).await), None);

    // Filtered on, and listed with it.
    let v = hy.admin_json("/admin/events?version=2024-06-20").await;
    assert_eq!(listed_ids(&v), vec![by_header.clone()]);
    assert_eq!(v["events"][0]["version"], "2024-06-20");
    let v = hy.admin_json("/admin/events?version=v3&source=gh").await;
    assert_eq!(listed_ids(&v), vec![by_pointer.clone()]);
    let v = hy
        .admin_json("/admin/events?version=v3&source=stripe")
        .await;
    assert!(listed_ids(&v).is_empty(), "{v}");
    let v = hy.admin_json("/admin/events?source=stripe").await;
    assert_eq!(listed_ids(&v).len(), 2);
    // The dashboard's event list filters the same way (and keeps the
    // filter in its form).
    let page = hy.admin_text("/ui/events?version=2024-06-20").await;
    assert!(page.contains(by_header.as_str()), "{page}");
    assert!(!page.contains(by_pointer.as_str()));
    assert!(
        page.contains(r#"name="version" value="2024-06-20""#),
        "{page}"
    );

    // Carried out under the target's version_header; not by other targets.
    let got = sink.wait_for(5 + 3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 8);
    let out = sink.received_on("/out");
    let header_for = |n: u64| {
        out.iter()
            .find(|r| r.json()["n"] == n)
            .unwrap_or_else(|| panic!("event {n} not delivered"))
            .header("x-webhook-version")
            .map(str::to_string)
    };
    assert_eq!(header_for(1).as_deref(), Some("2024-06-20"));
    assert_eq!(header_for(2), None);
    assert_eq!(header_for(3).as_deref(), Some("v3"));
    assert_eq!(header_for(4).as_deref(), Some("4"));
    assert_eq!(header_for(5), None);
    assert!(out.iter().all(|r| r.signature_ok));
    assert!(
        sink.received_on("/plain")
            .iter()
            .all(|r| r.header("x-webhook-version").is_none())
    );

    // A bulk replay selects by version alone.
    let (status, v) = hy
        .admin_post("/admin/events/replay", json!({ "version": "v3" }))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["events"], json!([by_pointer.clone()]), "{v}");
    sink.wait_for(8 + 2, Duration::from_secs(20)).await;

    // The CLI shows and filters it.
    let table = cli(&hy, &["events", "list", "--version", "v3"]).await;
    assert!(table.lines().next().unwrap().contains("VERSION"), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(
        rows[0].starts_with(&by_pointer) && rows[0].contains(" v3 "),
        "{table}"
    );
    let shown = cli(&hy, &["events", "show", &by_header]).await;
    assert!(
        shown.lines().any(|l| l == "version   2024-06-20"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_and_a_0_2_0_plugin_route_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "legacy-v01", "legacy");
    install_plugin(&plugins, "quickstart-router", "router");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.legacy]\nconfig = {{ target = \"old\" }}\n\n\
         [plugins.router]\nconfig = {{ orders_target = \"new\", alerts_target = \"new\" }}\n\n\
         [sources.shop]\nversion = {{ header = \"X-Webhook-Version\" }}\nplugins = [\"legacy\", \"router\"]\n\n\
         [targets.old]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [targets.new]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/old"),
        sink.url("/new"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // Each plugin's contract is found at load and shown.
    let v = hy.admin_json("/admin/plugins").await;
    let contract = |name: &str| {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {v}"))["serving"]["contract"]
            .clone()
    };
    assert_eq!(contract("legacy"), "0.1.0", "{v}");
    assert_eq!(contract("router"), "0.2.0", "{v}");

    const N: usize = 4;
    let mut ids = vec![];
    for i in 0..N {
        let body = json!({ "type": "order.created", "n": i }).to_string();
        let version = format!("v{i}");
        ids.push(send_with(&hy, "shop", &body, &[("x-webhook-version", &version)]).await);
    }
    sink.wait_for(2 * N, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), 2 * N, "no extra deliveries");
    assert!(sink.received().iter().all(|r| r.signature_ok));

    // The 0.1.0 plugin ran unchanged: it knows nothing of versions.
    let old = sink.received_on("/old");
    assert_eq!(old.len(), N);
    for r in &old {
        assert_eq!(r.header("x-plugin-contract"), Some("0.1.0"));
        assert_eq!(r.header("x-hookyard-event-version"), None);
    }
    // The 0.2.0 plugin saw each event's own version.
    let new = sink.received_on("/new");
    assert_eq!(new.len(), N);
    for r in &new {
        let n = r.json()["n"].as_u64().unwrap();
        assert_eq!(
            r.header("x-hookyard-event-version"),
            Some(format!("v{n}").as_str())
        );
    }
    for id in &ids {
        let v = hy.wait_event(id, Duration::from_secs(10), delivered).await;
        let plugins = v["outcome"]["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2, "{v}");
        assert!(plugins.iter().all(|p| p["result"] == "deliver"), "{v}");
    }
    assert!(
        hy.log_text().contains("contract=0.1.0"),
        "the load is logged with its contract"
    );
}
