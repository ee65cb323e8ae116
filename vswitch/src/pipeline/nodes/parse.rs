//! Parse: validates each frame once, from Ethernet down to the transport header, and records
//! what later stages need in the packet's metadata: the wire VLAN tag, EtherType, L3 and L4
//! offsets, IP protocol, and a flow hash.
//!
//! Every malformed frame is dropped with the reason of the first header that fails its check
//! (`eth_truncated`, `vlan_truncated`, `ipv4_malformed`, `tcp_malformed`, ...). Checksums are
//! not verified here: a switch forwards what it is given, and packets from offload-capable
//! ports legitimately carry partial checksums. EtherTypes the switch does not parse (LLDP,
//! MPLS, ...) are switched as plain L2 frames.

use crate::packet::{flags, gso, Batch, GsoType, Meta, Pool, Verdict};
use crate::telemetry::DropReason;
use crate::wire::{self, ethertype, ip_proto};

/// Parses every packet of the batch that is still in play.
pub fn run<const N: usize>(batch: &mut Batch<N>, pool: &Pool) {
    let (pkts, metas) = batch.split_mut();
    for (p, m) in pkts.iter().zip(metas.iter_mut()) {
        if m.verdict != Verdict::Continue {
            continue;
        }
        if let Err(r) = parse(pool.data(p), m) {
            m.drop(r);
        }
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K).rotate_left(29)
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Parses one frame into `m`.
#[inline]
pub fn parse(d: &[u8], m: &mut Meta) -> Result<(), DropReason> {
    if d.len() < wire::ethernet::HEADER_LEN {
        return Err(DropReason::EthTruncated);
    }
    if d[0] & 1 != 0 {
        m.flags |= flags::DST_GROUP;
    }
    let mut et = be16(d, 12);
    let mut off = wire::ethernet::HEADER_LEN;
    if et == ethertype::VLAN || et == ethertype::QINQ {
        if d.len() < off + wire::vlan::HEADER_LEN {
            return Err(DropReason::VlanTruncated);
        }
        let tci = be16(d, 14);
        et = be16(d, 16);
        if et == ethertype::VLAN || et == ethertype::QINQ {
            return Err(DropReason::VlanStacked);
        }
        m.vlan = tci & 0x0fff;
        m.pcp = (tci >> 13) as u8;
        m.flags |= flags::TAGGED;
        off += wire::vlan::HEADER_LEN;
    }
    m.ethertype = et;
    m.l3_off = off as u16;
    let macs_hi = u64::from_be_bytes([0, 0, d[0], d[1], d[2], d[3], d[4], d[5]]);
    let macs_lo = u64::from_be_bytes([0, 0, d[6], d[7], d[8], d[9], d[10], d[11]]);
    let mut h = mix(mix(u64::from(et) << 16 | u64::from(m.vlan), macs_hi), macs_lo);
    let l3 = &d[off..];
    match et {
        ethertype::IPV4 => {
            let ip = wire::Ipv4Packet::new_checked(l3).map_err(|_| DropReason::Ipv4Malformed)?;
            m.flags |= flags::IPV4;
            m.ip_proto = ip.next_header();
            h = mix(
                h,
                u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr())),
            );
            h = mix(h, u64::from(m.ip_proto));
            if ip.frag_offset() != 0 {
                m.flags |= flags::FRAGMENT;
            } else {
                let hl = ip.header_len() as usize;
                h = parse_l4(&l3[hl..ip.total_len() as usize], off + hl, m, h)?;
            }
        }
        ethertype::IPV6 => {
            let ip = wire::Ipv6Packet::new_checked(l3).map_err(|_| DropReason::Ipv6Malformed)?;
            m.flags |= flags::IPV6;
            m.ip_proto = ip.next_header();
            let (s, t) = (ip.src_addr().octets(), ip.dst_addr().octets());
            for w in [&s[..8], &s[8..], &t[..8], &t[8..]] {
                h = mix(h, u64::from_be_bytes(w.try_into().unwrap_or_default()));
            }
            h = mix(h, u64::from(m.ip_proto));
            let hl = wire::ipv6::HEADER_LEN;
            h = parse_l4(&l3[hl..hl + ip.payload_len() as usize], off + hl, m, h)?;
        }
        ethertype::ARP => match wire::ArpPacket::new_checked(l3) {
            // ARP for other hardware or protocol types is switched untouched.
            Ok(_) | Err(wire::Error::Unsupported) => {}
            Err(_) => return Err(DropReason::ArpMalformed),
        },
        _ => {}
    }
    m.hash = (h ^ h >> 32) as u32;
    // A UDP tunnel GSO packet's offload state describes its inner packet: the L3 stage checks
    // it against that packet when it decapsulates (and drops the packet if it does not).
    if m.offload.tunnel_inner == 0
        && (m.offload.gso_type != GsoType::None || m.offload.csum_partial || m.offload.csum_valid)
    {
        validate_offload(d, m)?;
    }
    Ok(())
}

/// Checks offload state a port took from an untrusted virtio-net header (a TAP pod) against
/// the packet as parsed: a GSO type that matches the headers, a sane segment size, a partial
/// checksum that is the packet's own TCP or UDP checksum. "Checksum already verified" is never
/// believed from a pod: the receiver verifies.
#[cold]
fn validate_offload(d: &[u8], m: &mut Meta) -> Result<(), DropReason> {
    let o = m.offload;
    let hdr = gso::VnetHdr {
        flags: if o.csum_partial { gso::VIRTIO_NET_HDR_F_NEEDS_CSUM } else { 0 },
        gso_type: match o.gso_type {
            GsoType::None => gso::VIRTIO_NET_HDR_GSO_NONE,
            GsoType::TcpV4 => gso::VIRTIO_NET_HDR_GSO_TCPV4,
            GsoType::TcpV6 => gso::VIRTIO_NET_HDR_GSO_TCPV6,
            GsoType::UdpL4 => gso::VIRTIO_NET_HDR_GSO_UDP_L4,
        },
        hdr_len: 0,
        gso_size: o.gso_size,
        csum_start: o.csum_start,
        csum_offset: o.csum_offset,
        num_buffers: 0,
    };
    let mut off = gso::offload_from_vnet(&hdr, d, m)?;
    off.csum_valid = false;
    m.offload = off;
    Ok(())
}

/// Checks the transport header in `l4` (the IP payload, bounded by the IP length) at frame
/// offset `off`, and mixes ports into the hash.
#[inline]
fn parse_l4(l4: &[u8], off: usize, m: &mut Meta, h: u64) -> Result<u64, DropReason> {
    let ports = match m.ip_proto {
        ip_proto::TCP => {
            let t = wire::TcpPacket::new_checked(l4).map_err(|_| DropReason::TcpMalformed)?;
            u64::from(t.src_port()) << 16 | u64::from(t.dst_port())
        }
        ip_proto::UDP => {
            let u = wire::UdpPacket::new_checked(l4).map_err(|_| DropReason::UdpMalformed)?;
            u64::from(u.src_port()) << 16 | u64::from(u.dst_port())
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            if l4.len() < 8 {
                return Err(DropReason::IcmpMalformed);
            }
            u64::from(be16(l4, 0))
        }
        _ => return Ok(h),
    };
    m.l4_off = off as u16;
    Ok(mix(h, ports))
}
