//! Support code shared by the workspace's integration tests and benchmarks: frames built with
//! `pnet_packet`, an implementation independent of the switch's own `wire` module, so a test
//! never checks our parser against our own encoder.

use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket};
use pnet_packet::vlan::{ClassOfService, MutableVlanPacket};
use pnet_packet::MutablePacket;
use std::net::Ipv4Addr;

pub use vswitch;

/// A MAC address `02:00:00:00:hi:lo`, locally administered unicast.
pub fn mac(n: u16) -> [u8; 6] {
    let [hi, lo] = n.to_be_bytes();
    [0x02, 0, 0, 0, hi, lo]
}

fn pmac(m: [u8; 6]) -> pnet_base::MacAddr {
    pnet_base::MacAddr::new(m[0], m[1], m[2], m[3], m[4], m[5])
}

/// An Ethernet frame from `src` to `dst`, optionally 802.1Q-tagged with `vlan`, carrying an
/// IPv4/UDP datagram with `payload` bytes of payload (checksums filled in by pnet).
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, payload: usize) -> Vec<u8> {
    let ip_len = 20 + 8 + payload;
    let tag = if vlan.is_some() { 4 } else { 0 };
    let mut buf = vec![0u8; (14 + tag + ip_len).max(60)];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("ethernet buffer");
    eth.set_destination(pmac(dst));
    eth.set_source(pmac(src));
    let l3: &mut [u8] = if let Some(v) = vlan {
        eth.set_ethertype(EtherTypes::Vlan);
        let mut t = MutableVlanPacket::new(eth.payload_mut()).expect("vlan buffer");
        t.set_vlan_identifier(v);
        t.set_priority_code_point(ClassOfService::new(0));
        t.set_ethertype(EtherTypes::Ipv4);
        &mut buf[18..]
    } else {
        eth.set_ethertype(EtherTypes::Ipv4);
        &mut buf[14..]
    };
    let src_ip = Ipv4Addr::new(10, 244, src[4], src[5]);
    let dst_ip = Ipv4Addr::new(10, 244, dst[4], dst[5]);
    {
        let mut ip = MutableIpv4Packet::new(&mut l3[..ip_len]).expect("ipv4 buffer");
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(ip_len as u16);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        ip.set_source(src_ip);
        ip.set_destination(dst_ip);
        {
            let mut u = MutableUdpPacket::new(ip.payload_mut()).expect("udp buffer");
            u.set_source(40000);
            u.set_destination(5201);
            u.set_length((8 + payload) as u16);
            for (i, b) in u.payload_mut().iter_mut().enumerate() {
                *b = i as u8;
            }
            let c = udp::ipv4_checksum(&u.to_immutable(), &src_ip, &dst_ip);
            u.set_checksum(c);
        }
        let c = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(c);
    }
    buf
}

/// An Ethernet frame with an arbitrary EtherType and payload, optionally tagged.
pub fn raw_frame(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let tag = if vlan.is_some() { 4 } else { 0 };
    let mut buf = vec![0u8; 14 + tag + payload.len()];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("ethernet buffer");
    eth.set_destination(pmac(dst));
    eth.set_source(pmac(src));
    if let Some(v) = vlan {
        eth.set_ethertype(EtherTypes::Vlan);
        let mut t = MutableVlanPacket::new(eth.payload_mut()).expect("vlan buffer");
        t.set_vlan_identifier(v);
        t.set_ethertype(EtherType(ethertype));
        t.payload_mut().copy_from_slice(payload);
    } else {
        eth.set_ethertype(EtherType(ethertype));
        eth.payload_mut().copy_from_slice(payload);
    }
    buf
}

/// The VLAN id of a frame's 802.1Q tag, read with pnet, or `None` when untagged.
pub fn vlan_of(frame: &[u8]) -> Option<u16> {
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::vlan::VlanPacket;
    use pnet_packet::Packet;
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Vlan {
        return None;
    }
    VlanPacket::new(eth.payload()).map(|v| v.get_vlan_identifier())
}

/// The frame with its 802.1Q tag removed (for comparing payloads across tagging changes).
pub fn untag(frame: &[u8]) -> Vec<u8> {
    if vlan_of(frame).is_none() {
        return frame.to_vec();
    }
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&frame[16..]);
    v
}
pub mod netns;
pub mod switch;

/// The full L2 path as the benchmarks and the callgrind example drive it: an access port
/// (VLAN 10) and a trunk, MACs learned behind the trunk, and a stock of packets bounced
/// between the two ports so buffers are recycled and nothing but the switch is measured.
pub mod l2bench {
    use vswitch::packet::{Pool, PoolConfig};
    use vswitch::pipeline::{VlanMode, VlanSet};
    use vswitch::port::ring::RingPeer;
    use vswitch::tables::fdb::FdbConfig;
    use vswitch::testkit::Rig;

    use crate::{mac, udp_frame};

    /// A MAC behind the trunk: `06:00:` and the four bytes of `i`.
    pub fn far_mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [0x06, 0, b[0], b[1], b[2], b[3]]
    }

    /// Sends back every packet a port's peer collected, MACs swapped.
    pub fn bounce(pool: &mut Pool, peer: &mut RingPeer) {
        while let Some(pkt) = peer.collect() {
            let d = pool.data_mut(&pkt);
            let (a, b) = d.split_at_mut(6);
            a.swap_with_slice(&mut b[..6]);
            if let Err(pkt) = peer.inject(pkt) {
                pool.free(pkt);
            }
        }
    }

    /// The rig with `macs` MACs learned behind the trunk and `flows` packets in flight from
    /// port 0 to far MACs spread over the learned ones.
    pub struct L2Bench<const N: usize> {
        pub rig: Rig<N>,
    }

    impl<const N: usize> L2Bench<N> {
        pub fn new(macs: u32, flows: usize) -> Self {
            let mut allowed = VlanSet::default();
            allowed.insert(10);
            let pool = PoolConfig { frames: 65536, ..PoolConfig::default() };
            let fdb = FdbConfig { max_entries: 131072, ..FdbConfig::default() };
            let mut rig: Rig<N> = Rig::with(
                &[
                    ("pod", VlanMode::Access(10)),
                    ("trunk", VlanMode::Trunk { allowed, native: None }),
                ],
                fdb,
                pool,
            );
            // Learn the far MACs behind the trunk and the pod's MAC on port 0.
            for i in 0..macs {
                rig.send(1, &udp_frame(mac(1), far_mac(i), Some(10), 18));
                if i % 512 == 511 {
                    rig.run(64);
                    rig.discard_all();
                }
            }
            rig.send(0, &udp_frame([0xff; 6], mac(1), None, 18));
            rig.run(64);
            rig.discard_all();
            assert_eq!(rig.fdb.len(), macs as usize + 1);
            for i in 0..flows {
                let f = udp_frame(far_mac((i as u32 * 7919) % macs), mac(1), None, 18);
                assert!(rig.send(0, &f), "stock of {flows} packets does not fit");
            }
            L2Bench { rig }
        }

        /// Moves at least `n` packets through the switch (both directions); returns how many.
        pub fn run(&mut self, n: usize) -> usize {
            let mut moved = 0;
            while moved < n {
                moved += self.rig.worker.poll_once(self.rig.now);
                self.rig.now += 100;
                for p in 0..2 {
                    bounce(self.rig.worker.pool_mut(), &mut self.rig.peers[p]);
                }
            }
            // The learner has nothing to do in steady state; keep it honest anyway.
            self.rig.learner.run_once(self.rig.now);
            moved
        }
    }
}
