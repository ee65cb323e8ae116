//! The four single-producer/single-consumer rings shared with the kernel.
//!
//! Each ring is a `MAP_SHARED` mapping holding a `u32` producer index, a `u32` consumer index,
//! a `u32` flags word and a power-of-two array of descriptors (`u64` UMEM addresses for the
//! fill and completion rings, `xdp_desc` for rx and tx). Indices are free-running `u32`s; the
//! slot is `index & mask`. Userspace is the producer of fill and tx (`ProducerRing`) and the
//! consumer of rx and completion (`ConsumerRing`).
//!
//! Both sides cache the other side's index so that the shared cache line is read only when the
//! cached value says the ring looks full (producer) or empty (consumer). Work is batched:
//! `reserve(n)` / `write` / `submit(n)` on the producer side, `peek(n)` / `read` / `release(n)`
//! on the consumer side, so there is one release store per burst, not per descriptor.
//!
//! Memory ordering mirrors the kernel's `xsk_queue.h` protocol:
//!
//! ```text
//!   producer                               consumer
//!   LOAD.acq  ->consumer   (A)             LOAD.acq  ->producer   (C)
//!   STORE     desc[i]                      LOAD      desc[i]
//!   STORE.rel ->producer   (B)             STORE.rel ->consumer   (D)
//! ```
//!
//! (B) pairs with (C): descriptors written before the producer index is published are visible
//! to a consumer that has seen that index. (D) pairs with (A): a consumer's reads of a slot
//! happen before the producer learns the slot is free and overwrites it.

#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::sys::Mmap;

/// A mapped ring: pointers into an [`Mmap`] it owns.
pub(super) struct RawRing<T> {
    /// Keeps the mapping alive; the pointers below point into it.
    _map: Mmap,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    _t: PhantomData<T>,
}

// SAFETY: the ring's memory is owned by the contained mapping and is only touched through
// `&mut self` (descriptors) or atomics (indices, flags); moving the ring to another thread moves
// that ownership. `T` is plain data (`u64` or `xdp_desc`).
unsafe impl<T: Copy + Send> Send for RawRing<T> {}

impl<T: Copy> RawRing<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of the socket `fd`, using the
    /// field offsets from `XDP_MMAP_OFFSETS`.
    pub(super) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<RawRing<T>> {
        debug_assert!(size.is_power_of_two());
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::ring(fd, len, pgoff)?;
        let base = map.as_ptr();
        let check = |o: u64, w: usize, align: usize| -> io::Result<()> {
            if o as usize + w > map.len() || !(base as usize + o as usize).is_multiple_of(align) {
                return Err(io::Error::other(format!(
                    "ring offset {o} out of range or misaligned"
                )));
            }
            Ok(())
        };
        check(off.producer, 4, 4)?;
        check(off.consumer, 4, 4)?;
        check(off.flags, 4, 4)?;
        check(off.desc, 0, std::mem::align_of::<T>())?;
        let at = |o: u64| {
            // SAFETY: `at` is only called with the four offsets just checked to lie inside the
            // mapping (`off + width <= len`), so the pointer stays in bounds and is non-null.
            unsafe { NonNull::new_unchecked(base.add(o as usize)) }
        };
        Ok(RawRing {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: size - 1,
            size,
            _map: map,
            _t: PhantomData,
        })
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the pointer is in bounds and 4-byte aligned (checked in `map`) and lives as
        // long as `self.map`; the kernel accesses this word only with READ_ONCE /
        // smp_load_acquire / smp_store_release, which are compatible with an AtomicU32.
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    #[inline]
    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`; the kernel updates the flags word with plain or atomic
        // stores of whole words.
        unsafe { self.flags.as_ref() }
    }

    /// Pointer to slot `idx & mask`.
    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size`, and the mapping holds `size` descriptors after `desc`.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }

    /// Whether the kernel asked to be woken up for this ring (`XDP_RING_NEED_WAKEUP`).
    #[inline]
    fn needs_wakeup(&self) -> bool {
        // Ordering: the caller has just published an index with a release store. A release
        // store followed by a load may be reordered (store->load), so without a full fence we
        // could read a stale "no wakeup needed" while the kernel, having not yet seen our
        // index, goes to sleep. The SeqCst fence forbids that reordering; it costs a few tens
        // of cycles per burst, far less than a missed wakeup. The load itself can be Relaxed:
        // the flag carries no data we then read.
        fence(Ordering::SeqCst);
        self.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// A ring userspace produces into: fill (`u64` addresses) or tx (`xdp_desc`).
pub(super) struct ProducerRing<T> {
    ring: RawRing<T>,
    /// Our producer index as last published to the kernel.
    published: u32,
    /// Our producer index including reserved but unpublished slots.
    cached_prod: u32,
    /// The kernel's consumer index plus `size`: the producer may advance up to here.
    cached_cons: u32,
}

impl<T: Copy> ProducerRing<T> {
    pub(super) fn new(ring: RawRing<T>) -> ProducerRing<T> {
        // Ordering: our own index is only ever written by us (Relaxed suffices); the consumer
        // index is read with Acquire as in `free`.
        let prod = ring.producer().load(Ordering::Relaxed);
        let cons = ring.consumer().load(Ordering::Acquire);
        let size = ring.size;
        ProducerRing {
            ring,
            published: prod,
            cached_prod: prod,
            cached_cons: cons.wrapping_add(size),
        }
    }

    /// Number of entries in the ring.
    pub(super) fn size(&self) -> u32 {
        self.ring.size
    }

    /// Free slots; refreshes the cached consumer index only if fewer than `want` look free.
    #[inline]
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        // Ordering (A): Acquire pairs with the kernel's release store of the consumer index
        // (D), so the kernel's reads of the slots it released happen before we overwrite them.
        self.cached_cons =
            self.ring.consumer().load(Ordering::Acquire).wrapping_add(self.ring.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Entries published to the kernel and not yet consumed by it (as of the last refresh).
    pub(super) fn outstanding(&mut self) -> u32 {
        self.free(self.ring.size);
        self.ring.size - self.cached_cons.wrapping_sub(self.published)
    }

    /// Reserves up to `n` slots; returns the first index and how many were reserved.
    #[inline]
    pub(super) fn reserve(&mut self, n: u32) -> (u32, u32) {
        let count = self.free(n).min(n);
        let idx = self.cached_prod;
        self.cached_prod = idx.wrapping_add(count);
        (idx, count)
    }

    /// Writes slot `idx`, which must have been reserved and not yet submitted.
    ///
    /// # Panics
    /// If `idx` is outside the reserved window (that slot may be owned by the kernel).
    #[inline]
    pub(super) fn write(&mut self, idx: u32, value: T) {
        assert!(
            idx.wrapping_sub(self.published) < self.cached_prod.wrapping_sub(self.published),
            "write to unreserved ring slot"
        );
        // SAFETY: the slot is in bounds (`slot`) and lies in our reserved window, which the
        // kernel does not read until we publish it, so there is no concurrent access. A raw
        // pointer write creates no reference into the shared mapping.
        unsafe { self.ring.slot(idx).write(value) }
    }

    /// Gives back the last `n` reserved, unsubmitted slots.
    pub(super) fn cancel(&mut self, n: u32) {
        assert!(n <= self.cached_prod.wrapping_sub(self.published), "cancel more than reserved");
        self.cached_prod = self.cached_prod.wrapping_sub(n);
    }

    /// Publishes the next `n` reserved slots to the kernel.
    #[inline]
    pub(super) fn submit(&mut self, n: u32) {
        assert!(n <= self.cached_prod.wrapping_sub(self.published), "submit more than reserved");
        if n == 0 {
            return;
        }
        self.published = self.published.wrapping_add(n);
        // Ordering (B): Release makes the descriptor writes above visible to the kernel before
        // it can observe the new producer index (its acquire load, C).
        self.ring.producer().store(self.published, Ordering::Release);
    }

    /// Whether the kernel wants a syscall to notice new entries (see [`RawRing::needs_wakeup`]).
    #[inline]
    pub(super) fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }

    /// Hands every entry we published that the kernel has not consumed to `f`, oldest first,
    /// and returns how many there were. Only for tearing a socket down after the kernel has
    /// stopped consuming from this ring (the socket is out of the XSKMAP and no tx kick is
    /// pending): the entries stay in the ring, so a kernel still consuming could use a frame we
    /// also give back.
    pub(super) fn reclaim(&mut self, mut f: impl FnMut(T)) -> u32 {
        // Ordering: Acquire as in `free`, so the kernel's reads of the slots it consumed happen
        // before we decide which slots it did not consume.
        let cons = self.ring.consumer().load(Ordering::Acquire);
        let n = self.published.wrapping_sub(cons).min(self.ring.size);
        for i in 0..n {
            // SAFETY: the slot is in bounds (`slot`), holds a descriptor we wrote and published,
            // and by this method's contract the kernel no longer reads or writes it, so a raw
            // read races with nothing and creates no reference into the shared mapping.
            f(unsafe { self.ring.slot(cons.wrapping_add(i)).read() });
        }
        n
    }
}

/// A ring userspace consumes from: rx (`xdp_desc`) or completion (`u64` addresses).
pub(super) struct ConsumerRing<T> {
    ring: RawRing<T>,
    /// Our consumer index as last published to the kernel.
    released: u32,
    /// Our consumer index including peeked but unreleased entries.
    cached_cons: u32,
    /// The kernel's producer index as last read.
    cached_prod: u32,
}

impl<T: Copy> ConsumerRing<T> {
    pub(super) fn new(ring: RawRing<T>) -> ConsumerRing<T> {
        // Ordering: our own index is only written by us (Relaxed); the producer index is read
        // with Acquire as in `available`.
        let cons = ring.consumer().load(Ordering::Relaxed);
        let prod = ring.producer().load(Ordering::Acquire);
        ConsumerRing { ring, released: cons, cached_cons: cons, cached_prod: prod }
    }

    /// Entries ready to read; refreshes the cached producer index only if fewer than `want`
    /// look ready.
    #[inline]
    pub(super) fn available(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want {
            return avail;
        }
        // Ordering (C): Acquire pairs with the kernel's release store of the producer index
        // (B), so the descriptors it wrote before publishing are visible to our reads.
        self.cached_prod = self.ring.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Takes up to `n` ready entries; returns the first index and how many.
    #[inline]
    pub(super) fn peek(&mut self, n: u32) -> (u32, u32) {
        let count = self.available(n).min(n);
        let idx = self.cached_cons;
        self.cached_cons = idx.wrapping_add(count);
        (idx, count)
    }

    /// Reads slot `idx`, which must have been peeked and not yet released.
    ///
    /// # Panics
    /// If `idx` is outside the peeked window.
    #[inline]
    pub(super) fn read(&self, idx: u32) -> T {
        assert!(
            idx.wrapping_sub(self.released) < self.cached_cons.wrapping_sub(self.released),
            "read of unpeeked ring slot"
        );
        // SAFETY: the slot is in bounds and was published by the kernel (acquire in
        // `available`); the kernel does not write it again until we release it.
        unsafe { self.ring.slot(idx).read() }
    }

    /// Hands the next `n` peeked slots back to the kernel.
    #[inline]
    pub(super) fn release(&mut self, n: u32) {
        assert!(n <= self.cached_cons.wrapping_sub(self.released), "release more than peeked");
        if n == 0 {
            return;
        }
        self.released = self.released.wrapping_add(n);
        // Ordering (D): Release orders our reads of the slots before the kernel can see them
        // free and overwrite them (its acquire load, A).
        self.ring.consumer().store(self.released, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ring over anonymous memory laid out like the kernel's (no kernel involved):
    /// exercises the index arithmetic, including wrap-around of the free-running indices.
    fn fake_pair(size: u32) -> (ProducerRing<u64>, ConsumerRing<u64>) {
        let off = libc::xdp_ring_offset { producer: 0, consumer: 64, flags: 128, desc: 192 };
        let len = 192 + size as usize * 8;
        // SAFETY: memfd_create with a static NUL-terminated name has no other preconditions.
        let fd = unsafe { libc::memfd_create(c"ringtest".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd was just created and is owned here.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: fd is a valid memfd; ftruncate takes no pointers.
        let r = unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), len as i64) };
        assert_eq!(r, 0);
        use std::os::fd::AsFd;
        let a = RawRing::<u64>::map(fd.as_fd(), &off, size, 0).unwrap();
        let b = RawRing::<u64>::map(fd.as_fd(), &off, size, 0).unwrap();
        (ProducerRing::new(a), ConsumerRing::new(b))
    }

    #[test]
    fn produce_consume_wraps() {
        let (mut p, mut c) = fake_pair(8);
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..100u32 {
            let (idx, n) = p.reserve(5);
            assert!(n <= 5);
            for i in 0..n {
                p.write(idx.wrapping_add(i), next);
                next += 1;
            }
            p.submit(n);
            let (idx, m) = c.peek(3 + round % 5);
            for i in 0..m {
                assert_eq!(c.read(idx.wrapping_add(i)), expect);
                expect += 1;
            }
            c.release(m);
        }
        assert!(expect > 100);
    }

    #[test]
    fn full_ring_reserves_nothing() {
        let (mut p, _c) = fake_pair(4);
        let (idx, n) = p.reserve(10);
        assert_eq!(n, 4);
        for i in 0..n {
            p.write(idx + i, i as u64);
        }
        p.submit(4);
        assert_eq!(p.reserve(1).1, 0);
        assert_eq!(p.outstanding(), 4);
    }

    #[test]
    #[should_panic(expected = "unreserved")]
    fn write_outside_reservation_panics() {
        let (mut p, _c) = fake_pair(4);
        p.write(0, 1);
    }
}
