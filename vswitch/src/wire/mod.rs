//! Zero-copy views over packet headers, and the Internet checksum.
//!
//! This module is the switch's only packet parser. Every protocol it understands has a *view*: a
//! thin wrapper `Packet<T: AsRef<[u8]>> { buffer: T }` over a byte buffer the view does not own
//! or copy, with accessors that read (and, for `T: AsMut<[u8]>`, write) the header fields in
//! place, in network byte order. The style follows smoltcp's `wire` module: field offsets are
//! range constants in a private `mod field`, and there is no `unsafe`, no allocation and no I/O.
//!
//! | module        | view                | format                                   |
//! |---------------|---------------------|------------------------------------------|
//! | [`ethernet`]  | [`EthernetFrame`]   | Ethernet II (IEEE 802.3)                 |
//! | [`vlan`]      | [`VlanHeader`]      | IEEE 802.1Q / 802.1ad tag                |
//! | [`arp`]       | [`ArpPacket`]       | ARP for Ethernet/IPv4 (RFC 826)          |
//! | [`ipv4`]      | [`Ipv4Packet`]      | IPv4 (RFC 791)                           |
//! | [`ipv6`]      | [`Ipv6Packet`]      | IPv6 fixed header (RFC 8200)             |
//! | [`udp`]       | [`UdpPacket`]       | UDP (RFC 768)                            |
//! | [`tcp`]       | [`TcpPacket`]       | TCP (RFC 9293)                           |
//! | [`icmp`]      | [`IcmpPacket`]      | ICMPv4 (RFC 792)                         |
//! | [`vxlan`]     | [`VxlanHeader`]     | VXLAN (RFC 7348)                         |
//! | [`checksum`]  | —                   | Internet checksum (RFC 1071, RFC 1624)   |
//!
//! # The contract
//!
//! * `new_unchecked(buffer)` wraps a buffer without looking at it. Accessors on such a view may
//!   panic (by slice indexing) if the buffer is too short.
//! * `check_len()` verifies that the buffer is long enough for every field the view reads, and
//!   that the length fields inside the header are consistent with the buffer (e.g. IPv4's IHL
//!   and total length, UDP's length, TCP's data offset). **Once `check_len` passes, no accessor
//!   panics**, whatever the bytes say, and `payload()` is limited to what the header claims
//!   (e.g. IPv4's total length, so Ethernet padding is not part of the IPv4 payload).
//! * `new_checked(buffer)` is `new_unchecked` followed by `check_len`.
//! * Setters never change the length of anything; a setter that writes a length field (such as
//!   `set_total_len`) can make a later `check_len` fail, which is the caller's business.
//! * Checksums are never verified implicitly: call `verify_checksum` where it matters.
//!
//! # How the pipeline uses it
//!
//! The parse stage opens each received frame once with the `new_checked` constructors, from the
//! Ethernet header down to the transport header, and records what it learned (ethertype, VLAN
//! id, the offsets of the L3 and L4 headers, the IP protocol) in the packet's per-packet
//! metadata. Later stages (forwarding, NAT, encapsulation, ARP responder) do not parse again:
//! they reopen views at the recorded offsets with `new_unchecked`, which is free, and rely on
//! the checks already done. A failed check maps to a drop reason through [`Error`], whose
//! variants are the per-reason drop counters.
//!
//! Length checks are cheap (a few comparisons), and accessors are `#[inline]` reads at constant
//! offsets, so a view costs nothing over hand-written offset arithmetic.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use arp::Packet as ArpPacket;
pub use ethernet::{ethertype, Frame as EthernetFrame};
pub use icmp::Packet as IcmpPacket;
pub use ipv4::Packet as Ipv4Packet;
pub use ipv6::Packet as Ipv6Packet;
pub use tcp::Packet as TcpPacket;
pub use udp::Packet as UdpPacket;
pub use vlan::Header as VlanHeader;
pub use vxlan::Header as VxlanHeader;

/// Why a buffer was rejected by a view's `check_len` (or by a checksum check).
///
/// The variants are deliberately few: the pipeline keeps one drop counter per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field inside it claims.
    #[error("packet truncated")]
    Truncated,
    /// The IP version field is not the one the view parses.
    #[error("bad IP version")]
    BadVersion,
    /// A header length field is below the minimum (IPv4 IHL < 5, TCP data offset < 5).
    #[error("bad header length")]
    BadHeaderLen,
    /// A total length field is inconsistent (IPv4 total length < header length, UDP length < 8).
    #[error("bad length field")]
    BadTotalLen,
    /// Mandatory flag bits are missing (VXLAN without the I flag).
    #[error("bad header flags")]
    BadFlags,
    /// The header is well-formed but of a kind the view does not parse (ARP that is not
    /// Ethernet/IPv4).
    #[error("unsupported header format")]
    Unsupported,
    /// A checksum did not verify. No `check_len` returns it; it is here so that callers of the
    /// `verify_checksum` methods can report the reason in the same type.
    #[error("bad checksum")]
    BadChecksum,
}

/// The result type of the views' checks.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IPv4 "protocol", IPv6 "next header"), from the IANA registry.
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options extension header.
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    /// IPv4-in-IP encapsulation.
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (6in4).
    pub const IPV6: u8 = 41;
    /// IPv6 Routing extension header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment extension header.
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options extension header.
    pub const IPV6_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// Big-endian reads and writes of fixed-size fields. The slices passed in are sub-slices taken
/// with constant ranges, so after inlining the indexing below needs no bounds checks.
mod bytes {
    #[inline(always)]
    pub(crate) fn be16(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline(always)]
    pub(crate) fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline(always)]
    pub(crate) fn set_be16(b: &mut [u8], v: u16) {
        b[..2].copy_from_slice(&v.to_be_bytes());
    }

    #[inline(always)]
    pub(crate) fn set_be32(b: &mut [u8], v: u32) {
        b[..4].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_short_messages() {
        for e in [
            Error::Truncated,
            Error::BadVersion,
            Error::BadHeaderLen,
            Error::BadTotalLen,
            Error::BadFlags,
            Error::Unsupported,
            Error::BadChecksum,
        ] {
            let s = e.to_string();
            assert!(!s.is_empty() && s.len() < 40, "{s}");
        }
    }

    #[test]
    fn byte_helpers_are_big_endian() {
        let mut b = [0u8; 4];
        bytes::set_be16(&mut b, 0x1234);
        assert_eq!(b[..2], [0x12, 0x34]);
        assert_eq!(bytes::be16(&b), 0x1234);
        bytes::set_be32(&mut b, 0xdead_beef);
        assert_eq!(b, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes::be32(&b), 0xdead_beef);
    }
}
