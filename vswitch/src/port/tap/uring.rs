//! The TAP port's batched I/O: one io_uring per port through which a whole batch of reads (or
//! writes) on the queue descriptors goes to the kernel in one `io_uring_enter`.
//!
//! Every operation carries `RWF_NOWAIT` and the tun descriptors are `FMODE_NOWAIT` files, so
//! the kernel issues each one inline while it consumes the submission queue: a read that finds
//! the queue empty completes with `-EAGAIN` instead of arming a poll, a write that could not
//! go at once with `-EAGAIN` instead of moving to an io-wq worker. So one `io_uring_enter`
//! both submits a batch and finds every completion posted, and [`Ring::read`] and
//! [`Ring::write`] wait for all of them (`min_complete` = the batch) before returning: no
//! buffer is ever left with the kernel between two calls, which is what lets the reads go
//! straight into the worker's pool buffers (a 64 KB segment is never copied) and makes
//! dropping the port trivially safe. The contract is carried by the borrows: the packets'
//! buffers (and the pool they live in) are borrowed for the whole call.
//!
//! This file holds the `unsafe` of the batched path: pushing submission entries that carry
//! raw pointers. Everything else about the ring is the `io-uring` crate's safe interface.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types, IoUring};

use super::VNET_HDR_LEN;
use crate::packet::{Pkt, Pool};

/// Submission queue entries: a batch is at most [`crate::packet::MAX_BATCH`] packets.
pub(super) const ENTRIES: usize = 256;

/// One read: a packet from queue `q` into the whole of `pkt`'s buffer (its length is the room
/// the read may fill).
#[derive(Debug)]
pub(super) struct RxSlot {
    pub q: u16,
    pub pkt: Pkt,
    /// Where the rest of a packet longer than `pkt`'s room goes: the same offsets of this
    /// (big) buffer, so that only `pkt`'s part has to be copied in front of it.
    pub tail: Option<Pkt>,
}

/// One write: `hdr` then `pkt` to queue `q`.
#[derive(Debug)]
pub(super) struct TxSlot {
    pub q: u16,
    pub hdr: [u8; VNET_HDR_LEN],
    pub pkt: Pkt,
}

/// Why io_uring cannot serve a port (the port then uses readv/writev).
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `io_uring_setup` failed: no io_uring in the kernel (`ENOSYS`), disabled by
    /// `kernel.io_uring_disabled` or a seccomp filter (`EPERM`), out of memory.
    #[error("io_uring_setup: {0}")]
    Setup(io::Error),
    /// The kernel's io_uring lacks an operation the port needs (before 5.6).
    #[error("io_uring has no {0} (kernel too old)")]
    Unsupported(&'static str),
    /// `io_uring_enter` failed for good; the ring is gone.
    #[error("io_uring_enter: {0}")]
    Enter(io::Error),
    /// The kernel refused `RWF_NOWAIT` on the device.
    #[error("{0} with RWF_NOWAIT: not supported on this device")]
    NoWait(&'static str),
}

/// The `iovec` pair of one operation. The pointers are only meaningful during the call that
/// set them (see [`Ring`]).
#[derive(Clone, Copy)]
struct IoVecs([libc::iovec; 3]);

// SAFETY: the pointers in an `IoVecs` are written and handed to the kernel within one call of
// [`Ring::read`]/[`Ring::write`] on the thread that holds the port, and never dereferenced by
// Rust code; between calls they are stale and unused. Moving the port to another thread moves
// nothing that is in use.
unsafe impl Send for IoVecs {}

const EMPTY_IOV: IoVecs = IoVecs([libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 3]);

/// A TAP port's io_uring (see the module documentation).
pub(super) struct Ring {
    ring: IoUring,
    /// The queues' descriptors, owned by the port (used only within its calls).
    fds: Vec<RawFd>,
    /// Per slot: the virtio-net header of a read.
    hdr: Box<[[u8; VNET_HDR_LEN]]>,
    iov: Box<[IoVecs]>,
    /// Per slot: the operation's result (bytes, or `-errno`).
    res: Box<[i32]>,
    /// `io_uring_enter` calls made since the ring was set up.
    pub enters: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("fds", &self.fds).field("enters", &self.enters).finish()
    }
}

impl Ring {
    /// Sets up a ring for the descriptors `fds` and checks that it has what the port needs.
    pub(super) fn new(fds: &[OwnedFd]) -> Result<Ring, RingError> {
        // SUBMIT_ALL (5.18) keeps submitting past an entry that fails early, so a batch is
        // always consumed whole; without it (older kernels) the loop in `run` resubmits.
        let ring = match IoUring::builder().setup_submit_all().build(ENTRIES as u32) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                IoUring::new(ENTRIES as u32).map_err(RingError::Setup)?
            }
            Err(e) => return Err(RingError::Setup(e)),
        };
        let mut probe = io_uring::Probe::new();
        if ring.submitter().register_probe(&mut probe).is_err() {
            return Err(RingError::Unsupported("IORING_REGISTER_PROBE"));
        }
        if !probe.is_supported(opcode::Readv::CODE) {
            return Err(RingError::Unsupported("IORING_OP_READV"));
        }
        if !probe.is_supported(opcode::Writev::CODE) {
            return Err(RingError::Unsupported("IORING_OP_WRITEV"));
        }
        Ok(Ring {
            ring,
            fds: fds.iter().map(AsRawFd::as_raw_fd).collect(),
            hdr: vec![[0u8; VNET_HDR_LEN]; ENTRIES].into_boxed_slice(),
            iov: vec![EMPTY_IOV; ENTRIES].into_boxed_slice(),
            res: vec![0i32; ENTRIES].into_boxed_slice(),
            enters: 0,
        })
    }

    /// The result of slot `i` of the last call: bytes moved, or `-errno`.
    #[inline]
    pub(super) fn result(&self, i: usize) -> i32 {
        self.res[i]
    }

    /// The virtio-net header that read `i` of the last [`Ring::read`] brought.
    #[inline]
    pub(super) fn hdr(&self, i: usize) -> &[u8; VNET_HDR_LEN] {
        &self.hdr[i]
    }

    /// Reads one packet per slot (at most [`ENTRIES`]): the header into the ring's slot `i`,
    /// the frame into the whole of `slots[i].pkt`. Returns once every read has completed;
    /// [`Ring::result`] and [`Ring::hdr`] then tell what each got. On an error the ring is
    /// unusable (the port drops it) but no read is left in flight either.
    pub(super) fn read(&mut self, pool: &mut Pool, slots: &[RxSlot]) -> Result<(), RingError> {
        let n = slots.len().min(ENTRIES);
        let mut pushed = 0;
        for (i, s) in slots[..n].iter().enumerate() {
            let buf = pool.data_mut(&s.pkt);
            let (ptr, room) = (buf.as_mut_ptr(), buf.len());
            let tail = match &s.tail {
                Some(t) => pool.data_mut(t).get_mut(room..).unwrap_or_default(),
                None => &mut [],
            };
            self.iov[i] = IoVecs([
                libc::iovec { iov_base: self.hdr[i].as_mut_ptr().cast(), iov_len: VNET_HDR_LEN },
                libc::iovec { iov_base: ptr.cast(), iov_len: room },
                libc::iovec { iov_base: tail.as_mut_ptr().cast(), iov_len: tail.len() },
            ]);
            let iovs = if tail.is_empty() { 2 } else { 3 };
            let fd = self.fds[usize::from(s.q)];
            let e = opcode::Readv::new(types::Fd(fd), self.iov[i].0.as_ptr(), iovs)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(i as u64);
            // SAFETY: the entry points at `self.iov[i]`, which points at `self.hdr[i]` (ring-
            // owned, boxed, not touched until `run` returns) and at `s.pkt`'s and `s.tail`'s
            // buffers in `pool`; `slots` (so the packet handles: nobody can free or reuse the
            // buffers) and `pool` (so its mapping) are borrowed for this whole call, and `run`
            // returns only when the kernel has completed every operation submitted (or, on an
            // error, has taken none of them). Distinct handles are distinct buffers, and Rust
            // code touches none of them until then: the pointers are the kernel's only.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                break; // cannot happen: n <= ENTRIES and the queue is empty between calls
            }
            pushed += 1;
        }
        self.run(pushed, n, "read")
    }

    /// Writes every slot's header and packet to its queue (at most [`ENTRIES`]). Returns once
    /// every write has completed; [`Ring::result`] tells what each did.
    pub(super) fn write(&mut self, pool: &Pool, slots: &[TxSlot]) -> Result<(), RingError> {
        let n = slots.len().min(ENTRIES);
        let mut pushed = 0;
        for (i, s) in slots[..n].iter().enumerate() {
            let data = pool.data(&s.pkt);
            self.iov[i] = IoVecs([
                libc::iovec {
                    iov_base: s.hdr.as_ptr() as *mut libc::c_void,
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() },
                EMPTY_IOV.0[0],
            ]);
            let fd = self.fds[usize::from(s.q)];
            let e = opcode::Writev::new(types::Fd(fd), self.iov[i].0.as_ptr(), 2)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(i as u64);
            // SAFETY: the entry points at `self.iov[i]`, which points at `s.hdr` and at
            // `s.pkt`'s data, both borrowed (with the pool) for this whole call; the kernel
            // only reads through them, and `run` returns only when it has completed every
            // operation submitted (or, on an error, taken none of them).
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                break;
            }
            pushed += 1;
        }
        self.run(pushed, n, "write")
    }

    /// Submits the `n` queued entries and reaps their `n` completions into `res` (slots `n`
    /// to `all`, never queued, read `-EAGAIN`). On an error every slot without a completion
    /// reads `-EIO`, and the ring must be dropped: an entry the kernel did not take must never
    /// be submitted later, with stale pointers.
    fn run(&mut self, n: usize, all: usize, what: &'static str) -> Result<(), RingError> {
        self.res[n..all].fill(-libc::EAGAIN);
        self.res[..n].fill(UNSEEN);
        let mut done = 0;
        let mut retries = 0;
        let mut failed = None;
        while done < n {
            self.enters += 1;
            match self.ring.submit_and_wait(n - done) {
                Ok(_) => {}
                // Interrupted while waiting, or short of kernel memory for now: again.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) && retries < MAX_RETRIES =>
                {
                    retries += 1;
                }
                Err(e) => {
                    failed = Some(e);
                }
            }
            // `io_uring_enter` fails only when it took no entry or when its wait failed; what
            // it took it issued inline (RWF_NOWAIT: no poll armed, no io-wq), so those
            // completions are posted by now.
            self.reap(n, &mut done);
            if failed.is_some() {
                break;
            }
        }
        if let Some(e) = failed {
            for r in &mut self.res[..n] {
                if *r == UNSEEN {
                    *r = -libc::EIO;
                }
            }
            return Err(RingError::Enter(e));
        }
        if self.res[..n].contains(&-libc::EOPNOTSUPP) {
            return Err(RingError::NoWait(what));
        }
        Ok(())
    }

    fn reap(&mut self, n: usize, done: &mut usize) {
        for c in self.ring.completion() {
            let i = c.user_data() as usize;
            if i < n && self.res[i] == UNSEEN {
                self.res[i] = c.result();
                *done += 1;
            }
        }
    }
}

/// A slot's result before its completion arrives (no errno is this large).
const UNSEEN: i32 = i32::MIN;
/// Transient `io_uring_enter` failures tolerated in one call before the ring is given up.
const MAX_RETRIES: u32 = 1000;
