//! AF_XDP: the kernel-bypass-ish packet I/O under the AF_XDP port type, written by hand on
//! `libc`.
//!
//! # Why hand-written
//! The Rust AF_XDP crates did not fit: `xdpilone` is EUPL-1.2 (copyleft; this project is
//! MIT OR Apache-2.0), and `xsk-rs` wraps the C `libxdp`/`libbpf`, which needs a C toolchain
//! and libraries at build time. The kernel ABI involved is small (one socket type, five socket
//! options, four mmapped rings, three `bpf(2)` commands), so this module speaks it directly and
//! fences every `unsafe` of the port layer in here. The XDP program is five hand-assembled BPF
//! instructions ([`bpf`]), so no clang/LLVM BPF target is needed either.
//!
//! # Pieces
//! - [`sys`]: constants/structs `libc` lacks, syscall wrappers.
//! - [`ring`]: the shared producer/consumer rings and their memory ordering.
//! - [`bpf`]: XSKMAP, redirect program, BPF-link attachment ([`XdpAttachment`]).
//! - [`xsk`]: [`Umem`] and [`XskSocket`], the API the port layer uses.
//!
//! # Data flow
//! ```text
//!  pool --fill()--> fill ring --> kernel writes the frame --> rx ring --rx_burst()--> switch
//!  switch --tx_burst()--> tx ring --kick_tx()--> kernel sends --> completion ring
//!       --complete()--> pool
//! ```
//! One UMEM per worker is shared by all that worker's sockets (`XDP_SHARED_UMEM`), each socket
//! with its own four rings. A frame received on socket A is forwarded out of socket B by
//! putting the same `(addr, len)` on B's tx ring; it comes back on B's completion ring. No
//! userspace copy. Headers can be pushed in front of received data: rx data starts
//! `headroom + 256` bytes into the frame ([`Umem::rx_data_offset`]) and a tx descriptor may
//! start anywhere in the frame.
//!
//! Addresses are byte offsets into the UMEM. Aligned mode: frame index = `addr / frame_size`,
//! offset in the frame = `addr % frame_size`.
//!
//! # SAFETY contract (frame ownership)
//! The region registered as a UMEM is shared with the kernel. Each frame is owned by exactly
//! one side at a time:
//! - Userspace owns a frame from the moment it comes out of [`XskSocket::rx_burst`] or
//!   [`XskSocket::complete`] (or was never handed over) until it is passed to
//!   [`XskSocket::fill`] or [`XskSocket::tx_burst`].
//! - The kernel owns it from then until it reappears on an rx or completion ring. While the
//!   kernel owns a frame, Rust must not read or write it (the kernel writes fill frames
//!   asynchronously; a tx frame changed before completion may go out half-changed).
//!
//! The buffer pool enforces this (a frame index is either in the free list, held by a packet,
//! or on a ring); this module enforces the ring side: only reserved slots are written, only
//! published slots are read, with acquire/release on the indices ([`ring`]). The kernel pins
//! the UMEM pages at registration and writes through its own mapping, so unmapping the region
//! while sockets are open cannot make the kernel write into unrelated memory; still, drop the
//! sockets before the region.
//!
//! # veth and copy mode (tested on Linux 6.18; each point has a test in `tests.rs`)
//! - Native XDP attaches to a veth (`XDP_FLAGS_DRV_MODE`); it runs in the veth's NAPI on the
//!   frames its peer transmits. Generic mode attaches too.
//! - No zero-copy: binding a veth queue with `XDP_ZEROCOPY` fails with `EOPNOTSUPP`, and
//!   [`BindMode::Auto`] falls back to `XDP_COPY` (the kernel copies each frame into or out of
//!   the UMEM). Sockets sharing the UMEM inherit the first socket's mode: the kernel refuses
//!   mode flags together with `XDP_SHARED_UMEM`.
//! - AF_XDP rx needs the redirect program on the device the socket is bound to, and the socket
//!   must be bound to the (device, queue) the frame arrives on. Received data starts
//!   `headroom + XDP_PACKET_HEADROOM (256)` bytes into the frame.
//! - AF_XDP tx in copy mode does not use XDP: the kernel builds an skb and calls the driver's
//!   xmit (`veth_xmit`) directly, so neither end needs a program for tx. The copy-mode tx ring
//!   always has `XDP_RING_NEED_WAKEUP` set: every burst needs a `sendto` kick. One `sendto`
//!   sends at most 32 frames and returns `EAGAIN` while more are queued
//!   ([`XskSocket::kick_tx`] repeats while there is progress). Completions are on the
//!   completion ring by the time `sendto` returns. The kernel sends nothing while the
//!   completion ring is full (`EAGAIN` without progress), so drain completions and size the
//!   completion ring at least as large as the tx ring.
//! - The fill ring never asks for a wakeup in copy mode: the copy path takes a fill entry per
//!   received frame itself.
//! - `XDP_REDIRECT` *into* a veth (`ndo_xdp_xmit`, e.g. `bpf_redirect` from another device's
//!   program) is dropped unless the target's peer has NAPI enabled. Tested: dropped with no
//!   program on the peer, delivered once the peer has an XDP program. According to the kernel
//!   source, enabling GRO on the peer also turns on NAPI; that is not tested. The switch's
//!   AF_XDP forwarding does not use this path (it transmits through the tx ring), so the peers
//!   of the switch's veths (pod ends) need no program.
//!
//! # Other kernel behaviour worth knowing
//! - A socket's rx/tx rings can be set only once. After a failed bind, the socket that
//!   registered the UMEM can't be reused, so [`XskSocket::new`] re-registers the UMEM on a fresh
//!   socket when the first socket's setup fails.
//! - The first socket uses the UMEM's fill/completion rings ([`UmemConfig`] sizes). Sockets
//!   that share the UMEM get their own, sized by [`SocketConfig`]. Two sockets on the same UMEM
//!   can't share a (device, queue).
//! - Closing a socket removes it from every XSKMAP. The first socket's fd is also the UMEM's
//!   anchor, so it stays open until the [`Umem`] and every socket sharing it are dropped. Call
//!   [`XdpAttachment::remove`] for it explicitly.
//! - Kicking an empty tx ring counts in `tx_ring_empty_descs`; `kick_tx` skips the syscall when
//!   nothing is pending.

//! # Privileges
//! Creating maps/programs/links and AF_XDP sockets needs CAP_NET_ADMIN, CAP_BPF (or
//! CAP_SYS_ADMIN) and CAP_NET_RAW; UMEM registration is charged to RLIMIT_MEMLOCK unless the
//! process has CAP_IPC_LOCK.

#![allow(unsafe_code)]

pub mod bpf;
pub mod port;
pub mod ring;
pub mod sys;
pub mod xsk;

#[cfg(test)]
mod tests;

pub use bpf::{XdpAttachment, XdpLink, XdpMode, XdpModePreference, XdpProgram, XskMap};
pub use port::{AfXdpConfig, AfXdpPort, AfXdpPortStats};
pub use sys::{poll, XDP_PACKET_HEADROOM};
pub use xsk::{BindMode, SocketConfig, Umem, UmemConfig, XskMode, XskSocket, XskStats};

/// Errors of the AF_XDP layer. Messages name the interface, queue and failing operation and
/// carry the OS error.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// No interface of that name in the calling thread's network namespace.
    #[error("no such network interface {ifname:?}")]
    NoSuchInterface { ifname: String },
    /// The name is not a valid interface name (contains NUL).
    #[error("invalid interface name {0:?}")]
    BadIfName(String),
    /// The queue does not exist on the device.
    #[error("{ifname} has no queue {queue}: it has {queues} rx queue(s)")]
    QueueOutOfRange { ifname: String, queue: u32, queues: u32 },
    /// Bad geometry or ring size.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// UMEM registration or its rings.
    #[error("{op}: {source}")]
    Umem { op: &'static str, source: std::io::Error },
    /// A socket operation on a device queue; `op` reads as a phrase ending before the
    /// interface name, e.g. "bind AF_XDP socket to".
    #[error("{op} {ifname} queue {queue}: {source}")]
    Socket { op: &'static str, ifname: String, queue: u32, source: std::io::Error },
    /// A BPF map operation.
    #[error("{op} ({ifname}): {source}")]
    Bpf { op: &'static str, ifname: String, source: std::io::Error },
    /// The verifier refused a program.
    #[error("load XDP program {name}: {source}; verifier log:\n{log}")]
    ProgLoad { name: String, source: std::io::Error, log: String },
    /// Attaching the program to the interface failed.
    #[error("attach XDP program to {ifname} ({mode} mode, BPF link): {source}")]
    Attach { ifname: String, mode: XdpMode, source: std::io::Error },
}

/// Memory that can be registered as a UMEM.
///
/// # Safety
/// Implementors guarantee that `umem_base()..umem_base() + umem_len()` is a page-aligned,
/// readable and writable private mapping owned by the value, used for nothing but packet
/// frames of `umem_frame_size()` bytes, and that the owner follows the frame ownership
/// contract of this module (no access to a frame while it is on a fill or tx ring).
pub unsafe trait UmemArea {
    /// Start of the area.
    fn umem_base(&self) -> *mut u8;
    /// Length in bytes (a multiple of the frame size).
    fn umem_len(&self) -> usize;
    /// Frame (chunk) size in bytes.
    fn umem_frame_size(&self) -> usize;
}

// SAFETY: a `FrameReader` keeps the same mapping alive as its `Region` (shared ownership), so
// the area stays valid for as long as the reader, and the frames are still governed by the
// owning pool's handles, which is this module's contract.
unsafe impl UmemArea for crate::packet::umem::FrameReader {
    fn umem_base(&self) -> *mut u8 {
        self.as_ptr()
    }
    fn umem_len(&self) -> usize {
        self.len()
    }
    fn umem_frame_size(&self) -> usize {
        self.frame_size()
    }
}

// SAFETY: `Region` is a page-aligned anonymous private mapping of `frames * frame_size` bytes
// that it owns, and the buffer pool that owns it hands out a frame only while the switch owns
// it (see `packet::umem`), which is this module's contract.
unsafe impl UmemArea for crate::packet::umem::Region {
    fn umem_base(&self) -> *mut u8 {
        self.as_ptr()
    }
    fn umem_len(&self) -> usize {
        self.len()
    }
    fn umem_frame_size(&self) -> usize {
        self.frame_size()
    }
}
