//! The systemd unit in examples/: sandboxed, verified by systemd itself
//! where systemd-analyze exists, and its sample config loads.

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd/hookyard.service"),
    )
    .unwrap()
}

fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
}

#[test]
fn the_unit_is_sandboxed() {
    let u = unit();
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ReadWritePaths", "/var/lib/hookyard"),
        ("LimitNOFILE", "65536"),
        ("Restart", "on-failure"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(setting(&u, key), Some(want), "{key}");
    }
    // wasmtime's JIT needs memory that becomes executable after it is
    // written: this setting would stop every plugin from loading.
    assert_eq!(setting(&u, "MemoryDenyWriteExecute"), None);
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed here; verified by the checks above only");
        return;
    }
    // verify checks that ExecStart exists: point it at the binary built
    // for this test run.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hookyard.service");
    std::fs::write(
        &path,
        unit().replace("/usr/local/bin/hookyard", env!("CARGO_BIN_EXE_hookyard")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("hookyard.service:"),
        "systemd-analyze verify complained about the unit: {said}"
    );
}

#[test]
fn the_sample_config_loads() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe {
        std::env::set_var(
            "HOOKYARD_EXAMPLE_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
    let text = std::fs::read_to_string(dir.join("hookyard.toml")).unwrap();
    let config = hookyard::config::Config::parse(&text, &dir).unwrap();
    assert_eq!(config.server.data_dir, Path::new("/var/lib/hookyard/data"));
}
