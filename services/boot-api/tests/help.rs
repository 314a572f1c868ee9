//! `--help` explains the binary and every flag.

#[test]
fn help_explains_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_boot-api"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for flag in ["--config", "--nats-url", "--profiles", "--listen"] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}
