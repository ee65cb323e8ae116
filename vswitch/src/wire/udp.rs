//! UDP datagrams (RFC 768; over IPv6, RFC 8200 §8.1).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |   Source Port   |    Dest Port    |
//! +--------+--------+--------+--------+
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! |          data octets ...
//! ```
//!
//! The checksum covers a pseudo header, the UDP header and the data (`length` bytes). A zero
//! checksum means "none" over IPv4; a computed checksum of zero is sent as `0xffff`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bytes::{be16, set_be16};
use super::checksum;
use super::ip_proto;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// Checks the buffer: [`Error::Truncated`] if it is shorter than 8 bytes or than the length
    /// field, [`Error::BadTotalLen`] if the length field is below 8. The buffer may be longer
    /// than the length field. Once this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let l = self.len() as usize;
        if l < HEADER_LEN {
            return Err(Error::BadTotalLen);
        }
        if l > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus data, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The datagram as covered by the length field (header and data).
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len() as usize]
    }

    /// The data, limited to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    #[inline]
    fn verify_with(&self, pseudo: u32) -> bool {
        checksum::fold(pseudo + checksum::sum(self.datagram())) == 0xffff
    }

    /// True if the checksum is correct, or absent (zero), over IPv4.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || self.verify_with(checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len()))
    }

    /// True if the checksum is correct over IPv6, where it is mandatory: a zero checksum fails
    /// (RFC 8200 §8.1; the RFC 6935 tunnel exception is the caller's business).
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        self.checksum() != 0 && self.verify_with(ph)
    }

    /// [`Packet::verify_checksum_v4`] or [`Packet::verify_checksum_v6`] by address family;
    /// false for mixed families.
    #[inline]
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.verify_checksum_v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.verify_checksum_v6(s, d),
            _ => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        set_be16(&mut self.buffer.as_mut()[field::SRC_PORT], p);
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        set_be16(&mut self.buffer.as_mut()[field::DST_PORT], p);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        set_be16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(&mut self.buffer.as_mut()[field::CHECKSUM], c);
    }

    #[inline]
    fn fill_with(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = !checksum::fold(pseudo + checksum::sum(self.datagram()));
        // Zero means "no checksum": a computed zero is sent as its equivalent, 0xffff.
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes and writes the checksum over an IPv4 pseudo header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let l = self.len();
        self.fill_with(checksum::pseudo_header_v4(src, dst, ip_proto::UDP, l));
    }

    /// Computes and writes the checksum over an IPv6 pseudo header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let l = u32::from(self.len());
        self.fill_with(checksum::pseudo_header_v6(src, dst, ip_proto::UDP, l));
    }

    /// Computes and writes the checksum for either family (see
    /// [`checksum::pseudo_header`] for mixed families).
    #[inline]
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        let l = u32::from(self.len());
        self.fill_with(checksum::pseudo_header(src, dst, ip_proto::UDP, l));
    }

    /// The data (to the length field), mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..l]
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
    use pnet_packet::udp::{self as pnet_udp, MutableUdpPacket, UdpPacket};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    const S4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const D4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    fn s6() -> Ipv6Addr {
        "fd00::5".parse().unwrap()
    }

    fn d6() -> Ipv6Addr {
        "fd00:10:96::a".parse().unwrap()
    }

    fn pnet_datagram(data: &[u8], v6: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 8 + data.len()];
        let mut p = MutableUdpPacket::new(&mut buf[..]).unwrap();
        p.set_source(53);
        p.set_destination(40000);
        p.set_length((8 + data.len()) as u16);
        p.set_payload(data);
        let c = if v6 {
            pnet_udp::ipv6_checksum(&p.to_immutable(), &s6(), &d6())
        } else {
            pnet_udp::ipv4_checksum(&p.to_immutable(), &S4, &D4)
        };
        p.set_checksum(c);
        buf
    }

    #[test]
    fn parses_what_pnet_writes() {
        let buf = pnet_datagram(b"hello, dns", false);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 53);
        assert_eq!(p.dst_port(), 40000);
        assert_eq!(p.len(), 18);
        assert_eq!(p.payload(), b"hello, dns");
        assert!(p.verify_checksum_v4(S4, D4));
        assert!(p.verify_checksum(S4.into(), D4.into()));
        assert!(!p.verify_checksum_v4(S4, Ipv4Addr::new(10, 96, 0, 11)));
        assert!(!p.verify_checksum(S4.into(), d6().into()));

        let buf = pnet_datagram(b"odd", true);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum_v6(s6(), d6()));
        assert!(p.verify_checksum(s6().into(), d6().into()));
        assert!(!p.verify_checksum_v6(d6(), d6()));
    }

    #[test]
    fn fill_checksum_matches_pnet() {
        for v6 in [false, true] {
            for n in [0usize, 1, 2, 7, 100, 1471] {
                let data: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
                let reference = pnet_datagram(&data, v6);
                let mut buf = reference.clone();
                let mut p = Packet::new_checked(&mut buf[..]).unwrap();
                p.set_checksum(0x1234);
                if v6 {
                    p.fill_checksum_v6(s6(), d6());
                } else {
                    p.fill_checksum_v4(S4, D4);
                }
                let want = UdpPacket::new(&reference).unwrap().get_checksum();
                let want = if want == 0 { 0xffff } else { want };
                assert_eq!(p.checksum(), want, "v6={v6} n={n}");
                let (s, d): (IpAddr, IpAddr) =
                    if v6 { (s6().into(), d6().into()) } else { (S4.into(), D4.into()) };
                p.fill_checksum(s, d);
                assert_eq!(p.checksum(), want);
            }
        }
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 20];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_src_port(4789);
            p.set_dst_port(8472);
            p.set_len(20);
            p.payload_mut().copy_from_slice(&[9; 12]);
            p.fill_checksum_v4(S4, D4);
        }
        let q = UdpPacket::new(&buf[..]).unwrap();
        assert_eq!(q.get_source(), 4789);
        assert_eq!(q.get_destination(), 8472);
        assert_eq!(q.get_length(), 20);
        assert_eq!(q.get_checksum(), pnet_udp::ipv4_checksum(&q, &S4, &D4));
        assert_eq!(q.payload(), &[9; 12][..]);
    }

    #[test]
    fn zero_checksum_and_padding() {
        let mut buf = pnet_datagram(b"abc", false);
        buf.extend_from_slice(&[0xee; 5]); // trailing padding after the length
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert!(p.verify_checksum_v4(S4, D4));
        assert_eq!(p.payload(), b"abc");
        p.set_checksum(0);
        assert!(p.verify_checksum_v4(S4, D4));
        assert!(!p.verify_checksum_v6(s6(), d6()));
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let buf = pnet_datagram(b"0123456789", false);
        for n in 0..buf.len() {
            assert_eq!(Packet::new_checked(&buf[..n]), Err(Error::Truncated));
        }
        let mut b = buf.clone();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::BadTotalLen));
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 0..64),
            len in 0u16..72,
            force in any::<bool>(),
        ) {
            if force && data.len() >= 6 {
                data[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum());
                let _ = (p.datagram().len(), p.payload().len());
                let _ = p.verify_checksum_v4(S4, D4);
                let _ = p.verify_checksum_v6(s6(), d6());
                let mut c = data.clone();
                let mut m = Packet::new_unchecked(&mut c[..]);
                m.set_src_port(1);
                m.set_dst_port(2);
                m.fill_checksum_v4(S4, D4);
                prop_assert!(m.verify_checksum_v4(S4, D4));
                m.fill_checksum_v6(s6(), d6());
                prop_assert!(m.verify_checksum_v6(s6(), d6()));
                let _ = m.payload_mut().len();
            }
        }

        #[test]
        fn checksum_matches_pnet(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let reference = pnet_datagram(&data, false);
            let mut buf = reference.clone();
            let mut p = Packet::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum_v4(S4, D4);
            let want = UdpPacket::new(&reference).unwrap().get_checksum();
            prop_assert_eq!(p.checksum(), if want == 0 { 0xffff } else { want });
        }
    }
}
