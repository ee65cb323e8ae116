//! Properties of the whole pipeline over arbitrary input: no input panics the switch, every
//! packet is accounted for, no buffer leaks, and VLANs never leak into each other.

use proptest::prelude::*;
use vswitch::pipeline::{VlanMode, VlanSet};
use vswitch::testkit::Rig;
use vswitch_suite::{mac, udp_frame, vlan_of};

fn two_ports() -> Rig<32> {
    Rig::new(&[("a", VlanMode::Access(1)), ("b", VlanMode::Access(1))])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes from either port: with two ports in one VLAN, every packet is either
    /// delivered exactly once or dropped and counted: in = out + dropped.
    #[test]
    fn arbitrary_bytes_are_conserved(frames in prop::collection::vec(
        (0u16..2, prop::collection::vec(any::<u8>(), 0..200)), 1..64)) {
        let mut r = two_ports();
        for (port, bytes) in &frames {
            prop_assert!(r.send(*port, bytes));
        }
        r.run(100);
        let delivered: usize = r.discard_all().iter().sum();
        let (s0, s1) = (r.stats(0), r.stats(1));
        prop_assert_eq!(s0.rx_packets + s1.rx_packets, frames.len() as u64);
        prop_assert_eq!(delivered as u64, s0.tx_packets + s1.tx_packets);
        prop_assert_eq!(frames.len() as u64, delivered as u64 + s0.dropped() + s1.dropped());
        prop_assert_eq!(r.worker.pool().in_use(), 0);
    }

    /// Arbitrary bytes with a plausible Ethernet/VLAN/IP prefix (so deeper parsers are reached)
    /// never panic and never leak.
    #[test]
    fn plausible_headers_never_panic(
        ethertype in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8]),
        tag in prop::option::of(0u16..4096),
        body in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut r = two_ports();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac(1));
        if let Some(t) = tag {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&body);
        r.send(0, &f);
        r.run(10);
        let delivered: usize = r.discard_all().iter().sum();
        prop_assert_eq!(1, delivered as u64 + r.stats(0).dropped());
        prop_assert_eq!(r.worker.pool().in_use(), 0);
    }

    /// Random traffic among pods of VLANs 10 and 20 and a trunk: a frame that originated in
    /// one VLAN is never seen on a port of the other.
    #[test]
    fn vlans_never_leak(traffic in prop::collection::vec((0u16..5, 0u16..8, any::<bool>()), 1..80)) {
        let mut allowed = VlanSet::default();
        allowed.insert(10);
        allowed.insert(20);
        let mut r: Rig<32> = Rig::new(&[
            ("a0", VlanMode::Access(10)),
            ("a1", VlanMode::Access(10)),
            ("b2", VlanMode::Access(20)),
            ("b3", VlanMode::Access(20)),
            ("t4", VlanMode::Trunk { allowed, native: None }),
        ]);
        let vlan_of_port = |p: u16, trunk_vlan: bool| match p {
            0 | 1 => 10u8,
            2 | 3 => 20,
            _ => if trunk_vlan { 10 } else { 20 },
        };
        for (port, dst, trunk_vlan) in &traffic {
            let origin = vlan_of_port(*port, *trunk_vlan);
            let tag = (*port == 4).then_some(u16::from(origin));
            let d = if *dst == 7 { [0xff; 6] } else { mac(*dst) };
            let mut f = udp_frame(d, mac(100 + *port), tag, 16);
            let last = f.len() - 1;
            f[last] = origin;
            r.send(*port, &f);
            r.run(10);
            for p in 0..5u16 {
                for got in r.recv(p) {
                    let marker = got[got.len() - 1];
                    let seen_vlan = if p == 4 { vlan_of(&got).map(|v| v as u8) } else { Some(vlan_of_port(p, false)) };
                    prop_assert_eq!(Some(marker), seen_vlan, "VLAN {} frame on port {}", marker, p);
                }
            }
        }
        prop_assert_eq!(r.worker.pool().in_use(), 0);
    }
}
