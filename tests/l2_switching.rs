//! L2 switching through the whole pipeline on in-memory ports: learning, flooding scope, VLAN
//! isolation and tagging, aging, move detection, the FDB size limit, and drops by reason.

use vswitch::packet::PoolConfig;
use vswitch::pipeline::{VlanMode, VlanSet};
use vswitch::tables::fdb::FdbConfig;
use vswitch::telemetry::DropReason;
use vswitch::testkit::Rig;
use vswitch::types::MacAddr;
use vswitch_suite::{mac, raw_frame, udp_frame, untag, vlan_of};

const BCAST: [u8; 6] = [0xff; 6];

fn trunk(allowed: &[u16], native: Option<u16>) -> VlanMode {
    let mut set = VlanSet::default();
    for v in allowed {
        set.insert(*v);
    }
    VlanMode::Trunk { allowed: set, native }
}

/// Ports 0,1,2 in VLAN 10; ports 3,4 in VLAN 20; port 5 a trunk for 10 and 20.
fn rig() -> Rig<32> {
    Rig::new(&[
        ("a0", VlanMode::Access(10)),
        ("a1", VlanMode::Access(10)),
        ("a2", VlanMode::Access(10)),
        ("b3", VlanMode::Access(20)),
        ("b4", VlanMode::Access(20)),
        ("t5", trunk(&[10, 20], None)),
    ])
}

#[test]
fn unknown_unicast_floods_the_vlan_only_then_learning_makes_it_unicast() {
    let mut r = rig();
    let f = udp_frame(mac(2), mac(1), None, 64);
    r.send(0, &f);
    r.run(10);
    assert_eq!(r.recv(1), vec![f.clone()]);
    assert_eq!(r.recv(2), vec![f.clone()]);
    assert!(r.recv(3).is_empty() && r.recv(4).is_empty(), "flood left VLAN 10");
    let t = r.recv(5);
    assert_eq!(t.len(), 1);
    assert_eq!(vlan_of(&t[0]), Some(10), "trunk copy tagged with VLAN 10");
    assert_eq!(untag(&t[0]), f);
    assert!(r.recv(0).is_empty(), "never back to the ingress port");

    // The reply is unicast to the now-learned mac(1) on port 0 only.
    let g = udp_frame(mac(1), mac(2), None, 64);
    r.send(1, &g);
    r.run(10);
    assert_eq!(r.recv(0), vec![g]);
    for p in [2, 3, 4, 5] {
        assert!(r.recv(p).is_empty(), "port {p} saw a unicast reply");
    }
    // And mac(2) is learned on port 1 now: traffic to it is unicast as well.
    r.send(0, &f);
    r.run(10);
    assert_eq!(r.recv(1), vec![f]);
    assert!(r.recv(2).is_empty() && r.recv(5).is_empty());
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(1))), Some(0));
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(2))), Some(1));
    assert_eq!(r.worker.pool().in_use(), 0, "no buffer leaked");
}

#[test]
fn vlans_are_isolated_even_for_known_macs() {
    let mut r = rig();
    // mac(3) lives in VLAN 20 on port 3.
    r.send(3, &udp_frame(BCAST, mac(3), None, 32));
    r.run(10);
    r.discard_all();
    // A VLAN 10 pod sends to mac(3): unknown in VLAN 10, flooded in VLAN 10 only.
    r.send(0, &udp_frame(mac(3), mac(1), None, 32));
    r.send(0, &udp_frame(BCAST, mac(1), None, 32));
    r.run(10);
    assert!(r.recv(3).is_empty() && r.recv(4).is_empty());
    assert_eq!(r.recv(1).len(), 2);
    assert!(r.recv(5).iter().all(|f| vlan_of(f) == Some(10)));
    // The same MAC may live in both VLANs on different ports.
    r.send(1, &udp_frame(BCAST, mac(3), None, 32));
    r.run(10);
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(3))), Some(1));
    assert_eq!(r.fdb.lookup(20, MacAddr(mac(3))), Some(3));
}

#[test]
fn trunk_tags_map_to_vlans_and_back() {
    let mut r = rig();
    // Tagged 20 on the trunk reaches VLAN 20's access ports untagged.
    let f = udp_frame(BCAST, mac(9), Some(20), 100);
    r.send(5, &f);
    r.run(10);
    for p in [3, 4] {
        let got = r.recv(p);
        assert_eq!(got.len(), 1);
        assert_eq!(vlan_of(&got[0]), None);
        assert_eq!(got[0], untag(&f));
    }
    assert!(r.recv(0).is_empty() && r.recv(1).is_empty() && r.recv(2).is_empty());
    // Untagged on a trunk without a native VLAN, and a VLAN not allowed: dropped and counted.
    r.send(5, &udp_frame(BCAST, mac(9), None, 10));
    r.send(5, &udp_frame(BCAST, mac(9), Some(30), 10));
    // Tagged frame on an access port: dropped.
    r.send(0, &udp_frame(BCAST, mac(1), Some(10), 10));
    r.run(10);
    let s5 = r.stats(5);
    assert_eq!(s5.drop_count(DropReason::VlanUntaggedOnTrunk), 1);
    assert_eq!(s5.drop_count(DropReason::VlanNotAllowed), 1);
    assert_eq!(r.stats(0).drop_count(DropReason::VlanTaggedOnAccess), 1);
    assert!(r.discard_all().iter().all(|&n| n == 0));
}

#[test]
fn native_vlan_is_untagged_on_the_trunk_and_priority_tags_are_accepted() {
    let mut r: Rig<32> = Rig::new(&[("a", VlanMode::Access(7)), ("t", trunk(&[8], Some(7)))]);
    let f = udp_frame(BCAST, mac(1), None, 20);
    r.send(0, &f);
    r.run(10);
    assert_eq!(r.recv(1), vec![f.clone()], "native VLAN leaves the trunk untagged");
    // Priority-tagged (VID 0) on the access port joins VLAN 7 and leaves the trunk untagged.
    let p = udp_frame(BCAST, mac(1), Some(0), 20);
    r.send(0, &p);
    r.run(10);
    assert_eq!(r.recv(1), vec![untag(&p)]);
}

#[test]
fn aging_forgets_idle_macs_and_keeps_active_ones() {
    let mut r = rig();
    r.send(0, &udp_frame(BCAST, mac(1), None, 10));
    r.send(1, &udp_frame(BCAST, mac(2), None, 10));
    r.run(10);
    r.discard_all();
    // mac(2) keeps talking every 60 s; mac(1) goes quiet. Aging is 300 s.
    for _ in 0..6 {
        r.advance(60_000_000_000);
        r.send(1, &udp_frame(mac(1), mac(2), None, 10));
        r.run(10);
    }
    r.discard_all();
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(1))), None, "idle MAC aged out");
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(2))), Some(1), "active MAC kept");
}

#[test]
fn a_moved_mac_follows_its_new_port() {
    let mut r = rig();
    r.send(0, &udp_frame(BCAST, mac(1), None, 10));
    r.run(10);
    r.send(2, &udp_frame(mac(1), mac(2), None, 10));
    r.run(10);
    r.discard_all();
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(1))), Some(0));
    // mac(1) moves to port 1.
    r.send(1, &udp_frame(BCAST, mac(1), None, 10));
    r.run(10);
    r.discard_all();
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(1))), Some(1));
    let f = udp_frame(mac(1), mac(2), None, 10);
    r.send(2, &f);
    r.run(10);
    assert_eq!(r.recv(1), vec![f]);
    assert!(r.recv(0).is_empty(), "old port no longer gets the traffic");
}

#[test]
fn the_fdb_size_limit_holds_and_unlearned_macs_still_flood() {
    let cfg = FdbConfig { max_entries: 4, ..FdbConfig::default() };
    let mut r: Rig<32> = Rig::with(
        &[("a", VlanMode::Access(1)), ("b", VlanMode::Access(1))],
        cfg,
        PoolConfig { frames: 1024, ..PoolConfig::default() },
    );
    for i in 0..10 {
        r.send(0, &udp_frame(BCAST, mac(100 + i), None, 10));
    }
    r.run(10);
    assert_eq!(r.recv(1).len(), 10);
    assert_eq!(r.fdb.len(), 4);
    // Frames to an unlearned MAC still get through, by flooding.
    let f = udp_frame(mac(109), mac(1), None, 10);
    r.send(1, &f);
    r.run(10);
    assert_eq!(r.recv(0), vec![f]);
}

#[test]
fn malformed_frames_are_dropped_by_reason() {
    let mut r = rig();
    let ok = udp_frame(BCAST, mac(1), None, 10);
    let mut bad_ihl = ok.clone();
    bad_ihl[14] = 0x43; // IHL 3
    let mut bad_ver = ok.clone();
    bad_ver[14] = 0x65; // version 6 in an IPv4 EtherType
    let mut bad_udp_len = ok.clone();
    bad_udp_len[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    let mut short_tcp = udp_frame(BCAST, mac(1), None, 4);
    short_tcp[14 + 9] = 6; // protocol TCP over an 12-byte payload
    let mut src_mc = ok.clone();
    src_mc[6] = 0x01;
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![0u8; 10], DropReason::EthTruncated),
        (raw_frame(BCAST, mac(1), None, 0x8100, &[0, 10]), DropReason::VlanTruncated),
        (raw_frame(BCAST, mac(1), Some(10), 0x8100, &[0; 40]), DropReason::VlanStacked),
        (raw_frame(BCAST, mac(1), None, 0x0800, &[0x45, 0, 0]), DropReason::Ipv4Malformed),
        (bad_ihl, DropReason::Ipv4Malformed),
        (bad_ver, DropReason::Ipv4Malformed),
        (raw_frame(BCAST, mac(1), None, 0x86dd, &[0x60; 20]), DropReason::Ipv6Malformed),
        (raw_frame(BCAST, mac(1), None, 0x0806, &[0, 1, 8, 0]), DropReason::ArpMalformed),
        (bad_udp_len, DropReason::UdpMalformed),
        (short_tcp, DropReason::TcpMalformed),
        (src_mc, DropReason::SrcMacInvalid),
    ];
    for (frame, reason) in &cases {
        let before = r.stats(0).drop_count(*reason);
        r.send(0, frame);
        r.run(10);
        assert_eq!(r.stats(0).drop_count(*reason), before + 1, "{reason:?} for {frame:02x?}");
    }
    assert!(r.discard_all().iter().all(|&n| n == 0), "a malformed frame got through");
    // Unknown EtherTypes are switched as plain L2.
    r.send(0, &raw_frame(BCAST, mac(1), None, 0x88cc, &[1; 46]));
    r.run(10);
    assert_eq!(r.discard_all(), vec![0, 1, 1, 0, 0, 1]);
    assert_eq!(r.worker.pool().in_use(), 0);
}

#[test]
fn same_port_mtu_and_static_spoofing_are_dropped() {
    let mut r = rig();
    r.send(0, &udp_frame(BCAST, mac(1), None, 10));
    r.send(0, &udp_frame(BCAST, mac(5), None, 10));
    r.run(10);
    r.discard_all();
    // mac(5) is behind port 0 too: a frame from port 0 to it is not sent back.
    r.send(0, &udp_frame(mac(5), mac(1), None, 10));
    r.run(10);
    assert_eq!(r.stats(0).drop_count(DropReason::SamePort), 1);
    // 1501 bytes of IP to an MTU-1500 port.
    r.send(1, &udp_frame(mac(1), mac(2), None, 1501 - 28));
    r.run(10);
    assert_eq!(r.stats(0).drop_count(DropReason::MtuExceeded), 1);
    // mac(7) is static on port 2; port 1 claiming it is spoofing.
    r.learner.writer().add_static(10, MacAddr(mac(7)), 2).unwrap();
    r.send(1, &udp_frame(BCAST, mac(7), None, 10));
    r.run(10);
    assert_eq!(r.stats(1).drop_count(DropReason::StaticMacMoved), 1);
    assert_eq!(r.fdb.lookup(10, MacAddr(mac(7))), Some(2));
    assert!(r.discard_all().iter().all(|&n| n == 0));
}

#[test]
fn a_port_taken_down_stops_forwarding_without_touching_others() {
    let mut r = rig();
    r.reconfigure(2, |e| e.up = false);
    r.send(0, &udp_frame(BCAST, mac(1), None, 10));
    r.send(2, &udp_frame(BCAST, mac(3), None, 10));
    r.run(10);
    assert_eq!(r.recv(1).len(), 1);
    assert!(r.recv(2).is_empty(), "down port got a flood copy");
    assert_eq!(r.stats(2).drop_count(DropReason::PortDown), 1);
}

#[test]
fn counters_match_the_traffic() {
    let mut r = rig();
    let f = udp_frame(BCAST, mac(1), None, 100);
    for _ in 0..50 {
        r.send(0, &f);
    }
    r.run(20);
    let s0 = r.stats(0);
    assert_eq!((s0.rx_packets, s0.rx_bytes), (50, 50 * f.len() as u64));
    for p in [1, 2] {
        let s = r.stats(p);
        assert_eq!((s.tx_packets, s.tx_bytes), (50, 50 * f.len() as u64));
    }
    assert_eq!(r.stats(5).tx_bytes, 50 * (f.len() as u64 + 4), "trunk copies carry a tag");
    assert_eq!(r.stats(3).tx_packets, 0);
}
