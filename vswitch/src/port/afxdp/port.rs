//! The AF_XDP switch port: one XDP program on the interface, one socket per receive queue, all
//! on the worker's UMEM (the buffer pool's frames).
//!
//! - rx: read a burst of descriptors from a queue's rx ring into the batch (each descriptor
//!   becomes a packet handle on the frame the kernel wrote; no copy), then top the fill ring up
//!   with as many fresh frames from the pool as were taken.
//! - tx: reap completions (frames back to the pool), put the batch's descriptors on queue 0's
//!   tx ring (a packet received on another AF_XDP port of the worker goes out of the frame it
//!   arrived in), kick the kernel once (copy mode needs a `sendto` per burst), reap again.
//! - removal: detach the XDP program so no new frames are redirected, let in-flight ones land,
//!   then take every frame the sockets still hold back into the pool.
//!
//! This file is safe code over [`super::xsk`]; the `unsafe` stays in the ring and syscall
//! modules.

use std::os::fd::{AsRawFd, RawFd};

use super::bpf::{XdpAttachment, XdpMode, XdpModePreference};
use super::xsk::{BindMode, SocketConfig, Umem, UmemConfig, XskMode, XskSocket};
use super::{AfXdpError, UmemArea};
use crate::packet::{Batch, Meta, Pool, MAX_BATCH};
use crate::port::{Port, RxDrops, TxReport};
use crate::types::PortId;

/// How to open an AF_XDP port.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    pub ifname: String,
    pub queues: u16,
    pub xdp_mode: XdpModePreference,
    /// Entries of each ring (rx, tx, fill, completion), a power of two.
    pub ring_size: u32,
    /// Frames kept on each queue's fill ring.
    pub fill_target: u32,
}

impl AfXdpConfig {
    pub fn new(ifname: &str) -> AfXdpConfig {
        AfXdpConfig {
            ifname: ifname.to_string(),
            queues: 1,
            xdp_mode: XdpModePreference::Auto,
            ring_size: 2048,
            fill_target: 1024,
        }
    }

    /// Frames of the pool this port keeps on the kernel's fill rings.
    pub fn frames_needed(&self) -> usize {
        self.queues as usize * self.fill_target as usize
    }
}

/// Counters of what the port saw below the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfXdpPortStats {
    /// Descriptors the kernel handed back that point outside the UMEM (never expected).
    pub invalid_rx: u64,
    /// Fill-ring top-ups that found the pool empty.
    pub pool_empty: u64,
    /// Transmit kicks the kernel refused (device down, ...).
    pub kick_errors: u64,
}

/// How to bind a socket on `ifname`: a virtual device (veth, tap, bridge: its sysfs entry has
/// no `device` link) has no zero-copy driver, and asking first costs a refused bind (about
/// 4 ms on veth, paid by every pod attachment); anything else tries zero-copy first. When sysfs
/// does not show the interface at all (mounted for another namespace), try zero-copy.
fn bind_mode(ifname: &str) -> BindMode {
    let dir = std::path::Path::new("/sys/class/net").join(ifname);
    if dir.is_dir() && !dir.join("device").exists() {
        BindMode::Copy
    } else {
        BindMode::Auto
    }
}

/// Binds one socket per queue of `cfg.ifname` on `umem` and steers each queue to its socket.
fn bind_queues(
    umem: &mut Umem,
    cfg: &AfXdpConfig,
    attach: &XdpAttachment,
) -> Result<Vec<XskSocket>, AfXdpError> {
    let scfg = SocketConfig {
        rx_size: cfg.ring_size,
        tx_size: cfg.ring_size,
        fill_size: cfg.ring_size,
        comp_size: cfg.ring_size,
        mode: bind_mode(&cfg.ifname),
    };
    let mut socks = Vec::with_capacity(cfg.queues as usize);
    for q in 0..u32::from(cfg.queues) {
        let sock = XskSocket::new(umem, &cfg.ifname, q, &scfg)?;
        attach.insert(q, sock.fd())?;
        socks.push(sock);
    }
    Ok(socks)
}

/// An AF_XDP port. See the module documentation.
pub struct AfXdpPort {
    name: String,
    cfg: AfXdpConfig,
    attach: Option<XdpAttachment>,
    socks: Vec<XskSocket>,
    next_rx: usize,
    rx_scratch: Vec<(u64, u32)>,
    tx_scratch: Vec<(u64, u32)>,
    comp_scratch: Vec<u64>,
    stats: AfXdpPortStats,
}

impl AfXdpPort {
    /// Attaches the XDP program to `cfg.ifname` and binds one socket per queue on `umem`
    /// (the worker's). The fill rings are filled on the first housekeeping or receive.
    pub fn open(name: &str, umem: &mut Umem, cfg: AfXdpConfig) -> Result<AfXdpPort, AfXdpError> {
        let attach = XdpAttachment::attach(&cfg.ifname, cfg.xdp_mode)?;
        let socks = bind_queues(umem, &cfg, &attach)?;
        Ok(AfXdpPort::assemble(name, cfg, attach, socks))
    }

    /// As [`AfXdpPort::open`] on a UMEM over `area` (the worker's pool memory): the sockets
    /// share the UMEM of a port opened earlier over the same area that is still bound
    /// ([`Umem::donors`]), and only when there is none do they register the area anew. The
    /// port then offers its own UMEM to later ports.
    ///
    /// Sharing saves the registration (pinning every page of the pool, about 1.2 ms for a
    /// 64 MiB pool and 5 ms for 256 MiB) on every pod attachment. Every socket still gets a
    /// kernel buffer pool of its own with a descriptor per frame of the UMEM (that is the
    /// kernel's `xsk_buff_pool`, allocated and zeroed at bind), so a bind costs time and
    /// kernel memory in proportion to the pool's frames either way.
    pub fn open_sharing<A: UmemArea + ?Sized>(
        name: &str,
        area: &A,
        ucfg: UmemConfig,
        cfg: AfXdpConfig,
    ) -> Result<AfXdpPort, AfXdpError> {
        let attach = XdpAttachment::attach(&cfg.ifname, cfg.xdp_mode)?;
        // A donor whose device has gone refuses to share (EBADF); whatever the reason, the
        // next one or a registration of our own decides.
        let shared = Umem::donors(area, ucfg)
            .into_iter()
            .find_map(|mut umem| bind_queues(&mut umem, &cfg, &attach).ok());
        let socks = match shared {
            Some(socks) => socks,
            None => bind_queues(&mut Umem::new(area, ucfg)?, &cfg, &attach)?,
        };
        if let Some(s) = socks.first() {
            s.offer_umem();
        }
        Ok(AfXdpPort::assemble(name, cfg, attach, socks))
    }

    fn assemble(
        name: &str,
        cfg: AfXdpConfig,
        attach: XdpAttachment,
        socks: Vec<XskSocket>,
    ) -> AfXdpPort {
        AfXdpPort {
            name: name.to_string(),
            cfg,
            attach: Some(attach),
            socks,
            next_rx: 0,
            rx_scratch: vec![(0, 0); MAX_BATCH],
            tx_scratch: Vec::with_capacity(MAX_BATCH),
            comp_scratch: vec![0; MAX_BATCH],
            stats: AfXdpPortStats::default(),
        }
    }

    /// The XDP mode the program got (native or generic).
    pub fn xdp_mode(&self) -> Option<XdpMode> {
        self.attach.as_ref().map(XdpAttachment::mode)
    }

    /// Copy or zero-copy, as the kernel bound the sockets.
    pub fn bind_mode(&self) -> Option<XskMode> {
        self.socks.first().map(XskSocket::mode)
    }

    pub fn stats(&self) -> AfXdpPortStats {
        self.stats
    }

    /// Returns transmitted frames to the pool.
    #[inline]
    fn reap(&mut self, pool: &mut Pool) {
        for sock in &mut self.socks {
            loop {
                let n = sock.complete(&mut self.comp_scratch);
                for &addr in &self.comp_scratch[..n] {
                    pool.release_desc(addr);
                }
                if n < self.comp_scratch.len() {
                    break;
                }
            }
        }
    }

    /// Tops queue `q`'s fill ring up to the target.
    #[inline]
    fn refill(&mut self, q: usize, pool: &mut Pool) {
        let sock = &mut self.socks[q];
        // The first socket of a UMEM uses the UMEM's fill ring, whose size may differ from this
        // port's ring size: ask the ring, and keep at most the port's target on it.
        let size = sock.fill_size();
        let held = size.saturating_sub(sock.fill_free());
        let want = self.cfg.fill_target.min(size).saturating_sub(held) as usize;
        if want == 0 {
            return;
        }
        let mut empty = false;
        let n = sock.fill(
            std::iter::from_fn(|| {
                let d = pool.fill_desc();
                empty |= d.is_none();
                d
            })
            .take(want),
        );
        if empty && n < want {
            self.stats.pool_empty += 1;
        }
        if sock.fill_needs_wakeup() {
            // Zero-copy drivers only; nothing to do about a failure but try again next time.
            let _ = sock.wake_fill();
        }
    }
}

impl<const N: usize> Port<N> for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> String {
        match (self.xdp_mode(), self.bind_mode()) {
            (Some(x), Some(b)) => format!("afxdp {x} {b}"),
            _ => "afxdp (closed)".to_string(),
        }
    }

    #[inline]
    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize {
        let nq = self.socks.len();
        let mut got = 0;
        for k in 0..nq {
            let room = batch.room();
            if room == 0 {
                break;
            }
            let q = (self.next_rx + k) % nq;
            let n = self.socks[q].rx_burst(&mut self.rx_scratch[..room]);
            for &(addr, len) in &self.rx_scratch[..n] {
                match pool.from_desc(addr, len) {
                    Some(p) => {
                        // Cannot fail: at most `room` descriptors were read.
                        if let Err(p) = batch.push(p, Meta::rx(id)) {
                            pool.free(p);
                        }
                    }
                    None => self.stats.invalid_rx += 1,
                }
            }
            got += n;
            if n > 0 {
                self.refill(q, pool);
            }
        }
        self.next_rx = self.next_rx.wrapping_add(1);
        got
    }

    #[inline]
    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        let mut r = TxReport::default();
        if self.socks.is_empty() {
            r.errors = batch.len();
            batch.free_all(pool);
            return r;
        }
        self.reap(pool);
        self.tx_scratch.clear();
        let scratch = &mut self.tx_scratch;
        batch.drain(|p, _| match pool.into_desc(p) {
            Ok(d) => scratch.push(d),
            // A packet larger than a frame cannot go out of AF_XDP without segmentation.
            Err(p) => {
                pool.free(p);
                r.errors += 1;
            }
        });
        let sock = &mut self.socks[0];
        let n = sock.tx_burst(&self.tx_scratch);
        for &(addr, _) in &self.tx_scratch[n..] {
            pool.release_desc(addr);
        }
        r.ring_full = self.tx_scratch.len() - n;
        r.sent = n;
        r.sent_bytes = self.tx_scratch[..n].iter().map(|&(_, l)| u64::from(l)).sum();
        if n > 0 && sock.tx_needs_wakeup() && sock.kick_tx().is_err() {
            self.stats.kick_errors += 1;
        }
        self.reap(pool);
        r
    }

    fn housekeep(&mut self, pool: &mut Pool) {
        self.reap(pool);
        for q in 0..self.socks.len() {
            self.refill(q, pool);
        }
        for sock in &mut self.socks {
            if sock.tx_pending() > 0 && sock.kick_tx().is_err() {
                self.stats.kick_errors += 1;
            }
        }
    }

    fn drain(&mut self, pool: &mut Pool) {
        // Stop redirects first: detaching the program sends new frames to the kernel stack.
        self.attach = None;
        // Frames already redirected land on the rx rings within the current NAPI poll.
        std::thread::sleep(std::time::Duration::from_millis(2));
        for sock in &mut self.socks {
            sock.reclaim(|addr| {
                pool.release_desc(addr);
            });
        }
        // Closing an AF_XDP socket waits for an RCU grace period (the kernel's unbind calls
        // synchronize_net; up to 16 ms measured): on a thread of its own, so that the worker's
        // other ports do not stall while a pod goes away. The sockets hold no frame any more,
        // nothing redirects to them and nothing kicks or polls them. (If the thread cannot be
        // started, the closure and the sockets are dropped here.)
        let socks = std::mem::take(&mut self.socks);
        if !socks.is_empty() {
            let _ = std::thread::Builder::new()
                .name("vswitch-xsk-close".into())
                .spawn(move || drop(socks));
        }
    }

    fn rx_drops(&mut self) -> RxDrops {
        let mut d = RxDrops { port: self.stats.invalid_rx, ..RxDrops::default() };
        for sock in &self.socks {
            if let Ok(s) = sock.stats() {
                d.ring_full += s.rx_ring_full;
                d.kernel += s.rx_dropped;
            }
        }
        d
    }

    fn poll_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.socks.iter().map(|s| s.fd().as_raw_fd()));
    }
}
