//! The admin API's event listing (paging, source/status/time filters, bad
//! filters), time filters matching `received_at` even for a slow body, and
//! the admin token guarding every admin route but not the public listener.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::admin::*;
use support::*;

// ---------------------------------------------------------------------------
// Listing: paging, filters.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_listing_filters_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    // "a" delivers (routed), "b" has nowhere to go (dropped).
    let config = format!(
        "{}\n[sources.a]\ntargets = [\"t\"]\n\n[sources.b]\n\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // Sent one after another, a few ms apart: ids and receive times both
    // increase with the send order.
    let mut sent: Vec<(String, &str)> = Vec::new();
    for n in 0..10 {
        let source = ["a", "a", "b", "a", "a", "b", "a", "a", "b", "a"][n];
        let id = hy.send(source, &format!(r#"{{"n":{n}}}"#)).await;
        sent.push((id, source));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let of = |s: &str| -> Vec<String> {
        sent.iter()
            .filter(|(_, src)| *src == s)
            .map(|(id, _)| id.clone())
            .collect()
    };
    assert_eq!((of("a").len(), of("b").len()), (7, 3));
    for (id, _) in &sent {
        hy.wait_event(id, Duration::from_secs(15), |v| v["status"] != "pending")
            .await;
    }
    let newest_first: Vec<String> = sent.iter().rev().map(|(id, _)| id.clone()).collect();

    // Pages of 3, newest first, until next_cursor is null.
    let mut pages = Vec::new();
    let mut listed: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/admin/events?limit=3".to_string(),
            Some(c) => format!("/admin/events?limit=3&cursor={c}"),
        };
        let (status, v) = hy.admin_get(&path).await;
        assert_eq!(status, 200, "{v}");
        let items = v["events"].as_array().unwrap().clone();
        assert!(items.len() <= 3, "{v}");
        pages.push(items.len());
        listed.extend(items);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert_eq!(v["next_cursor"], Value::Null);
                break;
            }
        }
        assert!(pages.len() <= 10, "paging does not end: {pages:?}");
    }
    assert_eq!(pages, vec![3, 3, 3, 1]);
    let listed_ids: Vec<String> = listed
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed_ids.iter().collect::<HashSet<_>>().len(),
        10,
        "no duplicates: {listed_ids:?}"
    );
    assert_eq!(listed_ids, newest_first, "all ten, newest first");
    let received: Vec<u64> = listed
        .iter()
        .map(|e| e["received_at"].as_u64().unwrap())
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {received:?}"
    );
    for (e, (_, source)) in listed.iter().zip(sent.iter().rev()) {
        assert_eq!(e["source"], *source, "{e}");
        let (status, deliveries) = if *source == "a" {
            ("routed", 1)
        } else {
            ("dropped", 0)
        };
        assert_eq!(e["status"], status, "{e}");
        assert_eq!(e["deliveries"], deliveries, "{e}");
        assert_eq!(e["size"], r#"{"n":0}"#.len(), "{e}");
    }

    // source=
    for s in ["a", "b"] {
        let (status, v) = hy.admin_get(&format!("/admin/events?source={s}")).await;
        assert_eq!(status, 200);
        let want: Vec<String> = of(s).into_iter().rev().collect();
        assert_eq!(ids_of(&v, "events"), want, "source={s}");
        assert_eq!(v["next_cursor"], Value::Null);
    }
    let (_, v) = hy.admin_get("/admin/events?source=nosuch").await;
    assert_eq!(v["events"], json!([]));

    // since/until: inclusive bounds on received_at; the values a listing
    // shows must work as bounds that include those very events.
    let oldest_first: Vec<(String, u64)> = listed
        .iter()
        .rev()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["received_at"].as_u64().unwrap(),
            )
        })
        .collect();
    let (since, until) = (oldest_first[3].1, oldest_first[6].1);
    let want: Vec<String> = oldest_first
        .iter()
        .filter(|(_, at)| (since..=until).contains(at))
        .rev()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(want.len(), 4, "sends were 15 ms apart: {oldest_first:?}");
    let (status, v) = hy
        .admin_get(&format!("/admin/events?since={since}&until={until}"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        ids_of(&v, "events"),
        want,
        "since={since}&until={until} over {oldest_first:?}"
    );
    let (_, v) = hy.admin_get(&format!("/admin/events?since={since}")).await;
    let want_since: Vec<String> = newest_first[..7].to_vec();
    assert_eq!(ids_of(&v, "events"), want_since, "since={since}");
    let (_, v) = hy.admin_get(&format!("/admin/events?until={until}")).await;
    let want_until: Vec<String> = newest_first[3..].to_vec();
    assert_eq!(ids_of(&v, "events"), want_until, "until={until}");
    // The same bound as RFC 3339.
    let rfc =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(since))
            .to_string();
    let (status, v) = hy.admin_get(&format!("/admin/events?since={rfc}")).await;
    assert_eq!(status, 200, "{rfc}: {v}");
    assert_eq!(ids_of(&v, "events"), want_since, "since={rfc}");
    // Combined with a source.
    let (_, v) = hy
        .admin_get(&format!(
            "/admin/events?source=b&since={since}&until={until}"
        ))
        .await;
    let want_b: Vec<String> = want
        .iter()
        .filter(|id| of("b").contains(id))
        .cloned()
        .collect();
    assert_eq!(ids_of(&v, "events"), want_b);

    // status=
    for (status_filter, source) in [("routed", "a"), ("dropped", "b")] {
        let (status, v) = hy
            .admin_get(&format!("/admin/events?status={status_filter}"))
            .await;
        assert_eq!(status, 200);
        let want: Vec<String> = of(source).into_iter().rev().collect();
        assert_eq!(ids_of(&v, "events"), want, "status={status_filter}");
    }
    for status_filter in ["failed", "pending"] {
        let (_, v) = hy
            .admin_get(&format!("/admin/events?status={status_filter}"))
            .await;
        assert_eq!(v["events"], json!([]), "status={status_filter}: {v}");
    }

    // Bad filters.
    for bad in [
        "status=bogus",
        "status=delivered",
        "limit=0",
        "limit=x",
        "since=yesterday",
    ] {
        let (status, v) = hy.admin_get(&format!("/admin/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["code"], "bad_request", "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
}

// ---------------------------------------------------------------------------
// Time filters are about `received_at`, also for a body that arrives
// slowly.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_match_received_at_for_a_slow_body() {
    use futures_util::StreamExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}\n[sources.a]\n", server_section(tmp.path()));
    let hy = Hookyard::start(tmp.path(), &config);
    // The body trickles in over ~150 ms.
    let parts = [r#"{"n":"#, "1", " ", " ", "}"];
    let chunks = futures_util::stream::iter(parts).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok::<_, std::io::Error>(p)
    });
    let r = reqwest::Client::new()
        .post(format!("{}/hooks/a", hy.public))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let list = hy.admin_json("/admin/events").await;
    assert_eq!(ids_of(&list, "events"), vec![id.clone()]);
    let at = list["events"][0]["received_at"].as_u64().unwrap();
    let stored = hy.event(&id).await;
    assert_eq!(stored["event"]["received_at"], at);
    for q in [
        format!("since={at}&until={at}"),
        format!("until={at}"),
        format!("since={at}"),
    ] {
        let (status, v) = hy.admin_get(&format!("/admin/events?{q}")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            ids_of(&v, "events"),
            vec![id.clone()],
            "{q}: the event received at {at} ({id}) must match"
        );
    }
}

// ---------------------------------------------------------------------------
// Admin token.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_when_set() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[sources.s]\n",
        preamble(tmp.path(), "admin_token = \"s3cret\"")
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let http = reqwest::Client::new();
    let get = async |path: &str, auth: Option<&str>| {
        let mut r = http.get(format!("{}{path}", hy.admin));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        (status, www, text)
    };

    let (status, _, text) = get("/healthz", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"status": "ok"})
    );

    for (path, auth) in [
        ("/admin/events", None),
        ("/admin/events", Some("Bearer wrong")),
        ("/admin/events", Some("Bearer s3cret2")),
        ("/admin/events", Some("Bearers3cret")),
        ("/admin/events", Some("Bearer s3cret extra")),
        ("/admin/events", Some("Bearer s3cre")),
        ("/admin/events", Some("s3cret")),
        ("/admin/events", Some("Basic czNjcmV0")),
        ("/metrics", None),
        ("/metrics", Some("Bearer wrong")),
        ("/admin/targets", None),
        ("/admin/events/evt_00000000000000000000000000", None),
    ] {
        let (status, www, text) = get(path, auth).await;
        assert_eq!(status, 401, "{path} with {auth:?}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["code"], "unauthorized", "{text}");
        assert_eq!(www.as_deref(), Some("Bearer"));
        assert!(!text.contains("s3cret"), "the token is not echoed: {text}");
    }
    // Mutations too.
    let r = http
        .post(format!("{}/admin/events/replay", hy.admin))
        .json(&json!({"status": "failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The scheme is case-insensitive and any whitespace may follow it.
    for auth in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER   s3cret",
        "Bearer\t s3cret",
    ] {
        let (status, _, text) = get("/admin/events", Some(auth)).await;
        assert_eq!(status, 200, "{auth:?}: {text}");
    }
    let (status, _, text) = get("/admin/events", Some("Bearer s3cret")).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["events"], json!([]));
    let (status, _, text) = get("/metrics", Some("Bearer s3cret")).await;
    assert_eq!(status, 200);
    assert!(text.contains("hookyard_"), "{text}");
    let r = http
        .post(format!("{}/admin/events/replay", hy.admin))
        .header("authorization", "Bearer s3cret")
        .json(&json!({"status": "failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The public listener needs no token.
    let (status, v) = hy.post("s", "{}").await;
    assert_eq!(status, 202, "{v}");
    drop(hy);

    // Listening beyond loopback without a token refuses to start.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("plugins")).unwrap();
    let path = tmp.path().join("hookyard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n\n[plugins]\ndir = \"{}\"\n",
            tmp.path().join("data").display(),
            tmp.path().join("plugins").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("HOOKYARD_ADMIN_LISTEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "hookyard started on 0.0.0.0 without a token"
    );
    assert!(stderr.contains("server.admin_token"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hookyard listening"),
        "it must not listen first"
    );
}

// ---------------------------------------------------------------------------
// Malformed paths and out-of-range times answer the JSON error shape.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_and_out_of_range_times_answer_json_400() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}\n[sources.s]\n", server_section(tmp.path()));
    let hy = Hookyard::start(tmp.path(), &config);
    let id = hy.send("s", "{}").await;
    let http = reqwest::Client::new();

    // A path segment that is not UTF-8.
    for url in [
        format!("{}/hooks/%FF", hy.public),
        format!("{}/admin/events/%FF", hy.admin),
        format!("{}/admin/targets/%FF", hy.admin),
    ] {
        let r = if url.contains("/hooks/") {
            http.post(&url).body("{}").send().await.unwrap()
        } else {
            http.get(&url).send().await.unwrap()
        };
        assert_eq!(r.status(), 400, "{url}");
        let text = r.text().await.unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"));
        assert_eq!(v["code"], "bad_request", "{url}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }

    // 2^48 ms and above cannot be expressed in ids: refused, naming the
    // parameter, instead of wrapping around to 1970.
    let limit: u64 = 1 << 48;
    for (param, value) in [
        ("since", limit),
        ("until", limit),
        ("since", u64::MAX),
        ("until", limit + 5),
    ] {
        for list in ["events", "deliveries"] {
            let (status, v) = hy
                .admin_get(&format!("/admin/{list}?{param}={value}"))
                .await;
            assert_eq!(status, 400, "{list} {param}={value}: {v}");
            assert_eq!(v["code"], "bad_request");
            assert!(
                v["error"].as_str().unwrap().starts_with(param),
                "{param}: {v}"
            );
        }
    }
    let (status, v) = hy
        .admin_post("/admin/events/replay", json!({"since": limit}))
        .await;
    assert_eq!(status, 400, "{v}");
    // The largest time allowed is an upper bound above everything.
    let (status, v) = hy
        .admin_get(&format!("/admin/events?until={}", limit - 1))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids_of(&v, "events"), [id]);
}
