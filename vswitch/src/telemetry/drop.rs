//! Why a packet was dropped: one list, from which the enum, the names shown by `vswitchctl`
//! and the metric labels, and the human descriptions are all generated (as VPP generates its
//! error strings from one list), so a new reason cannot be counted without being named.

macro_rules! drop_reasons {
    ($( $variant:ident = $name:literal : $help:literal, )*) => {
        /// Why a packet was dropped. Every drop on the data path is counted under one of these,
        /// per port.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $( #[doc = $help] $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons (the width of a per-port counter row).
            pub const COUNT: usize = Self::ALL.len();

            /// Short snake_case name, used by `vswitchctl` and as a metric label.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One-line description for humans.
            pub const fn help(self) -> &'static str {
                match self { $(DropReason::$variant => $help,)* }
            }

            /// Index into a counter row.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    EthTruncated = "eth_truncated": "frame shorter than an Ethernet header (14 bytes)",
    VlanTruncated = "vlan_truncated": "802.1Q tag cut off by the end of the frame",
    VlanStacked = "vlan_stacked": "stacked tags (QinQ or a second 802.1Q tag) are not switched",
    SrcMacInvalid = "src_mac_invalid": "source MAC is a group (multicast/broadcast) or all-zero address",
    ArpMalformed = "arp_malformed": "ARP packet truncated or not Ethernet/IPv4",
    Ipv4Malformed = "ipv4_malformed": "IPv4 header truncated, wrong version, bad header or total length",
    Ipv6Malformed = "ipv6_malformed": "IPv6 header truncated, wrong version or payload length past the frame",
    TcpMalformed = "tcp_malformed": "TCP header truncated or data offset outside the packet",
    UdpMalformed = "udp_malformed": "UDP header truncated or length field inconsistent",
    IcmpMalformed = "icmp_malformed": "ICMP header truncated",
    PortUnknown = "port_unknown": "packet from a port the current configuration does not know",
    PortDown = "port_down": "ingress or egress port administratively down",
    VlanTaggedOnAccess = "vlan_tagged_on_access": "tagged frame on an access port",
    VlanNotAllowed = "vlan_not_allowed": "VLAN not in the trunk port's allowed list",
    VlanUntaggedOnTrunk = "vlan_untagged_on_trunk": "untagged frame on a trunk port without a native VLAN",
    StaticMacMoved = "static_mac_moved": "source MAC is a static FDB entry on another port (spoofing)",
    SamePort = "same_port": "destination MAC is on the port the frame came in on",
    NoFloodMembers = "no_flood_members": "broadcast/unknown destination and no other port in the VLAN",
    MtuExceeded = "mtu_exceeded": "frame longer than the egress port's MTU",
    NoBuffer = "no_buffer": "buffer pool exhausted (flood copy, hand-off copy or GSO segments)",
    NoHeadroom = "no_headroom": "no headroom left to push a header",
    TxRingFull = "tx_ring_full": "egress port's transmit ring was full",
    TxError = "tx_error": "egress port failed to transmit",
    TxLinkDown = "tx_link_down": "egress port's interface is down (the kernel refused the write)",
    Unhandled = "unhandled": "no pipeline stage decided what to do with the packet",
    VnetHdrBadLen = "vnet_hdr_bad_len": "virtio-net header is not 10 or 12 bytes (port misconfigured)",
    VnetBadFlags = "vnet_bad_flags": "virtio-net header has flag bits other than NEEDS_CSUM and DATA_VALID",
    VnetHdrLenOutOfPacket = "vnet_hdr_len_out_of_packet": "virtio-net hdr_len is larger than the packet",
    GsoUnknownType = "gso_unknown_type": "GSO type is not NONE, TCPV4, TCPV6 or UDP_L4 (ECN only with TCP)",
    GsoUdpUnsupported = "gso_udp_unsupported": "UDP fragmentation offload (UFO, deprecated) is not supported; USO is",
    GsoTypeMismatch = "gso_type_mismatch": "GSO type does not match the headers (TCPv4 on IPv6, TCP GSO on UDP, no L4 header)",
    GsoBadSize = "gso_bad_size": "GSO packet with a segment size of 0",
    GsoTooManySegments = "gso_too_many_segments": "GSO segment size would cut the packet into more than 512 segments",
    GsoNoCsumPartial = "gso_no_csum_partial": "GSO packet without a partial checksum (NEEDS_CSUM)",
    GsoBadTcpFlags = "gso_bad_tcp_flags": "TCP GSO packet with SYN or RST set",
    GsoNotGso = "gso_not_gso": "segmentation asked for a packet that is not GSO (a switch bug)",
    OffloadOnFragment = "offload_on_fragment": "GSO or partial checksum on an IPv4 fragment",
    OffloadTrailingBytes = "offload_trailing_bytes": "GSO or partial checksum on a frame with bytes after its IP packet",
    OffloadUnparsed = "offload_unparsed": "GSO or partial checksum on a packet whose IP/L4 headers do not parse",
    CsumOffsetOutOfPacket = "csum_offset_out_of_packet": "partial checksum start or field outside the packet",
    CsumNotL4 = "csum_not_l4": "partial checksum is not the packet's TCP or UDP checksum field",
    RxRingFull = "rx_ring_full": "the kernel dropped frames because the port's receive ring was full (the worker fell behind)",
    RxKernelDropped = "rx_kernel_dropped": "the kernel dropped frames for the port's socket (no free frame on the fill ring, or too large)",
    ArpNotForUs = "arp_not_for_us": "ARP on the uplink for an address that is not this node's",
    UplinkNotForUs = "uplink_not_for_us": "frame on the uplink that is not ARP, VXLAN or IPv4 for this node's router",
    ToNodeUnsupported = "to_node_unsupported": "packet for the node's own gateway or underlay address that is not ping, ARP or VXLAN",
    NotIpv4 = "not_ipv4": "non-IPv4 packet to the router MAC or inside VXLAN (only IPv4 is routed)",
    VxlanTruncated = "vxlan_truncated": "VXLAN packet too short for its header and an inner Ethernet header",
    VxlanBadFlags = "vxlan_bad_flags": "VXLAN header without the I (valid VNI) flag",
    VxlanBadVni = "vxlan_bad_vni": "VXLAN packet for a VNI this node does not serve",
    VxlanInnerMalformed = "vxlan_inner_malformed": "the frame inside a VXLAN packet does not parse",
    TunnelGsoUnexpected = "tunnel_gso_unexpected": "a UDP tunnel GSO packet that is not VXLAN for this node, or whose inner header is not where the port said, or bound for a port that cannot segment it",
    TtlExpired = "ttl_expired": "TTL ran out and no ICMP time exceeded was sent (rate limit, or about an ICMP error)",
    NoRoute = "no_route": "no route to the destination and no ICMP unreachable was sent (rate limit, or about an ICMP error)",
    FragNeeded = "frag_needed": "larger than the path MTU and DF set, and no ICMP fragmentation-needed was sent",
    MtuNoFrag = "mtu_no_frag": "routed packet larger than the path MTU without DF (the switch does not fragment)",
    NeighborUnresolved = "neighbor_unresolved": "the next hop did not answer ARP within 3 s",
    NeighborQueueFull = "neighbor_queue_full": "the queue of packets waiting for ARP resolution was full",
    RxPortDropped = "rx_port_dropped": "the port's receive path dropped frames (truncated by the kernel, no buffer, malformed ring entry)",
    QosQueueFull = "qos_queue_full": "the packet's QoS class queue on the egress port was at its limit",
    QosPoliced = "qos_policed": "a policing QoS class (mode = \"police\") was over its ceiling and burst",
    QosPpsLimit = "qos_pps_limit": "a policing QoS class was over its packets-per-second limit",
    QosClassRemoved = "qos_class_removed": "queued in a QoS class that a configuration change removed, or whose port lost its scheduler",
    QosLocalQueueFull = "qos_local_queue_full": "the sending pod's QoS class was over its ceiling or pps limit on traffic its class's scheduler does not see (to a pod on this node, or out of an unshaped port), and the queue where that traffic waits was full",
    QosLocalPoliced = "qos_local_policed": "the sending pod's policing QoS class (mode = \"police\") was over its ceiling and burst, on traffic its class's scheduler does not see",
    QosLocalPpsLimit = "qos_local_pps_limit": "the sending pod's policing QoS class was over its packets-per-second limit, on traffic its class's scheduler does not see",
    QosNoClass = "qos_no_class": "the packet's QoS class is not a leaf of the egress port's scheduler (a configuration change in flight)",
    DdosSourceRate = "ddos_source_rate": "the uplink's DDoS guard: the source address sent more than its packets-per-second limit",
    DdosSynFlood = "ddos_syn_flood": "the uplink's DDoS guard: more TCP SYNs than the uplink's SYN limit",
    AclDrop = "acl_drop": "a flow rule whose action is drop matched the packet",
    AclMeter = "acl_meter": "a flow rule's meter (rate limit) refused the packet",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.help().is_empty());
        }
    }
}
