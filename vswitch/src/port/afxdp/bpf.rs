//! The XDP side: an XSKMAP, a hand-assembled redirect program, and a BPF link that attaches it
//! to one interface.
//!
//! The program is five instruction slots, assembled here because the product may not need a
//! BPF compiler at build time:
//!
//! ```text
//!   r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index (struct xdp_md)
//!   r1 = map_fd ll              ; BPF_LD_IMM64, src_reg = BPF_PSEUDO_MAP_FD
//!   r3 = XDP_PASS               ; flags: low bits = action when the map slot is empty
//!   call bpf_redirect_map       ; helper 51
//!   exit                        ; r0 = XDP_REDIRECT, or XDP_PASS when no socket on the queue
//! ```
//!
//! `bpf_redirect_map` is not a GPL-only helper (tested: the program loads with `"MIT"` or even
//! `"Proprietary"`). It is loaded with `"Dual MIT/GPL"`, which the kernel counts as
//! GPL-compatible, so GPL-only helpers (e.g. `bpf_trace_printk` while debugging) can be added
//! without a surprise; the string licenses these few instructions only, and MIT matches the
//! project's MIT OR Apache-2.0.
//!
//! Attachment uses `BPF_LINK_CREATE`: the kernel detaches the program when the last fd of the
//! link is closed, so a crashed or killed daemon leaves its interfaces as it found them. The
//! link fd is created close-on-exec, so child processes do not keep it alive.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::sys::{self, BpfInsn};
use super::AfXdpError;

/// License string of the redirect program (GPL-compatible for the verifier).
pub const PROG_LICENSE: &std::ffi::CStr = c"Dual MIT/GPL";

/// How an XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode: the program runs in the driver's NAPI poll (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic mode: the program runs on the skb path (`XDP_FLAGS_SKB_MODE`); works on any
    /// device, slower.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// Which attach modes to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpModePreference {
    /// Native first, generic if the driver refuses.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// An XSKMAP: queue id -> AF_XDP socket.
pub struct XskMap {
    fd: OwnedFd,
    max_entries: u32,
}

impl XskMap {
    /// Creates an XSKMAP with `max_entries` slots (one per rx queue).
    pub fn new(max_entries: u32) -> Result<XskMap, AfXdpError> {
        let fd = sys::xskmap_create("vsw_xsks", max_entries).map_err(|source| AfXdpError::Bpf {
            op: "create XSKMAP",
            ifname: String::new(),
            source,
        })?;
        Ok(XskMap { fd, max_entries })
    }

    /// Number of slots.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Points slot `queue` at the AF_XDP socket `sock` (which must already be bound, with an rx
    /// ring, to that queue of the device the program runs on).
    pub fn insert(&self, queue: u32, sock: BorrowedFd<'_>) -> Result<(), AfXdpError> {
        sys::map_update_u32(self.fd.as_fd(), queue, sock.as_raw_fd() as u32).map_err(|source| {
            AfXdpError::Bpf {
                op: "insert socket into XSKMAP",
                ifname: format!("queue {queue}"),
                source,
            }
        })
    }

    /// Empties slot `queue`; traffic on that queue then falls back to `XDP_PASS`.
    pub fn remove(&self, queue: u32) -> Result<(), AfXdpError> {
        sys::map_delete_u32(self.fd.as_fd(), queue).map_err(|source| AfXdpError::Bpf {
            op: "remove socket from XSKMAP",
            ifname: format!("queue {queue}"),
            source,
        })
    }
}

impl AsFd for XskMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A loaded XDP program.
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    /// Loads the redirect-to-XSKMAP program for `map` (see the module doc).
    pub fn redirect_to(map: &XskMap) -> Result<XdpProgram, AfXdpError> {
        let [ld0, ld1] = BpfInsn::ld_map_fd(1, map.fd.as_raw_fd());
        let insns = [
            BpfInsn::ldx_w(2, 1, 16),
            ld0,
            ld1,
            BpfInsn::mov64_imm(3, sys::XDP_PASS),
            BpfInsn::call(sys::BPF_FUNC_REDIRECT_MAP),
            BpfInsn::exit(),
        ];
        XdpProgram::load(&insns, "vsw_xsk_redir")
    }

    /// Loads a program that returns `XDP_PASS` for every frame.
    pub fn pass() -> Result<XdpProgram, AfXdpError> {
        XdpProgram::load(&[BpfInsn::mov64_imm(0, sys::XDP_PASS), BpfInsn::exit()], "vsw_pass")
    }

    /// Loads a program that `bpf_redirect`s every frame to `ifindex` (`ndo_xdp_xmit`); used
    /// to probe device redirect behaviour.
    pub fn redirect_ifindex(ifindex: u32) -> Result<XdpProgram, AfXdpError> {
        XdpProgram::load(
            &[
                BpfInsn::mov64_imm(1, ifindex as i32),
                BpfInsn::mov64_imm(2, 0),
                BpfInsn::call(sys::BPF_FUNC_REDIRECT),
                BpfInsn::exit(),
            ],
            "vsw_redir_dev",
        )
    }

    /// Loads raw instructions as an XDP program. On failure the load is repeated with a
    /// verifier log, which goes into the error.
    pub fn load(insns: &[BpfInsn], name: &str) -> Result<XdpProgram, AfXdpError> {
        match sys::xdp_prog_load(insns, PROG_LICENSE, name, None) {
            Ok(fd) => Ok(XdpProgram { fd }),
            Err(source) => {
                let mut buf = vec![0u8; 64 * 1024];
                let log = match sys::xdp_prog_load(insns, PROG_LICENSE, name, Some(&mut buf)) {
                    Ok(fd) => return Ok(XdpProgram { fd }),
                    Err(_) => {
                        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                        String::from_utf8_lossy(&buf[..end]).trim_end().to_string()
                    }
                };
                Err(AfXdpError::ProgLoad { name: name.to_string(), source, log })
            }
        }
    }
}

impl AsFd for XdpProgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An XDP program attached to an interface through a BPF link; detached when dropped (or when
/// the process dies).
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex` (`ifname` is only used in error messages), trying the
    /// modes `pref` allows, native first.
    pub fn attach(
        prog: &XdpProgram,
        ifname: &str,
        ifindex: u32,
        pref: XdpModePreference,
    ) -> Result<XdpLink, AfXdpError> {
        let modes: &[XdpMode] = match pref {
            XdpModePreference::Auto => &[XdpMode::Native, XdpMode::Generic],
            XdpModePreference::Native => &[XdpMode::Native],
            XdpModePreference::Generic => &[XdpMode::Generic],
        };
        let mut last = None;
        for &mode in modes {
            match sys::xdp_link_create(prog.fd.as_fd(), ifindex, mode.flags()) {
                Ok(fd) => return Ok(XdpLink { fd, ifindex, mode }),
                Err(source) => last = Some((mode, source)),
            }
        }
        let (mode, source) = last.expect("at least one mode tried");
        Err(AfXdpError::Attach { ifname: ifname.to_string(), mode, source })
    }

    /// The mode that was attached.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface index the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

impl AsFd for XdpLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Everything one interface needs to steer its queues into AF_XDP sockets: an XSKMAP with a
/// slot per rx queue, the redirect program, and the link that attaches it. Dropping it detaches
/// the program.
pub struct XdpAttachment {
    // Field order is drop order: detach first, then free program and map.
    link: XdpLink,
    _prog: XdpProgram,
    map: XskMap,
    ifname: String,
}

impl XdpAttachment {
    /// Resolves `ifname` in the calling thread's network namespace, creates an XSKMAP sized to
    /// its rx queue count, loads the redirect program and attaches it.
    pub fn attach(ifname: &str, pref: XdpModePreference) -> Result<XdpAttachment, AfXdpError> {
        let cname = CString::new(ifname).map_err(|_| AfXdpError::BadIfName(ifname.to_string()))?;
        let ifindex = sys::ifindex(&cname)
            .ok_or_else(|| AfXdpError::NoSuchInterface { ifname: ifname.to_string() })?;
        let queues = sys::rx_queue_count(&cname).unwrap_or(1).max(1);
        XdpAttachment::attach_index(ifname, ifindex, queues, pref)
    }

    /// As [`XdpAttachment::attach`] with the index and queue count given.
    pub fn attach_index(
        ifname: &str,
        ifindex: u32,
        queues: u32,
        pref: XdpModePreference,
    ) -> Result<XdpAttachment, AfXdpError> {
        let with_if = |e: AfXdpError| match e {
            AfXdpError::Bpf { op, source, .. } => {
                AfXdpError::Bpf { op, ifname: ifname.to_string(), source }
            }
            other => other,
        };
        let map = XskMap::new(queues).map_err(with_if)?;
        let prog = XdpProgram::redirect_to(&map)?;
        let link = XdpLink::attach(&prog, ifname, ifindex, pref)?;
        Ok(XdpAttachment { link, _prog: prog, map, ifname: ifname.to_string() })
    }

    /// Routes rx queue `queue` to `sock`.
    pub fn insert(&self, queue: u32, sock: BorrowedFd<'_>) -> Result<(), AfXdpError> {
        self.map.insert(queue, sock).map_err(|e| self.name_err(e, queue))
    }

    /// Stops routing rx queue `queue` (traffic goes to the kernel stack again).
    pub fn remove(&self, queue: u32) -> Result<(), AfXdpError> {
        self.map.remove(queue).map_err(|e| self.name_err(e, queue))
    }

    fn name_err(&self, e: AfXdpError, queue: u32) -> AfXdpError {
        match e {
            AfXdpError::Bpf { op, source, .. } => {
                AfXdpError::Bpf { op, ifname: format!("{} queue {queue}", self.ifname), source }
            }
            other => other,
        }
    }

    /// The attach mode in effect.
    pub fn mode(&self) -> XdpMode {
        self.link.mode()
    }

    /// The map, for callers that manage slots themselves.
    pub fn map(&self) -> &XskMap {
        &self.map
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}
