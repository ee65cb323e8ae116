//! Small interface operations the ports need from the kernel: interface indices, the transmit
//! checksum offload of a pod's interface (ethtool ioctl), and running a closure inside another
//! network namespace.
//!
//! Hand-written on libc because each is one or two syscalls; pulling a netlink or ethtool crate
//! in for them would add more code than it saves. All `unsafe` of this module is here, each
//! block with its reason.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    // SAFETY: a plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut val = EthtoolValue { cmd, data };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (&mut val as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads `req` (a NUL-terminated name and a pointer to `val`), and reads
    // or writes `val`; both live on this stack frame for the whole call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val.data)
}

/// Whether `ifname` offloads transmit checksums.
pub fn tx_checksum(ifname: &str) -> io::Result<bool> {
    ethtool(ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}

/// Turns `ifname`'s transmit checksum offload on or off. Off also turns off TSO, which needs
/// it, so the interface hands out whole frames with complete checksums.
pub fn set_tx_checksum(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, ETHTOOL_STXCSUM, u32::from(on)).map(|_| ())
}

/// Runs `f` on a thread that has joined the network namespace at `path` (e.g.
/// `/var/run/netns/pod1` or `/proc/PID/ns/net`), and returns its result.
pub fn in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let file = std::fs::File::open(path)?;
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we hold open; it only changes this (new) thread's
        // network namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_garbage_does_not() {
        assert!(ifindex("lo").unwrap() >= 1);
        assert!(ifindex("no-such-if0").is_err());
        assert!(ifindex("bad\0name").is_err());
    }

    #[test]
    fn ethtool_errors_name_the_problem() {
        assert!(tx_checksum("no-such-if0").is_err());
        assert!(set_tx_checksum("", false).is_err());
        assert!(in_netns("/nonexistent/netns", || ()).is_err());
    }
}
