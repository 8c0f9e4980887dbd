//! Bodies and headers as senders send them, through the real binary and a
//! real sink: content-encoded webhooks are verified as received and
//! decoded for plugins and deliveries; a decompression bomb is refused
//! with bounded memory; passthrough deliveries carry the sender's headers
//! (minus framing, credentials and the verified signature); a target may
//! ask for gzip, signed over the payload.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::*;

const GH_SECRET: &str = "github-secret-0123456789";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn br(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    w.write_all(b).unwrap();
    drop(w);
    out
}

fn github_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(GH_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// POSTs `body` to a source with the given headers; status and JSON answer.
async fn post(
    hy: &Hookyard,
    source: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/hooks/{source}", hy.public))
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.expect("POST to hookyard");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    format!(
        "{}{}\n[plugins.router]\nconfig = {{ target = \"plugged\" }}\n\n\
         [sources.gh]\nverify = {{ scheme = \"github\", secret = \"{GH_SECRET}\" }}\n\
         plugins = [\"router\"]\ntargets = [\"pass\"]\n\n\
         [sources.narrow]\nforward_headers = [\"x-github-*\"]\ntargets = [\"narrowed\"]\n\n\
         [sources.wide]\nverify = {{ scheme = \"github\", secret = \"{GH_SECRET}\" }}\n\
         forward_headers = [\"*\", \"x-hub-signature-256\"]\ndrop_headers = [\"x-custom\"]\n\
         targets = [\"pass\"]\n\n\
         [sources.packed]\ntargets = [\"zipped\"]\n\n\
         [sources.bomb]\nmax_body = \"1MiB\"\nmax_decoded_body = \"4MiB\"\ntargets = [\"pass\"]\n\n\
         [targets.pass]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n\
         [targets.plugged]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n\
         [targets.narrowed]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n\
         drop_headers = [\"X-GitHub-Delivery\"]\n\
         [targets.zipped]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\ncompress = \"gzip\"\n",
        server_section(dir),
        shared_cache(),
        sink.url("/pass"),
        sink.url("/plugin"),
        sink.url("/narrow"),
        sink.url("/zipped"),
    )
}

fn start(dir: &std::path::Path, sink: &Sink) -> Hookyard {
    install_plugin(&dir.join("plugins"), "chaos", "router");
    Hookyard::start(dir, &config(dir, sink))
}

/// gzip, deflate and br: acknowledged; verified over the compressed bytes
/// (a signature over the decoded body is refused); the plugin parsed the
/// decoded JSON; passthrough delivered the decoded bytes without
/// Content-Encoding and with the sender's headers but not its signature;
/// the event shows both bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_are_verified_as_received_and_decoded_for_plugins_and_deliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);
    type Encode = fn(&[u8]) -> Vec<u8>;
    let codings: [(&str, Encode); 3] = [("gzip", gzip), ("deflate", deflate), ("br", br)];
    for (n, (coding, encode)) in codings.iter().enumerate() {
        let body = json!({
            "mode": "headers",
            "headers": [["x-parsed", *coding]],
            "padding": "x".repeat(2000),
        })
        .to_string();
        let packed = encode(body.as_bytes());
        assert!(packed.len() < body.len() / 4, "{coding} did not compress");
        let delivery = format!("delivery-{n}");
        let sig = github_signature(&packed);
        let headers = [
            ("content-type", "application/json"),
            ("content-encoding", *coding),
            ("user-agent", "GitHub-Hookshot/044aadd"),
            ("x-github-event", "push"),
            ("x-github-delivery", delivery.as_str()),
            ("x-hub-signature-256", sig.as_str()),
            ("authorization", "Bearer not-for-the-receiver"),
        ];
        // Signed over the decoded body instead: not what was sent.
        let mut forged = headers;
        let wrong = github_signature(body.as_bytes());
        forged[5] = ("x-hub-signature-256", wrong.as_str());
        let (status, v) = post(&hy, "gh", &forged, packed.clone()).await;
        assert_eq!(status, 401, "{coding}: {v}");

        let (status, v) = post(&hy, "gh", &headers, packed.clone()).await;
        assert_eq!(status, 202, "{coding}: {v}");
        let id = v["id"].as_str().unwrap().to_string();

        let pass = sink
            .wait_for_path("/pass", n + 1, Duration::from_secs(20))
            .await;
        let r = &pass[n];
        assert_eq!(
            r.body.as_ref(),
            body.as_bytes(),
            "{coding}: passthrough body"
        );
        assert!(r.header("content-encoding").is_none(), "{coding}");
        assert!(r.signature_ok, "{coding}: signature over the decoded body");
        assert_eq!(r.header("x-github-event"), Some("push"));
        assert_eq!(r.header("x-github-delivery"), Some(delivery.as_str()));
        assert_eq!(r.header("user-agent"), Some("GitHub-Hookshot/044aadd"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(
            r.header("x-hub-signature-256").is_none(),
            "verified signature forwarded"
        );
        assert!(r.header("authorization").is_none(), "credential forwarded");
        assert_eq!(r.header("x-hookyard-event-id"), Some(id.as_str()));
        assert_eq!(r.header("x-hookyard-source"), Some("gh"));

        let plugged = sink
            .wait_for_path("/plugin", n + 1, Duration::from_secs(20))
            .await;
        let p = &plugged[n];
        assert_eq!(
            p.header("x-parsed"),
            Some(*coding),
            "the plugin did not parse the JSON"
        );
        assert_eq!(p.body.as_ref(), br#"{"from":"chaos"}"#);
        assert!(p.signature_ok);
        assert_eq!(p.header("x-hookyard-event-id"), Some(id.as_str()));
        assert_eq!(p.header("x-hookyard-source"), Some("gh"));
        // Plugin deliveries carry what the plugin set, not the sender's.
        assert!(p.header("x-github-event").is_none());

        let v = hy.event(&id).await;
        let e = &v["event"];
        assert_eq!(e["content_encoding"], *coding);
        assert_eq!(e["body"]["text"], body.as_str());
        let received = base64_decode(e["received_body"]["base64"].as_str().unwrap());
        assert_eq!(received, packed, "{coding}: received bytes kept");
        // The dashboard's event page says how it arrived.
        let page = hy.admin_text(&format!("/ui/events/{id}")).await;
        assert!(
            page.contains(&format!(
                "Content-Encoding <code>{coding}</code>, {} B on the wire",
                packed.len()
            )),
            "{page}"
        );
        let d = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["origin"] == "passthrough")
            .unwrap();
        let names: Vec<&str> = d["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "content-type",
                "user-agent",
                "x-github-event",
                "x-github-delivery",
                // reqwest, the sender here, adds it.
                "accept"
            ]
        );
    }
    // An unencoded event stores one body and shows no received one.
    let plain = r#"{"mode":"drop"}"#;
    let sig = github_signature(plain.as_bytes());
    let (status, v) = post(
        &hy,
        "gh",
        &[
            ("x-hub-signature-256", sig.as_str()),
            ("x-github-delivery", "plain"),
        ],
        plain.into(),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let e = hy.event(v["id"].as_str().unwrap()).await;
    assert!(e["event"].get("received_body").is_none(), "{e:#}");
    assert!(e["event"].get("content_encoding").is_none(), "{e:#}");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// `forward_headers` / `drop_headers` on the source and the target change
/// the set; naming the verified signature header forwards it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_and_drop_headers_change_what_passthrough_carries() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", "GitHub-Hookshot/044aadd"),
        ("x-github-event", "issues"),
        ("x-github-delivery", "n-1"),
        ("x-custom", "1"),
    ];
    let (status, v) = post(&hy, "narrow", &headers, b"{}".to_vec()).await;
    assert_eq!(status, 202, "{v}");
    let got = sink
        .wait_for_path("/narrow", 1, Duration::from_secs(20))
        .await;
    let r = &got[0];
    assert_eq!(r.header("x-github-event"), Some("issues"));
    assert!(
        r.header("x-github-delivery").is_none(),
        "the target drops it"
    );
    assert!(r.header("x-custom").is_none(), "not in forward_headers");
    // Not forwarded: hookyard's own User-Agent.
    assert!(
        r.header("user-agent").unwrap().starts_with("hookyard/"),
        "{:?}",
        r.header("user-agent")
    );
    assert_eq!(r.header("x-hookyard-source"), Some("narrow"));

    let body = b"{\"wide\":true}".to_vec();
    let sig = github_signature(&body);
    let mut wide = headers.to_vec();
    wide.push(("x-hub-signature-256", sig.as_str()));
    let (status, v) = post(&hy, "wide", &wide, body).await;
    assert_eq!(status, 202, "{v}");
    let got = sink
        .wait_for_path("/pass", 1, Duration::from_secs(20))
        .await;
    let r = &got[0];
    assert_eq!(
        r.header("x-hub-signature-256"),
        Some(sig.as_str()),
        "named exactly"
    );
    assert!(r.header("x-custom").is_none(), "dropped by the source");
    assert_eq!(r.header("x-github-delivery"), Some("n-1"));
}

/// A few hundred KB of gzip that expands to hundreds of MB: 413, nothing
/// stored, and the router's memory barely moves. An unknown coding is 415,
/// a corrupt body 400; each is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..400 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    // A first request, so what is measured is the refusals, not warm-up.
    let (status, _) = post(&hy, "narrow", &[], b"{}".to_vec()).await;
    assert_eq!(status, 202);
    let (rss_before, peak_before) = memory_mib(hy.pid());
    for _ in 0..3 {
        let (status, v) = post(
            &hy,
            "bomb",
            &[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ],
            bomb.clone(),
        )
        .await;
        assert_eq!(status, 413, "{v}");
        assert_eq!(v["code"], "decoded_too_large");
        assert!(
            v["error"].as_str().unwrap().contains("max_decoded_body"),
            "{v}"
        );
    }
    let (rss_after, peak_after) = memory_mib(hy.pid());
    assert!(
        rss_after - rss_before < 50.0 && peak_after - peak_before < 50.0,
        "rss {rss_before:.1} -> {rss_after:.1} MiB, peak {peak_before:.1} -> {peak_after:.1} MiB"
    );
    println!(
        "decompression bombs refused: rss {rss_before:.1} -> {rss_after:.1} MiB, peak {peak_before:.1} -> {peak_after:.1} MiB"
    );

    let (status, v) = post(
        &hy,
        "bomb",
        &[("content-encoding", "compress")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{v}");
    assert_eq!(v["code"], "unsupported_encoding");
    let (status, v) = post(
        &hy,
        "bomb",
        &[("content-encoding", "gzip")],
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "body_undecodable");

    let listed = hy.admin_json("/admin/events?source=bomb").await;
    assert_eq!(listed["events"], json!([]), "{listed}");
    let metrics = hy.admin_text("/metrics").await;
    for (reason, n) in [
        ("decoded_too_large", 3),
        ("unsupported_encoding", 1),
        ("body_undecodable", 1),
    ] {
        let line =
            format!("hookyard_requests_rejected_total{{source=\"bomb\",reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "missing {line}");
    }
    assert!(sink.received_on("/pass").is_empty());
}

/// `compress = "gzip"`: the receiver gets `Content-Encoding: gzip`, and
/// the signature verifies over the decompressed payload (what its HTTP
/// layer hands the verifier), not over the compressed bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_deliveries_are_signed_over_the_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);
    let body = json!({ "order": 1, "lines": "y".repeat(4000) }).to_string();
    let (status, v) = post(
        &hy,
        "packed",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        br(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let got = sink
        .wait_for_path("/zipped", 1, Duration::from_secs(20))
        .await;
    let r = &got[0];
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(
        r.body.len() < body.len() / 4,
        "not compressed: {} bytes",
        r.body.len()
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(r.body.as_ref())
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, body.as_bytes());
    assert!(verify_signature(SECRET, &r.headers, &plain));
    assert!(!r.signature_ok, "signed over the compressed bytes");
}
