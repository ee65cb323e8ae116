//! UMEM registration and AF_XDP sockets: the API the port layer uses.
//!
//! A [`Umem`] registers a worker's frame region with the kernel on an AF_XDP socket and maps
//! its fill and completion rings. The first [`XskSocket`] created on it reuses that socket and
//! those rings; every later one is a new socket bound with `XDP_SHARED_UMEM`, gets its own fill
//! and completion rings (it must be on a different device or queue), and shares the frames, so a
//! descriptor received on one socket can be put on another socket's tx ring as is.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use super::ring::{ConsumerRing, ProducerRing, RawRing};
use super::sys::{self, XDP_PACKET_HEADROOM};
use super::{AfXdpError, UmemArea};

/// UMEM geometry and the sizes of the first socket's fill and completion rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmemConfig {
    /// Chunk size: the area's frame size (2048 or 4096; aligned mode needs a power of two no
    /// larger than the page size).
    pub frame_size: u32,
    /// Bytes the kernel leaves free in each chunk before `XDP_PACKET_HEADROOM` (256) and the
    /// packet. Received data starts `headroom + 256` bytes into the chunk.
    pub headroom: u32,
    /// Fill ring entries (power of two).
    pub fill_size: u32,
    /// Completion ring entries (power of two).
    pub comp_size: u32,
}

impl Default for UmemConfig {
    fn default() -> UmemConfig {
        UmemConfig { frame_size: 2048, headroom: 0, fill_size: 2048, comp_size: 2048 }
    }
}

/// Copy or zero-copy binding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Try `XDP_ZEROCOPY`, fall back to `XDP_COPY` (veth always ends in copy mode).
    #[default]
    Auto,
    /// `XDP_COPY` only.
    Copy,
    /// `XDP_ZEROCOPY` only.
    ZeroCopy,
}

/// Ring sizes and bind mode of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Rx ring entries (power of two).
    pub rx_size: u32,
    /// Tx ring entries (power of two).
    pub tx_size: u32,
    /// Fill ring entries for a socket that shares the UMEM (the first socket uses the UMEM's).
    pub fill_size: u32,
    /// Completion ring entries for a socket that shares the UMEM.
    pub comp_size: u32,
    /// Requested mode. Sockets after the first inherit the first socket's mode (the kernel
    /// refuses mode flags with `XDP_SHARED_UMEM`).
    pub mode: BindMode,
}

impl Default for SocketConfig {
    fn default() -> SocketConfig {
        SocketConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            mode: BindMode::Auto,
        }
    }
}

/// The copy/zero-copy mode a socket ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskMode {
    /// The kernel copies between its buffers and the UMEM (`XDP_COPY`; veth, generic XDP).
    Copy,
    /// The driver DMAs straight into the UMEM (`XDP_ZEROCOPY`).
    ZeroCopy,
}

impl std::fmt::Display for XskMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XskMode::Copy => "copy",
            XskMode::ZeroCopy => "zero-copy",
        })
    }
}

/// Socket counters from `XDP_STATISTICS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than a full rx ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the tx ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

struct UmemShared {
    /// The socket the UMEM is registered on; also the first socket's fd.
    fd: Arc<OwnedFd>,
    /// Start of the registered area in this process (the key sockets share UMEMs by).
    base: usize,
    len: u64,
    frame_size: u32,
    headroom: u32,
}

/// A registered UMEM.
///
/// Frames are addressed by byte offset into the area (`u64`); in aligned mode frame `i` is the
/// chunk `[i * frame_size, (i + 1) * frame_size)`. Fill addresses must be chunk starts (the
/// kernel masks them to the chunk anyway); rx descriptors come back as `chunk + headroom + 256`
/// (the data start); tx descriptors may point anywhere inside one chunk as long as
/// `addr % frame_size + len <= frame_size`, so headers can be pushed into the headroom in front
/// of received data and the result sent without a copy.
pub struct Umem {
    shared: Arc<UmemShared>,
    /// The fill/completion rings of the registering socket, until the first socket takes them.
    first_rings: Option<(ProducerRing<u64>, ConsumerRing<u64>)>,
    /// The bound socket that sockets made on this `Umem` share the UMEM of
    /// (`sxdp_shared_umem_fd`); `None`: the registering socket.
    donor: Option<Arc<OwnedFd>>,
    frames: u32,
    /// Kept to re-register after a failed first bind (see [`Umem::reregister`]).
    base: usize,
    cfg: UmemConfig,
}

impl Umem {
    /// Registers `area` as a UMEM (`XDP_UMEM_REG`) and creates its fill and completion rings.
    ///
    /// The kernel pins the area's pages for as long as any socket using the UMEM is open; see
    /// the SAFETY contract in the module doc of `afxdp` for who may touch which frame when.
    pub fn new<A: UmemArea + ?Sized>(area: &A, cfg: UmemConfig) -> Result<Umem, AfXdpError> {
        let (base, len) = (area.umem_base(), area.umem_len());
        if area.umem_frame_size() != cfg.frame_size as usize {
            return Err(AfXdpError::Config(format!(
                "UMEM frame size {} does not match the area's frame size {}",
                cfg.frame_size,
                area.umem_frame_size()
            )));
        }
        // SAFETY: `UmemArea` implementors guarantee a private page-aligned mapping of `len`
        // bytes used only as packet frames under the ring ownership contract.
        unsafe { Umem::from_raw(base, len, cfg) }
    }

    /// Registers `len` bytes at `base` as a UMEM.
    ///
    /// # Safety
    /// `base..base + len` must be a page-aligned, readable and writable mapping of this process
    /// that is used for nothing but packet frames, and Rust code must follow the frame
    /// ownership contract (module doc of `afxdp`): a frame on a fill or tx ring is not accessed
    /// until it comes back on an rx or completion ring. The kernel pins the pages, so it never
    /// writes to memory that a later mapping reuses, even if the area is unmapped first.
    pub unsafe fn from_raw(base: *mut u8, len: usize, cfg: UmemConfig) -> Result<Umem, AfXdpError> {
        let fs = cfg.frame_size;
        if !fs.is_power_of_two() || !(2048..=4096).contains(&fs) {
            return Err(AfXdpError::Config(format!(
                "frame size {fs} must be 2048 or 4096 (a power of two no larger than a page)"
            )));
        }
        if cfg.headroom + XDP_PACKET_HEADROOM >= fs {
            return Err(AfXdpError::Config(format!(
                "headroom {} + XDP_PACKET_HEADROOM {XDP_PACKET_HEADROOM} leaves no room in a {fs}-byte frame",
                cfg.headroom
            )));
        }
        for (what, n) in [("fill", cfg.fill_size), ("completion", cfg.comp_size)] {
            if !n.is_power_of_two() {
                return Err(AfXdpError::Config(format!(
                    "{what} ring size {n} is not a power of two"
                )));
            }
        }
        if !(base as usize).is_multiple_of(4096) || len == 0 || !len.is_multiple_of(fs as usize) {
            return Err(AfXdpError::Config(format!(
                "UMEM area at {base:p} of {len} bytes is not page aligned or not a multiple of the frame size"
            )));
        }
        // SAFETY: forwarded from this function's own contract on `base..base + len`.
        let (shared, rings) = unsafe { register(base, len, cfg) }?;
        Ok(Umem {
            shared: Arc::new(shared),
            first_rings: Some(rings),
            donor: None,
            frames: (len / fs as usize) as u32,
            base: base as usize,
            cfg,
        })
    }

    /// Replaces the registering socket with a fresh one. A socket's rx/tx rings can be set only
    /// once, so after the first socket's setup failed half-way (say, a bind to a bad queue), the
    /// registering socket is unusable; no other socket can hold the UMEM yet at that point.
    fn reregister(&mut self) -> Result<(), AfXdpError> {
        debug_assert_eq!(Arc::strong_count(&self.shared), 1);
        let len = self.shared.len as usize;
        // Unmap the old rings; the old socket closes when `shared` is replaced below.
        self.first_rings = None;
        // SAFETY: the same area that `from_raw`'s caller vouched for; registering pages a second
        // time (briefly overlapping the old registration) is allowed, each pins them.
        let (shared, rings) = unsafe { register(self.base as *mut u8, len, self.cfg) }?;
        self.shared = Arc::new(shared);
        self.first_rings = Some(rings);
        Ok(())
    }
}

/// Creates a socket, registers the area on it and maps its fill and completion rings.
///
/// # Safety
/// As for [`Umem::from_raw`]: the kernel will write into frames handed to it.
unsafe fn register(
    base: *mut u8,
    len: usize,
    cfg: UmemConfig,
) -> Result<(UmemShared, FillComp), AfXdpError> {
    let fs = cfg.frame_size;
    {
        let err = |op: &'static str| move |source| AfXdpError::Umem { op, source };
        let fd = sys::xsk_socket().map_err(err("create AF_XDP socket for UMEM"))?;
        let reg = libc::xdp_umem_reg {
            addr: base as u64,
            len: len as u64,
            chunk_size: fs,
            headroom: cfg.headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::set_xdp_opt(fd.as_fd(), libc::XDP_UMEM_REG, &reg)
            .map_err(err("register UMEM (XDP_UMEM_REG)"))?;
        let rings = map_fill_comp(fd.as_fd(), cfg.fill_size, cfg.comp_size)
            .map_err(|(op, source)| AfXdpError::Umem { op, source })?;
        let shared = UmemShared {
            fd: Arc::new(fd),
            base: base as usize,
            len: len as u64,
            frame_size: fs,
            headroom: cfg.headroom,
        };
        Ok((shared, rings))
    }
}

impl Umem {
    /// Chunk size in bytes.
    pub fn frame_size(&self) -> u32 {
        self.shared.frame_size
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The configured UMEM headroom (excluding the kernel's 256 bytes).
    pub fn headroom(&self) -> u32 {
        self.shared.headroom
    }

    /// Offset of received data within its frame: `headroom + XDP_PACKET_HEADROOM`. Everything
    /// in front of it is free for pushing headers.
    pub fn rx_data_offset(&self) -> u32 {
        self.shared.headroom + XDP_PACKET_HEADROOM
    }

    /// UMEM address of the start of frame `idx` (what goes on a fill ring).
    #[inline]
    pub fn frame_addr(&self, idx: u32) -> u64 {
        idx as u64 * self.shared.frame_size as u64
    }

    /// Frame index of a descriptor address: `addr / frame_size`.
    #[inline]
    pub fn frame_index(&self, addr: u64) -> u32 {
        (addr / self.shared.frame_size as u64) as u32
    }

    /// Offset of a descriptor address inside its frame: `addr % frame_size`.
    #[inline]
    pub fn frame_offset(&self, addr: u64) -> u32 {
        (addr % self.shared.frame_size as u64) as u32
    }

    /// The registering socket's fd (the `shared_umem_fd` of later sockets, unless the `Umem`
    /// came from [`Umem::donors`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }
}

/// A bound copy-mode socket whose UMEM a new socket over the same area may share.
struct Donor {
    umem: Weak<UmemShared>,
    sock: Weak<OwnedFd>,
}

/// Sockets offered by [`XskSocket::offer_umem`], oldest first; dead ones are pruned on use.
static DONORS: Mutex<Vec<Donor>> = Mutex::new(Vec::new());

/// How many donors a new port tries before it registers a UMEM of its own.
pub const MAX_DONOR_TRIES: usize = 4;

impl Umem {
    /// UMEMs over `area` that a new socket can share instead of registering the area again,
    /// newest first (at most [`MAX_DONOR_TRIES`]): each is the UMEM of a bound copy-mode
    /// socket that offered it ([`XskSocket::offer_umem`]) and is still open.
    ///
    /// Registering pins every page of the area and maps it into the kernel (about 1.2 ms for
    /// 64 MiB, 5 ms for 256 MiB, measured on a 2-core VM); a socket that shares an existing
    /// registration (`XDP_SHARED_UMEM`) pays neither. A donor whose device has gone is unbound
    /// and refuses to share (`EBADF`): [`XskSocket::new`] then reports that error and the
    /// caller tries the next one.
    pub fn donors<A: UmemArea + ?Sized>(area: &A, cfg: UmemConfig) -> Vec<Umem> {
        let base = area.umem_base() as usize;
        let len = area.umem_len() as u64;
        let mut all = DONORS.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|d| d.sock.strong_count() > 0 && d.umem.strong_count() > 0);
        all.iter()
            .rev()
            .filter_map(|d| Some((d.umem.upgrade()?, d.sock.upgrade()?)))
            .filter(|(u, _)| {
                u.base == base
                    && u.len == len
                    && u.frame_size == cfg.frame_size
                    && u.headroom == cfg.headroom
            })
            .take(MAX_DONOR_TRIES)
            .map(|(shared, sock)| Umem {
                frames: (shared.len / u64::from(shared.frame_size)) as u32,
                base: shared.base,
                shared,
                first_rings: None,
                donor: Some(sock),
                cfg,
            })
            .collect()
    }
}

type FillComp = (ProducerRing<u64>, ConsumerRing<u64>);

/// Sets the fill and completion ring sizes on `fd` and maps both rings.
fn map_fill_comp(
    fd: BorrowedFd<'_>,
    fill: u32,
    comp: u32,
) -> Result<FillComp, (&'static str, io::Error)> {
    sys::set_xdp_opt(fd, libc::XDP_UMEM_FILL_RING, &fill).map_err(|e| ("set fill ring size", e))?;
    sys::set_xdp_opt(fd, libc::XDP_UMEM_COMPLETION_RING, &comp)
        .map_err(|e| ("set completion ring size", e))?;
    let off = mmap_offsets(fd).map_err(|e| ("get ring offsets (XDP_MMAP_OFFSETS)", e))?;
    let fr = RawRing::<u64>::map(fd, &off.fr, fill, libc::XDP_UMEM_PGOFF_FILL_RING)
        .map_err(|e| ("mmap fill ring", e))?;
    let cr = RawRing::<u64>::map(fd, &off.cr, comp, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
        .map_err(|e| ("mmap completion ring", e))?;
    Ok((ProducerRing::new(fr), ConsumerRing::new(cr)))
}

fn mmap_offsets(fd: BorrowedFd<'_>) -> io::Result<libc::xdp_mmap_offsets> {
    let (off, len) = sys::get_xdp_opt::<libc::xdp_mmap_offsets>(fd, libc::XDP_MMAP_OFFSETS)?;
    if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        // Pre-5.4 kernels return the v1 layout without the flags word.
        return Err(io::Error::other("kernel too old: XDP_MMAP_OFFSETS without ring flags"));
    }
    Ok(off)
}

/// One AF_XDP socket bound to a device queue.
pub struct XskSocket {
    // Rings are declared before `fd`/`_umem` so they are unmapped before the socket closes.
    rx: ConsumerRing<libc::xdp_desc>,
    tx: ProducerRing<libc::xdp_desc>,
    fill: ProducerRing<u64>,
    comp: ConsumerRing<u64>,
    /// The socket: the UMEM's registering socket for the first socket, a new one for sharing
    /// sockets.
    fd: Arc<OwnedFd>,
    umem: Arc<UmemShared>,
    ifname: String,
    ifindex: u32,
    queue_id: u32,
    mode: XskMode,
}

impl XskSocket {
    /// Creates a socket on `ifname` (resolved in the calling thread's network namespace) queue
    /// `queue_id`, using `umem`'s frames. The first socket on a UMEM reuses its registering
    /// socket and rings; later ones bind with `XDP_SHARED_UMEM` and must each be on a distinct
    /// (device, queue).
    pub fn new(
        umem: &mut Umem,
        ifname: &str,
        queue_id: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, AfXdpError> {
        let cname = CString::new(ifname).map_err(|_| AfXdpError::BadIfName(ifname.to_string()))?;
        let ifindex = sys::ifindex(&cname)
            .ok_or_else(|| AfXdpError::NoSuchInterface { ifname: ifname.to_string() })?;
        if let Some(queues) = sys::rx_queue_count(&cname) {
            if queue_id >= queues {
                return Err(AfXdpError::QueueOutOfRange {
                    ifname: ifname.to_string(),
                    queue: queue_id,
                    queues,
                });
            }
        }
        XskSocket::create(umem, ifname.to_string(), ifindex, queue_id, cfg)
    }

    /// As [`XskSocket::new`] for an interface index.
    pub fn with_ifindex(
        umem: &mut Umem,
        ifindex: u32,
        queue_id: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, AfXdpError> {
        let ifname = sys::ifname(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"));
        XskSocket::create(umem, ifname, ifindex, queue_id, cfg)
    }

    fn create(
        umem: &mut Umem,
        ifname: String,
        ifindex: u32,
        queue_id: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, AfXdpError> {
        let first = umem.first_rings.is_some();
        let result = XskSocket::create_inner(umem, ifname, ifindex, queue_id, cfg);
        if first && result.is_err() {
            // The registering socket may now have rx/tx rings that cannot be reset: start over
            // with a fresh one so the next attempt can succeed. If that fails too, the original
            // error is the one worth reporting; the next attempt reports the new one.
            let _ = umem.reregister();
        }
        result
    }

    fn create_inner(
        umem: &mut Umem,
        ifname: String,
        ifindex: u32,
        queue_id: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, AfXdpError> {
        let fail = |op: &'static str, source: io::Error| AfXdpError::Socket {
            op,
            ifname: ifname.clone(),
            queue: queue_id,
            source,
        };
        for (what, n) in [
            ("rx", cfg.rx_size),
            ("tx", cfg.tx_size),
            ("fill", cfg.fill_size),
            ("completion", cfg.comp_size),
        ] {
            if !n.is_power_of_two() {
                return Err(AfXdpError::Config(format!(
                    "{what} ring size {n} is not a power of two"
                )));
            }
        }
        let first = umem.first_rings.is_some();
        let sock = if first {
            Arc::clone(&umem.shared.fd)
        } else {
            Arc::new(sys::xsk_socket().map_err(|e| fail("create AF_XDP socket for", e))?)
        };
        let fd = sock.as_fd();

        // Rings. A sharing socket on another device/queue needs its own fill and completion
        // rings, set up before bind (kernel >= 5.10).
        let shared_rings = if first {
            None
        } else {
            Some(map_fill_comp(fd, cfg.fill_size, cfg.comp_size).map_err(|(op, e)| fail(op, e))?)
        };
        sys::set_xdp_opt(fd, libc::XDP_RX_RING, &cfg.rx_size)
            .map_err(|e| fail("set rx ring size on", e))?;
        sys::set_xdp_opt(fd, libc::XDP_TX_RING, &cfg.tx_size)
            .map_err(|e| fail("set tx ring size on", e))?;
        let off =
            mmap_offsets(fd).map_err(|e| fail("get ring offsets (XDP_MMAP_OFFSETS) of", e))?;
        let rx = RawRing::<libc::xdp_desc>::map(
            fd,
            &off.rx,
            cfg.rx_size,
            libc::XDP_PGOFF_RX_RING as u64,
        )
        .map_err(|e| fail("mmap rx ring of", e))?;
        let tx = RawRing::<libc::xdp_desc>::map(
            fd,
            &off.tx,
            cfg.tx_size,
            libc::XDP_PGOFF_TX_RING as u64,
        )
        .map_err(|e| fail("mmap tx ring of", e))?;

        // Bind.
        if first {
            let nw = libc::XDP_USE_NEED_WAKEUP;
            let attempts: &[u16] = match cfg.mode {
                BindMode::Auto => &[libc::XDP_ZEROCOPY | nw, libc::XDP_COPY | nw],
                BindMode::Copy => &[libc::XDP_COPY | nw],
                BindMode::ZeroCopy => &[libc::XDP_ZEROCOPY | nw],
            };
            let mut result = Ok(());
            for &flags in attempts {
                result = sys::xsk_bind(fd, ifindex, queue_id, flags, None);
                if result.is_ok() {
                    break;
                }
            }
            result.map_err(|e| fail("bind AF_XDP socket to", e))?;
        } else {
            let donor = umem.donor.as_ref().unwrap_or(&umem.shared.fd);
            sys::xsk_bind(fd, ifindex, queue_id, libc::XDP_SHARED_UMEM, Some(donor.as_raw_fd()))
                .map_err(|e| fail("bind AF_XDP socket (shared UMEM) to", e))?;
        }
        let (opts, _) = sys::get_xdp_opt::<libc::xdp_options>(fd, libc::XDP_OPTIONS)
            .map_err(|e| fail("get XDP_OPTIONS of", e))?;
        let mode = if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            XskMode::ZeroCopy
        } else {
            XskMode::Copy
        };

        let (fill, comp) = match shared_rings {
            Some(r) => r,
            None => umem.first_rings.take().expect("first socket takes the UMEM rings"),
        };
        Ok(XskSocket {
            rx: ConsumerRing::new(rx),
            tx: ProducerRing::new(tx),
            fill,
            comp,
            fd: sock,
            umem: Arc::clone(&umem.shared),
            ifname,
            ifindex,
            queue_id,
            mode,
        })
    }

    /// The socket fd (for the XSKMAP and for `poll`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Offers this (bound) socket's UMEM to sockets made later over the same area
    /// ([`Umem::donors`]) for as long as it stays open. Zero-copy sockets are not offered: a
    /// socket sharing their UMEM would have to be zero-copy too.
    pub fn offer_umem(&self) {
        if self.mode != XskMode::Copy {
            return;
        }
        let mut all = DONORS.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|d| d.sock.strong_count() > 0 && d.umem.strong_count() > 0);
        all.push(Donor { umem: Arc::downgrade(&self.umem), sock: Arc::downgrade(&self.fd) });
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Queue id.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Copy or zero-copy.
    pub fn mode(&self) -> XskMode {
        self.mode
    }

    /// Hands frames to the kernel for receiving. Pulls addresses from `frames` only while the
    /// fill ring has room, so items it does not pull stay with the caller (pass `&mut iter` or
    /// `std::iter::from_fn(|| free.pop())`). Returns how many were handed over; from then on
    /// those frames belong to the kernel until they come back from [`XskSocket::rx_burst`].
    pub fn fill<I: Iterator<Item = u64>>(&mut self, mut frames: I) -> usize {
        let (idx, n) = self.fill.reserve(self.fill.size());
        let mut done = 0;
        while done < n {
            let Some(addr) = frames.next() else { break };
            debug_assert!(addr < self.umem.len, "fill address outside the UMEM");
            self.fill.write(idx.wrapping_add(done), addr);
            done += 1;
        }
        self.fill.cancel(n - done);
        self.fill.submit(done);
        done as usize
    }

    /// Entries of the fill ring (for the first socket of a UMEM, the UMEM's own ring).
    pub fn fill_size(&self) -> u32 {
        self.fill.size()
    }

    /// Free slots on the fill ring.
    pub fn fill_free(&mut self) -> u32 {
        let size = self.fill.size();
        self.fill.free(size)
    }

    /// Receives up to `out.len()` frames as `(addr, len)`: `addr` is the data start (a UMEM
    /// offset), so the frame is `umem.frame_index(addr)` and the data begins at
    /// `umem.frame_offset(addr)`. The frames now belong to the caller.
    pub fn rx_burst(&mut self, out: &mut [(u64, u32)]) -> usize {
        let (idx, n) = self.rx.peek(out.len().min(u32::MAX as usize) as u32);
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            let d = self.rx.read(idx.wrapping_add(i as u32));
            *slot = (d.addr, d.len);
        }
        self.rx.release(n);
        n as usize
    }

    /// Puts up to `descs.len()` frames on the tx ring; returns how many fit. Those frames belong
    /// to the kernel until they come back from [`XskSocket::complete`]. Call
    /// [`XskSocket::kick_tx`] afterwards.
    pub fn tx_burst(&mut self, descs: &[(u64, u32)]) -> usize {
        let (idx, n) = self.tx.reserve(descs.len().min(u32::MAX as usize) as u32);
        for (i, &(addr, len)) in descs.iter().take(n as usize).enumerate() {
            debug_assert!(
                addr < self.umem.len
                    && (addr % self.umem.frame_size as u64) + len as u64
                        <= self.umem.frame_size as u64,
                "tx descriptor crosses its frame"
            );
            self.tx.write(idx.wrapping_add(i as u32), libc::xdp_desc { addr, len, options: 0 });
        }
        self.tx.submit(n);
        n as usize
    }

    /// Tx descriptors submitted and not yet taken by the kernel.
    pub fn tx_pending(&mut self) -> u32 {
        self.tx.outstanding()
    }

    /// Collects up to `out.len()` transmitted frame addresses (the `addr` given to `tx_burst`).
    /// The frames are the caller's again.
    pub fn complete(&mut self, out: &mut [u64]) -> usize {
        let (idx, n) = self.comp.peek(out.len().min(u32::MAX as usize) as u32);
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            *slot = self.comp.read(idx.wrapping_add(i as u32));
        }
        self.comp.release(n);
        n as usize
    }

    /// Hands the address of every frame the socket still holds to `f`: frames received but
    /// not read, transmitted but not completed, and given to the fill or tx ring but never
    /// consumed. Call it only after the socket left the XSKMAP (or the XDP program was
    /// detached) and the kernel had time to finish the frames already redirected to it (a few
    /// milliseconds), so the kernel no longer consumes from the fill ring; and do not kick or
    /// `poll` the socket afterwards (a copy-mode `poll` may transmit). Then close it (drop).
    pub fn reclaim(&mut self, mut f: impl FnMut(u64)) -> usize {
        let mut n = 0;
        let mut buf = [(0u64, 0u32); 64];
        loop {
            let k = self.rx_burst(&mut buf);
            buf[..k].iter().for_each(|&(a, _)| f(a));
            n += k;
            if k == 0 {
                break;
            }
        }
        let mut comp = [0u64; 64];
        loop {
            let k = self.complete(&mut comp);
            comp[..k].iter().for_each(|&a| f(a));
            n += k;
            if k == 0 {
                break;
            }
        }
        n += self.fill.reclaim(&mut f) as usize;
        n += self.tx.reclaim(|d| f(d.addr)) as usize;
        n
    }

    /// Whether the tx ring has `XDP_RING_NEED_WAKEUP` set (always, in copy mode).
    pub fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }

    /// Whether the fill ring has `XDP_RING_NEED_WAKEUP` set (zero-copy drivers only).
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// Makes the kernel process the tx ring if it holds unsent descriptors and the kernel asked
    /// for a wakeup. Returns whether a syscall was made. Call it after `tx_burst`, and on idle
    /// iterations while [`XskSocket::tx_pending`] is non-zero. In copy mode each `sendto` sends at most the kernel's per-call budget (32
    /// frames by default) and returns `EAGAIN` when more is queued, so this repeats the kick
    /// until the ring is drained or a bound (ring size / 32 + 1 calls) is reached. Transient
    /// conditions (`ENOBUFS`, `EBUSY`, `ENETDOWN`) are not errors: call again later.
    pub fn kick_tx(&mut self) -> Result<bool, AfXdpError> {
        if self.tx.outstanding() == 0 || !self.tx.needs_wakeup() {
            return Ok(false);
        }
        let bound = self.tx.size() / 32 + 1;
        for _ in 0..bound {
            let before = self.tx.outstanding();
            match sys::kick_tx(self.fd()) {
                Ok(()) => break,
                // More queued than one call's budget: go on while the kernel makes progress. No
                // progress means the completion ring is full (or the device queue is stopped):
                // the caller must drain completions first.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    let after = self.tx.outstanding();
                    if after == 0 || after == before {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOBUFS | libc::EBUSY | libc::ENETDOWN)
                    ) =>
                {
                    break
                }
                Err(e) => {
                    return Err(AfXdpError::Socket {
                        op: "kick tx (sendto) on",
                        ifname: self.ifname.clone(),
                        queue: self.queue_id,
                        source: e,
                    })
                }
            }
        }
        Ok(true)
    }

    /// Wakes the driver to refill from the fill ring if it asked for it (`recvfrom`). Returns
    /// whether a syscall was made.
    pub fn wake_fill(&mut self) -> Result<bool, AfXdpError> {
        if !self.fill.needs_wakeup() {
            return Ok(false);
        }
        match sys::wake_rx(self.fd()) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENETDOWN)
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(AfXdpError::Socket {
                op: "wake fill (recvfrom) on",
                ifname: self.ifname.clone(),
                queue: self.queue_id,
                source: e,
            }),
        }
    }

    /// Reads the socket's `XDP_STATISTICS`.
    pub fn stats(&self) -> Result<XskStats, AfXdpError> {
        let (s, _) = sys::get_xdp_opt::<libc::xdp_statistics>(self.fd(), libc::XDP_STATISTICS)
            .map_err(|e| AfXdpError::Socket {
                op: "get XDP_STATISTICS of",
                ifname: self.ifname.clone(),
                queue: self.queue_id,
                source: e,
            })?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// A `pollfd` for this socket with `events` (e.g. `libc::POLLIN`), for [`super::poll`].
    pub fn pollfd(&self, events: i16) -> libc::pollfd {
        libc::pollfd { fd: self.fd().as_raw_fd(), events, revents: 0 }
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}
