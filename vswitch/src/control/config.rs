//! The daemon's configuration file (TOML): schema, defaults, and validation of the whole file
//! before anything is touched.
//!
//! Unknown keys are refused (a typo must not silently fall back to a default), and validation
//! collects every problem it finds, each naming the field and the value, e.g.
//! `port[2] ("pod-c").vlan: 4095 is out of range 1..=4094`. See `config/vswitchd.toml` for an
//! annotated example. QoS (`[[qos_class]]`, the ports' `qos_class` and `qos_root`,
//! `[ddos_guard]`) is checked and compiled in [`super::qos`].

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use std::net::Ipv4Addr;

use super::qos::{DdosGuardSection, QosClassSection};
use crate::packet::PoolConfig;
use crate::pipeline::{PortEntry, Snapshot, VlanMode, VlanSet};
use crate::tables::l3::{
    choose_mode, default_mac, L3Table, ModeSetting, PeerSpec, StaticRoute, StaticVia,
};
use crate::tables::route::{Ipv4Cidr, Ipv4Net};
use crate::types::MacAddr;
use crate::types::{vlan_is_valid, PortId, VlanId, MAX_PORTS};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub switch: SwitchSection,
    #[serde(default)]
    pub pool: PoolSection,
    #[serde(default = "default_workers", rename = "worker")]
    pub workers: Vec<WorkerSection>,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortSection>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub state: StateSection,
    /// This node's place in the pod network (routing between nodes); absent on a pure L2
    /// switch.
    #[serde(default)]
    pub node: Option<NodeSection>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSection>,
    /// Static routes (outside the pod CIDRs), to an underlay gateway or a peer.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<vswitch_api::RouteSpec>,
    /// QoS classes (see [`super::qos`]).
    #[serde(default, rename = "qos_class", skip_serializing_if = "Vec::is_empty")]
    pub qos_classes: Vec<QosClassSection>,
    /// The uplink's DDoS guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddos_guard: Option<DdosGuardSection>,
    /// Flow rules (see [`super::flows`]).
    #[serde(default, rename = "flow", skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<vswitch_api::FlowRule>,
}

/// `[node]`: this node in the multi-node pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    #[serde(default)]
    pub name: String,
    /// This node's pods, e.g. "10.244.1.0/24".
    pub pod_cidr: Ipv4Net,
    /// The pods' default gateway, answered by the switch; default: the first host address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// VLAN of the pod ports the gateway serves.
    #[serde(default = "default_pod_vlan")]
    pub pod_vlan: VlanId,
    /// Name of the `[[port]]` on the underlay interface.
    pub uplink: String,
    /// This node's underlay address and the uplink's L2 subnet, e.g. "198.18.0.1/24".
    pub underlay_ip: Ipv4Cidr,
    /// Next hop to VTEPs outside the subnet.
    #[serde(default)]
    pub underlay_gateway: Option<Ipv4Addr>,
    #[serde(default = "default_vni")]
    pub vxlan_vni: u32,
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// The gateway's MAC (also the uplink's source MAC); default 0a:58 + the underlay address.
    #[serde(default)]
    pub router_mac: Option<String>,
    /// A neighbour (pod or peer MAC) not confirmed by ARP for this long is resolved again.
    #[serde(default = "default_neighbor_timeout")]
    pub neighbor_timeout_secs: u64,
}

fn default_pod_vlan() -> VlanId {
    1
}
fn default_vni() -> u32 {
    1
}
fn default_vxlan_port() -> u16 {
    crate::wire::vxlan::PORT_LINUX
}
fn default_neighbor_timeout() -> u64 {
    300
}

impl NodeSection {
    /// The gateway address (validated).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway.unwrap_or_else(|| self.pod_cidr.first_host())
    }

    /// The router MAC (validated).
    pub fn router_mac(&self) -> MacAddr {
        self.router_mac
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| default_mac(self.underlay_ip.addr))
    }
}

/// `[[peer]]`: another node of the pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// "auto" (direct on the uplink's subnet, VXLAN otherwise), "direct" or "vxlan".
    #[serde(default = "default_mode_setting")]
    pub mode: ModeSetting,
    /// Inner destination MAC of VXLAN packets to this peer (a Flannel node's flannel.1 MAC);
    /// default 0a:58 + the peer's underlay address.
    #[serde(default)]
    pub vtep_mac: Option<String>,
}

fn default_mode_setting() -> ModeSetting {
    ModeSetting::Auto
}

impl PeerSection {
    pub fn spec(&self) -> PeerSpec {
        PeerSpec {
            name: self.name.clone(),
            underlay_ip: self.underlay_ip,
            pod_cidr: self.pod_cidr,
            setting: self.mode,
            vtep_mac: self.vtep_mac.as_deref().and_then(|m| m.parse().ok()),
        }
    }
}

/// `[state]`: where the daemon keeps what it must remember across restarts (pod attachments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    pub dir: String,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection { dir: "/var/lib/vswitch".into() }
    }
}

/// `[api]`: where vswitchctl and the CNI shim reach the daemon, and the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// The control socket (HTTP/JSON over a Unix socket).
    pub socket: String,
    /// Permissions of the socket file, octal.
    pub socket_mode: String,
    /// Group allowed to use the socket (name or number); root only when absent.
    pub group: Option<String>,
    /// Prometheus metrics listen address; empty string turns metrics off.
    pub metrics: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            socket: "/run/vswitch/vswitchd.sock".into(),
            socket_mode: "0660".into(),
            group: None,
            metrics: "127.0.0.1:9477".into(),
        }
    }
}

impl ApiSection {
    /// The socket mode as a number (validated).
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }

    /// The group's id, looked up in /etc/group when given by name.
    pub fn gid(&self) -> Result<Option<u32>, String> {
        let Some(g) = &self.group else { return Ok(None) };
        if let Ok(n) = g.parse::<u32>() {
            return Ok(Some(n));
        }
        let groups = std::fs::read_to_string("/etc/group")
            .map_err(|e| format!("reading /etc/group: {e}"))?;
        groups
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next()? == g).then(|| f.nth(1)?.parse().ok())?
            })
            .map(Some)
            .ok_or_else(|| format!("group {g:?} is not in /etc/group"))
    }

    /// The metrics address, if metrics are on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.parse().ok()
    }
}

/// `[switch]`: forwarding tunables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchSection {
    /// Packets per batch: 32, 64, 128 or 256.
    pub batch_size: usize,
    /// Flow cache entries per worker (a power of two).
    pub flow_cache_entries: usize,
    /// Most MAC addresses the FDB holds.
    pub fdb_max_entries: usize,
    /// Seconds after which an idle MAC is forgotten.
    pub fdb_aging_secs: u64,
    /// AF_XDP ring size of the ports of pods attached by the CNI plugin (each keeps this many
    /// pool frames on its fill ring, so a node with many pods wants it small).
    pub pod_ring_size: u32,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection {
            batch_size: 32,
            flow_cache_entries: 8192,
            fdb_max_entries: 65536,
            fdb_aging_secs: 300,
            pod_ring_size: 512,
        }
    }
}

/// `[pool]`: each worker's buffers (its AF_XDP UMEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSection {
    pub frames: usize,
    pub frame_size: usize,
    pub headroom: usize,
    pub big_buffers: usize,
}

impl Default for PoolSection {
    fn default() -> Self {
        let d = PoolConfig::default();
        PoolSection {
            frames: d.frames,
            frame_size: d.frame_size,
            headroom: d.headroom,
            big_buffers: d.big_buffers,
        }
    }
}

impl PoolSection {
    pub fn to_pool_config(&self) -> PoolConfig {
        PoolConfig {
            frames: self.frames,
            frame_size: self.frame_size,
            headroom: self.headroom,
            big_buffers: self.big_buffers,
        }
    }
}

/// What a worker does when its ports are idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdlePolicy {
    /// Poll without pause: lowest latency, one core at 100%. For dedicated cores.
    BusyPoll,
    /// Spin briefly, then sleep in poll(2) on the ports until a packet arrives: ~0% CPU idle,
    /// and the core is left to the pods when there is nothing to switch.
    Adaptive,
}

/// `[[worker]]`: one poll-mode thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// CPU the worker is pinned to; unpinned when absent.
    #[serde(default)]
    pub core: Option<usize>,
    #[serde(default = "default_idle")]
    pub idle: IdlePolicy,
    /// Adaptive: microseconds of empty polling before sleeping.
    #[serde(default = "default_spin_us")]
    pub spin_us: u64,
}

fn default_idle() -> IdlePolicy {
    IdlePolicy::Adaptive
}

fn default_spin_us() -> u64 {
    50
}

fn default_workers() -> Vec<WorkerSection> {
    vec![WorkerSection { core: None, idle: default_idle(), spin_us: default_spin_us() }]
}

/// How a port reaches its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// AF_XDP sockets on the worker's shared UMEM (the default).
    Afxdp,
    /// AF_PACKET with TPACKET_V3 rings, for devices without XDP.
    Afpacket,
    /// A TAP device the switch creates in the pod's namespace as the pod's interface
    /// (`pod_netns`, `pod_interface`), with the virtio-net header: the pod hands over 64 KB TCP
    /// segments with partial checksums, kept whole to ports that take them.
    Tap,
}

/// How a tap port moves packets (`port::tap::TapIo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TapIoMode {
    IoUring,
    Readv,
}

/// Which XDP attach mode an AF_XDP port uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native (driver) mode if the device supports it, generic otherwise.
    Auto,
    Native,
    Generic,
}

/// A port's VLAN mode as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanModeName {
    Access,
    Trunk,
}

/// `[[port]]`: one switch port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// The port's name in the switch (ctl, counters).
    pub name: String,
    /// The Linux interface; defaults to `name`.
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default = "default_kind", rename = "type")]
    pub kind: PortKind,
    #[serde(default = "default_xdp_mode")]
    pub xdp_mode: XdpMode,
    /// Receive queues to open (one AF_XDP socket each).
    #[serde(default = "default_queues")]
    pub queues: u16,
    /// Entries of each AF_XDP ring; the fill ring is kept full, so each queue holds this many
    /// pool frames. Larger rings ride out a worker preempted by the pods on a shared core.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Index of the worker that polls the port.
    #[serde(default)]
    pub worker: usize,
    #[serde(default = "default_mode")]
    pub mode: VlanModeName,
    /// Access mode: the port's VLAN (default 1).
    #[serde(default)]
    pub vlan: Option<VlanId>,
    /// Trunk mode: VLANs carried tagged.
    #[serde(default)]
    pub allowed_vlans: Vec<VlanId>,
    /// Trunk mode: the VLAN of untagged frames.
    #[serde(default)]
    pub native_vlan: Option<VlanId>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default = "default_up")]
    pub up: bool,
    /// The pod's network namespace (a path such as /var/run/netns/pod1) and interface, when the
    /// port's interface is the host end of a pod's veth: the switch turns off the pod
    /// interface's transmit checksum offload there, since AF_XDP and AF_PACKET carry no
    /// checksum-offload state and a partial checksum would reach the receiver as garbage.
    #[serde(default)]
    pub pod_netns: Option<String>,
    #[serde(default)]
    pub pod_interface: Option<String>,
    /// An afpacket port: carry checksum and segmentation state with `PACKET_VNET_HDR`, so TCP
    /// segments of 64 KB cross it whole (default true; the uplink of a node whose pods use TAP
    /// ports keeps kernel-speed TCP this way).
    #[serde(default)]
    pub vnet_hdr: Option<bool>,
    /// A tap port: the device outlives vswitchd, so a pod keeps its interface, addresses and
    /// routes while vswitchd restarts (it attaches to the device again); it is deleted when the
    /// port is removed. Pods attached by the CNI plugin get this.
    #[serde(default)]
    pub persist: bool,
    /// The QoS class of the traffic *from* this port (a leaf `[[qos_class]]`): a pod's ports
    /// name the pod's class; every shaped egress port whose tree holds it schedules it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// Shape this port's egress with the tree under this root `[[qos_class]]` (e.g. the
    /// uplink's capacity; on a pod's port: the traffic entering the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_root: Option<String>,
    /// Put this port's ingress behind the `[ddos_guard]` (the `[node]` uplink always is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ddos_guard: bool,
    /// A tap port that stands for this interface (the `[node]` uplink on the underlay NIC):
    /// the switch creates the TAP device `interface` (default: the port's name) in its own
    /// namespace and wires it to the NIC with tc redirects both ways, so 64 KB segments and
    /// VXLAN around them (UDP tunnel GSO, Linux 6.17) cross whole. See `port::tap::uplink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// A tap port: how packets cross its descriptors, `"io-uring"` (a batch of reads or writes
    /// per system call; the default, falling back to readv where io_uring is refused) or
    /// `"readv"` (one system call per packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_io: Option<TapIoMode>,
}

fn default_kind() -> PortKind {
    PortKind::Afxdp
}
fn default_xdp_mode() -> XdpMode {
    XdpMode::Auto
}
fn default_queues() -> u16 {
    1
}
fn default_ring_size() -> u32 {
    2048
}
fn default_mode() -> VlanModeName {
    VlanModeName::Access
}
fn default_mtu() -> u16 {
    1500
}
fn default_up() -> bool {
    true
}

impl PortSection {
    /// The Linux interface name.
    pub fn interface(&self) -> &str {
        self.interface.as_deref().unwrap_or(&self.name)
    }

    /// The VLAN mode (assumes the section validated).
    pub fn vlan_mode(&self) -> VlanMode {
        match self.mode {
            VlanModeName::Access => VlanMode::Access(self.vlan.unwrap_or(1)),
            VlanModeName::Trunk => {
                let mut allowed = VlanSet::default();
                for v in &self.allowed_vlans {
                    allowed.insert(*v);
                }
                VlanMode::Trunk { allowed, native: self.native_vlan }
            }
        }
    }

    /// The entry the pipeline sees.
    pub fn entry(&self) -> PortEntry {
        PortEntry { name: self.name.clone(), up: self.up, mode: self.vlan_mode(), mtu: self.mtu }
    }
}

/// The DDoS guard's hash seed in [`Config::snapshot`] (tests, start-up); the daemon publishes
/// its snapshots with a seed picked at random when it starts.
pub const GUARD_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `switch.batch_size`, `port[2] ("pod-c").vlan`, ...
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {} problem(s):\n{}", .errors.len(), .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, errors: Vec<FieldError> },
}

impl ConfigError {
    /// The field errors, if the file parsed but did not validate.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Asserts that the field errors are exactly `want`, each given by its start (the field's
    /// path and the start of the message), in any order.
    #[cfg(test)]
    pub(crate) fn assert_fields(&self, want: &[&str]) {
        let fields: Vec<String> = self.field_errors().iter().map(|f| f.to_string()).collect();
        for w in want {
            assert!(fields.iter().any(|f| f.starts_with(w)), "missing {w:?} in {fields:#?}");
        }
        assert_eq!(fields.len(), want.len(), "{fields:#?}");
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        Self::parse(&text, &p)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let errors = cfg.validate();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid { path: origin.to_string(), errors })
        }
    }

    /// Every problem of the configuration; empty when it is valid.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |field: String, message: String| errs.push(FieldError { field, message });
        let s = &self.switch;
        if ![32, 64, 128, 256].contains(&s.batch_size) {
            err(
                "switch.batch_size".into(),
                format!("{} is not one of 32, 64, 128, 256", s.batch_size),
            );
        }
        if !s.flow_cache_entries.is_power_of_two()
            || !(64..=1 << 20).contains(&s.flow_cache_entries)
        {
            err(
                "switch.flow_cache_entries".into(),
                format!("{} is not a power of two between 64 and 1048576", s.flow_cache_entries),
            );
        }
        if !(1..=1 << 22).contains(&s.fdb_max_entries) {
            err(
                "switch.fdb_max_entries".into(),
                format!("{} is out of range 1..=4194304", s.fdb_max_entries),
            );
        }
        if !(10..=1_000_000).contains(&s.fdb_aging_secs) {
            err(
                "switch.fdb_aging_secs".into(),
                format!("{} is out of range 10..=1000000", s.fdb_aging_secs),
            );
        }
        if !s.pod_ring_size.is_power_of_two() || !(64..=16384).contains(&s.pod_ring_size) {
            err(
                "switch.pod_ring_size".into(),
                format!("{} is not a power of two in 64..=16384", s.pod_ring_size),
            );
        }
        let p = &self.pool;
        if ![2048, 4096].contains(&p.frame_size) {
            err("pool.frame_size".into(), format!("{} is not 2048 or 4096", p.frame_size));
        }
        if !(256..=1 << 20).contains(&p.frames) {
            err("pool.frames".into(), format!("{} is out of range 256..=1048576", p.frames));
        }
        if !(64..=1024).contains(&p.headroom) || !p.headroom.is_multiple_of(64) {
            err(
                "pool.headroom".into(),
                format!("{} is not a multiple of 64 in 64..=1024", p.headroom),
            );
        }
        if p.big_buffers > 4096 {
            err("pool.big_buffers".into(), format!("{} is out of range 0..=4096", p.big_buffers));
        }
        if self.workers.is_empty() {
            err("worker".into(), "at least one [[worker]] is needed".into());
        }
        let mut cores = HashSet::new();
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(c) = w.core {
                if !cores.insert(c) {
                    err(format!("worker[{i}].core"), format!("core {c} is given to two workers"));
                }
            }
            if w.spin_us > 1_000_000 {
                err(
                    format!("worker[{i}].spin_us"),
                    format!("{} is out of range 0..=1000000", w.spin_us),
                );
            }
        }
        let a = &self.api;
        if !a.socket.starts_with('/') || a.socket.len() > 100 {
            err(
                "api.socket".into(),
                format!("{:?} must be an absolute path of at most 100 bytes", a.socket),
            );
        }
        if u32::from_str_radix(&a.socket_mode, 8).map_or(true, |m| m > 0o777) {
            err(
                "api.socket_mode".into(),
                format!("{:?} is not an octal mode like \"0660\"", a.socket_mode),
            );
        }
        if !a.metrics.is_empty() && a.metrics_addr().is_none() {
            err(
                "api.metrics".into(),
                format!("{:?} is not an address like \"127.0.0.1:9477\"", a.metrics),
            );
        }
        if let Err(e) = a.gid() {
            err("api.group".into(), e);
        }
        if !self.state.dir.starts_with('/') {
            err("state.dir".into(), format!("{:?} must be an absolute path", self.state.dir));
        }
        if self.ports.len() > MAX_PORTS {
            err(
                "port".into(),
                format!("{} ports exceed the limit of {MAX_PORTS}", self.ports.len()),
            );
        }
        let mut names = HashSet::new();
        let mut ifaces = HashSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            let at = |f: &str| format!("port[{i}] ({:?}).{f}", port.name);
            if port.name.is_empty() || port.name.len() > 64 {
                err(
                    format!("port[{i}].name"),
                    format!("{:?} must be 1 to 64 characters", port.name),
                );
            } else if !names.insert(port.name.clone()) {
                err(at("name"), format!("{:?} is used by another port", port.name));
            }
            let ifname = port.interface();
            let valid_ifname =
                |n: &str| !n.is_empty() && n.len() <= 15 && !n.contains(['/', ' ', '\0']);
            if let Some(nic) = &port.attach {
                if port.kind != PortKind::Tap {
                    err(at("attach"), "only a tap port attaches to an interface".into());
                } else if port.pod_netns.is_some() || port.pod_interface.is_some() {
                    err(
                        at("attach"),
                        "an attached tap port is the switch's own: no pod_netns or pod_interface"
                            .into(),
                    );
                } else if port.persist || port.queues != 1 {
                    err(
                        at("attach"),
                        "an attached tap port has one queue and does not persist".into(),
                    );
                }
                if !valid_ifname(nic) {
                    err(at("attach"), format!("{nic:?} is not a valid Linux interface name (1-15 characters, no '/' or spaces)"));
                } else if nic == ifname {
                    err(
                        at("attach"),
                        format!("{nic:?} is the tap device's own name (set interface to another)"),
                    );
                } else if !ifaces.insert(nic.clone()) {
                    err(at("attach"), format!("{nic:?} is used by another port"));
                }
            }
            if port.kind == PortKind::Tap && port.attach.is_some() {
                if !valid_ifname(ifname) {
                    err(at("interface"), format!("{ifname:?} is not a valid Linux interface name (1-15 characters, no '/' or spaces)"));
                } else if !ifaces.insert(ifname.to_string()) {
                    err(at("interface"), format!("{ifname:?} is used by another port"));
                }
            } else if port.kind == PortKind::Tap {
                if port.pod_netns.is_none() || port.pod_interface.is_none() {
                    err(
                        at("type"),
                        "a tap port is created in the pod: it needs pod_netns and pod_interface"
                            .into(),
                    );
                }
                if port.interface.is_some() {
                    err(
                        at("interface"),
                        "a tap port's device is pod_interface in pod_netns; leave interface out"
                            .into(),
                    );
                }
                let key = format!("{:?}/{:?}", port.pod_netns, port.pod_interface);
                if !ifaces.insert(key) {
                    err(
                        at("pod_interface"),
                        "the same device in the same namespace is used by another port".into(),
                    );
                }
            } else if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ', '\0']) {
                err(at("interface"), format!("{ifname:?} is not a valid Linux interface name (1-15 characters, no '/' or spaces)"));
            } else if !ifaces.insert(ifname.to_string()) {
                err(at("interface"), format!("{ifname:?} is used by another port"));
            }
            if port.worker >= self.workers.len().max(1) {
                err(
                    at("worker"),
                    format!(
                        "{} is not a worker index (there are {} workers)",
                        port.worker,
                        self.workers.len()
                    ),
                );
            }
            if !port.ring_size.is_power_of_two() || !(64..=16384).contains(&port.ring_size) {
                err(
                    at("ring_size"),
                    format!("{} is not a power of two in 64..=16384", port.ring_size),
                );
            }
            if !(1..=64).contains(&port.queues) {
                err(at("queues"), format!("{} is out of range 1..=64", port.queues));
            }
            if !(68..=9000).contains(&port.mtu) {
                err(at("mtu"), format!("{} is out of range 68..=9000", port.mtu));
            } else if port.mtu as usize + 18 + p.headroom > p.frame_size {
                err(
                    at("mtu"),
                    format!(
                        "{} does not fit a {}-byte frame with {} bytes of headroom (at most {})",
                        port.mtu,
                        p.frame_size,
                        p.headroom,
                        p.frame_size.saturating_sub(18 + p.headroom)
                    ),
                );
            }
            let vlan_ok = |v: VlanId| vlan_is_valid(v);
            match port.mode {
                VlanModeName::Access => {
                    if let Some(v) = port.vlan.filter(|v| !vlan_ok(*v)) {
                        err(at("vlan"), format!("{v} is out of range 1..=4094"));
                    }
                    if !port.allowed_vlans.is_empty() {
                        err(
                            at("allowed_vlans"),
                            "only a trunk port has allowed_vlans (set mode = \"trunk\")".into(),
                        );
                    }
                    if port.native_vlan.is_some() {
                        err(
                            at("native_vlan"),
                            "only a trunk port has a native_vlan (set mode = \"trunk\")".into(),
                        );
                    }
                }
                VlanModeName::Trunk => {
                    if port.vlan.is_some() {
                        err(
                            at("vlan"),
                            "a trunk port uses allowed_vlans and native_vlan, not vlan".into(),
                        );
                    }
                    for v in port.allowed_vlans.iter().filter(|v| !vlan_ok(**v)) {
                        err(at("allowed_vlans"), format!("{v} is out of range 1..=4094"));
                    }
                    if let Some(v) = port.native_vlan.filter(|v| !vlan_ok(*v)) {
                        err(at("native_vlan"), format!("{v} is out of range 1..=4094"));
                    }
                    if port.allowed_vlans.is_empty() && port.native_vlan.is_none() {
                        err(
                            at("allowed_vlans"),
                            "a trunk port needs allowed_vlans or a native_vlan".into(),
                        );
                    }
                }
            }
            if port.pod_netns.is_some() != port.pod_interface.is_some() {
                err(at("pod_netns"), "pod_netns and pod_interface go together".into());
            }
            if port.kind == PortKind::Afpacket && port.queues != 1 {
                err(at("queues"), "an afpacket port has one queue".into());
            }
            if port.kind != PortKind::Tap && port.persist {
                err(
                    at("persist"),
                    "only a tap port can persist (the switch creates its device)".into(),
                );
            }
            if port.kind != PortKind::Afpacket && port.vnet_hdr.is_some() {
                err(at("vnet_hdr"), "only an afpacket port has vnet_hdr (tap ports always carry offloads; afxdp cannot)".into());
            }
            if port.kind != PortKind::Tap && port.tap_io.is_some() {
                err(at("tap_io"), "only a tap port has tap_io".into());
            }
        }
        self.validate_node(&mut err);
        super::qos::validate(self, &mut err);
        super::flows::validate(self, &mut err);
        errs
    }

    /// Checks `[node]` and `[[peer]]`: addresses that make sense together, the uplink a
    /// routable port, peers that neither overlap nor claim our own address.
    fn validate_node(&self, err: &mut impl FnMut(String, String)) {
        let Some(n) = &self.node else {
            if !self.peers.is_empty() {
                err(
                    "peer".into(),
                    "peers need a [node] table (this node's pod_cidr, uplink and underlay_ip)"
                        .into(),
                );
            }
            if !self.routes.is_empty() {
                err("route".into(), "routes need a [node] table (a routing node)".into());
            }
            return;
        };
        if n.pod_cidr.prefix_len() > 30 {
            err(
                "node.pod_cidr".into(),
                format!("{} leaves no room for pods (at most /30)", n.pod_cidr),
            );
        }
        let gw = n.gateway();
        if !n.pod_cidr.contains(gw) || gw == n.pod_cidr.addr() {
            err(
                "node.gateway".into(),
                format!("{gw} is not a host address of pod_cidr {}", n.pod_cidr),
            );
        }
        if !vlan_is_valid(n.pod_vlan) {
            err("node.pod_vlan".into(), format!("{} is out of range 1..=4094", n.pod_vlan));
        }
        match self.ports.iter().find(|p| p.name == n.uplink) {
            None => err("node.uplink".into(), format!("{:?} is not the name of a [[port]]", n.uplink)),
            Some(p) if (p.kind == PortKind::Tap && p.attach.is_none()) || p.mode != VlanModeName::Access || p.pod_netns.is_some() => err(
                "node.uplink".into(),
                format!("port {:?} must be an access-mode afxdp or afpacket port on the underlay interface, or a tap port attached to it", n.uplink),
            ),
            Some(_) => {}
        }
        let u = n.underlay_ip;
        if u.prefix_len == 0 || u.prefix_len > 31 || u.addr == u.network().addr() {
            err(
                "node.underlay_ip".into(),
                format!("{u} is not a host address with a subnet (e.g. 198.18.0.1/24)"),
            );
        }
        if n.pod_cidr.contains(u.addr) {
            err("node.underlay_ip".into(), format!("{} is inside pod_cidr {}", u.addr, n.pod_cidr));
        }
        if let Some(g) = n.underlay_gateway {
            if !u.network().contains(g) || g == u.addr {
                err(
                    "node.underlay_gateway".into(),
                    format!("{g} is not another address on the underlay subnet {}", u.network()),
                );
            }
        }
        if !(1..=crate::wire::vxlan::VNI_MAX).contains(&n.vxlan_vni) {
            err("node.vxlan_vni".into(), format!("{} is out of range 1..=16777215", n.vxlan_vni));
        }
        if n.vxlan_port == 0 {
            err("node.vxlan_port".into(), "0 is not a UDP port".into());
        }
        if let Some(m) = &n.router_mac {
            match m.parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast() => {}
                Ok(_) => err("node.router_mac".into(), format!("{m:?} is not a unicast address")),
                Err(e) => err("node.router_mac".into(), e.to_string()),
            }
        }
        if !(10..=86_400).contains(&n.neighbor_timeout_secs) {
            err(
                "node.neighbor_timeout_secs".into(),
                format!("{} is out of range 10..=86400", n.neighbor_timeout_secs),
            );
        }
        let mut names = HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            let at = |f: &str| format!("peer[{i}] ({:?}).{f}", p.name);
            if p.name.is_empty() || p.name.len() > 64 {
                err(format!("peer[{i}].name"), format!("{:?} must be 1 to 64 characters", p.name));
            } else if !names.insert(p.name.clone()) {
                err(at("name"), format!("{:?} is used by another peer", p.name));
            }
            if p.pod_cidr.overlaps(&n.pod_cidr) {
                err(
                    at("pod_cidr"),
                    format!("{} overlaps this node's pod_cidr {}", p.pod_cidr, n.pod_cidr),
                );
            }
            if let Some(o) = self.peers[..i].iter().find(|o| o.pod_cidr.overlaps(&p.pod_cidr)) {
                err(
                    at("pod_cidr"),
                    format!("{} overlaps peer {:?}'s pod_cidr {}", p.pod_cidr, o.name, o.pod_cidr),
                );
            }
            if p.underlay_ip == u.addr {
                err(
                    at("underlay_ip"),
                    format!(
                        "{} is this node's own underlay address (a VTEP cannot be ourselves)",
                        p.underlay_ip
                    ),
                );
            } else if let Err(why) = choose_mode(&p.spec(), u, n.underlay_gateway) {
                err(at("mode"), why);
            }
            if let Some(m) = &p.vtep_mac {
                match m.parse::<MacAddr>() {
                    Ok(mac) if mac.is_unicast() => {}
                    Ok(_) => err(at("vtep_mac"), format!("{m:?} is not a unicast address")),
                    Err(e) => err(at("vtep_mac"), e.to_string()),
                }
            }
        }
        self.validate_routes(n, err);
    }

    /// Checks `[[route]]`: a prefix outside every pod CIDR, given once, to exactly one of a
    /// gateway on the underlay subnet or a known peer.
    fn validate_routes(&self, n: &NodeSection, err: &mut impl FnMut(String, String)) {
        let mut seen: Vec<Ipv4Net> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |f: &str| format!("route[{i}] ({}).{f}", r.prefix);
            let prefix = match r.prefix.parse::<Ipv4Net>() {
                Ok(p) => p,
                Err(e) => {
                    err(format!("route[{i}].prefix"), format!("{:?}: {e}", r.prefix));
                    continue;
                }
            };
            // A shorter prefix over pod CIDRs is fine (the longest match wins); one inside a pod
            // CIDR would take that pod CIDR's traffic.
            let inside =
                |pods: &Ipv4Net| pods.overlaps(&prefix) && prefix.prefix_len() >= pods.prefix_len();
            if inside(&n.pod_cidr) {
                err(at("prefix"), format!("is inside this node's pod_cidr {}", n.pod_cidr));
            }
            if let Some(p) = self.peers.iter().find(|p| inside(&p.pod_cidr)) {
                err(at("prefix"), format!("is inside peer {:?}'s pod_cidr {}", p.name, p.pod_cidr));
            }
            if seen.contains(&prefix) {
                err(at("prefix"), "is given by another route".into());
            }
            seen.push(prefix);
            match (&r.via, &r.peer) {
                (Some(_), Some(_)) | (None, None) => {
                    err(at("via"), "give exactly one of via (an underlay gateway) and peer".into())
                }
                (Some(v), None) => match v.parse::<Ipv4Addr>() {
                    Ok(gw) if n.underlay_ip.network().contains(gw) && gw != n.underlay_ip.addr => {}
                    Ok(gw) => err(
                        at("via"),
                        format!(
                            "{gw} is not another address on the uplink's subnet {}",
                            n.underlay_ip.network()
                        ),
                    ),
                    Err(_) => err(at("via"), format!("{v:?} is not an IPv4 address")),
                },
                (None, Some(p)) => {
                    if !self.peers.iter().any(|o| &o.name == p) {
                        err(at("peer"), format!("{p:?} is not a [[peer]]"));
                    }
                }
            }
        }
    }

    /// The static routes, compiled (call on a validated configuration).
    pub fn static_routes(&self) -> Vec<StaticRoute> {
        self.routes
            .iter()
            .filter_map(|r| {
                let prefix = r.prefix.parse().ok()?;
                let via = match (&r.via, &r.peer) {
                    (Some(v), _) => StaticVia::Gateway(v.parse().ok()?),
                    (None, Some(p)) => StaticVia::Peer(p.clone()),
                    (None, None) => return None,
                };
                Some(StaticRoute { prefix, via })
            })
            .collect()
    }

    /// The routing state, with the uplink's port id given by `port_id` (the daemon's ids
    /// differ from the file's order after reloads). `None` without a `[node]` table.
    pub fn l3_table(
        &self,
        port_id: impl Fn(&str) -> Option<PortId>,
    ) -> Result<Option<L3Table>, String> {
        let Some(n) = &self.node else { return Ok(None) };
        let up = self
            .ports
            .iter()
            .find(|p| p.name == n.uplink)
            .ok_or_else(|| format!("node.uplink: {:?} is not a port", n.uplink))?;
        let id =
            port_id(&up.name).ok_or_else(|| format!("node.uplink: {:?} has no id", n.uplink))?;
        let peers: Vec<PeerSpec> = self.peers.iter().map(PeerSection::spec).collect();
        L3Table::build(
            n.name.clone(),
            n.router_mac(),
            n.pod_cidr,
            n.gateway(),
            n.pod_vlan,
            (id, up.vlan.unwrap_or(1), up.mtu),
            n.underlay_ip,
            n.underlay_gateway,
            (n.vxlan_vni, n.vxlan_port),
            &peers,
        )
        .and_then(|t| t.with_statics(&self.static_routes()))
        .map(Some)
        .map_err(|e| e.to_string())
    }

    /// The batch size, for choosing the worker's const generic.
    pub fn batch_size(&self) -> usize {
        self.switch.batch_size
    }

    /// The snapshot this configuration compiles to (port `i` gets id `i`).
    pub fn snapshot(&self, generation: u64) -> Snapshot {
        let mut s = Snapshot::build(
            generation,
            self.ports.iter().enumerate().map(|(i, p)| (i as PortId, p.entry())),
        )
        .expect("a validated configuration compiles");
        for (i, p) in self.ports.iter().enumerate() {
            s.set_owner(i as PortId, p.worker as u16);
        }
        let l3 = self
            .l3_table(|name| self.ports.iter().position(|p| p.name == name).map(|i| i as PortId))
            .expect("a validated configuration compiles");
        s.set_l3(l3.map(std::sync::Arc::new));
        let port_id =
            |name: &str| self.ports.iter().position(|p| p.name == name).map(|i| i as PortId);
        let class_id = |name: &str| {
            let i = self.qos_classes.iter().position(|c| c.name == name).unwrap_or(0);
            crate::qos::ClassId(i as u32 + 1)
        };
        for (id, plan) in super::qos::qos_plans(self, port_id, class_id) {
            s.set_qos(id, Some(std::sync::Arc::new(plan)));
        }
        for id in self.guarded_ports(port_id) {
            s.set_guarded(id, true);
        }
        s.set_guard(self.ddos_guard.as_ref().map(|g| g.guard_config(GUARD_SEED)));
        s.set_acl(super::flows::acl_table(self, port_id, |_| Default::default()));
        s
    }

    /// The ports whose ingress goes through the DDoS guard: with a `[ddos_guard]`, the
    /// `[node]` uplink and the ports with `ddos_guard = true`.
    pub fn guarded_ports(&self, port_id: impl Fn(&str) -> Option<PortId>) -> Vec<PortId> {
        if self.ddos_guard.is_none() {
            return Vec::new();
        }
        let uplink = self.node.as_ref().map(|n| n.uplink.as_str());
        self.ports
            .iter()
            .filter(|p| p.ddos_guard || Some(p.name.as_str()) == uplink)
            .filter_map(|p| port_id(&p.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [switch]
        batch_size = 64
        [[worker]]
        core = 1
        [[port]]
        name = "pod-a"
        interface = "vsp-a"
        vlan = 10
        [[port]]
        name = "uplink"
        mode = "trunk"
        allowed_vlans = [10, 20]
        native_vlan = 1
    "#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.switch.batch_size, 64);
        assert_eq!(c.switch.fdb_aging_secs, 300);
        assert_eq!(c.workers[0].idle, IdlePolicy::Adaptive);
        assert_eq!(c.ports[0].interface(), "vsp-a");
        assert_eq!(c.ports[1].interface(), "uplink");
        assert_eq!(c.ports[0].kind, PortKind::Afxdp);
        let s = c.snapshot(1);
        assert_eq!(s.flood_members(10), &[0, 1]);
        assert_eq!(s.flood_members(1), &[1]);
    }

    #[test]
    fn an_empty_file_is_a_switch_with_no_ports() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.workers.len(), 1);
        assert!(c.ports.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_types_are_syntax_errors_naming_the_key() {
        let e = Config::parse("[switch]\nbatchsize = 32\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("batchsize"), "{e}");
        let e = Config::parse("[[port]]\nname = \"a\"\nvlan = \"ten\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("vlan"), "{e}");
        let e = Config::parse("[[port]]\nname = \"a\"\ntype = \"tap\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("tap"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_field_and_value() {
        let text = r#"
            [switch]
            batch_size = 48
            [[worker]]
            core = 1
            [[worker]]
            core = 1
            [[port]]
            name = "a"
            vlan = 4095
            [[port]]
            name = "a"
            interface = "this-name-is-too-long"
            worker = 5
            [[port]]
            name = "t"
            mode = "trunk"
            [[port]]
            name = "m"
            mtu = 9000
        "#;
        let e = Config::parse(text, "t.toml").unwrap_err();
        let want = [
            "switch.batch_size: 48 is not one of 32, 64, 128, 256",
            "worker[1].core: core 1 is given to two workers",
            "port[0] (\"a\").vlan: 4095 is out of range 1..=4094",
            "port[1] (\"a\").name: \"a\" is used by another port",
            "port[1] (\"a\").interface: \"this-name-is-too-long\" is not a valid Linux interface name",
            "port[1] (\"a\").worker: 5 is not a worker index (there are 2 workers)",
            "port[2] (\"t\").allowed_vlans: a trunk port needs allowed_vlans or a native_vlan",
            "port[3] (\"m\").mtu: 9000 does not fit a 2048-byte frame",
        ];
        e.assert_fields(&want);
    }

    const NODE: &str = r#"
        [[port]]
        name = "uplink"
        interface = "eth1"
        [[port]]
        name = "pod-a"
        interface = "vsp-a"
        [node]
        name = "n1"
        pod_cidr = "10.244.1.0/24"
        uplink = "uplink"
        underlay_ip = "198.18.0.1/24"
        underlay_gateway = "198.18.0.254"
        [[peer]]
        name = "n2"
        underlay_ip = "198.18.0.2"
        pod_cidr = "10.244.2.0/24"
        [[peer]]
        name = "n3"
        underlay_ip = "198.19.0.3"
        pod_cidr = "10.244.3.0/24"
        vtep_mac = "02:00:00:00:00:03"
    "#;

    #[test]
    fn a_node_compiles_to_routes_and_peer_modes() {
        let c = Config::parse(NODE, "t.toml").unwrap();
        let n = c.node.as_ref().unwrap();
        assert_eq!(n.gateway(), "10.244.1.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(n.router_mac(), MacAddr([0x0a, 0x58, 198, 18, 0, 1]));
        assert_eq!((n.vxlan_vni, n.vxlan_port), (1, 8472));
        let s = c.snapshot(1);
        let t = s.l3().expect("routing state");
        assert_eq!(t.uplink, 0);
        assert_eq!(t.peers[0].mode, crate::tables::l3::PeerMode::Direct);
        assert_eq!(t.peers[1].mode, crate::tables::l3::PeerMode::Vxlan);
        assert_eq!(t.peers[1].vtep_mac, MacAddr([2, 0, 0, 0, 0, 3]));
        // The uplink carries no pod-network floods.
        assert_eq!(s.flood_members(1), &[1]);
    }

    #[test]
    fn a_tap_uplink_attaches_to_one_nic_and_nothing_else_does() {
        let node = "[node]\npod_cidr = \"10.244.1.0/24\"\nuplink = \"uplink\"\nunderlay_ip = \"198.18.0.1/24\"\n";
        let good = format!(
            "[[port]]\nname = \"uplink\"\ntype = \"tap\"\ninterface = \"vsw-up0\"\nattach = \"eth1\"\n{node}"
        );
        let c = Config::parse(&good, "t.toml").unwrap();
        assert_eq!(c.ports[0].attach.as_deref(), Some("eth1"));
        assert!(c.snapshot(1).l3().is_some());
        let bad = r#"
            [[port]]
            name = "a"
            interface = "eth2"
            attach = "eth1"
            [[port]]
            name = "b"
            type = "tap"
            pod_netns = "/var/run/netns/x"
            pod_interface = "eth0"
            attach = "eth3"
            [[port]]
            name = "c"
            type = "tap"
            interface = "eth4"
            attach = "eth4"
            [[port]]
            name = "d"
            type = "tap"
            attach = "eth2"
            [[port]]
            name = "e"
            type = "tap"
            attach = "this-name-is-far-too-long"
        "#;
        let e = Config::parse(bad, "t.toml").unwrap_err();
        let want = [
            "port[0] (\"a\").attach: only a tap port attaches to an interface",
            "port[1] (\"b\").attach: an attached tap port is the switch's own",
            "port[2] (\"c\").attach: \"eth4\" is the tap device's own name",
            "port[3] (\"d\").attach: \"eth2\" is used by another port",
            "port[4] (\"e\").attach: \"this-name-is-far-too-long\" is not a valid Linux interface name",
        ];
        e.assert_fields(&want);
        // The uplink must be a tap port attached to the NIC, not a pod's.
        let pod_uplink = format!(
            "[[port]]\nname = \"uplink\"\ntype = \"tap\"\npod_netns = \"/x\"\npod_interface = \"eth0\"\n{node}"
        );
        let e = Config::parse(&pod_uplink, "t.toml").unwrap_err();
        assert!(e.to_string().contains("or a tap port attached to it"), "{e}");
    }

    #[test]
    fn static_routes_compile_and_bad_ones_are_refused_by_field() {
        use crate::tables::l3::{NextHop, Route};
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let good = format!(
            "{NODE}
            [[route]]
            prefix = \"0.0.0.0/0\"
            via = \"198.18.0.254\"
            [[route]]
            prefix = \"10.96.0.0/12\"
            peer = \"n3\"
            [[route]]
            prefix = \"10.244.0.0/16\"
            via = \"198.18.0.253\"
            "
        );
        let c = Config::parse(&good, "t.toml").unwrap();
        let s = c.snapshot(1);
        let t = s.l3().unwrap();
        assert_eq!(t.routes.len(), 6);
        // Pod CIDRs win over shorter routes; the service range goes to n3 in its mode.
        assert_eq!(t.next_hop(ip("10.244.2.7"), false).1, NextHop::Uplink(ip("198.18.0.2")));
        assert_eq!(t.next_hop(ip("10.244.1.7"), false).1, NextHop::Pod);
        assert_eq!(t.next_hop(ip("10.244.9.7"), false).1, NextHop::Uplink(ip("198.18.0.253")));
        assert_eq!(t.next_hop(ip("8.8.8.8"), false).1, NextHop::Uplink(ip("198.18.0.254")));
        assert_eq!(t.next_hop(ip("8.8.8.8"), false).0.map(|r| r.1), Some(Route::Gateway(0)));
        assert_eq!(t.next_hop(ip("10.100.0.1"), false).1, NextHop::Tunnel(1, ip("198.18.0.254")));
        // Without the default route, only the switch's own packets may use the gateway.
        let c = Config::parse(NODE, "t.toml").unwrap();
        let s = c.snapshot(1);
        let t = s.l3().unwrap();
        assert_eq!(t.next_hop(ip("8.8.8.8"), false).1, NextHop::Unreachable);
        assert_eq!(t.next_hop(ip("8.8.8.8"), true).1, NextHop::Uplink(ip("198.18.0.254")));

        let bad = format!(
            "{NODE}
            [[route]]
            prefix = \"10.244.1.0/24\"
            via = \"198.18.0.254\"
            [[route]]
            prefix = \"10.244.2.128/25\"
            peer = \"n2\"
            [[route]]
            prefix = \"10.96.0.0/12\"
            via = \"198.19.0.1\"
            [[route]]
            prefix = \"10.96.0.0/12\"
            peer = \"n9\"
            [[route]]
            prefix = \"192.168.0.0/16\"
            [[route]]
            prefix = \"192.168.1.0/33\"
            via = \"198.18.0.1\"
            [[route]]
            prefix = \"172.16.0.0/12\"
            via = \"198.18.0.1\"
            "
        );
        let e = Config::parse(&bad, "t.toml").unwrap_err();
        let want = [
            "route[0] (10.244.1.0/24).prefix: is inside this node's pod_cidr 10.244.1.0/24",
            "route[1] (10.244.2.128/25).prefix: is inside peer \"n2\"'s pod_cidr 10.244.2.0/24",
            "route[2] (10.96.0.0/12).via: 198.19.0.1 is not another address on the uplink's subnet 198.18.0.0/24",
            "route[3] (10.96.0.0/12).prefix: is given by another route",
            "route[3] (10.96.0.0/12).peer: \"n9\" is not a [[peer]]",
            "route[4] (192.168.0.0/16).via: give exactly one of via (an underlay gateway) and peer",
            "route[5].prefix: \"192.168.1.0/33\"",
            "route[6] (172.16.0.0/12).via: 198.18.0.1 is not another address",
        ];
        e.assert_fields(&want);
        let e = Config::parse("[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"1.2.3.4\"\n", "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("routes need a [node] table"), "{e}");
    }

    #[test]
    fn bad_node_and_peers_are_refused_naming_field_and_value() {
        let text = r#"
            [[port]]
            name = "uplink"
            interface = "eth1"
            mode = "trunk"
            allowed_vlans = [5]
            [node]
            pod_cidr = "10.244.1.0/24"
            gateway = "10.244.2.1"
            uplink = "uplink"
            underlay_ip = "198.18.0.1/24"
            vxlan_vni = 16777216
            router_mac = "01:00:5e:00:00:01"
            [[peer]]
            name = "n2"
            underlay_ip = "198.18.0.2"
            pod_cidr = "10.244.1.128/25"
            [[peer]]
            name = "n3"
            underlay_ip = "198.18.0.1"
            pod_cidr = "10.244.3.0/24"
            [[peer]]
            name = "n4"
            underlay_ip = "198.19.0.4"
            pod_cidr = "10.244.4.0/24"
            [[peer]]
            name = "n5"
            underlay_ip = "198.18.0.5"
            pod_cidr = "10.244.4.0/23"
            [[peer]]
            name = "n2"
            underlay_ip = "198.18.0.6"
            pod_cidr = "10.244.6.0/24"
            mode = "direct"
            vtep_mac = "zz"
        "#;
        let e = Config::parse(text, "t.toml").unwrap_err();
        let want = [
            "node.gateway: 10.244.2.1 is not a host address of pod_cidr 10.244.1.0/24",
            "node.uplink: port \"uplink\" must be an access-mode",
            "node.vxlan_vni: 16777216 is out of range 1..=16777215",
            "node.router_mac: \"01:00:5e:00:00:01\" is not a unicast address",
            "peer[0] (\"n2\").pod_cidr: 10.244.1.128/25 overlaps this node's pod_cidr 10.244.1.0/24",
            "peer[1] (\"n3\").underlay_ip: 198.18.0.1 is this node's own underlay address",
            "peer[2] (\"n4\").mode: 198.19.0.4 is not on the uplink's subnet 198.18.0.0/24 and [node] has no underlay_gateway",
            "peer[3] (\"n5\").pod_cidr: 10.244.4.0/23 overlaps peer \"n4\"'s pod_cidr 10.244.4.0/24",
            "peer[4] (\"n2\").name: \"n2\" is used by another peer",
            "peer[4] (\"n2\").vtep_mac: invalid MAC address \"zz\"",
        ];
        e.assert_fields(&want);
        // A bad prefix is a syntax error naming the key.
        let e = Config::parse("[node]\npod_cidr = \"10.244.1.5/24\"\nuplink = \"u\"\nunderlay_ip = \"198.18.0.1/24\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("pod_cidr") && e.to_string().contains("host bits"), "{e}");
        let e = Config::parse(
            "[[peer]]\nname = \"n2\"\nunderlay_ip = \"198.18.0.2\"\npod_cidr = \"10.244.2.0/24\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[node]"), "{e}");
    }
}

#[cfg(test)]
mod example_files {
    use super::*;

    #[test]
    fn the_example_configurations_are_valid() {
        for (name, text) in [
            ("config/vswitchd.toml", include_str!("../../../config/vswitchd.toml")),
            ("config/vswitchd-node.toml", include_str!("../../../config/vswitchd-node.toml")),
        ] {
            let c = Config::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            c.snapshot(1);
        }
        let c = Config::parse(include_str!("../../../config/vswitchd-node.toml"), "node").unwrap();
        let s = c.snapshot(1);
        let modes: Vec<&str> = s.l3().unwrap().peers.iter().map(|p| p.mode.name()).collect();
        assert_eq!(modes, ["direct", "vxlan", "vxlan"]);
        assert_eq!(s.l3().unwrap().statics.len(), 2);
    }
}
