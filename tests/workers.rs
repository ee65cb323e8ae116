//! Two workers, each with its own pool: packets whose egress port the other worker owns cross
//! on the SPSC hand-off rings, arrive intact, and every buffer goes back to its own pool.

use std::sync::Arc;

use arc_swap::ArcSwap;
use vswitch::packet::{Pool, PoolConfig};
use vswitch::pipeline::{PortEntry, Snapshot, VlanMode};
use vswitch::pmd::{learn_ring, Learner, Worker, WorkerConfig};
use vswitch::port::ring::{self, RingPeer};
use vswitch::tables::fdb::{Fdb, FdbConfig};
use vswitch::types::MacAddr;
use vswitch_suite::{mac, udp_frame};

fn entry(name: &str) -> PortEntry {
    PortEntry { name: name.into(), up: true, mode: VlanMode::Access(10), mtu: 1500 }
}

#[test]
fn packets_cross_between_workers_and_buffers_come_home() {
    // Port 0 on worker 0; ports 1 and 2 on worker 1.
    let mut snap = Snapshot::build(1, [(0, entry("a")), (1, entry("b")), (2, entry("c"))]).unwrap();
    snap.set_owner(1, 1);
    snap.set_owner(2, 1);
    let snapshot = Arc::new(ArcSwap::from_pointee(snap));
    let (fdb, writer) = Fdb::new(FdbConfig::default()).unwrap();
    let mut learner = Learner::new(writer, 300_000_000_000);
    let pool = || Pool::new(PoolConfig { frames: 1024, ..PoolConfig::default() }).unwrap();
    let mut w: Vec<Worker<32>> = (0..2u16)
        .map(|id| {
            let (tx, rx) = learn_ring();
            learner.attach(rx);
            let cfg = WorkerConfig { id, ..WorkerConfig::default() };
            Worker::new(cfg, pool(), snapshot.clone(), fdb.clone(), tx)
        })
        .collect();
    let mut peers: Vec<RingPeer> = Vec::new();
    for (id, worker) in [(0u16, 0usize), (1, 1), (2, 1)] {
        let (port, peer) = ring::pair(&format!("p{id}"), 256);
        w[worker].add_port(id, Box::new(port)).unwrap();
        peers.push(peer);
    }
    let (w0, w1) = w.split_at_mut(1);
    Worker::link(&mut w0[0], &mut w1[0]);
    let mut now = 1_000_000_000;
    let mut step = |w: &mut Vec<Worker<32>>, learner: &mut Learner| {
        for worker in w.iter_mut() {
            worker.poll_once(now);
        }
        learner.run_once(now);
        now += 1000;
    };

    // A broadcast from port 0 floods to ports 1 and 2, both on worker 1.
    let bcast = udp_frame([0xff; 6], mac(1), None, 100);
    let p = w[0].pool_mut().alloc_from(&bcast).unwrap();
    peers[0].inject(p).unwrap();
    for _ in 0..3 {
        step(&mut w, &mut learner);
    }
    for port in [1, 2] {
        let got = peers[port].collect().expect("flood copy crossed");
        assert_eq!(w[1].pool().data(&got), &bcast[..]);
        w[1].pool_mut().free(got);
    }
    // A unicast reply from port 2 to the learned MAC crosses back to port 0.
    assert_eq!(fdb.lookup(10, MacAddr(mac(1))), Some(0));
    let reply = udp_frame(mac(1), mac(3), None, 50);
    let p = w[1].pool_mut().alloc_from(&reply).unwrap();
    peers[2].inject(p).unwrap();
    for _ in 0..3 {
        step(&mut w, &mut learner);
    }
    let got = peers[0].collect().expect("reply crossed back");
    assert_eq!(w[0].pool().data(&got), &reply[..]);
    w[0].pool_mut().free(got);
    assert!(peers[1].collect().is_none(), "unicast leaked to another port");
    step(&mut w, &mut learner);
    assert_eq!((w[0].pool().in_use(), w[1].pool().in_use()), (0, 0), "a buffer did not come home");
    let c1 = w[1].counters().port(1).snapshot();
    assert_eq!(c1.tx_packets, 1, "worker 1 counts what it sent on its port");
}

/// A pod's QoS class limits its traffic to a pod that another worker owns on the worker that
/// receives from it, before the hand-off: the class's ceiling holds, the other worker keeps no
/// limiter for it, and every buffer still goes home.
#[test]
fn a_pods_local_limit_is_kept_by_the_worker_that_receives_from_it() {
    use std::collections::BTreeMap;
    use vswitch::pipeline::snapshot::QosPlan;
    use vswitch::qos::{ClassConfig, ClassId};

    // Port 0 (pod a) on worker 0; port 1 (pod b) and port 2 (the uplink) on worker 1. The
    // uplink is shaped by a tree where a's class has an 8 Mbit/s ceiling and 3000 bytes of
    // burst.
    let mut snap =
        Snapshot::build(1, [(0, entry("a")), (1, entry("b")), (2, entry("up"))]).unwrap();
    snap.set_owner(1, 1);
    snap.set_owner(2, 1);
    let classes = BTreeMap::from([
        (ClassId(1), ClassConfig::new(None, 100_000_000, 100_000_000)),
        (
            ClassId(2),
            ClassConfig { burst_bytes: 3000, ..ClassConfig::new(Some(ClassId(1)), 1, 8_000_000) },
        ),
    ]);
    snap.set_qos(
        2,
        Some(Arc::new(QosPlan::new(classes, BTreeMap::new(), [(0, ClassId(2))], None))),
    );
    let snapshot = Arc::new(ArcSwap::from_pointee(snap));
    let (fdb, writer) = Fdb::new(FdbConfig::default()).unwrap();
    let mut learner = Learner::new(writer, 300_000_000_000);
    let pool = || Pool::new(PoolConfig { frames: 1024, ..PoolConfig::default() }).unwrap();
    let mut w: Vec<Worker<32>> = (0..2u16)
        .map(|id| {
            let (tx, rx) = learn_ring();
            learner.attach(rx);
            let cfg = WorkerConfig { id, ..WorkerConfig::default() };
            Worker::new(cfg, pool(), snapshot.clone(), fdb.clone(), tx)
        })
        .collect();
    let mut peers: Vec<RingPeer> = Vec::new();
    for (id, worker) in [(0u16, 0usize), (1, 1), (2, 1)] {
        let (port, peer) = ring::pair(&format!("p{id}"), 256);
        w[worker].add_port(id, Box::new(port)).unwrap();
        peers.push(peer);
    }
    let (w0, w1) = w.split_at_mut(1);
    Worker::link(&mut w0[0], &mut w1[0]);
    let mut now = 1_000_000_000;
    let step = |w: &mut Vec<Worker<32>>, learner: &mut Learner, now: &mut u64| {
        for worker in w.iter_mut() {
            worker.poll_once(*now);
        }
        learner.run_once(*now);
        *now += 1000;
    };
    let collect = |w: &mut Vec<Worker<32>>, peer: &mut RingPeer| {
        let mut n = 0;
        while let Some(p) = peer.collect() {
            w[1].pool_mut().free(p);
            n += 1;
        }
        n
    };
    // b makes itself known.
    let hello = udp_frame([0xff; 6], mac(2), None, 100);
    let p = w[1].pool_mut().alloc_from(&hello).unwrap();
    peers[1].inject(p).unwrap();
    for _ in 0..3 {
        step(&mut w, &mut learner, &mut now);
    }
    while let Some(p) = peers[0].collect() {
        w[0].pool_mut().free(p);
    }
    collect(&mut w, &mut peers[2]);
    // Ten 1000-byte frames from a to b at once: the burst and one frame more cross, the rest
    // waits on worker 0.
    for _ in 0..10 {
        let p = w[0].pool_mut().alloc_from(&udp_frame(mac(2), mac(1), None, 958)).unwrap();
        peers[0].inject(p).unwrap();
    }
    for _ in 0..3 {
        step(&mut w, &mut learner, &mut now);
    }
    assert_eq!(collect(&mut w, &mut peers[1]), 4);
    assert_eq!(w[0].local_limiter(0).map(|l| l.backlog()), Some(6));
    assert!(w[1].local_limiter(0).is_none(), "the receiving worker alone limits a");
    // One frame a millisecond from then on (8 Mbit/s).
    for _ in 0..6 {
        now += 1_000_000 - 3000;
        for _ in 0..3 {
            step(&mut w, &mut learner, &mut now);
        }
        assert_eq!(collect(&mut w, &mut peers[1]), 1);
    }
    step(&mut w, &mut learner, &mut now);
    assert_eq!((w[0].pool().in_use(), w[1].pool().in_use()), (0, 0), "a buffer did not come home");
    assert_eq!(w[0].counters().port(0).snapshot().dropped(), 0);
}
