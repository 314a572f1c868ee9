//! metal-cli's own behaviour without a running system: help, bad input, no NATS.

use std::process::Command;

fn metal_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metal-cli"))
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("METAL_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_command() {
    let output = metal_cli(&["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for command in [
        "onboard",
        "machines",
        "show",
        "history",
        "replay",
        "export",
        "locate",
        "--nats-url",
        "--config",
    ] {
        assert!(text.contains(command), "--help lacks {command}:\n{text}");
    }
    let output = metal_cli(&["onboard", "--help"]);
    let text = String::from_utf8(output.stdout).unwrap();
    for flag in ["--no-wait", "--json", "--timeout"] {
        assert!(text.contains(flag), "onboard --help lacks {flag}:\n{text}");
    }
}

#[test]
fn a_malformed_mac_is_refused_before_touching_the_network() {
    for bad in [
        "aa:bb:cc:dd:ee",
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
        "not-a-mac",
        "",
    ] {
        // Port 1 on loopback: nothing listens, so success could only come from skipping NATS.
        let output = metal_cli(&["--nats-url", "nats://127.0.0.1:1", "onboard", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        let text = String::from_utf8(output.stderr).unwrap();
        assert!(text.contains("cannot onboard"), "{bad:?}: {text}");
    }
}

#[test]
fn no_nats_is_a_clear_error() {
    let output = metal_cli(&["--nats-url", "nats://127.0.0.1:1", "machines"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(
        text.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{text}"
    );
}
