//! ICMP for IPv4 (RFC 792; "fragmentation needed" MTU per RFC 1191).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Rest of header: echo identifier + sequence number,        |
//! |     unused + next-hop MTU, or unused                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data: echo data, or for errors the offending IP header    |
//! |     and the first 8 bytes of its payload                      |
//! ```
//!
//! The checksum covers the whole ICMP message (no pseudo header); open the view on exactly
//! the IPv4 payload.

use super::bytes::{be16, be32, set_be16, set_be32};
use super::checksum;
use super::{Error, Result};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 6..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// ICMP message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Codes of [`msg_type::DEST_UNREACHABLE`].
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; the next-hop MTU is in bytes 6..8 (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Codes of [`msg_type::TIME_EXCEEDED`].
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    pub const FRAG_REASSEMBLY: u8 = 1;
}

/// A view of an ICMPv4 message.
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

    /// Checks that the buffer holds the 8-byte header ([`Error::Truncated`] otherwise). Once
    /// this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type (see [`msg_type`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The 4 type-dependent bytes after the checksum.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::REST])
    }

    /// The identifier of an echo request or reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// The sequence number of an echo request or reply.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    /// The next-hop MTU of a "fragmentation needed" message.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::MTU])
    }

    /// Echo data, or the quoted datagram of an error message.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// True if the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    #[inline]
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(&mut self.buffer.as_mut()[field::CHECKSUM], c);
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        set_be32(&mut self.buffer.as_mut()[field::REST], v);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        set_be16(&mut self.buffer.as_mut()[field::ECHO_IDENT], id);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        set_be16(&mut self.buffer.as_mut()[field::ECHO_SEQNO], seq);
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        set_be16(&mut self.buffer.as_mut()[field::MTU], mtu);
    }

    /// Computes and writes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Turns an echo request into an echo reply in place (type 8 → 0), updating the checksum
    /// incrementally; identifier, sequence number and data stay. The caller swaps the IP
    /// addresses.
    #[inline]
    pub fn echo_request_to_reply(&mut self) {
        let old = u16::from_be_bytes([self.msg_type(), self.msg_code()]);
        let new = u16::from_be_bytes([msg_type::ECHO_REPLY, 0]);
        let c = checksum::update16(self.checksum(), old, new);
        // RFC 1624's update yields 0x0000 where recomputation over an all-zero message yields
        // 0xffff; 0xffff verifies in every case where either value is right, so prefer it.
        let c = if c == 0 { 0xffff } else { c };
        self.set_msg_type(msg_type::ECHO_REPLY);
        self.set_msg_code(0);
        self.set_checksum(c);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
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
    use pnet_packet::icmp::destination_unreachable::MutableDestinationUnreachablePacket;
    use pnet_packet::icmp::echo_request::{EchoRequestPacket, MutableEchoRequestPacket};
    use pnet_packet::icmp::{self as pnet_icmp, IcmpCode, IcmpPacket, IcmpTypes};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    /// The ICMP part of a Linux `ping` echo request (id 0x1c46, seq 1, 56 data bytes: a
    /// 16-byte timestamp then 0x10..0x37), checksum field included.
    fn linux_ping() -> Vec<u8> {
        let mut m = vec![
            0x08, 0x00, 0x00, 0x00, 0x1c, 0x46, 0x00, 0x01, // type code csum id seq
            0x2b, 0x57, 0x9e, 0x65, 0x00, 0x00, 0x00, 0x00, // struct timeval: tv_sec
            0x8c, 0x3e, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, // tv_usec
        ];
        m.extend(0x10u8..0x38);
        // Fill the checksum with pnet, an independent implementation.
        let c = pnet_icmp::checksum(&IcmpPacket::new(&m).unwrap());
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn parses_echo_request() {
        let m = linux_ping();
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1c46);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.rest_of_header(), 0x1c46_0001);
        assert_eq!(p.payload().len(), 56);
        assert!(p.verify_checksum());
        let q = EchoRequestPacket::new(&m).unwrap();
        assert_eq!(q.get_identifier(), p.echo_ident());
        assert_eq!(q.get_sequence_number(), p.echo_seq_no());
    }

    #[test]
    fn echo_reply_in_place_matches_recomputation() {
        let mut m = linux_ping();
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        p.echo_request_to_reply();
        assert!(p.verify_checksum());
        let c = p.checksum();
        let q = IcmpPacket::new(&m).unwrap();
        assert_eq!(q.get_icmp_type(), IcmpTypes::EchoReply);
        assert_eq!(c, pnet_icmp::checksum(&q));
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut m = [0u8; 36];
        {
            let mut p = Packet::new_unchecked(&mut m[..]);
            p.set_msg_type(msg_type::DEST_UNREACHABLE);
            p.set_msg_code(unreachable::FRAG_NEEDED);
            p.set_rest_of_header(0);
            p.set_next_hop_mtu(1450);
            p.payload_mut().fill(0x45);
            p.fill_checksum();
        }
        let q = IcmpPacket::new(&m).unwrap();
        assert_eq!(q.get_icmp_type(), IcmpTypes::DestinationUnreachable);
        assert_eq!(q.get_icmp_code(), IcmpCode(4));
        assert_eq!(q.get_checksum(), pnet_icmp::checksum(&q));
        assert_eq!(&q.payload()[2..4], &1450u16.to_be_bytes());

        let mut e = [0u8; 12];
        {
            let mut p = Packet::new_unchecked(&mut e[..]);
            p.set_msg_type(msg_type::ECHO_REQUEST);
            p.set_echo_ident(0xabcd);
            p.set_echo_seq_no(42);
            p.fill_checksum();
        }
        let q = EchoRequestPacket::new(&e).unwrap();
        assert_eq!(q.get_identifier(), 0xabcd);
        assert_eq!(q.get_sequence_number(), 42);
    }

    #[test]
    fn parses_what_pnet_writes() {
        let mut m = [0u8; 36];
        {
            let mut q = MutableDestinationUnreachablePacket::new(&mut m[..]).unwrap();
            q.set_icmp_type(IcmpTypes::DestinationUnreachable);
            q.set_icmp_code(IcmpCode(unreachable::PORT));
            q.set_payload(&[0x45; 28]);
        }
        let c = pnet_icmp::checksum(&IcmpPacket::new(&m).unwrap());
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(p.msg_code(), unreachable::PORT);
        assert_eq!(p.payload(), &[0x45; 28][..]);
        assert!(p.verify_checksum());
        let mut m2 = m;
        m2[20] ^= 1;
        assert!(!Packet::new_checked(&m2[..]).unwrap().verify_checksum());

        let mut e = [0u8; 8];
        {
            let mut q = MutableEchoRequestPacket::new(&mut e[..]).unwrap();
            q.set_icmp_type(IcmpTypes::EchoRequest);
            q.set_identifier(7);
            q.set_sequence_number(9);
        }
        let p = Packet::new_checked(&e[..]).unwrap();
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (7, 9));
    }

    #[test]
    fn constants_match_pnet() {
        assert_eq!(msg_type::ECHO_REPLY, IcmpTypes::EchoReply.0);
        assert_eq!(msg_type::ECHO_REQUEST, IcmpTypes::EchoRequest.0);
        assert_eq!(msg_type::DEST_UNREACHABLE, IcmpTypes::DestinationUnreachable.0);
        assert_eq!(msg_type::TIME_EXCEEDED, IcmpTypes::TimeExceeded.0);
        assert_eq!(msg_type::REDIRECT, IcmpTypes::RedirectMessage.0);
        assert_eq!(msg_type::PARAM_PROBLEM, IcmpTypes::ParameterProblem.0);
        assert_eq!(time_exceeded::TTL, 0);
    }

    #[test]
    fn truncated_is_rejected() {
        let m = linux_ping();
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&m[..n]), Err(Error::Truncated));
        }
        assert!(Packet::new_checked(&m[..8]).unwrap().payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header());
                let _ = (p.echo_ident(), p.echo_seq_no(), p.next_hop_mtu());
                let _ = (p.payload().len(), p.verify_checksum());
                let mut c = data.clone();
                let mut m = Packet::new_unchecked(&mut c[..]);
                m.fill_checksum();
                prop_assert!(m.verify_checksum());
                m.set_msg_type(msg_type::ECHO_REQUEST);
                m.fill_checksum();
                m.echo_request_to_reply();
                prop_assert!(m.verify_checksum());
                let _ = m.payload_mut().len();
            }
        }
    }
}
