//! `vswitchctl`: the operator's command line for `vswitchd`, the userspace virtual switch.
//!
//! It shows the switch's state (ports, FDB, VLANs, workers, drop counters, metrics, and on a
//! node of a multi-node pod network its routing identity, peers, routes and neighbours) and
//! changes port settings, static MACs and peers. It talks to the daemon over its control API,
//! HTTP/JSON on the Unix socket `/run/vswitch/vswitchd.sock` (or `--socket PATH`, or
//! `$VSWITCH_SOCKET`), through the typed client of `vswitch-api`: routes and types are declared
//! there once.
//!
//! The tool is thin: it parses arguments and formats replies, nothing more. Every check of a
//! value (VLAN range, MAC syntax, port existence, a peer's addresses) is the daemon's, and its
//! messages are printed as they come (`error: VLAN 5000 out of range 1..=4094`). `--json` prints
//! the reply as the daemon sent it instead of a table.
//!
//! # Commands
//!
//! - `status`: version, uptime, sizes.
//! - `show ports|port NAME|pods|fdb [--vlan N] [--port P]|vlans|workers|drops`: the L2 switch.
//! - `show node`: this node's routing identity (`[node]`: pod CIDR, gateway, router MAC,
//!   underlay address, uplink, VXLAN); refused (exit 1) on a node that does not route.
//! - `show peers`: peer nodes with the forwarding mode in use (direct or VXLAN), why, and the
//!   next hop with its MAC once ARP resolved it.
//! - `show routes`: the route table, longest prefix first (`local` or the peer's name).
//! - `show neighbors`: neighbours resolved by ARP (pods, peers, the underlay gateway).
//!
//!   The last three are empty lists on a node that does not route.
//! - `port set NAME [--up|--down] [--access VLAN | --trunk VLANS [--native VLAN]] [--mtu N]`.
//! - `fdb add|del|flush`: static MACs; forgetting learned ones.
//! - `peer add NAME --underlay-ip IP --pod-cidr CIDR [--mode auto|direct|vxlan]
//!   [--vtep-mac MAC]`: add a peer node, or replace the one of that name, live; refused whole
//!   (exit 1, the message naming the field and value) if it does not fit.
//! - `peer del NAME`: remove a peer node, live (exit 1 if there is none).
//! - `show qos`: every shaped port's QoS classes: guarantee, ceiling, priority, weight,
//!   burst (of the ceiling; then of the guarantee), mode (with the pps limit and MPU when
//!   set), and counters (sent, queued against the leaf's bound, dropped by reason, borrowed).
//! - `qos set CLASS [--rate R] [--ceil C] [--priority P] [--weight W] [--pps N|none]
//!   [--pps-burst N] [--burst BYTES] [--mpu BYTES] [--queue-limit N] [--mode shape|police]`:
//!   change a class live (its queue is kept); rates as in the configuration (`300M`, `1G`,
//!   `500k`). `qos add CLASS [--parent P] --rate R [the same settings]` and `qos del CLASS`
//!   add and remove a class (a class still named by a port or a child is not removed).
//!   Refused whole (exit 1, the message naming the class and field) if the result does not
//!   fit, e.g. a ceiling below the guarantee or children's guarantees above the parent's.
//! - `trace`, `top`, `metrics`: a packet's path stage by stage; live rates; Prometheus text.
//! - `capture PORT -w FILE [-c N] [--seconds S] [--direction rx|tx|both] [--snaplen N]`:
//!   packets received on (rx: before any processing) and sent out of (tx: as on the wire) a
//!   port, into a pcap file tcpdump and Wireshark open (`-w -`: standard output). Ends at `N`
//!   packets (at most 100 000), `S` seconds (at most 60, the default), or 32 MiB; prints how
//!   many were captured and how many the capture ring had no room for (the traffic itself is
//!   never affected).
//! - `show flows`: every worker's exact-match L2 flow cache (in port, VLAN, MACs, cached
//!   action, hits), as published by the workers once a second.
//! - `flow add NAME [match] --action drop|normal|output [--output PORT] [--set-vlan N]
//!   [--meter-pps N] [--meter-bps N]`, `flow del NAME`, `flow dump`: flow rules (match on
//!   `--in-port`, `--vlan`, `--src-mac`, `--dst-mac`, `--ethertype`, `--src-ip`, `--dst-ip`
//!   (prefixes), `--proto`, `--sport`, `--dport`; highest `--priority` first), applied live;
//!   `dump` shows each rule's hits and bytes.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the daemon refused the request (its message is printed as `error: ...`) |
//! | 2 | usage error (bad arguments) |
//! | 3 | the daemon is not running, or its socket cannot be connected to |
//! | 4 | protocol error: the connection broke, timed out, or the reply was not understood |

mod pcap;
mod text;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};
use serde::Serialize;
use vswitch_api::{
    Client, ClientError, DropReasonInfo, NodeInfo, PeerSpec, PortInfo, PortSpec, PortUpdate,
    QosClassSpec, QosClassUpdate, QosPortInfo, Reply, Request, RouteSpec, StaticMac, TraceRequest,
    DEFAULT_SOCKET,
};

use text::{format_duration, format_vlan_list, parse_vlan_list, Table};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the daemon refused the request (its message is printed)
  2  usage error
  3  vswitchd is not running, or its socket cannot be connected to
  4  protocol error (connection broke, timed out, or the reply was not understood)";

/// Inspect and steer vswitchd, the userspace virtual switch.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version, after_help = EXIT_CODES)]
struct Cli {
    /// vswitchd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = DEFAULT_SOCKET
    )]
    socket: PathBuf,

    /// Print the daemon's reply as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon's version, uptime and sizes.
    Status,
    /// Show ports, the FDB, VLANs, workers, drop counters, or the node's routing state.
    #[command(subcommand)]
    Show(Show),
    /// Add, remove or change ports, live.
    #[command(subcommand)]
    Port(PortCommand),
    /// Add or remove static routes, live.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Add, delete or flush FDB entries.
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Add, replace or remove peer nodes of the pod network, live.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Change QoS classes, live.
    #[command(subcommand)]
    Qos(QosCommand),
    /// Print the Prometheus metrics text.
    Metrics,
    /// Live per-port packet and bit rates, refreshed every interval.
    Top {
        /// Seconds between samples.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        interval: f64,
        /// Stop after this many refreshes (runs until interrupted when absent).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Show what the switch would do with a packet, stage by stage; nothing is sent or learned.
    Trace(TraceArgs),
    /// Capture a port's packets into a pcap file (tcpdump, Wireshark).
    Capture(CaptureArgs),
    /// Add, delete or list flow rules, live.
    #[command(subcommand)]
    Flow(FlowCommand),
}

#[derive(Debug, Args)]
struct CaptureArgs {
    /// The port to capture on.
    port: String,
    /// The pcap file to write ('-': standard output). Needed unless --json.
    #[arg(short = 'w', value_name = "FILE")]
    write: Option<PathBuf>,
    /// Stop after this many packets (1 to 100000).
    #[arg(short = 'c', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (1 to 60; 60 by default).
    #[arg(long, value_name = "S")]
    seconds: Option<u64>,
    /// rx (as received), tx (as sent) or both.
    #[arg(long, value_name = "DIR", default_value = "both")]
    direction: String,
    /// Bytes kept of each packet (1 to 65535).
    #[arg(long, value_name = "N")]
    snaplen: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum FlowCommand {
    /// Add a flow rule, or replace the one of that name; refused whole if it does not fit.
    Add(Box<FlowAdd>),
    /// Remove a flow rule.
    Del {
        /// The rule's name.
        name: String,
    },
    /// The flow rules in evaluation order, with their hits and bytes.
    Dump,
}

#[derive(Debug, Args)]
struct FlowAdd {
    /// The rule's name.
    name: String,
    /// Higher acts first (0 to 65535).
    #[arg(long, default_value_t = 0)]
    priority: u16,
    /// Match: ingress port.
    #[arg(long, value_name = "PORT")]
    in_port: Option<String>,
    /// Match: VLAN inside the switch.
    #[arg(long, value_name = "N")]
    vlan: Option<u16>,
    /// Match: source MAC.
    #[arg(long, value_name = "MAC")]
    src_mac: Option<String>,
    /// Match: destination MAC.
    #[arg(long, value_name = "MAC")]
    dst_mac: Option<String>,
    /// Match: EtherType, e.g. 0x0806.
    #[arg(long, value_name = "T", value_parser = ethertype)]
    ethertype: Option<u16>,
    /// Match: IPv4 source address or prefix.
    #[arg(long, value_name = "PREFIX")]
    src_ip: Option<String>,
    /// Match: IPv4 destination address or prefix.
    #[arg(long, value_name = "PREFIX")]
    dst_ip: Option<String>,
    /// Match: IP protocol (tcp, udp, icmp or a number).
    #[arg(long, value_name = "P")]
    proto: Option<String>,
    /// Match: TCP/UDP source port.
    #[arg(long, value_name = "N")]
    sport: Option<u16>,
    /// Match: TCP/UDP destination port.
    #[arg(long, value_name = "N")]
    dport: Option<u16>,
    /// drop, normal (switch as usual) or output (to --output).
    #[arg(long, value_name = "A")]
    action: String,
    /// With --action output: the port to send to.
    #[arg(long, value_name = "PORT")]
    output: Option<String>,
    /// Move matching packets to this VLAN.
    #[arg(long, value_name = "N")]
    set_vlan: Option<u16>,
    /// Police matching packets to N packets per second (per worker).
    #[arg(long, value_name = "N")]
    meter_pps: Option<u64>,
    /// Police matching packets to N bits per second (per worker).
    #[arg(long, value_name = "N")]
    meter_bps: Option<u64>,
}

impl FlowAdd {
    fn rule(self) -> vswitch_api::FlowRule {
        vswitch_api::FlowRule {
            name: self.name,
            priority: self.priority,
            in_port: self.in_port,
            vlan: self.vlan,
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            ethertype: self.ethertype,
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            proto: self.proto,
            src_port: self.sport,
            dst_port: self.dport,
            action: self.action,
            output: self.output,
            set_vlan: self.set_vlan,
            meter_pps: self.meter_pps,
            meter_bps: self.meter_bps,
        }
    }
}

/// The packet to trace: `--hex`, or `--src` and `--dst` with optional fields.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("frame").required(true).args(["hex", "src"])))]
struct TraceArgs {
    /// The port the packet arrives on.
    #[arg(long, value_name = "PORT")]
    in_port: String,
    /// The whole frame in hex (separators ':', '-' and spaces allowed).
    #[arg(
        long,
        value_name = "HEX",
        conflicts_with_all = ["src", "dst", "vlan", "ethertype", "ip", "proto", "sport", "dport", "len"]
    )]
    hex: Option<String>,
    /// Source MAC address.
    #[arg(long, value_name = "MAC", requires = "dst")]
    src: Option<String>,
    /// Destination MAC address.
    #[arg(long, value_name = "MAC", requires = "src")]
    dst: Option<String>,
    /// Tag the frame with this VLAN id (untagged by default).
    #[arg(long, value_name = "N")]
    vlan: Option<u16>,
    /// EtherType, e.g. 0x0806 (by default that of --ip, or 0x88b5).
    #[arg(long, value_name = "T", value_parser = ethertype)]
    ethertype: Option<u16>,
    /// Source and destination IP addresses, IPv4 or IPv6.
    #[arg(long, value_name = "SRC,DST", value_parser = ip_pair)]
    ip: Option<(String, String)>,
    /// tcp, udp (the default with --ip) or icmp.
    #[arg(long, value_name = "P", requires = "ip")]
    proto: Option<String>,
    /// TCP or UDP source port.
    #[arg(long, value_name = "N", requires = "ip")]
    sport: Option<u16>,
    /// TCP or UDP destination port.
    #[arg(long, value_name = "N", requires = "ip")]
    dport: Option<u16>,
    /// Frame length in bytes, tag included (default 60, or the headers' length).
    #[arg(long, value_name = "N")]
    len: Option<usize>,
}

fn ethertype(text: &str) -> Result<u16, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not an EtherType (0x0000..=0xffff)"))
}

fn ip_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once(',') {
        Some((src, dst)) if !src.trim().is_empty() && !dst.trim().is_empty() => {
            Ok((src.trim().to_string(), dst.trim().to_string()))
        }
        _ => Err(format!("{text:?} is not SRC,DST (two IP addresses)")),
    }
}

fn trace_request(args: TraceArgs) -> TraceRequest {
    let (src_ip, dst_ip) = args.ip.unzip();
    TraceRequest {
        in_port: args.in_port,
        frame_hex: args.hex,
        src_mac: args.src,
        dst_mac: args.dst,
        vlan: args.vlan,
        ethertype: args.ethertype,
        src_ip,
        dst_ip,
        proto: args.proto,
        src_port: args.sport,
        dst_port: args.dport,
        len: args.len,
    }
}

#[derive(Debug, Subcommand)]
enum Show {
    /// All ports with their VLANs, state and counters.
    Ports,
    /// Pods wired to the switch by the CNI plugin.
    Pods,
    /// One port in detail, with its drops by reason and what each reason means.
    Port {
        /// The port's name.
        name: String,
    },
    /// FDB entries, optionally only one VLAN's or one port's.
    Fdb {
        /// Only entries on this VLAN.
        #[arg(long, value_name = "N")]
        vlan: Option<u16>,
        /// Only entries on this port.
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
    },
    /// VLANs and their member ports.
    Vlans,
    /// Poll-mode workers: core, load, cost per packet, buffer pool.
    Workers,
    /// Every port's nonzero drop counters, by reason.
    Drops,
    /// This node's place in the pod network: pod CIDR, gateway, underlay, uplink, VXLAN.
    Node,
    /// Peer nodes: the forwarding mode in use (direct or VXLAN) and why, and the next hop.
    Peers,
    /// The route table, longest prefix first: local pods, and each peer's pods.
    Routes,
    /// Neighbours resolved by ARP (pods, peers, the underlay gateway), by address.
    Neighbors,
    /// Shaped ports' QoS classes: settings, and sent, queued, dropped and borrowed counters.
    Qos,
    /// Every worker's cached L2 flows: in port, VLAN, MACs, cached action, hits.
    Flows,
}

#[derive(Debug, Subcommand)]
enum QosCommand {
    /// Change a class's settings live (its queue is kept); refused whole if the result does
    /// not fit.
    Set {
        /// The class's name.
        class: String,
        #[command(flatten)]
        change: QosChange,
    },
    /// Add a class (a group, say, for pods to name as their parent), live; refused whole if
    /// it does not fit the tree (its parent unknown, its guarantee above the parent's spare).
    Add {
        /// The class's name.
        class: String,
        /// Its parent class (none: a root, for a port's qos_root).
        #[arg(long, value_name = "CLASS")]
        parent: Option<String>,
        /// Its settings: --rate at least (the others default as in the configuration file).
        #[command(flatten)]
        settings: QosChange,
    },
    /// Remove a class, live; refused while a child class or a port names it.
    Del {
        /// The class's name.
        class: String,
    },
}

/// The settings `qos set` changes (at least one).
#[derive(Debug, Args)]
#[group(id = "change", required = true, multiple = true)]
struct QosChange {
    /// Guaranteed rate, bits/s (300M, 1G, 500k, or digits).
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Ceiling, bits/s.
    #[arg(long, value_name = "RATE")]
    ceil: Option<String>,
    /// Borrowing priority, 0 (first) to 7.
    #[arg(long, value_name = "P")]
    priority: Option<u8>,
    /// Share of spare capacity among borrowers of the same priority.
    #[arg(long, value_name = "W")]
    weight: Option<u32>,
    /// Packets-per-second limit (`none` removes it).
    #[arg(long, value_name = "N")]
    pps: Option<String>,
    /// Burst of the pps limit, packets.
    #[arg(long, value_name = "N")]
    pps_burst: Option<u64>,
    /// Burst of the ceiling's bucket, bytes (the guarantee's bucket holds as long at the
    /// rate, at least 15000).
    #[arg(long, value_name = "BYTES")]
    burst: Option<u64>,
    /// Minimum bytes charged per packet.
    #[arg(long, value_name = "BYTES")]
    mpu: Option<u32>,
    /// Queue bound of a leaf, packets.
    #[arg(long, value_name = "N")]
    queue_limit: Option<u32>,
    /// shape (delay what is above the limits) or police (drop it).
    #[arg(long, value_name = "MODE", value_parser = ["shape", "police"])]
    mode: Option<String>,
}

impl From<QosChange> for QosClassUpdate {
    fn from(c: QosChange) -> Self {
        QosClassUpdate {
            rate: c.rate,
            ceil: c.ceil,
            priority: c.priority,
            weight: c.weight,
            pps: c.pps,
            pps_burst: c.pps_burst,
            burst: c.burst,
            mpu: c.mpu,
            queue_limit: c.queue_limit,
            mode: c.mode,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Add a peer node, or replace the one of that name; refused whole if it does not fit
    /// (overlapping pod CIDR, own or unreachable underlay address, ...).
    Add {
        /// The peer's name.
        name: String,
        /// The peer's underlay address, e.g. 198.18.0.2.
        #[arg(long, value_name = "IP")]
        underlay_ip: String,
        /// The peer's pods, e.g. 10.244.2.0/24.
        #[arg(long, value_name = "CIDR")]
        pod_cidr: String,
        /// auto (direct on the uplink's subnet, VXLAN otherwise; the default), direct or vxlan.
        #[arg(long, value_name = "MODE")]
        mode: Option<String>,
        /// Inner destination MAC of VXLAN packets to the peer (a Flannel node's flannel.1 MAC).
        #[arg(long, value_name = "MAC")]
        vtep_mac: Option<String>,
    },
    /// Remove a peer node (and the route to its pods).
    Del {
        /// The peer's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// Change a port's state, VLAN mode or MTU.
    Set(PortSet),
    /// Add a port, live; answered once its worker switches it.
    Add(Box<PortAdd>),
    /// Remove a port, live (a pod's port goes with the pod: the CNI plugin's DEL).
    Del {
        /// The port's name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct PortAdd {
    /// The port's name in the switch.
    name: String,
    /// afxdp (the default), afpacket or tap.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// The Linux interface (default: the name).
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// The worker that polls it (default 0).
    #[arg(long, value_name = "N")]
    worker: Option<usize>,
    /// Receive queues to open.
    #[arg(long, value_name = "N")]
    queues: Option<u16>,
    /// afxdp: auto, native or generic.
    #[arg(long, value_name = "MODE")]
    xdp_mode: Option<String>,
    /// VLAN mode (the default: access on VLAN 1) and MTU.
    #[command(flatten)]
    vlans: VlanArgs,
    /// Add it administratively down.
    #[arg(long)]
    down: bool,
    /// The QoS class of the traffic from this port (a leaf class).
    #[arg(long, value_name = "CLASS")]
    qos_class: Option<String>,
    /// Shape this port's egress with the tree under this root class.
    #[arg(long, value_name = "CLASS")]
    qos_root: Option<String>,
    /// The namespace of the container whose veth this port's interface is the host end of
    /// (e.g. /var/run/netns/web): the switch turns off that end's transmit checksum offload,
    /// which AF_XDP and AF_PACKET cannot carry.
    #[arg(long, value_name = "PATH", requires = "pod_interface")]
    pod_netns: Option<String>,
    /// With --pod-netns: the container's end of the veth, e.g. eth0.
    #[arg(long, value_name = "IF", requires = "pod_netns")]
    pod_interface: Option<String>,
}

impl PortAdd {
    /// The `[[port]]` section this stands for, as the API takes it.
    fn spec(self) -> PortSpec {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<serde_json::Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("name", Some(self.name.into()));
        put("type", self.kind.map(Into::into));
        put("interface", self.interface.map(Into::into));
        put("worker", self.worker.map(Into::into));
        put("queues", self.queues.map(Into::into));
        put("xdp_mode", self.xdp_mode.map(Into::into));
        let v = self.vlans;
        put("vlan", v.access.map(Into::into));
        if let Some(VlanList(list)) = v.trunk {
            put("mode", Some("trunk".into()));
            put("allowed_vlans", Some(list.into()));
        }
        put("native_vlan", v.native.map(Into::into));
        put("mtu", v.mtu.map(Into::into));
        put("up", self.down.then_some(false.into()));
        put("qos_class", self.qos_class.map(Into::into));
        put("qos_root", self.qos_root.map(Into::into));
        put("pod_netns", self.pod_netns.map(Into::into));
        put("pod_interface", self.pod_interface.map(Into::into));
        PortSpec(m)
    }
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Add a static route outside the pod CIDRs: to a gateway on the underlay subnet (--via)
    /// or to a peer node (--peer).
    Add {
        /// The destination prefix, e.g. 10.96.0.0/12 or 0.0.0.0/0.
        prefix: String,
        /// A gateway on the underlay subnet.
        #[arg(long, value_name = "IP", required_unless_present = "peer", conflicts_with = "peer")]
        via: Option<String>,
        /// A peer node, by name (the packets go in the mode chosen for it).
        #[arg(long, value_name = "NAME")]
        peer: Option<String>,
    },
    /// Remove a static route.
    Del {
        /// The destination prefix.
        prefix: String,
    },
}

/// A list of VLANs as given on the command line (`10,20,30-35`).
#[derive(Debug, Clone)]
struct VlanList(Vec<u16>);

fn vlan_list(text: &str) -> Result<VlanList, String> {
    parse_vlan_list(text).map(VlanList)
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change").required(true).multiple(true)
        .args(["up", "down", "access", "trunk", "mtu"])
))]
struct PortSet {
    /// The port's name.
    name: String,
    /// Bring the port up.
    #[arg(long, conflicts_with = "down")]
    up: bool,
    /// Take the port down.
    #[arg(long)]
    down: bool,
    #[command(flatten)]
    vlans: VlanArgs,
}

/// A port's VLAN mode and MTU, as `port add` and `port set` take them.
#[derive(Debug, Args)]
struct VlanArgs {
    /// An access port on this VLAN.
    #[arg(long, value_name = "VLAN", conflicts_with = "trunk")]
    access: Option<u16>,
    /// A trunk carrying these VLANs tagged, e.g. 10,20,30-35.
    #[arg(long, value_name = "VLANS", value_parser = vlan_list)]
    trunk: Option<VlanList>,
    /// With --trunk: the VLAN carried untagged.
    #[arg(long, value_name = "VLAN", requires = "trunk")]
    native: Option<u16>,
    /// MTU in bytes.
    #[arg(long, value_name = "N")]
    mtu: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum FdbCommand {
    /// Add a static MAC (never ages, not learned elsewhere).
    Add {
        /// The VLAN.
        #[arg(long, value_name = "N")]
        vlan: u16,
        /// The MAC address, e.g. 02:00:00:00:00:01.
        #[arg(long, value_name = "M")]
        mac: String,
        /// The port it forwards to.
        #[arg(long, value_name = "P")]
        port: String,
    },
    /// Delete one entry, static or learned.
    Del {
        /// The VLAN.
        #[arg(long, value_name = "N")]
        vlan: u16,
        /// The MAC address.
        #[arg(long, value_name = "M")]
        mac: String,
    },
    /// Forget learned entries: all, or one port's, or one VLAN's.
    Flush {
        /// Only entries on this port.
        #[arg(long, value_name = "P")]
        port: Option<String>,
        /// Only entries on this VLAN.
        #[arg(long, value_name = "N")]
        vlan: Option<u16>,
    },
}

/// What went wrong, with its exit code.
fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Api(_) => 1,
        ClientError::DaemonNotRunning { .. } | ClientError::Connect { .. } => 3,
        ClientError::Protocol(_) => 4,
    }
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let client = Client::new(&cli.socket);
    match run(&client, cli.json, cli.command) {
        Ok(output) => {
            // A closed pipe (`vswitchctl show fdb | head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit_code(&error))
        }
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = serde_json::to_string_pretty(value).expect("replies serialize");
    out.push('\n');
    out
}

/// The reply as JSON: the same document the daemon sent.
fn reply_json(reply: &Reply) -> String {
    match reply {
        Reply::Metrics(text) => json(text),
        other => String::from_utf8_lossy(&vswitch_api::wire::encode_reply(other).1).into_owned(),
    }
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected {} reply", vswitch_api::wire::reply_name(reply)))
}

/// Run one command; the text to print on success.
fn run(client: &Client, as_json: bool, command: Command) -> Result<String, ClientError> {
    let call = |request| client.call_blocking(request);
    let request = match command {
        Command::Top { interval, count } => return top(client, as_json, interval, count),
        Command::Show(Show::Port { name }) => return show_port(client, as_json, name),
        Command::Show(Show::Drops) => return show_drops(client, as_json),
        Command::Capture(args) => return capture(client, as_json, args),
        Command::Status => Request::Status,
        Command::Show(Show::Ports) => Request::ListPorts,
        Command::Show(Show::Pods) => Request::ListPods,
        Command::Show(Show::Fdb { vlan, port }) => Request::ListFdb { vlan, port },
        Command::Show(Show::Vlans) => Request::ListVlans,
        Command::Show(Show::Workers) => Request::ListWorkers,
        Command::Show(Show::Node) => Request::GetNode,
        Command::Show(Show::Peers) => Request::ListPeers,
        Command::Show(Show::Routes) => Request::ListRoutes,
        Command::Show(Show::Neighbors) => Request::ListNeighbors,
        Command::Show(Show::Qos) => Request::ListQos,
        Command::Show(Show::Flows) => Request::ListFlowCache,
        Command::Flow(FlowCommand::Add(add)) => Request::AddFlow(add.rule()),
        Command::Flow(FlowCommand::Del { name }) => Request::DelFlow(name),
        Command::Flow(FlowCommand::Dump) => Request::ListFlows,
        Command::Qos(QosCommand::Set { class, change }) => {
            Request::SetQosClass(class, change.into())
        }
        Command::Qos(QosCommand::Add { class, parent, settings }) => {
            let update = QosClassUpdate::from(settings);
            // The update's fields are the section's, by the same names.
            let mut spec = match serde_json::to_value(&update) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            spec.insert("name".into(), class.into());
            if let Some(p) = parent {
                spec.insert("parent".into(), p.into());
            }
            Request::AddQosClass(QosClassSpec(spec))
        }
        Command::Qos(QosCommand::Del { class }) => Request::DelQosClass(class),
        Command::Peer(PeerCommand::Add { name, underlay_ip, pod_cidr, mode, vtep_mac }) => {
            Request::SetPeer(name, PeerSpec { underlay_ip, pod_cidr, mode, vtep_mac })
        }
        Command::Peer(PeerCommand::Del { name }) => Request::DelPeer(name),
        Command::Port(PortCommand::Set(set)) => Request::UpdatePort(set.name.clone(), update(set)),
        Command::Port(PortCommand::Add(add)) => Request::AddPort(add.spec()),
        Command::Port(PortCommand::Del { name }) => Request::DelPort(name),
        Command::Route(RouteCommand::Add { prefix, via, peer }) => {
            Request::AddRoute(RouteSpec { prefix, via, peer })
        }
        Command::Route(RouteCommand::Del { prefix }) => Request::DelRoute(prefix),
        Command::Fdb(FdbCommand::Add { vlan, mac, port }) => {
            Request::AddStaticMac(StaticMac { vlan, mac, port })
        }
        Command::Fdb(FdbCommand::Del { vlan, mac }) => Request::DelMac { vlan, mac },
        Command::Fdb(FdbCommand::Flush { port, vlan }) => Request::FlushFdb { port, vlan },
        Command::Metrics => Request::Metrics,
        Command::Trace(args) => Request::Trace(trace_request(args)),
    };
    let reply = call(request)?;
    if as_json {
        return Ok(reply_json(&reply));
    }
    Ok(match reply {
        Reply::Status(s) => {
            let mut out = String::new();
            let _ = writeln!(out, "vswitchd {}", s.version);
            let _ = writeln!(out, "uptime       {}", format_duration(s.uptime_secs));
            let _ = writeln!(out, "ports        {}", s.ports);
            let _ = writeln!(out, "workers      {}", s.workers);
            let _ = writeln!(out, "fdb entries  {} of {}", s.fdb_entries, s.fdb_max);
            out
        }
        Reply::Ports(ports) => ports_table(&ports),
        Reply::Port(port) => ports_table(std::slice::from_ref(&port)),
        Reply::Fdb(entries) => {
            let mut t = Table::new(&[">VLAN", "MAC", "PORT", "TYPE", ">AGE"]);
            for e in entries {
                let (kind, age) = if e.is_static {
                    ("static", "-".to_string())
                } else {
                    ("learned", format_duration(e.age_secs))
                };
                t.row(vec![e.vlan.to_string(), e.mac, e.port, kind.into(), age]);
            }
            t.render()
        }
        Reply::Vlans(vlans) => {
            let mut t = Table::new(&[">VLAN", "PORTS"]);
            for v in vlans {
                t.row(vec![v.vlan.to_string(), v.ports.join(",")]);
            }
            t.render()
        }
        Reply::Workers(workers) => {
            let mut t = Table::new(&[
                ">ID",
                ">CORE",
                "IDLE",
                "PORTS",
                ">BUSY%",
                ">NS/PKT",
                ">PACKETS",
                ">POOL-FREE",
            ]);
            for w in workers {
                t.row(vec![
                    w.id.to_string(),
                    w.core.map_or("-".into(), |c| c.to_string()),
                    w.idle,
                    w.ports.join(","),
                    format!("{:.1}", w.busy_percent),
                    w.ns_per_packet.map_or("-".into(), |n| format!("{n:.0}")),
                    w.packets.to_string(),
                    format!("{}/{}", w.pool_free, w.pool_frames),
                ]);
            }
            t.render()
        }
        Reply::Pods(pods) => {
            let mut t = Table::new(&["POD", "CONTAINER", "IFNAME", "HOST-IF", ">VLAN", "IPS"]);
            for p in pods {
                let pod = match (&p.pod_namespace, &p.pod_name) {
                    (Some(ns), Some(name)) => format!("{ns}/{name}"),
                    (None, Some(name)) => name.clone(),
                    _ => "-".into(),
                };
                let cid: String = p.container_id.chars().take(12).collect();
                t.row(vec![
                    pod,
                    cid,
                    p.ifname,
                    p.host_interface,
                    p.vlan.to_string(),
                    p.ips.join(","),
                ]);
            }
            t.render()
        }
        Reply::Metrics(text) => text,
        Reply::Done { message } => format!("{message}\n"),
        Reply::Trace(t) => {
            let mut out = String::new();
            for step in &t.steps {
                let _ = writeln!(out, "{:<8}: {}", step.stage, step.detail);
            }
            let _ = writeln!(out, "{:<8}: {}", "action", t.verdict);
            out
        }
        Reply::Node(node) => node_text(&node),
        Reply::Peers(peers) => {
            let mut t = Table::new(&[
                "NAME",
                "UNDERLAY-IP",
                "POD-CIDR",
                "MODE",
                "NEXT-HOP",
                "NEXT-HOP-MAC",
                "VTEP-MAC",
                "REASON",
            ]);
            for p in peers {
                t.row(vec![
                    p.name,
                    p.underlay_ip,
                    p.pod_cidr,
                    p.mode,
                    p.next_hop,
                    p.next_hop_mac.unwrap_or_else(|| "(unresolved)".into()),
                    p.vtep_mac,
                    p.reason,
                ]);
            }
            t.render()
        }
        Reply::Routes(routes) => {
            let mut t = Table::new(&["PREFIX", "VIA", "MODE", "NEXT-HOP", "ORIGIN"]);
            for r in routes {
                t.row(vec![
                    r.prefix,
                    r.via,
                    r.mode,
                    r.next_hop.unwrap_or_else(|| "-".into()),
                    r.origin,
                ]);
            }
            t.render()
        }
        Reply::Neighbors(neighbors) => {
            let mut t = Table::new(&["IP", "MAC", "PORT"]);
            for n in neighbors {
                t.row(vec![n.ip, n.mac, n.port]);
            }
            t.render()
        }
        Reply::Qos(ports) => qos_text(ports),
        Reply::FlowCache(flows) => {
            let mut t = Table::new(&[
                ">WORKER", "IN-PORT", ">VLAN", "SRC-MAC", "DST-MAC", "ACTION", ">HITS",
            ]);
            for f in flows {
                t.row(vec![
                    f.worker.to_string(),
                    f.in_port,
                    f.vlan.to_string(),
                    f.src_mac,
                    f.dst_mac,
                    f.action,
                    f.hits.to_string(),
                ]);
            }
            t.render()
        }
        Reply::Flows(rules) => flows_text(rules),
        other @ (Reply::DropReasons(_) | Reply::Capture(_)) => return Err(unexpected(&other)),
    })
}

/// `flow dump`: one line per rule, in evaluation order.
fn flows_text(rules: Vec<vswitch_api::FlowRuleInfo>) -> String {
    let mut t = Table::new(&[">PRIO", "NAME", "MATCH", "ACTIONS", ">PACKETS", ">BYTES"]);
    for i in rules {
        let r = i.rule;
        let mut m = Vec::new();
        let mut field = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.push(format!("{k}={v}"));
            }
        };
        field("in_port", r.in_port);
        field("vlan", r.vlan.map(|v| v.to_string()));
        field("src_mac", r.src_mac);
        field("dst_mac", r.dst_mac);
        field("ethertype", r.ethertype.map(|e| format!("{e:#06x}")));
        field("src_ip", r.src_ip);
        field("dst_ip", r.dst_ip);
        field("proto", r.proto);
        field("sport", r.src_port.map(|p| p.to_string()));
        field("dport", r.dst_port.map(|p| p.to_string()));
        let mut a = Vec::new();
        if let Some(v) = r.set_vlan {
            a.push(format!("set_vlan:{v}"));
        }
        if let Some(pps) = r.meter_pps {
            a.push(format!("meter:{pps}pps"));
        }
        if let Some(bps) = r.meter_bps {
            a.push(format!("meter:{}bps", rate_text(bps)));
        }
        a.push(match r.output {
            Some(p) => format!("output:{p}"),
            None => r.action,
        });
        let mut packets = i.packets.to_string();
        if i.meter_drops > 0 {
            let _ = write!(packets, " ({} metered out)", i.meter_drops);
        }
        t.row(vec![
            r.priority.to_string(),
            r.name,
            if m.is_empty() { "any".into() } else { m.join(",") },
            a.join(","),
            packets,
            i.bytes.to_string(),
        ]);
    }
    t.render()
}

/// `capture`: asks the daemon (which answers when a bound is reached) and writes the pcap.
fn capture(client: &Client, as_json: bool, args: CaptureArgs) -> Result<String, ClientError> {
    if args.write.is_none() && !as_json {
        return Err(ClientError::Api(vswitch_api::ApiError::invalid(
            "capture needs -w FILE (or -w - for standard output), or --json",
        )));
    }
    let wait = args.seconds.unwrap_or(60).min(60) + 15;
    let client = client.clone().with_timeout(std::time::Duration::from_secs(wait));
    let reply = client.call_blocking(Request::Capture(vswitch_api::CaptureRequest {
        port: args.port,
        direction: Some(args.direction),
        count: args.count,
        seconds: args.seconds,
        snaplen: args.snaplen,
    }))?;
    let Reply::Capture(c) = reply else { return Err(unexpected(&reply)) };
    let mut data = Vec::with_capacity(c.packets.len());
    for p in &c.packets {
        let bytes = pcap::from_hex(&p.data_hex)
            .ok_or_else(|| ClientError::Protocol("captured packet is not hex".into()))?;
        data.push((p.ts_ns, p.len, bytes));
    }
    let packets =
        || data.iter().map(|(ts, len, d)| pcap::Packet { ts_ns: *ts, orig_len: *len, data: d });
    let summary = format!(
        "{} packets captured, {} not captured: ring full (stopped: {})\n",
        c.packets.len(),
        c.not_captured,
        c.stopped
    );
    let io = |e: std::io::Error, what: &str| ClientError::Protocol(format!("writing {what}: {e}"));
    match args.write.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            pcap::write(&mut std::io::stdout().lock(), c.snaplen, packets())
                .map_err(|e| io(e, "standard output"))?;
            eprint!("{summary}");
            Ok(String::new())
        }
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|e| io(e, &p.display().to_string()))?,
            );
            pcap::write(&mut f, c.snaplen, packets())
                .map_err(|e| io(e, &p.display().to_string()))?;
            if as_json {
                return Ok(reply_json(&Reply::Capture(c)));
            }
            Ok(summary)
        }
        None => Ok(reply_json(&Reply::Capture(c))),
    }
}

/// Bits per second as `300M`, `1.5G`, `500k`.
fn rate_text(bps: u64) -> String {
    for (unit, div) in [("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if bps as f64 >= div {
            let v = bps as f64 / div;
            return if v.fract() == 0.0 { format!("{v}{unit}") } else { format!("{v:.2}{unit}") };
        }
    }
    bps.to_string()
}

/// `show qos`: one table per shaped port. A leaf's QUEUED is `packets/bound`; MODE adds the
/// pps limit and the MPU when set.
fn qos_text(ports: Vec<vswitch_api::QosPortInfo>) -> String {
    if ports.is_empty() {
        return "no shaped ports (no [[port]] has a qos_root)\n".into();
    }
    let mut out = String::new();
    for p in ports {
        let _ = writeln!(out, "port {} (backlog {} packets)", p.port, p.backlog);
        let mut t = Table::new(&[
            "CLASS",
            "PARENT",
            "PORTS",
            "RATE",
            "CEIL",
            "PRIO",
            "WEIGHT",
            "BURST(CEIL/RATE)",
            "MODE",
            "SENT-BYTES",
            "SENT-PKTS",
            "QUEUED",
            "DROPS",
            "BORROWED",
        ]);
        let parents: Vec<String> = p.classes.iter().filter_map(|c| c.parent.clone()).collect();
        for c in p.classes {
            let drops: Vec<String> = c.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut mode = c.mode;
            if let Some(pps) = c.pps {
                let _ = write!(mode, " pps<={pps}");
            }
            if c.mpu > 0 {
                let _ = write!(mode, " mpu={}", c.mpu);
            }
            let leaf = !parents.contains(&c.name);
            t.row(vec![
                c.name,
                c.parent.unwrap_or_else(|| "-".into()),
                if c.ports.is_empty() { "-".into() } else { c.ports.join(",") },
                rate_text(c.rate_bps),
                rate_text(c.ceil_bps),
                c.priority.to_string(),
                c.weight.to_string(),
                format!("{}/{}", c.burst_bytes, c.rate_burst_bytes),
                mode,
                c.sent_bytes.to_string(),
                c.sent_packets.to_string(),
                if leaf {
                    format!("{}/{}", c.queued_packets, c.queue_limit)
                } else {
                    c.queued_packets.to_string()
                },
                if drops.is_empty() { "0".into() } else { drops.join(",") },
                c.borrowed_bytes.to_string(),
            ]);
        }
        out += &t.render();
    }
    out
}

/// `show node`: one field per line, as `show port` does.
fn node_text(n: &NodeInfo) -> String {
    let mut out = format!("node {}\n", n.name);
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<16} {value}");
    };
    field("pod cidr", n.pod_cidr.clone());
    field("gateway", n.gateway.clone());
    field("router mac", n.router_mac.clone());
    field("pod vlan", n.pod_vlan.to_string());
    field("underlay ip", n.underlay_ip.clone());
    field("underlay gateway", n.underlay_gateway.clone().unwrap_or_else(|| "-".into()));
    field("uplink", n.uplink.clone());
    field("vxlan", format!("VNI {}, UDP port {}", n.vni, n.vxlan_port));
    out
}

fn update(set: PortSet) -> PortUpdate {
    let up = if set.up {
        Some(true)
    } else if set.down {
        Some(false)
    } else {
        None
    };
    let v = set.vlans;
    let mut update = PortUpdate { up, mtu: v.mtu, ..PortUpdate::default() };
    if let Some(vlan) = v.access {
        update.mode = Some("access".into());
        update.vlan = Some(vlan);
    }
    if let Some(VlanList(vlans)) = v.trunk {
        update.mode = Some("trunk".into());
        update.allowed_vlans = Some(vlans);
        update.native_vlan = v.native;
    }
    update
}

/// The VLANS cell: the access VLAN, or the trunk's list and native VLAN.
fn vlans_cell(port: &PortInfo) -> String {
    let mut cell = match (port.mode.as_str(), port.vlan) {
        ("access", Some(vlan)) => vlan.to_string(),
        _ => format_vlan_list(&port.allowed_vlans),
    };
    if let Some(native) = port.native_vlan {
        if !cell.is_empty() {
            cell.push(' ');
        }
        let _ = write!(cell, "(native {native})");
    }
    if cell.is_empty() {
        cell.push('-');
    }
    cell
}

fn state(up: bool) -> String {
    if up { "up" } else { "down" }.to_string()
}

/// One port's rates between two samples.
#[derive(Serialize)]
struct PortRate {
    port: String,
    rx_pps: f64,
    tx_pps: f64,
    rx_bps: f64,
    tx_bps: f64,
    drops_per_sec: f64,
}

/// One QoS class's rates over a `top` interval.
#[derive(Serialize)]
struct ClassRate {
    /// The shaped port.
    port: String,
    class: String,
    sent_pps: f64,
    sent_bps: f64,
    /// Of `sent_bps`, what it borrowed above its guarantee.
    borrowed_bps: f64,
    drops_per_sec: f64,
    queued_packets: u64,
    rate_bps: u64,
    ceil_bps: u64,
}

/// One `top` sample.
#[derive(Serialize)]
struct TopSample {
    ports: Vec<PortRate>,
    /// Empty when no port is shaped.
    classes: Vec<ClassRate>,
}

/// `top`: samples the port and QoS class counters every `interval` seconds and prints the
/// rates (tables redrawn in place on a terminal, one JSON object per sample with `--json`).
fn top(
    client: &Client,
    as_json: bool,
    interval: f64,
    count: Option<u64>,
) -> Result<String, ClientError> {
    if !(0.1..=3600.0).contains(&interval) {
        return Err(ClientError::Api(vswitch_api::ApiError::invalid(format!(
            "--interval {interval} is out of range 0.1..=3600"
        ))));
    }
    type Sample = (std::time::Instant, Vec<PortInfo>, Vec<QosPortInfo>);
    let sample = || -> Result<Sample, ClientError> {
        let ports = match client.call_blocking(Request::ListPorts)? {
            Reply::Ports(p) => p,
            other => return Err(unexpected(&other)),
        };
        let qos = match client.call_blocking(Request::ListQos)? {
            Reply::Qos(q) => q,
            other => return Err(unexpected(&other)),
        };
        Ok((std::time::Instant::now(), ports, qos))
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut prev = sample()?;
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
        let cur = sample()?;
        let dt = cur.0.duration_since(prev.0).as_secs_f64().max(1e-6);
        // A counter that appeared since the last sample starts from itself: rate 0.
        let d = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(now)) as f64 / dt;
        let ports: Vec<PortRate> = cur
            .1
            .iter()
            .map(|p| {
                let before = prev.1.iter().find(|q| q.name == p.name).map(|q| &q.stats);
                PortRate {
                    port: p.name.clone(),
                    rx_pps: d(p.stats.rx_packets, before.map(|b| b.rx_packets)),
                    tx_pps: d(p.stats.tx_packets, before.map(|b| b.tx_packets)),
                    rx_bps: 8.0 * d(p.stats.rx_bytes, before.map(|b| b.rx_bytes)),
                    tx_bps: 8.0 * d(p.stats.tx_bytes, before.map(|b| b.tx_bytes)),
                    drops_per_sec: d(p.stats.dropped, before.map(|b| b.dropped)),
                }
            })
            .collect();
        let mut classes = Vec::new();
        for port in &cur.2 {
            let old = prev.2.iter().find(|q| q.port == port.port);
            for c in &port.classes {
                let b = old.and_then(|o| o.classes.iter().find(|x| x.name == c.name));
                let drops = |c: &vswitch_api::QosClassInfo| c.drops.values().sum::<u64>();
                classes.push(ClassRate {
                    port: port.port.clone(),
                    class: c.name.clone(),
                    sent_pps: d(c.sent_packets, b.map(|b| b.sent_packets)),
                    sent_bps: 8.0 * d(c.sent_bytes, b.map(|b| b.sent_bytes)),
                    borrowed_bps: 8.0 * d(c.borrowed_bytes, b.map(|b| b.borrowed_bytes)),
                    drops_per_sec: d(drops(c), b.map(drops)),
                    queued_packets: c.queued_packets,
                    rate_bps: c.rate_bps,
                    ceil_bps: c.ceil_bps,
                });
            }
        }
        let sample = TopSample { ports, classes };
        let mut out = String::new();
        if as_json {
            out = serde_json::to_string(&sample).expect("rates serialize");
            out.push('\n');
        } else {
            if tty {
                out.push_str("\x1b[H\x1b[2J");
            }
            out.push_str(&top_text(&sample));
        }
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        prev = cur;
        n += 1;
    }
    Ok(String::new())
}

/// One `top` sample as tables: ports, then the shaped ports' classes.
fn top_text(sample: &TopSample) -> String {
    let mut t = Table::new(&["PORT", ">RX-PPS", ">TX-PPS", ">RX-MBIT/S", ">TX-MBIT/S", ">DROPS/S"]);
    for r in &sample.ports {
        t.row(vec![
            r.port.clone(),
            format!("{:.0}", r.rx_pps),
            format!("{:.0}", r.tx_pps),
            format!("{:.1}", r.rx_bps / 1e6),
            format!("{:.1}", r.tx_bps / 1e6),
            format!("{:.0}", r.drops_per_sec),
        ]);
    }
    let mut out = t.render();
    if !sample.classes.is_empty() {
        out.push('\n');
        let mut t = Table::new(&[
            "SHAPED-PORT",
            "CLASS",
            ">PPS",
            ">MBIT/S",
            ">BORROWED",
            ">RATE",
            ">CEIL",
            ">QUEUED",
            ">DROPS/S",
        ]);
        for c in &sample.classes {
            t.row(vec![
                c.port.clone(),
                c.class.clone(),
                format!("{:.0}", c.sent_pps),
                format!("{:.1}", c.sent_bps / 1e6),
                format!("{:.1}", c.borrowed_bps / 1e6),
                format!("{:.1}", c.rate_bps as f64 / 1e6),
                format!("{:.1}", c.ceil_bps as f64 / 1e6),
                c.queued_packets.to_string(),
                format!("{:.0}", c.drops_per_sec),
            ]);
        }
        out.push_str(&t.render());
    }
    out.push('\n');
    out
}

fn ports_table(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        "NAME", "IFACE", "KIND", ">WORKER", "MODE", "VLANS", ">MTU", "STATE", ">RX-PKTS",
        ">TX-PKTS", ">DROPS",
    ]);
    for p in ports {
        t.row(vec![
            p.name.clone(),
            p.interface.clone(),
            p.kind.clone(),
            p.worker.to_string(),
            p.mode.clone(),
            vlans_cell(p),
            p.mtu.to_string(),
            state(p.up),
            p.stats.rx_packets.to_string(),
            p.stats.tx_packets.to_string(),
            p.stats.dropped.to_string(),
        ]);
    }
    t.render()
}

/// The drop reasons' help texts; without them (an older daemon) counters are still shown.
fn drop_reasons(client: &Client) -> Result<Vec<DropReasonInfo>, ClientError> {
    match client.call_blocking(Request::DropReasons) {
        Ok(Reply::DropReasons(reasons)) => Ok(reasons),
        Ok(other) => Err(unexpected(&other)),
        Err(ClientError::Api(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn help_for<'a>(reasons: &'a [DropReasonInfo], name: &str) -> &'a str {
    reasons.iter().find(|r| r.name == name).map_or("-", |r| r.help.as_str())
}

fn show_port(client: &Client, as_json: bool, name: String) -> Result<String, ClientError> {
    let port = match client.call_blocking(Request::GetPort(name))? {
        Reply::Port(port) => port,
        other => return Err(unexpected(&other)),
    };
    if as_json {
        return Ok(json(&port));
    }
    let mut out = String::new();
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<10} {value}");
    };
    let s = &port.stats;
    field("interface", port.interface.clone());
    field("kind", port.kind.clone());
    field("worker", port.worker.to_string());
    field("queues", port.queues.to_string());
    field("state", state(port.up));
    field("mode", port.mode.clone());
    field("vlans", vlans_cell(&port));
    field("mtu", port.mtu.to_string());
    field("rx", format!("{} packets, {} bytes", s.rx_packets, s.rx_bytes));
    field("tx", format!("{} packets, {} bytes", s.tx_packets, s.tx_bytes));
    field("dropped", s.dropped.to_string());
    let mut text = format!("port {} (id {})\n{out}", port.name, port.id);
    let drops: Vec<(&String, &u64)> = s.drops.iter().filter(|(_, n)| **n > 0).collect();
    if !drops.is_empty() {
        let reasons = drop_reasons(client)?;
        let mut t = Table::new(&["REASON", ">COUNT", "MEANING"]);
        for (reason, count) in drops {
            t.row(vec![reason.clone(), count.to_string(), help_for(&reasons, reason).into()]);
        }
        text.push_str("\ndrops by reason:\n");
        for line in t.render().lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    Ok(text)
}

/// One row of `show drops`.
#[derive(Serialize)]
struct DropRow {
    port: String,
    reason: String,
    count: u64,
    help: String,
}

fn show_drops(client: &Client, as_json: bool) -> Result<String, ClientError> {
    let ports = match client.call_blocking(Request::ListPorts)? {
        Reply::Ports(ports) => ports,
        other => return Err(unexpected(&other)),
    };
    let any = ports.iter().any(|p| p.stats.drops.values().any(|n| *n > 0));
    let reasons = if any { drop_reasons(client)? } else { Vec::new() };
    let rows: Vec<DropRow> = ports
        .iter()
        .flat_map(|p| {
            p.stats.drops.iter().filter(|(_, n)| **n > 0).map(|(reason, count)| DropRow {
                port: p.name.clone(),
                reason: reason.clone(),
                count: *count,
                help: help_for(&reasons, reason).to_string(),
            })
        })
        .collect();
    if as_json {
        return Ok(json(&rows));
    }
    if rows.is_empty() {
        return Ok("no drops\n".to_string());
    }
    let mut t = Table::new(&["PORT", "REASON", ">COUNT", "MEANING"]);
    for r in rows {
        t.row(vec![r.port, r.reason, r.count.to_string(), r.help]);
    }
    Ok(t.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
    }

    #[test]
    fn port_set_builds_the_update() {
        let cli = parse(&["port", "set", "p1", "--trunk", "10,20-22", "--native", "1", "--down"])
            .unwrap();
        let Command::Port(PortCommand::Set(set)) = cli.command else { panic!() };
        assert_eq!(
            update(set),
            PortUpdate {
                up: Some(false),
                mode: Some("trunk".into()),
                allowed_vlans: Some(vec![10, 20, 21, 22]),
                native_vlan: Some(1),
                ..Default::default()
            }
        );
    }

    #[test]
    fn trace_builds_the_request() {
        let cli = parse(&[
            "trace",
            "--in-port",
            "p1",
            "--src",
            "02:00:00:00:00:01",
            "--dst",
            "ff:ff:ff:ff:ff:ff",
            "--vlan",
            "10",
            "--ip",
            "10.0.0.1, 10.0.0.2",
            "--proto",
            "tcp",
            "--dport",
            "80",
            "--ethertype",
            "0x0800",
            "--len",
            "100",
        ])
        .unwrap();
        let Command::Trace(args) = cli.command else { panic!() };
        assert_eq!(
            trace_request(args),
            TraceRequest {
                in_port: "p1".into(),
                src_mac: Some("02:00:00:00:00:01".into()),
                dst_mac: Some("ff:ff:ff:ff:ff:ff".into()),
                vlan: Some(10),
                ethertype: Some(0x0800),
                src_ip: Some("10.0.0.1".into()),
                dst_ip: Some("10.0.0.2".into()),
                proto: Some("tcp".into()),
                dst_port: Some(80),
                len: Some(100),
                ..Default::default()
            }
        );
        for args in [
            &["trace", "--in-port", "p1"][..],
            &["trace", "--in-port", "p1", "--src", "02:00:00:00:00:01"],
            &["trace", "--in-port", "p1", "--hex", "00", "--vlan", "3"],
            &["trace", "--in-port", "p1", "--src", "a", "--dst", "b", "--proto", "tcp"],
            &["trace", "--in-port", "p1", "--src", "a", "--dst", "b", "--ip", "10.0.0.1"],
            &["trace", "--in-port", "p1", "--src", "a", "--dst", "b", "--ethertype", "0xzz"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn peer_commands_build_the_requests() {
        let request = |args: &[&str]| match parse(args).unwrap().command {
            Command::Peer(PeerCommand::Add { name, underlay_ip, pod_cidr, mode, vtep_mac }) => {
                Request::SetPeer(name, PeerSpec { underlay_ip, pod_cidr, mode, vtep_mac })
            }
            Command::Peer(PeerCommand::Del { name }) => Request::DelPeer(name),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            request(&[
                "peer",
                "add",
                "n3",
                "--underlay-ip",
                "198.18.0.3",
                "--pod-cidr",
                "10.244.3.0/24",
                "--mode",
                "vxlan",
                "--vtep-mac",
                "02:00:00:00:00:03",
            ]),
            Request::SetPeer(
                "n3".into(),
                PeerSpec {
                    underlay_ip: "198.18.0.3".into(),
                    pod_cidr: "10.244.3.0/24".into(),
                    mode: Some("vxlan".into()),
                    vtep_mac: Some("02:00:00:00:00:03".into()),
                }
            )
        );
        assert_eq!(request(&["peer", "del", "n3"]), Request::DelPeer("n3".into()));
        for args in [
            &["peer", "add", "n3", "--underlay-ip", "198.18.0.3"][..],
            &["peer", "add", "--underlay-ip", "198.18.0.3", "--pod-cidr", "10.244.3.0/24"],
            &["peer", "del"],
            &["show", "peers", "extra"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn port_set_usage_errors() {
        for args in [
            &["port", "set", "p1"][..],
            &["port", "set", "p1", "--up", "--down"],
            &["port", "set", "p1", "--access", "10", "--trunk", "20"],
            &["port", "set", "p1", "--native", "1"],
            &["port", "set", "p1", "--trunk", "10,x"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
