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
        "tag",
        "provision",
        "power",
        "retire",
        "unknown",
        "drift",
        "profiles",
        "inventory",
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
    for (command, flags) in [
        (&["tag"][..], &["KEY=VALUE", "--remove", "--json"][..]),
        (
            &["provision"],
            &["--profile", "--no-power", "--timeout", "--json"],
        ),
        (&["power"], &["on", "off", "cycle", "status", "--json"]),
        (
            &["retire"],
            &["--wipe", "--timeout", "--json", "/wiped", "onboarded anew"],
        ),
        (&["machines"], &["--all", "--json"]),
        (&["unknown"], &["--json"]),
        (&["drift"], &["--json", "fleet version", "(n/m)"]),
        (&["profiles", "check"], &["[FILE]", "--json"]),
        (&["inventory"], &["--ansible", "--list", "--host"]),
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = metal_cli(&args);
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        for flag in flags {
            assert!(text.contains(flag), "{args:?} lacks {flag}:\n{text}");
        }
    }
}

#[test]
fn bad_input_to_the_new_commands_is_refused_before_touching_the_network() {
    // Port 1 on loopback: nothing listens, so any other outcome than exit 2 with the
    // reason would mean NATS was tried first.
    let offline = ["--nats-url", "nats://127.0.0.1:1"];
    for (args, said) in [
        (
            &["tag", "not-a-mac", "role=x"][..],
            "cannot tag \"not-a-mac\"",
        ),
        (&["tag", "aa:bb:cc:dd:ee:01"], "at least one"),
        (&["tag", "aa:bb:cc:dd:ee:01", "role"], "not KEY=VALUE"),
        (&["tag", "aa:bb:cc:dd:ee:01", "bad key=x"], "tag key"),
        (
            &["tag", "aa:bb:cc:dd:ee:01", "role=x", "--remove", "role"],
            "both set and removed",
        ),
        (&["provision", "01:00:5e:00:00:01"], "cannot provision"),
        (
            &["provision", "aa:bb:cc:dd:ee:01", "--profile", " "],
            "--profile",
        ),
        (&["power", "aa:bb:cc:dd:ee", "status"], "cannot power"),
        (&["power", "aa:bb:cc:dd:ee:01", "reboot"], "invalid value"),
        (&["retire", "aa:bb:cc:dd:ee", "--wipe"], "cannot retire"),
        (&["inventory"], "--ansible"),
    ] {
        let output = metal_cli(&[&offline[..], args].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = String::from_utf8(output.stderr).unwrap();
        assert!(text.contains(said), "{args:?}: {text}");
        assert!(!text.contains("cannot connect"), "{args:?}: {text}");
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
