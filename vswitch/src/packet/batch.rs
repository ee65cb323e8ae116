//! A fixed-capacity batch of packets with their metadata in a parallel array.
//!
//! The pipeline moves whole batches: a node runs one small per-packet body over every packet of
//! the batch, records its decision in that packet's [`Meta`], and the batch moves on. Nothing is
//! allocated per batch or per packet: a batch is built once per worker and reused.

use super::pool::{Pkt, Pool};
use crate::telemetry::DropReason;
use crate::types::{PortId, VlanId};

/// The default batch size: large enough to amortise per-batch work, small enough for the
/// packets' headers to stay in L1.
pub const DEFAULT_BATCH: usize = 32;
/// The largest supported batch.
pub const MAX_BATCH: usize = 256;

/// What the pipeline decided for a packet so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Still travelling through the pipeline.
    #[default]
    Continue,
    /// Send out of one port.
    Output(PortId),
    /// Send to every port of the packet's VLAN but the one it came from.
    Flood,
    /// Drop and count.
    Drop(DropReason),
    /// Route to peer `.0` (an index into the node's peers) through a VXLAN tunnel: output
    /// encapsulates it (segmenting a GSO packet first) and sends it out of the uplink.
    Tunnel(u16),
    /// Taken by the L3 stage (queued until its next hop resolves); leaves the batch before
    /// output.
    Held,
    /// Addressed to the switch itself and done with (an ARP reply to its own request): freed,
    /// counted as delivered locally, not as a drop.
    Consumed,
}

/// GSO type of a packet carried as one unit although it is larger than the MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum GsoType {
    #[default]
    None,
    TcpV4,
    TcpV6,
    UdpL4,
}

/// Offload state a packet carries from a port that supports it (TAP/vhost with a virtio-net
/// header) to one that either accepts it or must finish the work in software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// Checksum is partial: the sum of the pseudo header is at `csum_start + csum_offset`, the
    /// rest must be summed from `csum_start` to the end.
    pub csum_partial: bool,
    /// The checksum was already verified by the sender (virtio DATA_VALID).
    pub csum_valid: bool,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub gso_type: GsoType,
    /// Payload bytes per segment when the packet is segmented.
    pub gso_size: u16,
    /// UDP tunnel GSO (virtio's `GSO_UDP_TUNNEL_IPV4`, kernel 6.17): the packet is VXLAN in
    /// IPv4/UDP and the fields above describe its *inner* packet (`csum_start` still counts
    /// from the first byte of the frame); this is the offset of the inner IP header. 0: not a
    /// tunnel packet. Only the `[node]` uplink (a TAP wired to the underlay interface) hands
    /// such packets in, and only it takes them: the L3 stage turns them into plain GSO packets
    /// when it decapsulates, and VXLAN encapsulation makes them out of plain ones.
    pub tunnel_inner: u16,
}

/// Bits of [`Meta::flags`].
pub mod flags {
    /// The frame carries an 802.1Q tag at offset 12 right now.
    pub const TAGGED: u8 = 1 << 0;
    /// Destination MAC is a group address (broadcast or multicast).
    pub const DST_GROUP: u8 = 1 << 1;
    pub const IPV4: u8 = 1 << 2;
    pub const IPV6: u8 = 1 << 3;
    /// A non-first IPv4 fragment: no L4 header.
    pub const FRAGMENT: u8 = 1 << 4;
    /// Addressed to the node's router (its MAC, or decapsulated from VXLAN): the L3 stage
    /// decides it, L2 leaves it alone.
    pub const ROUTED: u8 = 1 << 5;
    /// Transient: the local limiter chose to queue the packet; set and cleared within its
    /// stage (`pipeline::nodes::qos::limit_local`).
    pub const LOCAL_QUEUED: u8 = 1 << 6;
}

/// Per-packet metadata, filled in by the stages. Parse once: later stages reopen wire views at
/// the recorded offsets without re-checking lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Port the packet came in on.
    pub in_port: PortId,
    /// VLAN the packet belongs to inside the switch (0 until VLAN ingress assigns one).
    pub vlan: VlanId,
    /// Priority bits of the tag it arrived with (0 if untagged).
    pub pcp: u8,
    /// See [`flags`].
    pub flags: u8,
    /// EtherType after any VLAN tag.
    pub ethertype: u16,
    /// Offset of the L3 header (14, or 18 behind a tag).
    pub l3_off: u16,
    /// Offset of the L4 header, 0 if none was parsed.
    pub l4_off: u16,
    /// IP protocol number, 0 if not IP.
    pub ip_proto: u8,
    /// Flow hash over the L2-L4 fields, for the flow cache, ECMP and VXLAN source ports.
    pub hash: u32,
    /// QoS class, 0 for the default class.
    pub class: u32,
    pub offload: Offload,
    pub verdict: Verdict,
}

impl Meta {
    /// Fresh metadata for a packet received on `port`.
    #[inline]
    pub fn rx(port: PortId) -> Meta {
        Meta { in_port: port, ..Meta::default() }
    }

    #[inline]
    pub fn is_dropped(&self) -> bool {
        matches!(self.verdict, Verdict::Drop(_))
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.verdict = Verdict::Drop(r);
    }
}

/// A batch of up to `N` packets, `N` between 1 and [`MAX_BATCH`].
pub struct Batch<const N: usize = DEFAULT_BATCH> {
    pkts: [Pkt; N],
    meta: [Meta; N],
    len: usize,
}

impl<const N: usize> Default for Batch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Batch<N> {
    const VALID: () = assert!(N >= 1 && N <= MAX_BATCH, "batch size must be 1..=256");

    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Batch { pkts: std::array::from_fn(|_| Pkt::EMPTY), meta: [Meta::default(); N], len: 0 }
    }

    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Room left.
    #[inline]
    pub fn room(&self) -> usize {
        N - self.len
    }

    /// Appends a packet, or hands it back when the batch is full.
    #[inline]
    pub fn push(&mut self, p: Pkt, m: Meta) -> Result<(), Pkt> {
        if self.len == N {
            return Err(p);
        }
        self.pkts[self.len] = p;
        self.meta[self.len] = m;
        self.len += 1;
        Ok(())
    }

    /// The packets, in order.
    #[inline]
    pub fn pkts(&self) -> &[Pkt] {
        &self.pkts[..self.len]
    }

    /// The packets, mutable (to move their head or length through the pool).
    #[inline]
    pub fn pkts_mut(&mut self) -> &mut [Pkt] {
        &mut self.pkts[..self.len]
    }

    #[inline]
    pub fn meta(&self) -> &[Meta] {
        &self.meta[..self.len]
    }

    #[inline]
    pub fn meta_mut(&mut self) -> &mut [Meta] {
        &mut self.meta[..self.len]
    }

    /// Packets and metadata side by side, both mutable.
    #[inline]
    pub fn split_mut(&mut self) -> (&mut [Pkt], &mut [Meta]) {
        (&mut self.pkts[..self.len], &mut self.meta[..self.len])
    }

    /// Removes every packet, handing each with its metadata to `f` in order.
    #[inline]
    pub fn drain(&mut self, mut f: impl FnMut(Pkt, Meta)) {
        let n = std::mem::take(&mut self.len);
        for i in 0..n {
            let p = std::mem::replace(&mut self.pkts[i], Pkt::EMPTY);
            f(p, self.meta[i]);
        }
    }

    /// Removes the packets whose metadata matches `pred`, handing each to `f` in order; the
    /// others stay, in order.
    pub fn take_where(&mut self, pred: impl Fn(&Meta) -> bool, mut f: impl FnMut(Pkt, Meta)) {
        let mut keep = 0;
        for i in 0..self.len {
            if pred(&self.meta[i]) {
                let p = std::mem::replace(&mut self.pkts[i], Pkt::EMPTY);
                f(p, self.meta[i]);
            } else {
                if keep != i {
                    self.pkts.swap(keep, i);
                    self.meta[keep] = self.meta[i];
                }
                keep += 1;
            }
        }
        self.len = keep;
    }

    /// Frees every packet back to `pool`.
    pub fn free_all(&mut self, pool: &mut Pool) {
        self.drain(|p, _| pool.free(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;

    #[test]
    fn push_until_full_then_drain_in_order() {
        let mut pool = Pool::new(PoolConfig { frames: 8, ..PoolConfig::default() }).unwrap();
        let mut b: Batch<4> = Batch::new();
        for i in 0..4u8 {
            let p = pool.alloc_from(&[i]).unwrap();
            b.push(p, Meta::rx(u16::from(i))).unwrap();
        }
        assert!(b.is_full());
        let extra = pool.alloc().unwrap();
        let extra = b.push(extra, Meta::rx(9)).unwrap_err();
        pool.free(extra);
        let mut seen = Vec::new();
        b.drain(|p, m| {
            seen.push((pool.data(&p)[0], m.in_port));
            pool.free(p);
        });
        assert_eq!(seen, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
        assert!(b.is_empty());
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn take_where_keeps_the_rest_in_order() {
        let mut pool = Pool::new(PoolConfig { frames: 8, ..PoolConfig::default() }).unwrap();
        let mut b: Batch<8> = Batch::new();
        for i in 0..6u8 {
            let p = pool.alloc_from(&[i]).unwrap();
            b.push(p, Meta::rx(u16::from(i))).unwrap();
        }
        let mut taken = Vec::new();
        b.take_where(|m| m.in_port % 2 == 1, |p, m| taken.push((p, m.in_port)));
        assert_eq!(taken.iter().map(|t| t.1).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!(b.meta().iter().map(|m| m.in_port).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(b.pkts().iter().map(|p| pool.data(p)[0]).collect::<Vec<_>>(), vec![0, 2, 4]);
        for (p, _) in taken {
            pool.free(p);
        }
        b.free_all(&mut pool);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn largest_batch_builds() {
        let b: Batch<256> = Batch::new();
        assert_eq!(b.capacity(), 256);
    }
}
