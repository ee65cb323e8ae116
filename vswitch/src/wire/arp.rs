//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ```text
//!  0        2        4    5    6        8               14          18              24          28
//! +--------+--------+----+----+--------+---------------+-----------+---------------+-----------+
//! | htype  | ptype  |hlen|plen|  oper  |  sender MAC   | sender IP |  target MAC   | target IP |
//! +--------+--------+----+----+--------+---------------+-----------+---------------+-----------+
//! ```
//!
//! Only the Ethernet/IPv4 layout (hlen 6, plen 4, 28 bytes) is parsed; the address fields of
//! other layouts are at other offsets, so `check_len` refuses them. Whether `htype` is Ethernet
//! and `ptype` is IPv4 is checked with [`Packet::is_ethernet_ipv4`]. The frame carrying an ARP
//! packet is padded to 60 bytes, so the buffer is usually longer than 28 bytes.

use core::net::Ipv4Addr;

use super::bytes::{be16, set_be16};
use super::ethernet::ethertype;
use super::{Error, Result};
use crate::types::MacAddr;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Length of the fixed part that says which layout follows.
const FIXED_LEN: usize = field::OPER.end;

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
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

    /// Checks the buffer: [`Error::Truncated`] if it is shorter than the 8-byte fixed part or
    /// than the 28 bytes of the Ethernet/IPv4 layout; [`Error::Unsupported`] if the address
    /// lengths are not 6 and 4. Once this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if self.hardware_len() != 6 || self.protocol_len() != 4 {
            return Err(Error::Unsupported);
        }
        if len < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// The protocol type (an ethertype; 0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::PTYPE])
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// True if the hardware type is Ethernet and the protocol type IPv4 (the lengths are
    /// checked by `check_len`).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET && self.protocol_type() == ethertype::IPV4
    }

    /// The operation (see [`operation`]).
    #[inline]
    pub fn operation(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::OPER])
    }

    /// Sender hardware address.
    #[inline]
    pub fn source_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address.
    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }

    /// True for a gratuitous ARP (sender and target protocol addresses equal).
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.buffer.as_ref()[field::SPA] == self.buffer.as_ref()[field::TPA]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        set_be16(&mut self.buffer.as_mut()[field::HTYPE], v);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        set_be16(&mut self.buffer.as_mut()[field::PTYPE], v);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    #[inline]
    pub fn set_operation(&mut self, v: u16) {
        set_be16(&mut self.buffer.as_mut()[field::OPER], v);
    }

    #[inline]
    pub fn set_source_hardware_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }

    #[inline]
    pub fn set_source_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }

    /// Writes the fixed part for Ethernet/IPv4 and the given operation.
    #[inline]
    fn fill_fixed(&mut self, oper: u16) {
        self.set_hardware_type(HTYPE_ETHERNET);
        self.set_protocol_type(ethertype::IPV4);
        self.set_hardware_len(6);
        self.set_protocol_len(4);
        self.set_operation(oper);
    }

    /// Writes a whole request: "who has `tpa`? tell `spa` (at `sha`)". The target hardware
    /// address is zero. The buffer must hold [`PACKET_LEN`] bytes.
    #[inline]
    pub fn fill_request(&mut self, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) {
        self.fill_fixed(operation::REQUEST);
        self.set_source_hardware_addr(sha);
        self.set_source_protocol_addr(spa);
        self.set_target_hardware_addr(MacAddr::ZERO);
        self.set_target_protocol_addr(tpa);
    }

    /// Writes a whole reply: "`spa` is at `sha`", addressed to `tha`/`tpa` (the requester).
    /// The buffer must hold [`PACKET_LEN`] bytes.
    #[inline]
    pub fn fill_reply(&mut self, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
        self.fill_fixed(operation::REPLY);
        self.set_source_hardware_addr(sha);
        self.set_source_protocol_addr(spa);
        self.set_target_hardware_addr(tha);
        self.set_target_protocol_addr(tpa);
    }

    /// Turns a received request into the reply to it, in place: the requester becomes the
    /// target, and the sender becomes (`our_mac`, the address that was asked for). The caller
    /// also rewrites the Ethernet header (destination = old sender, source = `our_mac`).
    #[inline]
    pub fn reply_in_place(&mut self, our_mac: MacAddr) {
        let (sha, spa) = (self.source_hardware_addr(), self.source_protocol_addr());
        let asked = self.target_protocol_addr();
        self.fill_reply(our_mac, asked, sha, spa);
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
    use crate::wire::ethernet::Frame;
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
    use pnet_packet::ethernet::EtherTypes;
    use proptest::prelude::*;

    /// A broadcast ARP request as it appears on the wire (60-byte frame, 18 bytes of padding):
    /// "who has 10.0.0.1? tell 10.0.0.23", from 52:54:00:12:34:56.
    fn request_frame() -> [u8; 60] {
        let mut f = [0u8; 60];
        // Ethernet: broadcast destination, source, ethertype ARP.
        f[0..14].copy_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
        ]);
        // htype 1, ptype 0x0800, hlen 6, plen 4, oper 1 (request).
        f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]);
        // Sender MAC and IP.
        f[22..32].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x17]);
        // Target MAC (unknown) and IP; the rest is padding.
        f[32..42].copy_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01]);
        f
    }

    #[test]
    fn parses_static_request() {
        let frame = request_frame();
        let f = Frame::new_checked(&frame[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::ARP);
        let p = Packet::new_checked(f.payload()).unwrap();
        assert!(p.is_ethernet_ipv4());
        assert_eq!(p.operation(), operation::REQUEST);
        assert_eq!(p.source_hardware_addr().to_string(), "52:54:00:12:34:56");
        assert_eq!(p.source_protocol_addr(), Ipv4Addr::new(10, 0, 0, 23));
        assert_eq!(p.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(!p.is_gratuitous());
        // Cross-check with pnet.
        let q = ArpPacket::new(f.payload()).unwrap();
        assert_eq!(q.get_operation(), ArpOperations::Request);
        assert_eq!(q.get_sender_proto_addr(), p.source_protocol_addr());
        assert_eq!(q.get_target_proto_addr(), p.target_protocol_addr());
        assert_eq!(q.get_sender_hw_addr().to_string(), p.source_hardware_addr().to_string());
    }

    #[test]
    fn parses_what_pnet_writes() {
        let mut buf = [0u8; 28];
        {
            let mut q = MutableArpPacket::new(&mut buf[..]).unwrap();
            q.set_hardware_type(ArpHardwareTypes::Ethernet);
            q.set_protocol_type(EtherTypes::Ipv4);
            q.set_hw_addr_len(6);
            q.set_proto_addr_len(4);
            q.set_operation(ArpOperations::Reply);
            q.set_sender_hw_addr("02:00:00:aa:bb:cc".parse().unwrap());
            q.set_sender_proto_addr(Ipv4Addr::new(192, 168, 7, 1));
            q.set_target_hw_addr("02:00:00:dd:ee:ff".parse().unwrap());
            q.set_target_proto_addr(Ipv4Addr::new(192, 168, 7, 1));
        }
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), operation::REPLY);
        assert_eq!(p.source_hardware_addr().to_string(), "02:00:00:aa:bb:cc");
        assert_eq!(p.target_hardware_addr().to_string(), "02:00:00:dd:ee:ff");
        assert_eq!(p.source_protocol_addr(), Ipv4Addr::new(192, 168, 7, 1));
        assert!(p.is_gratuitous());
    }

    #[test]
    fn reply_in_place_is_what_pnet_expects() {
        let mut frame = request_frame();
        let gw_mac: MacAddr = "02:00:0a:00:00:01".parse().unwrap();
        let mut p = Packet::new_checked(&mut frame[14..]).unwrap();
        p.reply_in_place(gw_mac);
        let q = ArpPacket::new(&frame[14..]).unwrap();
        assert_eq!(q.get_hardware_type(), ArpHardwareTypes::Ethernet);
        assert_eq!(q.get_protocol_type(), EtherTypes::Ipv4);
        assert_eq!(q.get_operation(), ArpOperations::Reply);
        assert_eq!(q.get_sender_hw_addr().to_string(), "02:00:0a:00:00:01");
        assert_eq!(q.get_sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(q.get_target_hw_addr().to_string(), "52:54:00:12:34:56");
        assert_eq!(q.get_target_proto_addr(), Ipv4Addr::new(10, 0, 0, 23));
        // Padding untouched.
        assert_eq!(frame[42..], [0; 18]);
    }

    #[test]
    fn fill_request_and_reply() {
        let mac: MacAddr = "02:00:00:00:00:09".parse().unwrap();
        let mut buf = [0xffu8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_request(mac, Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 1));
        let q = ArpPacket::new(&buf[..]).unwrap();
        assert_eq!(q.get_operation(), ArpOperations::Request);
        assert_eq!(q.get_hw_addr_len(), 6);
        assert_eq!(q.get_proto_addr_len(), 4);
        assert_eq!(q.get_target_hw_addr().to_string(), "00:00:00:00:00:00");
        assert_eq!(q.get_target_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_reply(mac, Ipv4Addr::new(1, 2, 3, 4), MacAddr::BROADCAST, Ipv4Addr::UNSPECIFIED);
        let q = ArpPacket::new(&buf[..]).unwrap();
        assert_eq!(q.get_operation(), ArpOperations::Reply);
        assert_eq!(q.get_sender_proto_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(q.get_target_hw_addr().to_string(), "ff:ff:ff:ff:ff:ff");
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let frame = request_frame();
        let arp = &frame[14..42];
        for n in 0..PACKET_LEN {
            assert_eq!(Packet::new_checked(&arp[..n]), Err(Error::Truncated), "{n}");
        }
        let mut b = arp.to_vec();
        b[4] = 8; // e.g. InfiniBand-style address length
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Unsupported));
        let mut b = arp.to_vec();
        b[5] = 16;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Unsupported));
        let mut b = arp.to_vec();
        b[2] = 0x86;
        b[3] = 0xdd;
        assert!(!Packet::new_checked(&b[..]).unwrap().is_ethernet_ipv4());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 0..40),
            force in any::<bool>(),
        ) {
            if force && data.len() >= 6 {
                data[4] = 6;
                data[5] = 4;
            }
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len());
                let _ = (p.protocol_len(), p.operation(), p.is_ethernet_ipv4());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr(), p.is_gratuitous());
                let mut c = data.clone();
                let mut m = Packet::new_unchecked(&mut c[..]);
                m.reply_in_place(MacAddr::BROADCAST);
                prop_assert!(m.check_len().is_ok());
                prop_assert_eq!(m.target_protocol_addr(), p.source_protocol_addr());
                prop_assert_eq!(m.source_protocol_addr(), p.target_protocol_addr());
            }
        }
    }
}
