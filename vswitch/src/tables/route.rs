//! IPv4 prefixes, and the longest-prefix-match (LPM) table the workers route with.
//!
//! # Prefix types
//!
//! * [`Ipv4Net`] is a *network*: an address whose host bits are all zero, and a prefix length
//!   `0..=32` ("10.244.1.0/24"). It is the key of a route and of anything else that names a
//!   range of addresses. Building one with host bits set is an error ([`Ipv4Net::new`] and
//!   `FromStr`), because "10.244.1.5/24" in a route or a pod CIDR is almost always a typo for
//!   the address of an interface; [`Ipv4Net::new_truncate`] clears them on purpose.
//! * [`Ipv4Cidr`] is an *address on an interface* with the length of its subnet
//!   ("198.18.0.1/24"): host bits are the point. [`Ipv4Cidr::network`] gives its subnet.
//!
//! Both parse from and display as the usual `a.b.c.d/len` text, and serialize as that string
//! (serde), so config files and the API read the way an operator writes them. Parsing is
//! strict: no leading zeros in the length (as `Ipv4Addr` refuses them in octets), no sign, no
//! spaces. A bare address parses as an [`Ipv4Net`] of length 32, never as an [`Ipv4Cidr`]
//! (an interface address without its subnet length is incomplete).
//!
//! On the data path addresses are `u32` in host byte order (`u32::from(Ipv4Addr)`, i.e. the
//! address read big-endian from the wire), so a prefix test is one AND and one compare:
//! [`Ipv4Net::contains_u32`].
//!
//! # The LPM table
//!
//! [`Lpm`] maps prefixes to values. The control plane builds it once ([`Lpm::build`]) from the
//! whole route set, puts it in the immutable config snapshot, and workers read it through a
//! shared reference: a lookup takes no lock and allocates nothing. A change of routes builds a
//! new table and swaps the snapshot; there is no insert or remove.
//!
//! ## Shape: one sorted array per prefix length
//!
//! The entries are kept in one array sorted by prefix length, longest first, then by network
//! address, and cut into *levels*, one per prefix length present. Each level knows its mask
//! and its slice of the array. The network addresses live in their own `Vec<u32>` (4 bytes an
//! entry, so a binary search touches as few cache lines as possible) and the values in a
//! parallel `Vec<T>`.
//!
//! [`Lpm::lookup`] walks the levels longest first; at each it masks the address and binary
//! searches that level's keys; the first hit is the longest match. A miss at every level is
//! `None`.
//!
//! ## Cost
//!
//! A lookup costs at most one binary search per *distinct prefix length present* (at most 33),
//! each `ceil(log2(n + 1))` compares for `n` prefixes of that length. A Kubernetes node's table
//! has few lengths: typically one /24 per node of the cluster (tens to a few thousand), a few
//! /32s (service or host routes) and maybe a /0 default. With 1 000 /24s, 10 /32s and a /0, a
//! packet to a pod subnet costs 4 compares at /32 and 10 at /24, over 4 KiB of keys that stay in
//! L1/L2; a packet that only matches the default route costs one more compare at /0.
//!
//! Why not something cleverer: a multibit trie (DIR-24-8, Poptrie) would make every lookup one
//! or two memory accesses, at the price of a 32 MiB first stage or of a harder build; a hash per
//! length would make each probe O(1) but costs a hash per present length. At the sizes above
//! the binary searches stay in cache, are simple to get right, and the build is a sort. If
//! profiles ever show routing hot, this table's interface (`build`, `lookup`) lets the
//! structure change underneath it, and the flow cache in front of it already absorbs most
//! lookups.

use std::cmp::Reverse;
use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// The mask of a prefix of length `len` (host byte order); lengths above 32 count as 32.
#[inline]
const fn mask_of(len: u8) -> u32 {
    if len == 0 {
        0
    } else if len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - len)
    }
}

/// Why a prefix or an interface address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error(
        "invalid IPv4 network {0:?}: expected an address a.b.c.d with an optional /len (0..=32)"
    )]
    BadNet(String),
    #[error("invalid IPv4 interface address {0:?}: expected a.b.c.d/len with len in 0..=32")]
    BadCidr(String),
    #[error("{addr}/{len}: prefix length {len} is out of range 0..=32")]
    PrefixLen { addr: Ipv4Addr, len: u8 },
    #[error("{addr}/{len} has host bits set (network is {network})")]
    HostBitsSet { addr: Ipv4Addr, len: u8, network: Ipv4Net },
}

/// An IPv4 network: address with host bits zero, and prefix length 0..=32. "10.244.1.0/24".
///
/// Ordered by address, then by prefix length (so 10.0.0.0/8 < 10.0.0.0/16 < 10.1.0.0/16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Ipv4Net {
    /// The network address; its host bits are zero.
    addr: Ipv4Addr,
    /// `0..=32`.
    len: u8,
}

impl Ipv4Net {
    /// The whole address space, 0.0.0.0/0: the default route.
    pub const DEFAULT: Ipv4Net = Ipv4Net { addr: Ipv4Addr::UNSPECIFIED, len: 0 };

    /// The network `addr/prefix_len`; refuses a length above 32 and an address with host bits
    /// set.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Net, NetError> {
        let net = Ipv4Net::new_truncate(addr, prefix_len)?;
        if net.addr != addr {
            return Err(NetError::HostBitsSet { addr, len: prefix_len, network: net });
        }
        Ok(net)
    }

    /// The network of length `prefix_len` that contains `addr` (host bits cleared); refuses
    /// only a length above 32.
    pub fn new_truncate(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Net, NetError> {
        if prefix_len > 32 {
            return Err(NetError::PrefixLen { addr, len: prefix_len });
        }
        let addr = Ipv4Addr::from(u32::from(addr) & mask_of(prefix_len));
        Ok(Ipv4Net { addr, len: prefix_len })
    }

    /// The network address.
    #[inline]
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The network address in host byte order (`u32::from(self.addr())`).
    #[inline]
    pub fn addr_u32(&self) -> u32 {
        u32::from(self.addr)
    }

    #[inline]
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The netmask in host byte order: `prefix_len` leading ones (0 for /0).
    #[inline]
    pub fn mask(&self) -> u32 {
        mask_of(self.len)
    }

    #[inline]
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.contains_u32(u32::from(a))
    }

    /// Whether `a` (host byte order) is in this network.
    #[inline]
    pub fn contains_u32(&self, a: u32) -> bool {
        a & self.mask() == self.addr_u32()
    }

    /// Whether the two networks share an address, that is whether one contains the other
    /// (two prefixes are either nested or disjoint).
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let m = mask_of(self.len.min(other.len));
        (self.addr_u32() ^ other.addr_u32()) & m == 0
    }

    /// First usable host address (network + 1; for /31 and /32 the network address itself).
    pub fn first_host(&self) -> Ipv4Addr {
        if self.len >= 31 {
            self.addr
        } else {
            // Cannot overflow: the host part is at least 2 bits wide and all zero.
            Ipv4Addr::from(self.addr_u32() + 1)
        }
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Splits `"a.b.c.d/len"` (or `"a.b.c.d"` when `len_optional`, as /32); `None` if the text is
/// malformed. The length is checked for syntax only (1 to 3 digits, no leading zero), not for
/// range, so that "/33" can be reported as an out-of-range length rather than as bad text.
fn split_prefix(s: &str, len_optional: bool) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l),
        None if len_optional => (s, "32"),
        None => return None,
    };
    let addr = Ipv4Addr::from_str(addr).ok()?;
    let digits_ok = (1..=3).contains(&len.len())
        && len.bytes().all(|b| b.is_ascii_digit())
        && (len == "0" || !len.starts_with('0'));
    if !digits_ok {
        return None;
    }
    Some((addr, len.parse().ok()?))
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    /// `"a.b.c.d/len"`, or a bare `"a.b.c.d"` meaning /32.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = split_prefix(s, true).ok_or_else(|| NetError::BadNet(s.to_string()))?;
        Ipv4Net::new(addr, len)
    }
}

/// An address on an interface with its subnet: "198.18.0.1/24" (host bits allowed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    /// `0..=32` when built by [`Ipv4Cidr::new`] or parsed.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; refuses a length above 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, NetError> {
        if prefix_len > 32 {
            return Err(NetError::PrefixLen { addr, len: prefix_len });
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    /// The subnet the address is on. A `prefix_len` above 32 (possible only by building the
    /// struct by hand) is taken as 32.
    pub fn network(&self) -> Ipv4Net {
        let len = self.prefix_len.min(32);
        Ipv4Net { addr: Ipv4Addr::from(u32::from(self.addr) & mask_of(len)), len }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetError;

    /// `"a.b.c.d/len"`; the length is required.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = split_prefix(s, false).ok_or_else(|| NetError::BadCidr(s.to_string()))?;
        Ipv4Cidr::new(addr, len)
    }
}

// ---- serde: both types are their text form ----

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Deserializes a `T: FromStr` from a string, borrowed or not, reporting `T`'s parse error.
struct FromStrVisitor<T> {
    expecting: &'static str,
    _t: PhantomData<T>,
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor {
            expecting: "an IPv4 network as a string \"a.b.c.d/len\"",
            _t: PhantomData,
        })
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor {
            expecting: "an IPv4 interface address as a string \"a.b.c.d/len\"",
            _t: PhantomData,
        })
    }
}

// ---- the LPM table ----

/// Why [`Lpm::build`] refused a route set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    #[error("route {0} is given more than once")]
    Duplicate(Ipv4Net),
}

/// The entries of one prefix length: `keys[start..end]` and `values[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Level {
    len: u8,
    mask: u32,
    start: usize,
    end: usize,
}

/// Immutable LPM table from prefixes to values, built once by the control plane and read by
/// the workers (no allocation, no locks on lookup).
///
/// See the module doc for the structure and what a lookup costs.
#[derive(Clone)]
pub struct Lpm<T> {
    /// One per prefix length present, longest first.
    levels: Vec<Level>,
    /// Network addresses (host byte order), grouped by level, ascending within a level.
    keys: Vec<u32>,
    /// `values[i]` belongs to `keys[i]`.
    values: Vec<T>,
}

impl<T> Lpm<T> {
    /// The table of `routes`; refuses the same prefix given twice.
    pub fn build(routes: impl IntoIterator<Item = (Ipv4Net, T)>) -> Result<Lpm<T>, LpmError> {
        let mut routes: Vec<(Ipv4Net, T)> = routes.into_iter().collect();
        routes.sort_unstable_by_key(|(net, _)| (Reverse(net.len), net.addr));
        if let Some(w) = routes.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LpmError::Duplicate(w[0].0));
        }
        let mut levels: Vec<Level> = Vec::new();
        let mut keys = Vec::with_capacity(routes.len());
        let mut values = Vec::with_capacity(routes.len());
        for (i, (net, value)) in routes.into_iter().enumerate() {
            match levels.last_mut() {
                Some(l) if l.len == net.len => l.end = i + 1,
                _ => levels.push(Level { len: net.len, mask: net.mask(), start: i, end: i + 1 }),
            }
            keys.push(net.addr_u32());
            values.push(value);
        }
        Ok(Lpm { levels, keys, values })
    }

    /// The table with no routes: every lookup misses.
    pub const fn empty() -> Lpm<T> {
        Lpm { levels: Vec::new(), keys: Vec::new(), values: Vec::new() }
    }

    /// The longest prefix containing `addr` (host byte order: `u32::from(Ipv4Addr)`), and its
    /// value.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<(Ipv4Net, &T)> {
        for l in &self.levels {
            let key = addr & l.mask;
            if let Ok(i) = self.keys[l.start..l.end].binary_search(&key) {
                let net = Ipv4Net { addr: Ipv4Addr::from(key), len: l.len };
                return Some((net, &self.values[l.start + i]));
            }
        }
        None
    }

    /// The value of exactly `net`, if it is in the table (not a longest match).
    pub fn get(&self, net: &Ipv4Net) -> Option<&T> {
        let l = self.levels.iter().find(|l| l.len == net.len)?;
        let i = self.keys[l.start..l.end].binary_search(&net.addr_u32()).ok()?;
        Some(&self.values[l.start + i])
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every route, ordered by prefix length descending, then by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &T)> + '_ {
        self.levels.iter().flat_map(move |l| {
            (l.start..l.end).map(move |i| {
                let net = Ipv4Net { addr: Ipv4Addr::from(self.keys[i]), len: l.len };
                (net, &self.values[i])
            })
        })
    }
}

impl<T> Default for Lpm<T> {
    fn default() -> Self {
        Lpm::empty()
    }
}

/// Shows a prefix as its text inside `Debug` output.
struct AsText(Ipv4Net);

impl fmt::Debug for AsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<T: fmt::Debug> fmt::Debug for Lpm<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(net, v)| (AsText(net), v))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn net_parse_and_display_round_trip() {
        for s in ["10.244.1.0/24", "0.0.0.0/0", "192.168.1.1/32", "198.18.0.0/31", "10.0.0.0/8"] {
            assert_eq!(net(s).to_string(), s);
        }
        let n = net("10.244.1.0/24");
        assert_eq!(n.addr(), Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(n.prefix_len(), 24);
        assert_eq!(n.mask(), 0xffff_ff00);
        assert_eq!(n.addr_u32(), 0x0af4_0100);
        // A bare address is a /32.
        assert_eq!(net("10.1.2.3"), Ipv4Net::new(Ipv4Addr::new(10, 1, 2, 3), 32).unwrap());
        assert_eq!(net("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(net("0.0.0.0/0"), Ipv4Net::DEFAULT);
    }

    #[test]
    fn net_parse_errors() {
        for bad in [
            "",
            "/24",
            "10.0.0.0/",
            "10.0.0/24",
            "10.0.0.0.0/24",
            "10.0.0.256/24",
            "10.0.0.0/24/1",
            "10.0.0.0/+24",
            "10.0.0.0/-1",
            "10.0.0.0/024",
            "10.0.0.0/00",
            "10.0.0.0/2 4",
            " 10.0.0.0/24",
            "10.0.0.0/24 ",
            "10.0.0.0/1000",
            "10.0.0.0/256",
            "010.0.0.0/8",
            "ten.0.0.0/8",
        ] {
            assert_eq!(bad.parse::<Ipv4Net>(), Err(NetError::BadNet(bad.to_string())), "{bad}");
        }
        let e = "10.0.0.0/33".parse::<Ipv4Net>().unwrap_err();
        assert_eq!(e, NetError::PrefixLen { addr: Ipv4Addr::new(10, 0, 0, 0), len: 33 });
        assert_eq!(e.to_string(), "10.0.0.0/33: prefix length 33 is out of range 0..=32");
        let e = "10.244.1.5/24".parse::<Ipv4Net>().unwrap_err();
        assert_eq!(e.to_string(), "10.244.1.5/24 has host bits set (network is 10.244.1.0/24)");
        assert!(matches!(e, NetError::HostBitsSet { len: 24, .. }));
        let e = "10.0.0.0/x".parse::<Ipv4Net>().unwrap_err();
        assert!(e.to_string().contains("\"10.0.0.0/x\""), "{e}");
        assert!(Ipv4Net::new(Ipv4Addr::new(1, 0, 0, 0), 0).is_err());
        assert!(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 33).is_err());
    }

    #[test]
    fn new_truncate_clears_host_bits() {
        let a = Ipv4Addr::new(10, 244, 1, 5);
        assert_eq!(Ipv4Net::new_truncate(a, 24).unwrap(), net("10.244.1.0/24"));
        assert_eq!(Ipv4Net::new_truncate(a, 0).unwrap(), Ipv4Net::DEFAULT);
        assert_eq!(Ipv4Net::new_truncate(a, 32).unwrap(), net("10.244.1.5/32"));
        assert_eq!(Ipv4Net::new_truncate(a, 40), Err(NetError::PrefixLen { addr: a, len: 40 }));
    }

    #[test]
    fn contains_edges() {
        let all = Ipv4Net::DEFAULT;
        assert_eq!(all.mask(), 0);
        assert!(all.contains(Ipv4Addr::UNSPECIFIED));
        assert!(all.contains(Ipv4Addr::BROADCAST));
        let host = net("10.0.0.1/32");
        assert_eq!(host.mask(), u32::MAX);
        assert!(host.contains_u32(ip("10.0.0.1")));
        assert!(!host.contains_u32(ip("10.0.0.0")));
        assert!(!host.contains_u32(ip("10.0.0.2")));
        let p2p = net("10.0.0.2/31");
        assert!(!p2p.contains_u32(ip("10.0.0.1")));
        assert!(p2p.contains_u32(ip("10.0.0.2")));
        assert!(p2p.contains_u32(ip("10.0.0.3")));
        assert!(!p2p.contains_u32(ip("10.0.0.4")));
        let n = net("10.244.1.0/24");
        assert!(n.contains(Ipv4Addr::new(10, 244, 1, 0)));
        assert!(n.contains(Ipv4Addr::new(10, 244, 1, 255)));
        assert!(!n.contains(Ipv4Addr::new(10, 244, 2, 0)));
        assert!(!n.contains(Ipv4Addr::new(10, 244, 0, 255)));
        let top = net("255.255.255.255/32");
        assert!(top.contains(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn overlaps_edges() {
        let a = net("10.244.0.0/16");
        assert!(a.overlaps(&net("10.244.1.0/24")));
        assert!(net("10.244.1.0/24").overlaps(&a));
        assert!(a.overlaps(&a));
        assert!(!a.overlaps(&net("10.245.0.0/16")));
        assert!(!net("10.244.1.0/24").overlaps(&net("10.244.2.0/24")));
        assert!(Ipv4Net::DEFAULT.overlaps(&net("1.2.3.4/32")));
        assert!(net("1.2.3.4/32").overlaps(&Ipv4Net::DEFAULT));
        assert!(net("10.0.0.2/31").overlaps(&net("10.0.0.3/32")));
        assert!(!net("10.0.0.2/31").overlaps(&net("10.0.0.1/32")));
        assert!(!net("10.0.0.1/32").overlaps(&net("10.0.0.2/32")));
    }

    #[test]
    fn first_host_edges() {
        assert_eq!(net("10.244.1.0/24").first_host(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(Ipv4Net::DEFAULT.first_host(), Ipv4Addr::new(0, 0, 0, 1));
        assert_eq!(net("10.0.0.4/30").first_host(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(net("10.0.0.2/31").first_host(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(net("10.0.0.7/32").first_host(), Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(net("255.255.255.255/32").first_host(), Ipv4Addr::BROADCAST);
        assert_eq!(net("255.255.255.252/30").first_host(), Ipv4Addr::new(255, 255, 255, 253));
    }

    #[test]
    fn net_ordering_is_address_then_length() {
        let mut v = vec![net("10.1.0.0/16"), net("10.0.0.0/16"), net("10.0.0.0/8")];
        v.sort();
        assert_eq!(v, [net("10.0.0.0/8"), net("10.0.0.0/16"), net("10.1.0.0/16")]);
    }

    #[test]
    fn cidr_parse_display_and_network() {
        let c: Ipv4Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(c, Ipv4Cidr { addr: Ipv4Addr::new(198, 18, 0, 1), prefix_len: 24 });
        assert_eq!(c.to_string(), "198.18.0.1/24");
        assert_eq!(c.network(), net("198.18.0.0/24"));
        assert_eq!("10.0.0.1/32".parse::<Ipv4Cidr>().unwrap().network(), net("10.0.0.1/32"));
        assert_eq!("10.0.0.1/0".parse::<Ipv4Cidr>().unwrap().network(), Ipv4Net::DEFAULT);
        // The length is required.
        assert_eq!(
            "198.18.0.1".parse::<Ipv4Cidr>(),
            Err(NetError::BadCidr("198.18.0.1".to_string()))
        );
        for bad in ["", "198.18.0.1/", "198.18.0/24", "198.18.0.1/024", "x/24"] {
            assert_eq!(bad.parse::<Ipv4Cidr>(), Err(NetError::BadCidr(bad.to_string())), "{bad}");
        }
        let e = "198.18.0.1/33".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(e.to_string(), "198.18.0.1/33: prefix length 33 is out of range 0..=32");
        assert!(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 33).is_err());
        // Built by hand with a bad length: network() does not panic.
        let odd = Ipv4Cidr { addr: Ipv4Addr::new(1, 2, 3, 4), prefix_len: 200 };
        assert_eq!(odd.network(), net("1.2.3.4/32"));
    }

    #[test]
    fn serde_as_strings() {
        let n = net("10.244.1.0/24");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"10.244.1.0/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>("\"10.244.1.0/24\"").unwrap(), n);
        assert_eq!(serde_json::from_str::<Ipv4Net>("\"10.1.2.3\"").unwrap(), net("10.1.2.3/32"));
        let e = serde_json::from_str::<Ipv4Net>("\"10.244.1.5/24\"").unwrap_err().to_string();
        assert!(e.contains("10.244.1.5/24 has host bits set"), "{e}");
        assert!(serde_json::from_str::<Ipv4Net>("24").is_err());

        let c: Ipv4Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"198.18.0.1/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Cidr>("\"198.18.0.1/24\"").unwrap(), c);
        let e = serde_json::from_str::<Ipv4Cidr>("\"198.18.0.1\"").unwrap_err().to_string();
        assert!(e.contains("\"198.18.0.1\""), "{e}");

        // Owned strings (a reader, not a slice) work too.
        let v: Vec<Ipv4Net> =
            serde_json::from_reader(&b"[\"0.0.0.0/0\", \"10.0.0.0/8\"]"[..]).unwrap();
        assert_eq!(v, [Ipv4Net::DEFAULT, net("10.0.0.0/8")]);
    }

    fn table(routes: &[(&str, u32)]) -> Lpm<u32> {
        Lpm::build(routes.iter().map(|&(n, v)| (net(n), v))).unwrap()
    }

    #[test]
    fn longest_match_wins() {
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.244.0.0/16", 2),
            ("10.244.1.0/24", 3),
            ("10.244.1.7/32", 4),
            ("10.244.2.0/24", 5),
        ]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.lookup(ip("10.244.1.7")), Some((net("10.244.1.7/32"), &4)));
        assert_eq!(t.lookup(ip("10.244.1.8")), Some((net("10.244.1.0/24"), &3)));
        assert_eq!(t.lookup(ip("10.244.2.255")), Some((net("10.244.2.0/24"), &5)));
        assert_eq!(t.lookup(ip("10.244.3.1")), Some((net("10.244.0.0/16"), &2)));
        assert_eq!(t.lookup(ip("10.1.1.1")), Some((net("10.0.0.0/8"), &1)));
        assert_eq!(t.lookup(ip("11.0.0.0")), None);
        assert_eq!(t.lookup(ip("9.255.255.255")), None);
        assert_eq!(t.get(&net("10.244.0.0/16")), Some(&2));
        assert_eq!(t.get(&net("10.245.0.0/16")), None);
        assert_eq!(t.get(&net("10.0.0.0/9")), None);
    }

    #[test]
    fn default_route_catches_the_rest() {
        let t = table(&[("0.0.0.0/0", 0), ("10.244.1.0/24", 1)]);
        assert_eq!(t.lookup(ip("10.244.1.1")), Some((net("10.244.1.0/24"), &1)));
        assert_eq!(t.lookup(ip("8.8.8.8")), Some((Ipv4Net::DEFAULT, &0)));
        assert_eq!(t.lookup(0), Some((Ipv4Net::DEFAULT, &0)));
        assert_eq!(t.lookup(u32::MAX), Some((Ipv4Net::DEFAULT, &0)));
        let only_default = table(&[("0.0.0.0/0", 9)]);
        assert_eq!(only_default.lookup(ip("1.2.3.4")), Some((Ipv4Net::DEFAULT, &9)));
    }

    #[test]
    fn empty_table_misses() {
        let t: Lpm<u32> = Lpm::empty();
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(ip("10.0.0.1")), None);
        assert_eq!(t.iter().count(), 0);
        let d: Lpm<u32> = Lpm::default();
        assert!(d.is_empty());
        let b: Lpm<u32> = Lpm::build(Vec::new()).unwrap();
        assert_eq!(b.lookup(0), None);
    }

    #[test]
    fn duplicates_refused() {
        let r =
            Lpm::build([(net("10.0.0.0/8"), 1), (net("10.1.0.0/16"), 2), (net("10.0.0.0/8"), 3)]);
        let e = r.unwrap_err();
        assert_eq!(e, LpmError::Duplicate(net("10.0.0.0/8")));
        assert_eq!(e.to_string(), "route 10.0.0.0/8 is given more than once");
        // Same address, different lengths: two routes.
        assert!(Lpm::build([(net("10.0.0.0/8"), 1), (net("10.0.0.0/16"), 2)]).is_ok());
    }

    #[test]
    fn iter_orders_by_length_then_address() {
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("0.0.0.0/0", 0),
            ("10.244.2.0/24", 5),
            ("10.244.1.7/32", 4),
            ("10.244.1.0/24", 3),
            ("9.0.0.0/8", 6),
        ]);
        let got: Vec<(String, u32)> = t.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let want = [
            ("10.244.1.7/32", 4),
            ("10.244.1.0/24", 3),
            ("10.244.2.0/24", 5),
            ("9.0.0.0/8", 6),
            ("10.0.0.0/8", 1),
            ("0.0.0.0/0", 0),
        ];
        let want: Vec<(String, u32)> = want.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        assert_eq!(got, want);
        assert_eq!(
            format!("{t:?}"),
            "{10.244.1.7/32: 4, 10.244.1.0/24: 3, 10.244.2.0/24: 5, 9.0.0.0/8: 6, \
             10.0.0.0/8: 1, 0.0.0.0/0: 0}"
        );
        let c = t.clone();
        assert_eq!(c.iter().count(), 6);
    }

    /// Prefix lengths weighted like a node's table (mostly /24 and /32), plus any length.
    fn prefix_len() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => Just(24u8),
            2 => Just(32u8),
            1 => Just(0u8),
            1 => prop::sample::select(vec![8u8, 16, 20, 28, 30, 31]),
            2 => 0u8..=32,
        ]
    }

    /// Addresses mostly inside 10.244.0.0/20 so that random prefixes nest and collide.
    fn address() -> impl Strategy<Value = u32> {
        prop_oneof![4 => (0u32..1 << 12).prop_map(|x| 0x0af4_0000 | x), 1 => any::<u32>()]
    }

    fn route_set() -> impl Strategy<Value = Vec<(Ipv4Net, usize)>> {
        prop::collection::vec((address(), prefix_len()), 0..64).prop_map(|v| {
            let mut nets: Vec<Ipv4Net> = v
                .into_iter()
                .map(|(a, l)| Ipv4Net::new_truncate(Ipv4Addr::from(a), l).unwrap())
                .collect();
            nets.sort();
            nets.dedup();
            nets.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
        })
    }

    /// The longest route holding `a`, by comparing the top `len` bits with shifts (not with
    /// `mask_of`, which the table itself uses).
    fn brute_force(routes: &[(Ipv4Net, usize)], a: u32) -> Option<(Ipv4Net, usize)> {
        let holds = |n: &Ipv4Net| {
            let shift = 32 - u32::from(n.prefix_len());
            u64::from(a) >> shift == u64::from(n.addr_u32()) >> shift
        };
        routes.iter().filter(|(n, _)| holds(n)).max_by_key(|(n, _)| n.len).copied()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn lookup_matches_linear_scan(
            routes in route_set(),
            probes in prop::collection::vec(address(), 0..64),
        ) {
            let t = Lpm::build(routes.iter().copied()).unwrap();
            prop_assert_eq!(t.len(), routes.len());
            // Random addresses, plus the edges of every route.
            let mut addrs = probes;
            for (n, _) in &routes {
                let lo = n.addr_u32();
                let hi = lo | !n.mask();
                addrs.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
            }
            for a in addrs {
                let got = t.lookup(a).map(|(n, v)| (n, *v));
                prop_assert_eq!(got, brute_force(&routes, a), "address {}", Ipv4Addr::from(a));
            }
            for (n, v) in &routes {
                prop_assert_eq!(t.get(n), Some(v));
            }
            // iter: every route once, in the documented order.
            let listed: Vec<(Ipv4Net, usize)> = t.iter().map(|(n, v)| (n, *v)).collect();
            let mut want = routes.clone();
            want.sort_by_key(|(n, _)| (Reverse(n.prefix_len()), n.addr()));
            prop_assert_eq!(listed, want);
        }

        #[test]
        fn build_refuses_any_duplicate(routes in route_set(), pick in any::<prop::sample::Index>()) {
            prop_assume!(!routes.is_empty());
            let dup = routes[pick.index(routes.len())];
            let mut with_dup = routes.clone();
            with_dup.push(dup);
            prop_assert_eq!(Lpm::build(with_dup).unwrap_err(), LpmError::Duplicate(dup.0));
        }

        #[test]
        fn net_text_round_trips(a in any::<u32>(), len in 0u8..=32) {
            let n = Ipv4Net::new_truncate(Ipv4Addr::from(a), len).unwrap();
            prop_assert_eq!(n.to_string().parse::<Ipv4Net>(), Ok(n));
            let c = Ipv4Cidr::new(Ipv4Addr::from(a), len).unwrap();
            prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>(), Ok(c));
            prop_assert_eq!(c.network(), n);
            prop_assert!(n.contains(c.addr));
            prop_assert_eq!(Ipv4Net::new(Ipv4Addr::from(a), len).is_ok(), n.addr_u32() == a);
        }

        #[test]
        fn overlaps_iff_an_address_is_shared(
            a in address(), la in prefix_len(), b in address(), lb in prefix_len(),
        ) {
            let x = Ipv4Net::new_truncate(Ipv4Addr::from(a), la).unwrap();
            let y = Ipv4Net::new_truncate(Ipv4Addr::from(b), lb).unwrap();
            // Prefixes nest or are disjoint: they share an address iff one holds the other's
            // network address.
            let shared = x.contains_u32(y.addr_u32()) || y.contains_u32(x.addr_u32());
            prop_assert_eq!(x.overlaps(&y), shared);
            prop_assert_eq!(y.overlaps(&x), shared);
        }
    }
}
