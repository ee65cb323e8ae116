//! The request and response types, declared once for the daemon, `vswitchctl` and the CNI shim.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One port of the switch, as `GET /v1/ports` and `GET /v1/ports/{name}` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The switch's port number.
    pub id: u16,
    /// The port's name (for a pod: the name the CNI plugin gave it).
    pub name: String,
    /// The kernel interface the port is attached to.
    pub interface: String,
    /// How packets move, e.g. `"afxdp native copy"`, `"afpacket"`, `"ring"`.
    pub kind: String,
    /// The worker that polls this port.
    pub worker: usize,
    /// Number of queues polled.
    pub queues: u16,
    /// Administrative state.
    pub up: bool,
    /// `"access"` or `"trunk"`.
    pub mode: String,
    /// The access VLAN (access ports only).
    pub vlan: Option<u16>,
    /// VLANs a trunk port carries tagged.
    pub allowed_vlans: Vec<u16>,
    /// The VLAN a trunk port carries untagged, if any.
    pub native_vlan: Option<u16>,
    /// MTU in bytes.
    pub mtu: u16,
    /// Counters.
    pub stats: PortStats,
}

/// Per-port counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped, all reasons together.
    pub dropped: u64,
    /// Drops by reason name (see `GET /v1/drop-reasons`); only nonzero counters.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

/// One forwarding-database entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The VLAN the MAC was learned (or configured) on.
    pub vlan: u16,
    /// The MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The port name it forwards to.
    pub port: String,
    /// Configured (never ages) rather than learned.
    pub is_static: bool,
    /// Seconds since the MAC was last seen (0 for static entries).
    pub age_secs: u64,
}

/// One VLAN and its member ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanInfo {
    /// The VLAN id.
    pub vlan: u16,
    /// Names of the ports that carry it (access, trunk or native).
    pub ports: Vec<String>,
}

/// One poll-mode worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's number.
    pub id: usize,
    /// The CPU core it is pinned to, if pinned.
    pub core: Option<usize>,
    /// Idle policy, e.g. `"busy-poll"`, `"adaptive"`.
    pub idle: String,
    /// Names of the ports it polls.
    pub ports: Vec<String>,
    /// Loop iterations since start.
    pub iterations: u64,
    /// Packets processed since start.
    pub packets: u64,
    /// Share of iterations that found work, in percent.
    pub busy_percent: f64,
    /// Average nanoseconds spent per packet, when there were packets.
    pub ns_per_packet: Option<f64>,
    /// Free frames in the worker's buffer pool.
    pub pool_free: usize,
    /// Total frames in the worker's buffer pool.
    pub pool_frames: usize,
}

/// The daemon's overall state, `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Number of ports.
    pub ports: usize,
    /// Number of workers.
    pub workers: usize,
    /// Entries in the FDB.
    pub fdb_entries: usize,
    /// The FDB's size limit.
    pub fdb_max: usize,
}

/// A drop reason and what it means, so a counter can be explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropReasonInfo {
    /// The name used as key in [`PortStats::drops`].
    pub name: String,
    /// One sentence on what causes it.
    pub help: String,
}

/// Changes to one port, `PATCH /v1/ports/{name}`; fields left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortUpdate {
    /// Administrative state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
    /// `"access"` or `"trunk"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The access VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The VLANs a trunk carries tagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_vlans: Option<Vec<u16>>,
    /// The VLAN a trunk carries untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_vlan: Option<u16>,
    /// MTU in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// A static FDB entry to add, `POST /v1/fdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMac {
    /// The VLAN.
    pub vlan: u16,
    /// The MAC address, as the operator wrote it (the daemon parses it).
    pub mac: String,
    /// The port name to forward it to.
    pub port: String,
}

/// A packet to trace, `POST /v1/trace`: the port it arrives on, and either the frame in hex or
/// fields the daemon builds a frame from (left-out fields take defaults: UDP, ports 0, 60
/// bytes). The daemon checks every field; its error names the one at fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The name of the port the packet arrives on.
    pub in_port: String,
    /// The whole frame as hex digits (separators `:`, `-` and spaces allowed); excludes the
    /// fields below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_hex: Option<String>,
    /// Source MAC address (required without `frame_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    /// Destination MAC address (required without `frame_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
    /// The VID of an 802.1Q tag on the frame; untagged if left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The EtherType; by default that of the IP addresses, or 0x88b5 without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<u16>,
    /// Source IPv4 or IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// Destination IP address, of the same version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// `tcp`, `udp` (the default with IP addresses) or `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// TCP or UDP source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// TCP or UDP destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// The frame length in bytes (tag included, FCS not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
}

/// One pipeline stage's decision in a [`TraceResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// `parse`, `vlan`, `l2` or `output`.
    pub stage: String,
    /// What the stage saw and decided.
    pub detail: String,
}

/// What the switch would do with a traced packet; nothing was sent or learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    /// The frame traced, as hex.
    pub frame_hex: String,
    /// Every stage the packet went through, in order.
    pub steps: Vec<TraceStep>,
    /// The final action, e.g. `output to uplink (push VID 10)`, `flood on VLAN 10 to ...`,
    /// `drop in vlan: vlan_tagged_on_access (...)`.
    pub verdict: String,
    /// Names of the ports a copy would leave on.
    pub outputs: Vec<String>,
    /// The drop reason's name (see `GET /v1/drop-reasons`) when the packet is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
}

/// Traffic limits for a pod, as the CNI `bandwidth` capability gives them
/// (`runtimeConfig.bandwidth`): rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// Rate of traffic into the pod, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_rate: Option<u64>,
    /// Burst of traffic into the pod, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<u64>,
    /// Rate of traffic out of the pod, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_rate: Option<u64>,
    /// Burst of traffic out of the pod, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<u64>,
    /// Guaranteed rate of traffic out of the pod, bits/s (pod annotation
    /// `vswitch.io/egress-guaranteed-rate`): held for the pod under contention on the uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_guaranteed_rate: Option<u64>,
    /// Borrowing priority of the pod's egress, 0 (first) to 7 (`vswitch.io/egress-priority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_priority: Option<u8>,
    /// Packets per second out of the pod (`vswitch.io/egress-pps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_pps: Option<u64>,
    /// The class the pod's egress class hangs under, a group in the tree of the uplink's
    /// root (`vswitch.io/egress-qos-group`, e.g. one per namespace made with `vswitchctl qos
    /// add`); the root itself when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_group: Option<String>,
}

/// A pod wired to the switch by the CNI plugin, `POST /v1/pods`, and as `GET /v1/pods` lists
/// it. The daemon turns off the pod interface's tx checksum offload (entering `netns`),
/// creates an AF_XDP port on `host_interface` in VLAN `vlan`, and keeps the attachment across
/// its restarts. An attachment is identified by `container_id` and `ifname`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodAttachment {
    /// The container (sandbox) id, `CNI_CONTAINERID`.
    pub container_id: String,
    /// The interface name inside the pod, `CNI_IFNAME`.
    pub ifname: String,
    /// The pod's network namespace (a path), `CNI_NETNS`.
    pub netns: String,
    /// The host end of the veth, in the switch's namespace.
    pub host_interface: String,
    /// The access VLAN, from the network configuration (default 1).
    pub vlan: u16,
    /// MTU in bytes of both veth ends.
    pub mtu: u16,
    /// The pod interface's MAC address, when the runtime asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The pod's addresses in CIDR notation, as IPAM assigned them.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The pod's Kubernetes namespace, `K8S_POD_NAMESPACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The pod's name, `K8S_POD_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's UID, `K8S_POD_UID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The pod's cgroup, `runtimeConfig.cgroupPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    /// Traffic limits, `runtimeConfig.bandwidth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// `"tap"`: the switch creates the pod's interface (`ifname` in `netns`) itself as a TAP
    /// device with offloads, persistent across vswitchd restarts, and `host_interface` is
    /// empty; absent or `"afxdp"`: `host_interface` is the host end of the pod's veth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_type: Option<String>,
}

/// This node's place in the multi-node pod network, `GET /v1/node`: the `[node]` table as the
/// daemon compiled it (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// This node's pods, e.g. `10.244.1.0/24`.
    pub pod_cidr: String,
    /// The pods' default gateway, answered by the switch, e.g. `10.244.1.1`.
    pub gateway: String,
    /// The gateway's MAC, also the source MAC of what the switch sends on the uplink.
    pub router_mac: String,
    /// The VLAN of the pod ports the gateway serves.
    pub pod_vlan: u16,
    /// This node's underlay address with its subnet, e.g. `198.18.0.1/24`.
    pub underlay_ip: String,
    /// The next hop to peers off the underlay subnet, if configured.
    pub underlay_gateway: Option<String>,
    /// The name of the port on the underlay interface.
    pub uplink: String,
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The VXLAN UDP destination port.
    pub vxlan_port: u16,
}

/// Another node of the pod network, as `GET /v1/peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's name.
    pub name: String,
    /// Its underlay address, e.g. `198.18.0.2`.
    pub underlay_ip: String,
    /// Its pods, e.g. `10.244.2.0/24`.
    pub pod_cidr: String,
    /// How its pods are reached now: `direct` (the packet as is, to its MAC on the shared
    /// underlay subnet) or `vxlan` (encapsulated to its underlay address).
    pub mode: String,
    /// The mode asked for in the configuration: `auto`, `direct` or `vxlan`.
    pub configured: String,
    /// Why `mode` was chosen, e.g. `auto: 198.18.0.2 is on the uplink's subnet 198.18.0.0/24`.
    pub reason: String,
    /// The inner destination MAC of VXLAN packets to it.
    pub vtep_mac: String,
    /// The underlay address whose MAC packets to it are sent to: the peer itself on our
    /// subnet, else the underlay gateway.
    pub next_hop: String,
    /// The next hop's MAC, once resolved by ARP (from the neighbour table).
    pub next_hop_mac: Option<String>,
}

/// A peer to add or replace, `PUT /v1/peers/{name}` (the name is in the path). The daemon
/// checks it with the whole configuration; its error names the field and value at fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// The peer's underlay address, e.g. `198.18.0.2`.
    pub underlay_ip: String,
    /// The peer's pods, e.g. `10.244.2.0/24`.
    pub pod_cidr: String,
    /// `auto` (the default: direct on the uplink's subnet, VXLAN otherwise), `direct` or
    /// `vxlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The inner destination MAC of VXLAN packets to the peer (a Flannel node's `flannel.1`
    /// MAC); by default `0a:58` followed by its underlay address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

/// A static route: `[[route]]` in the configuration and `POST /v1/routes`. A prefix outside
/// every pod CIDR, sent either to a gateway on the underlay subnet (`via`) or to a peer node
/// (`peer`, in the mode chosen for that peer); exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The destination prefix, e.g. `10.96.0.0/12` or `0.0.0.0/0`.
    pub prefix: String,
    /// A gateway on the underlay subnet, e.g. `198.18.0.254`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// A peer node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// A port to add, `POST /v1/ports`: the fields of a `[[port]]` section of the configuration
/// (see `config/vswitchd.toml`), checked by the daemon exactly as the file's are. Kept as a
/// JSON object so that the daemon's schema stays the one source of the fields and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortSpec(pub serde_json::Map<String, serde_json::Value>);

/// One route of the node's table, as `GET /v1/routes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The destination prefix, e.g. `10.244.2.0/24`.
    pub prefix: String,
    /// `local` (this node's pods) or the name of the peer whose pods they are.
    pub via: String,
    /// `local`, `direct` or `vxlan`.
    pub mode: String,
    /// The underlay address packets are sent to (a peer's route only).
    pub next_hop: Option<String>,
    /// Where the route comes from: `pod-cidr` (this node's or a peer's) or `static`.
    #[serde(default)]
    pub origin: String,
}

/// One resolved neighbour (a local pod, a peer or the underlay gateway), `GET /v1/neighbors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborInfo {
    /// The IPv4 address.
    pub ip: String,
    /// Its MAC address.
    pub mac: String,
    /// The name of the port it is behind.
    pub port: String,
}

/// One shaped port's QoS classes, `GET /v1/qos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosPortInfo {
    /// The port whose egress the classes schedule.
    pub port: String,
    /// Packets queued in its scheduler.
    pub backlog: u64,
    /// Its classes, root first.
    pub classes: Vec<QosClassInfo>,
}

/// One QoS class of a shaped port: its settings and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosClassInfo {
    /// The class's name (`default`: the leaf the switch adds for unclassified traffic).
    pub name: String,
    /// The parent class; none for the root.
    pub parent: Option<String>,
    /// The ports whose traffic is this class.
    pub ports: Vec<String>,
    /// Guaranteed rate, bits per second.
    pub rate_bps: u64,
    /// Ceiling, bits per second.
    pub ceil_bps: u64,
    /// Burst, bytes: the depth of the ceiling's bucket.
    pub burst_bytes: u64,
    /// The depth of the guarantee's bucket, bytes: as long at the rate as the burst lasts at
    /// the ceiling, at least 15 000 (or the burst, if smaller).
    #[serde(default)]
    pub rate_burst_bytes: u64,
    /// Borrowing priority, 0 (first) to 7.
    pub priority: u8,
    /// Share of spare capacity among borrowers of the same priority.
    pub weight: u32,
    /// Packets-per-second limit.
    pub pps: Option<u64>,
    /// Minimum bytes charged per packet.
    pub mpu: u32,
    /// `shape` or `police`.
    pub mode: String,
    /// Queue bound, packets.
    pub queue_limit: u32,
    /// Bytes sent by (or, for an inner class, through) the class.
    pub sent_bytes: u64,
    /// Packets sent by or through the class.
    pub sent_packets: u64,
    /// Packets in its queue now.
    pub queued_packets: u64,
    /// Bytes in its queue now.
    pub queued_bytes: u64,
    /// Drops by reason: `queue_full`, `policed`, `pps_limit` (the scheduler's), and
    /// `local_queue_full`, `local_policed`, `local_pps_limit` (the local limiter's, on the
    /// class's ports' traffic that the scheduler does not see: to other pods of the node, out
    /// of unshaped ports).
    pub drops: BTreeMap<String, u64>,
    /// Bytes sent above its guarantee, on an ancestor's spare capacity.
    pub borrowed_bytes: u64,
    /// Bytes it lent to borrowing descendants.
    pub lent_bytes: u64,
}

/// A change to a QoS class, `PATCH /v1/qos/classes/{name}`; absent fields stay. Rates are
/// bits per second as in the configuration file (`"300M"`, `"1G"`, `"500k"`, digits). The
/// daemon validates it with the whole configuration and applies it live (the class keeps its
/// queue) or refuses it naming the class and field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosClassUpdate {
    /// Guaranteed rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceil: Option<String>,
    /// Priority, 0 to 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Packets-per-second limit; `none` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps: Option<String>,
    /// Burst of the pps limit, packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps_burst: Option<u64>,
    /// Burst of the ceiling's bucket, bytes (the guarantee's holds as long at the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Minimum bytes charged per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpu: Option<u32>,
    /// Queue bound of a leaf, packets (a bound lowered below the backlog keeps the queue
    /// and admits nothing until it drains below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_limit: Option<u32>,
    /// `shape` (delay what is above the limits) or `police` (drop it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A QoS class to add, `POST /v1/qos/classes`: the fields of a `[[qos_class]]` section of
/// the configuration (see `config/vswitchd.toml`), checked by the daemon exactly as the
/// file's are. Kept as a JSON object so that the daemon's schema stays the one source of the
/// fields and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QosClassSpec(pub serde_json::Map<String, serde_json::Value>);

/// A packet capture on one port, `POST /v1/capture`. The request returns when a bound is
/// reached: `count` packets (at most 100 000), `seconds` (at most 60; 60 when absent), or 32 MiB
/// of captured bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// The port's name.
    pub port: String,
    /// `rx` (as received), `tx` (as sent) or `both` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Stop after this many packets, 1 to 100 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this many seconds, 1 to 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Bytes kept of each packet, 1 to 65535 (256 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
}

/// What a capture took, in the order the packets were seen (per direction).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureResult {
    /// The port's name.
    pub port: String,
    /// `rx`, `tx` or `both`.
    pub direction: String,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Why it stopped: `count`, `time`, `size` or `port removed`.
    pub stopped: String,
    /// Packets the worker could not record because the capture ring was full (the traffic
    /// itself was not affected).
    pub not_captured: u64,
    /// The packets.
    pub packets: Vec<CapturedPacket>,
}

/// One captured packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// When the worker saw it, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Its length on the wire.
    pub len: u32,
    /// Its first `min(len, snaplen)` bytes, in hex.
    pub data_hex: String,
}

/// One entry of a worker's exact-match L2 flow cache, `GET /v1/flow-cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFlow {
    /// The worker whose cache holds it.
    pub worker: usize,
    /// The port the flow comes in on.
    pub in_port: String,
    /// Its VLAN inside the switch.
    pub vlan: u16,
    /// Source MAC.
    pub src_mac: String,
    /// Destination MAC.
    pub dst_mac: String,
    /// The cached decision: `output:PORT`, `flood` or `drop:REASON`.
    pub action: String,
    /// Packets that took the decision from the cache since it was cached.
    pub hits: u64,
}

/// A flow rule: a match and what to do with matching packets, in the configuration as
/// `[[flow]]` and through `POST /v1/flows`. Absent match fields match anything; among the
/// rules that match a packet, the one of highest priority acts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    /// The rule's name (what `DELETE /v1/flows/{name}` takes).
    pub name: String,
    /// Higher first, 0 to 65535.
    #[serde(default)]
    pub priority: u16,
    /// Ingress port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_port: Option<String>,
    /// VLAN inside the switch, 1 to 4094.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Source MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    /// Destination MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
    /// EtherType (after any VLAN tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<u16>,
    /// IPv4 source, an address or a prefix (`10.0.0.0/8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// IPv4 destination, an address or a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// IP protocol: `tcp`, `udp`, `icmp` or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// TCP or UDP source port (needs `proto` tcp or udp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// TCP or UDP destination port (needs `proto` tcp or udp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// `drop`, `normal` (switch as usual, after `set_vlan` and `meter_*`) or `output`.
    pub action: String,
    /// With `action = "output"`: the port to send to, bypassing L2 and L3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Move the packet to this VLAN, 1 to 4094.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_vlan: Option<u16>,
    /// Police matching packets to this many packets per second (per worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_pps: Option<u64>,
    /// Police matching packets to this many bits per second (per worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_bps: Option<u64>,
}

/// A flow rule with its counters, `GET /v1/flows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRuleInfo {
    /// The rule.
    pub rule: FlowRule,
    /// Packets it matched (all workers), metered-out ones included.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packets its meter dropped.
    pub meter_drops: u64,
}

/// What kind of failure an [`ApiError`] is; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The named port, MAC, VLAN... does not exist (404).
    NotFound,
    /// The request is malformed or a value is out of range (400).
    Invalid,
    /// The request contradicts the current state, e.g. a MAC already static on another port (409).
    Conflict,
    /// The daemon cannot serve it now, e.g. still starting or shutting down (503).
    Unavailable,
    /// A bug or an unexpected failure in the daemon (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Invalid => 400,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind for an HTTP error status, for replies whose body carries no kind.
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            503 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Internal,
        }
    }

    /// The name used on the wire: `not_found`, `invalid`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what kind of failure, and a message that names the problem
/// (`unknown port "pod-x"`, `VLAN 5000 out of range 1..=4094`).
///
/// On the wire: the HTTP status of [`ErrorKind::http_status`] and the body
/// `{"error": {"kind": "not_found", "message": "unknown port \"pod-x\""}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Invalid, message)
    }

    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Conflict, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// The JSON body of every error reply: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// Everything a client can ask the daemon; each variant is one route (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `GET /v1/status` -> [`Reply::Status`].
    Status,
    /// `GET /v1/ports` -> [`Reply::Ports`].
    ListPorts,
    /// `GET /v1/ports/{name}` -> [`Reply::Port`].
    GetPort(String),
    /// `PATCH /v1/ports/{name}` -> [`Reply::Port`] (the port after the change) or [`Reply::Done`].
    UpdatePort(String, PortUpdate),
    /// `POST /v1/ports` -> [`Reply::Port`]: add a port, live; conflict when the name is taken.
    AddPort(PortSpec),
    /// `DELETE /v1/ports/{name}` -> [`Reply::Done`]: remove a port, live (not a pod's: the CNI
    /// plugin's DEL does that).
    DelPort(String),
    /// `GET /v1/fdb?vlan=&port=` -> [`Reply::Fdb`].
    ListFdb {
        /// Only entries on this VLAN.
        vlan: Option<u16>,
        /// Only entries on this port.
        port: Option<String>,
    },
    /// `POST /v1/fdb` -> [`Reply::Done`].
    AddStaticMac(StaticMac),
    /// `DELETE /v1/fdb/{vlan}/{mac}` -> [`Reply::Done`].
    DelMac {
        /// The VLAN.
        vlan: u16,
        /// The MAC address.
        mac: String,
    },
    /// `POST /v1/fdb/flush?port=&vlan=` -> [`Reply::Done`]; learned entries only.
    FlushFdb {
        /// Only entries on this port.
        port: Option<String>,
        /// Only entries on this VLAN.
        vlan: Option<u16>,
    },
    /// `GET /v1/vlans` -> [`Reply::Vlans`].
    ListVlans,
    /// `GET /v1/workers` -> [`Reply::Workers`].
    ListWorkers,
    /// `GET /v1/drop-reasons` -> [`Reply::DropReasons`].
    DropReasons,
    /// `GET /metrics` -> [`Reply::Metrics`].
    Metrics,
    /// `POST /v1/trace` -> [`Reply::Trace`]: what the switch would do with a packet.
    Trace(TraceRequest),
    /// `POST /v1/pods` -> [`Reply::Port`]: wire a pod to the switch (the CNI plugin's ADD).
    AttachPod(PodAttachment),
    /// `DELETE /v1/pods/{container_id}/{ifname}` -> [`Reply::Done`], also when there is no
    /// such attachment (the CNI plugin's DEL is idempotent).
    DetachPod {
        /// The container id of the attachment.
        container_id: String,
        /// The pod-side interface name of the attachment.
        ifname: String,
    },
    /// `GET /v1/pods` -> [`Reply::Pods`].
    ListPods,
    /// `GET /v1/node` -> [`Reply::Node`]; not found when the node does not route (no
    /// `[node]` in the configuration).
    GetNode,
    /// `GET /v1/peers` -> [`Reply::Peers`] (empty when the node does not route).
    ListPeers,
    /// `PUT /v1/peers/{name}` -> [`Reply::Done`]: add peer `name`, or replace it, live.
    SetPeer(String, PeerSpec),
    /// `DELETE /v1/peers/{name}` -> [`Reply::Done`]; not found when there is no such peer.
    DelPeer(String),
    /// `GET /v1/routes` -> [`Reply::Routes`] (empty when the node does not route).
    ListRoutes,
    /// `POST /v1/routes` -> [`Reply::Done`]: add a static route, live.
    AddRoute(RouteSpec),
    /// `DELETE /v1/routes/{prefix}` (the `/` percent-encoded) -> [`Reply::Done`]; not found
    /// when there is no static route of that prefix.
    DelRoute(String),
    /// `GET /v1/neighbors` -> [`Reply::Neighbors`] (empty when the node does not route).
    ListNeighbors,
    /// `GET /v1/qos` -> [`Reply::Qos`]: every shaped port's classes and counters.
    ListQos,
    /// `PATCH /v1/qos/classes/{name}` -> [`Reply::Done`]: change a class live.
    SetQosClass(String, QosClassUpdate),
    /// `POST /v1/qos/classes` -> [`Reply::Done`]: add a class, live; conflict when the name
    /// is taken.
    AddQosClass(QosClassSpec),
    /// `DELETE /v1/qos/classes/{name}` -> [`Reply::Done`]: remove a class, live (refused
    /// while a port, a pod or a child class still names it).
    DelQosClass(String),
    /// `POST /v1/capture` -> [`Reply::Capture`] once a bound is reached.
    Capture(CaptureRequest),
    /// `GET /v1/flow-cache` -> [`Reply::FlowCache`]: every worker's cached L2 flows.
    ListFlowCache,
    /// `GET /v1/flows` -> [`Reply::Flows`]: the flow rules with their counters.
    ListFlows,
    /// `POST /v1/flows` -> [`Reply::Done`]: add a flow rule (or replace the one of its name).
    AddFlow(FlowRule),
    /// `DELETE /v1/flows/{name}` -> [`Reply::Done`]; not found when there is no such rule.
    DelFlow(String),
}

/// A successful answer; which variant depends on the [`Request`] (see its variants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The daemon's status.
    Status(Status),
    /// All ports.
    Ports(Vec<PortInfo>),
    /// One port.
    Port(PortInfo),
    /// FDB entries.
    Fdb(Vec<FdbEntry>),
    /// VLANs and their ports.
    Vlans(Vec<VlanInfo>),
    /// Workers.
    Workers(Vec<WorkerInfo>),
    /// Every drop reason with its help text.
    DropReasons(Vec<DropReasonInfo>),
    /// Prometheus text exposition, rendered by the daemon.
    Metrics(String),
    /// A packet trace.
    Trace(TraceResult),
    /// The pods attached through the CNI plugin.
    Pods(Vec<PodAttachment>),
    /// This node's routing identity.
    Node(NodeInfo),
    /// The peer nodes.
    Peers(Vec<PeerInfo>),
    /// The route table, longest prefixes first.
    Routes(Vec<RouteInfo>),
    /// The resolved neighbours, by address.
    Neighbors(Vec<NeighborInfo>),
    /// The shaped ports' QoS classes.
    Qos(Vec<QosPortInfo>),
    /// A finished capture.
    Capture(CaptureResult),
    /// The workers' cached L2 flows.
    FlowCache(Vec<CachedFlow>),
    /// The flow rules, highest priority first.
    Flows(Vec<FlowRuleInfo>),
    /// A change was made; `message` says what (e.g. `flushed 12 entries`).
    Done {
        /// What was done.
        message: String,
    },
}

/// What a [`Backend`](crate::Backend) answers.
pub type Response = Result<Reply, ApiError>;
