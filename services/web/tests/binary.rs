//! The `web` binary's flags: `--help` names each, and a listen address that cannot be bound
//! fails before anything else, naming it.

#[test]
fn help_explains_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for flag in ["--config", "--nats-url", "--listen", "--database"] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("/api/v1/openapi.json"), "{text}");
}

#[test]
fn an_unusable_listen_address_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .current_dir(dir.path())
        .env_remove("METAL_CONFIG")
        .args([
            "--nats-url",
            "nats://127.0.0.1:1",
            "--listen",
            "not-an-address",
        ])
        .arg("--database")
        .arg(dir.path().join("web.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot listen on not-an-address"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("web.db").exists(),
        "nothing opened before the listener"
    );
}
