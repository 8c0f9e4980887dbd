//! A target URL may carry credentials (`https://user:pass@host/…`); they
//! are used for delivery but never shown: not by the admin API, not by
//! `hookyard targets list --json`, not in stored attempt errors, not in the
//! log.

mod support;

use std::time::Duration;

use support::*;

const PASSWORD: &str = "hunter2-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_url_credentials_are_never_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let dead_port = CLOSED_PORT;
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\", \"down\"]\n\n\
         [targets.t]\nurl = \"http://alice:{PASSWORD}@{}/in\"\n\n\
         [targets.down]\nurl = \"http://bob:{PASSWORD}@127.0.0.1:{dead_port}/in\"\nretry_schedule = [\"1h\"]\n",
        server_section(tmp.path()),
        sink.addr,
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let id = hy.send("s", "{}").await;
    let event = hy
        .wait_event(&id, Duration::from_secs(15), |v| {
            v["deliveries"].as_array().is_some_and(|d| {
                d.len() == 2 && d.iter().all(|d| d["attempts"].as_u64() >= Some(1))
            })
        })
        .await;
    // The credentials were used for the delivery itself.
    let got = sink.wait_for(1, Duration::from_secs(5)).await;
    assert!(
        got[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic ")),
        "the sink got no credentials"
    );

    let (code, list) = hy.admin_get("/admin/targets").await;
    assert_eq!(code, 200);
    let urls: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&format!("http://***:***@{}/in", sink.addr).as_str()),
        "{urls:?}"
    );
    let (_, one) = hy.admin_get("/admin/targets/down").await;
    assert_eq!(
        one["url"],
        format!("http://***:***@127.0.0.1:{dead_port}/in")
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["targets", "list", "--json", "--admin", &hy.admin])
        .env_remove("HOOKYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(cli.contains("***:***@"), "{cli}");

    for (what, text) in [
        ("GET /admin/targets", list.to_string()),
        ("GET /admin/targets/down", one.to_string()),
        ("targets list --json", cli.into_owned()),
        ("the event view", event.to_string()),
        ("the log", hy.log_text()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "{what} shows the password:\n{text}"
        );
    }
}
