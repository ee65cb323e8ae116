//! Drives one worker with in-memory ports and a fake clock: the whole pipeline with no kernel,
//! for tests, benchmarks and offline experiments.
//!
//! ```
//! use vswitch::pipeline::VlanMode;
//! use vswitch::testkit::Rig;
//!
//! let mut rig: Rig<32> = Rig::new(&[("a", VlanMode::Access(10)), ("b", VlanMode::Access(10))]);
//! let mut frame = vec![0u8; 60];
//! frame[0..6].copy_from_slice(&[0xff; 6]); // broadcast
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
//! rig.send(0, &frame);
//! rig.step();
//! assert_eq!(rig.recv(1), vec![frame]);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::packet::{Pool, PoolConfig};
use crate::pipeline::snapshot::QosPlan;
use crate::pipeline::{PortEntry, Snapshot, VlanMode};
use crate::pmd::{learn_ring, Learner, Worker, WorkerConfig};
use crate::port::ring::{self, RingPeer};
use crate::tables::fdb::{Fdb, FdbConfig};
use crate::tables::l3::L3Table;
use crate::tables::neigh::{NeighEvent, NeighTable, Neighbors};
use crate::telemetry::PortStats;
use crate::types::PortId;

/// Default ring size of a rig's ports.
pub const RING: usize = 8192;

/// One worker, its learner, and the outside ends of its in-memory ports (port `i` has id `i`).
pub struct Rig<const N: usize> {
    pub worker: Worker<N>,
    pub learner: Learner,
    pub peers: Vec<RingPeer>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub fdb: Arc<Fdb>,
    entries: Vec<PortEntry>,
    /// The routing state published with every snapshot, if the rig routes.
    l3: Option<Arc<L3Table>>,
    /// The QoS plans published with every snapshot, by egress port.
    qos: BTreeMap<PortId, Arc<QosPlan>>,
    /// The DDoS guard's limits and the ports behind it.
    guard: Option<(crate::qos::GuardConfig, Vec<PortId>)>,
    /// The neighbour table the worker reads, its writer, and the worker's gleaning ring.
    pub neigh: Arc<ArcSwap<Neighbors>>,
    pub neigh_table: NeighTable,
    neigh_rx: rtrb::Consumer<NeighEvent>,
    /// The fake clock, ns.
    pub now: u64,
}

impl<const N: usize> Rig<N> {
    /// A rig with the given ports, all up with MTU 1500.
    pub fn new(ports: &[(&str, VlanMode)]) -> Self {
        Self::with(
            ports,
            FdbConfig::default(),
            PoolConfig { frames: 4096, ..PoolConfig::default() },
        )
    }

    /// A rig with an FDB and pool of the given geometry.
    pub fn with(ports: &[(&str, VlanMode)], fdb: FdbConfig, pool: PoolConfig) -> Self {
        let entries: Vec<PortEntry> = ports
            .iter()
            .map(|(name, mode)| PortEntry {
                name: name.to_string(),
                up: true,
                mode: mode.clone(),
                mtu: 1500,
            })
            .collect();
        let snap =
            Snapshot::build(1, entries.iter().cloned().enumerate().map(|(i, e)| (i as PortId, e)))
                .expect("valid rig ports");
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));
        let (fdb, writer) = Fdb::new(fdb).expect("valid FDB config");
        let (tx, rx) = learn_ring();
        let mut learner = Learner::new(writer, 300_000_000_000);
        learner.attach(rx);
        let pool = Pool::new(pool).expect("pool");
        let mut worker =
            Worker::new(WorkerConfig::default(), pool, snapshot.clone(), fdb.clone(), tx);
        let mut peers = Vec::new();
        for (i, (name, _)) in ports.iter().enumerate() {
            let (port, peer) = ring::pair(name, RING);
            worker.add_port(i as PortId, Box::new(port)).expect("add port");
            peers.push(peer);
        }
        let neigh = Arc::new(ArcSwap::from_pointee(Neighbors::default()));
        let (neigh_tx, neigh_rx) = rtrb::RingBuffer::new(1024);
        worker.set_neighbors(neigh.clone(), neigh_tx);
        Rig {
            worker,
            learner,
            peers,
            snapshot,
            fdb,
            entries,
            l3: None,
            qos: BTreeMap::new(),
            guard: None,
            neigh,
            neigh_table: NeighTable::default(),
            neigh_rx,
            now: 1_000_000_000,
        }
    }

    /// Makes the rig a router with routing state `l3` (its port ids are the rig's).
    pub fn route(&mut self, l3: L3Table) {
        self.l3 = Some(Arc::new(l3));
        self.republish();
    }

    fn republish(&mut self) {
        let gen = self.snapshot.load().generation + 1;
        let mut snap = Snapshot::build(
            gen,
            self.entries.iter().cloned().enumerate().map(|(i, e)| (i as PortId, e)),
        )
        .expect("valid reconfiguration");
        snap.set_l3(self.l3.clone());
        for (&id, plan) in &self.qos {
            snap.set_qos(id, Some(plan.clone()));
        }
        if let Some((cfg, ports)) = &self.guard {
            snap.set_guard(Some(cfg.clone()));
            for &id in ports {
                snap.set_guarded(id, true);
            }
        }
        self.snapshot.store(Arc::new(snap));
    }

    /// Puts the ingress of `ports` behind a DDoS guard with limits `cfg` (`None`: no guard).
    pub fn set_guard(&mut self, guard: Option<(crate::qos::GuardConfig, Vec<PortId>)>) {
        self.guard = guard;
        self.republish();
    }

    /// Shapes port `port`'s egress with `plan` (`None`: unshaped), published as a new
    /// snapshot; the worker applies it on its next step (queues kept).
    pub fn set_qos(&mut self, port: PortId, plan: Option<QosPlan>) {
        match plan {
            Some(p) => self.qos.insert(port, Arc::new(p)),
            None => self.qos.remove(&port),
        };
        self.republish();
    }

    /// Applies the neighbours the worker gleaned (what the daemon's control loop does).
    pub fn learn_neighbors(&mut self) {
        while let Ok(ev) = self.neigh_rx.pop() {
            self.neigh_table.learn(ev, self.now);
        }
        if let Some(t) = self.neigh_table.publish() {
            self.neigh.store(Arc::new(t));
        }
    }

    /// Offers a frame to the switch on port `port`. Returns false if the pool or the ring had
    /// no room.
    pub fn send(&mut self, port: PortId, frame: &[u8]) -> bool {
        let Some(p) = self.worker.pool_mut().alloc_from(frame) else { return false };
        match self.peers[port as usize].inject(p) {
            Ok(()) => true,
            Err(p) => {
                self.worker.pool_mut().free(p);
                false
            }
        }
    }

    /// One worker iteration, then one learner pass; the clock advances by 1 µs.
    pub fn step(&mut self) -> usize {
        let n = self.worker.poll_once(self.now);
        self.learner.run_once(self.now);
        self.learn_neighbors();
        self.now += 1_000;
        n
    }

    /// Steps until no port has packets waiting (at most `limit` iterations).
    pub fn run(&mut self, limit: usize) {
        for _ in 0..limit {
            if self.step() == 0 {
                break;
            }
        }
    }

    /// Advances the fake clock.
    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    /// Every frame port `port` has sent, oldest first (their buffers go back to the pool).
    pub fn recv(&mut self, port: PortId) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(p) = self.peers[port as usize].collect() {
            out.push(self.worker.pool().data(&p).to_vec());
            self.worker.pool_mut().free(p);
        }
        out
    }

    /// Frees every frame the ports have sent; returns how many there were per port.
    pub fn discard_all(&mut self) -> Vec<usize> {
        let pool = self.worker.pool_mut();
        self.peers.iter_mut().map(|peer| peer.discard(pool)).collect()
    }

    /// Counters of port `port`.
    pub fn stats(&self, port: PortId) -> PortStats {
        self.worker.counters().port(port).snapshot()
    }

    /// Publishes a new snapshot with port `port`'s entry changed by `f`.
    pub fn reconfigure(&mut self, port: PortId, f: impl FnOnce(&mut PortEntry)) {
        f(&mut self.entries[port as usize]);
        self.republish();
    }
}
