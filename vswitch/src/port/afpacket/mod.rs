//! AF_PACKET ports on TPACKET_V3 mmap rings: the fallback port type for devices where AF_XDP
//! is not available (no XDP support in the driver, old kernels, or a device that must not
//! carry an XDP program).
//!
//! One `AF_PACKET`/`SOCK_RAW` socket per port, bound to the interface, with two rings mapped
//! into the process:
//! - **rx**: a TPACKET_V3 ring of large blocks (128 KiB by default). The kernel packs frames
//!   into the current block back to back and hands the whole block over (`TP_STATUS_USER`)
//!   when it is full or after `rx_block_timeout_ms`. [`Port::rx`] walks the block's
//!   `tpacket3_hdr` chain, copies each frame into a pool buffer, remembers where it stopped
//!   when the batch (or the pool) runs out, and gives the block back (`TP_STATUS_KERNEL`) only
//!   after its last frame is consumed. No syscall on this path.
//! - **tx**: a TPACKET_V3 tx ring (kernel >= 4.11; same socket, so one fd and one bind) of
//!   fixed 2 KiB slots. [`Port::tx`] copies each packet into the next slot, marks it
//!   `TP_STATUS_SEND_REQUEST` and frees the pool packet; one
//!   `sendto(fd, NULL, 0, MSG_DONTWAIT)` per batch makes the kernel send every requested slot.
//!   The kernel gives a slot back (`TP_STATUS_AVAILABLE`) when the skb built from it is
//!   released.
//!
//! ```text
//!  wire -> driver -> kernel copies into rx block -> rx(): memcpy into pool frame -> Batch
//!  Batch -> tx(): memcpy into tx slot, free frame -> sendto kick -> kernel -> driver -> wire
//! ```
//!
//! # Copies
//! AF_PACKET cannot receive into, or send from, memory the switch chooses: the rings are the
//! kernel's. So each direction makes one userspace copy of the packet bytes (never of the
//! ring headers): rx copies out of the block so the block can go back to the kernel without
//! waiting for the packet to leave the switch (a block holds many packets with independent
//! fates), and tx copies into the slot so the pool frame is free at once and the port owns no
//! pool buffers between calls ([`Port::drain`] has nothing to give back). Forwarding to an
//! AF_XDP port still moves the pool frame without another copy.
//!
//! # VLAN tags
//! The receive path strips an 802.1Q/802.1ad tag into skb metadata before AF_PACKET sees the
//! frame (hardware VLAN offload, or `skb_vlan_untag` in `__netif_receive_skb_core`), and
//! TPACKET_V3 reports it in `tp_vlan_tci`/`tp_vlan_tpid` with `TP_STATUS_VLAN_VALID`. The port
//! writes the tag back after the MAC addresses while copying (TPID from `tp_vlan_tpid` when
//! `TP_STATUS_VLAN_TPID_VALID`, else 0x8100), so the switch sees the frame as it was on the
//! wire. Only the outer tag is stripped by the kernel; inner tags stay in the bytes.
//!
//! # Socket setup
//! The socket is created with protocol 0 (it receives nothing until bound) so that no frame
//! queues on it before its rings exist, then: `PACKET_VERSION = TPACKET_V3`,
//! `PACKET_LOSS = 1` (the kernel skips a malformed tx slot instead of stalling the ring on
//! it), rings, `mmap`, `PACKET_IGNORE_OUTGOING = 1` (neither our own transmissions nor the
//! host's come back on rx: a switch port receives what arrives on the wire),
//! `PACKET_QDISC_BYPASS = 1` (tx goes straight to the driver; the switch does its own
//! queueing), `SO_SNDBUFFORCE` large enough for a full tx ring in flight (best effort),
//! `bind` to the ifindex with `ETH_P_ALL`, and `PACKET_MR_PROMISC` membership (a switch port
//! must see frames for every MAC). Closing the socket drops the membership, so the interface
//! is left as found.
//!
//! # Limits
//! - Frames the kernel could not fit into a block (`tp_snaplen < tp_len`: GRO/LRO aggregates
//!   larger than a block) are dropped and counted ([`AfPacketStats::rx_truncated`]). Turn
//!   GRO/LRO off on a device used this way, or give it larger blocks.
//! - Frames sent by the local stack on a veth or tap arrive with a partial checksum
//!   (`TP_STATUS_CSUMNOTREADY`); their bytes are forwarded as they are and counted
//!   ([`AfPacketStats::rx_csum_partial`]). A later `PACKET_VNET_HDR` variant can carry the
//!   checksum and GSO state (for uplinks and pod veths) as [`crate::packet::Offload`].
//! - With qdisc bypass, a frame the driver refuses (`NETDEV_TX_BUSY`) is dropped by the
//!   kernel; the kick then reports an error, counted in [`AfPacketStats::tx_kick_errors`].
//! - `TxReport::sent` counts frames handed to the kernel. The kernel accepts a frame of up to
//!   MTU + 18 bytes (room for a tag) even when it is untagged; veth then drops an untagged
//!   frame longer than MTU + 14 without telling anyone.
//! - A tx slot comes back (`TP_STATUS_AVAILABLE`) once the kernel has released the skb built
//!   from it; the tests check on veth that reusing slots at once never changes frames the
//!   peer has not read yet.

mod sys;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use crate::packet::{Batch, Meta, Pkt, Pool};
use crate::port::{Port, TxReport};
use crate::types::PortId;

use sys::{PacketSocket, Rings, RxFrame, RxGeometry, TpacketReq3, TxGeometry};

/// Length of an Ethernet header; shorter frames are not sent.
const ETH_HLEN: usize = 14;
/// Frame size given to the kernel for the rx ring. TPACKET_V3 ignores it beyond validating
/// that it divides into the blocks; frames are packed into blocks at their own length.
const RX_REQ_FRAME_SIZE: usize = 2048;

/// Geometry and options of an AF_PACKET port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Bytes per rx block, a multiple of the page size. Also the largest frame the port can
    /// receive whole (minus ~130 bytes of headers): 128 KiB holds a 64 KiB GRO aggregate.
    pub rx_block_size: usize,
    /// Number of rx blocks (the ring is `rx_block_size * rx_block_count` bytes).
    pub rx_block_count: usize,
    /// Milliseconds after which the kernel hands over a block that is not full, bounding the
    /// added latency at low packet rates (0 lets the kernel choose, typically 8 ms or more).
    pub rx_block_timeout_ms: u32,
    /// Bytes per tx slot, a multiple of 16; a slot holds a frame of `tx_frame_size - 48`
    /// bytes (2000 by default).
    pub tx_frame_size: usize,
    /// Number of tx slots, rounded up to fill whole pages.
    pub tx_frame_count: usize,
    /// Join the device's promiscuous mode while the port is open.
    pub promiscuous: bool,
    /// Send straight to the driver, bypassing the device's qdisc.
    pub qdisc_bypass: bool,
    /// `PACKET_VNET_HDR`: frames carry their checksum and segmentation state both ways, so
    /// 64 KB TCP segments cross the port whole (the kernel segments on the wire if the device
    /// cannot). The tx slots must then hold a whole GSO packet: see
    /// [`AfPacketConfig::offload`].
    pub vnet_hdr: bool,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            rx_block_size: 128 * 1024,
            rx_block_count: 32,
            rx_block_timeout_ms: 1,
            tx_frame_size: 2048,
            tx_frame_count: 512,
            promiscuous: true,
            qdisc_bypass: true,
            vnet_hdr: false,
        }
    }
}

impl AfPacketConfig {
    /// An offload-aware port (`PACKET_VNET_HDR`): tx slots of 68 KiB hold a 64 KiB GSO packet
    /// with its headers, 128 of them (8.5 MiB); rx blocks of 128 KiB hold a 64 KiB aggregate.
    pub fn offload() -> AfPacketConfig {
        AfPacketConfig {
            vnet_hdr: true,
            tx_frame_size: 68 * 1024,
            tx_frame_count: 128,
            ..AfPacketConfig::default()
        }
    }
}

/// Errors of an AF_PACKET port. Messages name the interface and the failing call and carry the
/// OS error.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// No interface of that name in the calling thread's network namespace.
    #[error("open AF_PACKET on {ifname}: no such interface")]
    NoSuchInterface { ifname: String },
    /// The name cannot be an interface name (contains NUL).
    #[error("open AF_PACKET on {ifname:?}: invalid interface name")]
    BadIfName { ifname: String },
    /// Bad ring geometry.
    #[error("open AF_PACKET on {ifname}: invalid configuration: {reason}")]
    Config { ifname: String, reason: String },
    /// A call made while opening the port failed; `op` names the syscall and option.
    #[error("open AF_PACKET on {ifname}: {op}: {source}")]
    Open { ifname: String, op: &'static str, source: io::Error },
    /// A call on an open port failed.
    #[error("AF_PACKET on {ifname}: {op}: {source}")]
    Io { ifname: String, op: &'static str, source: io::Error },
}

/// Counters of an AF_PACKET port since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames the kernel offered to the socket, including the dropped ones (`tp_packets`).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because no rx block was free (`tp_drops`).
    pub kernel_drops: u64,
    /// Times the rx ring froze because every block was with userspace (`tp_freeze_q_cnt`).
    pub kernel_freezes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames dropped because the kernel could store only part of them (larger than a block).
    pub rx_truncated: u64,
    /// Frames larger than a pool frame dropped because no big buffer was free.
    pub rx_no_buffer: u64,
    /// Frames received with a partial checksum (`TP_STATUS_CSUMNOTREADY`), forwarded as is.
    pub rx_csum_partial: u64,
    /// Rx blocks skipped because their headers pointed outside the block.
    pub rx_malformed: u64,
    /// Frames whose virtio-net header had a GSO type the switch does not know.
    pub rx_bad_vnet: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets freed because the tx ring had no free slot.
    pub tx_ring_full: u64,
    /// Packets not sent because they were shorter than an Ethernet header or larger than a
    /// tx slot.
    pub tx_bad_length: u64,
    /// Failed `sendto` kicks (frames stay queued in the ring and go with the next kick).
    pub tx_kick_errors: u64,
}

/// An AF_PACKET port. See the module documentation.
#[derive(Debug)]
pub struct AfPacketPort {
    name: String,
    ifindex: u32,
    /// Declared before `sock`: unmapped before the socket closes.
    rings: Rings,
    sock: PacketSocket,
    /// The last kick failed, or frames may still wait in the ring for one.
    kick_pending: bool,
    stats: AfPacketStats,
    /// `PACKET_VNET_HDR` is on.
    vnet: bool,
    /// Vnet-hdr mode: the big buffer the next packet is read into.
    big: Option<Pkt>,
}

impl AfPacketPort {
    /// Opens an AF_PACKET port on `ifname` in the calling thread's network namespace.
    pub fn open(ifname: &str, cfg: AfPacketConfig) -> Result<AfPacketPort, AfPacketError> {
        let cname = CString::new(ifname)
            .map_err(|_| AfPacketError::BadIfName { ifname: ifname.to_string() })?;
        let (rx_geo, rx_req, tx_geo, tx_req) = geometry(&cfg, sys::page_size())
            .map_err(|reason| AfPacketError::Config { ifname: ifname.to_string(), reason })?;
        let ifindex = sys::if_index(&cname).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => {
                AfPacketError::NoSuchInterface { ifname: ifname.to_string() }
            }
            _ => {
                AfPacketError::Open { ifname: ifname.to_string(), op: "if_nametoindex", source: e }
            }
        })?;
        let fail = |op: &'static str| {
            move |source| AfPacketError::Open { ifname: ifname.to_string(), op, source }
        };

        let sock = PacketSocket::new(0).map_err(fail("socket(AF_PACKET, SOCK_RAW)"))?;
        sock.set_int(sys::SOL_PACKET, sys::PACKET_VERSION, sys::TPACKET_V3)
            .map_err(fail("setsockopt(PACKET_VERSION, TPACKET_V3)"))?;
        sock.set_int(sys::SOL_PACKET, sys::PACKET_LOSS, 1)
            .map_err(fail("setsockopt(PACKET_LOSS)"))?;
        // Before the rings: the kernel refuses it once they exist. A vnet-hdr port reads
        // from the socket queue instead of a TPACKET_V3 ring: a V3 block reaches userspace
        // only when full or after its timeout (1 ms at best), and TCP's ACK clock would run at
        // that pace; one readv per packet costs little when packets are 64 KB segments.
        let rx_geo = if cfg.vnet_hdr {
            sock.set_int(sys::SOL_PACKET, sys::PACKET_VNET_HDR, 1)
                .map_err(fail("setsockopt(PACKET_VNET_HDR)"))?;
            RxGeometry { block_nr: 0, ..rx_geo }
        } else {
            sock.set_ring(sys::PACKET_RX_RING, &rx_req)
                .map_err(fail("setsockopt(PACKET_RX_RING)"))?;
            rx_geo
        };
        sock.set_ring(sys::PACKET_TX_RING, &tx_req).map_err(fail("setsockopt(PACKET_TX_RING)"))?;
        let mut rings = Rings::map(&sock, rx_geo, tx_geo).map_err(fail("mmap rings"))?;
        rings.set_vnet(cfg.vnet_hdr);
        if cfg.vnet_hdr {
            // Room for a burst of 64 KB segments in the socket queue.
            let _ = sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
        }
        sock.set_int(sys::SOL_PACKET, sys::PACKET_IGNORE_OUTGOING, 1)
            .map_err(fail("setsockopt(PACKET_IGNORE_OUTGOING)"))?;
        if cfg.qdisc_bypass {
            sock.set_int(sys::SOL_PACKET, sys::PACKET_QDISC_BYPASS, 1)
                .map_err(fail("setsockopt(PACKET_QDISC_BYPASS)"))?;
        }
        // Every in-flight tx frame is charged to the send buffer; without room for a full
        // ring the kernel stops short of the requested slots (they go with a later kick).
        // Best effort: SO_SNDBUFFORCE needs CAP_NET_ADMIN, which opening the port mostly
        // implies, and the default buffer still works, only with fewer frames in flight.
        let sndbuf =
            rings.tx_slots().saturating_mul(cfg.tx_frame_size + 1024).min(i32::MAX as usize);
        let _ = sock.set_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, sndbuf as i32);
        sock.bind(ifindex).map_err(fail("bind(sockaddr_ll)"))?;
        if cfg.promiscuous {
            sock.add_promisc(ifindex)
                .map_err(fail("setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)"))?;
        }
        Ok(AfPacketPort {
            name: ifname.to_string(),
            ifindex,
            rings,
            sock,
            kick_pending: false,
            stats: AfPacketStats::default(),
            vnet: cfg.vnet_hdr,
            big: None,
        })
    }

    /// Reads one packet from the socket queue (vnet-hdr mode) into the pool and appends it to
    /// `batch`. Returns `false` when the queue is empty or no buffer is free.
    fn rx_vnet_one<const N: usize>(
        &mut self,
        id: PortId,
        pool: &mut Pool,
        batch: &mut Batch<N>,
    ) -> bool {
        let frame_room = pool.frame_size() - pool.headroom();
        if self.big.is_none() {
            self.big = pool.alloc_big();
        }
        let (mut p, cap) = match self.big.take() {
            Some(mut b) => {
                let cap = crate::packet::BIG_BUFFER_SIZE - b.headroom();
                pool.truncate(&mut b, 0);
                (b, cap)
            }
            None => match pool.alloc() {
                Some(f) => (f, frame_room),
                None => return false,
            },
        };
        let Some(buf) = pool.append(&mut p, cap) else {
            pool.free(p);
            return false;
        };
        let mut hdr = [0u8; sys::VNET_HDR_LEN];
        let n = match self.sock.read_vnet(&mut hdr, buf) {
            Ok(n) => n,
            Err(_) => {
                self.recycle(pool, p);
                return false;
            }
        };
        let Some(len) = n.checked_sub(sys::VNET_HDR_LEN).filter(|l| (ETH_HLEN..cap).contains(l))
        else {
            // Too short for a frame, or filling the buffer to the last byte (maybe cut).
            self.stats.rx_truncated += 1;
            self.recycle(pool, p);
            return true;
        };
        let Ok(offload) = parse_vnet(&hdr) else {
            self.stats.rx_bad_vnet += 1;
            self.recycle(pool, p);
            return true;
        };
        pool.truncate(&mut p, len);
        let p = if p.is_big() && len <= frame_room {
            // A small packet: into a frame, and the big buffer reads the next one.
            let Some(mut f) = pool.alloc() else {
                self.stats.rx_no_buffer += 1;
                self.big = Some(p);
                return false;
            };
            let reader = pool.reader();
            let src = reader.data(&p);
            if let Some(dst) = pool.append(&mut f, len) {
                dst.copy_from_slice(src);
            }
            self.big = Some(p);
            f
        } else {
            p
        };
        if offload.csum_partial {
            self.stats.rx_csum_partial += 1;
        }
        self.stats.rx_bytes += len as u64;
        let mut m = Meta::rx(id);
        m.offload = offload;
        if let Err(p) = batch.push(p, m) {
            pool.free(p);
            return false;
        }
        true
    }

    fn recycle(&mut self, pool: &mut Pool, p: Pkt) {
        if p.is_big() && self.big.is_none() {
            self.big = Some(p);
        } else {
            pool.free(p);
        }
    }

    /// The socket, for `poll(POLLIN)` while the worker is idle. It is readable when an rx block
    /// is ready.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The interface index the port is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Largest frame the port can send.
    pub fn tx_max_frame(&self) -> usize {
        self.rings.tx_capacity()
    }

    /// Number of tx ring slots.
    pub fn tx_slots(&self) -> usize {
        self.rings.tx_slots()
    }

    /// Waits up to `timeout` for an rx block to be ready (for callers without their own poll
    /// loop).
    pub fn poll_rx(&self, timeout: Duration) -> Result<bool, AfPacketError> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        self.sock.poll_in(ms).map_err(|source| self.io_err("poll", source))
    }

    /// Counters since the port was opened, reading (and folding in) the kernel's
    /// `PACKET_STATISTICS`, which resets on every read.
    pub fn stats(&mut self) -> Result<AfPacketStats, AfPacketError> {
        self.refresh_kernel_stats()?;
        Ok(self.stats)
    }

    fn refresh_kernel_stats(&mut self) -> Result<(), AfPacketError> {
        let st = self
            .sock
            .statistics_v3()
            .map_err(|source| self.io_err("getsockopt(PACKET_STATISTICS)", source))?;
        self.stats.kernel_packets += u64::from(st.tp_packets);
        self.stats.kernel_drops += u64::from(st.tp_drops);
        self.stats.kernel_freezes += u64::from(st.tp_freeze_q_cnt);
        self.stats.rx_malformed = self.rings.rx_malformed();
        Ok(())
    }

    fn io_err(&self, op: &'static str, source: io::Error) -> AfPacketError {
        AfPacketError::Io { ifname: self.name.clone(), op, source }
    }

    /// Asks the kernel to send the requested tx slots.
    fn kick(&mut self) {
        match self.sock.kick() {
            Ok(()) => self.kick_pending = false,
            Err(_) => {
                self.stats.tx_kick_errors += 1;
                self.kick_pending = true;
            }
        }
    }
}

impl AsRawFd for AfPacketPort {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_fd().as_raw_fd()
    }
}

impl AsFd for AfPacketPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Turns a configuration into ring geometry and the two `tpacket_req3`s, or says what is wrong.
fn geometry(
    cfg: &AfPacketConfig,
    page: usize,
) -> Result<(RxGeometry, TpacketReq3, TxGeometry, TpacketReq3), String> {
    let bs = cfg.rx_block_size;
    if bs == 0 || !bs.is_multiple_of(page) || bs < RX_REQ_FRAME_SIZE || bs > u32::MAX as usize {
        return Err(format!(
            "rx block size {bs} is not a positive multiple of the page size {page}"
        ));
    }
    if cfg.rx_block_count == 0
        || bs.checked_mul(cfg.rx_block_count).is_none_or(|t| t > u32::MAX as usize)
    {
        return Err(format!(
            "rx block count {} must be between 1 and 4 GiB / block size",
            cfg.rx_block_count
        ));
    }
    let fs = cfg.tx_frame_size;
    let min = sys::TPACKET3_HDRLEN.next_multiple_of(sys::TPACKET_ALIGNMENT) + ETH_HLEN;
    if !fs.is_multiple_of(sys::TPACKET_ALIGNMENT) || fs < min || fs > u32::MAX as usize / 2 {
        return Err(format!(
            "tx frame size {fs} must be a multiple of {} and at least {min}",
            sys::TPACKET_ALIGNMENT
        ));
    }
    if cfg.tx_frame_count == 0 {
        return Err("tx frame count must be at least 1".to_string());
    }
    let tx_block = fs.next_multiple_of(page);
    let per_block = tx_block / fs;
    let tx_blocks = cfg.tx_frame_count.div_ceil(per_block);
    if tx_block.checked_mul(tx_blocks).is_none_or(|t| t > u32::MAX as usize) {
        return Err(format!("tx ring of {} frames of {fs} bytes is too large", cfg.tx_frame_count));
    }
    let rx_frames = bs / RX_REQ_FRAME_SIZE * cfg.rx_block_count;
    let rx_req = TpacketReq3 {
        tp_block_size: bs as u32,
        tp_block_nr: cfg.rx_block_count as u32,
        tp_frame_size: RX_REQ_FRAME_SIZE as u32,
        tp_frame_nr: rx_frames as u32,
        tp_retire_blk_tov: cfg.rx_block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    // A TPACKET_V3 tx ring is frame-based like V2; the kernel rejects a block timeout, private
    // area or feature word on it.
    let tx_req = TpacketReq3 {
        tp_block_size: tx_block as u32,
        tp_block_nr: tx_blocks as u32,
        tp_frame_size: fs as u32,
        tp_frame_nr: (per_block * tx_blocks) as u32,
        ..TpacketReq3::default()
    };
    Ok((
        RxGeometry { block_size: bs, block_nr: cfg.rx_block_count },
        rx_req,
        TxGeometry { block_size: tx_block, block_nr: tx_blocks, frame_size: fs },
        tx_req,
    ))
}

/// Why a frame could not be copied into the pool.
enum CopyFail {
    /// No frame free: stop and leave the frame in the ring.
    NoFrame,
    /// No big buffer free (or the frame does not fit one): drop this frame.
    NoBig,
}

/// The offload state of a received frame from the 10-byte legacy virtio-net header
/// `PACKET_VNET_HDR` writes: the first 10 bytes of the TAP port's header, whose parser it
/// shares (the rest zero: no tunnel).
fn parse_vnet(
    h: &[u8; sys::VNET_HDR_LEN],
) -> Result<crate::packet::Offload, crate::port::tap::BadVnetHdr> {
    let mut v1 = [0u8; crate::port::tap::VNET_HDR_LEN];
    v1[..sys::VNET_HDR_LEN].copy_from_slice(h);
    crate::port::tap::parse_vnet_hdr(&v1, false)
}

/// Copies a received frame into a fresh pool buffer, re-inserting a stripped VLAN tag.
#[inline]
fn copy_in(pool: &mut Pool, f: &RxFrame<'_>) -> Result<Pkt, CopyFail> {
    let tagged = f.status & sys::TP_STATUS_VLAN_VALID != 0 && f.data.len() >= 12;
    let len = f.data.len() + if tagged { 4 } else { 0 };
    let mut p = if len <= pool.frame_size() - pool.headroom() {
        pool.alloc().ok_or(CopyFail::NoFrame)?
    } else {
        pool.alloc_big().ok_or(CopyFail::NoBig)?
    };
    let Some(dst) = pool.append(&mut p, len) else {
        pool.free(p);
        return Err(CopyFail::NoBig);
    };
    if tagged {
        let tpid = if f.status & sys::TP_STATUS_VLAN_TPID_VALID != 0 && f.vlan_tpid != 0 {
            f.vlan_tpid
        } else {
            0x8100
        };
        dst[..12].copy_from_slice(&f.data[..12]);
        dst[12..14].copy_from_slice(&tpid.to_be_bytes());
        dst[14..16].copy_from_slice(&f.vlan_tci.to_be_bytes());
        dst[16..].copy_from_slice(&f.data[12..]);
    } else {
        dst.copy_from_slice(f.data);
    }
    Ok(p)
}

impl<const N: usize> Port<N> for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> String {
        if self.vnet {
            "afpacket tpacket_v3 vnet-hdr (tso, csum)".to_string()
        } else {
            "afpacket tpacket_v3".to_string()
        }
    }

    fn offloads(&self) -> crate::port::Offloads {
        crate::port::Offloads { csum: self.vnet, tso: self.vnet, udp_tunnel: false }
    }

    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize {
        let mut n = 0;
        if self.vnet {
            let before = batch.len();
            while batch.room() > 0 && self.rx_vnet_one(id, pool, batch) {}
            n = batch.len() - before;
            self.stats.rx_packets += n as u64;
            return n;
        }
        while batch.room() > 0 {
            let Some(f) = self.rings.rx_peek() else { break };
            if f.data.len() < f.wire_len as usize {
                self.stats.rx_truncated += 1;
                self.rings.rx_advance();
                continue;
            }
            if f.status & sys::TP_STATUS_CSUMNOTREADY != 0 {
                self.stats.rx_csum_partial += 1;
            }
            let mut m = Meta::rx(id);
            if let Some(h) = f.vnet {
                match parse_vnet(&h) {
                    Ok(mut o) => {
                        // A tag the kernel stripped goes back in front of the checksummed part.
                        if o.csum_partial && f.status & sys::TP_STATUS_VLAN_VALID != 0 {
                            o.csum_start += 4;
                        }
                        m.offload = o;
                    }
                    Err(_) => {
                        self.stats.rx_bad_vnet += 1;
                        self.rings.rx_advance();
                        continue;
                    }
                }
            }
            match copy_in(pool, &f) {
                Ok(p) => {
                    self.stats.rx_bytes += p.len() as u64;
                    // Cannot fail: the loop runs only while the batch has room.
                    if let Err(p) = batch.push(p, m) {
                        pool.free(p);
                        break;
                    }
                    n += 1;
                }
                // Pool empty: the frame (and the rest of the block) waits in the ring for the
                // next call; nothing is lost, and if the ring fills up the kernel counts its
                // drops in tp_drops.
                Err(CopyFail::NoFrame) => break,
                Err(CopyFail::NoBig) => self.stats.rx_no_buffer += 1,
            }
            self.rings.rx_advance();
        }
        self.stats.rx_packets += n as u64;
        n
    }

    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        let mut r = TxReport::default();
        let hdr = if self.vnet { sys::VNET_HDR_LEN } else { 0 };
        let cap = self.rings.tx_capacity() - hdr;
        let rings = &mut self.rings;
        let mut full = false;
        batch.drain(|p, m| {
            let len = p.len();
            if !(ETH_HLEN..=cap).contains(&len) {
                pool.free(p);
                r.errors += 1;
                return;
            }
            if !full {
                if let Some(mut slot) = rings.tx_slot() {
                    let buf = slot.buf();
                    if hdr > 0 {
                        let h = crate::port::tap::build_vnet_hdr(&m.offload, pool.data(&p));
                        buf[..hdr].copy_from_slice(&h[..hdr]);
                    }
                    buf[hdr..hdr + len].copy_from_slice(pool.data(&p));
                    slot.submit(hdr + len);
                    pool.free(p);
                    r.sent += 1;
                    r.sent_bytes += len as u64;
                    return;
                }
                // Slots are used in ring order: once the head slot is busy, the rest are too.
                full = true;
            }
            pool.free(p);
            r.ring_full += 1;
        });
        if r.sent > 0 || self.kick_pending || (full && self.rings.tx_waiting()) {
            self.kick();
        }
        self.stats.tx_packets += r.sent as u64;
        self.stats.tx_bytes += r.sent_bytes;
        self.stats.tx_ring_full += r.ring_full as u64;
        self.stats.tx_bad_length += r.errors as u64;
        r
    }

    fn housekeep(&mut self, _pool: &mut Pool) {
        // A kick that failed, or one the kernel cut short (send buffer full), leaves requested
        // slots in the ring; send them even if no new batch comes.
        if self.kick_pending || self.rings.tx_waiting() {
            self.kick();
        }
        // The kernel's counters are 32-bit and reset on read: folding them in regularly keeps
        // them from wrapping. A failure here only delays the counters.
        let _ = self.refresh_kernel_stats();
    }

    // Frames are copied in and out, so the port holds no pool buffer between calls, except
    // the big buffer a vnet-hdr port reads into.
    fn drain(&mut self, pool: &mut Pool) {
        if let Some(b) = self.big.take() {
            pool.free(b);
        }
    }

    fn rx_drops(&mut self) -> crate::port::RxDrops {
        let _ = self.refresh_kernel_stats();
        let s = &self.stats;
        crate::port::RxDrops {
            ring_full: s.kernel_drops,
            kernel: 0,
            port: s.rx_truncated + s.rx_no_buffer + s.rx_malformed + s.rx_bad_vnet,
        }
    }

    fn poll_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        use std::os::fd::AsRawFd;
        out.push(self.as_raw_fd());
    }
}

/// Tests against the real kernel, on veth pairs inside throwaway network namespaces.
///
/// Each test creates a namespace `vsap<pid % 10000><letter>` with `ip`, runs its body on a
/// thread that has `setns`-ed into it (the port and the peer's plain AF_PACKET socket both live
/// there), and deletes the namespace (and with it the veths) in a Drop guard, so it goes even
/// when the test fails. Nothing is configured in the root namespace and no IP traffic is made:
/// frames are raw Ethernet with the local experimental EtherType 0x88b5. Every wait is bounded.
/// Needs root; skipped with a message otherwise.
#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Instant;

    use super::*;
    use crate::packet::PoolConfig;

    const ETHERTYPE: u16 = 0x88b5;
    const WAIT: Duration = Duration::from_secs(3);

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false)
    }

    macro_rules! require_root {
        () => {
            if !is_root() {
                eprintln!("skipped: AF_PACKET tests need root");
                return;
            }
        };
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A network namespace, deleted on drop.
    struct Netns {
        name: String,
    }

    impl Netns {
        fn new(tag: char) -> Netns {
            let name = format!("vsap{}{tag}", std::process::id() % 10000);
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            ip(&["netns", "add", &name]);
            let ns = Netns { name };
            // No IPv6 autoconf/MLD noise on the test links.
            for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
            {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns.name, "sysctl", "-qw", key])
                    .output();
            }
            ns
        }

        /// Veth pair `sw0` (the port's side) <-> `peer0`, both up, with `mtu`.
        fn veth(&self, mtu: u32) {
            let n = self.name.as_str();
            let mtu = mtu.to_string();
            ip(&[
                "-n", n, "link", "add", "sw0", "mtu", &mtu, "type", "veth", "peer", "name",
                "peer0", "mtu", &mtu,
            ]);
            ip(&["-n", n, "link", "set", "sw0", "up"]);
            ip(&["-n", n, "link", "set", "peer0", "up"]);
        }

        /// The device's promiscuity count (`ip -d link show`; the PROMISC flag in the plain
        /// output only reflects `ip link set promisc on`, not socket memberships).
        fn promiscuity(&self, dev: &str) -> u32 {
            let out = Command::new("ip")
                .args(["-d", "-n", &self.name, "link", "show", dev])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout);
            let mut words = s.split_whitespace();
            while let Some(w) = words.next() {
                if w == "promiscuity" {
                    return words.next().and_then(|n| n.parse().ok()).expect("promiscuity count");
                }
            }
            panic!("no promiscuity in `ip -d link show {dev}`: {s}");
        }

        /// Runs `f` on a fresh thread inside this namespace, re-raising its panic.
        fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
            let path = format!("/var/run/netns/{}", self.name);
            std::thread::scope(|s| {
                s.spawn(|| {
                    sys::enter_netns(&path).unwrap_or_else(|e| panic!("setns {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        }
    }

    /// A plain AF_PACKET socket on the peer end (no rings).
    fn peer(ifname: &str) -> PacketSocket {
        let s = PacketSocket::new(0).unwrap();
        let idx = sys::if_index(&CString::new(ifname).unwrap()).unwrap();
        s.bind(idx).unwrap();
        s
    }

    /// Next incoming frame with our EtherType on `s`, or `None` after `timeout`.
    fn peer_recv(s: &PacketSocket, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 16384];
        loop {
            match s.recv(&mut buf) {
                Ok((n, pkttype)) => {
                    if pkttype != libc::PACKET_OUTGOING
                        && n >= 14
                        && buf[12..14] == ETHERTYPE.to_be_bytes()
                    {
                        return Some(buf[..n].to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    let _ = s.poll_in(left.as_millis() as i32 + 1);
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    /// A test frame of `len` bytes: unicast to a MAC nobody has (the port is promiscuous),
    /// EtherType 0x88b5, payload derived from `seq`.
    fn frame(seq: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, (seq >> 8) as u8, seq as u8]);
        f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        for (i, b) in f[14..].iter_mut().enumerate() {
            *b = (i as u16).wrapping_mul(31).wrapping_add(seq) as u8;
        }
        f
    }

    /// `frame` with an 802.1Q-style tag (`tpid`, `tci`) after the MACs.
    fn tagged(seq: u16, len: usize, tpid: u16, tci: u16) -> Vec<u8> {
        let mut f = frame(seq, len - 4);
        let mut tag = tpid.to_be_bytes().to_vec();
        tag.extend_from_slice(&tci.to_be_bytes());
        f.splice(12..12, tag);
        f
    }

    fn ours(b: &[u8]) -> bool {
        b.len() >= 18
            && (b[12..14] == ETHERTYPE.to_be_bytes()
                || (matches!(u16::from_be_bytes([b[12], b[13]]), 0x8100 | 0x88a8)
                    && b[16..18] == ETHERTYPE.to_be_bytes()))
    }

    fn pool(frames: usize) -> Pool {
        Pool::new(PoolConfig { frames, frame_size: 2048, headroom: 256, big_buffers: 4 }).unwrap()
    }

    /// Receives until `want` of our frames arrived or `timeout` passed; returns their bytes
    /// (everything received is freed).
    fn rx_wait(
        port: &mut AfPacketPort,
        pool: &mut Pool,
        want: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut batch: Batch<32> = Batch::new();
        while got.len() < want {
            if Port::<32>::rx(port, 3, pool, &mut batch) == 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = port.poll_rx(left.min(Duration::from_millis(50)));
                continue;
            }
            batch.drain(|p, m| {
                assert_eq!(m.in_port, 3);
                let b = pool.data(&p).to_vec();
                pool.free(p);
                if ours(&b) {
                    got.push(b);
                }
            });
        }
        got
    }

    fn small_tx(slots: usize) -> AfPacketConfig {
        AfPacketConfig {
            tx_frame_count: slots,
            rx_block_size: 64 * 1024,
            rx_block_count: 4,
            ..AfPacketConfig::default()
        }
    }

    #[test]
    fn geometry_rounds_tx_ring_to_pages_and_rejects_nonsense() {
        let (rx, rxq, tx, txq) = geometry(&AfPacketConfig::default(), 4096).unwrap();
        assert_eq!((rx.block_size, rx.block_nr), (128 * 1024, 32));
        assert_eq!((rxq.tp_frame_nr, rxq.tp_retire_blk_tov), (64 * 32, 1));
        assert_eq!((tx.block_size, tx.block_nr, tx.frame_size), (4096, 256, 2048));
        assert_eq!((txq.tp_frame_nr, txq.tp_retire_blk_tov), (512, 0));
        let (_, _, tx, txq) =
            geometry(&AfPacketConfig { tx_frame_count: 3, ..Default::default() }, 4096).unwrap();
        assert_eq!((tx.block_nr, txq.tp_frame_nr), (2, 4), "rounded up to whole blocks");
        let bad = |c: AfPacketConfig| geometry(&c, 4096).unwrap_err();
        assert!(bad(AfPacketConfig { rx_block_size: 5000, ..Default::default() })
            .contains("rx block size 5000"));
        assert!(bad(AfPacketConfig { rx_block_count: 0, ..Default::default() })
            .contains("rx block count"));
        assert!(bad(AfPacketConfig { tx_frame_size: 2040, ..Default::default() })
            .contains("tx frame size"));
        assert!(bad(AfPacketConfig { tx_frame_size: 64, ..Default::default() })
            .contains("tx frame size"));
        assert!(bad(AfPacketConfig { tx_frame_count: 0, ..Default::default() })
            .contains("tx frame count"));
    }

    #[test]
    fn open_nonexistent_interface_is_a_clear_error() {
        require_root!();
        let ns = Netns::new('d');
        ns.run(|| {
            let e = AfPacketPort::open("veth9", AfPacketConfig::default()).unwrap_err();
            assert!(matches!(e, AfPacketError::NoSuchInterface { .. }), "{e:?}");
            assert_eq!(e.to_string(), "open AF_PACKET on veth9: no such interface");
            let e = AfPacketPort::open("a\0b", AfPacketConfig::default()).unwrap_err();
            assert!(matches!(e, AfPacketError::BadIfName { .. }), "{e:?}");
            let e = AfPacketPort::open(
                "lo",
                AfPacketConfig { rx_block_size: 1000, ..Default::default() },
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("open AF_PACKET on lo: invalid configuration: rx block size 1000"),
                "{e}"
            );
        });
    }

    #[test]
    fn rx_frames_arrive_byte_identical_with_vlan_tags_reinserted() {
        require_root!();
        let ns = Netns::new('a');
        ns.veth(9000);
        ns.run(|| {
            let mut pool = pool(256);
            let mut port = AfPacketPort::open("sw0", AfPacketConfig::default()).unwrap();
            assert_eq!(Port::<32>::kind(&port), "afpacket tpacket_v3");
            assert_eq!(Port::<32>::name(&port), "sw0");
            assert_eq!(ns.promiscuity("sw0"), 1, "promiscuous while open");
            let peer = peer("peer0");
            let mut sent = Vec::new();
            for (i, len) in [60usize, 61, 100, 1514, 1792, 1793, 4000, 9014].into_iter().enumerate()
            {
                sent.push(frame(i as u16, len));
            }
            sent.push(tagged(100, 64, 0x8100, (3 << 13) | 100));
            sent.push(tagged(101, 1518, 0x8100, 4094));
            sent.push(tagged(102, 64, 0x8100, 0)); // priority tag, VID 0
            sent.push(tagged(103, 80, 0x88a8, 200)); // 802.1ad outer tag
            for f in &sent {
                assert_eq!(peer.send(f).unwrap(), f.len());
            }
            let got = rx_wait(&mut port, &mut pool, sent.len(), WAIT);
            assert_eq!(got.len(), sent.len(), "all frames received");
            for (g, s) in got.iter().zip(&sent) {
                assert_eq!(g.len(), s.len());
                assert!(
                    g == s,
                    "frame of {} bytes differs: got {:02x?}",
                    s.len(),
                    &g[..18.min(g.len())]
                );
            }
            assert_eq!(pool.in_use(), 0, "every received packet was freed");
            let st = port.stats().unwrap();
            assert!(st.rx_packets >= sent.len() as u64, "{st:?}");
            assert_eq!(
                (st.rx_truncated, st.rx_no_buffer, st.rx_malformed, st.kernel_drops),
                (0, 0, 0, 0),
                "{st:?}"
            );
            assert!(st.kernel_packets >= sent.len() as u64, "{st:?}");
            // Nothing we send comes back on rx (PACKET_IGNORE_OUTGOING).
            let mut b: Batch<32> = Batch::new();
            for i in 0..4 {
                b.push(pool.alloc_from(&frame(500 + i, 100)).unwrap(), Meta::rx(0)).unwrap();
            }
            assert_eq!(port.tx(&mut pool, &mut b).sent, 4);
            for _ in 0..4 {
                assert!(peer_recv(&peer, WAIT).is_some());
            }
            assert!(
                rx_wait(&mut port, &mut pool, 1, Duration::from_millis(100)).is_empty(),
                "own tx not looped back"
            );
            drop(port);
            assert_eq!(ns.promiscuity("sw0"), 0, "left as found");
        });
    }

    #[test]
    fn tx_batch_arrives_at_peer_byte_identical() {
        require_root!();
        let ns = Netns::new('b');
        ns.veth(1500);
        ns.run(|| {
            let mut pool = pool(256);
            // 8 slots, so that the rounds below reuse every slot twice.
            let mut port =
                AfPacketPort::open("sw0", AfPacketConfig { promiscuous: false, ..small_tx(8) })
                    .unwrap();
            assert_eq!(ns.promiscuity("sw0"), 0, "promiscuous mode is optional");
            assert_eq!((port.tx_slots(), port.tx_max_frame()), (8, 2000));
            let peer = peer("peer0");
            let mut b: Batch<32> = Batch::new();

            // Lengths outside [14, slot capacity] are errors; the rest go out. (An untagged
            // 1518-byte frame would pass AF_PACKET's MTU + 18 check but be dropped by veth.)
            let lens = [14usize, 60, 64, 128, 1000, 1514];
            for (i, len) in lens.iter().enumerate() {
                b.push(pool.alloc_from(&frame(i as u16, *len)).unwrap(), Meta::rx(0)).unwrap();
            }
            b.push(pool.alloc_from(&[0u8; 10]).unwrap(), Meta::rx(0)).unwrap();
            b.push(pool.alloc_from(&frame(99, 2001)).unwrap(), Meta::rx(0)).unwrap();
            let r = port.tx(&mut pool, &mut b);
            let bytes: usize = lens.iter().sum();
            assert_eq!(
                r,
                TxReport {
                    sent: 6,
                    sent_bytes: bytes as u64,
                    ring_full: 0,
                    errors: 2,
                    link_down: 0
                }
            );
            assert!(b.is_empty());
            assert_eq!(pool.in_use(), 0, "tx frees every packet");
            for (i, len) in lens.iter().enumerate() {
                let g = peer_recv(&peer, WAIT)
                    .unwrap_or_else(|| panic!("frame {i} reached the peer: {:?}", port.stats()));
                assert!(g == frame(i as u16, *len), "frame {i} of {len} bytes differs");
            }

            // Three rounds of 8 distinct frames through the 8 slots, the peer reading only at
            // the end: a slot given back while the kernel still referenced its bytes would
            // show a later round's bytes in an earlier frame.
            let mut sent = Vec::new();
            for round in 0..3u16 {
                let mut frames: Vec<Vec<u8>> = (0..8)
                    .map(|i| frame(1000 + round * 8 + i, 200 + usize::from(i) * 100))
                    .collect();
                let deadline = Instant::now() + WAIT;
                while !frames.is_empty() {
                    for f in &frames {
                        b.push(pool.alloc_from(f).unwrap(), Meta::rx(0)).unwrap();
                    }
                    let r = port.tx(&mut pool, &mut b);
                    assert_eq!(r.sent + r.ring_full, frames.len());
                    sent.extend(frames.drain(..r.sent));
                    assert!(Instant::now() < deadline, "tx slots never came back");
                    if !frames.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                        Port::<32>::housekeep(&mut port, &mut pool);
                    }
                }
            }
            for (i, s) in sent.iter().enumerate() {
                let g = peer_recv(&peer, WAIT).unwrap_or_else(|| panic!("frame {i} lost"));
                assert!(g == *s, "round frame {i} differs");
            }
            assert_eq!(pool.in_use(), 0);
            assert_eq!(port.stats().unwrap().tx_kick_errors, 0);
        });
    }

    #[test]
    fn tx_burst_larger_than_ring_reports_ring_full() {
        require_root!();
        let ns = Netns::new('c');
        ns.veth(1500);
        ns.run(|| {
            let mut pool = pool(256);
            let mut port = AfPacketPort::open("sw0", small_tx(8)).unwrap();
            let peer = peer("peer0");
            let mut b: Batch<32> = Batch::new();
            for i in 0..32 {
                b.push(pool.alloc_from(&frame(i, 500)).unwrap(), Meta::rx(0)).unwrap();
            }
            let r = port.tx(&mut pool, &mut b);
            assert_eq!((r.sent, r.ring_full, r.errors), (8, 24, 0), "{r:?}");
            assert_eq!(pool.in_use(), 0);
            for i in 0..8 {
                let g = peer_recv(&peer, WAIT).expect("sent frame arrives");
                assert!(g == frame(i, 500));
            }
            assert!(
                peer_recv(&peer, Duration::from_millis(100)).is_none(),
                "only the ring's worth went out"
            );
            let st = port.stats().unwrap();
            assert_eq!((st.tx_packets, st.tx_ring_full), (8, 24));
        });
    }

    #[test]
    fn rx_burst_larger_than_ring_is_counted_and_pool_exhaustion_loses_nothing() {
        require_root!();
        let ns = Netns::new('e');
        ns.veth(1500);
        ns.run(|| {
            // Two one-page blocks: three 1000-byte frames each.
            let cfg = AfPacketConfig {
                rx_block_size: 4096,
                rx_block_count: 2,
                ..AfPacketConfig::default()
            };
            let mut port = AfPacketPort::open("sw0", cfg).unwrap();
            let peer = peer("peer0");
            for i in 0..200 {
                peer.send(&frame(i, 1000)).unwrap();
            }
            // Let the block timer hand over the last block.
            std::thread::sleep(Duration::from_millis(20));
            let st = port.stats().unwrap();
            assert!(st.kernel_drops > 0, "the kernel counted its drops: {st:?}");
            assert!(st.kernel_packets >= 200, "{st:?}");
            // A pool of 2 frames: each call stops when the pool is empty and resumes in the
            // same block on the next call, in order.
            let mut small = pool(2);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut b: Batch<32> = Batch::new();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                let n = Port::<32>::rx(&mut port, 1, &mut small, &mut b);
                assert!(n <= 2);
                b.drain(|p, _| {
                    got.push(small.data(&p).to_vec());
                    small.free(p);
                });
                if n == 0 && !port.poll_rx(Duration::from_millis(50)).unwrap() {
                    break;
                }
            }
            let got: Vec<_> = got.into_iter().filter(|f| ours(f)).collect();
            let st = port.stats().unwrap();
            assert!(!got.is_empty() && got.len() < 200, "got {}", got.len());
            assert_eq!(
                got.len() as u64 + st.kernel_drops,
                200,
                "received + dropped = sent: {st:?}"
            );
            // What arrived is in order and intact.
            let mut last = None;
            for g in &got {
                let seq = u16::from_be_bytes([g[10], g[11]]);
                assert!(last.is_none_or(|l| seq > l), "in order");
                assert!(*g == frame(seq, 1000));
                last = Some(seq);
            }
            assert_eq!(small.in_use(), 0);
        });
    }
}
