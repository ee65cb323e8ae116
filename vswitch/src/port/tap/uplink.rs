//! The node's uplink as a TAP device wired to the underlay interface.
//!
//! # Why
//! A packet socket (AF_PACKET with `PACKET_VNET_HDR`) carries plain TCP segmentation offload,
//! but its virtio-net header has no way to say "VXLAN around a 64 KB TCP segment", so VXLAN
//! traffic had to be cut to the tunnel's MTU in the switch and crossed the kernel one frame at
//! a time. A TAP device speaks the extended header of Linux 6.17 (`TUN_F_UDP_TUNNEL_GSO`, the
//! `virtio_net_hdr_v1_hash_tunnel` layout): the switch writes one VXLAN packet around a 64 KB
//! inner segment and the kernel cuts it (outer headers and all), or hands it on whole to a
//! device that can; received VXLAN traffic comes up whole the same way. Plain GSO (direct
//! routing) crosses whole too.
//!
//! # Wiring
//! ```text
//!   switch  <-fd->  vsw TAP  --tc ingress: redirect-->  underlay NIC  -->  wire
//!                           <--tc ingress: redirect--
//! ```
//! Two `u32` filters that match everything (`tc filter ... u32 match u8 0 0 action mirred
//! egress redirect`), one on each device's ingress qdisc, made over rtnetlink: whatever the NIC
//! receives is handed to the TAP's transmit side (the switch reads it), whatever the switch
//! writes to the TAP leaves through the NIC. Nothing is bridged or routed by the kernel, the
//! NIC needs no address, and the kernel's own stack on the NIC sees nothing (as with the AF_XDP
//! and AF_PACKET uplinks, the switch owns the node's underlay address). Redirect keeps a GSO
//! packet whole. The TAP's filter goes with the device; the NIC's ingress qdisc is removed when
//! the port goes ([`TcWire`]'s `Drop`). One the switch left behind after a crash is replaced
//! when it starts again.

use std::os::fd::RawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::tc::TcHandle;

use super::TapPort;
use crate::packet::{Batch, Pool};
use crate::port::{Offloads, Port, RxDrops, TxReport};
use crate::types::PortId;

/// ETH_P_ALL: the filters match every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// The two redirects between a TAP and the NIC it stands for; the NIC's goes when this drops.
#[derive(Debug)]
pub struct TcWire {
    nic: String,
    nic_index: u32,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("netlink runtime: {e}"))
}

/// The ingress qdisc (`ffff:`) of device `index`: the parent its filters hang from.
fn ingress_qdisc(handle: &rtnetlink::Handle, index: u32) -> rtnetlink::QDiscNewRequest {
    handle.qdisc().replace(index as i32).ingress()
}

async fn del_ingress(handle: &rtnetlink::Handle, index: u32) -> Result<(), rtnetlink::Error> {
    let mut del = handle.qdisc().del(index as i32);
    del.message_mut().header.parent = TcHandle::INGRESS;
    del.message_mut().header.handle = TcHandle::from(0xffff_0000);
    del.execute().await
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> Result<u32, String> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(format!("{name:?} does not exist")),
        Err(e) => Err(format!("{name:?}: {e}")),
    }
}

impl TcWire {
    /// Wires TAP `tap` to NIC `nic` (both in the calling thread's namespace), bringing both up.
    /// A failure leaves neither filter behind.
    pub fn connect(tap: &str, nic: &str) -> Result<TcWire, String> {
        let rt = runtime()?;
        rt.block_on(async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
            tokio::spawn(conn);
            let tap_index = index_of(&handle, tap).await?;
            let nic_index = index_of(&handle, nic).await?;
            for (name, index) in [(tap, tap_index), (nic, nic_index)] {
                handle
                    .link()
                    .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(|e| format!("{name}: setting it up: {e}"))?;
            }
            // A redirect left by a switch that crashed points at a TAP that is gone: start
            // from an empty ingress qdisc (there is none on a NIC the switch has not had).
            let _ = del_ingress(&handle, nic_index).await;
            let wire = TcWire { nic: nic.to_string(), nic_index };
            for (from, from_index, to_index) in
                [(tap, tap_index, nic_index), (nic, nic_index, tap_index)]
            {
                ingress_qdisc(&handle, from_index)
                    .execute()
                    .await
                    .map_err(|e| format!("{from}: ingress qdisc: {e}"))?;
                handle
                    .traffic_filter(from_index as i32)
                    .add()
                    .parent(0xffff_0000) // the ingress qdisc's handle, ffff:
                    .protocol(ETH_P_ALL.to_be()) // network byte order, as tc(8) sends it
                    .redirect(to_index)
                    .map_err(|e| format!("{from}: redirect filter: {e}"))?
                    .execute()
                    .await
                    .map_err(|e| format!("{from}: redirect filter: {e}"))?;
            }
            Ok(wire)
        })
    }
}

impl Drop for TcWire {
    fn drop(&mut self) {
        let r = runtime().and_then(|rt| {
            rt.block_on(async {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
                tokio::spawn(conn);
                del_ingress(&handle, self.nic_index).await.map_err(|e| e.to_string())
            })
        });
        if let Err(e) = r {
            tracing::warn!(nic = %self.nic, "removing the uplink's ingress redirect: {e}");
        }
    }
}

/// A TAP port wired to an underlay NIC: the TAP's I/O, and the wiring for as long as the port
/// lives.
pub struct UplinkTap {
    tap: TapPort,
    // Dropped after `tap`: the NIC keeps redirecting to a live device until the end.
    _wire: TcWire,
    kind: String,
}

impl UplinkTap {
    /// Wraps `tap` (already created in this namespace) and wires it to `nic`.
    pub fn wire(tap: TapPort, nic: &str) -> Result<UplinkTap, String> {
        let wire = TcWire::connect(&tap.name, nic)?;
        let kind = format!("{} uplink of {nic}", <TapPort as Port<1>>::kind(&tap));
        Ok(UplinkTap { tap, _wire: wire, kind })
    }
}

impl<const N: usize> Port<N> for UplinkTap {
    fn name(&self) -> &str {
        Port::<N>::name(&self.tap)
    }

    fn kind(&self) -> String {
        self.kind.clone()
    }

    fn rx(&mut self, id: PortId, pool: &mut Pool, batch: &mut Batch<N>) -> usize {
        self.tap.rx(id, pool, batch)
    }

    fn tx(&mut self, pool: &mut Pool, batch: &mut Batch<N>) -> TxReport {
        self.tap.tx(pool, batch)
    }

    fn housekeep(&mut self, pool: &mut Pool) {
        Port::<N>::housekeep(&mut self.tap, pool)
    }

    fn drain(&mut self, pool: &mut Pool) {
        Port::<N>::drain(&mut self.tap, pool)
    }

    fn offloads(&self) -> Offloads {
        Port::<N>::offloads(&self.tap)
    }

    fn rx_drops(&mut self) -> RxDrops {
        Port::<N>::rx_drops(&mut self.tap)
    }

    fn poll_fds(&self, out: &mut Vec<RawFd>) {
        Port::<N>::poll_fds(&self.tap, out)
    }

    fn rx_on_readiness(&self) -> bool {
        Port::<N>::rx_on_readiness(&self.tap)
    }
}
