//! Packets per second through the in-memory pipeline, per core.
//!
//! - `baseline`: packets only move between rings (port rx -> batch -> port tx), the floor every
//!   other figure is compared with in the same run.
//! - `parse`: the parse stage alone over a batch.
//! - `fdb_lookup`: FDB lookups with 1, 1 000 and 100 000 learned MACs.
//! - `l2`: the full path, access port (VLAN 10) <-> trunk, a tag pushed one way and popped the
//!   other, with 1, 1 000 and 100 000 MACs learned behind the trunk.
//!
//! - `qos`: the `l2` path (1 000 MACs) with both ports' egress shaped by a QoS tree whose
//!   rates (1 Tbit/s) throttle nothing, against the same path unshaped: the cost of
//!   classifying, enqueueing and dequeueing every packet through the HTB scheduler.
//!
//! Each packet is bounced back by the harness (MACs swapped) so buffers are recycled and no
//! allocation or frame building is measured; the baseline pays the same bounce. At the end a
//! summary prints Mpps and the ratio to the baseline measured in the same run, since absolute
//! figures on a shared VM are noisy.
//!
//! Instructions per packet of the `qos` case, a figure that does not move with the machine's
//! load: with `PIPELINE_QOS=on:PACKETS` (or `off:PACKETS`) the binary skips criterion, sets
//! up the case, moves 100 000 packets to warm up, then PACKETS more. Under `valgrind
//! --tool=callgrind`, the difference between the totals of two runs (e.g. 0 and 200 000
//! packets) divided by the difference in packets cancels the set-up.

use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::collections::BTreeMap;
use vswitch::packet::{Batch, Meta};

use vswitch::pipeline::nodes::parse;
use vswitch::pipeline::snapshot::QosPlan;
use vswitch::port::{ring, Port};
use vswitch::qos::{ClassConfig, ClassId};
use vswitch::tables::fdb::{Fdb, FdbConfig};
use vswitch::testkit::Rig;
use vswitch::types::MacAddr;
use vswitch_suite::l2bench::{bounce, far_mac, L2Bench};
use vswitch_suite::{mac, udp_frame};

/// The floor: packets move port -> batch -> port with the same bounce, no pipeline.
struct Baseline<const N: usize> {
    rig: Rig<N>,
    batch: Batch<N>,
    ports: Vec<ring::RingPort>,
    peers: Vec<ring::RingPeer>,
}

impl<const N: usize> Baseline<N> {
    fn new() -> Self {
        let mut rig: Rig<N> = Rig::new(&[]);
        let (a, mut pa) = ring::pair("a", 4096);
        let (b, pb) = ring::pair("b", 4096);
        for _ in 0..1024 {
            let p = rig.worker.pool_mut().alloc_from(&udp_frame(mac(2), mac(1), None, 18)).unwrap();
            pa.inject(p).unwrap();
        }
        Baseline { rig, batch: Batch::new(), ports: vec![a, b], peers: vec![pa, pb] }
    }

    fn run(&mut self, n: usize) {
        let pool = self.rig.worker.pool_mut();
        let mut moved = 0;
        while moved < n {
            for i in 0..2 {
                let got = Port::<N>::rx(&mut self.ports[i], i as u16, pool, &mut self.batch);
                moved += got;
                let _ = self.ports[1 - i].tx(pool, &mut self.batch);
                // What went out of port 1 - i comes back into it.
                let dst = 1 - i;
                bounce(pool, &mut self.peers[dst]);
            }
        }
    }
}

fn bench_baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(4096));
    let mut b32: Baseline<32> = Baseline::new();
    g.bench_function("ring_to_ring/32", |b| b.iter(|| b32.run(4096)));
    let mut b256: Baseline<256> = Baseline::new();
    g.bench_function("ring_to_ring/256", |b| b.iter(|| b256.run(4096)));
    g.finish();
}

fn parse_batch<const N: usize>(c: &mut Criterion) {
    let mut rig: Rig<N> = Rig::new(&[]);
    let mut batch: Batch<N> = Batch::new();
    for i in 0..N {
        let f = udp_frame(mac(2), mac(i as u16), Some(10), 18);
        let p = rig.worker.pool_mut().alloc_from(&f).unwrap();
        batch.push(p, Meta::rx(0)).unwrap();
    }
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter(|| {
            for m in batch.meta_mut() {
                *m = Meta::rx(0);
            }
            parse::run(&mut batch, rig.worker.pool());
        })
    });
    g.finish();
    batch.free_all(rig.worker.pool_mut());
}

fn bench_parse(c: &mut Criterion) {
    parse_batch::<32>(c);
    parse_batch::<256>(c);
}

fn bench_fdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb_lookup");
    g.throughput(Throughput::Elements(256));
    for macs in [1u32, 1_000, 100_000] {
        let (fdb, mut w) =
            Fdb::new(FdbConfig { max_entries: 131072, ..FdbConfig::default() }).unwrap();
        for i in 0..macs {
            w.learn(10, MacAddr(far_mac(i)), (i % 8) as u16, 1);
        }
        let keys: Vec<MacAddr> = (0..256u32).map(|i| MacAddr(far_mac((i * 7919) % macs))).collect();
        g.bench_function(BenchmarkId::from_parameter(macs), |b| {
            b.iter(|| {
                let mut hits = 0;
                for k in &keys {
                    hits += fdb.lookup(10, *k).is_some() as usize;
                }
                assert_eq!(hits, 256);
            })
        });
    }
    g.finish();
}

fn bench_l2(c: &mut Criterion) {
    let mut g = c.benchmark_group("l2");
    g.throughput(Throughput::Elements(4096));
    for macs in [1u32, 1_000, 100_000] {
        let mut b32: L2Bench<32> = L2Bench::new(macs, 4096);
        g.bench_function(BenchmarkId::new("batch32", macs), |b| b.iter(|| b32.run(4096)));
        drop(b32);
        let mut b256: L2Bench<256> = L2Bench::new(macs, 4096);
        g.bench_function(BenchmarkId::new("batch256", macs), |b| b.iter(|| b256.run(4096)));
    }
    g.finish();
}

/// A tree for the egress of port `to` that throttles nothing: root and two leaves at
/// 1 Tbit/s (traffic from the other port goes to leaf 2, anything else to leaf 3).
fn open_plan(to: u16) -> QosPlan {
    let big = 1_000_000_000_000;
    let class = |parent, rate| ClassConfig {
        burst_bytes: 1 << 24,
        queue_limit: 8192,
        ..ClassConfig::new(parent, rate, big)
    };
    let classes = BTreeMap::from([
        (ClassId(1), class(None, big)),
        (ClassId(2), class(Some(ClassId(1)), big / 2)),
        (ClassId(3), class(Some(ClassId(1)), big / 2)),
    ]);
    let names = BTreeMap::from([
        (ClassId(1), "root".to_string()),
        (ClassId(2), "pod".to_string()),
        (ClassId(3), "default".to_string()),
    ]);
    QosPlan::new(classes, names, [(1 - to, ClassId(2))], Some(ClassId(3)))
}

/// The `l2` path with 1 000 MACs, both egresses shaped (`qos`) or not.
fn qos_bench<const N: usize>(qos: bool) -> L2Bench<N> {
    let mut b: L2Bench<N> = L2Bench::new(1_000, 4096);
    if qos {
        for port in [0, 1] {
            b.rig.set_qos(port, Some(open_plan(port)));
        }
        b.run(4096);
        assert!(b.rig.worker.qos(1).is_some(), "the worker runs the plan");
    }
    b
}

fn bench_qos(c: &mut Criterion) {
    let mut g = c.benchmark_group("qos");
    g.throughput(Throughput::Elements(4096));
    for on in [false, true] {
        let mut b: L2Bench<32> = qos_bench(on);
        let name = if on { "on" } else { "off" };
        g.bench_function(BenchmarkId::new("batch32", name), |bn| bn.iter(|| b.run(4096)));
    }
    g.finish();
}

/// Mpps of `f` moving `per_call` packets per call, over about `secs` seconds.
fn mpps(secs: f64, per_call: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut calls = 0usize;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        calls += 1;
    }
    (calls * per_call) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn summary(_c: &mut Criterion) {
    let secs = 0.7;
    let mut base: Baseline<32> = Baseline::new();
    let floor = mpps(secs, 4096, || base.run(4096));
    let mut base256: Baseline<256> = Baseline::new();
    let floor256 = mpps(secs, 4096, || base256.run(4096));
    println!("\n== summary: Mpps per core, and share of the ring-to-ring baseline measured now ==");
    println!("baseline ring_to_ring   batch32 {floor:7.2} Mpps   batch256 {floor256:7.2} Mpps");
    for macs in [1u32, 1_000, 100_000] {
        let mut b32: L2Bench<32> = L2Bench::new(macs, 4096);
        let r32 = mpps(secs, 4096, || {
            b32.run(4096);
        });
        drop(b32);
        let mut b256: L2Bench<256> = L2Bench::new(macs, 4096);
        let r256 = mpps(secs, 4096, || {
            b256.run(4096);
        });
        println!(
            "l2 access<->trunk {macs:>6} MACs  batch32 {r32:7.2} Mpps ({:4.0}% of baseline)   batch256 {r256:7.2} Mpps ({:4.0}%)",
            100.0 * r32 / floor,
            100.0 * r256 / floor256
        );
    }
}

fn qos_summary(_c: &mut Criterion) {
    let secs = 0.7;
    println!("\n== QoS end to end through the worker (l2 path, 1 000 MACs, both egresses) ==");
    for round in 0..2 {
        let mut off: L2Bench<32> = qos_bench(false);
        let r_off = mpps(secs, 4096, || {
            off.run(4096);
        });
        drop(off);
        let mut on: L2Bench<32> = qos_bench(true);
        let r_on = mpps(secs, 4096, || {
            on.run(4096);
        });
        let drops: u64 = (0..2).map(|p| on.rig.stats(p).dropped()).sum();
        println!(
            "round {round}: qos off {r_off:7.2} Mpps   qos on {r_on:7.2} Mpps   on/off {:5.1}%   drops with qos {drops}",
            100.0 * r_on / r_off
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_baseline, bench_parse, bench_fdb, bench_l2, bench_qos, summary, qos_summary
}
/// `PIPELINE_QOS=on|off:PACKETS`: a fixed run for instruction counts (module docs).
fn fixed_run(spec: &str) {
    let (on, pkts) = match spec.split_once(':') {
        Some(("on", n)) => (true, n.parse::<usize>().expect("PACKETS")),
        Some(("off", n)) => (false, n.parse::<usize>().expect("PACKETS")),
        _ => panic!("PIPELINE_QOS={spec}: want on:PACKETS or off:PACKETS"),
    };
    let mut b: L2Bench<32> = qos_bench(on);
    b.run(100_000);
    let moved = if pkts > 0 { b.run(pkts) } else { 0 };
    println!("qos {}: {moved} packets after 100 000", if on { "on" } else { "off" });
}

fn main() {
    if let Ok(spec) = std::env::var("PIPELINE_QOS") {
        fixed_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
