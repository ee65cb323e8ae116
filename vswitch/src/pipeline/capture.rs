//! Packet capture on one port (`vswitchctl capture`): the worker copies the head of every
//! packet the port receives or sends into a bounded SPSC byte ring; the control thread drains
//! it and answers the API request with the packets once a bound is reached.
//!
//! ```text
//!  worker (owns the port)                           control loop
//!   port rx ─► [Tap::record rx] ─► parse ...         CaptureReader::drain ─► API reply ─► pcap
//!   ... output ─► [Tap::record tx] ─► port tx             ▲
//!                      └──── rtrb byte ring (records) ───┘
//! ```
//!
//! - **Where.** Rx is the batch as the port received it (before parse); tx is the port's
//!   output batch right before its transmit call, so after the VLAN tag fix-up and VXLAN
//!   encapsulation: what is on the wire.
//! - **Cost when off.** The tap lives on the port's egress entry
//!   ([`super::nodes::output::Egress::tap`]); without one the worker pays one `is_some` branch
//!   per received batch and per transmit call. With one, each packet costs a copy of at most
//!   `snaplen` bytes into the ring; nothing allocates (the ring is allocated by the control
//!   thread when it arms the capture), nothing locks, no syscall.
//! - **Records.** A 16-byte header (wall-clock ns, original length, captured length; native
//!   endian, both ends are this process) followed by the captured bytes, committed as one chunk
//!   so the reader never sees half a record. A record that does not fit is not written and is
//!   counted (`ring_full`); traffic is never held back or dropped for the capture.
//! - **Time.** Records carry the worker's iteration time (monotonic), moved to the wall clock
//!   by an offset measured once when the capture is armed.
//! - **End.** The control thread drops its [`CaptureReader`] when a bound is reached; the
//!   worker notices the abandoned ring at its next housekeeping and removes the tap. A port
//!   removed during a capture drops its tap, which the reader sees as the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::types::PortId;

/// Bytes of each packet kept unless asked otherwise.
pub const DEFAULT_SNAPLEN: u32 = 256;
/// The largest snap length (a whole jumbo frame and then some, as tcpdump's default).
pub const MAX_SNAPLEN: u32 = 65535;
/// Bytes of a record's header: wall-clock ns (8), original length (4), captured length (4).
pub const RECORD_HEADER: usize = 16;
/// The ring's size: ~14 000 records of 256 bytes between two drains of the control loop.
pub const DEFAULT_RING_BYTES: usize = 4 << 20;

/// Which packets of the port a capture takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// As received on the port.
    Rx,
    /// As sent out of it.
    Tx,
    Both,
}

impl Direction {
    #[inline]
    pub fn rx(self) -> bool {
        self != Direction::Tx
    }

    #[inline]
    pub fn tx(self) -> bool {
        self != Direction::Rx
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
            Direction::Both => "both",
        }
    }

    /// `rx`, `tx` or `both`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "rx" => Some(Direction::Rx),
            "tx" => Some(Direction::Tx),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }
}

/// Counters shared by both ends.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Records written into the ring.
    pub written: AtomicU64,
    /// Packets not captured because the ring had no room for their record.
    pub ring_full: AtomicU64,
}

/// The worker's end of a capture.
pub struct Tap {
    port: PortId,
    dir: Direction,
    snaplen: usize,
    /// Added (wrapping) to the monotonic clock to get ns since the Unix epoch.
    wall_offset: u64,
    ring: Producer<u8>,
    stats: Arc<CaptureStats>,
}

/// The control thread's end of a capture.
pub struct CaptureReader {
    ring: Consumer<u8>,
    stats: Arc<CaptureStats>,
}

/// A capture of port `port` in direction `dir`, keeping `snaplen` bytes (clamped to
/// 1..=[`MAX_SNAPLEN`]) of each packet, through a ring of `ring_bytes`. `wall_offset` turns the
/// worker's monotonic ns into ns since the epoch ([`wall_offset`]).
pub fn arm(
    port: PortId,
    dir: Direction,
    snaplen: u32,
    ring_bytes: usize,
    wall_offset: u64,
) -> (Tap, CaptureReader) {
    let (tx, rx) = RingBuffer::new(ring_bytes.max(RECORD_HEADER + MAX_SNAPLEN as usize));
    let stats = Arc::new(CaptureStats::default());
    let snaplen = snaplen.clamp(1, MAX_SNAPLEN) as usize;
    (
        Tap { port, dir, snaplen, wall_offset, ring: tx, stats: stats.clone() },
        CaptureReader { ring: rx, stats },
    )
}

/// The offset from the monotonic clock the workers read to the wall clock, measured now.
pub fn wall_offset() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    wall.wrapping_sub(crate::pmd::monotonic_ns())
}

/// Copies `src` into the (possibly wrapped) pair of slices starting at `at`.
#[inline]
fn put(dst: (&mut [u8], &mut [u8]), at: usize, src: &[u8]) {
    let (a, b) = dst;
    if at >= a.len() {
        let at = at - a.len();
        b[at..at + src.len()].copy_from_slice(src);
    } else if at + src.len() <= a.len() {
        a[at..at + src.len()].copy_from_slice(src);
    } else {
        let k = a.len() - at;
        a[at..].copy_from_slice(&src[..k]);
        b[..src.len() - k].copy_from_slice(&src[k..]);
    }
}

impl Tap {
    /// The captured port.
    #[inline]
    pub fn port(&self) -> PortId {
        self.port
    }

    #[inline]
    pub fn direction(&self) -> Direction {
        self.dir
    }

    /// Whether the control thread gave up on the capture (the tap can go).
    pub fn abandoned(&self) -> bool {
        self.ring.is_abandoned()
    }

    /// Records every frame of `frames` seen at `now` (monotonic ns). One atomic add per call
    /// for the counters, none per packet.
    #[inline]
    pub fn record<'a>(&mut self, now: u64, frames: impl Iterator<Item = &'a [u8]>) {
        let ts = now.wrapping_add(self.wall_offset);
        let (mut written, mut full) = (0u64, 0u64);
        for d in frames {
            let cap = d.len().min(self.snaplen);
            let mut hdr = [0u8; RECORD_HEADER];
            hdr[0..8].copy_from_slice(&ts.to_ne_bytes());
            hdr[8..12].copy_from_slice(&(d.len() as u32).to_ne_bytes());
            hdr[12..16].copy_from_slice(&(cap as u32).to_ne_bytes());
            // The ring publishes the chunk with a Release store of its tail on commit, and the
            // reader loads it with Acquire (rtrb's contract): the reader sees whole records.
            match self.ring.write_chunk(RECORD_HEADER + cap) {
                Ok(mut chunk) => {
                    let (a, b) = chunk.as_mut_slices();
                    put((&mut *a, &mut *b), 0, &hdr);
                    put((a, b), RECORD_HEADER, &d[..cap]);
                    chunk.commit_all();
                    written += 1;
                }
                Err(_) => full += 1,
            }
        }
        if written > 0 {
            self.stats.written.fetch_add(written, Ordering::Relaxed);
        }
        if full > 0 {
            self.stats.ring_full.fetch_add(full, Ordering::Relaxed);
        }
    }
}

/// One captured packet, as drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// ns since the Unix epoch.
    pub ts_ns: u64,
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// Its first `min(orig_len, snaplen)` bytes.
    pub data: Vec<u8>,
}

impl CaptureReader {
    /// Takes every whole record in the ring, at most `max` of them, handing each to `f`.
    /// Returns how many were taken.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(Record)) -> usize {
        let mut n = 0;
        while n < max && self.ring.slots() >= RECORD_HEADER {
            let mut hdr = [0u8; RECORD_HEADER];
            let Ok(chunk) = self.ring.read_chunk(RECORD_HEADER) else { break };
            let (a, b) = chunk.as_slices();
            hdr[..a.len()].copy_from_slice(a);
            hdr[a.len()..].copy_from_slice(b);
            chunk.commit_all();
            let ts_ns = u64::from_ne_bytes(hdr[0..8].try_into().unwrap_or_default());
            let orig_len = u32::from_ne_bytes(hdr[8..12].try_into().unwrap_or_default());
            let cap = u32::from_ne_bytes(hdr[12..16].try_into().unwrap_or_default()) as usize;
            // The writer committed header and data together: the data is there.
            let Ok(chunk) = self.ring.read_chunk(cap) else { break };
            let (a, b) = chunk.as_slices();
            let mut data = Vec::with_capacity(cap);
            data.extend_from_slice(a);
            data.extend_from_slice(b);
            chunk.commit_all();
            f(Record { ts_ns, orig_len, data });
            n += 1;
        }
        n
    }

    /// Packets not captured for want of room in the ring so far.
    pub fn ring_full(&self) -> u64 {
        self.stats.ring_full.load(Ordering::Relaxed)
    }

    /// Whether the worker let go of the tap (its port was removed) after writing everything.
    pub fn abandoned(&self) -> bool {
        self.ring.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| (0..len).map(|b| (b + i) as u8).collect()).collect()
    }

    #[test]
    fn records_come_back_whole_and_cut_to_snaplen() {
        let (mut tap, mut rd) = arm(3, Direction::Both, 64, 1 << 20, 1_000);
        let f = frames(3, 100);
        tap.record(5, f.iter().map(|v| &v[..]));
        let short = vec![7u8; 20];
        tap.record(6, std::iter::once(&short[..]));
        let mut got = Vec::new();
        assert_eq!(rd.drain(usize::MAX, |r| got.push(r)), 4);
        assert_eq!(got[0], Record { ts_ns: 1_005, orig_len: 100, data: f[0][..64].to_vec() });
        assert_eq!(got[2].data, f[2][..64]);
        assert_eq!(got[3], Record { ts_ns: 1_006, orig_len: 20, data: short });
        assert_eq!(rd.ring_full(), 0);
        assert_eq!(tap.stats.written.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_full_ring_counts_instead_of_writing_and_records_survive_wrapping() {
        // The smallest ring holds one maximal record; 1000-byte records wrap around it.
        let (mut tap, mut rd) = arm(0, Direction::Rx, MAX_SNAPLEN, 0, 0);
        let cap = RECORD_HEADER + MAX_SNAPLEN as usize;
        let f = frames(200, 1000);
        tap.record(1, f.iter().map(|v| &v[..]));
        let fit = cap / (RECORD_HEADER + 1000);
        assert_eq!(rd.ring_full(), (200 - fit) as u64);
        let mut got = Vec::new();
        rd.drain(usize::MAX, |r| got.push(r.data));
        assert_eq!(got, f[..fit].to_vec());
        // Again, now starting mid-ring: records wrap and still come back whole.
        for round in 0..5 {
            tap.record(2, f[..fit].iter().map(|v| &v[..]));
            let mut again = Vec::new();
            rd.drain(usize::MAX, |r| again.push(r.data));
            assert_eq!(again, f[..fit].to_vec(), "round {round}");
        }
    }

    #[test]
    fn the_reader_going_away_is_seen_by_the_tap() {
        let (tap, rd) = arm(0, Direction::Tx, 10, 1024, 0);
        assert!(!tap.abandoned());
        drop(rd);
        assert!(tap.abandoned());
        let (tap, rd) = arm(0, Direction::Tx, 10, 1024, 0);
        drop(tap);
        assert!(rd.abandoned());
    }

    #[test]
    fn a_worker_records_rx_as_received_and_tx_as_sent() {
        use crate::pipeline::{VlanMode, VlanSet};
        use crate::testkit::Rig;
        let mut allowed = VlanSet::default();
        allowed.insert(10);
        let mut rig: Rig<32> = Rig::new(&[
            ("a", VlanMode::Access(10)),
            ("t", VlanMode::Trunk { allowed, native: None }),
        ]);
        let (rx_tap, mut rx) = arm(0, Direction::Rx, 256, 1 << 16, 0);
        let (tx_tap, mut tx) = arm(1, Direction::Tx, 256, 1 << 16, 0);
        assert!(rig.worker.set_capture(Box::new(rx_tap)).is_ok());
        assert!(rig.worker.set_capture(Box::new(tx_tap)).is_ok());
        let (stray, stray_rd) = arm(7, Direction::Both, 256, 1 << 16, 0);
        assert!(rig.worker.set_capture(Box::new(stray)).is_err(), "no port 7 on this worker");
        drop(stray_rd);
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        rig.send(0, &f);
        let t0 = rig.now;
        rig.run(10);
        let out = rig.recv(1);
        assert_eq!(out.len(), 1);
        let mut got = Vec::new();
        rx.drain(usize::MAX, |r| got.push(r));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, f, "rx: as received, untagged");
        assert_eq!(got[0].ts_ns, t0, "the iteration's time");
        let mut sent = Vec::new();
        tx.drain(usize::MAX, |r| sent.push(r));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data, out[0], "tx: as sent, tagged for the trunk");
        assert_eq!(&sent[0].data[12..16], &[0x81, 0x00, 0x00, 10]);
        // The reader gone, housekeeping removes the tap; traffic flows on.
        drop(rx);
        rig.worker.housekeep(rig.now);
        rig.send(0, &f);
        rig.run(10);
        assert_eq!(rig.recv(1).len(), 1);
        let mut more = 0;
        tx.drain(usize::MAX, |_| more += 1);
        assert_eq!(more, 1, "the tx capture still runs");
    }

    #[test]
    fn directions() {
        assert!(Direction::Both.rx() && Direction::Both.tx());
        assert!(Direction::Rx.rx() && !Direction::Rx.tx());
        assert_eq!(Direction::parse("tx"), Some(Direction::Tx));
        assert_eq!(Direction::parse("in"), None);
    }
}
