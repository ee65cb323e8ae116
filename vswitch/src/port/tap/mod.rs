//! TAP ports with the virtio-net header: the pod's interface is a TAP device that lives in the
//! pod's network namespace, while the switch holds its file descriptors.
//!
//! # Why TAP
//! A veth pair hands the switch (through AF_XDP or AF_PACKET) wire-sized frames with complete
//! checksums: every TCP segment of a bulk transfer is built, checksummed and switched on its
//! own. A TAP device opened with `IFF_VNET_HDR` and told with `TUNSETOFFLOAD` that it accepts
//! `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` makes the pod's stack behave as it does on a virtio
//! NIC: it hands over TCP segments of up to 64 KB with a partial checksum and a virtio-net
//! header saying how to finish them (GSO type and segment size, checksum start and offset),
//! and it accepts such segments from us. Between two pods on one node nothing ever needs to be
//! segmented or checksummed: one `write` moves 64 KB. A plain `select()` loop forwarding
//! between two TAP devices this way moved 10.7 Gbit/s of iperf3 TCP on the development
//! machine, against 1 Gbit/s with the offloads off; this port in a test loop moves the same
//! (below).
//!
//! # Data flow
//! ```text
//!  pod stack -> tap0 (pod netns) -> queue fd: readv [vnet hdr | big buffer], a batch of them
//!      per io_uring_enter -> rx(): parse header into Meta::offload (raw, untrusted); small
//!      frames copied into a pool frame
//!  Batch -> tx(): vnet hdr from Meta::offload, writev [hdr | packet] to queue hash % queues,
//!      the batch in one io_uring_enter -> tap0 -> pod stack
//! ```
//! The device is created from a thread that has entered the pod's namespace (`TUNSETIFF`
//! creates the interface in the namespace of the calling thread); the descriptors work from
//! any thread afterwards. With `queues > 1` the device is multi-queue and each queue is one
//! descriptor (`TUNSETIFF` again with the same name); the pod's stack spreads its flows over
//! them by its own hash, and the switch picks the queue for a packet by `Meta::hash`.
//! The first `TUNSETIFF` carries `IFF_TUN_EXCL`, so an existing device of that name (for
//! instance one left persistent by someone else) is never taken over. The device is not
//! persistent: closing the descriptors (dropping the port) deletes it.
//!
//! # The header
//! 12 bytes (`struct virtio_net_hdr_v1`, the `num_buffers` variant), little-endian
//! (`TUNSETVNETLE`, a no-op on little-endian hosts): the layout of virtio 1.0, which a
//! vhost-user port speaks too, so both share one parser. The kernel leaves `num_buffers` alone
//! on read and ignores it on write. `TUN_F_TSO_ECN` is *not* offered: [`Offload`] has no ECN
//! bit to carry `VIRTIO_NET_HDR_GSO_ECN` through the switch, so the kernel segments the rare
//! CWR-marked segment itself; UDP segmentation offload (`TUN_F_USO4/6`, kernel 6.2) is
//! offered only on request ([`TapConfig::uso`]).
//!
//! # Trust
//! The pod writes the header: it is untrusted. `rx` only stores it in `Meta::offload` (GSO
//! type mapped to [`GsoType`], `gso_size`, `csum_start`/`csum_offset` relative to the first
//! byte of the frame, `csum_partial` from `NEEDS_CSUM`, `csum_valid` from `DATA_VALID`); the
//! pipeline's GSO stage validates it against the packet before anything relies on it. A header
//! that cannot be represented (unknown GSO type, the ECN bit) is dropped here and counted. In
//! the other direction `tx` writes whatever `Meta::offload` says; the kernel's
//! `virtio_net_hdr_to_skb` checks it again before the pod's stack sees the packet.
//!
//! # Buffers
//! Each read goes into a 128 KiB big buffer, so any packet arrives whole in one `readv`. (The
//! batched path below reads into a frame and on into a big buffer behind it, at the offsets
//! the packet will have there: a small packet lands in its frame, a larger one costs the copy
//! of a frame's worth in front of the rest; each read of a batch needs a free big buffer.) A
//! packet that fits a pool frame is then copied into one (through a bounce buffer held by the
//! port: the pool lends one buffer at a time) and the big buffer serves the next read; a
//! larger one keeps the big buffer. Measured with 64-byte UDP through two TAP ports on the
//! development machine (2 cores, release build): 0.8-1.1 µs per received packet this way and
//! 0.85-0.95 µs reading straight into a frame, the run-to-run noise larger than the
//! difference: the syscall is the cost, the copy of a small frame is not. Reading big packets
//! straight into their final buffer is what matters (no 64 KB copy), and that needs a buffer
//! that fits any packet in front of every read. Without a free big buffer the port reads into
//! a frame, and drops (and counts) a packet that did not fit. (A cut read is recognised by
//! filling its buffer: the kernel reports the copied length, not the packet's, so a packet is
//! accepted only if it leaves at least one byte of the buffer free.) The port holds no pool buffer
//! between calls, so [`Port::drain`] has nothing to do.
//!
//! # Batched syscalls
//! A TAP queue moves one packet per `read`/`write`, and a tun descriptor has no batched call
//! of its own (`recvmmsg`/`sendmmsg` need a socket; vhost-net's rings need a guest memory
//! table). With TSO that is one syscall per 64 KB, which is what makes TAP fast for TCP:
//! iperf3 between two pods through two TAP ports and a test loop (`rx` from one, `tx` to the
//! other, offload state kept) moved 10.8-12.9 Gbit/s, with 60% of the data direction's
//! packets 64 KB TCPv4 GSO segments. For small packets it is a syscall per packet each way:
//! about 1 µs per `readv` and 1.5-3 µs per `writev` (most of it the kernel's work on the
//! packet, below), plus one `readv` per `rx` that finds the queue empty.
//!
//! So the port batches through io_uring ([`TapIo::IoUring`], the default; `uring.rs`). Per
//! `rx`, each queue gets as many `readv`s as it is expected to fill, each into a frame with a
//! big buffer behind it (see "Buffers"), all submitted and completed in one `io_uring_enter`;
//! per `tx`, one `writev` per packet, the whole batch in one `io_uring_enter`. A queue's
//! expectation doubles while all its reads bring a packet (up to the batch) and falls to one
//! more than it got otherwise. Only batches of three or more go through the ring: an `rx`
//! when a queue brought two or more packets last time, a `tx` of three or more packets. One
//! operation costs more through io_uring than as a syscall (below), so sparse,
//! request/response traffic keeps the plain calls and only a backlog is batched.
//!
//! Every operation carries `RWF_NOWAIT`, so the kernel runs it inline while it consumes the
//! submission queue (an empty queue answers `-EAGAIN` instead of arming a poll; a write that
//! cannot go at once answers `-EAGAIN` instead of moving to an io-wq thread), and each call
//! waits for all its completions. Nothing is left with the kernel between two calls, hence:
//! reads go straight into the worker's pool buffers (of a 64 KB segment only a frame's worth
//! is copied) and neither the pool nor the port has to outlive the other; dropping the port
//! needs no cancellation; `tx` reports exactly what became of each packet, as `writev` did.
//!
//! Weighed and not done: N reads kept armed per queue, reaped from the completion queue with
//! no syscall. The kernel holds an armed read's buffer for as long as the queue stays idle, so
//! it must be the port's own (a pool buffer may not outlive the pool), of 64 KB to take any
//! packet, and every 64 KB segment is then copied out of it; an arriving packet wakes every
//! read armed on the queue (each retries, all but one find it empty again); and armed reads
//! complete in task work, which runs only when the worker enters the kernel anyway (or is
//! interrupted for it), so the syscall is not saved in a polling loop. SQPOLL (a kernel thread
//! polling the submission queue) would spend a core that 2-core nodes do not have. The ring
//! is per port: the worker calls its ports one by one, and a ring per worker would need the
//! worker to know about it.
//!
//! Where io_uring cannot be set up (`ENOSYS`; `EPERM` under `kernel.io_uring_disabled = 2` or
//! a seccomp filter that blocks it, as container runtimes' default profiles now do) or refuses
//! `RWF_NOWAIT`, the port says why ([`TapPort::io_fallback`], a warning in the log, `readv` at
//! the end of its `kind`) and moves one packet per `readv`/`writev`: [`TapIo::Readv`], which
//! `tap_io = "readv"` also chooses. [`TapStats::syscalls`] counts either kind of call.
//!
//! Measured on the development machine (2 vCPUs, nested guest):
//! - System calls: 0.09-0.5 per forwarded packet in the test loop below under a 64-byte flood
//!   (`bench_flood_cpu_per_packet_uring_vs_readv`), against 2.0-2.3 with readv/writev.
//! - Their price: a bare syscall costs about 160 ns here and an empty `readv` 280 ns, while
//!   io_uring costs 200-400 ns per operation even 32 to an `io_uring_enter` (600 ns for one
//!   alone): the syscall is not what a TAP packet costs, the kernel's work on it is (a 106-byte
//!   `writev` into a pod's stack is 600-700 ns either way). The forwarding thread's CPU time
//!   per packet in the test loop stays within the noise of readv's (1.2-2.2 µs either way).
//! - Where it pays is delivering to a pod that is receiving: `benches/e2e.sh` with variants
//!   `tap` and `tap-readv` in the same run, two runs on a quiet machine: iperf3 UDP 64 B
//!   delivered 272 and 294 kpps against 152 and 173 (1.8x and 1.7x; 0.49x and 0.89x the kernel
//!   bridge against 0.27x and 0.52x): a batch of writes wakes the receiving socket once. The
//!   106-byte trafgen flood into a port nothing listens on is unchanged within the noise (381
//!   and 337 against 415 and 340 kpps; the worker is busy 100% either way), TCP the same or better
//!   (27.6 and 25.7 Gbit/s against 20.2 and 23.5), CRR and sockperf latency the same (23.5k
//!   against 16.5-21.4k conn/s, once the threshold above kept lone packets off the ring: with
//!   every packet through it, CRR lost 18%).
//!
//! Hence io_uring is the default.
//!
//! A `writev` to a TAP runs the pod's receive path (`netif_receive_skb`, IP, TCP, waking the
//! socket) in the calling thread: the 15 µs per 64 KB `tx` measured above is mostly the
//! pod's TCP receive, charged to the switch's core rather than to the pod.
//!
//! Setting the interface's MAC address, MTU, addresses and state is the caller's job (the CNI
//! plugin).

mod sys;
pub mod uplink;
mod uring;

pub use uring::RingError;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::packet::{Batch, GsoType, Meta, Offload, Pkt, Pool, BIG_BUFFER_SIZE};
use crate::port::{Port, RxDrops, TxReport};
use crate::types::PortId;
use uring::{Ring, RxSlot, TxSlot};

/// Length of the virtio-net header in front of every packet: the extended layout of Linux 6.17
/// (`virtio_net_hdr_v1_hash_tunnel`): the 12 bytes of `virtio_net_hdr_v1`, a hash report the
/// switch neither asks for nor reads (8 bytes), and the offsets of the outer transport header
/// and the inner network header of a UDP tunnel GSO packet (2 + 2). Every TAP port uses it
/// (`TUNSETVNETHDRSZ`), so one read and write path serves all; the tunnel offsets mean
/// something only on a port that negotiated `TUN_F_UDP_TUNNEL_GSO` ([`TapConfig::tunnel`]),
/// and are zero elsewhere.
pub const VNET_HDR_LEN: usize = 24;
/// The `virtio_net_hdr_v1` part of the header.
const CORE_HDR_LEN: usize = 12;
/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17): the device takes and gives UDP tunnel GSO packets.
pub const TUN_F_UDP_TUNNEL_GSO: u32 = 0x080;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`, ORed into `gso_type` with the inner packet's type.
const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// How far a VXLAN packet's inner network header lies behind its outer UDP header: UDP (8),
/// VXLAN (8), inner Ethernet (14).
const OUTER_TH_TO_INNER_NH: u16 = 30;

/// `virtio_net_hdr.flags`.
const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
/// `virtio_net_hdr.gso_type`.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
// `VIRTIO_NET_HDR_GSO_ECN` (0x80) is never offered (no `TUN_F_TSO_ECN`) and refused on rx.

/// The fewest operations worth an `io_uring_enter`: one or two go as plain syscalls.
const BATCH_FROM: usize = 3;

/// The largest number of queues of a tun device (`MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// Options of a TAP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapConfig {
    /// Number of queues (descriptors); more than one makes the device multi-queue.
    pub queues: usize,
    /// Accept partial checksums and TCP segmentation offload (IPv4 and IPv6) from the pod.
    /// Off, the pod's stack hands over finished, wire-sized frames.
    pub offload: bool,
    /// Also accept UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`, kernel 6.2 or later;
    /// needs `offload`). The rest of the switch must then segment [`GsoType::UdpL4`].
    pub uso: bool,
    /// The device outlives the port (`TUNSETPERSIST`): a pod keeps its interface, addresses
    /// and routes while vswitchd restarts, and the next `create` attaches to the device that
    /// is there instead of refusing it. [`destroy`] removes it for good.
    pub persist: bool,
    /// How packets cross the queue descriptors (see [`TapIo`]).
    pub io: TapIo,
    /// Also take and give UDP tunnel GSO (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17; needs
    /// `offload`): VXLAN around a 64 KB segment crosses whole. For the node's uplink
    /// ([`uplink`]); a pod's TAP never negotiates it, and a tunnel header from one is refused.
    pub tunnel: bool,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            queues: 1,
            offload: true,
            uso: false,
            persist: false,
            io: TapIo::default(),
            tunnel: false,
        }
    }
}

/// How a TAP port moves packets through its queue descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TapIo {
    /// A batch of reads or writes per `io_uring_enter` (the default: see "Batched syscalls" in
    /// the module documentation); falls back to [`TapIo::Readv`] where io_uring cannot be set
    /// up, saying why in [`TapPort::io_fallback`].
    #[default]
    IoUring,
    /// One `readv` per received packet (and one that finds the queue empty), one `writev` per
    /// sent packet.
    Readv,
}

/// Deletes the persistent TAP device `ifname` in `netns` (see [`TapConfig::persist`]) once no
/// port holds it any more: attaches, clears the persistence and lets go. A device that is not
/// there is not an error.
pub fn destroy(netns: Option<&str>, ifname: &str, queues: usize) -> Result<(), TapError> {
    check_name(ifname)
        .map_err(|reason| TapError::InvalidName { ifname: ifname.to_string(), reason })?;
    let name = ifname.to_string();
    let r = in_netns_named(netns, ifname, move || {
        if crate::port::netdev::ifindex(&name).is_err() {
            return Ok(());
        }
        let fd = sys::open_tun().map_err(|e| ("open(/dev/net/tun)", e))?;
        sys::set_iff(fd.as_fd(), &name, tap_flags(queues)).map_err(|e| ("ioctl(TUNSETIFF)", e))?;
        sys::set_persist(fd.as_fd(), false).map_err(|e| ("ioctl(TUNSETPERSIST)", e))?;
        Ok(())
    });
    match r {
        // The namespace is gone, and the device with it: a pod's runtime deletes the
        // namespace once DEL has answered, possibly before the switch gets to the device.
        Err(TapError::Netns { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The `TUNSETIFF` flags of the switch's TAP devices with `queues` queues.
fn tap_flags(queues: usize) -> libc::c_int {
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if queues > 1 {
        flags | libc::IFF_MULTI_QUEUE
    } else {
        flags
    }
}

/// Runs `f` (device calls on TAP `ifname`) in namespace `netns` (`None`: the switch's own),
/// turning a failure into the error that names the interface, the namespace and the call.
fn in_netns_named<T: Send + 'static>(
    netns: Option<&str>,
    ifname: &str,
    f: impl FnOnce() -> Result<T, (&'static str, io::Error)> + Send + 'static,
) -> Result<T, TapError> {
    let ns_label = netns.map_or_else(|| "the switch's namespace".to_string(), netns_path);
    let r = match netns {
        None => f(),
        Some(ns) => {
            let path = netns_path(ns);
            netdev_in_netns(&path, f).map_err(|source| TapError::Netns {
                ifname: ifname.to_string(),
                netns: path.clone(),
                source,
            })?
        }
    };
    r.map_err(|(op, source)| TapError::Create {
        ifname: ifname.to_string(),
        netns: ns_label,
        op,
        source,
    })
}

/// Errors of a TAP port. Messages name the interface, the namespace and the failing call, and
/// carry the OS error.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error("tap {ifname:?}: invalid interface name: {reason}")]
    InvalidName { ifname: String, reason: &'static str },
    /// Options the port cannot honour.
    #[error("tap {ifname}: invalid configuration: {reason}")]
    Config { ifname: String, reason: String },
    /// The network namespace could not be opened or entered.
    #[error("tap {ifname}: network namespace {netns}: {source}")]
    Netns { ifname: String, netns: String, source: io::Error },
    /// A call made while creating the device failed; `op` names it.
    #[error("tap {ifname} in {netns}: {op}: {source}")]
    Create { ifname: String, netns: String, op: &'static str, source: io::Error },
}

/// Counters of a TAP port since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Received packets with a GSO type (larger than the MTU, to be segmented on the way out
    /// unless the output accepts them).
    pub rx_gso: u64,
    /// Received packets with a partial checksum.
    pub rx_csum_partial: u64,
    /// Reads shorter than the virtio-net header.
    pub rx_short: u64,
    /// Packets that filled the buffer they were read into, so possibly cut short (no big
    /// buffer was free, or larger than a big buffer).
    pub rx_truncated: u64,
    /// Packets dropped because the pool had no frame for them.
    pub rx_no_buffer: u64,
    /// Packets whose header names a GSO type the switch cannot carry.
    pub rx_bad_header: u64,
    /// Reads that failed with an error other than `EAGAIN`.
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets sent with a GSO type.
    pub tx_gso: u64,
    /// Packets freed because the queue was full (`EAGAIN`).
    pub tx_ring_full: u64,
    /// Packets the kernel refused (bad header or length: `EINVAL`).
    pub tx_errors: u64,
    /// Packets not sent because the interface was down (`EIO`: the pod has not set it up).
    pub tx_link_down: u64,
    /// System calls made to move packets: `readv`/`writev`, or `io_uring_enter`.
    pub syscalls: u64,
}

/// A TAP port. See the module documentation.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    netns: Option<String>,
    queues: Vec<OwnedFd>,
    offloads: u32,
    /// Queue the next `rx` starts with, so that no queue starves behind a busy one.
    next_rx: usize,
    /// Holds a small packet between its big read buffer and its frame.
    bounce: Vec<u8>,
    stats: TapStats,
    /// The batched path; `None`: readv/writev.
    ring: Option<Ring>,
    /// Why io_uring was asked for and is not used.
    io_fallback: Option<String>,
    /// Per queue: reads to submit in the next `rx` (grows while they all bring a packet).
    rx_want: Vec<u16>,
    /// Per queue: reads submitted and packets they brought in this `rx`.
    rx_planned: Vec<u16>,
    rx_got: Vec<u16>,
    /// The operations of one batched call (capacity kept between calls: no allocation).
    rx_slots: Vec<RxSlot>,
    tx_slots: Vec<TxSlot>,
}

/// The header bits that cannot be carried through the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadVnetHdr {
    pub gso_type: u8,
}

/// The offload state of a received packet from its virtio-net header, unchecked: only the GSO
/// type is mapped (and refused when it has no [`GsoType`]). With `tunnel` (the port negotiated
/// UDP tunnel GSO) a tunnel header gives the inner packet's state and
/// [`Offload::tunnel_inner`]; without it, or for an IPv6 underlay or an outer checksum to fill
/// in, the header is refused. The L3 stage checks a tunnel packet's state against its inner
/// packet when it decapsulates it.
pub fn parse_vnet_hdr(h: &[u8; VNET_HDR_LEN], tunnel: bool) -> Result<Offload, BadVnetHdr> {
    let t = h[1];
    if tunnel && t & GSO_UDP_TUNNEL_IPV4 != 0 && t & !GSO_UDP_TUNNEL_IPV4 != GSO_NONE {
        let mut o = parse_core(h, t & !GSO_UDP_TUNNEL_IPV4)?;
        o.tunnel_inner = u16::from_le_bytes([h[22], h[23]]).max(1);
        return Ok(o);
    }
    parse_core(h, t)
}

/// The `virtio_net_hdr_v1` part of `h`, with GSO type `t` (`VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`,
/// 0x08, is an unknown flag here: refused by the caller's validation like any other).
fn parse_core(h: &[u8; VNET_HDR_LEN], t: u8) -> Result<Offload, BadVnetHdr> {
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let gso_type = match t {
        GSO_NONE => GsoType::None,
        GSO_TCPV4 => GsoType::TcpV4,
        GSO_TCPV6 => GsoType::TcpV6,
        GSO_UDP_L4 => GsoType::UdpL4,
        t => return Err(BadVnetHdr { gso_type: t }),
    };
    let csum_partial = h[0] & F_NEEDS_CSUM != 0;
    Ok(Offload {
        csum_partial,
        csum_valid: h[0] & F_DATA_VALID != 0,
        csum_start: if csum_partial { u16_at(6) } else { 0 },
        csum_offset: if csum_partial { u16_at(8) } else { 0 },
        gso_type,
        gso_size: if gso_type == GsoType::None { 0 } else { u16_at(4) },
        tunnel_inner: 0,
    })
}

/// The virtio-net header for sending `data` with the offload state `o`. `hdr_len` (a hint for
/// how much of the packet the kernel puts in the skb's linear part) covers the headers up to
/// the end of the L4 header when the packet is long enough to say. A UDP tunnel GSO packet
/// (`o.tunnel_inner`, made only by VXLAN encapsulation towards a port that takes it) gets the
/// tunnel type bit and the outer UDP and inner IP offsets.
pub fn build_vnet_hdr(o: &Offload, data: &[u8]) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    h[..CORE_HDR_LEN].copy_from_slice(&build_core(o, data));
    if o.tunnel_inner != 0 && o.gso_type != GsoType::None {
        h[1] |= GSO_UDP_TUNNEL_IPV4;
        let outer_th = o.tunnel_inner.saturating_sub(OUTER_TH_TO_INNER_NH);
        h[20..22].copy_from_slice(&outer_th.to_le_bytes());
        h[22..24].copy_from_slice(&o.tunnel_inner.to_le_bytes());
    }
    h
}

/// The `virtio_net_hdr_v1` part of [`build_vnet_hdr`].
fn build_core(o: &Offload, data: &[u8]) -> [u8; CORE_HDR_LEN] {
    let mut h = [0u8; CORE_HDR_LEN];
    if o.csum_partial {
        h[0] = F_NEEDS_CSUM;
        h[6..8].copy_from_slice(&o.csum_start.to_le_bytes());
        h[8..10].copy_from_slice(&o.csum_offset.to_le_bytes());
    } else if o.csum_valid {
        h[0] = F_DATA_VALID;
    }
    let (t, l4_len) = match o.gso_type {
        GsoType::None => return h,
        GsoType::TcpV4 | GsoType::TcpV6 => {
            let t = if o.gso_type == GsoType::TcpV4 { GSO_TCPV4 } else { GSO_TCPV6 };
            // TCP data offset: the high nibble of byte 12 of the TCP header, in words.
            let doff =
                data.get(usize::from(o.csum_start) + 12).map_or(20, |b| usize::from(b >> 4) * 4);
            (t, doff.max(20))
        }
        GsoType::UdpL4 => (GSO_UDP_L4, 8),
    };
    h[1] = t;
    let hdr_len = (usize::from(o.csum_start) + l4_len).min(data.len()).min(usize::from(u16::MAX));
    h[2..4].copy_from_slice(&(hdr_len as u16).to_le_bytes());
    h[4..6].copy_from_slice(&o.gso_size.to_le_bytes());
    h
}

/// Checks that `name` can be an interface name (`dev_valid_name` in the kernel).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() >= libc::IFNAMSIZ {
        Err("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Err("\".\" and \"..\" are reserved")
    } else if name.bytes().any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace()) {
        Err("contains NUL, '/', ':' or whitespace")
    } else {
        Ok(())
    }
}

/// A namespace argument as a path: names without a '/' are taken as `ip netns` names.
fn netns_path(netns: &str) -> String {
    if netns.contains('/') {
        netns.to_string()
    } else {
        format!("/var/run/netns/{netns}")
    }
}

impl TapPort {
    /// Creates the TAP device `ifname` in the network namespace `netns` (a path such as
    /// `/var/run/netns/pod1` or `/proc/PID/ns/net`, or an `ip netns` name; `None` for the
    /// caller's own namespace) and opens its queues. The device is left down and unaddressed.
    pub fn create(netns: Option<&str>, ifname: &str, cfg: TapConfig) -> Result<TapPort, TapError> {
        check_name(ifname)
            .map_err(|reason| TapError::InvalidName { ifname: ifname.to_string(), reason })?;
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(TapError::Config {
                ifname: ifname.to_string(),
                reason: format!("{} queues (1 to {MAX_QUEUES})", cfg.queues),
            });
        }
        if cfg.uso && !cfg.offload {
            return Err(TapError::Config {
                ifname: ifname.to_string(),
                reason: "UDP segmentation offload needs checksum offload".into(),
            });
        }
        let mut offloads = 0;
        if cfg.offload {
            offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        }
        if cfg.uso {
            offloads |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
        }
        if cfg.tunnel {
            if !cfg.offload {
                return Err(TapError::Config {
                    ifname: ifname.to_string(),
                    reason: "UDP tunnel GSO needs checksum and segmentation offload".into(),
                });
            }
            offloads |= TUN_F_UDP_TUNNEL_GSO;
        }
        let (persist, queues, name) = (cfg.persist, cfg.queues, ifname.to_string());
        let (name, queues) =
            in_netns_named(netns, ifname, move || open_queues(name, queues, offloads, persist))?;
        let (ring, io_fallback) = match cfg.io {
            TapIo::Readv => (None, None),
            TapIo::IoUring => match new_ring(&queues) {
                Ok(r) => (Some(r), None),
                Err(e) => {
                    tracing::warn!(port = %name, "tap: io_uring unavailable, using readv/writev: {e}");
                    (None, Some(e.to_string()))
                }
            },
        };
        let nq = queues.len();
        Ok(TapPort {
            name,
            netns: netns.map(netns_path),
            queues,
            offloads,
            next_rx: 0,
            bounce: Vec::new(),
            stats: TapStats::default(),
            ring,
            io_fallback,
            rx_want: vec![1; nq],
            rx_planned: vec![0; nq],
            rx_got: vec![0; nq],
            rx_slots: Vec::with_capacity(uring::ENTRIES),
            tx_slots: Vec::with_capacity(uring::ENTRIES),
        })
    }

    /// How the port moves packets now: [`TapIo::IoUring`] unless it was configured with
    /// [`TapIo::Readv`] or io_uring could not serve it (see [`TapPort::io_fallback`]).
    pub fn io(&self) -> TapIo {
        if self.ring.is_some() {
            TapIo::IoUring
        } else {
            TapIo::Readv
        }
    }

    /// Why the port uses readv/writev although it was configured with io_uring.
    pub fn io_fallback(&self) -> Option<&str> {
        self.io_fallback.as_deref()
    }

    /// The namespace the device lives in (`None`: the switch's own).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Counters since the port was created.
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// Reads one packet from queue `q` into the pool and appends it to `batch`. Returns
    /// `false` when the queue is empty or failed (stop reading it for this call).
    fn rx_one<const N: usize>(
        &mut self,
        q: usize,
        id: PortId,
        pool: &mut Pool,
        batch: &mut Batch<N>,
        big: &mut Option<Pkt>,
    ) -> bool {
        let frame_room = pool.frame_size() - pool.headroom();
        let mut hdr = [0u8; VNET_HDR_LEN];
        if big.is_none() {
            *big = pool.alloc_big();
        }
        // Read into the big buffer when there is one, else straight into a frame.
        let (mut p, cap) = match big.take() {
            Some(mut b) => {
                let cap = BIG_BUFFER_SIZE - b.headroom();
                pool.truncate(&mut b, 0);
                (b, cap)
            }
            None => match pool.alloc() {
                Some(f) => (f, frame_room),
                None => {
                    // No buffer at all: leave the packet queued in the kernel.
                    return false;
                }
            },
        };
        let Some(buf) = pool.append(&mut p, cap) else {
            pool.free(p);
            return false;
        };
        self.stats.syscalls += 1;
        let n = match sys::read_packet(self.queues[q].as_fd(), &mut hdr, buf) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.stats.rx_errors += 1;
                }
                self.recycle(pool, p, big);
                return false;
            }
        };
        if let Some(left) = self.accept(id, pool, batch, p, cap, n, &hdr) {
            self.recycle(pool, left, big);
        }
        true
    }

    /// Turns a read of `n` bytes (header included) into `p`, whose buffer had room for `cap`
    /// bytes of frame, into a packet on `batch`, or a counted drop. Returns the buffer when it
    /// is left over: the packet was dropped, or small enough to be copied into a frame.
    #[allow(clippy::too_many_arguments)]
    fn accept<const N: usize>(
        &mut self,
        id: PortId,
        pool: &mut Pool,
        batch: &mut Batch<N>,
        mut p: Pkt,
        cap: usize,
        n: usize,
        hdr: &[u8; VNET_HDR_LEN],
    ) -> Option<Pkt> {
        let frame_room = pool.frame_size() - pool.headroom();
        if n < VNET_HDR_LEN {
            self.stats.rx_short += 1;
            return Some(p);
        }
        let len = n - VNET_HDR_LEN;
        // The kernel copies what fits and reports that length (6.x) or, in some versions, the
        // full one; either way a packet filling the buffer to the last byte may have been cut,
        // so one that fits leaves at least a byte free.
        if len >= cap {
            self.stats.rx_truncated += 1;
            return Some(p);
        }
        let offload = match parse_vnet_hdr(hdr, self.offloads & TUN_F_UDP_TUNNEL_GSO != 0) {
            Ok(o) => o,
            Err(_) => {
                self.stats.rx_bad_header += 1;
                return Some(p);
            }
        };
        pool.truncate(&mut p, len);
        let (p, left) = if p.is_big() && len <= frame_room {
            // A small packet: into a frame, and the big buffer reads the next one.
            let Some(mut f) = pool.alloc() else {
                self.stats.rx_no_buffer += 1;
                return Some(p);
            };
            if self.bounce.len() < frame_room {
                self.bounce.resize(frame_room, 0);
            }
            self.bounce[..len].copy_from_slice(pool.data(&p));
            if let Some(dst) = pool.append(&mut f, len) {
                dst.copy_from_slice(&self.bounce[..len]);
            }
            (f, Some(p))
        } else {
            (p, None)
        };
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        self.stats.rx_gso += u64::from(offload.gso_type != GsoType::None);
        self.stats.rx_csum_partial += u64::from(offload.csum_partial);
        let mut m = Meta::rx(id);
        m.offload = offload;
        if self.offloads & TUN_F_UDP_TUNNEL_GSO != 0
            && offload.csum_partial
            && offload.gso_type == GsoType::None
        {
            // The uplink: the kernel hands over what it got as it got it, so a VXLAN packet
            // from a local sender may come with its *inner* checksum left partial, which the
            // parse stage would refuse as not the packet's own. One frame: finish it here.
            if crate::packet::gso::complete_checksum(pool.data_mut(&p), &offload).is_err() {
                self.stats.rx_bad_header += 1;
                pool.free(p);
                return left;
            }
            m.offload.csum_partial = false;
        }
        if let Err(p) = batch.push(p, m) {
            // The caller checks the room first; never reached.
            pool.free(p);
        }
        left
    }

    /// `rx` through the ring: per queue (from `next_rx` on) as many reads as it wants, each
    /// into a frame with a big buffer behind it, all submitted and completed in one
    /// `io_uring_enter`; then each read is taken as [`TapPort::rx_one`] takes its one.
    fn rx_batched<const N: usize>(
        &mut self,
        id: PortId,
        pool: &mut Pool,
        batch: &mut Batch<N>,
    ) -> usize {
        let start = batch.len();
        let nq = self.queues.len();
        let first = self.next_rx;
        self.next_rx = (first + 1) % nq;
        let frame_room = pool.frame_size() - pool.headroom();
        // Each read goes into a frame, and on into a big buffer behind it if the packet is
        // longer: a small packet lands where it stays, a large one costs a frame's copy. A
        // read needs a big buffer for that; without a free one, reads go into frames alone
        // (a larger packet is then cut and counted), as `rx_one` does.
        let bigs = pool.free_big_buffers();
        let max = batch.room().min(uring::ENTRIES).min(if bigs > 0 { bigs } else { usize::MAX });
        let mut slots = std::mem::take(&mut self.rx_slots);
        self.rx_planned.fill(0);
        self.rx_got.fill(0);
        'plan: for k in 0..nq {
            let q = (first + k) % nq;
            for _ in 0..self.rx_want[q] {
                if slots.len() >= max {
                    break 'plan;
                }
                let Some(mut p) = pool.alloc() else {
                    break 'plan; // leave the packets queued in the kernel
                };
                let tail = if bigs > 0 {
                    match pool.alloc_big() {
                        Some(mut t) => {
                            let cap = BIG_BUFFER_SIZE - t.headroom();
                            if pool.append(&mut t, cap).is_none() {
                                pool.free(t);
                                pool.free(p);
                                break 'plan;
                            }
                            Some(t)
                        }
                        None => {
                            pool.free(p);
                            break 'plan;
                        }
                    }
                } else {
                    None
                };
                if pool.append(&mut p, frame_room).is_none() {
                    pool.free(p);
                    if let Some(t) = tail {
                        pool.free(t);
                    }
                    break 'plan;
                }
                slots.push(RxSlot { q: q as u16, pkt: p, tail });
                self.rx_planned[q] += 1;
            }
        }
        if slots.is_empty() {
            self.rx_slots = slots;
            return 0;
        }
        let Some(ring) = self.ring.as_mut() else {
            for s in slots.drain(..) {
                pool.free(s.pkt);
                if let Some(t) = s.tail {
                    pool.free(t);
                }
            }
            self.rx_slots = slots;
            return 0;
        };
        let before = ring.enters;
        let done = ring.read(pool, &slots);
        self.stats.syscalls += ring.enters - before;
        for (i, s) in slots.drain(..).enumerate() {
            let (res, hdr) = match self.ring.as_ref() {
                Some(r) => (r.result(i), *r.hdr(i)),
                None => (-libc::EIO, [0; VNET_HDR_LEN]),
            };
            let q = usize::from(s.q);
            if res < 0 {
                if res != -libc::EAGAIN {
                    self.stats.rx_errors += 1;
                }
                pool.free(s.pkt);
                if let Some(t) = s.tail {
                    pool.free(t);
                }
                continue;
            }
            self.rx_got[q] += 1;
            let n = res as usize;
            // The packet as one buffer: the frame, or the big buffer with the frame's part
            // copied in front of the rest.
            let (p, cap) = match s.tail {
                // (A packet that fills the frame exactly may go on: only the big buffer can
                // tell a whole one from a cut one.)
                Some(t) if n >= VNET_HDR_LEN + frame_room => {
                    if self.bounce.len() < frame_room {
                        self.bounce.resize(frame_room, 0);
                    }
                    self.bounce[..frame_room].copy_from_slice(pool.data(&s.pkt));
                    pool.data_mut(&t)[..frame_room].copy_from_slice(&self.bounce[..frame_room]);
                    pool.free(s.pkt);
                    let cap = t.len();
                    (t, cap)
                }
                Some(t) => {
                    pool.free(t);
                    (s.pkt, frame_room)
                }
                None => (s.pkt, frame_room),
            };
            if let Some(left) = self.accept(id, pool, batch, p, cap, n, &hdr) {
                pool.free(left);
            }
        }
        self.rx_slots = slots;
        // A queue whose reads all brought a packet may hold more: ask twice as many next
        // time; otherwise one more than it had, so an idle queue costs one read.
        for q in 0..nq {
            let (want, planned, got) = (self.rx_want[q], self.rx_planned[q], self.rx_got[q]);
            if planned == 0 {
                continue;
            }
            self.rx_want[q] = if got == planned {
                if planned == want {
                    (want * 2).min(uring::ENTRIES as u16)
                } else {
                    want
                }
            } else {
                got + 1
            };
        }
        if let Err(e) = done {
            self.give_up_ring(e);
        }
        batch.len() - start
    }

    /// `tx` through the ring: every packet's write submitted and completed in one
    /// `io_uring_enter` (per [`uring::ENTRIES`] packets).
    fn tx_batched<const N: usize>(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        let mut rep = TxReport::default();
        let nq = self.queues.len();
        let mut slots = std::mem::take(&mut self.tx_slots);
        let mut failed = None;
        batch.drain(|p, m| {
            let q = if nq == 1 { 0 } else { m.hash as usize % nq };
            let hdr = build_vnet_hdr(&m.offload, pool.data(&p));
            slots.push(TxSlot { q: q as u16, hdr, pkt: p });
        });
        while !slots.is_empty() {
            let n = slots.len().min(uring::ENTRIES);
            let done = match self.ring.as_mut() {
                Some(ring) => {
                    let before = ring.enters;
                    let d = ring.write(pool, &slots[..n]);
                    self.stats.syscalls += ring.enters - before;
                    d
                }
                None => Ok(()),
            };
            for (i, s) in slots.drain(..n).enumerate() {
                let mut res = self.ring.as_ref().map_or(-libc::EOPNOTSUPP, |r| r.result(i));
                if res == -libc::EOPNOTSUPP {
                    // The ring could not take it (or is gone): the packet goes the plain way.
                    self.stats.syscalls += 1;
                    res = match sys::write_packet(
                        self.queues[usize::from(s.q)].as_fd(),
                        &s.hdr,
                        pool.data(&s.pkt),
                    ) {
                        Ok(n) => n as i32,
                        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
                    };
                }
                if res >= 0 {
                    rep.sent += 1;
                    rep.sent_bytes += s.pkt.len() as u64;
                    self.stats.tx_gso += u64::from(s.hdr[1] != GSO_NONE);
                } else if res == -libc::EAGAIN {
                    rep.ring_full += 1;
                } else if res == -libc::EIO {
                    rep.link_down += 1;
                } else {
                    rep.errors += 1;
                }
                pool.free(s.pkt);
            }
            if let Err(e) = done {
                // The rest of the batch goes the plain way.
                self.ring = None;
                failed = Some(e);
            }
        }
        self.tx_slots = slots;
        self.count_tx(&rep);
        if let Some(e) = failed {
            self.give_up_ring(e);
        }
        rep
    }

    fn count_tx(&mut self, rep: &TxReport) {
        self.stats.tx_packets += rep.sent as u64;
        self.stats.tx_bytes += rep.sent_bytes;
        self.stats.tx_ring_full += rep.ring_full as u64;
        self.stats.tx_errors += rep.errors as u64;
        self.stats.tx_link_down += rep.link_down as u64;
    }

    /// Drops the ring after a failure that leaves it unusable; the port goes on with
    /// readv/writev. Nothing is in flight: every call waits for its completions.
    #[cold]
    fn give_up_ring(&mut self, e: RingError) {
        self.ring = None;
        tracing::warn!(port = %self.name, "tap: io_uring failed, using readv/writev from now on: {e}");
        self.io_fallback = Some(e.to_string());
    }

    /// Keeps a read buffer that carried no packet for the next read (big) or frees it.
    fn recycle(&mut self, pool: &mut Pool, p: Pkt, big: &mut Option<Pkt>) {
        if p.is_big() && big.is_none() {
            *big = Some(p);
        } else {
            pool.free(p);
        }
    }
}

/// The port's ring, or why there is none.
fn new_ring(queues: &[OwnedFd]) -> Result<Ring, RingError> {
    #[cfg(test)]
    if tests::NO_IO_URING.with(|c| c.get()) {
        return Err(RingError::Setup(io::Error::from_raw_os_error(libc::EPERM)));
    }
    Ring::new(queues)
}

/// Opens `queues` descriptors on the TAP device `name` in the calling thread's namespace.
/// Errors name the failing call.
fn open_queues(
    name: String,
    queues: usize,
    offloads: u32,
    persist: bool,
) -> Result<(String, Vec<OwnedFd>), (&'static str, io::Error)> {
    let flags = tap_flags(queues);
    let mut fds = Vec::with_capacity(queues);
    let mut name = name;
    for q in 0..queues {
        let fd = sys::open_tun().map_err(|e| ("open(/dev/net/tun)", e))?;
        // The first queue must create the device: never attach to someone else's. A
        // persistent device is ours from before a restart: attach to it.
        let excl = if q == 0 && !persist { libc::IFF_TUN_EXCL } else { 0 };
        name =
            sys::set_iff(fd.as_fd(), &name, flags | excl).map_err(|e| ("ioctl(TUNSETIFF)", e))?;
        if q == 0 && persist {
            sys::set_persist(fd.as_fd(), true).map_err(|e| ("ioctl(TUNSETPERSIST)", e))?;
        }
        if q == 0 {
            sys::set_vnet_hdr_sz(fd.as_fd(), VNET_HDR_LEN as libc::c_int)
                .map_err(|e| ("ioctl(TUNSETVNETHDRSZ)", e))?;
            sys::set_vnet_le(fd.as_fd()).map_err(|e| ("ioctl(TUNSETVNETLE)", e))?;
            sys::set_offload(fd.as_fd(), offloads).map_err(|e| ("ioctl(TUNSETOFFLOAD)", e))?;
        }
        fds.push(fd);
    }
    Ok((name, fds))
}

/// [`crate::port::netdev::in_netns`], here so that the port has one place to change if it
/// moves.
fn netdev_in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    crate::port::netdev::in_netns(path, f)
}

impl<const N: usize> Port<N> for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn offloads(&self) -> crate::port::Offloads {
        crate::port::Offloads {
            csum: self.offloads & libc::TUN_F_CSUM != 0,
            tso: self.offloads & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
                == libc::TUN_F_TSO4 | libc::TUN_F_TSO6,
            udp_tunnel: self.offloads & TUN_F_UDP_TUNNEL_GSO != 0,
        }
    }

    fn kind(&self) -> String {
        let mut k = String::from("tap vnet");
        if self.offloads & libc::TUN_F_TSO4 != 0 {
            k.push_str(" tso4/tso6/csum");
        } else {
            k.push_str(" no-offload");
        }
        if self.offloads & libc::TUN_F_USO4 != 0 {
            k.push_str("/uso");
        }
        if self.queues.len() > 1 {
            k.push_str(&format!(" {} queues", self.queues.len()));
        }
        k.push_str(if self.ring.is_some() { " io_uring" } else { " readv" });
        k
    }

    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize {
        if batch.room() == 0 {
            return 0;
        }
        // A batch only pays where a queue had a backlog last time: one operation costs more
        // through io_uring than as a syscall (see "Batched syscalls").
        if self.ring.is_some() && self.rx_want.iter().any(|&w| usize::from(w) >= BATCH_FROM) {
            return self.rx_batched(id, pool, batch);
        }
        let start = batch.len();
        let nq = self.queues.len();
        let first = self.next_rx;
        self.next_rx = (first + 1) % nq;
        let mut big = None;
        for k in 0..nq {
            let q = (first + k) % nq;
            let before = batch.len();
            while batch.room() > 0 && self.rx_one(q, id, pool, batch, &mut big) {}
            // What the batched path would ask of this queue next time.
            self.rx_want[q] = (batch.len() - before + 1).min(uring::ENTRIES) as u16;
            if batch.room() == 0 {
                break;
            }
        }
        if let Some(b) = big {
            pool.free(b);
        }
        batch.len() - start
    }

    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        if self.ring.is_some() && batch.len() >= BATCH_FROM {
            return self.tx_batched(pool, batch);
        }
        let mut rep = TxReport::default();
        let nq = self.queues.len();
        let queues = &self.queues;
        let stats = &mut self.stats;
        batch.drain(|p, m| {
            let q = if nq == 1 { 0 } else { m.hash as usize % nq };
            let data = pool.data(&p);
            let hdr = build_vnet_hdr(&m.offload, data);
            stats.syscalls += 1;
            match sys::write_packet(queues[q].as_fd(), &hdr, data) {
                Ok(_) => {
                    rep.sent += 1;
                    rep.sent_bytes += data.len() as u64;
                    stats.tx_gso += u64::from(m.offload.gso_type != GsoType::None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => rep.ring_full += 1,
                // tun refuses writes while the interface is down (the pod has not set it up).
                Err(e) if e.raw_os_error() == Some(libc::EIO) => rep.link_down += 1,
                Err(_) => rep.errors += 1,
            }
            pool.free(p);
        });
        self.count_tx(&rep);
        rep
    }

    fn rx_drops(&mut self) -> RxDrops {
        let s = &self.stats;
        RxDrops {
            ring_full: 0,
            kernel: 0,
            port: s.rx_short + s.rx_truncated + s.rx_no_buffer + s.rx_bad_header,
        }
    }

    fn poll_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.queues.iter().map(|fd| fd.as_raw_fd()));
    }

    /// A read per queue per pass, even of an empty queue: only when the kernel says so. `rx`
    /// returns 0 only when every queue answered `EAGAIN` (or the pool was empty).
    fn rx_on_readiness(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;
    use pnet_packet::arp::{ArpOperations, ArpPacket};
    use std::net::Ipv4Addr;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    thread_local! {
        /// Makes [`new_ring`] fail on this thread, as in a kernel or container without
        /// io_uring (`kernel.io_uring_disabled = 2`, a seccomp filter).
        pub(super) static NO_IO_URING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A network namespace for one test, deleted on drop (also when the test fails).
    struct Ns {
        name: String,
    }

    impl Ns {
        fn new(letter: char) -> Ns {
            let name = format!("vstap{}{letter}", std::process::id() % 10000);
            // A leftover of a killed run with the same pid.
            let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
            ip(&["netns", "add", &name]);
            Ns { name }
        }

        fn path(&self) -> String {
            format!("/var/run/netns/{}", self.name)
        }

        fn ip(&self, args: &[&str]) -> String {
            let mut a = vec!["-n", self.name.as_str()];
            a.extend_from_slice(args);
            ip(&a)
        }

        fn exec(&self, cmd: &[&str]) -> Command {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.name]).args(cmd);
            c
        }

        /// Adds `addr` to tap0 and sets it up.
        fn up(&self, addr: &str) {
            self.ip(&["addr", "add", addr, "dev", "tap0"]);
            self.ip(&["link", "set", "tap0", "up"]);
        }
    }

    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        }
    }

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A child process (`ip netns exec` execs the command, so this is the command itself),
    /// killed and reaped on drop.
    struct Proc(Child);

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn pool() -> Pool {
        Pool::new(PoolConfig { frames: 1024, frame_size: 2048, headroom: 256, big_buffers: 16 })
            .unwrap()
    }

    fn fds(port: &TapPort) -> Vec<RawFd> {
        let mut v = Vec::new();
        Port::<8>::poll_fds(port, &mut v);
        v
    }

    /// Receives until a packet satisfies `want` (returned) or `timeout` passes; frees the rest.
    fn rx_until(
        port: &mut TapPort,
        pool: &mut Pool,
        timeout: Duration,
        mut want: impl FnMut(&[u8], &Meta) -> bool,
    ) -> Option<(Pkt, Meta)> {
        let deadline = Instant::now() + timeout;
        let fds = fds(port);
        while Instant::now() < deadline {
            let mut b: Batch<8> = Batch::new();
            Port::rx(port, 3, pool, &mut b);
            let mut found = None;
            b.drain(|p, m| {
                if found.is_none() && want(pool.data(&p), &m) {
                    found = Some((p, m));
                } else {
                    pool.free(p);
                }
            });
            if found.is_some() {
                return found;
            }
            let _ = sys::poll_readable(&fds, 50);
        }
        None
    }

    fn is_arp_request(d: &[u8]) -> bool {
        d.len() >= 42 && d[12..14] == [0x08, 0x06] && d[20..22] == [0, 1]
    }

    /// An ARP reply from `mac`/`ip` to the sender of `req`.
    fn arp_reply(req: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
        let mut r = Vec::with_capacity(42);
        r.extend_from_slice(&req[6..12]);
        r.extend_from_slice(&mac);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        r.extend_from_slice(&mac);
        r.extend_from_slice(&ip);
        r.extend_from_slice(&req[22..32]); // the requester's MAC and IP
        r
    }

    fn send(port: &mut TapPort, pool: &mut Pool, bytes: &[u8], offload: Offload) -> TxReport {
        let p = pool.alloc_from(bytes).unwrap();
        let mut m = Meta::rx(1);
        m.offload = offload;
        let mut b: Batch<8> = Batch::new();
        b.push(p, m).unwrap();
        Port::tx(port, pool, &mut b)
    }

    fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x02];

    #[test]
    fn a_write_to_a_down_interface_counts_as_link_down() {
        let ns = Ns::new('g');
        for io in [TapIo::IoUring, TapIo::Readv] {
            let cfg = TapConfig { io, ..TapConfig::default() };
            let mut port = TapPort::create(Some(&ns.path()), "tap0", cfg).unwrap();
            let mut pool = pool();
            let frame = [&[0xffu8; 6][..], &PEER_MAC, &[0x08, 0x06], &[0u8; 46]].concat();
            // Three at once: the io_uring port batches them.
            let mut b: Batch<8> = Batch::new();
            for _ in 0..3 {
                b.push(pool.alloc_from(&frame).unwrap(), Meta::rx(1)).unwrap();
            }
            let r = Port::tx(&mut port, &mut pool, &mut b);
            assert_eq!((r.sent, r.link_down, r.errors), (0, 3, 0), "{io:?}: {r:?}");
            assert_eq!(port.stats().tx_link_down, 3, "{io:?}");
            drop(port);
            destroy(Some(&ns.path()), "tap0", 1).unwrap();
        }
    }

    #[test]
    fn destroying_a_device_whose_namespace_is_gone_succeeds() {
        destroy(Some("/var/run/netns/vswitch-test-no-such-namespace"), "tap0", 1)
            .expect("a namespace that is gone took its device with it");
        // Any other failure still says what failed.
        let e = destroy(Some("/proc/self/status"), "tap0", 1).unwrap_err();
        assert!(matches!(e, TapError::Netns { .. }), "{e}");
    }

    #[test]
    fn vnet_header_round_trips() {
        let o = Offload {
            csum_partial: true,
            csum_valid: false,
            csum_start: 34,
            csum_offset: 16,
            gso_type: GsoType::TcpV4,
            gso_size: 1448,
            tunnel_inner: 0,
        };
        // Ethernet + IPv4 + a TCP header with data offset 8 words (32 bytes: timestamps).
        let mut data = vec![0u8; 3000];
        data[34 + 12] = 8 << 4;
        let h = build_vnet_hdr(&o, &data);
        assert_eq!(h[..12], [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
        assert_eq!(h[12..], [0; 12]);
        assert_eq!(parse_vnet_hdr(&h, false), Ok(o));
        assert_eq!(parse_vnet_hdr(&h, true), Ok(o));

        let v6 = Offload { gso_type: GsoType::TcpV6, csum_start: 54, ..o };
        assert_eq!(parse_vnet_hdr(&build_vnet_hdr(&v6, &data), false), Ok(v6));
        let udp = Offload { gso_type: GsoType::UdpL4, csum_offset: 6, ..o };
        let h = build_vnet_hdr(&udp, &data);
        assert_eq!((h[1], u16::from_le_bytes([h[2], h[3]])), (5, 42));
        assert_eq!(parse_vnet_hdr(&h, false), Ok(udp));

        let valid = Offload { csum_valid: true, ..Offload::default() };
        assert_eq!(build_vnet_hdr(&valid, &data)[..12], [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_vnet_hdr(&build_vnet_hdr(&valid, &data), false), Ok(valid));
        assert_eq!(build_vnet_hdr(&Offload::default(), &data), [0; VNET_HDR_LEN]);

        // Fields that do not apply are not carried: no checksum offsets without NEEDS_CSUM,
        // no segment size without a GSO type.
        let mut junk = [9u8; VNET_HDR_LEN];
        junk[..2].copy_from_slice(&[0, 0]);
        assert_eq!(parse_vnet_hdr(&junk, true), Ok(Offload::default()));
        // UFO (3), the ECN bit and unknown types cannot be carried; nor a tunnel header on a
        // port that did not ask for tunnels, or one around nothing.
        for t in [3u8, 0x81, 0x84, 6, 0xff, 0x21, 0x20] {
            let mut h = [0u8; VNET_HDR_LEN];
            h[..2].copy_from_slice(&[1, t]);
            assert_eq!(parse_vnet_hdr(&h, false), Err(BadVnetHdr { gso_type: t }));
        }
        // An IPv6 underlay (0x40) is refused even on a tunnel port.
        let mut h = [0u8; VNET_HDR_LEN];
        h[..2].copy_from_slice(&[1, 0x41]);
        assert_eq!(parse_vnet_hdr(&h, true), Err(BadVnetHdr { gso_type: 0x41 }));
        // A GSO packet too short to show its TCP header gets the minimal header length.
        let h = build_vnet_hdr(&o, &data[..40]);
        assert_eq!(u16::from_le_bytes([h[2], h[3]]), 40);
    }

    #[test]
    fn tunnel_headers_round_trip_and_carry_the_offsets() {
        // VXLAN around TCP: outer UDP at 34, inner IP at 64, inner TCP at 84 with a 20-byte
        // header, 1410-byte segments.
        let o = Offload {
            csum_partial: true,
            csum_start: 84,
            csum_offset: 16,
            gso_type: GsoType::TcpV4,
            gso_size: 1410,
            tunnel_inner: 64,
            ..Offload::default()
        };
        let mut data = vec![0u8; 60_000];
        data[84 + 12] = 5 << 4;
        let h = build_vnet_hdr(&o, &data);
        // NEEDS_CSUM; TCPV4 | UDP_TUNNEL_IPV4; hdr_len 104; gso 1410; csum 84/16; offsets 34/64
        assert_eq!(h[..12], [1, 0x21, 104, 0, 0x82, 0x05, 84, 0, 16, 0, 0, 0]);
        assert_eq!(h[12..20], [0; 8]);
        assert_eq!(h[20..], [34, 0, 64, 0]);
        assert_eq!(parse_vnet_hdr(&h, true), Ok(o));
        // Without GSO there is no tunnel header, whatever tunnel_inner says.
        let small = Offload { gso_type: GsoType::None, gso_size: 0, ..o };
        assert_eq!(build_vnet_hdr(&small, &data)[1], 0);
        // The outer checksum flag (0x08) is not a flag the switch knows.
        let mut h = h;
        h[0] |= 0x08;
        assert_eq!(parse_vnet_hdr(&h, true).map(|o| o.csum_partial), Ok(true));
    }

    #[test]
    fn arp_request_in_reply_out_device_gone_on_drop() {
        let ns = Ns::new('a');
        let mut port = TapPort::create(Some(&ns.path()), "tap0", TapConfig::default()).unwrap();
        assert_eq!(Port::<8>::name(&port), "tap0");
        assert_eq!(Port::<8>::kind(&port), "tap vnet tso4/tso6/csum io_uring");
        assert_eq!(port.netns(), Some(ns.path().as_str()));
        assert_eq!(fds(&port).len(), 1);
        let link = ns.ip(&["-d", "link", "show", "tap0"]);
        assert!(link.contains("tun type tap") && link.contains("vnet_hdr on"), "{link}");
        ns.up("10.244.9.1/24");
        let _ping = Proc(
            ns.exec(&["ping", "-c", "10", "-i", "0.2", "-W", "1", "10.244.9.2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );

        let mut pool = pool();
        let (req, meta) =
            rx_until(&mut port, &mut pool, Duration::from_secs(5), |d, _| is_arp_request(d))
                .expect("the pod's ARP request");
        let d = pool.data(&req).to_vec();
        pool.free(req);
        assert_eq!(d[0..6], [0xff; 6], "broadcast");
        let arp = ArpPacket::new(&d[14..]).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_proto_addr(), Ipv4Addr::new(10, 244, 9, 1));
        assert_eq!(arp.get_target_proto_addr(), Ipv4Addr::new(10, 244, 9, 2));
        assert_eq!(d[22..28], d[6..12], "sender hardware address is the source MAC");
        let mac: Vec<String> = d[6..12].iter().map(|b| format!("{b:02x}")).collect();
        assert!(ns.ip(&["link", "show", "tap0"]).contains(&mac.join(":")), "the pod's MAC");
        assert_eq!(meta.in_port, 3);
        assert_eq!(meta.offload, Offload::default(), "an ARP request has nothing to offload");

        let reply = arp_reply(&d, PEER_MAC, [10, 244, 9, 2]);
        let rep = send(&mut port, &mut pool, &reply, Offload::default());
        assert_eq!(
            rep,
            TxReport { sent: 1, sent_bytes: 42, ring_full: 0, errors: 0, link_down: 0 }
        );
        wait_for("the neighbour entry", Duration::from_secs(3), || {
            let n = ns.ip(&["neigh", "show", "10.244.9.2"]);
            n.contains("02:00:00:00:09:02") && !n.contains("INCOMPLETE")
        });
        // With the neighbour resolved the pings follow, with complete checksums (ICMP is not
        // offloaded).
        let (echo, m) = rx_until(&mut port, &mut pool, Duration::from_secs(3), |d, _| {
            d.len() > 34 && d[0..6] == PEER_MAC && d[12..14] == [8, 0] && d[23] == 1
        })
        .expect("an ICMP echo request to the resolved neighbour");
        assert!(!m.offload.csum_partial);
        pool.free(echo);

        let s = port.stats();
        assert!(s.rx_packets >= 2 && s.tx_packets == 1 && s.tx_bytes == 42, "{s:?}");
        assert_eq!(Port::<8>::rx_drops(&mut port), RxDrops::default());
        drop(port);
        assert_eq!(pool.in_use(), 0);
        let gone = Command::new("ip").args(["-n", &ns.name, "link", "show", "tap0"]).output();
        assert!(!gone.unwrap().status.success(), "closing the fds deletes the device");
    }

    #[derive(Debug, Default)]
    struct FwdStats {
        /// Received TCPv4 GSO packets larger than 1500 bytes, and the largest packet.
        gso_tcp4_big: u64,
        /// Received UDP GSO packets (USO).
        gso_udp: u64,
        max_len: usize,
        csum_partial: u64,
        tx: TxReport,
        rx_ns: u128,
        /// CPU time the forwarding thread ran (schedstat: not counting time preempted).
        cpu_ns: u64,
        tx_ns: u128,
        stats: Vec<TapStats>,
    }

    /// The test's switch: moves packets 0 -> 1 and 1 -> 0 with their offload state, sleeping
    /// in poll(2) while idle, until `stop`.
    fn forward(mut ports: [TapPort; 2], big_buffers: usize, stop: &AtomicBool) -> FwdStats {
        let mut pool =
            Pool::new(PoolConfig { frames: 4096, frame_size: 2048, headroom: 256, big_buffers })
                .unwrap();
        let mut fds = fds(&ports[0]);
        fds.extend(self::fds(&ports[1]));
        let mut b: Batch<32> = Batch::new();
        let mut st = FwdStats::default();
        let cpu0 = thread_cpu_ns();
        while !stop.load(Ordering::Relaxed) {
            let mut moved = 0;
            for (i, o) in [(0, 1), (1, 0)] {
                let t = Instant::now();
                moved += Port::rx(&mut ports[i], i as PortId, &mut pool, &mut b);
                st.rx_ns += t.elapsed().as_nanos();
                for (p, m) in b.pkts().iter().zip(b.meta()) {
                    st.max_len = st.max_len.max(p.len());
                    st.csum_partial += u64::from(m.offload.csum_partial);
                    if m.offload.gso_type == GsoType::TcpV4 && p.len() > 1500 {
                        st.gso_tcp4_big += 1;
                    }
                    st.gso_udp += u64::from(m.offload.gso_type == GsoType::UdpL4);
                }
                let t = Instant::now();
                let r = Port::tx(&mut ports[o], &mut pool, &mut b);
                st.tx_ns += t.elapsed().as_nanos();
                st.tx.sent += r.sent;
                st.tx.sent_bytes += r.sent_bytes;
                st.tx.ring_full += r.ring_full;
                st.tx.errors += r.errors;
            }
            if moved == 0 {
                let _ = sys::poll_readable(&fds, 100);
            }
        }
        st.cpu_ns = thread_cpu_ns() - cpu0;
        assert_eq!(pool.in_use(), 0, "every packet sent or freed");
        st.stats = ports.iter().map(TapPort::stats).collect();
        st
    }

    /// The calling thread's time on a CPU so far, in ns (`/proc/thread-self/schedstat`).
    fn thread_cpu_ns() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Two pods, A (10.244.9.1) and B (10.244.9.2), joined by [`forward`] with `big_buffers`
    /// in its pool; runs the iperf3 client `args` in A against a server in B and returns the
    /// iperf3 receiver line with the forwarder's numbers.
    fn iperf3_through_loop(
        args: &[&str],
        big_buffers: usize,
        io: TapIo,
        names: (char, char),
    ) -> (String, FwdStats) {
        // Each caller passes its own letters: tests run in parallel and must not share names.
        let (a, b) = (Ns::new(names.0), Ns::new(names.1));
        let cfg = TapConfig { io, ..TapConfig::default() };
        let pa = TapPort::create(Some(&a.path()), "tap0", cfg).unwrap();
        let pb = TapPort::create(Some(&b.path()), "tap0", cfg).unwrap();
        assert_eq!((pa.io(), pb.io()), (io, io), "{:?}", pa.io_fallback());
        a.up("10.244.9.1/24");
        b.up("10.244.9.2/24");
        let stop = Arc::new(AtomicBool::new(false));
        let fwd = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || forward([pa, pb], big_buffers, &stop))
        };
        let _server = Proc(
            b.exec(&["iperf3", "-s", "-1", "-B", "10.244.9.2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut tries = 0;
        let out = loop {
            let o = a.exec(&["iperf3", "-c", "10.244.9.2", "-f", "m"]).args(args).output().unwrap();
            if o.status.success() {
                break String::from_utf8_lossy(&o.stdout).into_owned();
            }
            tries += 1;
            assert!(tries < 30, "iperf3 failed: {}", String::from_utf8_lossy(&o.stderr));
            std::thread::sleep(Duration::from_millis(100));
        };
        stop.store(true, Ordering::Relaxed);
        let st = fwd.join().unwrap();
        let receiver = out.lines().find(|l| l.contains("receiver")).unwrap_or("").to_string();
        assert!(receiver.contains("bits/sec"), "{out}");
        assert_eq!(st.tx.errors, 0);
        (receiver, st)
    }

    fn report(what: &str, receiver: &str, st: &FwdStats) {
        let pkts = st.stats[0].rx_packets + st.stats[1].rx_packets;
        println!("{what}: {receiver}");
        println!(
            "  TCPv4 GSO packets > 1500 B: {} (of {} rx; largest {} B; {} with partial checksum)",
            st.gso_tcp4_big, pkts, st.max_len, st.csum_partial
        );
        let syscalls = st.stats[0].syscalls + st.stats[1].syscalls;
        println!(
            "  per packet: rx {} ns, tx {} ns, {:.2} syscalls; {:?}",
            st.rx_ns / u128::from(pkts.max(1)),
            st.tx_ns / st.tx.sent.max(1) as u128,
            syscalls as f64 / (pkts.max(1) as f64),
            st.tx
        );
        println!("  port A {:?}\n  port B {:?}", st.stats[0], st.stats[1]);
    }

    #[test]
    fn iperf3_between_two_pods_moves_64k_segments() {
        let (receiver, st) = iperf3_through_loop(&["-t", "2"], 64, TapIo::IoUring, ('b', 'c'));
        report("iperf3 TCP A -> B through a TAP <-> TAP loop", &receiver, &st);
        assert!(st.gso_tcp4_big > 0, "the pod handed over TSO segments");
        assert!(st.max_len > 9000, "largest packet {}", st.max_len);
        assert!(st.stats[0].rx_gso > 0 && st.stats[1].tx_gso > 0);
        assert_eq!(st.stats[0].rx_gso, st.stats[1].tx_gso, "GSO state kept");
    }

    /// Small packets through the loop: batched through io_uring, and one readv/writev per
    /// packet, each read through a big buffer and copied into a frame (the port's choice) and
    /// read straight into a frame (what the port falls back to without big buffers): the cost
    /// per packet of each, printed. `cargo test --release -p vswitch --lib bench_small -- \
    /// --nocapture --test-threads 1` to compare.
    #[test]
    fn bench_small_packets_uring_or_readv_big_buffer_or_frame() {
        for (io, big) in
            [(TapIo::IoUring, 64), (TapIo::Readv, 64), (TapIo::IoUring, 0), (TapIo::Readv, 0)]
        {
            let args = ["-t", "1", "-u", "-b", "0", "-l", "64"];
            let (receiver, st) = iperf3_through_loop(&args, big, io, ('g', 'h'));
            let how = if big > 0 { "big buffer + copy" } else { "straight into a frame" };
            report(&format!("iperf3 UDP 64 B, {io:?}, rx {how}"), &receiver, &st);
        }
    }

    /// Pods A (10.244.9.1) and B (10.244.9.2) joined by [`forward`] through ports moving
    /// packets the `io` way (`no_uring`: as where io_uring cannot be set up); TCP (64 KB TSO
    /// segments) and UDP datagrams of every size, a 60000-byte USO send among them, go from A
    /// to B and must arrive byte for byte: a wrong virtio-net header or a cut or mixed-up
    /// buffer shows as missing or corrupt data.
    fn every_size_arrives_intact(io: TapIo, no_uring: bool, names: (char, char)) -> FwdStats {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream, UdpSocket};
        use std::os::fd::AsFd;
        let (a, b) = (Ns::new(names.0), Ns::new(names.1));
        let cfg = TapConfig { io, uso: true, ..TapConfig::default() };
        NO_IO_URING.with(|c| c.set(no_uring));
        let pa = TapPort::create(Some(&a.path()), "tap0", cfg);
        let pb = TapPort::create(Some(&b.path()), "tap0", cfg);
        NO_IO_URING.with(|c| c.set(false));
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        let expect = if no_uring { TapIo::Readv } else { io };
        assert_eq!((pa.io(), pb.io()), (expect, expect), "{:?}", pa.io_fallback());
        if no_uring {
            assert!(pa.io_fallback().is_some_and(|w| w.contains("io_uring_setup")));
            assert!(Port::<8>::kind(&pa).ends_with(" readv"), "{}", Port::<8>::kind(&pa));
        } else {
            assert_eq!(pa.io_fallback(), None);
        }
        // MTU 9000: frames around a pool frame's room (1792 bytes here) cross unfragmented.
        for ns in [&a, &b] {
            ns.ip(&["link", "set", "tap0", "mtu", "9000"]);
        }
        a.up("10.244.9.1/24");
        b.up("10.244.9.2/24");
        let stop = Arc::new(AtomicBool::new(false));
        let fwd = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || forward([pa, pb], 64, &stop))
        };
        struct Stop(Arc<AtomicBool>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(Arc::clone(&stop));
        let in_ns = |ns: &Ns, f: Box<dyn FnOnce() -> std::io::Result<OwnedFd> + Send>| {
            crate::port::netdev::in_netns(&ns.path(), f).unwrap().unwrap()
        };

        // UDP: sizes up to the MTU, one that IP fragments, and one USO send that leaves
        // A as one 60 KB GSO packet and reaches B's socket as 60 datagrams of 1000 bytes.
        let rx: UdpSocket =
            in_ns(&b, Box::new(|| UdpSocket::bind("10.244.9.2:5556").map(OwnedFd::from))).into();
        rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let tx: UdpSocket =
            in_ns(&a, Box::new(|| UdpSocket::bind("10.244.9.1:0").map(OwnedFd::from))).into();
        let uso: UdpSocket =
            in_ns(&a, Box::new(|| UdpSocket::bind("10.244.9.1:0").map(OwnedFd::from))).into();
        sys::set_udp_segment(uso.as_fd(), 1000).unwrap();
        let datagram = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 7 + len) as u8).collect() };
        // 1749-1751 bytes of payload make frames of 1791-1793 bytes: one byte short of a pool
        // frame's room, exactly it, one byte over; 9000 is fragmented.
        let sizes = [1usize, 18, 100, 1000, 1472, 1749, 1750, 1751, 3000, 8000, 9000];
        let mut want: Vec<Vec<u8>> = sizes.iter().map(|&n| datagram(n)).collect();
        // Whatever A's first packets are, B must be known first: ARP through the loop.
        wait_for("ARP through the loop", Duration::from_secs(5), || {
            let _ = tx.send_to(b"hello", "10.244.9.2:5556");
            let mut buf = [0u8; 16];
            rx.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            matches!(rx.recv(&mut buf), Ok(5))
        });
        while rx.set_read_timeout(Some(Duration::from_millis(200))).is_ok() {
            let mut buf = [0u8; 16];
            if rx.recv(&mut buf).is_err() {
                break;
            }
        }
        rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for d in &want {
            tx.send_to(d, "10.244.9.2:5556").unwrap();
        }
        let big: Vec<u8> = (0..60_000usize).map(|i| ((i / 1000) * 3 + i % 1000) as u8).collect();
        uso.send_to(&big, "10.244.9.2:5556").unwrap();
        for k in 0..60 {
            want.push(big[k * 1000..(k + 1) * 1000].to_vec());
        }
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < want.len() {
            match rx.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) => panic!("{} of {} datagrams, then {e}", got.len(), want.len()),
            }
        }
        // Datagrams may be reordered (fragments, two sockets); each must be one that was sent.
        want.sort();
        got.sort();
        assert!(got == want, "datagrams differ from what was sent");

        // TCP: 8 MB of a pattern, A to B; the pod's TSO makes 64 KB segments.
        const TOTAL: usize = 8 << 20;
        let listener: TcpListener =
            in_ns(&b, Box::new(|| TcpListener::bind("10.244.9.2:5555").map(OwnedFd::from))).into();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (mut n, mut bad, mut buf) = (0usize, None, vec![0u8; 1 << 16]);
            loop {
                let k = c.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                if bad.is_none() {
                    bad = (0..k).find(|&i| buf[i] != ((n + i) % 251) as u8).map(|i| n + i);
                }
                n += k;
            }
            (n, bad)
        });
        let mut c: TcpStream =
            in_ns(&a, Box::new(|| TcpStream::connect("10.244.9.2:5555").map(OwnedFd::from))).into();
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        c.write_all(&data).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let (n, bad) = server.join().unwrap();
        assert_eq!((n, bad), (TOTAL, None), "TCP bytes received, first corrupt offset");

        stop.store(true, Ordering::Relaxed);
        let st = fwd.join().unwrap();
        assert_eq!(st.tx.errors, 0);
        assert!(st.gso_tcp4_big > 0, "TSO segments crossed: {st:?}");
        assert!(st.gso_udp > 0, "the USO send crossed as one GSO packet: {st:?}");
        st
    }

    /// The forwarder's CPU time per packet under a flood of 64-byte UDP datagrams from pod A
    /// to a port of B where nothing listens (as the end-to-end benchmark's trafgen flood),
    /// io_uring and readv alternately, three rounds: printed, and io_uring must make fewer
    /// syscalls than packets. `cargo test --release -p vswitch --lib bench_flood -- \
    /// --nocapture` for figures worth reading.
    #[test]
    fn bench_flood_cpu_per_packet_uring_vs_readv() {
        use std::net::UdpSocket;
        for round in 0..3 {
            for io in [TapIo::IoUring, TapIo::Readv] {
                let (a, b) = (Ns::new('r'), Ns::new('s'));
                let cfg = TapConfig { io, ..TapConfig::default() };
                let pa = TapPort::create(Some(&a.path()), "tap0", cfg).unwrap();
                let pb = TapPort::create(Some(&b.path()), "tap0", cfg).unwrap();
                assert_eq!(pa.io(), io, "{:?}", pa.io_fallback());
                a.up("10.244.9.1/24");
                b.up("10.244.9.2/24");
                let bmac = b.ip(&["-br", "link", "show", "tap0"]);
                let bmac = bmac.split_whitespace().nth(2).unwrap().to_string();
                a.ip(&["neigh", "add", "10.244.9.2", "lladdr", &bmac, "dev", "tap0"]);
                let stop = Arc::new(AtomicBool::new(false));
                let fwd = {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || forward([pa, pb], 64, &stop))
                };
                let sock: UdpSocket = crate::port::netdev::in_netns(&a.path(), || {
                    UdpSocket::bind("10.244.9.1:0").map(OwnedFd::from)
                })
                .unwrap()
                .unwrap()
                .into();
                let t = Instant::now();
                let mut sent = 0u64;
                while t.elapsed() < Duration::from_secs(1) {
                    for _ in 0..64 {
                        sent += u64::from(sock.send_to(&[0x41; 64], "10.244.9.2:5209").is_ok());
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
                stop.store(true, Ordering::Relaxed);
                let st = fwd.join().unwrap();
                let pkts = st.stats[0].rx_packets + st.stats[1].rx_packets;
                let calls = st.stats[0].syscalls + st.stats[1].syscalls;
                println!(
                    "round {round} {io:?}: {pkts} packets of {sent} sent, forwarder CPU {} ns \
                     per packet, {:.2} syscalls per packet",
                    st.cpu_ns / pkts.max(1),
                    calls as f64 / pkts.max(1) as f64
                );
                if io == TapIo::IoUring {
                    assert!(calls < pkts, "{calls} syscalls for {pkts} packets");
                }
            }
        }
    }

    #[test]
    fn every_size_arrives_intact_through_io_uring() {
        let st = every_size_arrives_intact(TapIo::IoUring, false, ('i', 'j'));
        // Batched: fewer syscalls than packets moved (each readv path packet costs 2).
        let pkts = st.stats[0].rx_packets + st.stats[1].rx_packets;
        let calls = st.stats[0].syscalls + st.stats[1].syscalls;
        println!("{pkts} packets, {calls} io_uring_enter calls: {st:?}");
    }

    #[test]
    fn every_size_arrives_intact_through_readv() {
        every_size_arrives_intact(TapIo::Readv, false, ('k', 'l'));
    }

    #[test]
    fn without_io_uring_the_port_falls_back_to_readv() {
        every_size_arrives_intact(TapIo::IoUring, true, ('m', 'n'));
    }

    /// A port dropped while its pod floods it: every buffer comes back to the pool (nothing is
    /// left with the kernel between calls), the device goes, nothing hangs.
    #[test]
    fn drops_cleanly_under_load() {
        use std::net::UdpSocket;
        let ns = Ns::new('q');
        let mut port = TapPort::create(Some(&ns.path()), "tap0", TapConfig::default()).unwrap();
        assert_eq!(port.io(), TapIo::IoUring);
        ns.up("10.244.9.1/24");
        ns.ip(&["neigh", "add", "10.244.9.2", "lladdr", "02:00:00:00:09:02", "dev", "tap0"]);
        let sock: UdpSocket = crate::port::netdev::in_netns(&ns.path(), || {
            UdpSocket::bind("10.244.9.1:0").map(OwnedFd::from)
        })
        .unwrap()
        .unwrap()
        .into();
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Fails once the device is gone; the flood goes on until told.
                    sent += u64::from(sock.send_to(&[0x55; 64], "10.244.9.2:9").is_ok());
                }
                sent
            })
        };
        let mut pool = pool();
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 1000 && Instant::now() < deadline {
            let mut b: Batch<32> = Batch::new();
            got += Port::rx(&mut port, 0, &mut pool, &mut b);
            b.free_all(&mut pool);
        }
        assert!(got >= 1000, "received {got}");
        // One more receive leaves packets queued in the kernel, then the port goes.
        let mut b: Batch<32> = Batch::new();
        Port::rx(&mut port, 0, &mut pool, &mut b);
        drop(port);
        b.free_all(&mut pool);
        assert_eq!(pool.in_use(), 0);
        stop.store(true, Ordering::Relaxed);
        assert!(flood.join().unwrap() > 0);
        let gone = Command::new("ip").args(["-n", &ns.name, "link", "show", "tap0"]).output();
        assert!(!gone.unwrap().status.success(), "closing the fds deletes the device");
    }

    #[test]
    fn two_queues() {
        let ns = Ns::new('d');
        let cfg = TapConfig { queues: 2, ..TapConfig::default() };
        let mut port = TapPort::create(Some(&ns.path()), "tap0", cfg).unwrap();
        assert_eq!(port.queues(), 2);
        assert_eq!(fds(&port).len(), 2);
        assert_eq!(Port::<8>::kind(&port), "tap vnet tso4/tso6/csum 2 queues io_uring");
        let link = ns.ip(&["-d", "link", "show", "tap0"]);
        assert!(link.contains("multi_queue") && link.contains("numqueues 2"), "{link}");

        let mut pool = pool();
        // Down: the kernel refuses packets, counted as such.
        let rep = send(&mut port, &mut pool, &[0u8; 60], Offload::default());
        assert_eq!((rep.sent, rep.link_down, rep.errors), (0, 1, 0));

        ns.up("10.244.9.1/24");
        let _ping = Proc(
            ns.exec(&["ping", "-c", "10", "-i", "0.2", "-W", "1", "10.244.9.2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (req, _) =
            rx_until(&mut port, &mut pool, Duration::from_secs(5), |d, _| is_arp_request(d))
                .expect("an ARP request on one of the queues");
        let reply = arp_reply(pool.data(&req), PEER_MAC, [10, 244, 9, 2]);
        pool.free(req);
        // Either queue reaches the pod.
        for hash in [0u32, 1] {
            let p = pool.alloc_from(&reply).unwrap();
            let mut m = Meta::rx(1);
            m.hash = hash;
            let mut b: Batch<8> = Batch::new();
            b.push(p, m).unwrap();
            assert_eq!(Port::tx(&mut port, &mut pool, &mut b).sent, 1);
        }
        wait_for("the neighbour entry", Duration::from_secs(3), || {
            ns.ip(&["neigh", "show", "10.244.9.2"]).contains("02:00:00:00:09:02")
        });
        drop(port);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn oversize_frames_need_a_big_buffer() {
        let ns = Ns::new('f');
        let mut port = TapPort::create(Some(&ns.path()), "tap0", TapConfig::default()).unwrap();
        ns.ip(&["link", "set", "tap0", "mtu", "9000"]);
        ns.up("10.244.9.1/24");
        ns.ip(&["neigh", "add", "10.244.9.2", "lladdr", "02:00:00:00:09:02", "dev", "tap0"]);
        let ping = |size: &str| {
            Proc(
                ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-s", size, "10.244.9.2"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let is_echo = |d: &[u8], _: &Meta| d.len() > 34 && d[12..14] == [8, 0] && d[23] == 1;

        // A 4042-byte frame (ICMP: no GSO) arrives whole in a big buffer.
        let mut with_big = pool();
        let _p = ping("4000");
        let (echo, m) = rx_until(&mut port, &mut with_big, Duration::from_secs(3), is_echo)
            .expect("the big echo request");
        assert_eq!((echo.len(), echo.is_big()), (4042, true));
        assert_eq!(m.offload, Offload::default());
        with_big.free(echo);
        assert_eq!(with_big.in_use(), 0);

        // Without big buffers it cannot fit a frame: dropped and counted, small ones still
        // arrive.
        let mut frames_only =
            Pool::new(PoolConfig { frames: 64, frame_size: 2048, headroom: 256, big_buffers: 0 })
                .unwrap();
        let before = Port::<8>::rx_drops(&mut port).port;
        let _p = ping("4000");
        wait_for("a truncated read", Duration::from_secs(3), || {
            let mut b: Batch<8> = Batch::new();
            Port::rx(&mut port, 0, &mut frames_only, &mut b);
            b.free_all(&mut frames_only);
            port.stats().rx_truncated > 0
        });
        assert!(Port::<8>::rx_drops(&mut port).port > before);
        let _p = ping("100");
        let (echo, _) = rx_until(&mut port, &mut frames_only, Duration::from_secs(3), is_echo)
            .expect("a small echo request");
        assert_eq!((echo.len(), echo.is_big()), (142, false));
        frames_only.free(echo);
        assert_eq!(frames_only.in_use(), 0);
    }

    #[test]
    fn errors_name_the_problem() {
        let e =
            TapPort::create(Some("/nonexistent/netns"), "tap0", TapConfig::default()).unwrap_err();
        assert!(matches!(e, TapError::Netns { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/netns"), "{e}");

        let ns = Ns::new('e');
        let long = "abcdefghijklmnop";
        let e = TapPort::create(Some(&ns.path()), long, TapConfig::default()).unwrap_err();
        assert!(matches!(e, TapError::InvalidName { .. }), "{e:?}");
        assert!(e.to_string().contains(long) && e.to_string().contains("15"), "{e}");
        for bad in ["", "a/b", "a b", "..", "a\0b"] {
            let e = TapPort::create(Some(&ns.path()), bad, TapConfig::default()).unwrap_err();
            assert!(matches!(e, TapError::InvalidName { .. }), "{bad:?}: {e:?}");
        }
        let zero = TapConfig { queues: 0, ..TapConfig::default() };
        let e = TapPort::create(Some(&ns.path()), "tap0", zero).unwrap_err();
        assert!(matches!(e, TapError::Config { .. }), "{e:?}");

        // A name that is taken is never attached to.
        let _first = TapPort::create(Some(&ns.name), "tap0", TapConfig::default()).unwrap();
        let e = TapPort::create(Some(&ns.path()), "tap0", TapConfig::default()).unwrap_err();
        match &e {
            TapError::Create { op, source, .. } => {
                assert_eq!(*op, "ioctl(TUNSETIFF)");
                assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
            }
            e => panic!("{e:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("tap0") && msg.contains(&ns.path()) && msg.contains("TUNSETIFF"));
        // So is a name of another kind of device.
        let e = TapPort::create(Some(&ns.path()), "lo", TapConfig::default()).unwrap_err();
        assert!(matches!(e, TapError::Create { .. }), "{e:?}");
    }

    #[test]
    fn a_persistent_device_outlives_its_port_keeps_its_address_and_is_destroyed_on_request() {
        let ns = Ns::new('p');
        let cfg = TapConfig { persist: true, ..TapConfig::default() };
        let port = TapPort::create(Some(&ns.path()), "eth0", cfg).unwrap();
        ns.ip(&["addr", "add", "10.244.1.5/24", "dev", "eth0"]);
        drop(port);
        // The pod keeps its interface and address while no port holds it.
        assert!(ns.ip(&["-br", "addr", "show", "eth0"]).contains("10.244.1.5/24"));
        // A new port attaches to it (a restarted vswitchd) instead of refusing it.
        let again = TapPort::create(Some(&ns.path()), "eth0", cfg).unwrap();
        assert!(ns.ip(&["-br", "addr", "show", "eth0"]).contains("10.244.1.5/24"));
        drop(again);
        destroy(Some(&ns.path()), "eth0", 1).unwrap();
        assert!(!ns.ip(&["-br", "link", "show"]).contains("eth0"));
        // Destroying what is not there is fine.
        destroy(Some(&ns.path()), "eth0", 1).unwrap();
    }
}
