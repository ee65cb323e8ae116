//! The buffer pool and the linear packet handle.
//!
//! A [`Pool`] belongs to one worker. It holds two regions:
//! - **frames**: `frames` buffers of `frame_size` bytes (2 KiB by default) in one page-aligned
//!   mapping ([`Region`]). AF_XDP ports register this mapping as their UMEM, so a descriptor
//!   address is `frame_index * frame_size + offset` and forwarding between two AF_XDP ports moves
//!   a descriptor, not bytes.
//! - **big buffers**: a few buffers of 128 KiB for packets larger than one frame (64 KB TCP
//!   segments that TAP/vhost pod ports hand over with offload metadata). They are never given to
//!   AF_XDP; such a packet is segmented into frames where the output needs it.
//!
//! Every buffer starts with `headroom` bytes (256 by default) so that a VLAN tag (4) or a VXLAN
//! outer header (50) is pushed by moving the start of the packet back, with no copy.
//!
//! A [`Pkt`] is a handle to one buffer: neither `Copy` nor `Clone`, so a buffer has exactly one
//! owner. It leaves the switch only by being consumed: [`Pool::free`], a port's transmit, or
//! [`Pool::into_desc`] for a kernel ring. [`Pool::in_use`] counts the handles outstanding, which
//! the conservation tests check.

use super::umem::{FrameReader, Region, RegionError};

/// Bit 31 of a buffer id marks a big buffer.
const BIG: u32 = 1 << 31;
/// The id of the placeholder handle that fills unused batch slots.
const NONE: u32 = u32::MAX;

/// A linear handle to one packet buffer of a [`Pool`].
///
/// `head` is the offset of the first byte of the packet inside its buffer and `len` its length.
#[must_use = "a packet must be freed, transmitted or handed to a ring, or its buffer leaks"]
#[derive(Debug, PartialEq, Eq)]
pub struct Pkt {
    buf: u32,
    head: u32,
    len: u32,
}

impl Pkt {
    /// The placeholder for unused batch slots; never handed out by a pool.
    pub(crate) const EMPTY: Pkt = Pkt { buf: NONE, head: 0, len: 0 };

    /// Packet length in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Offset of the packet's first byte inside its buffer (what is left of the headroom).
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Whether the packet lives in a big buffer (larger than one frame).
    #[inline]
    pub fn is_big(&self) -> bool {
        self.buf != NONE && self.buf & BIG != 0
    }
}

/// Geometry of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of frames (the UMEM size is `frames * frame_size`).
    pub frames: usize,
    /// Bytes per frame: 2048 or 4096 (AF_XDP aligned mode takes a power of two).
    pub frame_size: usize,
    /// Bytes kept free before the packet in each buffer, for headers pushed later.
    pub headroom: usize,
    /// Number of 128 KiB buffers for packets larger than a frame (0 disables them).
    pub big_buffers: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { frames: 32768, frame_size: 2048, headroom: 256, big_buffers: 64 }
    }
}

/// Size of a big buffer: a 64 KiB IP packet plus link, VLAN and VXLAN headers and headroom.
pub const BIG_BUFFER_SIZE: usize = 128 * 1024;

/// Why a pool could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool headroom {headroom} leaves less than 1518 bytes in a {frame_size}-byte frame")]
    Headroom { headroom: usize, frame_size: usize },
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// A worker's packet buffers. See the module documentation.
pub struct Pool {
    frames: Region,
    big: Option<Region>,
    headroom: u32,
    frame_size: u32,
    /// Free frame indices, used as a stack so recently freed (cache-warm) frames go out first.
    free: Vec<u32>,
    free_big: Vec<u32>,
    /// Frames currently owned by the kernel (on a fill or tx ring).
    in_kernel: usize,
}

impl Pool {
    pub fn new(cfg: PoolConfig) -> Result<Pool, PoolError> {
        if cfg.headroom + 1518 > cfg.frame_size {
            return Err(PoolError::Headroom { headroom: cfg.headroom, frame_size: cfg.frame_size });
        }
        let frames = Region::new(cfg.frames, cfg.frame_size)?;
        let big = if cfg.big_buffers > 0 {
            Some(Region::new(cfg.big_buffers, BIG_BUFFER_SIZE)?)
        } else {
            None
        };
        // Pushed in reverse so that frame 0 is handed out first (tidy for tests and traces).
        let free = (0..cfg.frames as u32).rev().collect();
        let free_big = (0..cfg.big_buffers as u32).rev().collect();
        Ok(Pool {
            frames,
            big,
            headroom: cfg.headroom as u32,
            frame_size: cfg.frame_size as u32,
            free,
            free_big,
            in_kernel: 0,
        })
    }

    /// A packet of length 0 at the default headroom in a fresh frame, or `None` when the pool is
    /// exhausted (the caller counts a drop).
    #[inline]
    pub fn alloc(&mut self) -> Option<Pkt> {
        let buf = self.free.pop()?;
        Some(Pkt { buf, head: self.headroom, len: 0 })
    }

    /// A packet of length 0 in a big buffer, or `None` when none is free.
    #[inline]
    pub fn alloc_big(&mut self) -> Option<Pkt> {
        let buf = self.free_big.pop()?;
        Some(Pkt { buf: buf | BIG, head: self.headroom, len: 0 })
    }

    /// A packet holding a copy of `bytes`, in a frame or, if larger, in a big buffer.
    pub fn alloc_from(&mut self, bytes: &[u8]) -> Option<Pkt> {
        let mut p = if bytes.len() <= self.frame_size as usize - self.headroom as usize {
            self.alloc()?
        } else {
            self.alloc_big()?
        };
        if self.append(&mut p, bytes.len()).is_none() {
            self.free(p);
            return None;
        }
        self.data_mut(&p).copy_from_slice(bytes);
        Some(p)
    }

    /// Returns a packet's buffer to the pool.
    #[inline]
    pub fn free(&mut self, p: Pkt) {
        match p.buf {
            NONE => {}
            b if b & BIG != 0 => self.free_big.push(b & !BIG),
            b => self.free.push(b),
        }
    }

    /// Frees every packet of an iterator.
    pub fn free_all(&mut self, pkts: impl IntoIterator<Item = Pkt>) {
        for p in pkts {
            self.free(p);
        }
    }

    #[inline]
    fn buffer(&self, buf: u32) -> &[u8] {
        if buf & BIG != 0 {
            match &self.big {
                Some(r) => r.frame(buf & !BIG),
                None => &[],
            }
        } else {
            self.frames.frame(buf)
        }
    }

    #[inline]
    fn buffer_mut(&mut self, buf: u32) -> &mut [u8] {
        if buf & BIG != 0 {
            match &mut self.big {
                Some(r) => r.frame_mut(buf & !BIG),
                None => &mut [],
            }
        } else {
            self.frames.frame_mut(buf)
        }
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self, p: &Pkt) -> &[u8] {
        let (h, l) = (p.head as usize, p.len as usize);
        &self.buffer(p.buf)[h..h + l]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self, p: &Pkt) -> &mut [u8] {
        let (h, l) = (p.head as usize, p.len as usize);
        &mut self.buffer_mut(p.buf)[h..h + l]
    }

    /// Capacity of the buffer behind `p`.
    #[inline]
    fn capacity_of(&self, p: &Pkt) -> usize {
        if p.buf & BIG != 0 {
            BIG_BUFFER_SIZE
        } else {
            self.frame_size as usize
        }
    }

    /// Grows the packet by `n` bytes at its end and returns the new tail, or `None` if the
    /// buffer has no room (the packet is unchanged).
    #[inline]
    pub fn append(&mut self, p: &mut Pkt, n: usize) -> Option<&mut [u8]> {
        let end = p.head as usize + p.len as usize;
        if end + n > self.capacity_of(p) {
            return None;
        }
        p.len += n as u32;
        Some(&mut self.buffer_mut(p.buf)[end..end + n])
    }

    /// Grows the packet by `n` bytes at its front (into the headroom) and returns the new front,
    /// or `None` if the headroom is too small (the packet is unchanged).
    #[inline]
    pub fn push_front(&mut self, p: &mut Pkt, n: usize) -> Option<&mut [u8]> {
        if (p.head as usize) < n {
            return None;
        }
        p.head -= n as u32;
        p.len += n as u32;
        let h = p.head as usize;
        Some(&mut self.buffer_mut(p.buf)[h..h + n])
    }

    /// Removes `n` bytes from the packet's front (they become headroom). Returns `false`, with
    /// the packet unchanged, if it is shorter than `n`.
    #[inline]
    pub fn pull_front(&mut self, p: &mut Pkt, n: usize) -> bool {
        if (p.len as usize) < n {
            return false;
        }
        p.head += n as u32;
        p.len -= n as u32;
        true
    }

    /// Cuts the packet to `len` bytes (no-op if it is already shorter).
    #[inline]
    pub fn truncate(&mut self, p: &mut Pkt, len: usize) {
        if len < p.len as usize {
            p.len = len as u32;
        }
    }

    /// A copy of the packet in a new buffer with the same headroom (flooding, mirroring).
    #[inline]
    pub fn copy(&mut self, p: &Pkt) -> Option<Pkt> {
        let big = p.buf & BIG != 0;
        let buf = if big { self.free_big.pop()? | BIG } else { self.free.pop()? };
        let q = Pkt { buf, head: p.head, len: p.len };
        let (h, l) = (p.head as usize, p.len as usize);
        if big {
            // Big buffers are rare (one per 64 KB segment); copying through a bounce keeps the
            // pool free of a second unsafe split borrow.
            let src = self.buffer(p.buf)[h..h + l].to_vec();
            self.buffer_mut(buf)[h..h + l].copy_from_slice(&src);
        } else {
            let (s, d) = self.frames.frame_pair(p.buf, buf);
            d[h..h + l].copy_from_slice(&s[h..h + l]);
        }
        Some(q)
    }

    /// Free frames left.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Free big buffers left.
    pub fn free_big_buffers(&self) -> usize {
        self.free_big.len()
    }

    /// Total frames.
    pub fn frames(&self) -> usize {
        self.frames.frames()
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size as usize
    }

    /// Default headroom of a fresh buffer.
    pub fn headroom(&self) -> usize {
        self.headroom as usize
    }

    /// Buffers owned by handles or by the kernel: everything not on a free list. A run that
    /// ends with every packet delivered or dropped returns this to its starting value.
    pub fn in_use(&self) -> usize {
        self.frames.frames() - self.free.len() + self.big.as_ref().map_or(0, |b| b.frames())
            - self.free_big.len()
    }

    /// Frames currently on a kernel ring (fill or tx).
    pub fn in_kernel(&self) -> usize {
        self.in_kernel
    }

    /// Read access to this pool's buffers from another worker, for packets handed over to it.
    pub fn reader(&self) -> PoolReader {
        PoolReader { frames: self.frames.reader(), big: self.big.as_ref().map(Region::reader) }
    }

    /// The frame region, for registering it as an AF_XDP UMEM.
    pub fn region(&self) -> &Region {
        &self.frames
    }

    /// Takes a free frame for a kernel fill ring: returns its UMEM address (frame start; the
    /// kernel adds the UMEM headroom itself).
    #[inline]
    pub fn fill_desc(&mut self) -> Option<u64> {
        let buf = self.free.pop()?;
        self.in_kernel += 1;
        Some(u64::from(buf) * u64::from(self.frame_size))
    }

    /// A packet received from the kernel at UMEM address `addr`, `len` bytes long. Returns
    /// `None` for an address or length outside the UMEM (a kernel or ring bug; counted by the
    /// caller), leaving the frame's ownership with the kernel's books.
    #[inline]
    pub fn from_desc(&mut self, addr: u64, len: u32) -> Option<Pkt> {
        let fs = u64::from(self.frame_size);
        let buf = addr / fs;
        let head = (addr % fs) as u32;
        if buf >= self.frames.frames() as u64 || u64::from(head) + u64::from(len) > fs {
            return None;
        }
        self.in_kernel -= 1;
        Some(Pkt { buf: buf as u32, head, len })
    }

    /// Hands a frame-backed packet to the kernel (tx ring): returns its UMEM address and length,
    /// or gives the packet back if it lives in a big buffer (which is not in the UMEM).
    #[inline]
    pub fn into_desc(&mut self, p: Pkt) -> Result<(u64, u32), Pkt> {
        if p.buf == NONE || p.buf & BIG != 0 {
            return Err(p);
        }
        self.in_kernel += 1;
        Ok((u64::from(p.buf) * u64::from(self.frame_size) + u64::from(p.head), p.len))
    }

    /// A frame the kernel is done with (completion ring, or a fill ring torn down): back to the
    /// free list. Addresses outside the UMEM are ignored and reported as `false`.
    #[inline]
    pub fn release_desc(&mut self, addr: u64) -> bool {
        let buf = addr / u64::from(self.frame_size);
        if buf >= self.frames.frames() as u64 {
            return false;
        }
        self.in_kernel -= 1;
        self.free.push(buf as u32);
        true
    }
}

/// Reads packets of another worker's pool whose handles were handed to this worker (the
/// cross-worker hand-off): the receiving worker copies the bytes into its own pool, then gives
/// the handle back for the owner to free.
#[derive(Clone)]
pub struct PoolReader {
    frames: FrameReader,
    big: Option<FrameReader>,
}

impl PoolReader {
    /// The bytes of `p`, a packet of the pool this reader reads.
    #[inline]
    pub fn data<'a>(&'a self, p: &'a Pkt) -> &'a [u8] {
        let (h, l) = (p.head as usize, p.len as usize);
        let buf = if p.buf & BIG != 0 {
            match &self.big {
                Some(r) => r.frame(p.buf & !BIG),
                None => return &[],
            }
        } else {
            self.frames.frame(p.buf)
        };
        &buf[h..h + l]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_handed_over_packets() {
        let mut a = pool();
        let reader = a.reader();
        let p = a.alloc_from(&[7, 8, 9]).unwrap();
        let seen = std::thread::scope(|s| s.spawn(|| reader.data(&p).to_vec()).join().unwrap());
        assert_eq!(seen, vec![7, 8, 9]);
        a.free(p);
        drop(a);
        // The reader keeps the mapping alive after the pool is gone.
        let _ = reader.frames.frame(0)[0];
    }

    fn pool() -> Pool {
        Pool::new(PoolConfig { frames: 16, frame_size: 2048, headroom: 256, big_buffers: 2 })
            .unwrap()
    }

    #[test]
    fn alloc_append_push_pull() {
        let mut pool = pool();
        let mut p = pool.alloc().unwrap();
        assert_eq!(p.len(), 0);
        assert_eq!(p.headroom(), 256);
        pool.append(&mut p, 4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        pool.push_front(&mut p, 2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(pool.data(&p), &[9, 9, 1, 2, 3, 4]);
        assert!(pool.pull_front(&mut p, 3));
        assert_eq!(pool.data(&p), &[2, 3, 4]);
        assert!(!pool.pull_front(&mut p, 4));
        assert!(pool.append(&mut p, 4096).is_none(), "frame overflow refused");
        assert_eq!(pool.data(&p), &[2, 3, 4], "unchanged after refusal");
        pool.free(p);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn headroom_exhaustion_is_refused() {
        let mut pool = pool();
        let mut p = pool.alloc().unwrap();
        assert!(pool.push_front(&mut p, 257).is_none());
        assert!(pool.push_front(&mut p, 256).is_some());
        pool.free(p);
    }

    #[test]
    fn copy_is_independent() {
        let mut pool = pool();
        let p = pool.alloc_from(&[1, 2, 3]).unwrap();
        let q = pool.copy(&p).unwrap();
        pool.data_mut(&q)[0] = 7;
        assert_eq!(pool.data(&p), &[1, 2, 3]);
        assert_eq!(pool.data(&q), &[7, 2, 3]);
        let big = pool.alloc_from(&vec![5u8; 60000]).unwrap();
        assert!(big.is_big());
        let big2 = pool.copy(&big).unwrap();
        assert_eq!(pool.data(&big2).len(), 60000);
        pool.free_all([p, q, big, big2]);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn exhaustion_returns_none_and_recovers() {
        let mut pool = pool();
        let all: Vec<Pkt> = std::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(all.len(), 16);
        assert!(pool.alloc().is_none());
        assert!(pool.alloc_from(&[0; 10]).is_none());
        pool.free_all(all);
        assert_eq!(pool.free_frames(), 16);
    }

    #[test]
    fn descriptors_round_trip() {
        let mut pool = pool();
        let addr = pool.fill_desc().unwrap();
        assert_eq!(pool.in_kernel(), 1);
        // The kernel writes 60 bytes at the UMEM headroom and returns addr + headroom.
        let p = pool.from_desc(addr + 256, 60).unwrap();
        assert_eq!(p.len(), 60);
        assert_eq!(pool.in_kernel(), 0);
        let (a, l) = pool.into_desc(p).unwrap();
        assert_eq!((a, l), (addr + 256, 60));
        assert!(pool.release_desc(a));
        assert_eq!(pool.in_use(), 0);
        assert!(pool.from_desc(16 * 2048, 10).is_none(), "address past the UMEM");
        assert!(pool.from_desc(2000, 100).is_none(), "length past the frame");
        let big = pool.alloc_big().unwrap();
        let big = pool.into_desc(big).unwrap_err();
        pool.free(big);
    }

    #[test]
    fn bad_headroom_refused() {
        let r =
            Pool::new(PoolConfig { frames: 4, frame_size: 2048, headroom: 1024, big_buffers: 0 });
        assert!(matches!(r, Err(PoolError::Headroom { .. })));
    }
}
