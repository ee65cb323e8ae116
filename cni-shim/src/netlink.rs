//! The kernel side: the veth pair, the pod interface's addresses and routes, through rtnetlink.
//! Work inside the pod happens on a thread that has entered its network namespace with
//! `setns(2)`, with a netlink socket opened there (a socket belongs to the namespace it was
//! created in), so the plugin itself never leaves the switch's namespace.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};

use crate::error::{CniError, Result, IO_FAILURE, UNKNOWN_CONTAINER};
use crate::ipam::Route;

/// The host end's name for the attachment `container_id`/`ifname`: `vs` and 12 hex digits of
/// a SHA-256 of both, so DEL and GC find it again without any state (14 bytes, under IFNAMSIZ).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("vs{hex}")
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CniError {
    CniError::new(IO_FAILURE, format!("{what}: {e}"))
}

/// The errno of a netlink error reply, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Runs `f` with a netlink handle of the calling thread's namespace on a private runtime.
fn with_handle<T>(f: impl AsyncFnOnce(&Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io("cannot start the I/O runtime", e))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| io("cannot open a netlink socket", e))?;
        let task = tokio::spawn(conn);
        let out = f(&handle).await;
        task.abort();
        out
    })
}

/// Opens the network namespace at `path`, with a clear error when it does not exist.
pub fn open_netns(path: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        let code =
            if e.kind() == std::io::ErrorKind::NotFound { UNKNOWN_CONTAINER } else { IO_FAILURE };
        CniError::new(code, format!("cannot open network namespace {path}: {e}"))
    })
}

/// Runs `f` (netlink work) inside the network namespace `ns`, on a thread of its own.
fn in_netns<T: Send>(ns: &File, path: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                CniError::new(
                    UNKNOWN_CONTAINER,
                    format!(
                        "cannot enter network namespace {path}: {e} (not a network namespace?)"
                    ),
                )
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(CniError::new(IO_FAILURE, "netns worker thread panicked")))
    })
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(io(format!("cannot look up interface {name}"), e)),
    }
}

const fn libc_enodev() -> i32 {
    19 // ENODEV
}

fn link_mac(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// Creates the veth pair `host` <-> `ifname` with the pod end directly in `netns` and the host
/// end up, sets MTU and (if given) the pod end's MAC; returns the host end's MAC. Fails,
/// creating nothing, when `host` already exists. One netlink socket does it all: the pair is
/// created with its final settings instead of being changed afterwards.
pub fn create_veth(
    host: &str,
    ifname: &str,
    ns: &File,
    mtu: u16,
    mac: Option<[u8; 6]>,
) -> Result<Vec<u8>> {
    with_handle(async |h| {
        if link_by_name(h, host).await?.is_some() {
            return Err(CniError::new(
                IO_FAILURE,
                format!(
                    "host interface {host} already exists (a leftover attachment? run DEL first)"
                ),
            ));
        }
        let mut peer =
            LinkUnspec::new_with_name(ifname).mtu(mtu.into()).setns_by_fd(ns.as_raw_fd());
        if let Some(mac) = mac {
            peer = peer.address(mac.to_vec());
        }
        let msg = LinkVeth::new(host, ifname)
            .mtu(mtu.into())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        h.link().add(msg).execute().await.map_err(|e| {
            io(format!("cannot create veth pair {host} <-> {ifname} (in the pod)"), e)
        })?;
        let link = link_by_name(h, host)
            .await?
            .ok_or_else(|| io(format!("host interface {host}"), "vanished after creation"))?;
        Ok(link_mac(&link).unwrap_or_default())
    })
}

/// Deletes `host` if it exists (its veth peer goes with it): `Ok(true)` when it did.
pub fn delete_link(host: &str) -> Result<bool> {
    with_handle(async |h| {
        let Some(link) = link_by_name(h, host).await? else { return Ok(false) };
        match h.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(io(format!("cannot delete {host}"), e)),
        }
    })
}

/// Whether interface `name` exists in the current namespace.
pub fn link_exists(name: &str) -> Result<bool> {
    with_handle(async |h| Ok(link_by_name(h, name).await?.is_some()))
}

fn route_message(r: &Route, index: u32) -> Result<RouteMessage> {
    fn bad(e: impl std::fmt::Display) -> CniError {
        io("invalid route", e)
    }
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst, r.prefix)
        .map_err(bad)?
        .output_interface(index);
    if let Some(gw) = r.gw {
        b = b.gateway(gw).map_err(bad)?;
    }
    Ok(b.build())
}

/// Inside `netns`: brings `ifname` (and `lo`) up, adds `addrs`, then `routes`; returns the
/// interface's MAC.
/// What a TAP pod's interface still needs when the plugin configures it (a veth gets these at
/// creation).
#[derive(Debug, Clone, Copy)]
pub struct TapSetup {
    pub mtu: u16,
    pub mac: Option<[u8; 6]>,
}

pub fn configure_pod(
    ns: &File,
    path: &str,
    ifname: &str,
    addrs: &[(IpAddr, u8)],
    routes: &[Route],
    tap: Option<TapSetup>,
) -> Result<Vec<u8>> {
    in_netns(ns, path, || {
        with_handle(async |h| {
            let link = link_by_name(h, ifname)
                .await?
                .ok_or_else(|| io(format!("{ifname} in {path}"), "not found after creation"))?;
            let index = link.header.index;
            if let Some(t) = tap {
                let mut b = LinkUnspec::new_with_index(index).mtu(u32::from(t.mtu));
                if let Some(mac) = t.mac {
                    b = b.address(mac.to_vec());
                }
                h.link()
                    .set(b.build())
                    .execute()
                    .await
                    .map_err(|e| io(format!("cannot set the MTU or MAC of {ifname}"), e))?;
            }
            for (addr, prefix) in addrs {
                h.address()
                    .add(index, *addr, *prefix)
                    .execute()
                    .await
                    .map_err(|e| io(format!("cannot add {addr}/{prefix} to {ifname}"), e))?;
            }
            h.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| io(format!("cannot set {ifname} up"), e))?;
            if let Some(lo) = link_by_name(h, "lo").await? {
                let _ = h
                    .link()
                    .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                    .execute()
                    .await;
            }
            for r in routes {
                h.route().add(route_message(r, index)?).execute().await.map_err(|e| {
                    io(format!("cannot add route {} via {:?} on {ifname}", r.to_json(), r.gw), e)
                })?;
            }
            let mac = match tap.and_then(|t| t.mac) {
                Some(m) => m.to_vec(),
                None => link_mac(&link).unwrap_or_default(),
            };
            Ok(mac)
        })
    })
}

/// What CHECK sees of the pod interface.
#[derive(Debug, Clone, Default)]
pub struct PodState {
    /// Whether the interface exists.
    pub exists: bool,
    /// Its addresses.
    pub addrs: Vec<(IpAddr, u8)>,
    /// The main table's routes through it.
    pub routes: Vec<Route>,
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Reads `ifname`'s addresses and routes inside `netns`.
pub fn pod_state(ns: &File, path: &str, ifname: &str) -> Result<PodState> {
    in_netns(ns, path, || {
        with_handle(async |h| {
            let Some(link) = link_by_name(h, ifname).await? else {
                return Ok(PodState::default());
            };
            let index = link.header.index;
            let mut state = PodState { exists: true, ..PodState::default() };
            let mut addrs = h.address().get().set_link_index_filter(index).execute();
            while let Some(a) =
                addrs.try_next().await.map_err(|e| io("cannot list addresses", e))?
            {
                if a.header.index != index {
                    continue;
                }
                for attr in &a.attributes {
                    if let AddressAttribute::Address(ip) = attr {
                        state.addrs.push((*ip, a.header.prefix_len));
                    }
                }
            }
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let query = RouteMessageBuilder::<IpAddr>::new().build();
                let mut query = query;
                query.header.address_family = family;
                let mut routes = h.route().get(query).execute();
                while let Some(r) =
                    routes.try_next().await.map_err(|e| io("cannot list routes", e))?
                {
                    let oif = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    if oif != Some(index) {
                        continue;
                    }
                    let dst = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(d) => route_addr(d),
                        _ => None,
                    });
                    let gw = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_addr(g),
                        _ => None,
                    });
                    let unspecified = if family == AddressFamily::Inet {
                        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    };
                    state.routes.push(Route {
                        dst: dst.unwrap_or(unspecified),
                        prefix: r.header.destination_prefix_length,
                        gw,
                    });
                }
            }
            Ok(state)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_and_short() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_ne!(a, host_ifname("0123456789abcdef", "eth1"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("vs") && a[2..].chars().all(|c| c.is_ascii_hexdigit()));
    }
}
