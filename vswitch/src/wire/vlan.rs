//! IEEE 802.1Q VLAN tags (and 802.1ad S-tags, "QinQ", which have the same layout).
//!
//! A tag is 4 bytes inserted between the source MAC and the ethertype: a tag protocol
//! identifier (TPID, 0x8100 for a C-tag, 0x88a8 for an S-tag) in the position of the
//! ethertype, then the tag control information (TCI), then the original ethertype:
//!
//! ```text
//! untagged:  | dst (6) | src (6) | type (2) | payload ...
//! tagged:    | dst (6) | src (6) | TPID (2) | TCI (2) | type (2) | payload ...
//!                                  \_______ 4 bytes ______/
//!
//! TCI:  | PCP (3 bits) | DEI (1 bit) | VID (12 bits) |
//! ```
//!
//! The [`Header`] view covers the TCI and the inner ethertype, i.e. it is the payload of an
//! [`ethernet::Frame`] whose ethertype is a TPID (as in smoltcp and
//! pnet); its own payload is the next header (possibly another tag).
//!
//! # Push and pop in place
//!
//! The switch adds and removes tags without copying the payload, by moving only the 12 MAC
//! bytes inside the packet buffer's headroom:
//!
//! * **pop**: read the TCI at bytes 14..16, then move bytes `0..12` (the MACs) to `4..16`; the
//!   untagged frame now starts 4 bytes later, at the old offset 4. See [`pop_tag`].
//! * **push**: with 4 bytes of headroom before the frame, move the MACs from `4..16` to `0..12`
//!   (the frame now starts 4 bytes earlier) and write TPID + TCI at `12..16` with
//!   [`write_tag`]; the original ethertype is already at `16..18`. See [`push_tag`].

use super::bytes::{be16, set_be16};
use super::ethernet::{self, ethertype};
use super::{Error, Result};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length of the part of the tag the [`Header`] view covers (TCI + inner ethertype).
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Bytes one tag adds to a frame (TPID + TCI).
pub const TAG_LEN: usize = 4;
/// How many stacked tags [`inner_ethertype`] skips (an S-tag over a C-tag).
pub const MAX_TAGS: usize = 2;

const VID_MASK: u16 = 0x0fff;
const DEI_BIT: u16 = 0x1000;
const PCP_SHIFT: u16 = 13;

/// Builds a TCI from priority code point (0..=7, higher bits ignored), drop eligibility and
/// VLAN id (0..=4095, higher bits ignored).
#[inline]
pub const fn tci(pcp: u8, dei: bool, vid: u16) -> u16 {
    ((pcp as u16 & 0x7) << PCP_SHIFT) | if dei { DEI_BIT } else { 0 } | (vid & VID_MASK)
}

/// A view of a VLAN tag: the TCI and the encapsulated ethertype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps `buffer` and checks it with [`Header::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Header<T>> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks that the buffer holds the 4 bytes of TCI and ethertype. Once this passes, no
    /// accessor panics.
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

    /// The whole tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::TCI])
    }

    /// Priority code point (IEEE 802.1p class of service), 0..=7.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> PCP_SHIFT) as u8
    }

    /// Drop eligible indicator (formerly CFI).
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & DEI_BIT != 0
    }

    /// VLAN identifier, 0..=4095 (0: priority tag only; 4095: reserved).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The ethertype of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        set_be16(&mut self.buffer.as_mut()[field::TCI], tci);
    }

    /// Sets the priority code point (higher bits than 3 ignored).
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let t = self.tci() & !(0x7 << PCP_SHIFT);
        self.set_tci(t | (u16::from(pcp & 0x7) << PCP_SHIFT));
    }

    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        let t = self.tci() & !DEI_BIT;
        self.set_tci(if dei { t | DEI_BIT } else { t });
    }

    /// Sets the VLAN id (higher bits than 12 ignored).
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let t = self.tci() & !VID_MASK;
        self.set_tci(t | (vid & VID_MASK));
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        set_be16(&mut self.buffer.as_mut()[field::ETHERTYPE], t);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

const TPID_AT: usize = 12;
const TCI_AT: usize = 14;

/// The VLAN id of the outermost tag of a whole Ethernet frame, or `None` if the frame is
/// untagged (its ethertype is not 0x8100 or 0x88a8) or too short to hold a tag.
#[inline]
pub fn outer_vid(frame: &[u8]) -> Option<u16> {
    if frame.len() < ethernet::HEADER_LEN + TAG_LEN {
        return None;
    }
    if ethertype::is_vlan_tpid(be16(&frame[TPID_AT..TPID_AT + 2])) {
        Some(be16(&frame[TCI_AT..TCI_AT + 2]) & VID_MASK)
    } else {
        None
    }
}

/// Skips up to [`MAX_TAGS`] VLAN tags of a whole Ethernet frame and returns the ethertype of
/// what follows them and its offset in the frame (14, 18 or 22).
///
/// Errors with [`Error::Truncated`] if the frame is shorter than its Ethernet header plus its
/// tags. A third stacked tag is not skipped: its TPID is returned as the ethertype.
#[inline]
pub fn inner_ethertype(frame: &[u8]) -> Result<(u16, usize)> {
    let mut at = ethernet::HEADER_LEN;
    if frame.len() < at {
        return Err(Error::Truncated);
    }
    let mut t = be16(&frame[at - 2..at]);
    for _ in 0..MAX_TAGS {
        if !ethertype::is_vlan_tpid(t) {
            break;
        }
        at += TAG_LEN;
        if frame.len() < at {
            return Err(Error::Truncated);
        }
        t = be16(&frame[at - 2..at]);
    }
    Ok((t, at))
}

/// Writes a tag (TPID then TCI) into `dst[0..4]`.
///
/// # Panics
/// If `dst` is shorter than 4 bytes.
#[inline]
pub fn write_tag(dst: &mut [u8], tpid: u16, tci: u16) {
    set_be16(&mut dst[0..2], tpid);
    set_be16(&mut dst[2..4], tci);
}

/// Pushes a tag onto a frame in place.
///
/// `buf` is 4 bytes of headroom followed by the frame (`buf[4..]`, at least 14 bytes). On
/// return, `buf` itself is the tagged frame. Errors with [`Error::Truncated`] if `buf` is
/// shorter than 18 bytes.
#[inline]
pub fn push_tag(buf: &mut [u8], tpid: u16, tci: u16) -> Result<()> {
    if buf.len() < TAG_LEN + ethernet::HEADER_LEN {
        return Err(Error::Truncated);
    }
    buf.copy_within(TAG_LEN..TAG_LEN + 12, 0);
    write_tag(&mut buf[TPID_AT..TPID_AT + TAG_LEN], tpid, tci);
    Ok(())
}

/// Pops the outer tag of a tagged frame in place and returns its TCI.
///
/// `buf` is the tagged frame. On return, the untagged frame is `buf[4..]` (the first 4 bytes
/// are left over as headroom). Errors with [`Error::Truncated`] if `buf` is shorter than 18
/// bytes, and with [`Error::Unsupported`] if the frame is not tagged; `buf` is unchanged then.
#[inline]
pub fn pop_tag(buf: &mut [u8]) -> Result<u16> {
    if buf.len() < ethernet::HEADER_LEN + TAG_LEN {
        return Err(Error::Truncated);
    }
    if !ethertype::is_vlan_tpid(be16(&buf[TPID_AT..TPID_AT + 2])) {
        return Err(Error::Unsupported);
    }
    let tci = be16(&buf[TCI_AT..TCI_AT + 2]);
    buf.copy_within(0..12, TAG_LEN);
    Ok(tci)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::Frame;
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::vlan::{ClassOfService, MutableVlanPacket, VlanPacket};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    /// A VLAN 100, PCP 5 tagged IPv4 frame built by pnet.
    fn tagged_frame() -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        {
            let mut e = MutableEthernetPacket::new(&mut buf[..]).unwrap();
            e.set_destination("02:00:00:00:00:02".parse().unwrap());
            e.set_source("02:00:00:00:00:01".parse().unwrap());
            e.set_ethertype(EtherTypes::Vlan);
        }
        {
            let mut v = MutableVlanPacket::new(&mut buf[14..]).unwrap();
            v.set_priority_code_point(ClassOfService(5));
            v.set_drop_eligible_indicator(1);
            v.set_vlan_identifier(100);
            v.set_ethertype(EtherTypes::Ipv4);
            v.set_payload(&[0x45; 46]);
        }
        buf
    }

    #[test]
    fn parses_what_pnet_writes() {
        let buf = tagged_frame();
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::VLAN);
        let v = Header::new_checked(f.payload()).unwrap();
        assert_eq!(v.pcp(), 5);
        assert!(v.dei());
        assert_eq!(v.vid(), 100);
        assert_eq!(v.tci(), tci(5, true, 100));
        assert_eq!(v.ethertype(), ethertype::IPV4);
        assert_eq!(v.payload(), &[0x45; 46][..]);
        assert_eq!(outer_vid(&buf), Some(100));
        assert_eq!(inner_ethertype(&buf), Ok((ethertype::IPV4, 18)));
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0u8; 8];
        {
            let mut v = Header::new_checked(&mut buf[..]).unwrap();
            v.set_vid(0xfff);
            v.set_pcp(3);
            v.set_dei(true);
            v.set_dei(false);
            v.set_vid(4094);
            v.set_ethertype(ethertype::IPV6);
            v.payload_mut()[0] = 9;
        }
        let p = VlanPacket::new(&buf[..]).unwrap();
        assert_eq!(p.get_vlan_identifier(), 4094);
        assert_eq!(p.get_priority_code_point(), ClassOfService(3));
        assert_eq!(p.get_drop_eligible_indicator(), 0);
        assert_eq!(p.get_ethertype(), EtherTypes::Ipv6);
        assert_eq!(p.payload()[0], 9);
    }

    #[test]
    fn untagged_and_short_frames() {
        let mut buf = tagged_frame();
        buf[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        assert_eq!(outer_vid(&buf), None);
        assert_eq!(inner_ethertype(&buf), Ok((ethertype::IPV4, 14)));
        let tagged = tagged_frame();
        assert_eq!(outer_vid(&tagged[..17]), None);
        assert_eq!(inner_ethertype(&tagged[..17]), Err(Error::Truncated));
        assert_eq!(inner_ethertype(&tagged[..13]), Err(Error::Truncated));
        assert_eq!(Header::new_checked(&[0u8; 3][..]), Err(Error::Truncated));
    }

    #[test]
    fn qinq_stack() {
        // S-tag 200 over C-tag 100 over IPv6.
        let mut f = vec![0u8; 26];
        f[12..14].copy_from_slice(&ethertype::QINQ.to_be_bytes());
        f[14..16].copy_from_slice(&200u16.to_be_bytes());
        f[16..18].copy_from_slice(&ethertype::VLAN.to_be_bytes());
        f[18..20].copy_from_slice(&100u16.to_be_bytes());
        f[20..22].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        assert_eq!(outer_vid(&f), Some(200));
        assert_eq!(inner_ethertype(&f), Ok((ethertype::IPV6, 22)));
        // A third tag is not skipped.
        f[20..22].copy_from_slice(&ethertype::VLAN.to_be_bytes());
        assert_eq!(inner_ethertype(&f), Ok((ethertype::VLAN, 22)));
    }

    #[test]
    fn push_then_pop_round_trips() {
        let tagged = tagged_frame();
        // Build the untagged original with 4 bytes of headroom in front.
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(&tagged[..12]);
        buf.extend_from_slice(&tagged[16..]);
        push_tag(&mut buf, ethertype::VLAN, tci(5, true, 100)).unwrap();
        assert_eq!(buf, tagged);
        assert_eq!(pop_tag(&mut buf), Ok(tci(5, true, 100)));
        assert_eq!(&buf[4..16], &tagged[..12]);
        assert_eq!(&buf[16..], &tagged[16..]);
        // Now untagged: popping again is refused and leaves the frame alone.
        let before = buf[4..].to_vec();
        assert_eq!(pop_tag(&mut buf[4..]), Err(Error::Unsupported));
        assert_eq!(buf[4..], before[..]);
        assert_eq!(pop_tag(&mut [0u8; 17]), Err(Error::Truncated));
        assert_eq!(push_tag(&mut [0u8; 17], 0x8100, 1), Err(Error::Truncated));
    }

    #[test]
    fn tci_masks_out_of_range_values() {
        assert_eq!(tci(0xff, false, 0xffff), 0xefff);
        let mut b = [0u8; 4];
        write_tag(&mut b, ethertype::QINQ, tci(7, true, 4095));
        assert_eq!(b, [0x88, 0xa8, 0xff, 0xff]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = outer_vid(&data);
            let _ = inner_ethertype(&data);
            let mut c = data.clone();
            let _ = pop_tag(&mut c);
            let mut c = data.clone();
            let _ = push_tag(&mut c, 0x8100, 7);
            if let Ok(v) = Header::new_checked(&data[..]) {
                let _ = (v.tci(), v.pcp(), v.dei(), v.vid(), v.ethertype(), v.payload().len());
                let mut c = data.clone();
                let mut m = Header::new_unchecked(&mut c[..]);
                m.set_pcp(v.pcp());
                m.set_dei(v.dei());
                m.set_vid(v.vid());
                m.set_ethertype(v.ethertype());
                let _ = m.payload_mut().len();
                prop_assert_eq!(&c, &data);
            }
        }

        #[test]
        fn vid_matches_pnet(data in proptest::collection::vec(any::<u8>(), 18..40)) {
            let p = VlanPacket::new(&data[14..]).unwrap();
            let is_tagged = ethertype::is_vlan_tpid(u16::from_be_bytes([data[12], data[13]]));
            prop_assert_eq!(outer_vid(&data), is_tagged.then(|| p.get_vlan_identifier()));
        }
    }
}
