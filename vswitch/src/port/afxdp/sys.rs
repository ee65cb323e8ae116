//! Raw kernel interface: constants and structs the `libc` crate lacks (the `bpf(2)` attribute
//! unions, BPF instruction encoding, XDP attach flags, ethtool channel query) and thin syscall
//! wrappers that turn `-1`/`errno` into [`io::Error`].
//!
//! `libc` already provides the AF_XDP socket side (`AF_XDP`, `SOL_XDP`, `sockaddr_xdp`,
//! `xdp_umem_reg`, `xdp_mmap_offsets`, `xdp_desc`, `xdp_statistics`, the `XDP_*` option and
//! flag constants, the ring mmap offsets) and `SYS_bpf`; everything below fills the gaps.
//! Layouts follow `include/uapi/linux/bpf.h`, `if_xdp.h`, `if_link.h` and `ethtool.h`.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use libc::{c_int, c_void, socklen_t};

/// Space the kernel always reserves in front of received packet data (`XDP_PACKET_HEADROOM`),
/// on top of the UMEM's own `headroom`.
pub const XDP_PACKET_HEADROOM: u32 = 256;

// ---- bpf(2) commands, map/program/attach types (uapi/linux/bpf.h) ----
pub(super) const BPF_MAP_CREATE: c_int = 0;
pub(super) const BPF_MAP_UPDATE_ELEM: c_int = 2;
pub(super) const BPF_MAP_DELETE_ELEM: c_int = 3;
pub(super) const BPF_PROG_LOAD: c_int = 5;
pub(super) const BPF_LINK_CREATE: c_int = 28;

pub(super) const BPF_MAP_TYPE_HASH: u32 = 1;
pub(super) const BPF_MAP_TYPE_XSKMAP: u32 = 17;
pub(super) const BPF_PROG_TYPE_XDP: u32 = 6;
pub(super) const BPF_XDP: u32 = 37;
pub(super) const BPF_PSEUDO_MAP_FD: u8 = 1;
pub(super) const BPF_ANY: u64 = 0;

// ---- helper ids (uapi/linux/bpf.h, `___BPF_FUNC_MAPPER` order) ----
pub(super) const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
pub(super) const BPF_FUNC_REDIRECT: i32 = 23;
pub(super) const BPF_FUNC_REDIRECT_MAP: i32 = 51;

// ---- XDP actions and attach flags (uapi/linux/bpf.h, if_link.h) ----
pub(super) const XDP_PASS: i32 = 2;
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

// ---- BPF instruction encoding (uapi/linux/bpf_common.h, bpf.h) ----
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JGE: u8 = 0x30;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// `struct bpf_insn`: opcode, dst/src register nibbles, 16-bit offset, 32-bit immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble (little-endian bitfield).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        BpfInsn { code, regs: (dst & 0xf) | (src << 4), off, imm }
    }
    /// `dst = *(u32 *)(src + off)`
    pub const fn ldx_w(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }
    /// `*(u32 *)(dst + off) = src`
    pub const fn stx_w(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_STX | BPF_MEM | BPF_W, dst, src, off, 0)
    }
    /// `dst = imm` (64-bit move of a sign-extended 32-bit immediate)
    pub const fn mov64_imm(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    /// `dst = src` (64-bit)
    pub const fn mov64_reg(dst: u8, src: u8) -> BpfInsn {
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    /// `dst += imm` (64-bit)
    pub const fn add64_imm(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm)
    }
    /// `dst += src` (64-bit)
    pub const fn add64_reg(dst: u8, src: u8) -> BpfInsn {
        BpfInsn::new(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0)
    }
    /// `if dst == imm goto +off`
    pub const fn jeq_imm(dst: u8, imm: i32, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm)
    }
    /// `if dst >= src goto +off` (unsigned)
    pub const fn jge_reg(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_JGE | BPF_X, dst, src, off, 0)
    }
    /// `dst = map fd` as the two-slot `BPF_LD_IMM64` with `src_reg = BPF_PSEUDO_MAP_FD`; the
    /// verifier replaces the fd with the map pointer.
    pub const fn ld_map_fd(dst: u8, fd: i32) -> [BpfInsn; 2] {
        [
            BpfInsn::new(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            BpfInsn::new(0, 0, 0, 0, 0),
        ]
    }
    /// `call helper`
    pub const fn call(helper: i32) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_CALL, 0, 0, 0, helper)
    }
    /// `exit` (returns r0)
    pub const fn exit() -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

/// `union bpf_attr` for `BPF_MAP_CREATE` (leading fields only; the kernel accepts a shorter
/// attr and treats the missing tail as zero).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
}

/// `union bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (the XDP variant has no extra fields).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Calls `bpf(cmd, attr, sizeof attr)` and returns the non-negative result.
///
/// # Safety
/// `attr` must be the attribute struct for `cmd`, and every pointer stored in it (as a `u64`)
/// must be valid for the access the kernel makes during the call.
unsafe fn bpf<T>(cmd: c_int, attr: &mut T) -> io::Result<c_int> {
    // SAFETY: the caller guarantees that `attr` matches `cmd` and that its embedded pointers are
    // valid for the duration of the call; `attr` itself is a live, correctly sized struct.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut c_void, size_of::<T>() as u32)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as c_int)
    }
}

/// Wraps a file descriptor just returned by the kernel.
fn own_fd(fd: c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful syscall that creates a new descriptor, so
    // it is open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// `BPF_MAP_CREATE` of an XSKMAP (`key = u32 queue id`, `value = u32 socket fd`).
pub(super) fn xskmap_create(name: &str, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    // SAFETY: `attr` is the BPF_MAP_CREATE layout and holds no pointers.
    unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map(own_fd)
}

/// `BPF_MAP_CREATE` of a preallocated hash map from `u32` keys to `u64` values.
pub(super) fn hash_u32_u64_create(name: &str, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_HASH,
        key_size: 4,
        value_size: 8,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    // SAFETY: `attr` is the BPF_MAP_CREATE layout and holds no pointers.
    unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map(own_fd)
}

/// `BPF_MAP_UPDATE_ELEM` with a `u32` key and a `u64` value.
pub(super) fn map_update_u32_u64(map: BorrowedFd<'_>, key: u32, value: u64) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u64 as u64,
        flags: BPF_ANY,
        ..Default::default()
    };
    // SAFETY: `key` (4 bytes) and `value` (8 bytes) are live locals of the sizes the map was
    // created with and outlive the call; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`, Linux 5.14): a
/// 64-bit id the kernel never reuses, unlike the namespace's inode number.
pub(super) fn netns_cookie() -> io::Result<u64> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = own_fd(fd);
    const SO_NETNS_COOKIE: c_int = 71;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as socklen_t;
    // SAFETY: `cookie` has room for `len` (8) bytes and `len` is a valid in/out length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// `BPF_MAP_UPDATE_ELEM` with a `u32` key and `u32` value.
pub(super) fn map_update_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: BPF_ANY,
        ..Default::default()
    };
    // SAFETY: `key` and `value` are live locals of the sizes the map was created with (4 bytes)
    // and outlive the call; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_MAP_DELETE_ELEM` with a `u32` key.
pub(super) fn map_delete_u32(map: BorrowedFd<'_>, key: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: `key` is a live 4-byte local that outlives the call; the kernel only reads it.
    unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_PROG_LOAD` of an XDP program. With `log` set, the verifier log (level 1) is written
/// into it as a NUL-terminated string.
pub(super) fn xdp_prog_load(
    insns: &[BpfInsn],
    license: &CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name16(name),
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    // SAFETY: `insns` (insn_cnt entries), `license` (NUL-terminated) and the log buffer
    // (`log_size` writable bytes) are borrowed for the whole call.
    unsafe { bpf(BPF_PROG_LOAD, &mut attr) }.map(own_fd)
}

/// `BPF_LINK_CREATE` attaching an XDP program to `ifindex` with the given XDP mode flags.
pub(super) fn xdp_link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: `attr` is the BPF_LINK_CREATE layout and holds no pointers.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr) }.map(own_fd)
}

// ---- AF_XDP socket ----

/// `socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)`.
pub(super) fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(own_fd(fd))
}

/// `setsockopt(fd, SOL_XDP, opt, &val, sizeof val)` for a plain-data `val`.
pub(super) fn set_xdp_opt<T: Copy>(fd: BorrowedFd<'_>, opt: c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the duration of the call; the
    // kernel copies them and keeps no pointer.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            val as *const T as *const c_void,
            size_of::<T>() as socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt(fd, SOL_XDP, opt)` into a zero-initialised `T`; returns it with the length the
/// kernel wrote.
///
/// `T` must be a plain-data struct for which all-zero bytes is a valid value (all the `xdp_*`
/// option structs are integers only).
pub(super) fn get_xdp_opt<T: Copy>(fd: BorrowedFd<'_>, opt: c_int) -> io::Result<(T, usize)> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as socklen_t;
    // SAFETY: `val` has room for `len` bytes and `len` is a valid in/out length; the kernel
    // writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_XDP, opt, val.as_mut_ptr().cast(), &mut len)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `val` started all-zero, which is valid for the integer-only option structs this
    // is used with, and the kernel overwrote a prefix of it with another valid value.
    Ok((unsafe { val.assume_init() }, len as usize))
}

/// `bind(fd, sockaddr_xdp)`.
pub(super) fn xsk_bind(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    queue_id: u32,
    flags: u16,
    shared_umem_fd: Option<RawFd>,
) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue_id,
        sxdp_shared_umem_fd: shared_umem_fd.map_or(0, |f| f as u32),
    };
    // SAFETY: `sa` is a fully initialised sockaddr_xdp of the length passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
            size_of::<libc::sockaddr_xdp>() as socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`: tells the kernel to process the tx ring.
pub(super) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with null buffer and address is valid for AF_XDP; the kernel
    // dereferences neither.
    let r = unsafe {
        libc::sendto(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`: wakes the driver to refill from the fill
/// ring (zero-copy drivers with need_wakeup).
pub(super) fn wake_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length receive with null buffer and address is valid for AF_XDP; the kernel
    // writes to neither.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A `MAP_SHARED` mapping of one ring, unmapped on drop.
pub(super) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value; moving it to another thread moves the ownership.
unsafe impl Send for Mmap {}

impl Mmap {
    /// `mmap(NULL, len, RW, MAP_SHARED | MAP_POPULATE, fd, pgoff)`.
    pub(super) fn ring(fd: BorrowedFd<'_>, len: usize, pgoff: u64) -> io::Result<Mmap> {
        // SAFETY: no address hint, a length and offset the kernel validates; the result is
        // checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and the rings that pointed into
        // the mapping are dropped with it (they own this value).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `poll(2)` on `fds` for at most `timeout_ms` milliseconds (`-1`: forever). Returns the number
/// of descriptors with events; `EINTR` counts as zero.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a live, writable slice of `fds.len()` pollfd structs.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

// ---- interfaces ----

/// `if_nametoindex` in the calling thread's network namespace; `None` when there is no such
/// interface.
pub(super) fn ifindex(name: &CStr) -> Option<u32> {
    // SAFETY: `name` is NUL-terminated and borrowed for the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// `if_indextoname` in the calling thread's network namespace.
pub(super) fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, which is what if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IF_NAMESIZE],
    data: *mut c_void,
    _pad: [u8; 16],
}

/// Number of rx queues of `name` (`rx + combined` channels from `ETHTOOL_GCHANNELS`), or
/// `None` when the driver does not report channels.
pub(super) fn rx_queue_count(name: &CStr) -> Option<u32> {
    // SAFETY: socket(2) takes no pointers.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return None;
    }
    let sock = own_fd(s);
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    let mut ifr = IfreqData {
        name: [0; libc::IF_NAMESIZE],
        data: &mut ch as *mut EthtoolChannels as *mut c_void,
        _pad: [0; 16],
    };
    let bytes = name.to_bytes();
    if bytes.len() >= libc::IF_NAMESIZE {
        return None;
    }
    for (d, &b) in ifr.name.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq whose `ifr_data` points at `ch`, a live ethtool_channels
    // the kernel fills in; both outlive the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr as *mut IfreqData) };
    if r < 0 {
        return None;
    }
    let n = ch.rx_count + ch.combined_count;
    (n > 0).then_some(n)
}
