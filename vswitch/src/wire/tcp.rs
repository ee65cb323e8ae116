//! TCP segments (RFC 9293; ECN flags per RFC 3168).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (data offset > 5)                  |
//! ```
//!
//! TCP has no length field: the view's buffer **is** the segment, so open it on exactly the IP
//! payload (e.g. [`Ipv4Packet::payload`](super::ipv4::Packet::payload)). The checksum covers a
//! pseudo header and the whole buffer.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bytes::{be16, be32, set_be16, set_be32};
use super::checksum;
use super::ip_proto;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The flag bits of byte 13 (see [`Packet::flags`]).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment.
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

    /// Checks the buffer: [`Error::Truncated`] if it is shorter than 20 bytes or than the
    /// header length, [`Error::BadHeaderLen`] if the data offset is below 5. Once this passes,
    /// no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN {
            return Err(Error::BadHeaderLen);
        }
        if hl > len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// The header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte: a combination of the [`flags`] bits.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    #[inline]
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// The window field (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The options (bytes 20..header_len), not parsed.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len() as usize]
    }

    /// The data after the header, to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..]
    }

    /// Segment length for the pseudo header: the whole buffer.
    #[inline]
    fn seg_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    #[inline]
    fn verify_with(&self, pseudo: u32) -> bool {
        checksum::fold(pseudo + checksum::sum(self.buffer.as_ref())) == 0xffff
    }

    /// True if the checksum is correct over an IPv4 pseudo header.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let l = self.seg_len() as u16;
        self.verify_with(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, l))
    }

    /// True if the checksum is correct over an IPv6 pseudo header.
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let l = self.seg_len() as u32;
        self.verify_with(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, l))
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
    pub fn set_seq_number(&mut self, n: u32) {
        set_be32(&mut self.buffer.as_mut()[field::SEQ_NUM], n);
    }

    #[inline]
    pub fn set_ack_number(&mut self, n: u32) {
        set_be32(&mut self.buffer.as_mut()[field::ACK_NUM], n);
    }

    /// Sets the header length in bytes; stored divided by 4 (low 2 bits ignored). The reserved
    /// bits of the byte are kept.
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((len >> 2) << 4);
    }

    /// Sets the whole flags byte.
    #[inline]
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    #[inline]
    fn set_flag(&mut self, bit: u8, on: bool) {
        let f = self.flags() & !bit;
        self.set_flags(if on { f | bit } else { f });
    }

    #[inline]
    pub fn set_fin(&mut self, on: bool) {
        self.set_flag(flags::FIN, on);
    }

    #[inline]
    pub fn set_syn(&mut self, on: bool) {
        self.set_flag(flags::SYN, on);
    }

    #[inline]
    pub fn set_rst(&mut self, on: bool) {
        self.set_flag(flags::RST, on);
    }

    #[inline]
    pub fn set_psh(&mut self, on: bool) {
        self.set_flag(flags::PSH, on);
    }

    #[inline]
    pub fn set_ack(&mut self, on: bool) {
        self.set_flag(flags::ACK, on);
    }

    #[inline]
    pub fn set_urg(&mut self, on: bool) {
        self.set_flag(flags::URG, on);
    }

    #[inline]
    pub fn set_ece(&mut self, on: bool) {
        self.set_flag(flags::ECE, on);
    }

    #[inline]
    pub fn set_cwr(&mut self, on: bool) {
        self.set_flag(flags::CWR, on);
    }

    #[inline]
    pub fn set_window_len(&mut self, w: u16) {
        set_be16(&mut self.buffer.as_mut()[field::WIN_SIZE], w);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(&mut self.buffer.as_mut()[field::CHECKSUM], c);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, u: u16) {
        set_be16(&mut self.buffer.as_mut()[field::URGENT], u);
    }

    #[inline]
    fn fill_with(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = !checksum::fold(pseudo + checksum::sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }

    /// Computes and writes the checksum over an IPv4 pseudo header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let l = self.seg_len() as u16;
        self.fill_with(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, l));
    }

    /// Computes and writes the checksum over an IPv6 pseudo header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let l = self.seg_len() as u32;
        self.fill_with(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, l));
    }

    /// Computes and writes the checksum for either family (see
    /// [`checksum::pseudo_header`] for mixed families).
    #[inline]
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        let l = self.seg_len() as u32;
        self.fill_with(checksum::pseudo_header(src, dst, ip_proto::TCP, l));
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[hl..]
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
    use pnet_packet::tcp::{self as pnet_tcp, MutableTcpPacket, TcpFlags, TcpPacket};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    const S4: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 7);
    const D4: Ipv4Addr = Ipv4Addr::new(10, 244, 3, 9);

    fn s6() -> Ipv6Addr {
        "2001:db8:1::7".parse().unwrap()
    }

    fn d6() -> Ipv6Addr {
        "2001:db8:2::9".parse().unwrap()
    }

    /// A SYN|ACK|ECE segment with 8 option bytes (MSS + NOP NOP... ) and `data`, by pnet.
    fn pnet_segment(data: &[u8], v6: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 28 + data.len()];
        let mut p = MutableTcpPacket::new(&mut buf[..]).unwrap();
        p.set_source(443);
        p.set_destination(51000);
        p.set_sequence(0xdead_beef);
        p.set_acknowledgement(0x0102_0304);
        p.set_data_offset(7);
        p.set_flags(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE);
        p.set_window(65535);
        p.set_urgent_ptr(0x77);
        p.set_options(&[pnet_tcp::TcpOption::mss(1460), pnet_tcp::TcpOption::nop()]);
        p.set_payload(data);
        let c = if v6 {
            pnet_tcp::ipv6_checksum(&p.to_immutable(), &s6(), &d6())
        } else {
            pnet_tcp::ipv4_checksum(&p.to_immutable(), &S4, &D4)
        };
        p.set_checksum(c);
        buf
    }

    #[test]
    fn parses_what_pnet_writes() {
        let buf = pnet_segment(b"GET / HTTP/1.1\r\n", false);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 443);
        assert_eq!(p.dst_port(), 51000);
        assert_eq!(p.seq_number(), 0xdead_beef);
        assert_eq!(p.ack_number(), 0x0102_0304);
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.flags(), flags::SYN | flags::ACK | flags::ECE);
        assert!(p.syn() && p.ack() && p.ece());
        assert!(!p.fin() && !p.rst() && !p.psh() && !p.urg() && !p.cwr());
        assert_eq!(p.window_len(), 65535);
        assert_eq!(p.urgent_at(), 0x77);
        assert_eq!(p.options()[..4], [2, 4, 0x05, 0xb4]); // MSS 1460
        assert_eq!(p.options().len(), 8);
        assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n");
        assert!(p.verify_checksum_v4(S4, D4));
        assert!(p.verify_checksum(S4.into(), D4.into()));
        assert!(!p.verify_checksum_v4(S4, Ipv4Addr::new(10, 244, 3, 10)));
        assert!(!p.verify_checksum(S4.into(), d6().into()));

        let buf = pnet_segment(b"odd", true);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum_v6(s6(), d6()));
        assert!(p.verify_checksum(s6().into(), d6().into()));
    }

    #[test]
    fn fill_checksum_matches_pnet() {
        for v6 in [false, true] {
            for n in [0usize, 1, 2, 3, 536, 1449] {
                let data: Vec<u8> = (0..n).map(|i| (i * 13 + 1) as u8).collect();
                let reference = pnet_segment(&data, v6);
                let mut buf = reference.clone();
                let mut p = Packet::new_checked(&mut buf[..]).unwrap();
                p.set_checksum(0xabcd);
                if v6 {
                    p.fill_checksum_v6(s6(), d6());
                } else {
                    p.fill_checksum_v4(S4, D4);
                }
                assert_eq!(buf, reference, "v6={v6} n={n}");
                let mut p = Packet::new_checked(&mut buf[..]).unwrap();
                let (s, d): (IpAddr, IpAddr) =
                    if v6 { (s6().into(), d6().into()) } else { (S4.into(), D4.into()) };
                p.fill_checksum(s, d);
                assert_eq!(buf, reference);
            }
        }
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 24];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_src_port(1);
            p.set_dst_port(2);
            p.set_seq_number(3);
            p.set_ack_number(4);
            p.set_header_len(20);
            p.set_flags(0xff);
            p.set_fin(false);
            p.set_urg(false);
            p.set_ece(false);
            p.set_cwr(false);
            p.set_syn(false);
            p.set_rst(true);
            p.set_psh(true);
            p.set_ack(true);
            p.set_window_len(1024);
            p.set_urgent_at(0);
            p.payload_mut().copy_from_slice(b"data");
            p.fill_checksum_v4(S4, D4);
            assert!(p.check_len().is_ok());
            assert!(p.options_mut().is_empty());
        }
        let q = TcpPacket::new(&buf[..]).unwrap();
        assert_eq!(q.get_source(), 1);
        assert_eq!(q.get_destination(), 2);
        assert_eq!(q.get_sequence(), 3);
        assert_eq!(q.get_acknowledgement(), 4);
        assert_eq!(q.get_data_offset(), 5);
        assert_eq!(q.get_flags(), TcpFlags::RST | TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(q.get_window(), 1024);
        assert_eq!(q.get_checksum(), pnet_tcp::ipv4_checksum(&q, &S4, &D4));
        assert_eq!(q.payload(), b"data");
    }

    #[test]
    fn flag_constants_match_pnet() {
        assert_eq!(flags::FIN, TcpFlags::FIN);
        assert_eq!(flags::SYN, TcpFlags::SYN);
        assert_eq!(flags::RST, TcpFlags::RST);
        assert_eq!(flags::PSH, TcpFlags::PSH);
        assert_eq!(flags::ACK, TcpFlags::ACK);
        assert_eq!(flags::URG, TcpFlags::URG);
        assert_eq!(flags::ECE, TcpFlags::ECE);
        assert_eq!(flags::CWR, TcpFlags::CWR);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let buf = pnet_segment(b"", false);
        for n in 0..28 {
            assert_eq!(Packet::new_checked(&buf[..n]), Err(Error::Truncated), "{n}");
        }
        let mut b = buf.clone();
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::BadHeaderLen));
        b[12] = 0xf0;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
                let _ = (p.header_len(), p.flags(), p.fin(), p.syn(), p.rst(), p.psh());
                let _ = (p.ack(), p.urg(), p.ece(), p.cwr(), p.window_len(), p.checksum());
                let _ = (p.urgent_at(), p.options().len(), p.payload().len());
                let _ = p.verify_checksum_v4(S4, D4);
                let _ = p.verify_checksum_v6(s6(), d6());
                let mut c = data.clone();
                let mut m = Packet::new_unchecked(&mut c[..]);
                m.set_flags(0);
                m.set_syn(true);
                m.fill_checksum_v4(S4, D4);
                prop_assert!(m.verify_checksum_v4(S4, D4));
                m.fill_checksum_v6(s6(), d6());
                prop_assert!(m.verify_checksum_v6(s6(), d6()));
                let _ = (m.options_mut().len(), m.payload_mut().len());
            }
        }

        #[test]
        fn checksum_matches_pnet(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let reference = pnet_segment(&data, false);
            let mut buf = reference.clone();
            Packet::new_checked(&mut buf[..]).unwrap().fill_checksum_v4(S4, D4);
            prop_assert_eq!(buf, reference);
        }
    }
}
