//! Cost per packet of the QoS scheduler: one enqueue plus one dequeue, with 10, 1 000 and
//! 10 000 leaf classes under one parent (the uplink, 100 Gbit/s), traffic spread over the
//! classes in a pseudo-random order, every class kept backlogged.
//!
//! - `line_rate`: packets arrive at exactly the parent's rate (1500 bytes every 120 ns on the
//!   fake clock). Each leaf's guarantee is 100 Gbit/s / N, its ceiling the full 100 Gbit/s, so
//!   leaves keep flipping between sending on their guarantee and borrowing (the wait wheel is
//!   exercised on most packets): the contended case. Every class has the library's default
//!   burst, 15 000 bytes (ten packets), so at 10 000 classes each packet puts its class 1.2 ms
//!   in debt and turns it yellow until that is repaid: the harsh case, on purpose.
//! - `half_rate`: packets arrive at half the parent's rate, so most packets go out on the
//!   leaves' own guarantees.
//!
//! - `line_rate_batch32`: as `line_rate`, but 32 enqueues then one `dequeue_batch` of 32, as
//!   a batched data path calls it.
//! - `line_rate_batch32_4ms`: as `line_rate_batch32`, with the burst vswitchd gives a class
//!   by default, 4 ms at its ceiling (here 50 MB). The rate bucket holds 4 ms at the
//!   guarantee, at least ten frames (`qos::sched::rate_burst`): 5 MB at 10 classes, 50 KB at
//!   1 000, and ten frames at 10 000, as in the harsh case. The larger buckets absorb the
//!   random swings around each class's guarantee, so classes seldom change colour.
//! - `half_rate_pass32`: the data path's own calls on a port that is shaped but not
//!   congested: no initial backlog, packets at half the parent's rate, 32
//!   `enqueue_or_pass` (a packet the scheduler would send first is charged and handed back
//!   at once) then one `dequeue_batch` for whatever was queued.
//! - `borrow_batch32`: as `line_rate_batch32`, but every class has the guarantee vswitchd
//!   gives a CNI pod that asks for none (`control::pods::POD_EGRESS_GUARANTEE`, 10 kbit/s),
//!   and vswitchd's burst, so after its first ten frames a class only ever sends on the
//!   parent's spare capacity: every dequeue walks from the parent's row down its feed (DRR by
//!   weight) to a leaf. The parent's 50 MB burst covers each batch, so the backlog stays at
//!   its start (4 packets a class) and nothing is dropped.
//! - `line_rate_batch32_meta`: as `line_rate_batch32`, but each item is the size of what the
//!   data path queues (a packet handle and its `Meta`, 52 bytes: 60 with the pool's links,
//!   against 16), so a class's queued packets take four times the memory.
//!
//! The items of the other cases are `u32` handles (what a buffer index costs); no allocation
//! happens per packet.
//!
//! - the floor, measured in the same run right after each case: the same arrivals, items,
//!   queue bounds and backlog (the case's once it has settled, spread evenly over the
//!   classes) through a FIFO per class and a round robin over the backlogged classes, with
//!   no scheduling at all ([`Floor`]). What it costs is the memory that queueing so many
//!   packets at so many classes touches on this machine, which any scheduler pays; each case
//!   is also given as a multiple of its floor, a figure that moves less between machines than
//!   nanoseconds do. (`floor` and `floor_meta` name it, with handles or data-path items, for
//!   the fixed runs below.)
//!
//! A summary at the end prints ns per packet (enqueue + dequeue) and million packets per
//! second for each case, once the case has settled (after 3 million packets; at 10 000
//! classes the leaves' initial bursts carry them through the first million, and until then
//! few classes change colour): the median of 40 runs of 50 000 packets, so that stolen time
//! on a virtual machine does not count, and the best of them.
//!
//! Instructions per packet, a figure that does not move with the machine's load: with
//! `QOS_PACKETS=CASE:CLASSES:PACKETS` the binary skips criterion, warms up with 3 000 000
//! packets (as the summary does) and then runs PACKETS more of that case (`line_rate`,
//! `half_rate`, `line_rate_batch32`, `line_rate_batch32_4ms`, `half_rate_pass32`,
//! `borrow_batch32`, `line_rate_batch32_meta`, `floor` or `floor_meta`). Under
//! `valgrind --tool=callgrind`, the difference between the totals of two runs (e.g. 0 and
//! 200 000 packets) divided by the difference in packets cancels the set-up and the warm-up:
//!
//! ```sh
//! cargo bench --bench qos --no-run   # prints the binary's path
//! QOS_PACKETS=line_rate:10000:0 valgrind --tool=callgrind target/release/deps/qos-HASH
//! QOS_PACKETS=line_rate:10000:200000 valgrind --tool=callgrind target/release/deps/qos-HASH
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use vswitch::packet::{Meta, Pkt};
use vswitch::qos::{Change, ClassConfig, ClassId, Scheduler};

const ROOT_BPS: u64 = 100_000_000_000;
const LEN: u32 = 1500;
const SIZES: [u32; 3] = [10, 1_000, 10_000];

/// What a case queues: made from the arrival's pseudo-random number.
trait Item: Copy + std::fmt::Debug {
    fn new(x: u32) -> Self;
}

/// A buffer handle.
impl Item for u32 {
    #[inline(always)]
    fn new(x: u32) -> Self {
        x
    }
}

/// The size of the data path's item (`(Pkt, Meta)`: a packet handle is three `u32`s).
type Frame = ([u32; 3], Meta);

const _: () = assert!(std::mem::size_of::<Frame>() == std::mem::size_of::<(Pkt, Meta)>());

impl Item for Frame {
    #[inline(always)]
    fn new(x: u32) -> Self {
        ([x, 0, 1500], Meta { hash: x, class: x, ..Meta::default() })
    }
}

/// Which [`Item`] a case queues.
#[derive(Clone, Copy)]
enum Items {
    Handle,
    Frame,
}

struct Rig<T> {
    s: Scheduler<T>,
    arrivals: Arrivals,
}

/// The arrivals of a case: a fake clock moving one step per packet, and a pseudo-random
/// class (an index below `n`) for each packet. The same sequence for the scheduler and the
/// floor.
struct Arrivals {
    n: u32,
    t: u64,
    step_ns: u64,
    x: u32,
}

impl Arrivals {
    fn new(n: u32, step_ns: u64) -> Self {
        Arrivals { n, t: 0, step_ns, x: 1 }
    }

    /// The next arrival: the clock moves one step, and a pseudo-random class index (the
    /// item is made from `self.x`).
    #[inline(always)]
    fn next(&mut self) -> u32 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 17;
        self.x ^= self.x << 5;
        self.t += self.step_ns;
        // Multiply-shift instead of `%`: the harness should not cost a division per packet.
        ((u64::from(self.x) * u64::from(self.n)) >> 32) as u32
    }
}

/// A leaf's guarantee: an equal share of the parent's rate, or the token vswitchd gives a pod.
#[derive(Clone, Copy)]
enum Guarantee {
    Share,
    Pod,
}

impl Guarantee {
    fn bps(self, n: u32) -> u64 {
        match self {
            Guarantee::Share => ROOT_BPS / u64::from(n),
            Guarantee::Pod => vswitch::control::pods::POD_EGRESS_GUARANTEE,
        }
    }
}

/// A class's burst, bytes: the library's default (ten packets), or vswitchd's (4 ms at the
/// ceiling).
#[derive(Clone, Copy)]
enum Burst {
    Library,
    Daemon,
}

impl Burst {
    fn bytes(self, ceil_bps: u64) -> u64 {
        match self {
            Burst::Library => ClassConfig::new(None, 1, 1).burst_bytes,
            Burst::Daemon => vswitch::control::qos::default_burst(ceil_bps),
        }
    }
}

impl<T: Item> Rig<T> {
    /// `n` classes with a backlog of 4 packets each (none when `!backlog`).
    fn new(n: u32, step_ns: u64, backlog: bool, guarantee: Guarantee, burst: Burst) -> Self {
        let mut s = Scheduler::new();
        let root = ClassId(1);
        let root_cfg = ClassConfig {
            burst_bytes: burst.bytes(ROOT_BPS),
            ..ClassConfig::new(None, ROOT_BPS, ROOT_BPS)
        };
        let mut ch = vec![Change::Set(root, root_cfg)];
        for i in 0..n {
            let c = ClassConfig {
                queue_limit: QUEUE_LIMIT,
                burst_bytes: burst.bytes(ROOT_BPS),
                ..ClassConfig::new(Some(root), guarantee.bps(n), ROOT_BPS)
            };
            ch.push(Change::Set(ClassId(100 + i), c));
        }
        s.apply(ch, 0).expect("valid config");
        for k in 0..if backlog { 4 } else { 0 } {
            for i in 0..n {
                s.enqueue(ClassId(100 + i), T::new(k), LEN, 0).expect("room");
            }
        }
        Rig { s, arrivals: Arrivals::new(n, step_ns) }
    }

    /// The next arrival's class (see [`Arrivals::next`]).
    #[inline(always)]
    fn arrival(&mut self) -> ClassId {
        ClassId(100 + self.arrivals.next())
    }

    /// One packet in (to a pseudo-random class) and one out.
    #[inline]
    fn step(&mut self) {
        let class = self.arrival();
        let _ = black_box(self.s.enqueue(class, T::new(self.arrivals.x), LEN, self.arrivals.t));
        black_box(self.s.dequeue(self.arrivals.t));
    }

    /// 32 packets in (to pseudo-random classes), then 32 out: how a batched data path calls
    /// it (one burst from the ports, one transmit burst).
    #[inline]
    fn step_batch32(&mut self) {
        for _ in 0..32 {
            let class = self.arrival();
            let _ = black_box(self.s.enqueue(class, T::new(self.arrivals.x), LEN, self.arrivals.t));
        }
        self.s.dequeue_batch(self.arrivals.t, 32, |c, x, l| {
            black_box((c, x, l));
        });
    }

    /// 32 packets offered with `enqueue_or_pass` (those passed are sent at once), then one
    /// `dequeue_batch` for what was queued: the output stage's calls.
    #[inline]
    fn step_pass32(&mut self) {
        for _ in 0..32 {
            let class = self.arrival();
            let _ = black_box(self.s.enqueue_or_pass(
                class,
                T::new(self.arrivals.x),
                LEN,
                self.arrivals.t,
            ));
        }
        if self.s.backlog() > 0 {
            self.s.dequeue_batch(self.arrivals.t, 32, |c, x, l| {
                black_box((c, x, l));
            });
        }
    }
}

/// The baseline every case is compared with in the same run: what queueing alone costs with
/// the same arrivals, items and queue bounds, and no scheduling: a FIFO per class (its ends
/// and length, 12 bytes) threaded through one pool of nodes whose freed nodes are reused
/// first, as the scheduler's are, and a bitmap of the backlogged classes served round robin,
/// one packet per turn. No tokens, colours, priorities, weights, hierarchy or counters. It
/// tells what part of a case's time is the memory the backlog and the classes' state take on
/// this machine, which no scheduler avoids, and what part is scheduling (the ratio).
///
/// Written here, not taken from the library: the scheduler's pool is private to it, and a
/// baseline should not share the code it is a baseline for.
struct Floor<T> {
    /// Per class: first node, last node, packets queued.
    ends: Vec<[u32; 3]>,
    /// Per node: the item, its length, the next node of its queue (or of the free list).
    nodes: Vec<(T, u32, u32)>,
    free: u32,
    /// Bit `c % 64` of word `c / 64`: class `c` has a backlog.
    backlogged: Vec<u64>,
    /// Where the round robin goes on from.
    cursor: u32,
}

const NIL: u32 = u32::MAX;
/// The cases' queue bound, packets (see [`Rig::new`]).
const QUEUE_LIMIT: u32 = 64;

impl<T: Item> Floor<T> {
    fn new(n: u32) -> Self {
        Floor {
            ends: vec![[NIL, NIL, 0]; n as usize],
            nodes: Vec::with_capacity(n as usize * QUEUE_LIMIT as usize),
            free: NIL,
            backlogged: vec![0; (n as usize).div_ceil(64)],
            cursor: 0,
        }
    }

    /// Queues `item` on class `c`, or drops it when the class holds its bound.
    #[inline(always)]
    fn enqueue(&mut self, c: u32, item: T) -> bool {
        let e = &mut self.ends[c as usize];
        if e[2] >= QUEUE_LIMIT {
            return false;
        }
        let node = (item, LEN, NIL);
        let i = match self.nodes.get_mut(self.free as usize) {
            Some(free) => {
                let i = self.free;
                self.free = free.2;
                *free = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() as u32 - 1
            }
        };
        match self.nodes.get_mut(e[1] as usize) {
            Some(tail) => tail.2 = i,
            None => e[0] = i,
        }
        e[1] = i;
        e[2] += 1;
        self.backlogged[(c / 64) as usize] |= 1 << (c % 64);
        true
    }

    /// The next backlogged class from the cursor on, wrapping (a scan of words: in the
    /// congested cases nearly every class has a backlog, so the next one is nearly always in
    /// the cursor's word; no division, which would cost more than the rest).
    #[inline(always)]
    fn next_class(&self) -> Option<u32> {
        let words = &self.backlogged;
        let start = (self.cursor / 64) as usize;
        if let Some(&w) = words.get(start) {
            let m = w & (!0u64 << (self.cursor % 64));
            if m != 0 {
                return Some(start as u32 * 64 + m.trailing_zeros());
            }
        }
        let after = words.iter().enumerate().skip(start + 1);
        let wrapped = words.iter().enumerate().take(start + 1);
        let (w, m) = after.chain(wrapped).find(|(_, &m)| m != 0)?;
        Some(w as u32 * 64 + m.trailing_zeros())
    }

    /// The head of the next backlogged class's queue, with its class and length.
    #[inline(always)]
    fn dequeue(&mut self) -> Option<(u32, T, u32)> {
        let c = self.next_class()?;
        self.cursor = c + 1;
        let e = &mut self.ends[c as usize];
        let i = e[0];
        let node = &mut self.nodes[i as usize];
        let (item, len, next) = *node;
        node.2 = self.free;
        self.free = i;
        e[0] = next;
        e[2] -= 1;
        if e[2] == 0 {
            e[1] = NIL;
            self.backlogged[(c / 64) as usize] &= !(1 << (c % 64));
        }
        Some((c, item, len))
    }
}

/// [`Floor`] with a case's arrivals, called as the batched cases call the scheduler.
struct FloorRig<T> {
    q: Floor<T>,
    arrivals: Arrivals,
}

impl<T: Item> FloorRig<T> {
    /// `n` classes holding `backlog` packets in all, spread evenly (a case's backlog once it
    /// has settled, so that the floor's queued packets take the same memory).
    fn new(n: u32, step_ns: u64, backlog: u64) -> Self {
        let mut q = Floor::new(n);
        for i in 0..backlog.min(u64::from(n * QUEUE_LIMIT)) {
            q.enqueue((i % u64::from(n)) as u32, T::new(i as u32));
        }
        FloorRig { q, arrivals: Arrivals::new(n, step_ns) }
    }

    /// 32 packets in, then 32 out (as [`Rig::step_batch32`]).
    fn step_batch32(&mut self) {
        for _ in 0..32 {
            let c = self.arrivals.next();
            black_box(self.q.enqueue(c, T::new(self.arrivals.x)));
        }
        for _ in 0..32 {
            black_box(self.q.dequeue());
        }
    }
}

/// How a case calls the scheduler.
#[derive(Clone, Copy)]
enum Calls {
    /// One enqueue, one dequeue.
    Single,
    /// 32 enqueues, one `dequeue_batch`.
    Batch32,
    /// 32 `enqueue_or_pass`, one `dequeue_batch` if anything is queued; no initial backlog.
    Pass32,
}

fn line_step() -> u64 {
    u64::from(LEN) * 8 * 1_000_000_000 / ROOT_BPS
}

/// A case: its name, the ns between arrivals, how it calls the scheduler, the leaves'
/// guarantee, the classes' burst and what it queues.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    step_ns: u64,
    calls: Calls,
    guarantee: Guarantee,
    burst: Burst,
    items: Items,
}

/// The cases (see the module docs).
fn cases() -> [Case; 7] {
    let case = |name, step_ns, calls, guarantee, burst| Case {
        name,
        step_ns,
        calls,
        guarantee,
        burst,
        items: Items::Handle,
    };
    use {Burst::*, Calls::*, Guarantee::*};
    [
        case("line_rate", line_step(), Single, Share, Library),
        case("half_rate", 2 * line_step(), Single, Share, Library),
        case("line_rate_batch32", line_step(), Batch32, Share, Library),
        case("line_rate_batch32_4ms", line_step(), Batch32, Share, Daemon),
        case("half_rate_pass32", 2 * line_step(), Pass32, Share, Library),
        case("borrow_batch32", line_step(), Batch32, Pod, Daemon),
        Case {
            items: Items::Frame,
            ..case("line_rate_batch32_meta", line_step(), Batch32, Share, Library)
        },
    ]
}

impl Case {
    /// A rig with `n` classes for this case.
    fn rig<T: Item>(&self, n: u32) -> Rig<T> {
        let backlog = !matches!(self.calls, Calls::Pass32);
        Rig::new(n, self.step_ns, backlog, self.guarantee, self.burst)
    }

    /// Packets handled per call of [`Case::run`]'s step.
    fn per_step(&self) -> u64 {
        match self.calls {
            Calls::Single => 1,
            Calls::Batch32 | Calls::Pass32 => 32,
        }
    }

    /// Runs `pkts` packets (a multiple of 32 when batched).
    fn run<T: Item>(&self, rig: &mut Rig<T>, pkts: u32) {
        match self.calls {
            Calls::Single => (0..pkts).for_each(|_| rig.step()),
            Calls::Batch32 => (0..pkts / 32).for_each(|_| rig.step_batch32()),
            Calls::Pass32 => (0..pkts / 32).for_each(|_| rig.step_pass32()),
        }
    }
}

fn bench(c: &mut Criterion) {
    for case in cases() {
        let mut g = c.benchmark_group(format!("qos_enqueue_dequeue/{}", case.name));
        g.throughput(Throughput::Elements(case.per_step()));
        for n in SIZES {
            g.bench_function(BenchmarkId::from_parameter(n), |b| match case.items {
                Items::Handle => bench_one::<u32>(b, case, n),
                Items::Frame => bench_one::<Frame>(b, case, n),
            });
        }
        g.finish();
    }
}

fn bench_one<T: Item>(b: &mut criterion::Bencher, case: Case, n: u32) {
    let mut rig = case.rig::<T>(n);
    b.iter(|| case.run(&mut rig, case.per_step() as u32));
}

/// Packets run before measuring (see the module docs).
const WARM_UP: u32 = 3_000_000;

/// ns per packet after the warm-up, over 40 runs of 50 000 packets: the median, so that a
/// run slowed by other work on the machine (a virtual machine's stolen time) does not count,
/// and the best run (on this VM the median of a case at 10 000 classes moves by half between
/// runs, with the caches shared with other guests).
struct Measured {
    ns: f64,
    best: f64,
    /// The median of the floor right after, with the case's classes, items and backlog.
    floor_ns: f64,
}

fn measure(n: u32, case: Case) -> Measured {
    match case.items {
        Items::Handle => measure_with::<u32>(n, case),
        Items::Frame => measure_with::<Frame>(n, case),
    }
}

fn measure_with<T: Item>(n: u32, case: Case) -> Measured {
    let mut rig = case.rig::<T>(n);
    let (ns, best) = median_ns(|pkts| case.run(&mut rig, pkts));
    let mut floor = FloorRig::<T>::new(n, case.step_ns, rig.s.backlog());
    let (floor_ns, _) = median_ns(|pkts| (0..pkts / 32).for_each(|_| floor.step_batch32()));
    Measured { ns, best, floor_ns }
}

/// The median and best ns per packet of `run` (which runs that many packets) over 40 runs
/// of 50 000 packets, after the warm-up.
fn median_ns(mut run: impl FnMut(u32)) -> (f64, f64) {
    run(WARM_UP);
    let pkts = 50_000;
    let mut ns: Vec<f64> = (0..40)
        .map(|_| {
            let t0 = Instant::now();
            run(pkts);
            t0.elapsed().as_nanos() as f64 / f64::from(pkts)
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[ns.len() / 2], ns[0])
}

fn summary(_c: &mut Criterion) {
    println!("\n== summary: enqueue + dequeue per packet (target < 50 ns at 10 000 classes) ==");
    println!(
        "(floor: queues only, with the case's classes, items and backlog, measured right after)"
    );
    for case in cases() {
        let figures: Vec<String> = SIZES
            .iter()
            .map(|&n| {
                let m = measure(n, case);
                format!(
                    "{n:>6} classes {:6.1} ns ({:5.1} Mpps, best {:5.1} ns; floor {:5.1} ns, {:4.1}x)",
                    m.ns,
                    1e3 / m.ns,
                    m.best,
                    m.floor_ns,
                    m.ns / m.floor_ns
                )
            })
            .collect();
        println!("{:<22} {}", case.name, figures.join("   "));
    }
}

/// `QOS_PACKETS=CASE:CLASSES:PACKETS`: a fixed run for instruction counts (module docs).
fn fixed_run(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, n, pkts) = match parts[..] {
        [c, n, p] => (c, n.parse().expect("CLASSES"), p.parse().expect("PACKETS")),
        _ => panic!("QOS_PACKETS={spec}: want CASE:CLASSES:PACKETS"),
    };
    match name {
        "floor" => return fixed_floor::<u32>(n, pkts),
        "floor_meta" => return fixed_floor::<Frame>(n, pkts),
        _ => {}
    }
    let case =
        cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
    match case.items {
        Items::Handle => fixed_run_with::<u32>(case, n, pkts),
        Items::Frame => fixed_run_with::<Frame>(case, n, pkts),
    }
}

fn fixed_run_with<T: Item>(case: Case, n: u32, pkts: u32) {
    let name = case.name;
    let mut rig = case.rig::<T>(n);
    case.run(&mut rig, WARM_UP);
    case.run(&mut rig, pkts);
    println!(
        "{name}: {n} classes, {pkts} packets after {WARM_UP}, backlog {}, {:?}",
        rig.s.backlog(),
        rig.s.stats()
    );
}

/// The floor's fixed run (`QOS_PACKETS=floor:CLASSES:PACKETS`, or `floor_meta`), with a
/// backlog of four packets a class (instructions per packet do not depend on it).
fn fixed_floor<T: Item>(n: u32, pkts: u32) {
    let mut rig = FloorRig::<T>::new(n, line_step(), 4 * u64::from(n));
    (0..(WARM_UP + pkts) / 32).for_each(|_| rig.step_batch32());
    let backlog: u32 = rig.q.ends.iter().map(|e| e[2]).sum();
    println!("floor: {n} classes, {pkts} packets after {WARM_UP}, backlog {backlog}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench, summary
}

fn main() {
    if let Ok(spec) = std::env::var("QOS_PACKETS") {
        fixed_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
