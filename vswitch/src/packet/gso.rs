//! Software GSO and checksum offload: the virtio-net header, its validation, checksum
//! completion and TCP/UDP segmentation.
//!
//! # Where the pipeline uses it
//!
//! Pods attached through TAP (or vhost) exchange *offloaded* packets with the switch: a TCP
//! segment of up to 64 KB that the pod's kernel did not cut into MTU-sized frames (GSO), with a
//! checksum it did not finish (`CHECKSUM_PARTIAL`). Each such packet is preceded by a
//! virtio-net header ([`VnetHdr`]) describing the work left to do. Carrying the 64 KB segment
//! through the switch whole is what makes pod-to-pod TCP run at kernel speed: one trip through
//! the pipeline instead of ~45.
//!
//! - **TAP rx**: the port reads the header and the frame (into a big buffer when it is larger
//!   than a frame), the parse stage fills [`Meta`], and [`offload_from_vnet`] checks the header
//!   against the parsed headers and turns it into the packet's [`Offload`].
//! - **Output to a port that takes offloads** (another TAP with `TUNSETOFFLOAD`): the packet
//!   leaves whole, with the header rebuilt by [`vnet_from_offload`].
//! - **Output to a port that does not** (AF_XDP to a NIC, AF_PACKET, a TAP without offloads):
//!   a GSO packet is cut by [`segment`] into fresh pool frames with complete headers and
//!   checksums; a non-GSO packet with a partial checksum is finished in place by
//!   [`complete_checksum`].
//!
//! # Trust boundary
//!
//! The virtio-net header comes from a pod: it is **untrusted**. A pod can claim a GSO size of 0
//! or 1 (65 535 segments from one packet), a checksum position past the end of the packet, a
//! TCPv4 GSO type on an IPv6 UDP packet, and so on. [`offload_from_vnet`] rejects every
//! inconsistency with its own [`GsoError`] (one drop counter each), so that later stages can
//! rely on the [`Offload`] they carry: a partial checksum is exactly the TCP or UDP checksum
//! field of the packet's L4 header, a GSO packet is a TCP (or UDP with USO) packet of the family
//! its type names, with a nonzero segment size and at most [`MAX_SEGS`] segments. Even so,
//! [`segment`] and [`complete_checksum`] re-check what they touch (with the `wire` views'
//! checked constructors), so no input makes any function here panic or read out of bounds.
//!
//! # Decisions
//!
//! - **UDP fragmentation offload** (UFO, `VIRTIO_NET_HDR_GSO_UDP`) is refused
//!   ([`GsoError::UfoUnsupported`]): it is deprecated (removed from Linux 4.14 and only accepted
//!   again for old guests), it means cutting one datagram into IP fragments, and no current
//!   stack sends it. **UDP segmentation offload** (USO, `GSO_UDP_L4`, Linux 4.18+ `UDP_SEGMENT`)
//!   is supported: each segment is a complete datagram, cut like TCP.
//! - **ECN** (`VIRTIO_NET_HDR_GSO_ECN`, Linux `SKB_GSO_TCP_ECN`) is accepted on TCP GSO and not
//!   stored: it only says that the header has CWR set, which [`segment`] keeps on the first
//!   segment only (as Linux's `tcp_gso_segment` does) and [`vnet_from_offload`] recomputes from
//!   the header. ECN on a UDP GSO type is an unknown type.
//! - **IPv4 ID**: each segment carries the super-packet's ID plus its index (wrapping), as
//!   Linux does without `SKB_GSO_TCP_FIXEDID`, so that GRO on the receiver merges them back.
//! - A GSO packet whose payload fits in one segment is accepted as a plain (non-GSO) packet
//!   with its partial checksum, as Linux's `virtio_net_hdr_to_skb` does; a GSO header without
//!   `NEEDS_CSUM` is refused (every Linux GSO packet has a partial checksum, and forwarding one
//!   to a TAP needs it).
//! - Offload on an IPv4 fragment (first or later), on IPv6 with extension headers, or on a
//!   frame with bytes after its IP packet (Ethernet padding) is refused: the checksum would
//!   cover the wrong bytes.
//! - `hdr_len` is a hint (how much of the packet is headers); it is only checked to be within
//!   the packet, as Linux's tun does.
//!
//! # Byte order of the header
//!
//! The virtio-net header fields are read and written **little-endian**. Virtio 1.0 devices
//! always use little-endian; a TAP device uses the host's native order unless `TUNSETVNETLE` or
//! `TUNSETVNETBE` is set, which on x86-64 and arm64 hosts is little-endian. A TAP port on a
//! big-endian host must set `TUNSETVNETLE`.
//!
//! # Cost
//!
//! [`offload_from_vnet`] is a few comparisons (and nothing past reading the header for a packet
//! with no offload). [`complete_checksum`] is one pass of [`checksum::sum`] over the L4 segment.
//! [`segment`] copies each segment's headers and payload once into a fresh frame and sums the
//! payload once in cache (the pseudo header and the constant part of the L4 header are summed
//! once per packet, then adjusted per segment); the IPv4 header checksum is recomputed over its
//! 20 bytes. `segmentation_cost` in the tests measures it: about 5 µs to cut a 65 000-byte
//! TCP packet into 45 segments in a release build on one Xeon core (some 13 GB/s, over
//! 100 Gbit/s of payload), all of it the copy and the payload sum.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::batch::{flags, GsoType, Meta, Offload};
use super::pool::{Pkt, Pool};
use crate::wire::tcp::flags as tcpf;
use crate::wire::{self, checksum, ip_proto};

/// `flags`: the checksum is partial (start at `csum_start`, store at `csum_start +
/// csum_offset`).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified by the sender.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a GSO packet.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (deprecated; refused).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO), either family.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP header has CWR set (ECN).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Length of the legacy virtio-net header (`struct virtio_net_hdr`).
pub const VNET_HDR_LEN: usize = 10;
/// Length of the header with `num_buffers` (`struct virtio_net_hdr_mrg_rxbuf`, virtio 1.0).
pub const VNET_HDR_MRG_LEN: usize = 12;

/// The most segments one GSO packet may be cut into. A 64 KB packet reaches it only with a
/// segment size below 128 bytes; it bounds the frames one packet can take from the pool (a
/// GSO size of 1 would otherwise ask for 65 535).
pub const MAX_SEGS: usize = 512;

/// Why an offloaded packet was refused. One variant per drop counter; [`GsoError::name`] and
/// [`GsoError::help`] give the proposed `DropReason` name and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum GsoError {
    /// The virtio-net header is not 10 or 12 bytes (a port configuration error).
    #[error("virtio-net header is not 10 or 12 bytes")]
    VnetHdrLen,
    /// Flag bits other than NEEDS_CSUM and DATA_VALID.
    #[error("virtio-net header has unknown flag bits")]
    VnetBadFlags,
    /// `hdr_len` is larger than the packet.
    #[error("virtio-net hdr_len is past the end of the packet")]
    VnetHdrLenOutOfPacket,
    /// A GSO type that is not NONE, TCPV4, TCPV6 or UDP_L4 (with ECN only on TCP).
    #[error("unknown GSO type")]
    GsoUnknownType,
    /// UDP fragmentation offload (UFO), deprecated and not supported.
    #[error("UDP fragmentation offload (UFO) is not supported")]
    UfoUnsupported,
    /// The GSO type does not match the headers (TCPv4 on IPv6, TCP on UDP, no L4 header).
    #[error("GSO type does not match the packet's headers")]
    GsoTypeMismatch,
    /// A GSO packet with a segment size of 0 (or segmentation asked for with an MSS of 0).
    #[error("GSO segment size is 0")]
    GsoSizeZero,
    /// The segment size would cut the packet into more than [`MAX_SEGS`] segments.
    #[error("GSO packet would be cut into too many segments")]
    GsoTooManySegments,
    /// A GSO packet without NEEDS_CSUM.
    #[error("GSO packet without a partial checksum")]
    GsoNoCsumPartial,
    /// TCP GSO with SYN or RST set.
    #[error("GSO on a TCP segment with SYN or RST")]
    GsoBadTcpFlags,
    /// [`segment`] was asked to cut a packet that is not GSO.
    #[error("segmentation of a packet that is not GSO")]
    NotGso,
    /// Offload (GSO or a partial checksum) on an IPv4 fragment.
    #[error("offload on an IP fragment")]
    OffloadOnFragment,
    /// Offload on a frame with bytes after the end of its IP packet.
    #[error("offload on a frame with bytes after its IP packet")]
    OffloadTrailingBytes,
    /// Offload on a frame whose headers do not parse as the metadata says (not IP, truncated,
    /// UDP length not the IP payload length, headers that cannot fit in a frame).
    #[error("offload on a packet whose headers do not parse")]
    OffloadUnparsed,
    /// The partial checksum's start or field lies outside the packet.
    #[error("partial checksum outside the packet")]
    CsumOutOfPacket,
    /// The partial checksum is not the packet's TCP or UDP checksum field.
    #[error("partial checksum is not the TCP or UDP checksum")]
    CsumNotL4,
    /// The pool ran out of frames for the segments.
    #[error("no buffer for the segments")]
    NoBuffer,
}

impl GsoError {
    /// Every variant, for the drop-reason table and tests.
    pub const ALL: &'static [GsoError] = &[
        GsoError::VnetHdrLen,
        GsoError::VnetBadFlags,
        GsoError::VnetHdrLenOutOfPacket,
        GsoError::GsoUnknownType,
        GsoError::UfoUnsupported,
        GsoError::GsoTypeMismatch,
        GsoError::GsoSizeZero,
        GsoError::GsoTooManySegments,
        GsoError::GsoNoCsumPartial,
        GsoError::GsoBadTcpFlags,
        GsoError::NotGso,
        GsoError::OffloadOnFragment,
        GsoError::OffloadTrailingBytes,
        GsoError::OffloadUnparsed,
        GsoError::CsumOutOfPacket,
        GsoError::CsumNotL4,
        GsoError::NoBuffer,
    ];

    /// The proposed `DropReason` name (snake_case, a metric label).
    pub const fn name(self) -> &'static str {
        match self {
            GsoError::VnetHdrLen => "vnet_hdr_bad_len",
            GsoError::VnetBadFlags => "vnet_bad_flags",
            GsoError::VnetHdrLenOutOfPacket => "vnet_hdr_len_out_of_packet",
            GsoError::GsoUnknownType => "gso_unknown_type",
            GsoError::UfoUnsupported => "gso_udp_unsupported",
            GsoError::GsoTypeMismatch => "gso_type_mismatch",
            GsoError::GsoSizeZero => "gso_bad_size",
            GsoError::GsoTooManySegments => "gso_too_many_segments",
            GsoError::GsoNoCsumPartial => "gso_no_csum_partial",
            GsoError::GsoBadTcpFlags => "gso_bad_tcp_flags",
            GsoError::NotGso => "gso_not_gso",
            GsoError::OffloadOnFragment => "offload_on_fragment",
            GsoError::OffloadTrailingBytes => "offload_trailing_bytes",
            GsoError::OffloadUnparsed => "offload_unparsed",
            GsoError::CsumOutOfPacket => "csum_offset_out_of_packet",
            GsoError::CsumNotL4 => "csum_not_l4",
            GsoError::NoBuffer => "no_buffer",
        }
    }

    /// The proposed one-line `DropReason` description.
    pub const fn help(self) -> &'static str {
        match self {
            GsoError::VnetHdrLen => "virtio-net header is not 10 or 12 bytes (port misconfigured)",
            GsoError::VnetBadFlags => {
                "virtio-net header has flag bits other than NEEDS_CSUM and DATA_VALID"
            }
            GsoError::VnetHdrLenOutOfPacket => "virtio-net hdr_len is larger than the packet",
            GsoError::GsoUnknownType => {
                "virtio-net GSO type is not NONE, TCPV4, TCPV6 or UDP_L4 (ECN only with TCP)"
            }
            GsoError::UfoUnsupported => {
                "UDP fragmentation offload (UFO, deprecated) is not supported; USO is"
            }
            GsoError::GsoTypeMismatch => {
                "GSO type does not match the headers (TCPv4 on IPv6, TCP GSO on UDP, no L4 header)"
            }
            GsoError::GsoSizeZero => "GSO packet with a segment size of 0",
            GsoError::GsoTooManySegments => {
                "GSO segment size would cut the packet into more than 512 segments"
            }
            GsoError::GsoNoCsumPartial => "GSO packet without a partial checksum (NEEDS_CSUM)",
            GsoError::GsoBadTcpFlags => "TCP GSO packet with SYN or RST set",
            GsoError::NotGso => "segmentation asked for a packet that is not GSO (switch bug)",
            GsoError::OffloadOnFragment => "GSO or partial checksum on an IPv4 fragment",
            GsoError::OffloadTrailingBytes => {
                "GSO or partial checksum on a frame with bytes after its IP packet"
            }
            GsoError::OffloadUnparsed => {
                "GSO or partial checksum on a packet whose IP/L4 headers do not parse"
            }
            GsoError::CsumOutOfPacket => "partial checksum start or field outside the packet",
            GsoError::CsumNotL4 => "partial checksum is not the packet's TCP or UDP checksum field",
            GsoError::NoBuffer => "buffer pool exhausted (GSO segments)",
        }
    }
}

/// The virtio-net header (`struct virtio_net_hdr_mrg_rxbuf`; `num_buffers` is 0 in the
/// 10-byte form). Fields are host values; [`VnetHdr::parse`] and [`VnetHdr::write`] convert
/// from and to little-endian (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (Ethernet to the end of L4), a hint.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Offset of the first byte the partial checksum covers.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
    /// Buffers a mergeable receive used (12-byte form only).
    pub num_buffers: u16,
}

impl VnetHdr {
    /// Reads a header of exactly 10 or 12 bytes.
    pub fn parse(b: &[u8]) -> Result<VnetHdr, GsoError> {
        if b.len() != VNET_HDR_LEN && b.len() != VNET_HDR_MRG_LEN {
            return Err(GsoError::VnetHdrLen);
        }
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
            num_buffers: if b.len() == VNET_HDR_MRG_LEN { le(10) } else { 0 },
        })
    }

    /// Writes the header into `out`, which must be exactly 10 or 12 bytes (the port's header
    /// size); `num_buffers` is written only in the 12-byte form.
    pub fn write(&self, out: &mut [u8]) -> Result<(), GsoError> {
        if out.len() != VNET_HDR_LEN && out.len() != VNET_HDR_MRG_LEN {
            return Err(GsoError::VnetHdrLen);
        }
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        if out.len() == VNET_HDR_MRG_LEN {
            out[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        }
        Ok(())
    }
}

/// The transport header of a packet, as re-checked here.
#[derive(Debug, Clone, Copy)]
struct L4 {
    /// Offset in the frame.
    off: usize,
    /// Header length (TCP data offset, or 8).
    hdr_len: usize,
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    proto: u8,
}

impl L4 {
    /// Offset of the checksum field inside the header.
    fn csum_offset(&self) -> usize {
        if self.proto == ip_proto::TCP {
            16
        } else {
            6
        }
    }
}

/// Where the headers of a packet are, re-derived from the frame at the offsets in [`Meta`].
#[derive(Debug, Clone, Copy)]
struct Layout {
    l3: usize,
    v4: bool,
    /// End of the IP packet in the frame.
    ip_end: usize,
    /// An IPv4 fragment (first or later).
    fragment: bool,
    /// The TCP or UDP header right after the IP header; `None` for other protocols, IPv6 with
    /// extension headers, and fragments.
    l4: Option<L4>,
}

/// Ethernet plus one VLAN tag: the parse stage never puts L3 further.
const MAX_L3_OFF: usize = wire::ethernet::HEADER_LEN + 4;

/// Re-checks the IP and L4 headers at the offsets recorded in `meta`, with the `wire` views'
/// checked constructors, so that nothing after this indexes out of bounds whatever the
/// metadata and the bytes say.
fn locate(frame: &[u8], meta: &Meta) -> Result<Layout, GsoError> {
    let l3 = usize::from(meta.l3_off);
    if l3 > MAX_L3_OFF || l3 > frame.len() {
        return Err(GsoError::OffloadUnparsed);
    }
    let ip = &frame[l3..];
    let (v4, l4_off, ip_end, proto, fragment) = if meta.flags & flags::IPV4 != 0 {
        let p = wire::Ipv4Packet::new_checked(ip).map_err(|_| GsoError::OffloadUnparsed)?;
        let frag = p.more_frags() || p.frag_offset() != 0;
        let hl = usize::from(p.header_len());
        (true, l3 + hl, l3 + usize::from(p.total_len()), p.next_header(), frag)
    } else if meta.flags & flags::IPV6 != 0 {
        let p = wire::Ipv6Packet::new_checked(ip).map_err(|_| GsoError::OffloadUnparsed)?;
        let end = l3 + wire::ipv6::HEADER_LEN + usize::from(p.payload_len());
        (false, l3 + wire::ipv6::HEADER_LEN, end, p.next_header(), false)
    } else {
        return Err(GsoError::OffloadUnparsed);
    };
    let mut lay = Layout { l3, v4, ip_end, fragment, l4: None };
    if fragment {
        return Ok(lay);
    }
    let seg = &frame[l4_off..ip_end];
    let hdr_len = match proto {
        ip_proto::TCP => {
            let t = wire::TcpPacket::new_checked(seg).map_err(|_| GsoError::OffloadUnparsed)?;
            usize::from(t.header_len())
        }
        ip_proto::UDP => {
            let u = wire::UdpPacket::new_checked(seg).map_err(|_| GsoError::OffloadUnparsed)?;
            // The checksum and the segments cover the whole IP payload: the UDP length must
            // say the same.
            if usize::from(u.len()) != seg.len() {
                return Err(GsoError::OffloadUnparsed);
            }
            wire::udp::HEADER_LEN
        }
        _ => return Ok(lay),
    };
    if usize::from(meta.l4_off) != l4_off {
        return Err(GsoError::OffloadUnparsed);
    }
    lay.l4 = Some(L4 { off: l4_off, hdr_len, proto });
    Ok(lay)
}

/// The L4 header of a GSO packet of type `ty`, if the headers are those the type names.
fn gso_l4(ty: GsoType, lay: &Layout) -> Result<L4, GsoError> {
    let l4 = lay.l4.ok_or(GsoError::GsoTypeMismatch)?;
    let ok = match ty {
        GsoType::TcpV4 => lay.v4 && l4.proto == ip_proto::TCP,
        GsoType::TcpV6 => !lay.v4 && l4.proto == ip_proto::TCP,
        GsoType::UdpL4 => l4.proto == ip_proto::UDP,
        GsoType::None => false,
    };
    if ok {
        Ok(l4)
    } else {
        Err(GsoError::GsoTypeMismatch)
    }
}

/// Validates the untrusted virtio-net header `hdr` of a received `frame` against the headers
/// the parse stage recorded in `meta`, and returns the packet's offload state.
///
/// A packet with neither GSO nor a partial checksum is accepted without looking at the frame
/// (`csum_valid` is DATA_VALID). Everything else must be consistent; see [`GsoError`] and the
/// module documentation for what is refused. A GSO packet whose payload fits in one segment
/// comes back as a plain packet with a partial checksum.
pub fn offload_from_vnet(hdr: &VnetHdr, frame: &[u8], meta: &Meta) -> Result<Offload, GsoError> {
    const KNOWN: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
    if hdr.flags & !KNOWN != 0 {
        return Err(GsoError::VnetBadFlags);
    }
    if usize::from(hdr.hdr_len) > frame.len() {
        return Err(GsoError::VnetHdrLenOutOfPacket);
    }
    let ecn = hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0;
    let gso = match (hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN, ecn) {
        (VIRTIO_NET_HDR_GSO_NONE, false) => GsoType::None,
        (VIRTIO_NET_HDR_GSO_TCPV4, _) => GsoType::TcpV4,
        (VIRTIO_NET_HDR_GSO_TCPV6, _) => GsoType::TcpV6,
        (VIRTIO_NET_HDR_GSO_UDP_L4, false) => GsoType::UdpL4,
        (VIRTIO_NET_HDR_GSO_UDP, _) => return Err(GsoError::UfoUnsupported),
        _ => return Err(GsoError::GsoUnknownType),
    };
    let partial = hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
    if !partial && gso == GsoType::None {
        // Nothing to finish later: the bytes are forwarded as they are.
        let valid = hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0;
        return Ok(Offload { csum_valid: valid, ..Offload::default() });
    }
    if gso != GsoType::None {
        if !partial {
            return Err(GsoError::GsoNoCsumPartial);
        }
        if hdr.gso_size == 0 {
            return Err(GsoError::GsoSizeZero);
        }
    }
    let lay = locate(frame, meta)?;
    if lay.fragment {
        return Err(GsoError::OffloadOnFragment);
    }
    if frame.len() > lay.ip_end {
        return Err(GsoError::OffloadTrailingBytes);
    }
    if gso != GsoType::None {
        gso_l4(gso, &lay)?;
    }
    // `partial` holds here: a GSO header without it was refused above.
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() {
        return Err(GsoError::CsumOutOfPacket);
    }
    match lay.l4 {
        Some(l4) if start == l4.off && usize::from(hdr.csum_offset) == l4.csum_offset() => {}
        _ => return Err(GsoError::CsumNotL4),
    }
    let mut off = Offload {
        csum_partial: true,
        csum_valid: false,
        csum_start: hdr.csum_start,
        csum_offset: hdr.csum_offset,
        gso_type: GsoType::None,
        gso_size: 0,
        tunnel_inner: 0,
    };
    if gso == GsoType::None {
        return Ok(off);
    }
    let l4 = gso_l4(gso, &lay)?;
    if l4.proto == ip_proto::TCP {
        let f = frame[l4.off + 13];
        if f & (tcpf::SYN | tcpf::RST) != 0 {
            return Err(GsoError::GsoBadTcpFlags);
        }
    }
    let payload = lay.ip_end - l4.off - l4.hdr_len;
    let size = usize::from(hdr.gso_size);
    if payload <= size {
        // One segment: not really GSO (Linux's virtio_net_hdr_to_skb does the same).
        return Ok(off);
    }
    if payload.div_ceil(size) > MAX_SEGS {
        return Err(GsoError::GsoTooManySegments);
    }
    off.gso_type = gso;
    off.gso_size = hdr.gso_size;
    Ok(off)
}

/// The virtio-net header for sending a packet with offload state `meta.offload` to a port that
/// accepts offloads (a TAP with `TUNSETOFFLOAD`).
///
/// The checksum start is taken from `meta.l4_off` (which the output stage keeps current when
/// it pushes or pops a VLAN tag) rather than `offload.csum_start`: both are equal at ingress,
/// where [`offload_from_vnet`] only accepts a partial checksum at the L4 header. `hdr_len` is
/// the length of the headers up to the end of L4, and the ECN bit is set for TCP GSO when the
/// header has CWR. Bytes that are not there read as zero: this never panics.
pub fn vnet_from_offload(meta: &Meta, frame: &[u8]) -> VnetHdr {
    let o = &meta.offload;
    let mut h = VnetHdr::default();
    let l4 = usize::from(meta.l4_off);
    if o.csum_partial {
        h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h.csum_start = if l4 != 0 { meta.l4_off } else { o.csum_start };
        h.csum_offset = o.csum_offset;
    } else if o.csum_valid {
        h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    }
    let byte = |i: usize| frame.get(i).copied().unwrap_or(0);
    let (ty, tcp) = match o.gso_type {
        GsoType::None => return h,
        GsoType::TcpV4 => (VIRTIO_NET_HDR_GSO_TCPV4, true),
        GsoType::TcpV6 => (VIRTIO_NET_HDR_GSO_TCPV6, true),
        GsoType::UdpL4 => (VIRTIO_NET_HDR_GSO_UDP_L4, false),
    };
    let l4_len = if tcp {
        (usize::from(byte(l4 + 12) >> 4) * 4).max(wire::tcp::HEADER_LEN)
    } else {
        wire::udp::HEADER_LEN
    };
    let cwr = tcp && byte(l4 + 13) & tcpf::CWR != 0;
    h.gso_type = ty | if cwr { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
    h.gso_size = o.gso_size;
    h.hdr_len = (l4 + l4_len).min(frame.len()).min(usize::from(u16::MAX)) as u16;
    h
}

/// Finishes a partial checksum in place, for an output without checksum offload: sums the
/// frame from `csum_start` to its end (the checksum field holds the pseudo header sum, as the
/// sender left it), and stores the complement at `csum_start + csum_offset` (a result of 0 is
/// stored as `0xffff`, as Linux's `skb_checksum_help` does, which UDP requires).
///
/// Does nothing if the checksum is not partial. The caller then clears `csum_partial` (and may
/// set `csum_valid`). `csum_start` must be current: if a VLAN tag was pushed or popped since
/// [`offload_from_vnet`], it must have moved with it.
pub fn complete_checksum(frame: &mut [u8], off: &Offload) -> Result<(), GsoError> {
    if !off.csum_partial {
        return Ok(());
    }
    let start = usize::from(off.csum_start);
    let field = start + usize::from(off.csum_offset);
    if field + 2 > frame.len() {
        return Err(GsoError::CsumOutOfPacket);
    }
    let c = !checksum::fold(checksum::sum(&frame[start..]));
    let c = if c == 0 { 0xffff } else { c };
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The pseudo header sum without the length.
fn pseudo_no_len(frame: &[u8], lay: &Layout, proto: u8) -> u32 {
    if lay.v4 {
        let a = |i: usize| {
            let b = &frame[lay.l3 + i..lay.l3 + i + 4];
            Ipv4Addr::new(b[0], b[1], b[2], b[3])
        };
        checksum::pseudo_header_v4(a(12), a(16), proto, 0)
    } else {
        let a = |i: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&frame[lay.l3 + i..lay.l3 + i + 16]);
            Ipv6Addr::from(o)
        };
        checksum::pseudo_header_v6(a(8), a(24), proto, 0)
    }
}

/// The most L4 payload bytes per segment that an output with IP MTU `mtu` allows for this
/// packet: the MTU less its IP and L4 headers, options included (the `mss` of [`segment`]).
/// 0 if the headers do not parse (then [`segment`] refuses the packet anyway).
pub fn mss_for_mtu(frame: &[u8], meta: &Meta, mtu: usize) -> usize {
    match locate(frame, meta) {
        Ok(Layout { l3, l4: Some(l4), .. }) => mtu.saturating_sub(l4.off + l4.hdr_len - l3),
        _ => 0,
    }
}

/// The metadata of a segment cut from a packet with metadata `meta`: the same offsets, flags,
/// hash and verdict, and no offload left to do (the checksums are complete).
pub fn segment_meta(meta: &Meta) -> Meta {
    Meta { offload: Offload { csum_valid: true, ..Offload::default() }, ..*meta }
}

/// Cuts the GSO packet `pkt` (offload state in `meta.offload`) into segments of at most
/// `min(gso_size, mss)` payload bytes (`mss` being what the output's MTU allows after the IP
/// and L4 headers), each in a fresh pool **frame** with the Ethernet (and VLAN), IP and L4
/// headers copied and fixed up:
///
/// - IPv4 total length, ID (+1 per segment) and header checksum; IPv6 payload length;
/// - TCP: sequence number advanced by the payload before it; FIN and PSH only on the last
///   segment, CWR only on the first; UDP (USO): length;
/// - the L4 checksum fully computed (pseudo header, header and payload).
///
/// Segments are handed to `out` in order (their metadata is [`segment_meta`]), and their number
/// returned. The segment size is
/// further capped so that a segment fits in a frame. Nothing is produced if the packet is
/// refused (its headers are re-checked) or if the pool has fewer free frames than segments:
/// the count is checked before the first allocation, and nothing else takes frames from the
/// pool meanwhile (it is borrowed mutably). `pkt` itself is left to the caller to free.
pub fn segment(
    pool: &mut Pool,
    pkt: &Pkt,
    meta: &Meta,
    mss: usize,
    out: &mut impl FnMut(Pkt),
) -> Result<usize, GsoError> {
    let o = meta.offload;
    if o.gso_type == GsoType::None {
        return Err(GsoError::NotGso);
    }
    if o.gso_size == 0 || mss == 0 {
        return Err(GsoError::GsoSizeZero);
    }
    // Read the source through a reader (its own handle on the mapping) so that new frames can
    // be written through the pool meanwhile: `pkt` is owned by the caller and distinct from
    // every frame allocated here, so the two never alias.
    let reader = pool.reader();
    let frame = reader.data(pkt);
    let lay = locate(frame, meta)?;
    if lay.fragment {
        return Err(GsoError::OffloadOnFragment);
    }
    let l4 = gso_l4(o.gso_type, &lay)?;
    let hdr_len = l4.off + l4.hdr_len;
    let payload = &frame[hdr_len..lay.ip_end];
    let room = pool.frame_size().saturating_sub(pool.headroom()).saturating_sub(hdr_len);
    let seg = usize::from(o.gso_size).min(mss).min(room);
    if seg == 0 {
        return Err(GsoError::OffloadUnparsed);
    }
    let nseg = payload.len().div_ceil(seg).max(1);
    if nseg > MAX_SEGS {
        return Err(GsoError::GsoTooManySegments);
    }
    if pool.free_frames() < nseg {
        return Err(GsoError::NoBuffer);
    }

    let tcp = l4.proto == ip_proto::TCP;
    let hdr = &frame[..hdr_len];
    let ip_hdr_len = l4.off - lay.l3;
    // The constant part of the L4 checksum: the pseudo header without its length, and the L4
    // header with the fields that change per segment zeroed (TCP: sequence number, data
    // offset and flags, checksum; UDP: length, checksum).
    let mut l4_tmpl = [0u8; wire::tcp::MAX_HEADER_LEN];
    let l4_tmpl = &mut l4_tmpl[..l4.hdr_len];
    l4_tmpl.copy_from_slice(&hdr[l4.off..]);
    let (seq0, orig_flags, doff) = if tcp {
        let seq = u32::from_be_bytes([l4_tmpl[4], l4_tmpl[5], l4_tmpl[6], l4_tmpl[7]]);
        let (doff, fl) = (l4_tmpl[12], l4_tmpl[13]);
        l4_tmpl[4..8].fill(0);
        l4_tmpl[12..14].fill(0);
        l4_tmpl[16..18].fill(0);
        (seq, fl, doff)
    } else {
        l4_tmpl[4..8].fill(0);
        (0, 0, 0)
    };
    let base = pseudo_no_len(frame, &lay, l4.proto) + checksum::sum(l4_tmpl);
    let ip_id = if lay.v4 { u16::from_be_bytes([hdr[lay.l3 + 4], hdr[lay.l3 + 5]]) } else { 0 };

    for i in 0..nseg {
        let start = i * seg;
        let len = seg.min(payload.len() - start);
        let body = &payload[start..start + len];
        let mut p = pool.alloc().ok_or(GsoError::NoBuffer)?;
        let Some(d) = pool.append(&mut p, hdr_len + len) else {
            pool.free(p);
            return Err(GsoError::NoBuffer);
        };
        d[..hdr_len].copy_from_slice(hdr);
        d[hdr_len..].copy_from_slice(body);
        let l4_len = l4.hdr_len + len;
        // The IP header.
        if lay.v4 {
            let mut ip = wire::Ipv4Packet::new_unchecked(&mut d[lay.l3..]);
            ip.set_total_len((ip_hdr_len + l4_len) as u16);
            ip.set_ident(ip_id.wrapping_add(i as u16));
            ip.fill_checksum();
        } else {
            let mut ip = wire::Ipv6Packet::new_unchecked(&mut d[lay.l3..]);
            ip.set_payload_len(l4_len as u16);
        }
        // The L4 header and checksum.
        let h = &mut d[l4.off..hdr_len];
        let mut sum = base + l4_len as u32 + checksum::sum(body);
        if tcp {
            let seq = seq0.wrapping_add(start as u32);
            let mut fl = orig_flags & !(tcpf::FIN | tcpf::PSH | tcpf::CWR);
            if i == 0 {
                fl |= orig_flags & tcpf::CWR;
            }
            if i == nseg - 1 {
                fl |= orig_flags & (tcpf::FIN | tcpf::PSH);
            }
            h[4..8].copy_from_slice(&seq.to_be_bytes());
            h[13] = fl;
            sum += (seq >> 16) + (seq & 0xffff) + u32::from(u16::from_be_bytes([doff, fl]));
            let c = !checksum::fold(sum);
            h[16..18].copy_from_slice(&c.to_be_bytes());
        } else {
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            sum += l4_len as u32;
            let c = !checksum::fold(sum);
            let c = if c == 0 { 0xffff } else { c };
            h[6..8].copy_from_slice(&c.to_be_bytes());
        }
        out(p);
    }
    Ok(nseg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PoolConfig;
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{self as pv4, Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
    use pnet_packet::tcp::{self as ptcp, MutableTcpPacket, TcpFlags, TcpPacket};
    use pnet_packet::udp::{self as pudp, MutableUdpPacket, UdpPacket};
    use pnet_packet::vlan::MutableVlanPacket;
    use proptest::prelude::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const DST4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0xabcd, 3);

    /// What to build.
    #[derive(Debug, Clone, Copy)]
    struct Spec {
        v6: bool,
        vlan: bool,
        udp: bool,
        /// TCP option bytes (a multiple of 4).
        tcp_opts: usize,
        flags: u8,
        payload: usize,
        seq: u32,
        ip_id: u16,
    }

    const SPEC: Spec = Spec {
        v6: false,
        vlan: false,
        udp: false,
        tcp_opts: 0,
        flags: TcpFlags::ACK,
        payload: 65000,
        seq: 0xffff_f000,
        ip_id: 0xfff0,
    };

    fn payload_byte(i: usize) -> u8 {
        (i * 7 + i / 251) as u8
    }

    /// A frame built with pnet, its L4 checksum field holding the pseudo header sum as a
    /// sender with checksum offload leaves it, and its metadata as the parse stage fills it.
    fn build(s: Spec) -> (Vec<u8>, Meta) {
        let l3 = if s.vlan { 18 } else { 14 };
        let ip_hdr = if s.v6 { 40 } else { 20 };
        let l4_hdr = if s.udp { 8 } else { 20 + s.tcp_opts };
        let l4_len = l4_hdr + s.payload;
        let mut f = vec![0u8; l3 + ip_hdr + l4_len];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        let ip_et = if s.v6 { EtherTypes::Ipv6 } else { EtherTypes::Ipv4 };
        {
            let mut e = MutableEthernetPacket::new(&mut f).unwrap();
            e.set_ethertype(if s.vlan { EtherTypes::Vlan } else { ip_et });
        }
        if s.vlan {
            let mut v = MutableVlanPacket::new(&mut f[14..]).unwrap();
            v.set_vlan_identifier(100);
            v.set_ethertype(ip_et);
        }
        let proto = if s.udp { IpNextHeaderProtocols::Udp } else { IpNextHeaderProtocols::Tcp };
        if s.v6 {
            let mut ip = MutableIpv6Packet::new(&mut f[l3..]).unwrap();
            ip.set_version(6);
            ip.set_traffic_class(0x02);
            ip.set_flow_label(0x12345);
            ip.set_payload_length(l4_len as u16);
            ip.set_next_header(proto);
            ip.set_hop_limit(64);
            ip.set_source(SRC6);
            ip.set_destination(DST6);
        } else {
            let mut ip = MutableIpv4Packet::new(&mut f[l3..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((20 + l4_len) as u16);
            ip.set_identification(s.ip_id);
            ip.set_flags(pv4::Ipv4Flags::DontFragment);
            ip.set_ttl(64);
            ip.set_next_level_protocol(proto);
            ip.set_source(SRC4);
            ip.set_destination(DST4);
            let c = pv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        let l4 = l3 + ip_hdr;
        for (i, b) in f[l4 + l4_hdr..].iter_mut().enumerate() {
            *b = payload_byte(i);
        }
        let pseudo = if s.v6 {
            checksum::pseudo_header_v6(SRC6, DST6, proto.0, l4_len as u32)
        } else {
            checksum::pseudo_header_v4(SRC4, DST4, proto.0, l4_len as u16)
        };
        if s.udp {
            let mut u = MutableUdpPacket::new(&mut f[l4..]).unwrap();
            u.set_source(5000);
            u.set_destination(6000);
            u.set_length(l4_len as u16);
            u.set_checksum(checksum::fold(pseudo));
        } else {
            let mut t = MutableTcpPacket::new(&mut f[l4..]).unwrap();
            t.set_source(40000);
            t.set_destination(80);
            t.set_sequence(s.seq);
            t.set_acknowledgement(0x0102_0304);
            t.set_data_offset((5 + s.tcp_opts / 4) as u8);
            t.set_flags(s.flags);
            t.set_window(512);
            t.set_checksum(checksum::fold(pseudo));
            // Options: NOPs and a timestamp-like pattern.
            for (i, b) in f[l4 + 20..l4 + 20 + s.tcp_opts].iter_mut().enumerate() {
                *b = if i < 2 { 1 } else { 0x40 + i as u8 };
            }
        }
        (f, meta_for(s))
    }

    /// The metadata the parse stage records for a frame of `s`.
    fn meta_for(s: Spec) -> Meta {
        let l3 = if s.vlan { 18u16 } else { 14 };
        let mut m = Meta::rx(1);
        m.l3_off = l3;
        m.l4_off = l3 + if s.v6 { 40 } else { 20 };
        m.flags =
            if s.v6 { flags::IPV6 } else { flags::IPV4 } | if s.vlan { flags::TAGGED } else { 0 };
        m.ip_proto = if s.udp { ip_proto::UDP } else { ip_proto::TCP };
        m
    }

    /// The virtio-net header a Linux sender writes for a frame of `s`.
    fn vnet_for(s: Spec, gso_size: u16) -> VnetHdr {
        let m = meta_for(s);
        let ty = match (s.udp, s.v6) {
            (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
            (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
        };
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: if gso_size == 0 { 0 } else { ty },
            // Linux fills hdr_len for GSO packets only.
            hdr_len: if gso_size == 0 {
                0
            } else {
                m.l4_off + if s.udp { 8 } else { 20 + s.tcp_opts as u16 }
            },
            gso_size,
            csum_start: m.l4_off,
            csum_offset: if s.udp { 6 } else { 16 },
            num_buffers: 0,
        }
    }

    fn pool() -> Pool {
        Pool::new(PoolConfig { frames: 1024, frame_size: 2048, headroom: 256, big_buffers: 4 })
            .unwrap()
    }

    /// Segments a frame of `s` with GSO size `gso` and output MSS `mss`, checks every segment
    /// with pnet, and returns the segments' payload sizes.
    fn segment_and_check(s: Spec, gso: u16, mss: usize) -> Vec<usize> {
        let (f, mut m) = build(s);
        let hdr = vnet_for(s, gso);
        m.offload = offload_from_vnet(&hdr, &f, &m).unwrap();
        let mut pool = pool();
        let pkt = pool.alloc_from(&f).unwrap();
        assert!(pkt.is_big());
        let mut segs = Vec::new();
        let n = segment(&mut pool, &pkt, &m, mss, &mut |p| segs.push(p)).unwrap();
        assert_eq!(n, segs.len());
        let l3 = usize::from(m.l3_off);
        let l4 = usize::from(m.l4_off);
        let l4_hdr = if s.udp { 8 } else { 20 + s.tcp_opts };
        let size = usize::from(gso).min(mss).min(2048 - 256 - (l4 + l4_hdr));
        let mut data = Vec::new();
        let mut sizes = Vec::new();
        let mut seq = s.seq;
        for (i, p) in segs.iter().enumerate() {
            assert!(!p.is_big(), "segments are frames");
            let d = pool.data(p);
            assert_eq!(&d[..l3], &f[..l3], "L2 headers copied");
            let last = i == n - 1;
            let body = &d[l4 + l4_hdr..];
            if !last {
                assert_eq!(body.len(), size, "segment {i} is full");
            }
            assert!(!body.is_empty() && body.len() <= size);
            sizes.push(body.len());
            data.extend_from_slice(body);
            let l4_bytes = &d[l4..];
            if s.v6 {
                let ip = Ipv6Packet::new(&d[l3..]).unwrap();
                assert_eq!(usize::from(ip.get_payload_length()), l4_bytes.len());
                assert_eq!(ip.get_flow_label(), 0x12345);
            } else {
                let ip = Ipv4Packet::new(&d[l3..]).unwrap();
                assert_eq!(usize::from(ip.get_total_length()), d.len() - l3);
                assert_eq!(ip.get_identification(), s.ip_id.wrapping_add(i as u16));
                assert_eq!(ip.get_checksum(), pv4::checksum(&ip), "IPv4 header checksum");
                assert_eq!(ip.get_flags(), pv4::Ipv4Flags::DontFragment);
            }
            if s.udp {
                let u = UdpPacket::new(l4_bytes).unwrap();
                assert_eq!(usize::from(u.get_length()), l4_bytes.len());
                let want = if s.v6 {
                    pudp::ipv6_checksum(&u, &SRC6, &DST6)
                } else {
                    pudp::ipv4_checksum(&u, &SRC4, &DST4)
                };
                assert_eq!(u.get_checksum(), want, "UDP checksum of segment {i}");
            } else {
                let t = TcpPacket::new(l4_bytes).unwrap();
                let want = if s.v6 {
                    ptcp::ipv6_checksum(&t, &SRC6, &DST6)
                } else {
                    ptcp::ipv4_checksum(&t, &SRC4, &DST4)
                };
                assert_eq!(t.get_checksum(), want, "TCP checksum of segment {i}");
                assert_eq!(t.get_sequence(), seq, "sequence of segment {i}");
                seq = seq.wrapping_add(body.len() as u32);
                assert_eq!(t.get_acknowledgement(), 0x0102_0304);
                assert_eq!(t.get_data_offset() as usize * 4, l4_hdr);
                assert_eq!(&l4_bytes[20..l4_hdr], &f[l4 + 20..l4 + l4_hdr], "options copied");
                let fl = t.get_flags();
                let only_last = TcpFlags::FIN | TcpFlags::PSH;
                assert_eq!(fl & only_last, if last { s.flags & only_last } else { 0 });
                let cwr = if i == 0 { s.flags & TcpFlags::CWR } else { 0 };
                assert_eq!(fl & TcpFlags::CWR, cwr);
                let rest = !(only_last | TcpFlags::CWR);
                assert_eq!(fl & rest, s.flags & rest);
            }
        }
        assert_eq!(data, &f[l4 + l4_hdr..], "payload reassembles");
        pool.free_all(segs);
        pool.free(pkt);
        assert_eq!(pool.in_use(), 0);
        sizes
    }

    #[test]
    fn tcp4_segments_verify() {
        let sizes = segment_and_check(SPEC, 1448, 1460);
        assert_eq!(sizes.len(), 65000_usize.div_ceil(1448));
    }

    #[test]
    fn tcp4_vlan_options_fin_psh_cwr() {
        let flags = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN | TcpFlags::CWR | TcpFlags::ECE;
        let s = Spec { vlan: true, tcp_opts: 12, flags, ..SPEC };
        segment_and_check(s, 1448, 1448);
    }

    #[test]
    fn tcp6_segments_verify() {
        let s = Spec { v6: true, flags: TcpFlags::ACK | TcpFlags::PSH, ..SPEC };
        segment_and_check(s, 1440, 1440);
    }

    #[test]
    fn tcp6_vlan_options_fin_and_smaller_output_mss() {
        let flags = TcpFlags::ACK | TcpFlags::FIN | TcpFlags::PSH;
        let s = Spec { v6: true, vlan: true, tcp_opts: 40, flags, payload: 40000, ..SPEC };
        // The output's MSS (a VXLAN port, say) is below the sender's.
        let sizes = segment_and_check(s, 1440, 1000);
        assert!(sizes.iter().all(|&n| n <= 1000));
        assert_eq!(sizes.len(), 40);
    }

    #[test]
    fn exact_multiple_and_odd_sizes() {
        segment_and_check(Spec { payload: 1448 * 10, ..SPEC }, 1448, 1460);
        segment_and_check(Spec { payload: 9999, ..SPEC }, 1001, 1460);
        segment_and_check(Spec { payload: 3001, v6: true, ..SPEC }, 999, 1460);
    }

    #[test]
    fn segment_size_capped_to_frame() {
        // A 9000-byte MTU output: segments still fit in a 2 KiB frame.
        let sizes = segment_and_check(Spec { payload: 20000, ..SPEC }, 8948, 8948);
        assert!(sizes.iter().all(|&n| n <= 2048 - 256 - 54));
    }

    #[test]
    fn uso_segments_verify() {
        segment_and_check(Spec { udp: true, payload: 30000, ..SPEC }, 1472, 1472);
        segment_and_check(
            Spec { udp: true, v6: true, vlan: true, payload: 7777, ..SPEC },
            1000,
            1452,
        );
    }

    #[test]
    fn mss_for_mtu_counts_options() {
        let (f, m) = build(Spec { tcp_opts: 12, vlan: true, payload: 100, ..SPEC });
        assert_eq!(mss_for_mtu(&f, &m, 1500), 1500 - 20 - 32);
        let (f, m) = build(Spec { v6: true, udp: true, payload: 100, ..SPEC });
        assert_eq!(mss_for_mtu(&f, &m, 1500), 1500 - 40 - 8);
        assert_eq!(mss_for_mtu(&f, &m, 10), 0);
        assert_eq!(mss_for_mtu(&f[..30], &m, 1500), 0);
        let sm = segment_meta(&Meta { offload: Offload { csum_partial: true, ..m.offload }, ..m });
        assert_eq!((sm.l3_off, sm.l4_off, sm.flags), (m.l3_off, m.l4_off, m.flags));
        assert!(sm.offload.csum_valid && !sm.offload.csum_partial);
        assert_eq!(sm.offload.gso_type, GsoType::None);
    }

    #[test]
    fn pool_exhaustion_produces_nothing() {
        let (f, mut m) = build(SPEC);
        m.offload = offload_from_vnet(&vnet_for(SPEC, 1448), &f, &m).unwrap();
        let mut pool =
            Pool::new(PoolConfig { frames: 16, frame_size: 2048, headroom: 256, big_buffers: 1 })
                .unwrap();
        let pkt = pool.alloc_from(&f).unwrap();
        let before = pool.in_use();
        let mut n = 0;
        let r = segment(&mut pool, &pkt, &m, 1460, &mut |p| {
            n += 1;
            drop(p);
        });
        assert_eq!(r, Err(GsoError::NoBuffer));
        assert_eq!(n, 0);
        assert_eq!(pool.in_use(), before);
        pool.free(pkt);
    }

    #[test]
    fn segment_refuses_non_gso_and_zero_mss() {
        let (f, mut m) = build(SPEC);
        let mut pool = pool();
        let pkt = pool.alloc_from(&f).unwrap();
        let mut out = |p: Pkt| panic!("no segment expected: {p:?}");
        assert_eq!(segment(&mut pool, &pkt, &m, 1460, &mut out), Err(GsoError::NotGso));
        m.offload = offload_from_vnet(&vnet_for(SPEC, 1448), &f, &m).unwrap();
        assert_eq!(segment(&mut pool, &pkt, &m, 0, &mut out), Err(GsoError::GsoSizeZero));
        // Metadata that names the wrong family.
        let mut bad = m;
        bad.offload.gso_type = GsoType::TcpV6;
        assert_eq!(segment(&mut pool, &pkt, &bad, 1460, &mut out), Err(GsoError::GsoTypeMismatch));
        bad.offload.gso_type = GsoType::TcpV4;
        bad.flags = flags::IPV6;
        assert_eq!(segment(&mut pool, &pkt, &bad, 1460, &mut out), Err(GsoError::OffloadUnparsed));
        // One byte per segment is more than MAX_SEGS.
        assert_eq!(segment(&mut pool, &pkt, &m, 1, &mut out), Err(GsoError::GsoTooManySegments));
        pool.free(pkt);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn complete_checksum_tcp4_and_udp6_verify() {
        for s in [
            Spec { payload: 1000, ..SPEC },
            Spec { payload: 999, vlan: true, tcp_opts: 8, ..SPEC },
            Spec { payload: 1001, v6: true, udp: true, ..SPEC },
            Spec { payload: 0, udp: true, ..SPEC },
        ] {
            let (mut f, m) = build(s);
            let off = offload_from_vnet(&vnet_for(s, 0), &f, &m).unwrap();
            assert!(off.csum_partial && off.gso_type == GsoType::None);
            complete_checksum(&mut f, &off).unwrap();
            let l4 = &f[usize::from(m.l4_off)..];
            if s.udp {
                let u = UdpPacket::new(l4).unwrap();
                let want = if s.v6 {
                    pudp::ipv6_checksum(&u, &SRC6, &DST6)
                } else {
                    pudp::ipv4_checksum(&u, &SRC4, &DST4)
                };
                assert_eq!(u.get_checksum(), want);
                assert_ne!(u.get_checksum(), 0);
            } else {
                let t = TcpPacket::new(l4).unwrap();
                assert_eq!(t.get_checksum(), ptcp::ipv4_checksum(&t, &SRC4, &DST4));
            }
        }
        // Not partial: untouched.
        let (mut f, _) = build(Spec { payload: 10, ..SPEC });
        let before = f.clone();
        complete_checksum(&mut f, &Offload::default()).unwrap();
        assert_eq!(f, before);
        let bad =
            Offload { csum_partial: true, csum_start: 60, csum_offset: 0, ..Offload::default() };
        assert_eq!(complete_checksum(&mut f[..61], &bad), Err(GsoError::CsumOutOfPacket));
    }

    #[test]
    fn vnet_header_round_trips_little_endian() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 0x81,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
            num_buffers: 0x090a,
        };
        let mut b = [0u8; 12];
        h.write(&mut b).unwrap();
        assert_eq!(b, [1, 0x81, 2, 1, 4, 3, 6, 5, 8, 7, 0x0a, 9]);
        assert_eq!(VnetHdr::parse(&b).unwrap(), h);
        let mut b10 = [0u8; 10];
        h.write(&mut b10).unwrap();
        assert_eq!(VnetHdr::parse(&b10).unwrap(), VnetHdr { num_buffers: 0, ..h });
        for n in [0, 9, 11, 13] {
            assert_eq!(VnetHdr::parse(&vec![0; n]), Err(GsoError::VnetHdrLen));
            assert_eq!(h.write(&mut vec![0; n]), Err(GsoError::VnetHdrLen));
        }
    }

    #[test]
    fn vnet_from_offload_round_trips() {
        for (s, gso) in [
            (SPEC, 1448),
            (Spec { flags: TcpFlags::ACK | TcpFlags::CWR, vlan: true, tcp_opts: 12, ..SPEC }, 1448),
            (Spec { v6: true, ..SPEC }, 1440),
            (Spec { udp: true, ..SPEC }, 1472),
            (Spec { payload: 100, ..SPEC }, 0),
        ] {
            let (f, mut m) = build(s);
            let mut h = vnet_for(s, gso);
            if s.flags & TcpFlags::CWR != 0 {
                h.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
            }
            m.offload = offload_from_vnet(&h, &f, &m).unwrap();
            let back = vnet_from_offload(&m, &f);
            assert_eq!(back, h);
            assert_eq!(offload_from_vnet(&back, &f, &m).unwrap(), m.offload);
        }
        // DATA_VALID and nothing else.
        let (f, mut m) = build(Spec { payload: 10, ..SPEC });
        let h = VnetHdr { flags: VIRTIO_NET_HDR_F_DATA_VALID, ..VnetHdr::default() };
        m.offload = offload_from_vnet(&h, &f, &m).unwrap();
        assert!(m.offload.csum_valid && !m.offload.csum_partial);
        assert_eq!(vnet_from_offload(&m, &f), h);
        // After a VLAN push the checksum start follows l4_off.
        let (f, mut m) = build(Spec { payload: 100, ..SPEC });
        m.offload = offload_from_vnet(&vnet_for(SPEC, 0), &f, &m).unwrap();
        m.l3_off += 4;
        m.l4_off += 4;
        assert_eq!(vnet_from_offload(&m, &f).csum_start, 38);
    }

    #[test]
    fn validation_errors() {
        let (f, m) = build(SPEC);
        let good = vnet_for(SPEC, 1448);
        let check = |h: VnetHdr, f: &[u8], m: &Meta| offload_from_vnet(&h, f, m);
        assert!(check(good, &f, &m).is_ok());
        use GsoError::*;
        let cases: Vec<(VnetHdr, GsoError)> = vec![
            (VnetHdr { flags: 4 | 1, ..good }, VnetBadFlags),
            (VnetHdr { hdr_len: u16::MAX, ..good }, VnetHdrLenOutOfPacket),
            (VnetHdr { gso_type: 2, ..good }, GsoUnknownType),
            (VnetHdr { gso_type: 6, ..good }, GsoUnknownType),
            (VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_ECN, ..good }, GsoUnknownType),
            (VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_UDP_L4 | 0x80, ..good }, GsoUnknownType),
            (VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_UDP, ..good }, UfoUnsupported),
            (VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_TCPV6, ..good }, GsoTypeMismatch),
            (VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_UDP_L4, ..good }, GsoTypeMismatch),
            (VnetHdr { gso_size: 0, ..good }, GsoSizeZero),
            (VnetHdr { gso_size: 1, ..good }, GsoTooManySegments),
            (VnetHdr { gso_size: 126, ..good }, GsoTooManySegments),
            (VnetHdr { flags: VIRTIO_NET_HDR_F_DATA_VALID, ..good }, GsoNoCsumPartial),
            (VnetHdr { flags: 0, ..good }, GsoNoCsumPartial),
            (VnetHdr { csum_start: u16::MAX - 16, ..good }, CsumOutOfPacket),
            (VnetHdr { csum_start: u16::MAX, csum_offset: u16::MAX, ..good }, CsumOutOfPacket),
            (VnetHdr { csum_offset: 6, ..good }, CsumNotL4),
            (VnetHdr { csum_offset: 17, ..good }, CsumNotL4),
            (VnetHdr { csum_start: 14, csum_offset: 10, ..good }, CsumNotL4),
        ];
        for (h, want) in cases {
            assert_eq!(check(h, &f, &m), Err(want), "{h:?}");
        }
        // 128-byte segments: exactly 508 segments, accepted.
        assert!(check(VnetHdr { gso_size: 128, ..good }, &f, &m).is_ok());
        // A GSO packet that fits in one segment is a plain packet with a partial checksum.
        let one = check(VnetHdr { gso_size: 65000, ..good }, &f, &m).unwrap();
        assert!(one.csum_partial && one.gso_type == GsoType::None);

        // TCP GSO on a UDP packet, USO on TCP.
        let su = Spec { udp: true, payload: 5000, ..SPEC };
        let (fu, mu) = build(su);
        let hu = vnet_for(su, 1000);
        assert!(check(hu, &fu, &mu).is_ok());
        let tcp_on_udp = VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_TCPV4, csum_offset: 6, ..hu };
        assert_eq!(check(tcp_on_udp, &fu, &mu), Err(GsoTypeMismatch));
        // The TCP checksum offset on a UDP packet.
        assert_eq!(check(VnetHdr { csum_offset: 16, ..hu }, &fu, &mu), Err(CsumNotL4));
        // TCPv4 GSO on IPv6.
        let s6 = Spec { v6: true, ..SPEC };
        let (f6, m6) = build(s6);
        let h6 = VnetHdr { gso_type: VIRTIO_NET_HDR_GSO_TCPV4, ..vnet_for(s6, 1440) };
        assert_eq!(check(h6, &f6, &m6), Err(GsoTypeMismatch));

        // SYN or RST with GSO.
        for fl in [TcpFlags::SYN, TcpFlags::RST | TcpFlags::ACK] {
            let s = Spec { flags: fl, ..SPEC };
            let (f, m) = build(s);
            assert_eq!(check(vnet_for(s, 1448), &f, &m), Err(GsoBadTcpFlags));
        }
        // Ethernet padding after the IP packet.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(check(good, &padded, &m), Err(OffloadTrailingBytes));
        // A truncated frame (IP total length past the end).
        assert_eq!(check(good, &f[..f.len() - 1], &m), Err(OffloadUnparsed));
        // Not IP, or metadata pointing elsewhere.
        assert_eq!(check(good, &f, &Meta { flags: 0, ..m }), Err(OffloadUnparsed));
        assert_eq!(check(good, &f, &Meta { l4_off: 40, ..m }), Err(OffloadUnparsed));
        assert_eq!(check(good, &f, &Meta { l3_off: 30000, ..m }), Err(OffloadUnparsed));
        // IPv4 fragments: MF set, or an offset.
        for (mf, off) in [(true, 0u16), (false, 100)] {
            let mut fr = f.clone();
            let mut ip = wire::Ipv4Packet::new_unchecked(&mut fr[14..]);
            ip.set_more_frags(mf);
            ip.set_frag_offset(off * 8);
            ip.fill_checksum();
            assert_eq!(check(good, &fr, &m), Err(OffloadOnFragment));
            let partial_only = vnet_for(SPEC, 0);
            assert_eq!(check(partial_only, &fr, &m), Err(OffloadOnFragment));
        }
        // A partial checksum on a packet with no TCP/UDP header (ICMP).
        let mut icmp = f.clone();
        icmp[14 + 9] = ip_proto::ICMP;
        wire::Ipv4Packet::new_unchecked(&mut icmp[14..]).fill_checksum();
        let partial_only = vnet_for(SPEC, 0);
        assert_eq!(check(partial_only, &icmp, &Meta { l4_off: 0, ..m }), Err(CsumNotL4));
        assert_eq!(check(good, &icmp, &Meta { l4_off: 0, ..m }), Err(GsoTypeMismatch));
        // USO whose UDP length disagrees with the IP length.
        let mut ubad = fu.clone();
        ubad[34 + 4..34 + 6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(check(hu, &ubad, &mu), Err(OffloadUnparsed));
        // No offload at all: nothing is looked at.
        assert_eq!(check(VnetHdr::default(), &[], &Meta::default()), Ok(Offload::default()));
    }

    #[test]
    fn error_names_are_unique_snake_case() {
        let mut names: Vec<_> = GsoError::ALL.iter().map(|e| e.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), GsoError::ALL.len());
        for e in GsoError::ALL {
            assert!(!e.help().is_empty() && !e.to_string().is_empty());
        }
    }

    /// Prints the cost of cutting one 64 KB TCP packet (meaningful in a release build:
    /// `cargo test --release -- --nocapture segmentation_cost`).
    #[test]
    fn segmentation_cost() {
        let (f, mut m) = build(SPEC);
        m.offload = offload_from_vnet(&vnet_for(SPEC, 1448), &f, &m).unwrap();
        let mut pool = pool();
        let pkt = pool.alloc_from(&f).unwrap();
        let mut segs = Vec::with_capacity(64);
        let rounds = 200;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            segment(&mut pool, &pkt, &m, 1460, &mut |p| segs.push(p)).unwrap();
            pool.free_all(segs.drain(..));
        }
        let per = t.elapsed() / rounds;
        println!("segmentation of 65000 bytes into 45 segments: {per:?} per packet");
        pool.free(pkt);
    }

    /// Whether a packet's L4 checksum and, if `ip`, its IPv4 header checksum verify.
    fn checksums_ok(d: &[u8], m: &Meta, ip: bool) -> bool {
        let Ok(lay) = locate(d, m) else { return false };
        let Some(l4) = lay.l4 else { return false };
        let seg = &d[l4.off..lay.ip_end];
        let pseudo = pseudo_no_len(d, &lay, l4.proto) + seg.len() as u32;
        let ip_ok = !ip || !lay.v4 || checksum::checksum(&d[lay.l3..l4.off]) == 0;
        ip_ok && checksum::fold(pseudo + checksum::sum(seg)) == 0xffff
    }

    fn arb_hdr() -> impl Strategy<Value = VnetHdr> {
        (
            prop_oneof![Just(0u8), Just(1), Just(2), Just(3), any::<u8>()],
            prop_oneof![Just(0u8), Just(1), Just(3), Just(4), Just(5), Just(0x81), any::<u8>()],
            any::<u16>(),
            prop_oneof![Just(0u16), 1u16..200, 500u16..2000, any::<u16>()],
            prop_oneof![Just(34u16), Just(38), Just(54), any::<u16>()],
            prop_oneof![Just(6u16), Just(16), any::<u16>()],
        )
            .prop_map(|(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| {
                VnetHdr {
                    flags,
                    gso_type,
                    hdr_len,
                    gso_size,
                    csum_start,
                    csum_offset,
                    num_buffers: 0,
                }
            })
    }

    /// A well-formed frame (any family, tag, protocol, size) with some bytes overwritten and
    /// maybe cut short, or plain random bytes; with its metadata or random metadata.
    fn arb_frame() -> impl Strategy<Value = (Vec<u8>, Meta, Option<Spec>)> {
        let spec =
            (any::<bool>(), any::<bool>(), any::<bool>(), 0usize..11, any::<u8>(), 0usize..9000)
                .prop_map(|(v6, vlan, udp, opts, flags, payload)| Spec {
                    v6,
                    vlan,
                    udp,
                    tcp_opts: opts * 4,
                    flags,
                    payload,
                    ..SPEC
                });
        let built = (
            spec,
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
        )
            .prop_map(|(s, pokes, cut)| {
                let (mut f, m) = build(s);
                for (i, b) in pokes {
                    let i = i.index(f.len().min(120));
                    f[i] = b;
                }
                if let Some(c) = cut {
                    let n = c.index(f.len() + 1);
                    f.truncate(n);
                }
                (f, m, Some(s))
            });
        let random = (
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(f, l3, l4, fl)| {
                let m = Meta { l3_off: l3 % 64, l4_off: l4 % 128, flags: fl, ..Meta::default() };
                (f, m, None)
            });
        prop_oneof![3 => built, 1 => random]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn untrusted_headers_never_panic(
            arb in arb_hdr(),
            (frame, meta, spec) in arb_frame(),
            (derive, field, value, gso) in (0u8..3, 0usize..6, any::<u16>(), 64u16..3000),
            raw_offload in any::<(bool, u16, u16, u8, u16)>(),
            mss in prop_oneof![Just(1460usize), 0usize..3000],
        ) {
            let mut pool = Pool::new(PoolConfig {
                frames: 600, frame_size: 2048, headroom: 256, big_buffers: 1,
            }).unwrap();
            // The header: arbitrary, or the one a Linux sender writes (maybe with one field
            // changed), so that the accepting paths are exercised as well.
            let hdr = match spec {
                Some(s) if derive > 0 => {
                    let mut h = vnet_for(s, gso);
                    if derive == 2 {
                        match field {
                            0 => h.flags = value as u8,
                            1 => h.gso_type = value as u8,
                            2 => h.hdr_len = value,
                            3 => h.gso_size = value,
                            4 => h.csum_start = value,
                            _ => h.csum_offset = value,
                        }
                    }
                    h
                }
                _ => arb,
            };
            let Some(pkt) = pool.alloc_from(&frame) else { return Ok(()) };
            let base = pool.in_use();
            // The validated path.
            let validated = offload_from_vnet(&hdr, &frame, &meta);
            let _ = vnet_from_offload(&Meta { offload: validated.unwrap_or_default(), ..meta }, &frame);
            let mut copy = frame.clone();
            if let Ok(off) = validated {
                complete_checksum(&mut copy, &off).unwrap();
                // The sender's pseudo header sum in the field is only right if no address or
                // length byte was overwritten.
                let pristine = spec.is_some_and(|s| build(s).0 == frame);
                if off.csum_partial && pristine {
                    prop_assert!(checksums_ok(&copy, &meta, false), "completed checksum wrong");
                }
            }
            // Arbitrary, unvalidated offload state straight into every function.
            let (partial, start, offset, ty, size) = raw_offload;
            let raw = Offload {
                csum_partial: partial,
                csum_valid: false,
                csum_start: start % 200,
                csum_offset: offset % 64,
                gso_type: [GsoType::None, GsoType::TcpV4, GsoType::TcpV6, GsoType::UdpL4][usize::from(ty % 4)],
                gso_size: size,
                tunnel_inner: 0,
            };
            let _ = complete_checksum(&mut copy, &raw);
            let _ = vnet_from_offload(&Meta { offload: raw, ..meta }, &frame);
            for off in [raw, validated.unwrap_or(raw)] {
                let m = Meta { offload: off, ..meta };
                let mut produced = Vec::new();
                let r = segment(&mut pool, &pkt, &m, mss, &mut |p| produced.push(p));
                match r {
                    Ok(n) => {
                        prop_assert_eq!(n, produced.len());
                        prop_assert!((1..=MAX_SEGS).contains(&n));
                        prop_assert!(produced.iter().all(|p| !p.is_big()));
                    }
                    Err(_) => prop_assert!(produced.is_empty(), "segments after an error"),
                }
                pool.free_all(produced);
                prop_assert_eq!(pool.in_use(), base);
            }
            // A packet the validation accepted as GSO is always segmentable.
            if let Ok(off) = validated {
                if off.gso_type != GsoType::None {
                    let m = Meta { offload: off, ..meta };
                    let mut produced = Vec::new();
                    let r = segment(&mut pool, &pkt, &m, 1400, &mut |p| produced.push(p));
                    prop_assert!(r.is_ok(), "{:?}", r);
                    for p in &produced {
                        prop_assert!(checksums_ok(pool.data(p), &m, true), "bad segment checksum");
                    }
                    pool.free_all(produced);
                }
            }
            pool.free(pkt);
        }
    }
}

impl From<GsoError> for crate::telemetry::DropReason {
    fn from(e: GsoError) -> Self {
        use crate::telemetry::DropReason as D;
        match e {
            GsoError::VnetHdrLen => D::VnetHdrBadLen,
            GsoError::VnetBadFlags => D::VnetBadFlags,
            GsoError::VnetHdrLenOutOfPacket => D::VnetHdrLenOutOfPacket,
            GsoError::GsoUnknownType => D::GsoUnknownType,
            GsoError::UfoUnsupported => D::GsoUdpUnsupported,
            GsoError::GsoTypeMismatch => D::GsoTypeMismatch,
            GsoError::GsoSizeZero => D::GsoBadSize,
            GsoError::GsoTooManySegments => D::GsoTooManySegments,
            GsoError::GsoNoCsumPartial => D::GsoNoCsumPartial,
            GsoError::GsoBadTcpFlags => D::GsoBadTcpFlags,
            GsoError::NotGso => D::GsoNotGso,
            GsoError::OffloadOnFragment => D::OffloadOnFragment,
            GsoError::OffloadTrailingBytes => D::OffloadTrailingBytes,
            GsoError::OffloadUnparsed => D::OffloadUnparsed,
            GsoError::CsumOutOfPacket => D::CsumOffsetOutOfPacket,
            GsoError::CsumNotL4 => D::CsumNotL4,
            GsoError::NoBuffer => D::NoBuffer,
        }
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn every_gso_error_maps_to_the_drop_reason_of_the_same_name() {
        for e in GsoError::ALL {
            let r: crate::telemetry::DropReason = (*e).into();
            assert_eq!(r.name(), e.name(), "{e:?}");
        }
    }
}
