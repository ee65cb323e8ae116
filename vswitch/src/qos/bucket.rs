//! Integer token buckets that never drift.
//!
//! Tokens are kept in scaled units chosen so that one nanosecond at a rate of `r` items per
//! second earns exactly `r` units: an item (a byte or a packet) costs `unit` units, where
//! `unit` is `8 * 10^9` for a byte bucket whose rate is in bits per second and `10^9` for a
//! packet bucket whose rate is in packets per second. A refill is then `tokens += rate * dt`,
//! capped at the burst: no division, no remainder to carry, so refilling in one step or in a
//! million steps gives the same tokens (the cap is idempotent under splitting).
//!
//! Time is passed in (`now_ns`); a bucket never reads a clock. Time that goes backwards is
//! ignored (the bucket keeps its last time).

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Units per byte in a byte bucket whose rate is in bits per second.
pub const BYTE_UNIT: u64 = 8 * NS_PER_SEC;
/// Units per packet in a packet bucket whose rate is in packets per second.
pub const PACKET_UNIT: u64 = NS_PER_SEC;
/// The largest burst a byte bucket accepts, in bytes (keeps `burst * BYTE_UNIT` in an `i64`).
pub const MAX_BURST_BYTES: u64 = 1 << 30;
/// The largest burst a packet bucket accepts, in packets.
pub const MAX_BURST_PACKETS: u64 = 1 << 32;

/// `tokens` after `dt_ns` at `rate` units per ns, capped at `cap` (`cap >= 0`). Exact, never
/// overflows, in 64-bit arithmetic.
#[inline]
pub(crate) fn refilled(tokens: i64, cap: i64, rate: u64, dt_ns: u64) -> i64 {
    if tokens >= cap {
        return tokens;
    }
    // cap - tokens is in 1..2^64 (cap >= 0 > i64::MIN - 1), exact in wrapping u64.
    let room = (cap as u64).wrapping_sub(tokens as u64);
    match rate.checked_mul(dt_ns) {
        // add < room = cap - tokens: the sum is below cap, and exact in wrapping arithmetic.
        Some(add) if add < room => (tokens as u64).wrapping_add(add) as i64,
        _ => cap,
    }
}

/// A token bucket in scaled integer units (see the module documentation); `UNIT` is the cost
/// of one item ([`ByteBucket`], [`PacketBucket`]). 32 bytes.
///
/// Two ways to spend: [`TokenBucket::consume`] may go into debt (a shaper sends while the
/// bucket is non-negative, so a burst smaller than a packet still lets packets through, and
/// the long-run rate is exact); [`TokenBucket::try_consume`] never does (a policer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket<const UNIT: u64> {
    tokens: i64,
    cap: i64,
    rate: u64,
    last_ns: u64,
}

/// A byte bucket: rate in bits per second, burst in bytes.
pub type ByteBucket = TokenBucket<BYTE_UNIT>;
/// A packet bucket: rate in packets per second, burst in packets.
pub type PacketBucket = TokenBucket<PACKET_UNIT>;

impl ByteBucket {
    /// A byte bucket: `rate_bps` bits per second, `burst_bytes` deep, full at `now_ns`.
    pub fn bytes(rate_bps: u64, burst_bytes: u64, now_ns: u64) -> Self {
        Self::new(rate_bps, burst_bytes, now_ns)
    }
}

impl PacketBucket {
    /// A packet bucket: `pps` packets per second, `burst_packets` deep, full at `now_ns`.
    pub fn packets(pps: u64, burst_packets: u64, now_ns: u64) -> Self {
        Self::new(pps, burst_packets, now_ns)
    }
}

impl<const UNIT: u64> TokenBucket<UNIT> {
    /// A bucket earning `rate` items per second, holding at most `burst` items, full at `now_ns`.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> Self {
        let cap = Self::cap_for(burst);
        TokenBucket { tokens: cap, cap, rate, last_ns: now_ns }
    }

    fn cap_for(burst: u64) -> i64 {
        i64::try_from(u128::from(burst) * u128::from(UNIT)).unwrap_or(i64::MAX)
    }

    /// Adds the tokens earned since the last refill (capped at the burst).
    #[inline]
    pub fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            self.tokens = refilled(self.tokens, self.cap, self.rate, now_ns - self.last_ns);
            self.last_ns = now_ns;
        }
    }

    /// Whether the bucket is non-negative (a shaper may send).
    #[inline]
    pub fn conforms(&self) -> bool {
        self.tokens >= 0
    }

    /// Spends `items`, possibly going into debt.
    #[inline]
    pub fn consume(&mut self, items: u64) {
        let cost = i64::try_from(items.saturating_mul(UNIT)).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_sub(cost);
    }

    /// Refills to `now_ns`, then spends `items` if the bucket holds that many; never goes
    /// into debt.
    #[inline]
    pub fn try_consume(&mut self, items: u64, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.has(items) && {
            self.consume(items);
            true
        }
    }

    /// Whether the bucket holds at least `items` (after the last refill).
    #[inline]
    pub fn has(&self, items: u64) -> bool {
        i128::from(self.tokens) >= i128::from(items) * i128::from(UNIT)
    }

    /// Nanoseconds after the last refill until the bucket is non-negative again (0 if it is).
    #[inline]
    pub fn ns_until_conform(&self) -> u64 {
        if self.tokens >= 0 {
            0
        } else {
            (self.tokens.unsigned_abs()).div_ceil(self.rate.max(1))
        }
    }

    /// Changes rate and burst, keeping the tokens (refilled at the old rate up to `now_ns`,
    /// then capped at the new burst).
    pub fn set(&mut self, rate: u64, burst: u64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = rate;
        self.cap = Self::cap_for(burst);
        self.tokens = self.tokens.min(self.cap);
    }

    /// The tokens in scaled units (may be negative).
    pub fn tokens(&self) -> i64 {
        self.tokens
    }

    /// The tokens in whole items, rounded down (negative when in debt).
    pub fn items(&self) -> i64 {
        self.tokens.div_euclid(UNIT as i64)
    }

    /// The rate in items per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The time of the last refill.
    pub fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_and_caps_at_burst() {
        let mut b = ByteBucket::bytes(8_000, 100, 0); // 1000 B/s
        assert_eq!(b.items(), 100);
        b.refill(10 * NS_PER_SEC);
        assert_eq!(b.items(), 100);
    }

    #[test]
    fn exact_rate_no_drift_under_any_step() {
        // 1 000 000 bit/s = 125 000 B/s; a 1-ns step earns a fraction of a byte.
        let mut one = ByteBucket::bytes(1_000_000, 1 << 20, 0);
        let mut many = one.clone();
        one.consume(1 << 20); // empty both
        many.consume(1 << 20);
        one.refill(NS_PER_SEC);
        let mut t = 0;
        while t < NS_PER_SEC {
            t += 7; // odd steps, many sub-byte refills
            many.refill(t.min(NS_PER_SEC));
        }
        assert_eq!(one.tokens(), many.tokens());
        assert_eq!(one.items(), 125_000);
    }

    #[test]
    fn debt_and_time_until_conform() {
        let mut b = ByteBucket::bytes(8_000, 10, 0); // 1000 B/s
        b.consume(1010); // 1000 bytes of debt
        assert!(!b.conforms());
        assert_eq!(b.ns_until_conform(), NS_PER_SEC);
        b.refill(NS_PER_SEC - 1);
        assert!(!b.conforms());
        b.refill(NS_PER_SEC);
        assert!(b.conforms());
    }

    #[test]
    fn try_consume_never_goes_into_debt() {
        let mut b = PacketBucket::packets(10, 2, 0);
        assert!(b.try_consume(1, 0));
        assert!(b.try_consume(1, 0));
        assert!(!b.try_consume(1, 0));
        assert!(!b.try_consume(1, NS_PER_SEC / 10 - 1));
        assert!(b.try_consume(1, NS_PER_SEC / 10));
        assert_eq!(b.tokens(), 0);
    }

    #[test]
    fn set_keeps_tokens_and_caps() {
        let mut b = ByteBucket::bytes(8_000, 1000, 0);
        b.consume(500);
        b.set(16_000, 2000, 0);
        assert_eq!(b.items(), 500);
        b.refill(NS_PER_SEC / 2); // 1000 B at the new rate
        assert_eq!(b.items(), 1500);
        b.set(16_000, 100, NS_PER_SEC / 2);
        assert_eq!(b.items(), 100);
    }

    #[test]
    fn time_backwards_is_ignored() {
        let mut b = ByteBucket::bytes(8_000, 1000, 100);
        b.consume(1000);
        b.refill(50);
        assert_eq!(b.items(), 0);
        assert_eq!(b.last_ns(), 100);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut b = ByteBucket::bytes(u64::MAX, MAX_BURST_BYTES, 0);
        b.consume(u64::MAX);
        b.refill(u64::MAX);
        assert_eq!(b.items(), MAX_BURST_BYTES as i64);
    }
}
