//! Ethernet II frames (IEEE 802.3, DIX framing).
//!
//! ```text
//!  0                   6                  12        14
//! +-------------------+-------------------+---------+-----------------
//! | destination MAC   | source MAC        | type    | payload ...
//! +-------------------+-------------------+---------+-----------------
//! ```
//!
//! The frame as the switch sees it has no preamble and no FCS. A VLAN-tagged frame has
//! ethertype [`ethertype::VLAN`] (or [`ethertype::QINQ`]) and a [`crate::wire::vlan::Header`]
//! as its payload.

use super::bytes::{be16, set_be16};
use super::{Error, Result};
use crate::types::MacAddr;

/// EtherType values (IEEE registry).
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86DD;
    /// IEEE 802.1ad service VLAN tag (S-tag, "QinQ").
    pub const QINQ: u16 = 0x88A8;

    /// True for the tag protocol identifiers the switch treats as a VLAN tag.
    #[inline]
    pub fn is_vlan_tpid(t: u16) -> bool {
        t == VLAN || t == QINQ
    }
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet header (two MACs and the ethertype).
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Shortest frame on the wire without the FCS; shorter frames are padded by the sender.
pub const MIN_FRAME_LEN: usize = 60;
/// Length of the frame check sequence, which the switch never sees.
pub const FCS_LEN: usize = 4;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` and checks it with [`Frame::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds the 14-byte header. Once this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The ethertype (for a tagged frame, the outer tag's TPID).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        set_be16(&mut self.buffer.as_mut()[field::ETHERTYPE], t);
    }

    /// Everything after the 14-byte header, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    #[test]
    fn parses_what_pnet_writes() {
        let mut buf = [0u8; 64];
        {
            let mut p = MutableEthernetPacket::new(&mut buf[..]).unwrap();
            p.set_destination("ff:ff:ff:ff:ff:ff".parse().unwrap());
            p.set_source("02:00:0a:f4:01:02".parse().unwrap());
            p.set_ethertype(EtherTypes::Ipv6);
            p.set_payload(&[0xaa; 50]);
        }
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr().to_string(), "02:00:0a:f4:01:02");
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.payload(), &[0xaa; 50][..]);
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 60];
        {
            let mut f = Frame::new_checked(&mut buf[..]).unwrap();
            f.set_dst_addr("01:00:5e:00:00:01".parse().unwrap());
            f.set_src_addr("02:11:22:33:44:55".parse().unwrap());
            f.set_ethertype(ethertype::ARP);
            f.payload_mut()[0] = 0x42;
        }
        let p = EthernetPacket::new(&buf[..]).unwrap();
        assert_eq!(p.get_destination().to_string(), "01:00:5e:00:00:01");
        assert_eq!(p.get_source().to_string(), "02:11:22:33:44:55");
        assert_eq!(p.get_ethertype(), EtherTypes::Arp);
        assert_eq!(p.payload()[0], 0x42);
    }

    #[test]
    fn constants_match_pnet() {
        assert_eq!(ethertype::IPV4, EtherTypes::Ipv4.0);
        assert_eq!(ethertype::IPV6, EtherTypes::Ipv6.0);
        assert_eq!(ethertype::ARP, EtherTypes::Arp.0);
        assert_eq!(ethertype::VLAN, EtherTypes::Vlan.0);
        // pnet's `QinQ` is the pre-standard 0x9100; 802.1ad assigned 0x88a8.
        assert_eq!(ethertype::QINQ, 0x88a8);
        assert!(ethertype::is_vlan_tpid(0x8100) && ethertype::is_vlan_tpid(0x88a8));
        assert!(!ethertype::is_vlan_tpid(0x0800));
        assert_eq!(HEADER_LEN, 14);
    }

    #[test]
    fn truncated_is_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&[0u8; 14][..n]), Err(Error::Truncated));
        }
        let f = Frame::new_checked(&[0u8; 14][..]).unwrap();
        assert!(f.payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&data[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
                let mut copy = data.clone();
                let mut m = Frame::new_unchecked(&mut copy[..]);
                m.set_dst_addr(f.src_addr());
                m.set_src_addr(f.dst_addr());
                m.set_ethertype(f.ethertype());
                let _ = m.payload_mut().len();
            }
        }
    }
}
