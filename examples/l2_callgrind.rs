//! The full L2 path (access port <-> trunk, VLAN push one way and pop the other, 1 000 learned
//! MACs behind the trunk) for a fixed number of packets, to count instructions per packet
//! with `valgrind --tool=callgrind`, a figure that does not move with the machine's load:
//!
//! ```sh
//! cargo build --release --example l2_callgrind
//! valgrind --tool=callgrind target/release/examples/l2_callgrind 200000
//! ```
//! Instructions per packet = (total of the measured phase) / packets; the program prints the
//! packet count, and `callgrind_annotate` shows where they go.

use vswitch::packet::PoolConfig;
use vswitch::pipeline::{VlanMode, VlanSet};
use vswitch::tables::fdb::FdbConfig;
use vswitch::testkit::Rig;
use vswitch_suite::{mac, udp_frame};

fn main() {
    let packets: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut allowed = VlanSet::default();
    allowed.insert(10);
    let mut rig: Rig<32> = Rig::with(
        &[("pod", VlanMode::Access(10)), ("trunk", VlanMode::Trunk { allowed, native: None })],
        FdbConfig::default(),
        PoolConfig { frames: 16384, ..PoolConfig::default() },
    );
    let far = |i: u32| {
        let b = i.to_be_bytes();
        [0x06, 0, b[0], b[1], b[2], b[3]]
    };
    for i in 0..1000 {
        rig.send(1, &udp_frame(mac(1), far(i), Some(10), 18));
        if i % 256 == 255 {
            rig.run(64);
            rig.discard_all();
        }
    }
    rig.send(0, &udp_frame([0xff; 6], mac(1), None, 18));
    rig.run(64);
    rig.discard_all();
    for i in 0..1024u32 {
        assert!(rig.send(0, &udp_frame(far((i * 7919) % 1000), mac(1), None, 18)));
    }
    // Measured phase: packets bounce port 0 -> 1 -> 0 ..., MACs swapped by the harness.
    let mut moved = 0;
    while moved < packets {
        moved += rig.worker.poll_once(rig.now);
        rig.now += 100;
        for p in 0..2 {
            let (pool, peer) = (rig.worker.pool_mut(), &mut rig.peers[p]);
            while let Some(pkt) = peer.collect() {
                let d = pool.data_mut(&pkt);
                let (a, b) = d.split_at_mut(6);
                a.swap_with_slice(&mut b[..6]);
                if let Err(pkt) = peer.inject(pkt) {
                    pool.free(pkt);
                }
            }
        }
    }
    println!("{moved} packets through the L2 path");
}
