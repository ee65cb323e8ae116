//! IPv4 packets (RFC 791; DSCP/ECN per RFC 2474 and RFC 3168).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The buffer may be longer than the packet's total length (Ethernet pads short frames to 60
//! bytes); [`Packet::payload`] stops at the total length.

use core::net::Ipv4Addr;

use super::bytes::{be16, set_be16};
use super::checksum;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Longest header (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
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

    /// Checks the buffer and the header's length fields. Once this passes, no accessor panics.
    ///
    /// * [`Error::Truncated`]: the buffer is shorter than 20 bytes, than IHL × 4, or than the
    ///   total length;
    /// * [`Error::BadVersion`]: the version is not 4;
    /// * [`Error::BadHeaderLen`]: IHL < 5;
    /// * [`Error::BadTotalLen`]: the total length is shorter than the header.
    ///
    /// The buffer may be longer than the total length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN {
            return Err(Error::BadHeaderLen);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        let tl = self.total_len() as usize;
        if tl < hl {
            return Err(Error::BadTotalLen);
        }
        if tl > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for a packet that passed `check_len`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (the upper 6 bits of the old TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (the lower 2 bits of the old TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The total length of the packet (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// The fragment offset **in bytes** (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for any fragment of a fragmented packet (MF set or a nonzero offset); only the
    /// first fragment carries the transport header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field: the [`ip_proto`](super::ip_proto) of the payload.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Alias of [`Packet::next_header`].
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.next_header()
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The options (bytes 20..header_len), empty for a 20-byte header.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len() as usize]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len() as usize]
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// The payload: from the end of the header to the total length (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field (4 for a valid packet).
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets the header length in bytes; it is stored divided by 4 (low 2 bits ignored).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len >> 2) & 0x0f);
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_be16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        set_be16(&mut self.buffer.as_mut()[field::IDENT], id);
    }

    #[inline]
    fn set_flags_offset(&mut self, v: u16) {
        set_be16(&mut self.buffer.as_mut()[field::FLG_OFF], v);
    }

    /// Clears the reserved flag, DF, MF and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flags_offset(0);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, df: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if df { v | FLAG_DF } else { v });
    }

    #[inline]
    pub fn set_more_frags(&mut self, mf: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if mf { v | FLAG_MF } else { v });
    }

    /// Sets the fragment offset from a value **in bytes** (a multiple of 8; low 3 bits ignored).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | (offset >> 3));
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_next_header(&mut self, proto: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = proto;
    }

    /// Alias of [`Packet::set_next_header`].
    #[inline]
    pub fn set_protocol(&mut self, proto: u8) {
        self.set_next_header(proto);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(&mut self.buffer.as_mut()[field::CHECKSUM], c);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes the header checksum and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL by one, updates the header checksum incrementally (RFC 1624), and
    /// returns the new TTL.
    ///
    /// A TTL that is already 0 is left alone (0 is returned). The forwarding stage drops the
    /// packet (and may answer ICMP time exceeded) when this returns 0.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let proto = u16::from(self.next_header());
        // TTL and protocol form one 16-bit word of the header.
        let old = (u16::from(ttl) << 8) | proto;
        let new = old - 0x0100;
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }

    /// Rewrites the source address and updates the header checksum incrementally (for NAT).
    /// Transport checksums covering the pseudo header must be updated by the caller, e.g. with
    /// [`checksum::update32`].
    #[inline]
    pub fn rewrite_src_addr(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), self.src_addr().into(), a.into());
        self.set_src_addr(a);
        self.set_checksum(c);
    }

    /// Rewrites the destination address and updates the header checksum incrementally.
    /// See [`Packet::rewrite_src_addr`].
    #[inline]
    pub fn rewrite_dst_addr(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), self.dst_addr().into(), a.into());
        self.set_dst_addr(a);
        self.set_checksum(c);
    }

    /// The options, mutably.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// The payload (to the total length), mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len() as usize, self.total_len() as usize);
        &mut self.buffer.as_mut()[hl..tl]
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
    use pnet_packet::ipv4::{self as pnet_ipv4, Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::{MutablePacket as _, Packet as _};
    use proptest::prelude::*;

    /// A UDP-carrying packet with one 4-byte option, built and checksummed by pnet, in a buffer
    /// with 10 bytes of trailing padding.
    fn pnet_packet(ttl: u8, flags: u8, frag: u16) -> Vec<u8> {
        let mut buf = vec![0u8; 24 + 16 + 10];
        let mut p = MutableIpv4Packet::new(&mut buf[..]).unwrap();
        p.set_version(4);
        p.set_header_length(6);
        p.set_dscp(46);
        p.set_ecn(1);
        p.set_total_length(40);
        p.set_identification(0xbeef);
        p.set_flags(flags);
        p.set_fragment_offset(frag);
        p.set_ttl(ttl);
        p.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        p.set_source(Ipv4Addr::new(10, 1, 2, 3));
        p.set_destination(Ipv4Addr::new(172, 16, 0, 99));
        p.packet_mut()[20..24].copy_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        p.packet_mut()[24..40].copy_from_slice(&[0x5a; 16]);
        let c = pnet_ipv4::checksum(&p.to_immutable());
        p.set_checksum(c);
        buf
    }

    #[test]
    fn parses_what_pnet_writes() {
        let buf = pnet_packet(64, 0b010, 0);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 1);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.protocol(), IpNextHeaderProtocols::Udp.0);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(172, 16, 0, 99));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0x5a; 16][..]); // padding excluded
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), pnet_ipv4::checksum(&Ipv4Packet::new(&buf).unwrap()));
    }

    #[test]
    fn fragment_fields() {
        let buf = pnet_packet(9, 0b001, 185);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 185 * 8);
        let buf = pnet_packet(9, 0, 1);
        assert!(Packet::new_unchecked(&buf[..]).is_fragment());
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 48];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_version(4);
            p.set_header_len(20);
            p.set_dscp(10);
            p.set_ecn(3);
            p.set_total_len(48);
            p.set_ident(7);
            p.set_dont_frag(true);
            p.set_more_frags(true);
            p.set_frag_offset(1480);
            p.set_ttl(3);
            p.set_next_header(ip_proto::TCP);
            p.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
            p.set_dst_addr(Ipv4Addr::new(198, 51, 100, 7));
            p.payload_mut().fill(0x11);
            p.fill_checksum();
            assert!(p.check_len().is_ok());
        }
        let q = Ipv4Packet::new(&buf[..]).unwrap();
        assert_eq!(q.get_version(), 4);
        assert_eq!(q.get_header_length(), 5);
        assert_eq!(q.get_dscp(), 10);
        assert_eq!(q.get_ecn(), 3);
        assert_eq!(q.get_total_length(), 48);
        assert_eq!(q.get_identification(), 7);
        assert_eq!(q.get_flags(), 0b011);
        assert_eq!(q.get_fragment_offset(), 185);
        assert_eq!(q.get_ttl(), 3);
        assert_eq!(q.get_next_level_protocol(), IpNextHeaderProtocols::Tcp);
        assert_eq!(q.get_source(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(q.get_destination(), Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(q.get_checksum(), pnet_ipv4::checksum(&q));
        assert_eq!(q.payload(), &[0x11; 28][..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.clear_flags();
        assert!(!p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
    }

    #[test]
    fn decrement_ttl_matches_pnet_recomputation() {
        let mut buf = pnet_packet(2, 0b010, 0);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.decrement_ttl(), 1);
        assert!(p.verify_checksum());
        assert_eq!(p.decrement_ttl(), 0);
        assert_eq!(p.decrement_ttl(), 0);
        assert!(p.verify_checksum());
        let c = p.checksum();
        let q = Ipv4Packet::new(&buf[..]).unwrap();
        assert_eq!(q.get_ttl(), 0);
        assert_eq!(c, pnet_ipv4::checksum(&q));
    }

    #[test]
    fn address_rewrite_keeps_checksum_valid() {
        let mut buf = pnet_packet(64, 0, 0);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.rewrite_src_addr(Ipv4Addr::new(100, 64, 0, 1));
        p.rewrite_dst_addr(Ipv4Addr::new(8, 8, 4, 4));
        assert!(p.verify_checksum());
        let q = Ipv4Packet::new(&buf[..]).unwrap();
        assert_eq!(q.get_source(), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(q.get_checksum(), pnet_ipv4::checksum(&q));
    }

    #[test]
    fn static_fixture_icmp_echo() {
        // The IPv4 header of a ping from 192.168.1.10 to 8.8.8.8 (84 bytes, DF, TTL 64), with
        // its checksum field zeroed.
        let hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc0, 0xa8,
            0x01, 0x0a, 0x08, 0x08, 0x08, 0x08,
        ];
        let mut buf = [0u8; 84];
        buf[..20].copy_from_slice(&hdr);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), pnet_ipv4::checksum(&Ipv4Packet::new(&buf).unwrap()));
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 64);
        assert_eq!(p.next_header(), ip_proto::ICMP);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let good = pnet_packet(64, 0, 0);
        assert!(Packet::new_checked(&good[..40]).is_ok());
        for n in 0..40 {
            assert_eq!(Packet::new_checked(&good[..n]), Err(Error::Truncated), "len {n}");
        }
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::BadVersion));
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::BadHeaderLen));
        b[0] = 0x4f;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Truncated));
        let mut b = good.clone();
        b[2..4].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::BadTotalLen));
        b[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
        b[2..4].copy_from_slice(&51u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Truncated));
    }

    fn exercise(data: &[u8]) {
        if let Ok(p) = Packet::new_checked(data) {
            let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len());
            let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset());
            let _ = (p.is_fragment(), p.ttl(), p.next_header(), p.checksum());
            let _ = (p.src_addr(), p.dst_addr(), p.options().len(), p.header().len());
            let _ = (p.verify_checksum(), p.payload().len());
            let mut c = data.to_vec();
            let mut m = Packet::new_unchecked(&mut c[..]);
            m.decrement_ttl();
            m.rewrite_src_addr(Ipv4Addr::LOCALHOST);
            m.rewrite_dst_addr(Ipv4Addr::BROADCAST);
            m.set_dscp(63);
            m.set_ecn(3);
            m.set_dont_frag(true);
            m.set_more_frags(true);
            m.set_frag_offset(0xffff);
            m.fill_checksum();
            let _ = (m.options_mut().len(), m.payload_mut().len());
            assert!(m.check_len().is_ok());
            assert!(m.verify_checksum());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            exercise(&data);
        }

        #[test]
        fn plausible_headers_never_panic(
            ihl in 0u8..16,
            tl in 0u16..120,
            rest in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut data = rest;
            if data.len() >= 4 {
                data[0] = 0x40 | ihl;
                data[2..4].copy_from_slice(&tl.to_be_bytes());
            }
            exercise(&data);
        }

        #[test]
        fn decrement_ttl_equals_full_recomputation(
            ttl in 1u8..=255,
            proto in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 20..21),
        ) {
            let mut buf = body;
            buf[0] = 0x45;
            buf[2..4].copy_from_slice(&20u16.to_be_bytes());
            let mut p = Packet::new_checked(&mut buf[..]).unwrap();
            p.set_ttl(ttl);
            p.set_next_header(proto);
            p.fill_checksum();
            p.decrement_ttl();
            let inc = p.checksum();
            let q = Ipv4Packet::new(&buf[..]).unwrap();
            prop_assert_eq!(inc, pnet_ipv4::checksum(&q));
        }
    }
}
