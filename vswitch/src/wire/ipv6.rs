//! IPv6 fixed header (RFC 8200).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Source Address (128 bits)                     |
//! |                 Destination Address (128 bits)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Extension headers are not walked: [`Packet::next_header`] is whatever follows the fixed
//! header (an upper-layer protocol or an extension header, see [`ip_proto`](super::ip_proto)).
//! Jumbograms (payload length 0 with a Hop-by-Hop jumbo option, RFC 2675) are not supported:
//! their payload is seen as empty.

use core::net::Ipv6Addr;

use super::bytes::{be16, be32, set_be16, set_be32};
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks it with [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer: [`Error::Truncated`] if it is shorter than 40 bytes or than
    /// 40 + payload length, [`Error::BadVersion`] if the version is not 6. The buffer may be
    /// longer (padding). Once this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::BadVersion);
        }
        if HEADER_LEN + self.payload_len() as usize > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn first_word(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::VER_TC_FLOW])
    }

    /// The version field (6 for a packet that passed `check_len`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// The length of everything after the fixed header (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// 40 + payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() as usize
    }

    /// The type of the header that follows the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The payload (extension headers included), limited to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_first_word(&mut self, w: u32) {
        set_be32(&mut self.buffer.as_mut()[field::VER_TC_FLOW], w);
    }

    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[0];
        *b = (*b & 0x0f) | (v << 4);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = self.first_word() & !0x0ff0_0000;
        self.set_first_word(w | (u32::from(tc) << 20));
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let tc = self.traffic_class();
        self.set_traffic_class((tc & 0x03) | (dscp << 2));
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let tc = self.traffic_class();
        self.set_traffic_class((tc & 0xfc) | (ecn & 0x03));
    }

    /// Sets the flow label (bits above 20 ignored).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let w = self.first_word() & !0x000f_ffff;
        self.set_first_word(w | (label & 0x000f_ffff));
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_be16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = nh;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }

    /// Decrements the hop limit by one (IPv6 has no header checksum) and returns the new value;
    /// a hop limit already 0 is left alone.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let h = self.hop_limit().saturating_sub(1);
        self.set_hop_limit(h);
        h
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    fn src() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "fd00:1234::abcd:ef01".parse().unwrap()
    }

    #[test]
    fn parses_what_pnet_writes() {
        let mut buf = [0u8; 40 + 12 + 8]; // 8 bytes of trailing padding
        {
            let mut p = MutableIpv6Packet::new(&mut buf[..]).unwrap();
            p.set_version(6);
            p.set_traffic_class(0xb9);
            p.set_flow_label(0xabcde);
            p.set_payload_length(12);
            p.set_next_header(IpNextHeaderProtocols::Tcp);
            p.set_hop_limit(255);
            p.set_source(src());
            p.set_destination(dst());
            p.set_payload(&[7; 12]);
        }
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb9);
        assert_eq!(p.dscp(), 0xb9 >> 2);
        assert_eq!(p.ecn(), 1);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.total_len(), 52);
        assert_eq!(p.next_header(), ip_proto::TCP);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_addr(), src());
        assert_eq!(p.dst_addr(), dst());
        assert_eq!(p.payload(), &[7; 12][..]);
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 48];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_version(6);
            p.set_flow_label(0xfffff);
            p.set_traffic_class(0xff);
            p.set_dscp(0x12);
            p.set_ecn(2);
            p.set_flow_label(0x12345);
            p.set_payload_len(8);
            p.set_next_header(ip_proto::ICMPV6);
            p.set_hop_limit(1);
            assert_eq!(p.decrement_hop_limit(), 0);
            assert_eq!(p.decrement_hop_limit(), 0);
            p.set_src_addr(src());
            p.set_dst_addr(dst());
            p.payload_mut().fill(3);
            assert!(p.check_len().is_ok());
        }
        let q = Ipv6Packet::new(&buf[..]).unwrap();
        assert_eq!(q.get_version(), 6);
        assert_eq!(q.get_traffic_class(), (0x12 << 2) | 2);
        assert_eq!(q.get_flow_label(), 0x12345);
        assert_eq!(q.get_payload_length(), 8);
        assert_eq!(q.get_next_header(), IpNextHeaderProtocols::Icmpv6);
        assert_eq!(q.get_hop_limit(), 0);
        assert_eq!(q.get_source(), src());
        assert_eq!(q.get_destination(), dst());
        assert_eq!(q.payload(), &[3; 8][..]);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let mut buf = [0u8; 50];
        buf[0] = 0x60;
        buf[5] = 10;
        assert!(Packet::new_checked(&buf[..]).is_ok());
        for n in 0..50 {
            assert_eq!(Packet::new_checked(&buf[..n]), Err(Error::Truncated));
        }
        buf[0] = 0x40;
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadVersion));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 0..80),
            force_v6 in any::<bool>(),
            plen in 0u16..48,
        ) {
            if force_v6 && data.len() >= 6 {
                data[0] = (data[0] & 0x0f) | 0x60;
                data[4..6].copy_from_slice(&plen.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.version(), p.traffic_class(), p.dscp(), p.ecn(), p.flow_label());
                let _ = (p.payload_len(), p.total_len(), p.next_header(), p.hop_limit());
                let _ = (p.src_addr(), p.dst_addr(), p.payload().len());
                let q = Ipv6Packet::new(&data[..]).unwrap();
                prop_assert_eq!(p.flow_label(), q.get_flow_label());
                prop_assert_eq!(p.traffic_class(), q.get_traffic_class());
                let mut c = data.clone();
                let mut m = Packet::new_unchecked(&mut c[..]);
                m.set_traffic_class(0xff);
                m.set_flow_label(u32::MAX);
                m.decrement_hop_limit();
                let _ = m.payload_mut().len();
                prop_assert!(m.check_len().is_ok());
            }
        }
    }
}
