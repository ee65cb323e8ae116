//! Raw AF_PACKET interface: constants and structs from `include/uapi/linux/if_packet.h`, thin
//! syscall wrappers that turn `-1`/`errno` into [`io::Error`], and the shared ring mapping with
//! the ownership protocol that makes reading and writing it sound.
//!
//! Every `unsafe` of the AF_PACKET port lives here. The constants and layouts are spelled out
//! rather than taken from `libc` so that the port does not depend on which `libc` release
//! happens to carry the TPACKET_V3 structures.
//!
//! # Ring ownership
//! The mapping is shared with the kernel, which writes it from softirq context at any time.
//! Rust code may only form references to the parts userspace owns:
//! - an rx **block** whose `block_status` has `TP_STATUS_USER` set, until it is handed back
//!   with `TP_STATUS_KERNEL` ([`Rings::rx_peek`] / [`Rings::rx_advance`]);
//! - a tx **slot** whose `tp_status` is `TP_STATUS_AVAILABLE` (or `TP_STATUS_WRONG_FORMAT`,
//!   which the kernel also leaves alone), until it is handed over with
//!   `TP_STATUS_SEND_REQUEST` ([`Rings::tx_slot`] / [`TxSlot::submit`]).
//!
//! Status words are only ever touched through atomics: acquire when reading what the kernel
//! wrote, release when handing memory back. The kernel side is `prb_close_block` (`smp_wmb()`
//! then the `TP_STATUS_USER` store) and `__packet_get_status`/`__packet_set_status` (status
//! accesses fenced with `smp_rmb`/`smp_wmb`) in `net/packet/af_packet.c`.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_void, socklen_t};

// ---- socket options (uapi/linux/if_packet.h), level SOL_PACKET ----
pub(super) const SOL_PACKET: c_int = 263;
pub(super) const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub(super) const PACKET_RX_RING: c_int = 5;
pub(super) const PACKET_STATISTICS: c_int = 6;
pub(super) const PACKET_VERSION: c_int = 10;
pub(super) const PACKET_TX_RING: c_int = 13;
pub(super) const PACKET_LOSS: c_int = 14;
pub(super) const PACKET_QDISC_BYPASS: c_int = 20;
/// Prefix every frame, both directions, with a `struct virtio_net_hdr` (10 bytes).
pub(super) const PACKET_VNET_HDR: c_int = 15;
/// Length of the virtio-net header `PACKET_VNET_HDR` adds.
pub(super) const VNET_HDR_LEN: usize = 10;
pub(super) const PACKET_IGNORE_OUTGOING: c_int = 23;
pub(super) const PACKET_MR_PROMISC: u16 = 1;
/// `enum tpacket_versions`: V1 = 0, V2 = 1, V3 = 2.
pub(super) const TPACKET_V3: c_int = 2;
/// `ETH_P_ALL` in host order.
pub(super) const ETH_P_ALL: u16 = 0x0003;

// ---- rx status bits (block_status and tpacket3_hdr.tp_status) ----
pub(super) const TP_STATUS_KERNEL: u32 = 0;
pub(super) const TP_STATUS_USER: u32 = 1 << 0;
pub(super) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
pub(super) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub(super) const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

// ---- tx status values ----
pub(super) const TP_STATUS_AVAILABLE: u32 = 0;
pub(super) const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
pub(super) const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;
/// Timestamp source bits the kernel may OR into a tx status it hands back.
const TP_STATUS_TS_MASK: u32 = (1 << 29) | (1 << 30) | (1 << 31);

/// `TPACKET_ALIGNMENT`: frame sizes must be multiples of it.
pub(super) const TPACKET_ALIGNMENT: usize = 16;
/// `sizeof(struct tpacket3_hdr)`, already a multiple of [`TPACKET_ALIGNMENT`].
const TPACKET3_HDR_SIZE: usize = 48;
/// `TPACKET3_HDRLEN`: aligned header plus a `sockaddr_ll`; the kernel's minimum frame size.
pub(super) const TPACKET3_HDRLEN: usize = TPACKET3_HDR_SIZE + size_of::<libc::sockaddr_ll>();
/// Where a tx frame's data starts inside its slot without `PACKET_TX_HAS_OFF`:
/// `tp_hdrlen - sizeof(struct sockaddr_ll)` (`tpacket_parse_header`).
pub(super) const TX_DATA_OFFSET: usize = TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();

// ---- struct tpacket_block_desc { u32 version; u32 offset_to_priv; struct tpacket_hdr_v1 } ----
const BLK_STATUS: usize = 8;
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST_PKT: usize = 16;
const BLK_DESC_SIZE: usize = 48;

// ---- struct tpacket3_hdr field offsets ----
const H_NEXT_OFFSET: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
/// `hv1.tp_vlan_tci` (u32; the TCI is its low 16 bits).
const H_VLAN_TCI: usize = 32;
/// `hv1.tp_vlan_tpid` (u16).
const H_VLAN_TPID: usize = 36;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TpacketReq3 {
    pub tp_block_size: u32,
    pub tp_block_nr: u32,
    pub tp_frame_size: u32,
    pub tp_frame_nr: u32,
    pub tp_retire_blk_tov: u32,
    pub tp_sizeof_priv: u32,
    pub tp_feature_req_word: u32,
}

/// `struct tpacket_stats_v3`, as returned (and reset) by `PACKET_STATISTICS` on a TPACKET_V3
/// socket. `tp_packets` includes `tp_drops`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TpacketStatsV3 {
    pub tp_packets: u32,
    pub tp_drops: u32,
    pub tp_freeze_q_cnt: u32,
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The system page size (ring blocks must be multiples of it).
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r > 0 {
        r as usize
    } else {
        4096
    }
}

/// `if_nametoindex(3)` in the calling thread's network namespace.
pub(super) fn if_index(name: &CStr) -> io::Result<u32> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// An `AF_PACKET`/`SOCK_RAW` socket, non-blocking and close-on-exec.
#[derive(Debug)]
pub(super) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Creates the socket with `protocol` (host order) as its initial protocol. 0 means "no
    /// traffic until bind": nothing queues on the socket before its rings exist.
    pub fn new(protocol: u16) -> io::Result<PacketSocket> {
        // SAFETY: socket(2) takes no pointers.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                c_int::from(protocol.to_be()),
            )
        })?;
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
        Ok(PacketSocket { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Reads one queued packet (a socket without an rx ring): its virtio-net header into
    /// `hdr`, its frame into `buf`. Returns the bytes read, header included; `WouldBlock` when
    /// nothing is queued (the socket is non-blocking).
    pub fn read_vnet(&self, hdr: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec { iov_base: hdr.as_mut_ptr().cast::<c_void>(), iov_len: hdr.len() },
            libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: buf.len() },
        ];
        // SAFETY: both iovecs describe live, exclusively borrowed slices (`hdr`, `buf`) that
        // the kernel may write up to their lengths; `iov` outlives the call.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn setsockopt<T>(&self, level: c_int, opt: c_int, val: &T) -> io::Result<()> {
        // SAFETY: `val` points to a live, initialised `T` of exactly the length passed; the
        // kernel only reads it.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                opt,
                (val as *const T).cast::<c_void>(),
                size_of::<T>() as socklen_t,
            )
        })
        .map(drop)
    }

    /// `setsockopt(level, opt, &int)`.
    pub fn set_int(&self, level: c_int, opt: c_int, val: c_int) -> io::Result<()> {
        self.setsockopt(level, opt, &val)
    }

    /// `PACKET_RX_RING` / `PACKET_TX_RING` with a `tpacket_req3`.
    pub fn set_ring(&self, opt: c_int, req: &TpacketReq3) -> io::Result<()> {
        self.setsockopt(SOL_PACKET, opt, req)
    }

    /// Binds to `ifindex`, receiving frames of every protocol (`ETH_P_ALL`).
    pub fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as c_int;
        // SAFETY: `sll` is a valid sockaddr_ll of the length passed; the kernel only reads it.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as socklen_t,
            )
        })
        .map(drop)
    }

    /// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`: the device's promiscuity count goes up
    /// by one for as long as the socket is open (the kernel drops it on close).
    pub fn add_promisc(&self, ifindex: u32) -> io::Result<()> {
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as c_int,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        self.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
    }

    /// `PACKET_STATISTICS`. The kernel resets its counters on every read.
    pub fn statistics_v3(&self) -> io::Result<TpacketStatsV3> {
        let mut st = TpacketStatsV3::default();
        let mut len = size_of::<TpacketStatsV3>() as socklen_t;
        // SAFETY: `st` and `len` are live and writable; the kernel writes at most `len` bytes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStatsV3).cast::<c_void>(),
                &mut len,
            )
        })?;
        Ok(st)
    }

    /// Asks the kernel to transmit every `TP_STATUS_SEND_REQUEST` slot of the tx ring:
    /// `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`. With `MSG_DONTWAIT` the kernel sends
    /// what is queued and returns without waiting for completions.
    pub fn kick(&self) -> io::Result<()> {
        // SAFETY: a NULL buffer of length 0 and a NULL address are valid for a socket with a
        // tx ring: the kernel reads the frames from the ring, not from the arguments.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout_ms` for the socket to become readable.
    pub fn poll_in(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `p` is one live, writable pollfd, and 1 is the count passed.
        let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
        Ok(n > 0 && p.revents & libc::POLLIN != 0)
    }

    /// Sends one frame through the socket's normal (non-ring) path.
    #[cfg(test)]
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is a live buffer of the length passed; the kernel only reads it.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Receives one frame through the socket's normal (non-ring) path without blocking:
    /// returns its length and `sll_pkttype`.
    #[cfg(test)]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, u8)> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut flen = size_of::<libc::sockaddr_ll>() as socklen_t;
        // SAFETY: `buf` and `from` are live and writable for the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_ll).cast::<libc::sockaddr>(),
                &mut flen,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((n as usize, from.sll_pkttype))
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Moves the calling thread into the network namespace at `path` (e.g. `/var/run/netns/x`).
#[cfg(test)]
pub(super) fn enter_netns(path: &str) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns takes a valid namespace fd (kept open by `file` for the call) and affects
    // only the calling thread.
    cvt(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// The `MAP_SHARED` mapping of a socket's rings: the rx ring at offset 0, the tx ring right
/// after it (the layout `packet_mmap` uses).
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; `Rings` hands out
// references into it only through `&self`/`&mut self` methods, so moving the owner to another
// thread moves all access with it.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(sock: &PacketSocket, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint) of `len` bytes backed by the
        // socket's rings; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                sock.fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mapping { base, len })
    }

    /// The status word at byte `off`, as an atomic.
    fn status(&self, off: usize) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "status word {off} outside the ring mapping"
        );
        // SAFETY: `off` is in bounds and 4-byte aligned (asserted; the base is page-aligned);
        // the word lives as long as the mapping, which outlives the returned borrow of `self`.
        // The kernel accesses it concurrently, which is why it is only ever used as an atomic.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off).cast::<u32>()) }
    }

    /// The bytes `off..off + len`.
    ///
    /// # Safety
    /// The range must be owned by userspace under the ring protocol for as long as the returned
    /// slice lives (the kernel does not write it meanwhile).
    unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len, "range outside the ring mapping");
        // SAFETY: in bounds (asserted) and, per the caller's contract, not written by the
        // kernel while the slice lives.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off), len) }
    }

    /// The bytes `off..off + len`, writable.
    ///
    /// # Safety
    /// As for [`Mapping::bytes`], and no other reference into the range may exist: the caller
    /// holds `&mut` to the ring state that owns the range.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        assert!(off + len <= self.len, "range outside the ring mapping");
        // SAFETY: in bounds (asserted); per the caller's contract userspace owns the range and
        // holds no other reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(off), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe exactly the mapping created in `new`; every reference
        // into it borrowed `self` and is gone.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Geometry of the TPACKET_V3 rx ring: `block_nr` blocks of `block_size` bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct RxGeometry {
    pub block_size: usize,
    pub block_nr: usize,
}

/// Geometry of the tx ring: `frame_nr` slots of `frame_size` bytes, `frame_size` dividing
/// into blocks of `block_size` bytes (`block_size / frame_size` slots per block; slots never
/// straddle blocks).
#[derive(Clone, Copy, Debug)]
pub(super) struct TxGeometry {
    pub block_size: usize,
    pub block_nr: usize,
    pub frame_size: usize,
}

/// One received frame, borrowed from its (user-owned) rx block.
#[derive(Debug)]
pub(super) struct RxFrame<'a> {
    /// The captured bytes (`tp_snaplen` of them, from `tp_mac`).
    pub data: &'a [u8],
    /// The frame's length on the wire (`tp_len`), minus any VLAN tag the kernel stripped.
    pub wire_len: u32,
    /// `tp_status` (VLAN and checksum flags).
    pub status: u32,
    pub vlan_tci: u16,
    pub vlan_tpid: u16,
    /// The virtio-net header in front of the frame (`PACKET_VNET_HDR` sockets).
    pub vnet: Option<[u8; VNET_HDR_LEN]>,
}

/// Where the rx walk stands.
#[derive(Debug, Default)]
struct RxPos {
    /// Current block index.
    block: usize,
    /// The current block is user-owned and being walked.
    open: bool,
    /// Packets of the open block not yet consumed.
    left: u32,
    /// Offset of the next packet's header inside the open block.
    off: usize,
}

/// A socket's mmapped rx (TPACKET_V3) and tx rings, with the walk positions.
#[derive(Debug)]
pub(super) struct Rings {
    map: Mapping,
    rx: RxGeometry,
    rx_pos: RxPos,
    rx_malformed: u64,
    tx: TxGeometry,
    /// Offset of the tx ring in the mapping.
    tx_base: usize,
    tx_frames_per_block: usize,
    tx_frame_nr: usize,
    /// The next slot to fill, in step with the kernel's own tx head (it sends in ring order).
    tx_head: usize,
    /// The socket has `PACKET_VNET_HDR`: a virtio-net header precedes every rx frame.
    vnet: bool,
}

impl Rings {
    /// Maps the rings that `PACKET_RX_RING`/`PACKET_TX_RING` set up on `sock` with this
    /// geometry.
    pub fn map(sock: &PacketSocket, rx: RxGeometry, tx: TxGeometry) -> io::Result<Rings> {
        let rx_len = rx.block_size * rx.block_nr;
        let tx_len = tx.block_size * tx.block_nr;
        let map = Mapping::new(sock, rx_len + tx_len)?;
        let tx_frames_per_block = tx.block_size / tx.frame_size;
        Ok(Rings {
            map,
            rx,
            rx_pos: RxPos::default(),
            rx_malformed: 0,
            tx,
            tx_base: rx_len,
            tx_frames_per_block,
            tx_frame_nr: tx_frames_per_block * tx.block_nr,
            tx_head: 0,
            vnet: false,
        })
    }

    /// Tells the rings that the socket has `PACKET_VNET_HDR` (rx frames carry the header just
    /// before the MAC header).
    pub fn set_vnet(&mut self, on: bool) {
        self.vnet = on;
    }

    /// Blocks (or slots) whose headers made no sense and were skipped whole.
    pub fn rx_malformed(&self) -> u64 {
        self.rx_malformed
    }

    /// The next received frame, or `None` when the kernel has not closed the next block yet.
    /// The frame stays in the ring until [`Rings::rx_advance`].
    pub fn rx_peek(&mut self) -> Option<RxFrame<'_>> {
        let bs = self.rx.block_size;
        let mut found = None;
        // Bounded: each turn either finds a frame, finds nothing, or gives one block back.
        for _ in 0..=self.rx.block_nr {
            let block_off = self.rx_pos.block * bs;
            if !self.rx_pos.open {
                // Acquire: pairs with the kernel's smp_wmb() before it stores TP_STATUS_USER
                // in prb_close_block, so the block's headers and packets written before are
                // visible to the reads below.
                let st = self.map.status(block_off + BLK_STATUS).load(Ordering::Acquire);
                if st & TP_STATUS_USER == 0 {
                    return None;
                }
                // SAFETY: TP_STATUS_USER is set: the block is ours until we store
                // TP_STATUS_KERNEL, which only `rx_release` does.
                let blk = unsafe { self.map.bytes(block_off, bs) };
                self.rx_pos.left = read_u32(blk, BLK_NUM_PKTS);
                self.rx_pos.off = read_u32(blk, BLK_FIRST_PKT) as usize;
                self.rx_pos.open = true;
            }
            if self.rx_pos.left == 0 {
                self.rx_release();
                continue;
            }
            // SAFETY: the block is open, hence user-owned (see above).
            let blk = unsafe { self.map.bytes(block_off, bs) };
            match parse_frame(blk, self.rx_pos.off) {
                Some(f) => {
                    found = Some((block_off, f));
                    break;
                }
                None => {
                    self.rx_malformed += 1;
                    self.rx_release();
                }
            }
        }
        let (block_off, (data, snaplen, wire_len, status, vlan_tci, vlan_tpid)) = found?;
        // SAFETY: the block is open, hence user-owned, and stays so while the returned frame
        // borrows `self`: giving it back (`rx_advance`, `rx_release`) needs `&mut self`.
        let blk = unsafe { self.map.bytes(block_off, bs) };
        // With PACKET_VNET_HDR the kernel writes the header right before the MAC header
        // (tpacket_rcv reserves it between the tpacket3_hdr and tp_mac).
        let vnet = (self.vnet && data >= VNET_HDR_LEN).then(|| {
            let mut h = [0u8; VNET_HDR_LEN];
            h.copy_from_slice(&blk[data - VNET_HDR_LEN..data]);
            h
        });
        Some(RxFrame {
            data: &blk[data..data + snaplen],
            wire_len,
            status,
            vlan_tci,
            vlan_tpid,
            vnet,
        })
    }

    /// Consumes the frame [`Rings::rx_peek`] returned; gives the block back to the kernel
    /// after its last frame.
    pub fn rx_advance(&mut self) {
        if !self.rx_pos.open || self.rx_pos.left == 0 {
            return;
        }
        self.rx_pos.left -= 1;
        if self.rx_pos.left == 0 {
            self.rx_release();
            return;
        }
        let block_off = self.rx_pos.block * self.rx.block_size;
        // SAFETY: the block is open, hence user-owned.
        let blk = unsafe { self.map.bytes(block_off, self.rx.block_size) };
        let next = read_u32(blk, self.rx_pos.off + H_NEXT_OFFSET) as usize;
        if next == 0 {
            // More packets announced than chained: a malformed block.
            self.rx_malformed += 1;
            self.rx_release();
        } else {
            self.rx_pos.off += next;
        }
    }

    /// Hands the open block back to the kernel and moves to the next one.
    fn rx_release(&mut self) {
        let block_off = self.rx_pos.block * self.rx.block_size;
        // Release: every read of the block above happens before the kernel can see it free and
        // overwrite it (its prb_* helpers read block_status and then fill the block).
        self.map.status(block_off + BLK_STATUS).store(TP_STATUS_KERNEL, Ordering::Release);
        self.rx_pos =
            RxPos { block: (self.rx_pos.block + 1) % self.rx.block_nr, ..RxPos::default() };
    }

    /// Largest frame a tx slot holds.
    pub fn tx_capacity(&self) -> usize {
        self.tx.frame_size - TX_DATA_OFFSET
    }

    /// Number of tx slots.
    pub fn tx_slots(&self) -> usize {
        self.tx_frame_nr
    }

    fn tx_slot_off(&self, i: usize) -> usize {
        self.tx_base
            + (i / self.tx_frames_per_block) * self.tx.block_size
            + (i % self.tx_frames_per_block) * self.tx.frame_size
    }

    /// Whether frames handed to the kernel still wait to be sent. Frames waiting for a kick
    /// form a contiguous run ending just before our head (the kernel sends in ring order), so
    /// the slot before the head tells.
    pub fn tx_waiting(&self) -> bool {
        let prev = (self.tx_head + self.tx_frame_nr - 1) % self.tx_frame_nr;
        // Relaxed is enough: this only decides whether to kick; no slot memory is accessed
        // on the strength of it.
        self.map.status(self.tx_slot_off(prev) + H_STATUS).load(Ordering::Relaxed)
            & !TP_STATUS_TS_MASK
            == TP_STATUS_SEND_REQUEST
    }

    /// The next tx slot if userspace owns it, or `None` when the ring is full (the kernel has
    /// not sent, or not finished sending, what is there). Slots are taken strictly in ring
    /// order because the kernel sends them in ring order from its own head: a free slot
    /// further on cannot be used out of turn.
    pub fn tx_slot(&mut self) -> Option<TxSlot<'_>> {
        let off = self.tx_slot_off(self.tx_head);
        // Acquire: pairs with the kernel's status store in tpacket_destruct_skb (or in
        // tpacket_snd on error), so the kernel is done with the slot's bytes before we write
        // them below.
        let st = self.map.status(off + H_STATUS).load(Ordering::Acquire) & !TP_STATUS_TS_MASK;
        // WRONG_FORMAT (only without PACKET_LOSS, which the port sets) also leaves the slot
        // with userspace: the kernel stopped at it and will retry it once re-requested.
        if st != TP_STATUS_AVAILABLE && st & TP_STATUS_WRONG_FORMAT == 0 {
            return None;
        }
        Some(TxSlot { rings: self, off })
    }
}

/// A tx slot userspace owns; [`TxSlot::submit`] hands it to the kernel, dropping it leaves it
/// free.
pub(super) struct TxSlot<'a> {
    rings: &'a mut Rings,
    off: usize,
}

impl TxSlot<'_> {
    /// The slot's data area ([`Rings::tx_capacity`] bytes).
    pub fn buf(&mut self) -> &mut [u8] {
        let cap = self.rings.tx_capacity();
        // SAFETY: the slot's status is AVAILABLE/WRONG_FORMAT (checked in `tx_slot`), so the
        // kernel neither reads nor writes it until we store SEND_REQUEST; `self` holds the
        // ring state mutably, so this is the only reference into the slot.
        unsafe { self.rings.map.bytes_mut(self.off + TX_DATA_OFFSET, cap) }
    }

    /// Hands the slot to the kernel with a frame of `len` bytes (written through
    /// [`TxSlot::buf`]) and advances the ring head.
    pub fn submit(self, len: usize) {
        let rings = self.rings;
        assert!(len <= rings.tx_capacity(), "tx frame larger than its slot");
        {
            // SAFETY: as in `buf`: the slot is user-owned and `rings` is held mutably.
            let hdr = unsafe { rings.map.bytes_mut(self.off, TPACKET3_HDR_SIZE) };
            // TPACKET_V3 tx rejects variable-sized slots: tp_next_offset must be 0.
            hdr[H_NEXT_OFFSET..H_NEXT_OFFSET + 4].copy_from_slice(&0u32.to_ne_bytes());
            hdr[H_SNAPLEN..H_SNAPLEN + 4].copy_from_slice(&(len as u32).to_ne_bytes());
            hdr[H_LEN..H_LEN + 4].copy_from_slice(&(len as u32).to_ne_bytes());
        }
        // Release: the frame bytes and tp_len written above are visible to the kernel once it
        // sees SEND_REQUEST (it reads the status in tpacket_snd, then tp_len and the data).
        rings.map.status(self.off + H_STATUS).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        rings.tx_head = (rings.tx_head + 1) % rings.tx_frame_nr;
    }
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn read_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

/// Validates the tpacket3_hdr at `off` of a block and returns (data offset, snaplen, tp_len,
/// tp_status, vlan tci, vlan tpid), or `None` if anything points outside the block.
fn parse_frame(blk: &[u8], off: usize) -> Option<(usize, usize, u32, u32, u16, u16)> {
    if off < BLK_DESC_SIZE || !off.is_multiple_of(4) || off + TPACKET3_HDR_SIZE > blk.len() {
        return None;
    }
    let snaplen = read_u32(blk, off + H_SNAPLEN) as usize;
    let mac = usize::from(read_u16(blk, off + H_MAC));
    let data = off + mac;
    if mac < TPACKET3_HDR_SIZE || data.checked_add(snaplen)? > blk.len() {
        return None;
    }
    Some((
        data,
        snaplen,
        read_u32(blk, off + H_LEN),
        read_u32(blk, off + H_STATUS),
        read_u32(blk, off + H_VLAN_TCI) as u16,
        read_u16(blk, off + H_VLAN_TPID),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_uapi_headers() {
        assert_eq!(size_of::<TpacketReq3>(), 28);
        assert_eq!(size_of::<TpacketStatsV3>(), 12);
        assert_eq!(size_of::<libc::sockaddr_ll>(), 20);
        assert_eq!(TPACKET3_HDRLEN, 68);
        assert_eq!(TX_DATA_OFFSET, 48);
    }

    #[test]
    fn parse_frame_rejects_out_of_block_offsets() {
        let mut blk = vec![0u8; 256];
        // A header at 48 whose data (tp_mac 80, snaplen 60) fits...
        blk[48 + H_SNAPLEN..48 + H_SNAPLEN + 4].copy_from_slice(&60u32.to_ne_bytes());
        blk[48 + H_MAC..48 + H_MAC + 2].copy_from_slice(&80u16.to_ne_bytes());
        assert_eq!(parse_frame(&blk, 48).map(|f| (f.0, f.1)), Some((128, 60)));
        // ...and one whose data runs past the block does not.
        blk[48 + H_SNAPLEN..48 + H_SNAPLEN + 4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(parse_frame(&blk, 48).is_none());
        assert!(parse_frame(&blk, 0).is_none(), "inside the block descriptor");
        assert!(parse_frame(&blk, 250).is_none(), "header past the end");
    }
}
