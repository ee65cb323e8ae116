//! Ports: where packets enter and leave the switch.
//!
//! A port moves whole batches: `rx` appends up to a batch's room of packets, `tx` consumes a
//! batch. A port never blocks: when its transmit ring is full it frees the packets it could not
//! send and reports them, so the worker counts `tx_ring_full` (Snabb's "drop and count" links).
//!
//! Port types:
//! - [`ring`]: in-memory SPSC rings, for tests and benchmarks with no kernel involved.
//! - [`afxdp`]: AF_XDP sockets sharing the worker's UMEM (the daemon's default).
//! - [`afpacket`]: TPACKET_V3 rings, for devices without XDP.
//! - [`tap`]: a TAP device in the pod's namespace with the virtio-net header, so the pod
//!   hands over 64 KB TCP segments with partial checksums (offload-aware).
//! - [`netdev`]: interface helpers (ifindex, checksum offload, network namespaces).

pub mod afpacket;
pub mod afxdp;
pub mod netdev;
pub mod ring;
pub mod tap;

use crate::packet::{Batch, Pool};
use crate::types::PortId;

/// What a transmit call did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxReport {
    pub sent: usize,
    pub sent_bytes: u64,
    /// Packets freed because the transmit ring had no room.
    pub ring_full: usize,
    /// Packets freed because the port failed to send them.
    pub errors: usize,
    /// Packets freed because the port's interface is down (a TAP device's `EIO`).
    pub link_down: usize,
}

/// What a port's transmit side can finish itself, so the pipeline does not have to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Takes packets with a partial checksum (the receiver's stack completes it).
    pub csum: bool,
    /// Takes TCP packets larger than the MTU with a segment size (GSO), IPv4 and IPv6.
    pub tso: bool,
    /// Takes UDP tunnel GSO packets (VXLAN with a GSO inner packet, see
    /// [`Offload::tunnel_inner`](crate::packet::Offload::tunnel_inner)) and segments them in
    /// the kernel, outer and inner headers both.
    pub udp_tunnel: bool,
}

/// Receive-side drops below the pipeline, as running totals since the port opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxDrops {
    /// The kernel found the port's receive ring full.
    pub ring_full: u64,
    /// The kernel dropped for another reason (no fill frame, oversize).
    pub kernel: u64,
    /// The port itself dropped (truncated frame, no pool buffer, bad descriptor).
    pub port: u64,
}

/// A switch port as a worker drives it.
pub trait Port<const N: usize>: Send {
    /// The port's name (the interface name for kernel-backed ports).
    fn name(&self) -> &str;

    /// A short description of the port's type and mode (e.g. "ring", "afxdp native copy").
    fn kind(&self) -> String;

    /// Receives up to `batch.room()` packets and appends them with `Meta::rx(id)`. Returns how
    /// many were appended.
    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize;

    /// Transmits every packet of `batch`, leaving it empty.
    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport;

    /// Work off the per-packet path, called every housekeeping interval: refilling rings,
    /// reaping completions, waking the kernel.
    fn housekeep(&mut self, _pool: &mut Pool) {}

    /// Gives back every buffer the port holds (kernel rings, in-flight queues) before the port
    /// is dropped, so the pool's books balance. The port is unusable afterwards.
    fn drain(&mut self, _pool: &mut Pool) {}

    /// What the port's transmit side accepts; ports without offloads (AF_XDP, AF_PACKET) get
    /// whole, wire-sized frames with complete checksums.
    fn offloads(&self) -> Offloads {
        Offloads::default()
    }

    /// Receive drops below the pipeline (may make a syscall: called at housekeeping only).
    fn rx_drops(&mut self) -> RxDrops {
        RxDrops::default()
    }

    /// File descriptors that become readable when the port has packets, for a worker that
    /// sleeps in poll(2) while idle. A port with none is polled on the next timeout.
    fn poll_fds(&self, _out: &mut Vec<std::os::fd::RawFd>) {}

    /// Whether `rx` costs a system call even when nothing is waiting (a TAP device's read).
    /// The worker then calls it only after [`Port::poll_fds`] signalled readability since
    /// `rx` last found nothing (`pmd::ready`), so idle ports cost nothing per pass. Such a
    /// port's `rx` must return 0 only when every queue was empty (or the pool had no buffer).
    fn rx_on_readiness(&self) -> bool {
        false
    }
}
