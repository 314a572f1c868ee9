//! The `web` binary's flags: `--help` names each, and a listen address that cannot be bound
//! fails before anything else, naming it, as does a broken boot profiles file, naming its
//! line.

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

#[test]
fn a_broken_profiles_file_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("boot-profiles.toml");
    std::fs::write(
        &profiles,
        "[[profile]]\nname = \"G1\"\npriority = 10\nkernel = \"http://boot/vmlinuz\"\n\
         initrd = [\"http://boot/initrd\"]\ncmdline = \"console={tty\"\n",
    )
    .unwrap();
    let config = dir.path().join("metal.toml");
    std::fs::write(
        &config,
        format!(
            "nats_url = \"nats://127.0.0.1:1\"\n[boot_api]\nprofiles = {:?}\n[web]\nlisten = \"127.0.0.1:0\"\ndatabase = {:?}\n",
            profiles.display().to_string(),
            dir.path().join("web.db").display().to_string()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("boot-profiles.toml"), "{stderr}");
    assert!(stderr.contains("line"), "{stderr}");
    assert!(
        !dir.path().join("web.db").exists(),
        "nothing opened before the profiles were checked"
    );
}
