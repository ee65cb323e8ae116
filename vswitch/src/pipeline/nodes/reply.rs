//! Packets the switch writes itself, built in the buffer of the packet that caused them
//! wherever possible (no allocation, no copy to a new buffer): ARP replies for the gateway and
//! underlay addresses, ARP requests for next hops, ICMP echo replies, ICMP errors (time
//! exceeded, unreachable, fragmentation needed), and the VXLAN outer headers.
//!
//! Every function here works on a frame whose headers the parse stage already checked, at the
//! offsets it recorded; they return an error instead of panicking when a length does not fit.

use std::net::Ipv4Addr;

use crate::packet::{flags, Meta, Offload, Pkt, Pool};
use crate::types::MacAddr;
use crate::wire::{self, ethertype, icmp, ip_proto};

/// Why a reply could not be built (the caller counts the original as dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer has no room (headroom or tailroom) for the reply.
    NoRoom,
    /// The packet must not be answered (an ICMP error about an ICMP error, a fragment, a
    /// broadcast source).
    NotAnswerable,
}

fn set_eth(d: &mut [u8], dst: MacAddr, src: MacAddr, et: u16) {
    d[0..6].copy_from_slice(&dst.0);
    d[6..12].copy_from_slice(&src.0);
    d[12..14].copy_from_slice(&et.to_be_bytes());
}

/// Turns the ARP request at `l3` of frame `d` into the reply "the asked address is at `mac`",
/// addressed to the requester.
pub fn arp_reply(d: &mut [u8], l3: usize, mac: MacAddr) {
    let mut arp = wire::ArpPacket::new_unchecked(&mut d[l3..]);
    let requester = arp.source_hardware_addr();
    arp.reply_in_place(mac);
    d[0..6].copy_from_slice(&requester.0);
    d[6..12].copy_from_slice(&mac.0);
}

/// A fresh frame holding the broadcast ARP request "who has `tpa`? tell `spa` at `mac`".
pub fn arp_request(pool: &mut Pool, mac: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Option<Pkt> {
    let mut p = pool.alloc()?;
    let len = wire::ethernet::HEADER_LEN + wire::arp::PACKET_LEN;
    if pool.append(&mut p, len).is_none() {
        pool.free(p);
        return None;
    }
    let d = pool.data_mut(&p);
    set_eth(d, MacAddr::BROADCAST, mac, ethertype::ARP);
    wire::ArpPacket::new_unchecked(&mut d[14..]).fill_request(mac, spa, tpa);
    Some(p)
}

/// The metadata of a frame the switch built, untagged, as parse would record it.
pub fn fresh_meta(in_port: u16, et: u16, l4: bool) -> Meta {
    let mut m = Meta::rx(in_port);
    m.ethertype = et;
    m.l3_off = 14;
    if et == ethertype::IPV4 {
        m.flags = flags::IPV4;
        if l4 {
            m.l4_off = 34;
        }
    }
    m
}

/// Turns the ICMP echo request at `l3` (IPv4 header length `ihl`) into the echo reply, in
/// place: addresses swapped, TTL 64, type 0. The Ethernet header is the caller's.
pub fn echo_reply(d: &mut [u8], l3: usize) {
    let mut ip = wire::Ipv4Packet::new_unchecked(&mut d[l3..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    // Swapping the addresses leaves the header sum unchanged; the TTL does not.
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(64);
    ip.fill_checksum();
    let hl = ip.header_len() as usize;
    let tl = ip.total_len() as usize;
    icmp::Packet::new_unchecked(&mut d[l3 + hl..l3 + tl]).echo_request_to_reply();
}

/// Whether an ICMP error may be sent about the IPv4 packet at `l3` (RFC 1812 4.3.2.7): not
/// about an ICMP error, a non-first fragment, or a packet from an address that is not a single
/// host.
pub fn may_send_error(d: &[u8], l3: usize) -> bool {
    let ip = wire::Ipv4Packet::new_unchecked(&d[l3..]);
    let src = ip.src_addr();
    if src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || ip.dst_addr().is_multicast()
        || ip.dst_addr().is_broadcast()
    {
        return false;
    }
    if ip.frag_offset() != 0 {
        return false;
    }
    if ip.next_header() == ip_proto::ICMP {
        let hl = ip.header_len() as usize;
        match d.get(l3 + hl) {
            Some(&t) => matches!(t, icmp::msg_type::ECHO_REQUEST | icmp::msg_type::ECHO_REPLY),
            None => false,
        }
    } else {
        true
    }
}

/// Rewrites the IPv4 packet at `l3` of `p` into the ICMP error (`ty`, `code`, `rest` = the
/// header's second word, e.g. the next-hop MTU) that `src` sends back to its sender, quoting
/// the original IP header and the first 8 bytes of its payload (RFC 792). The frame keeps its
/// Ethernet header (with any tag) for the caller to readdress; the metadata is reset to the
/// new packet's layout.
pub fn icmp_error(
    pool: &mut Pool,
    p: &mut Pkt,
    m: &mut Meta,
    src: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: u32,
) -> Result<(), BuildError> {
    let l3 = m.l3_off as usize;
    let d = pool.data(p);
    if !may_send_error(d, l3) {
        return Err(BuildError::NotAnswerable);
    }
    let ip = wire::Ipv4Packet::new_unchecked(&d[l3..]);
    let (hl, tl, dst) = (ip.header_len() as usize, ip.total_len() as usize, ip.src_addr());
    let quote = tl.min(hl + 8);
    let new_len = l3 + 20 + 8 + quote;
    if new_len > p.len() && pool.append(p, new_len - p.len()).is_none() {
        return Err(BuildError::NoRoom);
    }
    pool.truncate(p, new_len);
    let d = pool.data_mut(p);
    d.copy_within(l3..l3 + quote, l3 + 28);
    let mut ip = wire::Ipv4Packet::new_unchecked(&mut d[l3..l3 + 20]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_dscp(0x30); // CS6, internetwork control, as routers send ICMP.
    ip.set_ecn(0);
    ip.set_total_len((28 + quote) as u16);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_frag_offset(0);
    ip.set_ttl(64);
    ip.set_next_header(ip_proto::ICMP);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut ic = icmp::Packet::new_unchecked(&mut d[l3 + 20..new_len]);
    ic.set_msg_type(ty);
    ic.set_msg_code(code);
    ic.set_rest_of_header(rest);
    ic.fill_checksum();
    m.flags &= flags::TAGGED | flags::ROUTED;
    m.flags |= flags::IPV4;
    m.ip_proto = ip_proto::ICMP;
    m.l4_off = (l3 + 20) as u16;
    m.offload = Offload::default();
    Ok(())
}

/// What VXLAN encapsulation writes around a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub vni: u32,
    pub dst_port: u16,
}

/// The outer UDP source port for an inner flow hash: spread over 32768..=60999 (Linux's
/// default ephemeral range, as its vxlan device does) so underlay ECMP can tell flows apart.
#[inline]
pub fn vxlan_src_port(hash: u32) -> u16 {
    32768 + (hash % (61000 - 32768)) as u16
}

/// Encapsulates the (untagged) frame `p` in VXLAN over IPv4/UDP, into its headroom: outer
/// Ethernet, IPv4 (identification `ident`, TTL 64, no DF, as Linux's vxlan device sends by
/// default), UDP (source port from `hash`, checksum 0 as RFC 7348 allows over IPv4), VXLAN with
/// the I flag. `m` becomes the outer packet's metadata.
pub fn vxlan_encap(
    pool: &mut Pool,
    p: &mut Pkt,
    m: &mut Meta,
    t: &Tunnel,
    ident: u16,
) -> Result<(), BuildError> {
    let inner = p.len();
    let hdr = wire::vxlan::OVERHEAD_V4;
    if pool.push_front(p, hdr).is_none() {
        return Err(BuildError::NoRoom);
    }
    let d = pool.data_mut(p);
    set_eth(d, t.dst_mac, t.src_mac, ethertype::IPV4);
    let ip_len = 20 + 8 + 8 + inner;
    {
        let mut ip = wire::Ipv4Packet::new_unchecked(&mut d[14..34]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(ip_len as u16);
        ip.set_ident(ident);
        ip.clear_flags();
        ip.set_frag_offset(0);
        ip.set_ttl(64);
        ip.set_next_header(ip_proto::UDP);
        ip.set_src_addr(t.src_ip);
        ip.set_dst_addr(t.dst_ip);
        ip.fill_checksum();
    }
    {
        let mut u = wire::UdpPacket::new_unchecked(&mut d[34..42]);
        u.set_src_port(vxlan_src_port(m.hash));
        u.set_dst_port(t.dst_port);
        u.set_len((8 + 8 + inner) as u16);
        u.set_checksum(0);
    }
    wire::vxlan::Header::new_unchecked(&mut d[42..50]).fill(t.vni);
    let hash = m.hash;
    *m = Meta {
        in_port: m.in_port,
        vlan: m.vlan,
        hash,
        ..fresh_meta(m.in_port, ethertype::IPV4, true)
    };
    m.ip_proto = ip_proto::UDP;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;
    use pnet_packet::arp::{ArpOperations, ArpPacket};
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;
    use pnet_packet::Packet as _;

    fn pool() -> Pool {
        Pool::new(PoolConfig { frames: 16, ..PoolConfig::default() }).unwrap()
    }

    /// An Ethernet/IPv4/UDP frame built with pnet, independent of our encoder.
    fn udp_frame(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: usize, df: bool) -> Vec<u8> {
        use pnet_packet::ethernet::MutableEthernetPacket;
        use pnet_packet::ipv4::{checksum, Ipv4Flags, MutableIpv4Packet};
        use pnet_packet::udp::MutableUdpPacket;
        let total = 20 + 8 + payload;
        let mut buf = vec![0u8; 14 + total];
        {
            let mut e = MutableEthernetPacket::new(&mut buf).unwrap();
            e.set_destination([0x0a, 0x58, 1, 1, 1, 1].into());
            e.set_source([2, 0, 0, 0, 0, 1].into());
            e.set_ethertype(EtherTypes::Ipv4);
        }
        {
            let mut ip = MutableIpv4Packet::new(&mut buf[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(total as u16);
            ip.set_ttl(ttl);
            ip.set_flags(if df { Ipv4Flags::DontFragment } else { 0 });
            ip.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocols::Udp);
            ip.set_source(src.into());
            ip.set_destination(dst.into());
            let c = checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        let mut u = MutableUdpPacket::new(&mut buf[34..]).unwrap();
        u.set_source(1234);
        u.set_destination(5678);
        u.set_length((8 + payload) as u16);
        buf
    }

    fn parsed(d: &[u8]) -> Meta {
        let mut m = Meta::rx(1);
        crate::pipeline::nodes::parse::parse(d, &mut m).unwrap();
        m
    }

    #[test]
    fn arp_request_and_reply_read_back_with_pnet() {
        let mut pool = pool();
        let me = MacAddr([0x0a, 0x58, 10, 244, 1, 1]);
        let p = arp_request(
            &mut pool,
            me,
            "10.244.1.1".parse().unwrap(),
            "10.244.1.7".parse().unwrap(),
        )
        .unwrap();
        let e = EthernetPacket::new(pool.data(&p)).unwrap();
        assert_eq!(e.get_destination().octets(), [0xff; 6]);
        assert_eq!(e.get_ethertype(), EtherTypes::Arp);
        let a = ArpPacket::new(e.payload()).unwrap();
        assert_eq!(a.get_operation(), ArpOperations::Request);
        assert_eq!(a.get_target_proto_addr(), Ipv4Addr::new(10, 244, 1, 7));
        // Answer our own request as if we were 10.244.1.7 at 02:..:07.
        let mut d = pool.data(&p).to_vec();
        let them = MacAddr([2, 0, 0, 0, 0, 7]);
        arp_reply(&mut d, 14, them);
        let e = EthernetPacket::new(&d).unwrap();
        assert_eq!(e.get_destination().octets(), me.0);
        let a = ArpPacket::new(e.payload()).unwrap();
        assert_eq!(a.get_operation(), ArpOperations::Reply);
        assert_eq!(a.get_sender_hw_addr().octets(), them.0);
        assert_eq!(a.get_sender_proto_addr(), Ipv4Addr::new(10, 244, 1, 7));
        assert_eq!(a.get_target_proto_addr(), Ipv4Addr::new(10, 244, 1, 1));
        pool.free(p);
    }

    #[test]
    fn icmp_error_quotes_the_original_and_checks_out() {
        let mut pool = pool();
        let f = udp_frame([10, 244, 1, 11], [10, 244, 2, 11], 1, 100, true);
        let mut p = pool.alloc_from(&f).unwrap();
        let mut m = parsed(&f);
        icmp_error(&mut pool, &mut p, &mut m, "10.244.1.1".parse().unwrap(), 3, 4, 1450).unwrap();
        let d = pool.data(&p);
        assert_eq!(d.len(), 14 + 20 + 8 + 28);
        let ip = Ipv4Packet::new(&d[14..]).unwrap();
        assert_eq!(ip.get_source(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(ip.get_destination(), Ipv4Addr::new(10, 244, 1, 11));
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let ic = IcmpPacket::new(ip.payload()).unwrap();
        assert_eq!(ic.get_icmp_type(), IcmpTypes::DestinationUnreachable);
        assert_eq!(ic.get_checksum(), pnet_packet::icmp::checksum(&ic));
        // Next-hop MTU in the low half of the second word, then the quoted header.
        assert_eq!(&ic.payload()[2..4], &1450u16.to_be_bytes());
        assert_eq!(&ic.payload()[4..4 + 28], &f[14..14 + 28]);
        assert_eq!(m.l4_off, 34);
        // The result parses as a valid packet.
        let again = parsed(d);
        assert_eq!(again.ip_proto, ip_proto::ICMP);
        pool.free(p);
    }

    #[test]
    fn no_error_about_an_icmp_error_or_a_fragment() {
        let mut pool = pool();
        let f = udp_frame([10, 244, 1, 11], [10, 244, 2, 11], 1, 100, false);
        let mut p = pool.alloc_from(&f).unwrap();
        let mut m = parsed(&f);
        icmp_error(&mut pool, &mut p, &mut m, "10.244.1.1".parse().unwrap(), 11, 0, 0).unwrap();
        let g = pool.data(&p).to_vec();
        let mut m2 = parsed(&g);
        assert_eq!(
            icmp_error(&mut pool, &mut p, &mut m2, "10.244.1.1".parse().unwrap(), 11, 0, 0),
            Err(BuildError::NotAnswerable)
        );
        pool.free(p);
    }

    #[test]
    fn echo_reply_swaps_addresses_with_valid_checksums() {
        let mut d = vec![0u8; 14 + 20 + 8 + 4];
        {
            use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
            use pnet_packet::ipv4::MutableIpv4Packet;
            let mut ip = MutableIpv4Packet::new(&mut d[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(32);
            ip.set_ttl(63);
            ip.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocols::Icmp);
            ip.set_source([10, 244, 1, 11].into());
            ip.set_destination([10, 244, 1, 1].into());
            let c = pnet_packet::ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
            let mut e = MutableEchoRequestPacket::new(&mut d[34..]).unwrap();
            e.set_icmp_type(IcmpTypes::EchoRequest);
            e.set_identifier(7);
            e.set_sequence_number(9);
            let c = pnet_packet::icmp::checksum(&IcmpPacket::new(e.packet()).unwrap());
            e.set_checksum(c);
        }
        d[12..14].copy_from_slice(&[8, 0]);
        echo_reply(&mut d, 14);
        let ip = Ipv4Packet::new(&d[14..]).unwrap();
        assert_eq!(ip.get_source(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(ip.get_destination(), Ipv4Addr::new(10, 244, 1, 11));
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let ic = IcmpPacket::new(ip.payload()).unwrap();
        assert_eq!(ic.get_icmp_type(), IcmpTypes::EchoReply);
        assert_eq!(ic.get_checksum(), pnet_packet::icmp::checksum(&ic));
    }

    #[test]
    fn vxlan_encap_writes_headers_pnet_reads() {
        let mut pool = pool();
        let f = udp_frame([10, 244, 1, 11], [10, 244, 2, 11], 63, 100, false);
        let mut p = pool.alloc_from(&f).unwrap();
        let mut m = parsed(&f);
        m.hash = 12345;
        let t = Tunnel {
            src_mac: MacAddr([0x0a, 0x58, 198, 18, 0, 1]),
            dst_mac: MacAddr([0x0a, 0x58, 198, 18, 0, 2]),
            src_ip: "198.18.0.1".parse().unwrap(),
            dst_ip: "198.18.0.2".parse().unwrap(),
            vni: 42,
            dst_port: 8472,
        };
        vxlan_encap(&mut pool, &mut p, &mut m, &t, 77).unwrap();
        let d = pool.data(&p);
        assert_eq!(d.len(), f.len() + 50);
        let e = EthernetPacket::new(d).unwrap();
        assert_eq!(e.get_source().octets(), t.src_mac.0);
        let ip = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        assert_eq!(ip.get_total_length() as usize, d.len() - 14);
        assert_eq!(ip.get_identification(), 77);
        let u = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!(u.get_destination(), 8472);
        assert_eq!(u.get_source(), vxlan_src_port(12345));
        assert_eq!(u.get_length() as usize, d.len() - 34);
        assert_eq!(&u.payload()[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(&u.payload()[8..], &f[..]);
        assert_eq!((m.l3_off, m.l4_off, m.hash), (14, 34, 12345));
        assert_eq!(parsed(d).ip_proto, ip_proto::UDP);
        pool.free(p);
    }
}
