//! Small value types shared by every layer: MAC addresses, port ids and VLAN ids.
//!
//! They are plain `Copy` values with parsing and display, so that the control plane, the tables
//! and the data path all speak of the same things in the same way.

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC address from the first six bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than six bytes; callers on the data path check lengths first.
    #[inline]
    pub fn from_bytes(b: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }

    /// Group (multicast or broadcast) addresses have the I/G bit set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// A unicast address that may be learned: not group, not all-zero.
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// The address packed into the low 48 bits of a `u64` (big-endian order), for hashing and
    /// for the lock-free tables that store keys in one atomic word.
    #[inline]
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        (u64::from(b[0]) << 40)
            | (u64::from(b[1]) << 32)
            | (u64::from(b[2]) << 24)
            | (u64::from(b[3]) << 16)
            | (u64::from(b[4]) << 8)
            | u64::from(b[5])
    }

    #[inline]
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by ':' or '-'")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// A port's index in the switch's port table. Dense, small, reused after a port is removed.
pub type PortId = u16;

/// The highest number of ports one switch holds; port ids are `0..MAX_PORTS`.
pub const MAX_PORTS: usize = 1024;

/// A VLAN id (1..=4094 are usable; 0 means "no VLAN" inside the switch, 4095 is reserved).
pub type VlanId = u16;

/// The lowest and highest VLAN ids a port may be configured with.
pub const VLAN_MIN: VlanId = 1;
pub const VLAN_MAX: VlanId = 4094;

/// True for the VLAN ids a port may carry (1..=4094).
#[inline]
pub fn vlan_is_valid(v: VlanId) -> bool {
    (VLAN_MIN..=VLAN_MAX).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let m: MacAddr = "02:00:0a:f4:01:02".parse().unwrap();
        assert_eq!(m.0, [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
        assert_eq!(m.to_string(), "02:00:0a:f4:01:02");
        assert_eq!("02-00-0A-F4-01-02".parse::<MacAddr>().unwrap(), m);
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
    }

    #[test]
    fn mac_parse_rejects_bad_input() {
        for bad in
            ["", "02:00:0a:f4:01", "02:00:0a:f4:01:02:03", "zz:00:0a:f4:01:02", "020:0:a:f4:01:02"]
        {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_multicast());
        assert!("02:00:00:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
    }

    #[test]
    fn vlan_range() {
        assert!(!vlan_is_valid(0));
        assert!(vlan_is_valid(1));
        assert!(vlan_is_valid(4094));
        assert!(!vlan_is_valid(4095));
    }
}
