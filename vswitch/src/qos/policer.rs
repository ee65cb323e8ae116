//! A single-rate policer: a byte bucket (with a minimum charge per packet, the MPU) and an
//! optional packet bucket. A packet that does not fit is dropped, never delayed; a packet that
//! fits is charged to both buckets. Neither bucket goes into debt.

use super::bucket::{ByteBucket, PacketBucket};

/// Why a policer refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoliceVerdict {
    /// The byte bucket was short.
    Bytes,
    /// The packet bucket was short.
    Packets,
}

/// A byte-rate policer with an optional packets-per-second limit.
#[derive(Clone, Debug)]
pub struct Policer {
    bytes: ByteBucket,
    pps: Option<PacketBucket>,
    mpu: u32,
}

impl Policer {
    /// `rate_bps` bits per second with `burst_bytes` of burst; each packet costs at least `mpu`
    /// bytes; `pps` is `(packets per second, burst in packets)`. Full at `now_ns`.
    pub fn new(
        rate_bps: u64,
        burst_bytes: u64,
        mpu: u32,
        pps: Option<(u64, u64)>,
        now_ns: u64,
    ) -> Self {
        Policer {
            bytes: ByteBucket::bytes(rate_bps, burst_bytes, now_ns),
            pps: pps.map(|(r, b)| PacketBucket::packets(r, b, now_ns)),
            mpu,
        }
    }

    /// Changes the limits, keeping the tokens (see [`ByteBucket::set`]).
    pub fn set(
        &mut self,
        rate_bps: u64,
        burst_bytes: u64,
        mpu: u32,
        pps: Option<(u64, u64)>,
        now_ns: u64,
    ) {
        self.bytes.set(rate_bps, burst_bytes, now_ns);
        self.mpu = mpu;
        self.pps = match (self.pps.take(), pps) {
            (Some(mut b), Some((r, burst))) => {
                b.set(r, burst, now_ns);
                Some(b)
            }
            (None, Some((r, burst))) => Some(PacketBucket::packets(r, burst, now_ns)),
            (_, None) => None,
        };
    }

    /// Admits a packet of `len` bytes at `now_ns`, charging it, or says which limit it broke
    /// (charging nothing).
    #[inline]
    pub fn check(&mut self, len: u32, now_ns: u64) -> Result<(), PoliceVerdict> {
        let cost = u64::from(len.max(self.mpu));
        self.bytes.refill(now_ns);
        if !self.bytes.has(cost) {
            return Err(PoliceVerdict::Bytes);
        }
        if let Some(p) = &mut self.pps {
            if !p.try_consume(1, now_ns) {
                return Err(PoliceVerdict::Packets);
            }
        }
        self.bytes.consume(cost);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qos::bucket::NS_PER_SEC;

    #[test]
    fn drops_beyond_burst_then_refills() {
        let mut p = Policer::new(8_000_000, 3000, 0, None, 0); // 1 MB/s
        let ok = (0..10).filter(|_| p.check(1000, 0).is_ok()).count();
        assert_eq!(ok, 3);
        assert_eq!(p.check(1000, 0), Err(PoliceVerdict::Bytes));
        assert_eq!(p.check(1000, NS_PER_SEC / 1000), Ok(())); // 1000 B earned in 1 ms
    }

    #[test]
    fn mpu_is_charged() {
        let mut p = Policer::new(8_000_000, 1024, 512, None, 0);
        let ok = (0..10).filter(|_| p.check(64, 0).is_ok()).count();
        assert_eq!(ok, 2);
    }

    #[test]
    fn pps_limit() {
        let mut p = Policer::new(u64::MAX / 2, 1 << 20, 0, Some((1000, 5)), 0);
        let ok = (0..10).filter(|_| p.check(64, 0).is_ok()).count();
        assert_eq!(ok, 5);
        assert_eq!(p.check(64, 0), Err(PoliceVerdict::Packets));
        // Over one second of a flood at 1 packet per microsecond: burst + 1000.
        let ok = (1..=1_000_000u64).filter(|i| p.check(64, i * 1000).is_ok()).count();
        assert_eq!(ok, 1000);
    }
}
