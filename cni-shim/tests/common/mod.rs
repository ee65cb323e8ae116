//! Running the plugin exactly as a container runtime does: `CNI_*` variables in an otherwise
//! empty environment, the network configuration on stdin, the result (or error) on stdout.
//! Plus a fake vswitchd (the real API server with a scripted backend) for tests that need a
//! daemon but not its data path.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use vswitch_api::{
    ApiError, ApiListener, Backend, PodAttachment, PortInfo, PortStats, Reply, Request, Response,
};

/// Where the reference plugins are (Debian's `containernetworking-plugins`).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Fails, with what to do, when `host-local` is not installed.
pub fn require_host_local() {
    let p = Path::new(CNI_BIN_DIR).join("host-local");
    assert!(
        p.exists(),
        "{} is missing: install the reference CNI plugins (apt-get install \
         containernetworking-plugins); scripts/test.sh does",
        p.display()
    );
}

/// One invocation of the plugin.
#[derive(Debug, Clone)]
pub struct Call {
    /// `CNI_*` variables (and anything else) to set.
    pub env: Vec<(String, String)>,
    /// The network namespace (full name) to run the plugin in, if not the caller's.
    pub in_netns: Option<String>,
}

/// What the plugin did: exit status and stdout parsed as JSON (`Null` if empty).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit status code.
    pub status: i32,
    /// stdout as JSON.
    pub json: Value,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

impl Outcome {
    /// The CNI error code, when stdout is an error.
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(Value::as_u64)
    }

    /// Asserts success, showing everything on failure.
    pub fn ok(self) -> Outcome {
        assert_eq!(self.status, 0, "plugin failed: {} / {}", self.stdout, self.stderr);
        self
    }

    /// Asserts an error with `code`, showing everything otherwise.
    pub fn err(self, code: u64) -> Outcome {
        assert_ne!(self.status, 0, "plugin succeeded, expected error {code}: {}", self.stdout);
        assert_eq!(self.code(), Some(code), "stdout: {} stderr: {}", self.stdout, self.stderr);
        assert!(self.json["msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.stdout);
        assert!(self.json["cniVersion"].is_string(), "{}", self.stdout);
        self
    }

    /// The error message.
    pub fn msg(&self) -> String {
        self.json["msg"].as_str().unwrap_or("").to_string()
    }
}

/// The plugin binary cargo built for these tests.
pub fn plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vswitch-cni"))
}

/// Runs the plugin with `vars` (besides `PATH`, the environment is empty) and `stdin`, in the
/// network namespace `netns` (a name under `/var/run/netns`) when given.
///
/// The namespace is entered as a runtime runs a plugin in the node's namespace: a thread of
/// its own enters just the network namespace (`setns`) and starts the plugin, which inherits
/// it. (`ip netns exec` would also unshare the mount namespace and remount `/sys`, copying
/// every mount: with a thousand pod namespaces mounted that alone took 4-8 ms per call.)
pub fn run_in(netns: Option<&str>, vars: &[(&str, &str)], stdin: &str) -> Outcome {
    let Some(ns) = netns else { return run_here(vars, stdin) };
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering {path}: {e}"));
            run_here(vars, stdin)
        })
        .join()
        .expect("plugin runner thread")
    })
}

fn run_here(vars: &[(&str, &str)], stdin: &str) -> Outcome {
    let mut cmd = Command::new(plugin());
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run vswitch-cni");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for vswitch-cni");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"))
    };
    Outcome {
        status: out.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run_in`] in the caller's namespace.
pub fn run(vars: &[(&str, &str)], stdin: &str) -> Outcome {
    run_in(None, vars, stdin)
}

/// A network configuration for `socket`, with host-local IPAM over 10.244.1.0/24 keeping its
/// state under `data_dir` when given.
pub fn netconf(version: &str, socket: &Path, data_dir: Option<&Path>) -> Value {
    let mut v = json!({
        "cniVersion": version,
        "name": "vswitch-test",
        "type": "vswitch-cni",
        "socket": socket,
        "vlan": 10,
        "mtu": 1450,
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
    });
    if let Some(dir) = data_dir {
        v["ipam"] = json!({
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
            "dataDir": dir,
        });
    }
    v
}

/// The `CNI_*` variables of one attachment.
pub fn attachment_env<'a>(
    command: &'a str,
    container_id: &'a str,
    netns: &'a str,
    ifname: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", CNI_BIN_DIR),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u-1",
        ),
    ];
    if !netns.is_empty() {
        v.push(("CNI_NETNS", netns));
    }
    v
}

/// The IP addresses host-local has reserved under `data_dir` (its files named by address).
pub fn reserved_ips(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(networks) = std::fs::read_dir(data_dir) else { return out };
    for net in networks.flatten() {
        let Ok(files) = std::fs::read_dir(net.path()) else { continue };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.push(name);
            }
        }
    }
    out
}

/// Whether interface `name` exists in namespace `ns`.
pub fn link_exists(ns: &str, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A fake vswitchd: the real API server over a Unix socket, a backend that keeps the pods it
/// is given (and refuses AttachPod when `refuse` is set).
pub struct FakeSwitch {
    pub socket: PathBuf,
    pub pods: Arc<Mutex<Vec<PodAttachment>>>,
    pub refuse: Arc<Mutex<Option<ApiError>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct FakeBackend {
    pods: Arc<Mutex<Vec<PodAttachment>>>,
    refuse: Arc<Mutex<Option<ApiError>>>,
}

fn port_of(pod: &PodAttachment) -> PortInfo {
    PortInfo {
        id: 1,
        name: format!("{}/{}", pod.container_id, pod.ifname),
        interface: pod.host_interface.clone(),
        kind: "fake".into(),
        worker: 0,
        queues: 1,
        up: true,
        mode: "access".into(),
        vlan: Some(pod.vlan),
        allowed_vlans: vec![],
        native_vlan: None,
        mtu: pod.mtu,
        stats: PortStats::default(),
    }
}

impl Backend for FakeBackend {
    fn call(&self, request: Request) -> Response {
        let mut pods = self.pods.lock().unwrap();
        match request {
            Request::Status => Ok(Reply::Status(vswitch_api::Status {
                version: "fake".into(),
                uptime_secs: 1,
                ports: pods.len(),
                workers: 1,
                fdb_entries: 0,
                fdb_max: 1024,
            })),
            Request::AttachPod(pod) => {
                if let Some(e) = self.refuse.lock().unwrap().clone() {
                    return Err(e);
                }
                pods.retain(|p| !(p.container_id == pod.container_id && p.ifname == pod.ifname));
                let port = port_of(&pod);
                pods.push(pod);
                Ok(Reply::Port(port))
            }
            Request::DetachPod { container_id, ifname } => {
                pods.retain(|p| !(p.container_id == container_id && p.ifname == ifname));
                Ok(Reply::Done { message: "detached".into() })
            }
            Request::ListPods => Ok(Reply::Pods(pods.clone())),
            other => Err(ApiError::invalid(format!("fake switch: {} not scripted", other.route()))),
        }
    }
}

impl FakeSwitch {
    /// Starts serving on a socket in a new temporary directory.
    pub fn start() -> FakeSwitch {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("vswitchd.sock");
        let pods = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(Mutex::new(None));
        let backend: Arc<dyn Backend> =
            Arc::new(FakeBackend { pods: pods.clone(), refuse: refuse.clone() });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = ApiListener::bind(&path, 0o660, None).expect("bind fake socket");
                ready_tx.send(()).unwrap();
                listener
                    .serve(backend, async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        ready_rx.recv().expect("fake switch started");
        FakeSwitch { socket, pods, refuse, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    /// The attachments it holds.
    pub fn pods(&self) -> Vec<PodAttachment> {
        self.pods.lock().unwrap().clone()
    }
}

impl Drop for FakeSwitch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
