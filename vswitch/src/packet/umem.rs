//! The memory behind a buffer pool: one page-aligned mapping, cut into equal frames, that an
//! AF_XDP port registers with the kernel as its UMEM.
//!
//! This is the only module under `packet/` that uses `unsafe`: it owns a raw `mmap`ed region
//! because the kernel writes into frames it has been handed (AF_XDP fill ring) while the rest of
//! the region is in use by the switch, which rules out holding it as one `&mut [u8]`. Access goes
//! through [`Region::frame`] and [`Region::frame_mut`], which hand out one frame at a time; the
//! pool guarantees that a frame is borrowed only while the switch owns it (it is neither on a
//! fill ring nor on a tx ring).
//!
//! Huge pages are tried first (fewer TLB misses across a 16+ MiB pool), and plain pages are the
//! fallback, so the switch runs on machines with no hugetlbfs reservation.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

/// Why a region could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("frame size {0} is not a power of two between 2048 and 131072")]
    FrameSize(usize),
    #[error("frame count {0} is out of range (1..=1048576)")]
    FrameCount(usize),
    #[error("mmap of {bytes} bytes failed: {source}")]
    Mmap { bytes: usize, source: std::io::Error },
}

/// The mapping itself, shared by the region and its [`FrameReader`]s so it stays mapped while
/// any of them lives.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory; who may touch which frame is governed by packet-handle ownership.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself hands out no references.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, and this is the last owner of
        // the mapping (the region and every reader hold it through an `Arc`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// A page-aligned, zero-initialised mapping of `frames * frame_size` bytes.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    frame_size: usize,
    frames: usize,
    huge: bool,
    map: Arc<Mapping>,
}

/// Read access to the frames of another worker's region, for packets handed from that worker
/// to this one. A frame may be read only while the reader holds the packet handle that owns it
/// (the sending worker does not touch it until the handle is given back).
#[derive(Clone)]
pub struct FrameReader {
    map: Arc<Mapping>,
    frame_size: usize,
    frames: usize,
}

impl FrameReader {
    /// Start of the mapping (for registering it as another AF_XDP UMEM).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.base.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Never true: a region has at least one frame.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Frame `idx`, shared.
    ///
    /// # Panics
    /// If `idx` is out of range.
    #[inline]
    pub fn frame(&self, idx: u32) -> &[u8] {
        let idx = idx as usize;
        assert!(idx < self.frames, "frame index {idx} out of range");
        // SAFETY: in bounds of a mapping kept alive by `self.map`; by the handle protocol the
        // frame's owner (the caller, holding its packet handle) is the only one accessing it.
        unsafe {
            std::slice::from_raw_parts(
                self.map.base.as_ptr().add(idx * self.frame_size),
                self.frame_size,
            )
        }
    }
}

// SAFETY: the region is plain memory owned by this value (and its readers); moving it to another
// thread moves that ownership. Frame access goes through `&self`/`&mut self` methods.
unsafe impl Send for Region {}
// SAFETY: `&Region` only hands out shared views of frames (`frame`) and the base pointer; the
// kernel-visible writes are coordinated by the owner through the AF_XDP rings.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `frames` frames of `frame_size` bytes each, trying huge pages first.
    pub fn new(frames: usize, frame_size: usize) -> Result<Region, RegionError> {
        if !frame_size.is_power_of_two() || !(2048..=131072).contains(&frame_size) {
            return Err(RegionError::FrameSize(frame_size));
        }
        if frames == 0 || frames > (1 << 20) {
            return Err(RegionError::FrameCount(frames));
        }
        let len = frames * frame_size;
        const HUGE: usize = 2 << 20;
        if len.is_multiple_of(HUGE) {
            if let Ok(base) = map(len, libc::MAP_HUGETLB) {
                let map = Arc::new(Mapping { base, len });
                return Ok(Region { base, len, frame_size, frames, huge: true, map });
            }
        }
        let base = map(len, 0).map_err(|source| RegionError::Mmap { bytes: len, source })?;
        let map = Arc::new(Mapping { base, len });
        Ok(Region { base, len, frame_size, frames, huge: false, map })
    }

    /// A reader of this region's frames for another thread (see [`FrameReader`]).
    pub fn reader(&self) -> FrameReader {
        FrameReader { map: self.map.clone(), frame_size: self.frame_size, frames: self.frames }
    }

    /// Size of one frame in bytes.
    #[inline]
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Number of frames.
    #[inline]
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Total length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a region has at least one frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the mapping is backed by huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// The start of the mapping, for registering it with the kernel (XDP_UMEM_REG).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Frame `idx` as a shared slice.
    ///
    /// # Panics
    /// If `idx >= frames()`: frame indices come from the pool, never from packets.
    #[inline]
    pub fn frame(&self, idx: u32) -> &[u8] {
        let idx = idx as usize;
        assert!(idx < self.frames, "frame index {idx} out of range");
        // SAFETY: `idx < frames`, so the range lies inside the live mapping; the pool only asks
        // for frames the switch owns, which the kernel does not write to.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(idx * self.frame_size),
                self.frame_size,
            )
        }
    }

    /// Frame `idx` as a mutable slice.
    ///
    /// # Panics
    /// If `idx >= frames()`.
    #[inline]
    pub fn frame_mut(&mut self, idx: u32) -> &mut [u8] {
        let idx = idx as usize;
        assert!(idx < self.frames, "frame index {idx} out of range");
        // SAFETY: as in `frame`, and `&mut self` makes this the only borrow of the region.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.as_ptr().add(idx * self.frame_size),
                self.frame_size,
            )
        }
    }

    /// Two distinct frames at once, the first shared and the second mutable (a packet copy).
    ///
    /// # Panics
    /// If either index is out of range or they are equal.
    #[inline]
    pub fn frame_pair(&mut self, src: u32, dst: u32) -> (&[u8], &mut [u8]) {
        assert!(src != dst, "frame_pair needs two distinct frames");
        let (s, d) = (src as usize, dst as usize);
        assert!(s < self.frames && d < self.frames, "frame index out of range");
        let fs = self.frame_size;
        // SAFETY: both ranges lie inside the mapping and do not overlap (s != d, equal sizes),
        // and `&mut self` makes these the only borrows of the region.
        unsafe {
            let base = self.base.as_ptr();
            (
                std::slice::from_raw_parts(base.add(s * fs), fs),
                std::slice::from_raw_parts_mut(base.add(d * fs), fs),
            )
        }
    }
}

fn map(len: usize, extra: libc::c_int) -> std::io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the result
    // is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_disjoint_and_zeroed() {
        let mut r = Region::new(8, 2048).unwrap();
        assert_eq!(r.len(), 8 * 2048);
        assert_eq!(r.as_ptr() as usize % 4096, 0, "page aligned");
        assert!(r.frame(3).iter().all(|&b| b == 0));
        r.frame_mut(3).fill(0xab);
        assert!(r.frame(2).iter().all(|&b| b == 0));
        assert!(r.frame(4).iter().all(|&b| b == 0));
        let (s, d) = r.frame_pair(3, 5);
        d[..10].copy_from_slice(&s[..10]);
        assert_eq!(&r.frame(5)[..10], &[0xab; 10]);
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(matches!(Region::new(8, 3000), Err(RegionError::FrameSize(3000))));
        assert!(matches!(Region::new(0, 2048), Err(RegionError::FrameCount(0))));
    }
}
