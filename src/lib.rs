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
