//! VXLAN headers (RFC 7348).
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A VXLAN packet is an Ethernet frame carried in UDP to port 4789 ([`PORT`]; Linux's and
//! Flannel's default is [`PORT_LINUX`], 8472). The I flag must be set; the reserved bits are
//! ignored on receive and sent as zero.
//!
//! The full encapsulation overhead in front of the inner frame is outer Ethernet (14) + outer
//! IPv4 (20) + UDP (8) + VXLAN (8) = **50 bytes** ([`OVERHEAD_V4`]); with an outer IPv6 header
//! (40) it is 70 ([`OVERHEAD_V6`]), and an outer VLAN tag adds 4. An inner frame of a 1500-byte
//! MTU therefore needs an underlay MTU of 1550 (the inner Ethernet header, 14 bytes, counts
//! against the outer IP MTU: 1500 + 14 + 8 + 8 + 20 = 1550), or the pod MTU must be 1450.

use super::bytes::{be32, set_be32};
use super::{Error, Result};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    /// VNI (3 bytes) and the last reserved byte.
    pub const VNI_RSVD: Range<usize> = 4..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The IANA-assigned UDP destination port.
pub const PORT: u16 = 4789;
/// The UDP port used by the Linux kernel's default and by Flannel.
pub const PORT_LINUX: u16 = 8472;
/// The I flag: the VNI is valid. Must be set.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes in front of the inner frame with an outer IPv4 header: 14 + 20 + 8 + 8.
pub const OVERHEAD_V4: usize = 14 + 20 + 8 + HEADER_LEN;
/// Bytes in front of the inner frame with an outer IPv6 header: 14 + 40 + 8 + 8.
pub const OVERHEAD_V6: usize = 14 + 40 + 8 + HEADER_LEN;

/// A view of a VXLAN header and the inner frame after it.
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

    /// Checks the buffer: [`Error::Truncated`] if it is shorter than 8 bytes,
    /// [`Error::BadFlags`] if the I flag is clear. Once this passes, no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.flags() & FLAG_I == 0 {
            return Err(Error::BadFlags);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::VNI_RSVD]) >> 8
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    #[inline]
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    /// Sets the VNI (bits above 24 ignored); the reserved byte after it is kept.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let b = &mut self.buffer.as_mut()[field::VNI_RSVD];
        let rsvd = u32::from(b[3]);
        set_be32(b, ((vni & VNI_MAX) << 8) | rsvd);
    }

    /// Writes a whole header: I flag set, reserved bits zero, and `vni`.
    #[inline]
    pub fn fill(&mut self, vni: u32) {
        let b = self.buffer.as_mut();
        b[field::FLAGS] = FLAG_I;
        b[field::RESERVED1].fill(0);
        set_be32(&mut b[field::VNI_RSVD], (vni & VNI_MAX) << 8);
    }

    /// The inner Ethernet frame, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Header<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::vxlan::{MutableVxlanPacket, VxlanPacket};
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    #[test]
    fn parses_what_pnet_writes() {
        let mut buf = [0u8; 8 + 14];
        {
            let mut q = MutableVxlanPacket::new(&mut buf[..]).unwrap();
            q.set_flags(0x08);
            q.set_vni(0x123456);
            q.set_reserved2(0xee);
            q.set_payload(&[0xab; 14]);
        }
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!(h.flags(), FLAG_I);
        assert_eq!(h.vni(), 0x123456);
        assert_eq!(h.payload(), &[0xab; 14][..]);
    }

    #[test]
    fn pnet_reads_what_we_write() {
        let mut buf = [0xffu8; 8 + 4];
        {
            let mut h = Header::new_unchecked(&mut buf[..]);
            h.fill(0x0100_0001); // bit 24 is ignored
            assert_eq!(h.vni(), 1);
            h.set_vni(VNI_MAX);
            h.payload_mut().fill(7);
        }
        assert_eq!(buf[..8], [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
        let q = VxlanPacket::new(&buf[..]).unwrap();
        assert_eq!(q.get_flags(), 0x08);
        assert_eq!(q.get_reserved1(), 0);
        assert_eq!(q.get_vni(), VNI_MAX);
        assert_eq!(q.get_reserved2(), 0);
        assert_eq!(q.payload(), &[7; 4][..]);
        let mut h = Header::new_unchecked(&mut buf[..]);
        h.set_flags(0x0c);
        assert_eq!(VxlanPacket::new(&buf[..]).unwrap().get_flags(), 0x0c);
    }

    #[test]
    fn constants() {
        assert_eq!(HEADER_LEN, 8);
        assert_eq!(OVERHEAD_V4, 50);
        assert_eq!(OVERHEAD_V6, 70);
        assert_eq!((PORT, PORT_LINUX), (4789, 8472));
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let good = [0x08, 0, 0, 0, 0, 0, 42, 0];
        for n in 0..8 {
            assert_eq!(Header::new_checked(&good[..n]), Err(Error::Truncated));
        }
        assert_eq!(Header::new_checked(&good[..]).unwrap().vni(), 42);
        let bad = [0x00, 0, 0, 0, 0, 0, 42, 0];
        assert_eq!(Header::new_checked(&bad[..]), Err(Error::BadFlags));
        let bad = [0xf7, 0, 0, 0, 0, 0, 42, 0];
        assert_eq!(Header::new_checked(&bad[..]), Err(Error::BadFlags));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(h) = Header::new_checked(&data[..]) {
                let q = VxlanPacket::new(&data[..]).unwrap();
                prop_assert_eq!(h.vni(), q.get_vni());
                prop_assert_eq!(h.flags(), q.get_flags());
                let _ = h.payload().len();
                let mut c = data.clone();
                let mut m = Header::new_unchecked(&mut c[..]);
                m.set_vni(h.vni());
                m.set_flags(h.flags());
                let _ = m.payload_mut().len();
                prop_assert_eq!(&c, &data);
                let mut m = Header::new_unchecked(&mut c[..]);
                m.fill(0xabcdef);
                prop_assert!(m.check_len().is_ok());
            }
        }
    }
}
