//! A `vswitchd` process for integration tests: started inside a test namespace with a
//! generated configuration, reached through the typed API client, stopped by PID.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use vswitch_api::{Client, ClientError, Reply, Request};

use crate::netns::{bin, wait_for, Topo};

/// One port of a generated configuration.
pub struct PortSpec {
    pub name: String,
    pub interface: String,
    pub vlan: u16,
    /// The pod's namespace (full name), so the switch turns off its tx checksum offload.
    pub pod_netns: Option<String>,
    /// The worker that polls it.
    pub worker: usize,
    /// A TAP port the switch creates as the pod's `eth0` (instead of an AF_XDP port on the
    /// host end of a veth).
    pub tap: bool,
}

impl PortSpec {
    /// A pod's port: named `pod`, on the host veth `<prefix><pod>` of `topo`, access `vlan`.
    pub fn pod(topo: &Topo, pod: &str, vlan: u16) -> PortSpec {
        PortSpec {
            name: pod.to_string(),
            interface: topo.name(pod),
            vlan,
            pod_netns: Some(topo.name(pod)),
            worker: 0,
            tap: false,
        }
    }

    /// A pod's TAP port: vswitchd creates `eth0` in the pod's namespace `<prefix><pod>`.
    pub fn tap_pod(topo: &Topo, pod: &str, vlan: u16) -> PortSpec {
        PortSpec { tap: true, ..PortSpec::pod(topo, pod, vlan) }
    }

    /// A node's uplink: the access port `uplink` (VLAN 1) on the underlay interface
    /// `<prefix><short>` of `topo`, which holds no address: the switch owns the node's
    /// underlay address on it.
    pub fn uplink(topo: &Topo, short: &str) -> PortSpec {
        PortSpec {
            name: "uplink".into(),
            interface: topo.name(short),
            vlan: 1,
            pod_netns: None,
            worker: 0,
            tap: false,
        }
    }

    /// The same port on worker `w`.
    pub fn on_worker(mut self, w: usize) -> PortSpec {
        self.worker = w;
        self
    }

    /// The TOML of this port.
    pub fn toml(&self) -> String {
        let mut s = if self.tap {
            format!(
                "\n[[port]]\nname = \"{}\"\ntype = \"tap\"\nvlan = {}\nworker = {}\n",
                self.name, self.vlan, self.worker
            )
        } else {
            format!(
                "\n[[port]]\nname = \"{}\"\ninterface = \"{}\"\nvlan = {}\nworker = {}\n",
                self.name, self.interface, self.vlan, self.worker
            )
        };
        if let Some(ns) = &self.pod_netns {
            s += &format!("pod_netns = \"/var/run/netns/{ns}\"\npod_interface = \"eth0\"\n");
        }
        s
    }
}

/// The `[node]` table of a node in a multi-node pod network (see [`NodeSpec::toml`]); the
/// uplink is the port named `uplink` and the pods are on VLAN 1.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// This node's pods, e.g. "10.244.1.0/24".
    pub pod_cidr: String,
    /// This node's underlay address with its subnet, e.g. "198.18.0.1/24".
    pub underlay_ip: String,
    pub underlay_gateway: Option<String>,
    pub router_mac: Option<String>,
}

/// A `[[peer]]` table: another node of the pod network.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub name: String,
    pub underlay_ip: String,
    pub pod_cidr: String,
    /// "auto", "direct" or "vxlan".
    pub mode: String,
    pub vtep_mac: Option<String>,
}

impl NodeSpec {
    /// Node `name` with pods in `pod_cidr` and underlay address `underlay_ip` ("a.b.c.d/len").
    pub fn new(name: &str, pod_cidr: &str, underlay_ip: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            pod_cidr: pod_cidr.into(),
            underlay_ip: underlay_ip.into(),
            underlay_gateway: None,
            router_mac: None,
        }
    }

    /// The `[node]` table and one `[[peer]]` table per peer, to append to a configuration.
    pub fn toml(&self, peers: &[PeerSpec]) -> String {
        let mut s = format!(
            "\n[node]\nname = \"{}\"\npod_cidr = \"{}\"\npod_vlan = 1\nuplink = \"uplink\"\n\
             underlay_ip = \"{}\"\n",
            self.name, self.pod_cidr, self.underlay_ip
        );
        if let Some(g) = &self.underlay_gateway {
            s += &format!("underlay_gateway = \"{g}\"\n");
        }
        if let Some(m) = &self.router_mac {
            s += &format!("router_mac = \"{m}\"\n");
        }
        for p in peers {
            s += &format!(
                "\n[[peer]]\nname = \"{}\"\nunderlay_ip = \"{}\"\npod_cidr = \"{}\"\nmode = \"{}\"\n",
                p.name, p.underlay_ip, p.pod_cidr, p.mode
            );
            if let Some(m) = &p.vtep_mac {
                s += &format!("vtep_mac = \"{m}\"\n");
            }
        }
        s
    }
}

impl PeerSpec {
    /// Peer `name` at `underlay_ip` (no prefix length) with pods in `pod_cidr`, in `mode`.
    pub fn new(name: &str, underlay_ip: &str, pod_cidr: &str, mode: &str) -> PeerSpec {
        PeerSpec {
            name: name.into(),
            underlay_ip: underlay_ip.into(),
            pod_cidr: pod_cidr.into(),
            mode: mode.into(),
            vtep_mac: None,
        }
    }
}

/// A running vswitchd.
pub struct Switch {
    pub pid: u32,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub client: Client,
}

/// The configuration text for `ports`, with the API socket at `socket`.
pub fn config_text(socket: &std::path::Path, ports: &[PortSpec]) -> String {
    let state = socket.parent().map(|d| d.join("state")).unwrap_or_default();
    let mut s = format!(
        "[api]\nsocket = \"{}\"\nmetrics = \"\"\n\n[state]\ndir = \"{}\"\n",
        socket.display(),
        state.display()
    );
    let workers = ports.iter().map(|p| p.worker + 1).max().unwrap_or(1);
    for _ in 0..workers {
        s += "\n[[worker]]\nidle = \"adaptive\"\n";
    }
    for p in ports {
        s += &p.toml();
    }
    s
}

impl Switch {
    /// Writes a configuration for `ports` and starts vswitchd in namespace `ns` of `topo`;
    /// returns once its API answers.
    pub fn start(topo: &mut Topo, ns: &str, ports: &[PortSpec]) -> Switch {
        Self::start_with(topo, ns, ports, "")
    }

    /// [`Switch::start`] with `extra` TOML appended to the configuration (e.g. `[pool]`).
    pub fn start_with(topo: &mut Topo, ns: &str, ports: &[PortSpec], extra: &str) -> Switch {
        let dir = std::env::temp_dir().join(format!("vswitch-test-{}", topo.name(ns)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let socket = dir.join("vswitchd.sock");
        let config = dir.join("vswitchd.toml");
        std::fs::write(&config, config_text(&socket, ports) + extra).expect("write config");
        let vswitchd = bin("vswitchd");
        let pid = topo.spawn_logged(
            ns,
            vswitchd.to_str().expect("utf-8 path"),
            &["--config", config.to_str().expect("utf-8 path"), "--log-level", "info"],
            &dir.join("vswitchd.log"),
        );
        let client = Client::new(&socket).with_timeout(Duration::from_secs(10));
        let sw = Switch { pid, dir, socket, config, client };
        let up = wait_for(Duration::from_secs(10), || sw.call(Request::Status).ok());
        assert!(up.is_some(), "vswitchd did not answer on {}:\n{}", sw.socket.display(), sw.log());
        sw
    }

    /// Stops vswitchd (SIGTERM) and starts it again in namespace `ns` with the same
    /// configuration and state directory; returns once its API answers.
    pub fn restart(&mut self, topo: &mut Topo, ns: &str) {
        let out = topo.stop(self.pid).expect("vswitchd exited");
        assert_eq!(out.status.code(), Some(0), "{}", self.log());
        let vswitchd = bin("vswitchd");
        self.pid = topo.spawn_logged(
            ns,
            vswitchd.to_str().expect("utf-8 path"),
            &["--config", self.config.to_str().expect("utf-8 path"), "--log-level", "info"],
            &self.dir.join("vswitchd.log"),
        );
        let up = wait_for(Duration::from_secs(10), || self.call(Request::Status).ok());
        assert!(up.is_some(), "vswitchd did not come back on {}", self.socket.display());
    }

    /// What vswitchd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vswitchd.log")).unwrap_or_default()
    }

    /// One API call.
    pub fn call(&self, req: Request) -> Result<Reply, ClientError> {
        self.client.call_blocking(req)
    }

    /// The ports with their counters.
    pub fn ports(&self) -> Vec<vswitch_api::PortInfo> {
        match self.call(Request::ListPorts) {
            Ok(Reply::Ports(p)) => p,
            other => panic!("ListPorts: {other:?}"),
        }
    }

    /// Port `name`'s counters.
    pub fn port(&self, name: &str) -> vswitch_api::PortInfo {
        self.ports()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no port {name}"))
    }

    /// Waits (at most 5 s) until every port is attached to its worker; returns the ports.
    pub fn wait_attached(&self) -> Vec<vswitch_api::PortInfo> {
        wait_for(Duration::from_secs(5), || {
            let ports = self.ports();
            ports.iter().all(|p| !p.kind.contains("attaching")).then_some(ports)
        })
        .unwrap_or_else(|| panic!("ports not attached: {:?}", self.ports()))
    }

    /// The FDB.
    pub fn fdb(&self) -> Vec<vswitch_api::FdbEntry> {
        match self.call(Request::ListFdb { vlan: None, port: None }) {
            Ok(Reply::Fdb(f)) => f,
            other => panic!("ListFdb: {other:?}"),
        }
    }

    /// Replaces the configuration file with one for `ports` and sends SIGHUP.
    pub fn reload(&self, ports: &[PortSpec]) {
        self.reload_with(ports, "");
    }

    /// [`Switch::reload`] with `extra` TOML appended (e.g. `[node]` and `[[peer]]` tables).
    pub fn reload_with(&self, ports: &[PortSpec], extra: &str) {
        std::fs::write(&self.config, config_text(&self.socket, ports) + extra)
            .expect("write config");
        let ok = Command::new("kill").args(["-HUP", &self.pid.to_string()]).status().expect("kill");
        assert!(ok.success(), "SIGHUP to vswitchd {}", self.pid);
    }

    /// Runs vswitchctl against this switch.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run vswitchctl")
    }

    /// Runs `vswitchctl ARGS`, expecting exit code 1 (the daemon refused) and nothing on
    /// stdout; returns the message it printed on stderr.
    #[track_caller]
    pub fn ctl_refused(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "vswitchctl {args:?}: {err}");
        assert!(o.stdout.is_empty(), "vswitchctl {args:?} printed {:?}", o.stdout);
        err
    }

    /// Runs `vswitchctl --json ARGS` and parses its output.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ctl(&[&["--json"], args].concat());
        assert!(
            out.status.success(),
            "vswitchctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("vswitchctl --json output")
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
