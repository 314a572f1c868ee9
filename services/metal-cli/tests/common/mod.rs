//! The whole system in one test process: a real nats-server, every responder running
//! in-process through its library `run`, and metal-cli run as the real binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use metal_core::config::{Config, StaticBmc};
use metal_core::query::{MachineDetail, MachineState};
use metal_core::Mac;
use test_harness::nats::NatsServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The install-token key boot-api runs with here.
pub const E2E_TOKEN_KEY: &str = "e2e install-token key, 32 bytes";

/// NATS as deployed with nats/auth.conf, over TLS: every service, metal-cli and the test
/// itself (as `admin`) connect as their own user, trusting the test's CA.
#[derive(Debug, Clone)]
pub struct SecuredNats {
    pub ca_file: PathBuf,
}

/// Every user of nats/auth.conf.
pub const NATS_USERS: &[&str] = &[
    "locator",
    "redfish-scraper",
    "boot-api",
    "validator",
    "inventory-projector",
    "web",
    "metal-cli",
    "admin",
];

impl SecuredNats {
    /// The environment variable nats/auth.conf reads `user`'s password from.
    pub fn password_variable(user: &str) -> String {
        format!(
            "METAL_NATS_{}_PASSWORD",
            user.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// `user`'s password here: distinctive, so a test can look for it where it must not be.
    pub fn password(user: &str) -> String {
        format!("nats-pw-{user}-Qx7m2R")
    }

    /// `[nats]` for `user`.
    pub fn config(&self, user: &str) -> metal_core::config::NatsConfig {
        metal_core::config::NatsConfig {
            user: Some(user.to_string()),
            password_env: SecuredNats::password_variable(user),
            ca_file: Some(self.ca_file.clone()),
            ..Default::default()
        }
    }

    /// A CA and a server certificate in `dir`, every password in this process's environment
    /// (where the clients read them), and the server's setup: TLS and nats/auth.conf.
    fn prepare(dir: &std::path::Path) -> (SecuredNats, test_harness::nats::ServerSetup) {
        let pki = test_harness::tls::LoopbackPki::new("metal test NATS CA");
        let ca_file = dir.join("nats-ca.pem");
        let cert_file = dir.join("nats-server.pem");
        let key_file = dir.join("nats-server-key.pem");
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();
        std::fs::write(&cert_file, &pki.leaf_pem).unwrap();
        std::fs::write(&key_file, &pki.leaf_key_pem).unwrap();
        let auth =
            std::fs::read_to_string(test_harness::paths::workspace_root().join("nats/auth.conf"))
                .unwrap();
        let mut env = Vec::new();
        for user in NATS_USERS {
            let (variable, password) = (
                SecuredNats::password_variable(user),
                SecuredNats::password(user),
            );
            std::env::set_var(&variable, &password);
            env.push((variable, password));
        }
        let config =
            format!("tls {{\n  cert_file: {cert_file:?}\n  key_file: {key_file:?}\n}}\n{auth}");
        (
            SecuredNats { ca_file },
            test_harness::nats::ServerSetup { config, env },
        )
    }

    /// The environment that makes metal-cli connect as its user.
    fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("METAL__NATS__USER".into(), "metal-cli".into()),
            (
                "METAL__NATS__PASSWORD_ENV".into(),
                SecuredNats::password_variable("metal-cli"),
            ),
            (
                "METAL__NATS__CA_FILE".into(),
                self.ca_file.display().to_string(),
            ),
        ]
    }
}

/// How [`System::start_as`] starts NATS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Plain,
    /// nats/auth.conf over TLS, every service as its own user.
    Secured,
    /// Plain, but away while the services start.
    NatsLater,
}

pub struct System {
    pub nats: NatsServer,
    /// Set when NATS runs with nats/auth.conf over TLS ([`System::start_secured`]).
    pub secured: Option<SecuredNats>,
    pub client: async_nats::Client,
    pub config: Config,
    pub boot_url: String,
    /// The web UI and API (`web::run`), on its own loopback port.
    pub web_url: String,
    pub dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// What a command printed, stdout then stderr, for assertion messages and matching.
pub fn printed(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

impl System {
    /// `metal-cli show <machine> --json`, which must succeed.
    pub async fn show(&self, machine: &str) -> MachineDetail {
        let output = self.cli_async(&["show", machine, "--json"]).await;
        assert!(output.status.success(), "{}", printed(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub async fn start(static_bmcs: Vec<(Mac, String)>) -> System {
        System::start_with(static_bmcs, |_| {}).await
    }

    /// [`System::start`] with the config adjusted by `adjust` before any service starts.
    pub async fn start_with(
        static_bmcs: Vec<(Mac, String)>,
        adjust: impl FnOnce(&mut Config),
    ) -> System {
        System::start_as(static_bmcs, adjust, Start::Plain).await
    }

    /// [`System::start`] with NATS away while every service starts: it comes up a few
    /// seconds later, as after a power cut where the servers boot before the NATS nodes.
    pub async fn start_before_nats(static_bmcs: Vec<(Mac, String)>) -> System {
        System::start_as(static_bmcs, |_| {}, Start::NatsLater).await
    }

    /// [`System::start_with`] on a NATS server that runs nats/auth.conf over TLS, every
    /// service connecting as its own user ([`SecuredNats`]).
    pub async fn start_secured(
        static_bmcs: Vec<(Mac, String)>,
        adjust: impl FnOnce(&mut Config),
    ) -> System {
        System::start_as(static_bmcs, adjust, Start::Secured).await
    }

    /// A client as `user` on this system's NATS: its own user when secured.
    pub async fn client_as(&self, user: &str) -> async_nats::Client {
        connect(&self.nats, self.secured.as_ref(), user).await
    }

    async fn start_as(
        static_bmcs: Vec<(Mac, String)>,
        adjust: impl FnOnce(&mut Config),
        start: Start,
    ) -> System {
        let dir = tempfile::tempdir().unwrap();
        let (mut nats, secured) = if start == Start::Secured {
            let (secured, setup) = SecuredNats::prepare(dir.path());
            (NatsServer::start_with_setup(setup), Some(secured))
        } else {
            (NatsServer::start(), None)
        };
        let client = connect(&nats, secured.as_ref(), "admin").await;
        if start == Start::NatsLater {
            nats.kill();
        }
        let mut config = Config {
            nats_url: nats.url(),
            ..Config::default()
        };
        config.locator.static_bmcs = static_bmcs
            .into_iter()
            .map(|(bmc_mac, address)| StaticBmc { bmc_mac, address })
            .collect();
        config.redfish.password_env = "METAL_E2E_BMC_PASSWORD".into();
        config.redfish.request_timeout_secs = 10;
        config.redfish.retries = 1;
        std::env::set_var("METAL_E2E_BMC_PASSWORD", "e2e-secret-value");
        config.projector.database = dir.path().join("inventory.db");
        config.boot_api.database = dir.path().join("boot-api.db");
        config.boot_api.profiles =
            test_harness::paths::workspace_root().join("profiles/boot-profiles.toml");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let boot_url = format!("http://{}", listener.local_addr().unwrap());
        config.boot_api.listen = listener.local_addr().unwrap().to_string();
        config.boot_api.public_url = boot_url.clone();
        // An unknown BMC is given up on in seconds here, not the default ten minutes.
        config.locator.locate_deadline_secs = 8;
        config.locator.retry_secs = 2;
        config.validator.database = dir.path().join("validator.db");
        config.web.database = dir.path().join("web.db");
        let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_url = format!("http://{}", web_listener.local_addr().unwrap());
        config.web.listen = web_listener.local_addr().unwrap().to_string();
        // No [[map]] rules: machines nobody assigned a spec get no verdict, so provisioning
        // is never refused here; a test writes its own file and sets `validator.specs` in
        // `adjust`.
        config.validator.specs = dir.path().join("hardware-specs.toml");
        std::fs::write(
            &config.validator.specs,
            "[[spec]]\nname = \"one-drive\"\n[[spec.drives]]\ncount = 1\n",
        )
        .unwrap();
        // No periodic rescans unless a test asks for them: they would add events mid-test.
        config.validator.rescan_interval_secs.clear();
        adjust(&mut config);

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "locator", start).await,
                stopped(&stop_rx),
            );
            tasks.push(tokio::spawn(async move {
                locator::run(&config, client, shutdown)
                    .await
                    .expect("locator");
            }));
        }
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "redfish-scraper", start).await,
                stopped(&stop_rx),
            );
            tasks.push(tokio::spawn(async move {
                redfish_scraper::run(config, client, shutdown)
                    .await
                    .expect("redfish-scraper");
            }));
        }
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "inventory-projector", start).await,
                stopped(&stop_rx),
            );
            tasks.push(tokio::spawn(async move {
                inventory_projector::run(&config.projector, client, shutdown)
                    .await
                    .expect("inventory-projector");
            }));
        }
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "boot-api", start).await,
                stopped(&stop_rx),
            );
            let key = boot_api::TokenKey::new("test", E2E_TOKEN_KEY.as_bytes().to_vec())
                .expect("test key");
            let checked = boot_api::Checked::with_key(&config.boot_api, key).expect("boot-api");
            tasks.push(tokio::spawn(async move {
                boot_api::run(&config.boot_api, checked, client, listener, shutdown)
                    .await
                    .expect("boot-api");
            }));
        }
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "validator", start).await,
                stopped(&stop_rx),
            );
            let checked = validator::Checked::from_config(&config.validator).expect("validator");
            tasks.push(tokio::spawn(async move {
                validator::run_checked(&config.validator, checked, client, shutdown)
                    .await
                    .expect("validator");
            }));
        }
        {
            let (config, client, shutdown) = (
                config.clone(),
                service_client(&nats, secured.as_ref(), "web", start).await,
                stopped(&stop_rx),
            );
            let profiles =
                metal_core::profiles::Profiles::load(&config.boot_api.profiles).expect("profiles");
            tasks.push(tokio::spawn(async move {
                web::run(&config.web, &profiles, client, web_listener, shutdown)
                    .await
                    .expect("web");
            }));
        }
        if start == Start::NatsLater {
            // Longer than two JetStream requests wait (5 s each; getting or else creating
            // the stream takes two): every service's first try at it has failed by then.
            tokio::time::sleep(Duration::from_secs(12)).await;
            nats.start_again();
        }
        // The services create the stream as they start; a request before it would fail.
        let js = async_nats::jetstream::new(client.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while js.get_stream(metal_core::subjects::STREAM).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no service created the stream within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        System {
            nats,
            secured,
            client,
            config,
            boot_url,
            web_url,
            dir,
            stop,
            tasks,
        }
    }

    /// Runs the real metal-cli binary against this system's NATS.
    pub fn cli(&self, args: &[&str]) -> Output {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
            .args(args)
            .env("NATS_URL", self.nats.url())
            .envs(self.cli_env())
            .env_remove("METAL_CONFIG")
            .output()
            .expect("run metal-cli");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !printed.contains("e2e-secret-value"),
            "metal-cli printed a BMC password: {printed}"
        );
        output
    }

    /// Runs metal-cli off the async runtime; the arguments are copied, so calls can overlap.
    pub fn cli_async(
        &self,
        args: &[&str],
    ) -> impl std::future::Future<Output = Output> + Send + 'static {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let url = self.nats.url();
        let env = self.cli_env();
        let run = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_metal-cli"))
                .args(&args)
                .env("NATS_URL", url)
                .envs(env)
                .env_remove("METAL_CONFIG")
                .output()
                .expect("run metal-cli")
        });
        async move { run.await.unwrap() }
    }

    /// Polls `metal-cli show --json` until the machine is inventoried (or fails the test).
    pub async fn wait_inventoried(&self, machine: &str, timeout: Duration) -> MachineDetail {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let output = self.cli_async(&["show", machine, "--json"]).await;
            if output.status.success() {
                let detail: MachineDetail = serde_json::from_slice(&output.stdout).unwrap();
                if detail.machine.state == MachineState::Inventoried {
                    return detail;
                }
                assert!(
                    !detail.machine.state.is_failed(),
                    "{machine} failed: {:?}",
                    detail.machine.state_reason
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{machine} not inventoried within {timeout:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// GET on boot-api, polled until it answers `want` (its projection follows the stream).
    pub async fn boot(&self, mac: &str, want: u16) -> serde_json::Value {
        let url = format!("{}/v1/boot/{mac}", self.boot_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http_get(&url).await;
            if status == want {
                return serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET {url} answered {status} {body}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET on boot-api, polled until it answers 404 with a body containing `why` (`not
    /// armed` for a machine it knows, `unknown MAC` for one it does not): a 404 alone would
    /// also come from a boot-api that has not caught up with the stream yet.
    pub async fn boot_refused(&self, mac: &str, why: &str) -> String {
        let url = format!("{}/v1/boot/{mac}", self.boot_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http_get(&url).await;
            if status == 404 && body.contains(why) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET {url} answered {status} {body}, wanted 404 ({why})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What metal-cli needs in its environment to connect as its user, when secured.
    fn cli_env(&self) -> Vec<(String, String)> {
        self.secured
            .as_ref()
            .map(SecuredNats::cli_env)
            .unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("service stops on shutdown")
                .expect("service task");
        }
    }
}

/// A service's client; with NATS still away ([`Start::NatsLater`]), one made as the
/// binaries make theirs, which waits for it.
async fn service_client(
    nats: &NatsServer,
    secured: Option<&SecuredNats>,
    user: &str,
    start: Start,
) -> async_nats::Client {
    if start == Start::NatsLater {
        return metal_core::jetstream::connect(&nats.url(), user)
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    }
    connect(nats, secured, user).await
}

/// A client of `nats` as `user` when it is secured, else an open one.
async fn connect(
    nats: &NatsServer,
    secured: Option<&SecuredNats>,
    user: &str,
) -> async_nats::Client {
    match secured {
        Some(secured) => {
            metal_core::jetstream::connect_as(&nats.url(), user, &secured.config(user))
                .await
                .unwrap_or_else(|e| panic!("{user} connects: {}", metal_core::error_chain(&e)))
        }
        None => nats.connect().await,
    }
}

/// A minimal HTTP/1.1 GET over loopback, returning status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The install token boot-api renders for a provisioning (or a wipe) of a machine.
pub fn install_token(machine_id: metal_core::MachineId, provision_id: uuid::Uuid) -> String {
    boot_api::TokenKey::new("test", E2E_TOKEN_KEY.as_bytes().to_vec())
        .expect("test key")
        .token(machine_id, provision_id)
}

/// POSTs a phone-home with `token` as a Bearer header, or as `{"token"}` when `bearer` is
/// false; the status and the body.
pub async fn phone_home(url: &str, token: &str, bearer: bool) -> (u16, String) {
    let client = reqwest::Client::new();
    let request = if bearer {
        client.post(url).bearer_auth(token)
    } else {
        client
            .post(url)
            .json(&serde_json::json!({ "token": token }))
    };
    let response = request.send().await.expect("phone-home");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of `key=` in a rendered cmdline.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

/// Polls the emulator's system until `check` holds for it (or fails the test after 30 s).
pub async fn wait_system(
    sushy: &test_harness::sushy::SushyEmulator,
    path: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = sushy.get_json(path).await;
        if check(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the emulator never showed {what}: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exports the projection, replays it from sequence 1 and exports again: both exports.
pub async fn export_replay_export(system: &System) -> (Vec<u8>, Vec<u8>) {
    let before = system.path("replay-before.jsonl");
    let after = system.path("replay-after.jsonl");
    for (args, what) in [
        (vec!["export", "-o", before.to_str().unwrap()], "export"),
        (vec!["replay"], "replay"),
        (vec!["export", "-o", after.to_str().unwrap()], "export"),
    ] {
        let output = system.cli_async(&args).await;
        assert!(
            output.status.success(),
            "{what}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    (
        std::fs::read(before).unwrap(),
        std::fs::read(after).unwrap(),
    )
}

/// `machine.provision.requested` for the machine of `bmc_mac` with `profile` and power, as
/// metal-cli publishes it; its id (also its correlation id) is derived from `requester`
/// and the MAC, so publishing it again after a lost ack stores it once.
pub fn provision_request(bmc_mac: Mac, profile: &str, requester: &str) -> metal_core::Envelope {
    let id = uuid::Uuid::new_v5(
        &metal_core::ids::METAL_NAMESPACE,
        format!("{requester}-provision:{bmc_mac}").as_bytes(),
    );
    metal_core::Envelope {
        event_id: id,
        event_type: metal_core::subjects::PROVISION_REQUESTED.to_string(),
        machine_id: Some(metal_core::MachineId::from_bmc_mac(&bmc_mac)),
        bmc_mac: Some(bmc_mac),
        time: time::OffsetDateTime::now_utc(),
        correlation_id: id,
        causation_id: None,
        data: serde_json::to_value(metal_core::events::ProvisionRequested {
            profile: Some(profile.to_string()),
            power: true,
            requested_by: Some(requester.to_string()),
            force: false,
        })
        .expect("provision request"),
    }
}

/// What [`netboot`] went through.
#[derive(Debug, Default)]
pub struct Netboot {
    /// Boot requests that failed after they may have reached boot-api (each may have left a
    /// boot record).
    pub uncertain_boots: u32,
}

/// Pixiecore, then the installer, through restarts of boot-api and of NATS: asks boot-api
/// for the boot of `host_mac` until it answers, then phones home with the token and URL
/// its cmdline carries (`metal.token=`, `metal.phone_home=`). A phone-home boot-api may
/// have taken before it died is sent again only if `recorded` (the log, as the caller
/// reads it) does not show it within 20 s: a second one would be refused as replayed.
pub async fn netboot(
    http: &reqwest::Client,
    boot_url: &str,
    host_mac: &str,
    recorded: impl Fn() -> bool,
) -> Result<Netboot, String> {
    let mut report = Netboot::default();
    let url = format!("{boot_url}/v1/boot/{host_mac}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let answer: serde_json::Value = loop {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("boot-api never served {host_mac}"));
        }
        match http.get(&url).send().await {
            Ok(response) if response.status() == 200 => match response.json().await {
                Ok(answer) => break answer,
                Err(_) => report.uncertain_boots += 1,
            },
            Ok(_) => {}
            Err(error) if error.is_connect() => {}
            Err(_) => report.uncertain_boots += 1,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cmdline = answer["cmdline"].as_str().unwrap_or_default();
    let value = |key: &str| {
        cmdline_value(cmdline, key).ok_or_else(|| format!("{host_mac}: no {key}= in {cmdline:?}"))
    };
    let (token, phone_home) = (value("metal.token")?, value("metal.phone_home")?);
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{host_mac} could not phone home"));
        }
        match http.post(&phone_home).bearer_auth(&token).send().await {
            Ok(response) if response.status() == 200 => return Ok(report),
            Ok(response) if response.status() == 503 => {}
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(format!("{host_mac}: phone-home answered {status}: {body}"));
            }
            Err(error) if error.is_connect() => {}
            Err(_) => {
                let wait = tokio::time::Instant::now() + Duration::from_secs(20);
                while tokio::time::Instant::now() < wait {
                    if recorded() {
                        return Ok(report);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The install-token key the service processes of [`spawn_service`] run with.
pub const PROCESS_TOKEN_KEY: &str = "process-test install-token key, 0123456789";
/// The one boot profile of [`write_process_config`] ([`PROCESS_PROFILES`]): any machine,
/// kernel never fetched.
pub const PROCESS_PROFILE: &str = "netboot";
pub const PROCESS_PROFILES: &str = r#"[[profile]]
name = "netboot"
priority = 0
kernel = "http://127.0.0.1:9/vmlinuz"
initrd = ["http://127.0.0.1:9/initrd.img"]
cmdline = "console=ttyS0 metal.token={token} metal.phone_home={phone_home_url}"
"#;
/// One spec every synthetic fake BMC's system fits (two drives), mapped to every model.
const PROCESS_SPECS: &str = r#"[[spec]]
name = "fake"
[[spec.drives]]
count = 2

[[map]]
model = "*"
spec = "fake"
"#;

/// Writes, in `dir`, the config every service process reads (locator with the `fleet` as
/// static BMCs, anonymous Redfish, every database in `dir`, boot-api on `boot_listen`, web
/// on a port of its choosing, no periodic rescans; then `extra`), its profiles and specs
/// files; the config's path.
pub fn write_process_config(
    nats_url: &str,
    fleet: &test_harness::fake_bmc::FakeFleet,
    dir: &std::path::Path,
    boot_listen: &str,
    extra: &str,
) -> PathBuf {
    let mut text = format!("nats_url = \"{nats_url}\"\n\n{}", fleet.locator_toml());
    let path = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    text.push_str(&format!(
        "\n[redfish]\nusername = \"metal\"\npassword_env = \"PROCESS_TEST_UNSET_PASSWORD\"\n\
         request_timeout_secs = 5\nretries = 1\n\n\
         [projector]\ndatabase = {}\n\n\
         [boot_api]\nlisten = \"{boot_listen}\"\npublic_url = \"http://{boot_listen}\"\ndatabase = {}\n\
         profiles = {}\ntoken_key_env = \"METAL_BOOT_TOKEN_KEY\"\n\n\
         [web]\nlisten = \"127.0.0.1:0\"\ndatabase = {}\n\n\
         [validator]\ndatabase = {}\nspecs = {}\n\n[validator.rescan_interval_secs]\n\n{extra}",
        path("inventory.db"),
        path("boot-api.db"),
        path("boot-profiles.toml"),
        path("web.db"),
        path("validator.db"),
        path("hardware-specs.toml"),
    ));
    std::fs::write(dir.join("boot-profiles.toml"), PROCESS_PROFILES).unwrap();
    std::fs::write(dir.join("hardware-specs.toml"), PROCESS_SPECS).unwrap();
    let config = dir.join("metal.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Starts the workspace binary `name` as its own process with `--config config` and
/// `args`, logging beside the config (boot-api gets [`PROCESS_TOKEN_KEY`]).
pub fn spawn_service(
    name: &str,
    config: &std::path::Path,
    args: &[&str],
) -> test_harness::service::Service {
    let mut all = vec!["--config".to_string(), config.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    test_harness::service::Service::spawn(
        name,
        &test_harness::service::workspace_binary(name),
        "cargo build --workspace --bins",
        &all,
        config.parent().expect("the config's directory"),
        |command| {
            command.env("METAL_BOOT_TOKEN_KEY", PROCESS_TOKEN_KEY);
        },
    )
    .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}
