//! The XDP side: an XSKMAP, a hand-assembled redirect program, and a BPF link that attaches it
//! to one interface.
//!
//! [`XdpAttachment`] attaches one program shared by every interface of the namespace (see
//! `Redirector` for why and how it finds an interface's sockets); when that cannot be had it
//! falls back to a program of the interface's own, five instruction slots, assembled here (as
//! the shared one is) because the product may not need a BPF compiler at build time:
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

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

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

/// XSKMAP slots of a namespace's shared program: room for every port of a switch (1 024) with
/// several queues each.
const SHARED_SLOTS: u32 = 8192;
/// Interfaces a namespace's shared program can serve at once.
const SHARED_IFACES: u32 = 4096;

/// The one redirect program of a network namespace, shared by every [`XdpAttachment`] the
/// process makes there.
///
/// Why one program and not one per interface: the kernel's XDP dispatcher keeps a trampoline
/// with up to 48 distinct attached programs, and adding a program to it or removing one costs
/// an RCU grace period (`synchronize_rcu`, 5-30 ms measured on veth). With a program per pod
/// the first 48 attachments and their detachments paid it (the detachment on the worker
/// thread); attaching the same program again only counts a user.
///
/// The program looks up the ingress interface in a hash map to find its range of XSKMAP slots
/// (one per rx queue) and redirects into `first slot + rx queue`:
///
/// ```text
///   r6 = r1                               ; ctx
///   r2 = *(u32 *)(r6 + 12)                ; ctx->ingress_ifindex
///   *(u32 *)(r10 - 4) = r2
///   r2 = r10 ; r2 += -4                   ; key = &ifindex
///   r1 = ifaces ll ; call map_lookup_elem ; r0 = &{first slot, queues} or NULL
///   if r0 == 0 goto pass                  ; not ours
///   r2 = *(u32 *)(r0 + 0)                 ; first slot
///   r3 = *(u32 *)(r0 + 4)                 ; queues
///   r4 = *(u32 *)(r6 + 16)                ; ctx->rx_queue_index
///   if r4 >= r3 goto pass                 ; a queue without a socket slot
///   r2 += r4
///   r1 = xsks ll ; r3 = XDP_PASS ; call bpf_redirect_map ; exit
/// pass:
///   r0 = XDP_PASS ; exit
/// ```
///
/// Interface indexes are per namespace, so there is one per namespace (told apart by the
/// namespace cookie, which the kernel never reuses).
struct Redirector {
    cookie: u64,
    prog: XdpProgram,
    ifaces: OwnedFd,
    xsks: XskMap,
    state: Mutex<Slots>,
}

/// Which XSKMAP slots are taken, and by which interface each hash map entry was written.
struct Slots {
    used: Vec<bool>,
    owner: HashMap<u32, u32>,
}

/// The live redirectors, one per namespace; an entry goes with its last attachment.
static REDIRECTORS: Mutex<Vec<Weak<Redirector>>> = Mutex::new(Vec::new());

impl Redirector {
    /// The calling thread's namespace's redirector, made on first use.
    fn for_this_netns() -> Result<Arc<Redirector>, AfXdpError> {
        let cookie = sys::netns_cookie().map_err(|source| AfXdpError::Bpf {
            op: "read the network namespace cookie",
            ifname: String::new(),
            source,
        })?;
        let mut all = REDIRECTORS.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|w| w.strong_count() > 0);
        if let Some(r) = all.iter().filter_map(Weak::upgrade).find(|r| r.cookie == cookie) {
            return Ok(r);
        }
        let bpf_err = |op| move |source| AfXdpError::Bpf { op, ifname: String::new(), source };
        let xsks = XskMap::new(SHARED_SLOTS)?;
        let ifaces = sys::hash_u32_u64_create("vsw_ifaces", SHARED_IFACES)
            .map_err(bpf_err("create the interface map"))?;
        let [i0, i1] = BpfInsn::ld_map_fd(1, ifaces.as_raw_fd());
        let [x0, x1] = BpfInsn::ld_map_fd(1, xsks.fd.as_raw_fd());
        let insns = [
            BpfInsn::mov64_reg(6, 1),
            BpfInsn::ldx_w(2, 6, 12),
            BpfInsn::stx_w(10, 2, -4),
            BpfInsn::mov64_reg(2, 10),
            BpfInsn::add64_imm(2, -4),
            i0,
            i1,
            BpfInsn::call(sys::BPF_FUNC_MAP_LOOKUP_ELEM),
            BpfInsn::jeq_imm(0, 0, 10),
            BpfInsn::ldx_w(2, 0, 0),
            BpfInsn::ldx_w(3, 0, 4),
            BpfInsn::ldx_w(4, 6, 16),
            BpfInsn::jge_reg(4, 3, 6),
            BpfInsn::add64_reg(2, 4),
            x0,
            x1,
            BpfInsn::mov64_imm(3, sys::XDP_PASS),
            BpfInsn::call(sys::BPF_FUNC_REDIRECT_MAP),
            BpfInsn::exit(),
            BpfInsn::mov64_imm(0, sys::XDP_PASS),
            BpfInsn::exit(),
        ];
        let prog = XdpProgram::load(&insns, "vsw_xsk_shared")?;
        let state =
            Mutex::new(Slots { used: vec![false; SHARED_SLOTS as usize], owner: HashMap::new() });
        let r = Arc::new(Redirector { cookie, prog, ifaces, xsks, state });
        all.push(Arc::downgrade(&r));
        Ok(r)
    }

    /// Reserves `queues` consecutive slots for `ifindex` and points the interface map at
    /// them; `None` when the map or the slots are full.
    fn claim(&self, ifindex: u32, queues: u32) -> Option<Result<u32, AfXdpError>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.owner.len() >= SHARED_IFACES as usize && !st.owner.contains_key(&ifindex) {
            return None;
        }
        let n = queues as usize;
        let first = st.used.windows(n).position(|w| w.iter().all(|u| !u))?;
        let value = u64::from(first as u32) | (u64::from(queues) << 32);
        if let Err(source) = sys::map_update_u32_u64(self.ifaces.as_fd(), ifindex, value) {
            return Some(Err(AfXdpError::Bpf {
                op: "add the interface to the interface map",
                ifname: String::new(),
                source,
            }));
        }
        st.used[first..first + n].fill(true);
        st.owner.insert(ifindex, first as u32);
        Some(Ok(first as u32))
    }

    /// Gives back what [`Redirector::claim`] took: the slots (emptied) and the interface map
    /// entry, unless another attachment of the same index has written it since.
    fn release(&self, ifindex: u32, first: u32, queues: u32) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.owner.get(&ifindex) == Some(&first) {
            st.owner.remove(&ifindex);
            let _ = sys::map_delete_u32(self.ifaces.as_fd(), ifindex);
        }
        for slot in first..first + queues {
            // Empty already when the socket was closed first (ENOENT): fine.
            let _ = self.xsks.remove(slot);
            st.used[slot as usize] = false;
        }
    }
}

/// Where an attachment's queues are steered: slots of the namespace's shared program, or (when
/// that cannot be had) a program and XSKMAP of its own.
enum Steering {
    Shared { redirector: Arc<Redirector>, ifindex: u32, first: u32, queues: u32 },
    Own { prog: XdpProgram, map: XskMap },
}

impl Steering {
    fn prog(&self) -> &XdpProgram {
        match self {
            Steering::Shared { redirector, .. } => &redirector.prog,
            Steering::Own { prog, .. } => prog,
        }
    }

    fn slot(&self, queue: u32) -> Option<(&XskMap, u32)> {
        match self {
            Steering::Shared { redirector, first, queues, .. } => {
                (queue < *queues).then_some((&redirector.xsks, first + queue))
            }
            Steering::Own { map, .. } => (queue < map.max_entries()).then_some((map, queue)),
        }
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        if let Steering::Shared { redirector, ifindex, first, queues } = self {
            redirector.release(*ifindex, *first, *queues);
        }
    }
}

/// Everything one interface needs to steer its queues into AF_XDP sockets: the redirect
/// program attached through a BPF link and a slot per rx queue in its XSKMAP. Dropping it
/// detaches the program and frees the slots.
pub struct XdpAttachment {
    // Field order is drop order: detach first, then free the slots (or program and map).
    link: XdpLink,
    steering: Steering,
    ifname: String,
}

impl XdpAttachment {
    /// Resolves `ifname` in the calling thread's network namespace and attaches the
    /// namespace's shared redirect program with a slot per rx queue.
    pub fn attach(ifname: &str, pref: XdpModePreference) -> Result<XdpAttachment, AfXdpError> {
        let cname = CString::new(ifname).map_err(|_| AfXdpError::BadIfName(ifname.to_string()))?;
        let ifindex = sys::ifindex(&cname)
            .ok_or_else(|| AfXdpError::NoSuchInterface { ifname: ifname.to_string() })?;
        let queues = sys::rx_queue_count(&cname).unwrap_or(1).max(1);
        XdpAttachment::attach_index(ifname, ifindex, queues, pref)
    }

    /// As [`XdpAttachment::attach`] with the index and queue count given. Falls back to a
    /// program of the interface's own when the namespace's shared one is full or cannot be
    /// made (a kernel without `SO_NETNS_COOKIE`).
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
        let shared = match Redirector::for_this_netns() {
            Ok(r) => r.claim(ifindex, queues).map(|c| c.map(|first| (r, first))),
            Err(_) => None,
        };
        let steering = match shared {
            Some(claimed) => {
                let (redirector, first) = claimed.map_err(with_if)?;
                Steering::Shared { redirector, ifindex, first, queues }
            }
            None => {
                let map = XskMap::new(queues).map_err(with_if)?;
                Steering::Own { prog: XdpProgram::redirect_to(&map)?, map }
            }
        };
        let link = XdpLink::attach(steering.prog(), ifname, ifindex, pref)?;
        Ok(XdpAttachment { link, steering, ifname: ifname.to_string() })
    }

    /// Routes rx queue `queue` to `sock`.
    pub fn insert(&self, queue: u32, sock: BorrowedFd<'_>) -> Result<(), AfXdpError> {
        let (map, slot) = self.slot(queue)?;
        map.insert(slot, sock).map_err(|e| self.name_err(e, queue))
    }

    /// Stops routing rx queue `queue` (traffic goes to the kernel stack again).
    pub fn remove(&self, queue: u32) -> Result<(), AfXdpError> {
        let (map, slot) = self.slot(queue)?;
        map.remove(slot).map_err(|e| self.name_err(e, queue))
    }

    fn slot(&self, queue: u32) -> Result<(&XskMap, u32), AfXdpError> {
        self.steering.slot(queue).ok_or_else(|| AfXdpError::Bpf {
            op: "find the XSKMAP slot",
            ifname: format!("{} queue {queue}", self.ifname),
            source: std::io::Error::from_raw_os_error(libc::E2BIG),
        })
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

    /// Whether the namespace's shared program steers this interface (false: its own).
    pub fn is_shared(&self) -> bool {
        matches!(self.steering, Steering::Shared { .. })
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}
