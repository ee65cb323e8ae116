//! Raw TUN/TAP interface: the `/dev/net/tun` ioctls and the vectored read and write of one
//! packet behind its virtio-net header, as thin wrappers that turn `-1`/`errno` into
//! [`io::Error`].
//!
//! Every `unsafe` of the TAP port lives here. The ioctl numbers and flags come from `libc`
//! (`linux/if_tun.h`); the `ifreq` layout used by `TUNSETIFF` is spelled out because only its
//! name and flags matter.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_short, c_ulong, c_void};

/// `struct ifreq` as `TUNSETIFF` reads and writes it: the name, then `ifr_flags` at the start
/// of the 24-byte union (40 bytes in all on LP64, 32 on ILP32: the union's size is that of
/// `struct ifmap`, padded here to the larger of the two).
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: c_short,
    _pad: [u8; 22],
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) in the calling thread's network
/// namespace. The namespace a device is created in is that of the thread issuing
/// `TUNSETIFF`, so callers run this and [`set_iff`] on a thread inside the pod's namespace.
pub(super) fn open_tun() -> io::Result<OwnedFd> {
    const PATH: &[u8] = b"/dev/net/tun\0";
    // SAFETY: `PATH` is a NUL-terminated string with static lifetime; open takes no other
    // pointers.
    let fd = unsafe {
        libc::open(PATH.as_ptr().cast(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)
    };
    let fd = cvt(fd)?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `TUNSETIFF`: creates (or, for a multi-queue device, attaches a queue to) the interface
/// `name` with `flags` (`IFF_TAP | IFF_NO_PI | ...`). `name` must be shorter than
/// `IFNAMSIZ` and free of NUL bytes (checked by the caller). Returns the name the kernel
/// settled on (the same unless `name` held a `%d` pattern).
pub(super) fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: c_int) -> io::Result<String> {
    debug_assert!(name.len() < libc::IFNAMSIZ);
    let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags: flags as c_short, _pad: [0; 22] };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its layout for the name
    // and flags, is at least as large as the kernel's copy (40 bytes on LP64), and lives on
    // this stack frame for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) })?;
    let len = req.name.iter().position(|&c| c == 0).unwrap_or(libc::IFNAMSIZ);
    Ok(req.name[..len].iter().map(|&c| c as u8 as char).collect())
}

/// An ioctl whose argument is a pointer to an `int` the kernel reads.
fn ioctl_int_ptr(fd: BorrowedFd<'_>, req: libc::Ioctl, val: c_int) -> io::Result<()> {
    let v = val;
    // SAFETY: the request (TUNSETVNETHDRSZ, TUNSETVNETLE) reads one `int` through the pointer,
    // which points at `v` on this stack frame for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const c_int) }).map(|_| ())
}

/// `TUNSETVNETHDRSZ`: the length of the virtio-net header in front of every packet.
pub(super) fn set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: c_int) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETVNETHDRSZ, size)
}

/// `TUNSETVNETLE`: the header's fields are little-endian (virtio 1.0) whatever the host's
/// byte order. A no-op on little-endian hosts, where that is already the legacy default.
pub(super) fn set_vnet_le(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETVNETLE, 1)
}

/// `TUNSETPERSIST`: whether the device outlives its last descriptor (a pod keeps its
/// interface, addresses and routes while vswitchd restarts).
pub(super) fn set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (0 or 1); no memory is passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, c_ulong::from(on)) }).map(|_| ())
}

/// `TUNSETOFFLOAD`: what the device accepts from the kernel (`TUN_F_*`), i.e. what the pod's
/// stack may leave to us: partial checksums and GSO segments.
pub(super) fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of TUN_F_* bits);
    // no memory is passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as c_ulong) }).map(|_| ())
}

/// Reads one packet: the virtio-net header into `hdr`, the frame into `buf`. Returns the
/// length the kernel reports, header included. A frame that does not fit is cut: the kernel
/// copies what fits, consumes the packet and reports the copied length (6.x; older versions
/// reported the full one), so a read that fills `buf` exactly may have been cut.
pub(super) fn read_packet(fd: BorrowedFd<'_>, hdr: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: hdr.as_mut_ptr().cast::<c_void>(), iov_len: hdr.len() },
        libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: buf.len() },
    ];
    // SAFETY: both iovecs describe live, exclusively borrowed slices (`hdr`, `buf`) that the
    // kernel may write up to their lengths; `iov` outlives the call.
    cvt_size(unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) })
}

/// Writes one packet: the virtio-net header `hdr`, then the frame `data`. Returns the bytes
/// the kernel took (all of them: a tap never takes part of a packet).
pub(super) fn write_packet(fd: BorrowedFd<'_>, hdr: &[u8], data: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: hdr.as_ptr() as *mut c_void, iov_len: hdr.len() },
        libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() },
    ];
    // SAFETY: both iovecs describe live borrowed slices the kernel only reads (writev never
    // writes through them despite the `*mut` in `iovec`); `iov` outlives the call.
    cvt_size(unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) })
}

/// Waits up to `timeout_ms` for any of `fds` to become readable. Returns how many are.
#[cfg(test)]
pub(super) fn poll_readable(fds: &[std::os::fd::RawFd], timeout_ms: c_int) -> io::Result<usize> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a live array of `p.len()` pollfd structs the kernel reads and writes
    // during the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    cvt(r).map(|n| n as usize)
}

/// `UDP_SEGMENT`: the socket hands the kernel datagrams of up to 64 KB, to be cut into
/// `size`-byte datagrams (by the device if it takes UDP segmentation offload).
#[cfg(test)]
pub(super) fn set_udp_segment(fd: BorrowedFd<'_>, size: u16) -> io::Result<()> {
    let v = c_int::from(size);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&v`, which lives on this stack
    // frame for the whole call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&v as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}
