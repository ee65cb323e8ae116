//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the ones' complement of the ones' complement sum of the data taken as
//! big-endian 16-bit words (an odd trailing byte is padded with a zero byte). It is used by
//! IPv4 (header only), ICMPv4 (whole message), and UDP/TCP/ICMPv6 (whole segment plus a
//! *pseudo header* of addresses, protocol and length).
//!
//! The pieces compose: a *partial sum* is a `u32` from [`sum`] or the `pseudo_header_*`
//! functions; partial sums are added with plain `+` (each is small, so thousands of them can be
//! added without overflow), [`fold`] reduces a partial sum to 16 bits, and the value written to
//! a checksum field is `!fold(total)`. For a 64 KB segment split into pieces, sum each piece and
//! add the sums — every piece except the last must have an even length, since an odd piece
//! would shift the byte pairing of the next one.
//!
//! Verifying a received checksum is computing the sum over the data *including* the checksum
//! field: the data is intact when the folded sum is `0xffff` (i.e. [`checksum`] returns 0).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The ones' complement sum of `data` as big-endian 16-bit words, as a partial sum.
///
/// The result is already folded to at most `0xffff`, and is `0` only when every byte of `data`
/// is zero (it is the end-around-carry sum, so its value is exactly what a 16-bit loop computes).
///
/// This is on the hot path (software segmentation sums 64 KB segments): it sums the data as
/// native-endian 32-bit words into a 64-bit accumulator — a loop the compiler vectorises — and
/// swaps bytes once at the end (RFC 1071 §2(B): the sum is byte-order independent).
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(4);
    // Each step adds at most 2^32 - 1, so the accumulator cannot overflow below 2^32 words
    // (16 GiB), far more than any packet.
    let mut acc: u64 = 0;
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rem = words.remainder();
    if !rem.is_empty() {
        // Zero-pad to a whole word: this is also the odd-byte rule, since the last byte becomes
        // the high-order byte of a big-endian word whose low-order byte is zero.
        let mut last = [0u8; 4];
        last[..rem.len()].copy_from_slice(rem);
        acc += u64::from(u32::from_ne_bytes(last));
    }
    // Fold 64 -> 32 -> 16 bits with end-around carry. 2^32 ≡ 2^16 ≡ 1 (mod 2^16 - 1), so each
    // fold preserves the value modulo 0xffff, and it never turns a nonzero value into zero.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let mut s = acc as u32;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    // The words were read in native order; the sum of byte-swapped words is the byte-swapped sum.
    u32::from(u16::from_be(s as u16))
}

/// Reduces a partial sum to 16 bits with end-around carry.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
///
/// Over data that includes a correct checksum field this returns 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The partial sum of the IPv4 pseudo header (RFC 768, RFC 9293 §3.1): source and destination
/// addresses, zero, protocol, and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len)
}

/// The partial sum of the IPv6 pseudo header (RFC 8200 §8.1): source and destination
/// addresses, the 32-bit upper-layer length, three zero bytes and the next header value.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u32 {
    let mut s = u32::from(proto) + (len >> 16) + (len & 0xffff);
    for w in src.segments() {
        s += u32::from(w);
    }
    for w in dst.segments() {
        s += u32::from(w);
    }
    s
}

/// The pseudo header partial sum for either family.
///
/// Both addresses are expected to be of the same family. If they are not (which no well-formed
/// packet produces), both are taken as IPv6, the IPv4 one as an IPv4-mapped address, so that
/// the function still returns rather than panics.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, proto, len as u16),
        _ => pseudo_header_v6(to_v6(src), to_v6(dst), proto, len),
    }
}

#[inline]
fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Incrementally updates checksum `old_csum` for one 16-bit word of the covered data changing
/// from `old` to `new`, without touching the rest of the data (RFC 1624, eqn. 3):
///
/// ```text
/// HC' = ~(~HC + ~m + m')
/// ```
///
/// where `+` is ones' complement addition. Unlike the older `HC' = HC - ~m - m'` (RFC 1141),
/// this form handles the ones' complement "negative zero" correctly. The result equals a full
/// recomputation whenever the updated data is not all zeros; for all-zero data, recomputation
/// gives `0xffff` and this gives `0x0000`, which ones' complement arithmetic treats as equal.
/// (Headers this is used on — IPv4, with its nonzero version nibble — are never all zeros.)
#[inline]
pub fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!old_csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// Incrementally updates checksum `old_csum` for a 32-bit field (e.g. an IPv4 address, which
/// also appears in the UDP/TCP pseudo header) changing from `old` to `new`. The field must sit
/// at an even offset of the covered data. See [`update16`].
#[inline]
pub fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!old_csum) + (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A straightforward RFC 1071 reference: 16-bit big-endian words, end-around carry.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header (Wikipedia "IPv4 header checksum"): checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10] = 0xb8;
        hdr[11] = 0x61;
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn empty_and_zero_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0; 9]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(0xffff + 0xffff), 0xffff);
        assert_eq!(fold(u32::MAX), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_manual_sum() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let d = Ipv4Addr::new(192, 168, 1, 2);
        let mut ph = [0u8; 12];
        ph[0..4].copy_from_slice(&s.octets());
        ph[4..8].copy_from_slice(&d.octets());
        ph[9] = 17;
        ph[10..12].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(fold(pseudo_header_v4(s, d, 17, 1234)), fold(sum(&ph)));
        assert_eq!(fold(pseudo_header(s.into(), d.into(), 17, 1234)), fold(sum(&ph)));

        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "fe80::1234:5678:9abc:def0".parse().unwrap();
        let mut ph6 = [0u8; 40];
        ph6[0..16].copy_from_slice(&s6.octets());
        ph6[16..32].copy_from_slice(&d6.octets());
        ph6[32..36].copy_from_slice(&70000u32.to_be_bytes());
        ph6[39] = 6;
        assert_eq!(fold(pseudo_header_v6(s6, d6, 6, 70000)), fold(sum(&ph6)));
        assert_eq!(fold(pseudo_header(s6.into(), d6.into(), 6, 70000)), fold(sum(&ph6)));
        // Mixed families do not panic.
        let _ = pseudo_header(s.into(), d6.into(), 6, 20);
    }

    #[test]
    fn update_example_from_rfc1624() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// Two checksums are equivalent when equal, or both encode a zero sum.
    fn equivalent(a: u16, b: u16) -> bool {
        a == b || (a | b == 0xffff && a & b == 0)
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(fold(sum(&data)), reference_sum(&data));
        }

        #[test]
        fn sum_of_even_pieces_is_sum_of_whole(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..300,
        ) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }

        #[test]
        fn update16_matches_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 2..200),
            idx in any::<usize>(),
            new in any::<u16>(),
        ) {
            let len = data.len() & !1;
            data.truncate(len);
            let at = (idx % (len / 2)) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let inc = update16(before, old, new);
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(inc, after);
            } else {
                prop_assert!(equivalent(inc, after));
            }
        }

        #[test]
        fn update32_matches_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 4..200),
            idx in any::<usize>(),
            new in any::<u32>(),
        ) {
            let len = data.len() & !1;
            data.truncate(len);
            let at = (idx % (len / 2 - 1)) * 2;
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let inc = update32(before, old, new);
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(inc, after);
            } else {
                prop_assert!(equivalent(inc, after));
            }
        }
    }
}
