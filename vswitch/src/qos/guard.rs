//! The uplink's DDoS guard: a packet-rate limit per source address and a SYN-rate limit.
//!
//! Per-source buckets live in a fixed-size table (allocated once): 4-way set-associative,
//! indexed by a seeded hash of the source, each way holding the source, its tokens and the
//! time of its last packet. A source that is not in its set takes the way idle the longest
//! (an eviction, counted); a newcomer starts with a full burst. Memory is bounded by the table
//! size whatever the number of sources; nothing is allocated per packet.
//!
//! The SYN limit is one bucket for the whole uplink (the caller says whether a packet is a
//! TCP SYN without ACK; the guard parses nothing). Both limits are policers: a packet over the
//! limit is dropped and counted, never delayed.
//!
//! Limitation: a flood from more distinct sources than the table holds evicts entries, each
//! newcomer getting a fresh burst; the SYN limit and the per-class policers behind the guard
//! are the backstop for spread floods.

use std::net::IpAddr;

use super::bucket::{refilled, PacketBucket, PACKET_UNIT};

const WAYS: usize = 4;

/// The guard's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Table slots (rounded up to a power of two, at least 4).
    pub slots: usize,
    /// Packets per second allowed per source.
    pub source_pps: u64,
    /// Burst per source, in packets.
    pub source_burst: u64,
    /// SYNs per second allowed in total.
    pub syn_pps: u64,
    /// SYN burst, in packets.
    pub syn_burst: u64,
    /// Hash seed (pick it at random in production so the sets cannot be aimed at).
    pub seed: u64,
}

/// Why the guard dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardDrop {
    /// The source sent more than its packet rate.
    SourceRate,
    /// Too many SYNs on the uplink.
    SynFlood,
}

/// The guard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Packets let through.
    pub passed: u64,
    /// Packets dropped by a per-source limit.
    pub dropped_source_rate: u64,
    /// SYNs dropped by the SYN limit.
    pub dropped_syn: u64,
    /// Table entries taken over by another source.
    pub evictions: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: u128,
    tokens: i64,
    last_ns: u64,
    used: bool,
}

/// Per-source and SYN rate limits for an uplink.
#[derive(Clone, Debug)]
pub struct DdosGuard {
    slots: Box<[Slot]>,
    set_mask: usize,
    rate: u64,
    cap: i64,
    seed: u64,
    syn: PacketBucket,
    stats: GuardStats,
}

/// The key of an address: IPv4 addresses as their IPv4-mapped IPv6 form.
#[inline]
pub fn source_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[inline]
fn mix(key: u128, seed: u64) -> u64 {
    let mut x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ seed;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl DdosGuard {
    /// A guard with every bucket full at `now_ns`.
    pub fn new(cfg: &GuardConfig, now_ns: u64) -> Self {
        let n = cfg.slots.max(WAYS).next_power_of_two();
        let cap = i64::try_from(u128::from(cfg.source_burst) * u128::from(PACKET_UNIT))
            .unwrap_or(i64::MAX);
        DdosGuard {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            set_mask: n / WAYS - 1,
            rate: cfg.source_pps,
            cap,
            seed: cfg.seed,
            syn: PacketBucket::packets(cfg.syn_pps, cfg.syn_burst, now_ns),
            stats: GuardStats::default(),
        }
    }

    /// Checks one packet from `source` (see [`source_key`]) at `now_ns`; `syn` says it is a
    /// TCP SYN without ACK. Charges the source's bucket (and the SYN bucket for a SYN) when it
    /// passes.
    #[inline]
    pub fn check(&mut self, source: u128, syn: bool, now_ns: u64) -> Result<(), GuardDrop> {
        let base = (mix(source, self.seed) as usize & self.set_mask) * WAYS;
        let set = &mut self.slots[base..base + WAYS];
        let mut way = WAYS;
        let mut oldest = 0;
        for (i, s) in set.iter().enumerate() {
            if s.used && s.key == source {
                way = i;
                break;
            }
            if !s.used || (set[oldest].used && s.last_ns < set[oldest].last_ns) {
                oldest = i;
            }
        }
        if way == WAYS {
            way = oldest;
            if set[way].used {
                self.stats.evictions += 1;
            }
            set[way] = Slot { key: source, tokens: self.cap, last_ns: now_ns, used: true };
        }
        let s = &mut set[way];
        if now_ns > s.last_ns {
            s.tokens = refilled(s.tokens, self.cap, self.rate, now_ns - s.last_ns);
            s.last_ns = now_ns;
        }
        if s.tokens < PACKET_UNIT as i64 {
            self.stats.dropped_source_rate += 1;
            return Err(GuardDrop::SourceRate);
        }
        if syn && !self.syn.try_consume(1, now_ns) {
            self.stats.dropped_syn += 1;
            return Err(GuardDrop::SynFlood);
        }
        s.tokens -= PACKET_UNIT as i64;
        self.stats.passed += 1;
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> GuardStats {
        self.stats
    }

    /// Table slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qos::bucket::NS_PER_SEC;
    use std::net::Ipv4Addr;

    fn cfg() -> GuardConfig {
        GuardConfig {
            slots: 1024,
            source_pps: 1000,
            source_burst: 10,
            syn_pps: 100,
            syn_burst: 10,
            seed: 0x5eed,
        }
    }

    fn ip(a: u8, b: u8) -> u128 {
        source_key(IpAddr::V4(Ipv4Addr::new(10, 0, a, b)))
    }

    #[test]
    fn limits_a_single_source_not_the_others() {
        let mut g = DdosGuard::new(&cfg(), 0);
        let (mut flood_ok, mut calm_ok) = (0, 0);
        // One second: the flooder sends every microsecond, 50 others every 10 ms.
        for us in 0..1_000_000u64 {
            let now = us * 1000;
            if g.check(ip(1, 1), false, now).is_ok() {
                flood_ok += 1;
            }
            if us % 10_000 == 0 {
                for s in 0..50 {
                    if g.check(ip(2, s), false, now).is_ok() {
                        calm_ok += 1;
                    }
                }
            }
        }
        // Burst (10) at t = 0, then one per millisecond for the rest of the second.
        assert_eq!(flood_ok, 10 + 999);
        assert_eq!(calm_ok, 50 * 100);
        let st = g.stats();
        assert_eq!(st.dropped_source_rate, 1_000_000 - 1009);
        assert_eq!(st.passed, 1009 + 5000);
        assert_eq!(st.evictions, 0);
    }

    #[test]
    fn syn_flood_limit() {
        let mut g = DdosGuard::new(&cfg(), 0);
        let (mut syn_ok, mut data_ok) = (0, 0);
        // One second, 10 000 SYNs from 10 000 sources (each under its own limit), plus data.
        for i in 0..10_000u64 {
            let now = i * NS_PER_SEC / 10_000;
            let src = ip((i >> 8) as u8, i as u8);
            if g.check(src, true, now).is_ok() {
                syn_ok += 1;
            }
            if g.check(ip(200, 1), false, now).is_ok() {
                data_ok += 1;
            }
        }
        // Burst of 10, then 100 per second (the last SYN is at 0.9999 s: 99 earned).
        assert_eq!(syn_ok, 10 + 99);
        assert_eq!(g.stats().dropped_syn, 10_000 - 109);
        assert!(data_ok >= 1000, "data source limited by the SYN flood: {data_ok}");
    }

    #[test]
    fn table_is_bounded_and_evicts_the_idlest() {
        let mut g = DdosGuard::new(&GuardConfig { slots: 4, ..cfg() }, 0);
        assert_eq!(g.capacity(), 4);
        for s in 0..4 {
            g.check(ip(3, s), false, u64::from(s)).unwrap();
        }
        g.check(ip(3, 9), false, 10).unwrap();
        assert_eq!(g.stats().evictions, 1);
        // ip(3, 0) was the idlest and is gone: it comes back with a fresh burst.
        for _ in 0..10 {
            g.check(ip(3, 0), false, 11).unwrap();
        }
        assert_eq!(g.check(ip(3, 0), false, 11), Err(GuardDrop::SourceRate));
    }
}
