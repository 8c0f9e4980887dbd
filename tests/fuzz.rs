//! The CI slice of the request fuzzer (the benchmark sends 100,000; see
//! docs/benchmarks.md): a few thousand mutated requests against the real
//! binary. Every one is answered or closed promptly, none is a 500, the
//! process stays up with its memory bounded, and a valid webhook sent
//! afterwards is accepted and delivered.

mod support;

#[path = "support/fuzz.rs"]
mod fuzz;

use std::time::Duration;

use support::*;

const REQUESTS: u64 = 3_000;
const GITHUB_SECRET: &str = "fuzz-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_are_answered_and_crash_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[sources.gh]\nverify = {{ scheme = \"github\", secret = \"{GITHUB_SECRET}\" }}\ntargets = [\"out\"]\n\n\
         [sources.raw]\n\n[sources.gh_after]\ntargets = [\"out\"]\n\n[targets.out]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()).replacen(
            "[server]\n",
            "[server]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\n",
            1
        ),
        sink.url("/out")
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let addr = hy
        .public
        .trim_start_matches("http://")
        .parse()
        .expect("public address");
    let (rss_before, _) = memory_mib(hy.pid());
    let target = fuzz::Target {
        addr,
        verified: "gh".into(),
        secret: GITHUB_SECRET.into(),
        raw: "raw".into(),
    };
    // Two halves: the first warms the caches (sled's page cache, the
    // allocator's pools), the second shows whether memory keeps growing.
    let mut tally = fuzz::Tally::default();
    let mut rss = vec![rss_before];
    for seed in [0x5eed, 0xf00d] {
        let half = fuzz::run(
            &target,
            REQUESTS / 2,
            32,
            seed,
            Duration::from_secs(10),
            |_| {},
        )
        .await;
        tally.sent += half.sent;
        for (k, v) in half.answers {
            *tally.answers.entry(k).or_insert(0) += v;
        }
        rss.push(memory_mib(hy.pid()).0);
    }
    let (rss_after, peak) = memory_mib(hy.pid());
    println!(
        "fuzz: {} requests; answers: {}; RSS {:.0} -> {:.0} -> {:.0} MiB (peak {peak:.0})",
        tally.sent,
        tally.summary(),
        rss[0],
        rss[1],
        rss[2]
    );
    assert_eq!(tally.sent, REQUESTS);
    assert_eq!(
        tally.count("timeout"),
        0,
        "requests neither answered nor closed within 10 s: {}",
        tally.summary()
    );
    assert_eq!(
        tally.count("500"),
        0,
        "internal errors: {}",
        tally.summary()
    );
    // Signed requests get through; mangled ones are refused by the
    // verifier or the framing.
    for expected in ["202", "400", "401", "404", "413", "431"] {
        assert!(
            tally.count(expected) > 0,
            "no {expected}: {}",
            tally.summary()
        );
    }
    assert!(
        peak < 300.0,
        "peak RSS {peak:.0} MiB (the project's bound under load is 300)"
    );
    assert!(
        rss[2] - rss[1] < 64.0,
        "memory kept growing: {rss:?} MiB after {rss_after:.0}"
    );

    // Still up and serving.
    let (status, _) = hy.admin_get("/healthz").await;
    assert_eq!(status, 200);
    hy.send("gh_after", "{}").await;

    // Every event the verified source accepted (it forwards to the sink)
    // is delivered, signed, with the body as stored.
    let mut stored = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/admin/events?source=gh&limit=500".to_string(),
            Some(c) => format!("/admin/events?source=gh&limit=500&cursor={c}"),
        };
        let page = hy.admin_json(&path).await;
        stored += page["events"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(stored > 0, "no signed request got through");
    // Delivery is at least once: count distinct deliveries (webhook-id).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = sink.received();
        let distinct: std::collections::BTreeSet<String> = got
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect();
        if distinct.len() > stored {
            assert_eq!(distinct.len(), stored + 1, "deliveries nobody asked for");
            assert!(got.iter().all(|r| r.signature_ok));
            println!(
                "delivered {} events ({} requests at the sink)",
                distinct.len(),
                got.len()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "accepted events not all delivered: {} of {}",
            distinct.len(),
            stored + 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
