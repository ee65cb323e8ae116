//! The daemon's runtime: builds the switch from a validated configuration, runs the workers on
//! their cores, and keeps the control loop.
//!
//! ```text
//!  main thread (control loop, every 5 ms or on request)     worker threads (one per core)
//!   learner: learn rings -> FDB writer, aging                  poll ports -> pipeline -> tx
//!   signals: SIGTERM/SIGINT stop, SIGHUP reload                 idle: spin, then poll(2)
//!   reload: diff ports -> new snapshot + port commands  ──►     commands: add/remove port
//!   API requests (vswitchctl)                           ◄──     events: port added/removed
//! ```
//!
//! Start-up touches nothing until the whole configuration validated and every interface and
//! core it names exists; then every port is opened before any worker starts, and a failure
//! closes everything opened so far (XDP programs are attached through BPF links, so the kernel
//! detaches them when their descriptors close, even if the process is killed).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rtrb::{Consumer, Producer, RingBuffer};
use tracing::{error, info, warn};

use super::api::ApiCall;
use super::config::{Config, IdlePolicy, PortKind, PortSection, WorkerSection, XdpMode};
use crate::packet::umem::FrameReader;
use crate::packet::Pool;
use crate::pipeline::nodes::qos::QosPortReport;
use crate::pipeline::Snapshot;
use crate::pmd::{learn_ring, monotonic_ns, Learner, Worker, WorkerConfig};
use crate::port::afxdp::{self, AfXdpConfig, AfXdpPort, UmemConfig, XdpModePreference};
use crate::port::{netdev, Port};
use crate::tables::fdb::{Fdb, FdbConfig, FdbWriter};
use crate::tables::neigh::{NeighEvent, NeighTable, Neighbors};
use crate::telemetry::WorkerCounters;
use crate::types::PortId;

/// Frames a worker needs beyond its ports' fill rings: a batch in flight per port and flood
/// copies.
const POOL_MARGIN: usize = 1024;
/// Ring size between a worker and the neighbour learner (ARP rates, not packet rates).
const NEIGH_RING: usize = 1024;
/// How often the control loop runs when nothing asks it to.
const CONTROL_TICK: Duration = Duration::from_millis(5);

/// Why the daemon stopped or could not start. Each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Runtime(String),
}

impl DaemonError {
    /// The process exit code: 3 invalid configuration, 4 set-up failed, 1 runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_) => 3,
            DaemonError::Setup(_) => 4,
            DaemonError::Runtime(_) => 1,
        }
    }
}

/// A port handed to a worker, or taken from it.
pub enum Command<const N: usize> {
    Add(PortId, Box<dyn Port<N>>),
    Remove(PortId),
    /// Arm a capture on the tap's port (see [`crate::pipeline::capture`]).
    Capture(Box<crate::pipeline::capture::Tap>),
}

/// What a worker reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Added(PortId),
    Removed(PortId),
}

/// Checks what the configuration names exists on this machine, before anything is touched.
pub fn preflight(cfg: &Config) -> Result<(), DaemonError> {
    let mut problems = Vec::new();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for (i, w) in cfg.workers.iter().enumerate() {
        if let Some(c) = w.core {
            if !cores.iter().any(|id| id.id == c) {
                problems.push(format!(
                    "worker[{i}].core: CPU {c} is not available to this process (available: {})",
                    cores.iter().map(|c| c.id.to_string()).collect::<Vec<_>>().join(",")
                ));
            }
        }
    }
    for (i, p) in cfg.ports.iter().enumerate() {
        // An attached tap port's device is created here, in front of an existing NIC.
        if let Some(nic) = &p.attach {
            if let Err(e) = netdev::ifindex(nic) {
                problems
                    .push(format!("port[{i}] ({:?}).attach: {nic:?} does not exist: {e}", p.name));
            }
            continue;
        }
        // A tap port's device does not exist yet: the switch creates it in the pod.
        if p.kind == PortKind::Tap {
            if let Some(ns) = p.pod_netns.as_deref().filter(|ns| !Path::new(ns).exists()) {
                problems.push(format!("port[{i}] ({:?}).pod_netns: {ns:?} does not exist", p.name));
            }
            continue;
        }
        if let Err(e) = netdev::ifindex(p.interface()) {
            problems.push(format!(
                "port[{i}] ({:?}).interface: {:?} does not exist: {e}",
                p.name,
                p.interface()
            ));
        }
        if let Some(ns) = &p.pod_netns {
            if !Path::new(ns).exists() {
                problems.push(format!("port[{i}] ({:?}).pod_netns: {ns:?} does not exist", p.name));
            }
        }
    }
    for (wi, _) in cfg.workers.iter().enumerate() {
        let need = worker_frames_needed(cfg, wi);
        if need > cfg.pool.frames {
            problems.push(format!(
                "pool.frames: {} frames are too few for worker {wi}'s ports, which need {need} (raise pool.frames or lower the ports' ring_size)",
                cfg.pool.frames
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DaemonError::Setup(problems.join("\n")))
    }
}

/// Pool frames worker `wi`'s ports keep on kernel rings, plus the margin for packets in flight.
pub fn worker_frames_needed(cfg: &Config, wi: usize) -> usize {
    cfg.ports.iter().filter(|p| p.worker == wi).map(frames_needed).sum::<usize>()
        + super::qos::queued_frames(cfg, wi)
        + POOL_MARGIN
}

fn frames_needed(p: &PortSection) -> usize {
    match p.kind {
        PortKind::Afxdp => p.queues as usize * p.ring_size as usize,
        PortKind::Afpacket | PortKind::Tap => 0,
    }
}

/// Opens the port described by `p` on a worker whose pool memory is `area`.
///
/// An AF_XDP port shares (XDP_SHARED_UMEM) the UMEM of a port of the same worker that is still
/// bound, and registers the worker's whole pool memory anew only when there is none
/// ([`AfXdpPort::open_sharing`]): the kernel refuses a shared bind once the socket shared from
/// is unbound (its device deleted, as when a pod goes away), so the donor is always a live
/// port. All registrations cover the same pages, so frame addresses mean the same to every
/// port and forwarding still moves a descriptor.
fn open_port<const N: usize>(
    p: &PortSection,
    area: &FrameReader,
    headroom: u32,
) -> Result<Box<dyn Port<N>>, String> {
    // A pod behind AF_XDP or AF_PACKET must send complete checksums; a tap pod keeps its
    // offloads (that is the point of the tap port).
    let copy_port = p.kind != PortKind::Tap;
    if let (true, Some(ns), Some(ifname)) = (copy_port, &p.pod_netns, &p.pod_interface) {
        let ifn = ifname.clone();
        netdev::in_netns(ns, move || netdev::set_tx_checksum(&ifn, false))
            .and_then(|r| r)
            .map_err(|e| {
                format!(
                    "port {:?}: turning off transmit checksum offload of {ifname:?} in {ns}: {e}",
                    p.name
                )
            })?;
    }
    match p.kind {
        PortKind::Afxdp => {
            let cfg = AfXdpConfig {
                ifname: p.interface().to_string(),
                queues: p.queues,
                xdp_mode: match p.xdp_mode {
                    XdpMode::Auto => XdpModePreference::Auto,
                    XdpMode::Native => XdpModePreference::Native,
                    XdpMode::Generic => XdpModePreference::Generic,
                },
                ring_size: p.ring_size,
                fill_target: p.ring_size,
            };
            let ucfg = UmemConfig {
                frame_size: area.frame_size() as u32,
                headroom,
                fill_size: p.ring_size,
                comp_size: p.ring_size,
            };
            let port = AfXdpPort::open_sharing(&p.name, area, ucfg, cfg)
                .map_err(|e| format!("port {:?}: {e}", p.name))?;
            Ok(Box::new(port))
        }
        PortKind::Tap if p.attach.is_some() => {
            // The node's uplink: a TAP here, in front of the underlay NIC.
            let nic = p.attach.as_deref().unwrap_or_default();
            let io = match p.tap_io {
                Some(crate::control::config::TapIoMode::Readv) => crate::port::tap::TapIo::Readv,
                Some(crate::control::config::TapIoMode::IoUring) | None => {
                    crate::port::tap::TapIo::IoUring
                }
            };
            let cfg = crate::port::tap::TapConfig { tunnel: true, io, ..Default::default() };
            let tap = crate::port::tap::TapPort::create(None, p.interface(), cfg)
                .map_err(|e| format!("port {:?}: {e}", p.name))?;
            crate::port::tap::uplink::UplinkTap::wire(tap, nic)
                .map(|port| Box::new(port) as Box<dyn Port<N>>)
                .map_err(|e| {
                    format!("port {:?}: wiring {:?} to {nic:?}: {e}", p.name, p.interface())
                })
        }
        PortKind::Tap => {
            let (Some(ns), Some(ifname)) = (&p.pod_netns, &p.pod_interface) else {
                return Err(format!(
                    "port {:?}: a tap port needs pod_netns and pod_interface",
                    p.name
                ));
            };
            crate::port::tap::TapPort::create(
                Some(ns),
                ifname,
                crate::port::tap::TapConfig {
                    persist: p.persist,
                    io: match p.tap_io {
                        Some(crate::control::config::TapIoMode::Readv) => {
                            crate::port::tap::TapIo::Readv
                        }
                        Some(crate::control::config::TapIoMode::IoUring) | None => {
                            crate::port::tap::TapIo::IoUring
                        }
                    },
                    ..Default::default()
                },
            )
            .map(|port| Box::new(port) as Box<dyn Port<N>>)
            .map_err(|e| format!("port {:?}: {e}", p.name))
        }
        PortKind::Afpacket => crate::port::afpacket::AfPacketPort::open(
            p.interface(),
            if p.vnet_hdr.unwrap_or(true) {
                crate::port::afpacket::AfPacketConfig::offload()
            } else {
                crate::port::afpacket::AfPacketConfig::default()
            },
        )
        .map(|port| Box::new(port) as Box<dyn Port<N>>)
        .map_err(|e| format!("port {:?}: {e}", p.name)),
    }
}

/// A worker as the control loop sees it.
struct WorkerHandle<const N: usize> {
    cfg: WorkerSection,
    join: Option<JoinHandle<()>>,
    commands: Producer<Command<N>>,
    /// Rung after every command, so a worker asleep in poll(2) takes it at once instead of at
    /// its next timeout (up to 10 ms: a pod's attachment waited for that).
    doorbell: UnixDatagram,
    events: Consumer<Event>,
    counters: Arc<WorkerCounters>,
    /// The worker's pool memory and UMEM headroom, for opening ports added later.
    area: (FrameReader, u32),
    pool_frames: usize,
    /// The worker's QoS counters, refreshed by it every 100 ms.
    qos_report: Arc<Mutex<Vec<QosPortReport>>>,
    /// The worker's L2 flow cache entries, refreshed by it every second.
    flow_report: Arc<Mutex<Vec<crate::pipeline::nodes::l2::L2Flow>>>,
}

impl<const N: usize> WorkerHandle<N> {
    /// Queues `cmd` for the worker and rings its doorbell.
    fn push(&mut self, cmd: Command<N>) -> Result<(), rtrb::PushError<Command<N>>> {
        self.commands.push(cmd)?;
        // A full socket buffer means the bell is already ringing.
        let _ = self.doorbell.send(&[1]);
        Ok(())
    }
}

/// A port as the control loop sees it.
#[derive(Debug, Clone)]
struct PortState {
    section: PortSection,
    /// The port type and mode as opened (e.g. "afxdp native copy").
    kind: String,
    /// The worker confirmed it polls the port.
    attached: bool,
}

/// The running switch.
pub struct Daemon<const N: usize> {
    cfg: Config,
    path: PathBuf,
    snapshot: Arc<ArcSwap<Snapshot>>,
    fdb: Arc<Fdb>,
    learner: Learner,
    ports: Vec<Option<PortState>>,
    /// Ports removed from the snapshot whose worker has not yet let go of them.
    draining: Vec<PortId>,
    workers: Vec<WorkerHandle<N>>,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    started: Instant,
    api: Option<JoinHandle<()>>,
    requests: Option<Receiver<ApiCall>>,
    pods: super::pods::Pods,
    /// The neighbour table: the workers read `neigh`; the control loop is its one writer,
    /// fed by the workers' rings.
    neigh: Arc<ArcSwap<Neighbors>>,
    neigh_table: NeighTable,
    neigh_rings: Vec<Consumer<NeighEvent>>,
    next_neigh_expiry: u64,
    /// Persistent TAP devices (namespace, name, queues) of removed ports, deleted once their
    /// worker has let go of them.
    tap_cleanup: HashMap<PortId, (String, String, usize)>,
    /// Deletes those devices on a thread of its own.
    tap_reaper: super::reaper::TapReaper,
    /// The id of every QoS class name seen, kept for the daemon's lifetime so a class keeps
    /// its queue and counters across reloads and edits.
    qos_ids: HashMap<String, u32>,
    /// The DDoS guard's hash seed, picked at start so its table sets cannot be aimed at.
    guard_seed: u64,
    /// Captures running, each waiting for its bound to answer its API request.
    pub(super) captures: Vec<super::capture::Pending>,
    /// The counters of every flow rule by name, kept while the rule stays the same.
    acl_counters: HashMap<String, (vswitch_api::FlowRule, Arc<crate::tables::acl::RuleCounters>)>,
}

impl<const N: usize> Daemon<N> {
    /// Builds the whole switch: FDB, snapshot, pools, UMEMs, ports, workers (started).
    pub fn start(cfg: Config, path: PathBuf) -> Result<Daemon<N>, DaemonError> {
        preflight(&cfg)?;
        let fdb_cfg = FdbConfig { max_entries: cfg.switch.fdb_max_entries, ..FdbConfig::default() };
        let (fdb, writer) = Fdb::new(fdb_cfg)
            .map_err(|e| DaemonError::Setup(format!("switch.fdb_max_entries: {e}")))?;
        let learner = Learner::new(writer, cfg.switch.fdb_aging_secs * 1_000_000_000);
        let snapshot = Arc::new(ArcSwap::from_pointee(cfg.snapshot(1)));
        let ports: Vec<Option<PortState>> = cfg
            .ports
            .iter()
            .map(|s| Some(PortState { section: s.clone(), kind: String::new(), attached: true }))
            .collect();
        let mut d = Daemon {
            path,
            snapshot,
            fdb,
            learner,
            ports,
            draining: Vec::new(),
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            api: None,
            requests: None,
            pods: Default::default(),
            neigh: Arc::new(ArcSwap::from_pointee(Neighbors::default())),
            neigh_table: NeighTable::default(),
            neigh_rings: Vec::new(),
            next_neigh_expiry: 0,
            tap_cleanup: HashMap::new(),
            tap_reaper: Default::default(),
            qos_ids: HashMap::new(),
            guard_seed: std::collections::hash_map::RandomState::new().hash_one(monotonic_ns()),
            captures: Vec::new(),
            acl_counters: HashMap::new(),
            cfg,
        };
        let (api, requests) =
            super::api::spawn(&d.cfg.api, d.stop.clone()).map_err(DaemonError::Setup)?;
        d.api = Some(api);
        d.requests = Some(requests);
        // Open everything first; spawn only when all of it is there.
        let mut built = Vec::new();
        for (wi, wcfg) in d.cfg.workers.clone().into_iter().enumerate() {
            let pool = Pool::new(d.cfg.pool.to_pool_config())
                .map_err(|e| DaemonError::Setup(format!("pool: {e}")))?;
            let headroom = (d.cfg.pool.headroom as u32).saturating_sub(afxdp::XDP_PACKET_HEADROOM);
            let area = (pool.region().reader(), headroom);
            let mut opened = Vec::new();
            for (pi, p) in d.cfg.ports.iter().enumerate().filter(|(_, p)| p.worker == wi) {
                let port = open_port::<N>(p, &area.0, area.1).map_err(DaemonError::Setup)?;
                info!(port = %p.name, interface = p.interface(), kind = %port.kind(), worker = wi, "port opened");
                if let Some(Some(st)) = d.ports.get_mut(pi) {
                    st.kind = port.kind();
                }
                opened.push((pi as PortId, port));
            }
            built.push((wcfg, pool, area, opened));
        }
        // Build every worker, link each pair (for packets whose egress port another worker
        // owns), then start them.
        let mut workers = Vec::new();
        for (wi, (wcfg, pool, area, opened)) in built.into_iter().enumerate() {
            workers.push((d.build_worker(wi, pool, opened)?, wcfg, area));
        }
        for i in 0..workers.len() {
            let (head, tail) = workers.split_at_mut(i + 1);
            for other in tail {
                Worker::link(&mut head[i].0, &mut other.0);
            }
        }
        for (wi, (worker, wcfg, area)) in workers.into_iter().enumerate() {
            d.spawn_worker(wi, worker, wcfg, area)?;
        }
        d.install_signals()?;
        d.publish();
        d.log_peers();
        d.restore_pods();
        Ok(d)
    }

    fn build_worker(
        &mut self,
        wi: usize,
        pool: Pool,
        ports: Vec<(PortId, Box<dyn Port<N>>)>,
    ) -> Result<Worker<N>, DaemonError> {
        let (learn_tx, learn_rx) = learn_ring();
        self.learner.attach(learn_rx);
        let wc = WorkerConfig {
            id: wi as u16,
            flow_cache_entries: self.cfg.switch.flow_cache_entries,
            ..WorkerConfig::default()
        };
        let mut worker =
            Worker::<N>::new(wc, pool, self.snapshot.clone(), self.fdb.clone(), learn_tx);
        let (neigh_tx, neigh_rx) = RingBuffer::new(NEIGH_RING);
        self.neigh_rings.push(neigh_rx);
        worker.set_neighbors(self.neigh.clone(), neigh_tx);
        for (id, port) in ports {
            worker.add_port(id, port).map_err(|e| DaemonError::Setup(e.to_string()))?;
        }
        Ok(worker)
    }

    fn spawn_worker(
        &mut self,
        wi: usize,
        worker: Worker<N>,
        wcfg: WorkerSection,
        area: (FrameReader, u32),
    ) -> Result<(), DaemonError> {
        let pool_frames = worker.pool().frames();
        let counters = worker.counters().clone();
        let qos_report = worker.qos_report().clone();
        let flow_report = worker.flow_report().clone();
        // Room for a burst of pod attachments while the worker is busy flooding.
        let (commands, cmd_rx) = RingBuffer::new(1024);
        let (ev_tx, events) = RingBuffer::new(1024);
        let (doorbell, bell) = UnixDatagram::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|e| DaemonError::Setup(format!("worker {wi}: doorbell socketpair: {e}")))?;
        let stop = self.stop.clone();
        let wcfg2 = wcfg.clone();
        let join = std::thread::Builder::new()
            .name(format!("vswitch-worker-{wi}"))
            .spawn(move || worker_main(wi, worker, wcfg2, cmd_rx, bell, ev_tx, stop))
            .map_err(|e| DaemonError::Setup(format!("worker {wi}: spawning its thread: {e}")))?;
        self.workers.push(WorkerHandle {
            cfg: wcfg,
            join: Some(join),
            commands,
            doorbell,
            events,
            counters,
            area,
            pool_frames,
            qos_report,
            flow_report,
        });
        Ok(())
    }

    fn install_signals(&self) -> Result<(), DaemonError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, self.stop.clone())
                .map_err(|e| DaemonError::Setup(format!("installing signal handler: {e}")))?;
        }
        signal_hook::flag::register(SIGHUP, self.reload.clone())
            .map_err(|e| DaemonError::Setup(format!("installing signal handler: {e}")))?;
        Ok(())
    }

    /// A flag that stops the daemon when set (signals set it too).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Runs the control loop until stopped; then stops the workers and closes every port.
    pub fn run(mut self) -> Result<(), DaemonError> {
        info!(
            ports = self.ports.iter().flatten().count(),
            workers = self.workers.len(),
            "vswitchd running"
        );
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            // Wait for an API request, or the tick.
            let call = self.requests.as_ref().and_then(|r| r.recv_timeout(CONTROL_TICK).ok());
            if let Some((req, reply)) = call {
                match req {
                    // Answered later, when a bound is reached.
                    vswitch_api::Request::Capture(c) => self.start_capture(c, reply),
                    req => {
                        let resp = self.handle(req);
                        let _ = reply.send(resp);
                    }
                }
            } else if self.requests.is_none() {
                std::thread::sleep(CONTROL_TICK);
            }
            if let Err(e) = self.tick() {
                break Err(e);
            }
        };
        self.shutdown();
        result
    }

    /// One pass of the control loop.
    pub fn tick(&mut self) -> Result<(), DaemonError> {
        let now = monotonic_ns();
        self.learner.run_once(now);
        self.learn_neighbors(now);
        self.collect_events();
        if !self.captures.is_empty() {
            self.service_captures();
        }
        if self.reload.swap(false, Ordering::Relaxed) {
            match Config::load(&self.path) {
                Ok(mut cfg) => {
                    // Pods attached through the API are not in the file; keep them, and
                    // check them with it (a pod's class may hang under a group the file
                    // lacks).
                    cfg.ports.extend(self.pod_sections());
                    cfg.qos_classes.extend(self.pod_qos_classes());
                    if let Err(e) = self.apply_checked(cfg) {
                        error!(
                            "reload of {} refused, running configuration kept: {e}",
                            self.path.display()
                        );
                    }
                }
                Err(e) => error!("reload refused, running configuration kept: {e}"),
            }
        }
        for (i, w) in self.workers.iter().enumerate() {
            if w.join.as_ref().is_some_and(|j| j.is_finished()) {
                return Err(DaemonError::Runtime(format!("worker {i} stopped unexpectedly")));
            }
        }
        Ok(())
    }

    /// Waits (at most `timeout`) until port `id`'s worker reports it attached; true if it did.
    pub(super) fn wait_attached(&mut self, id: PortId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect_events();
            if self.ports.get(id as usize).and_then(Option::as_ref).is_some_and(|p| p.attached) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Has the persistent TAP device of removed port `id` deleted (by the reaper thread), unless
    /// a port in use now has it (the same pod's port re-added).
    fn destroy_tap(&mut self, id: PortId) {
        let Some((ns, ifname, queues)) = self.tap_cleanup.remove(&id) else { return };
        let in_use = self.ports.iter().flatten().any(|p| {
            p.section.pod_netns.as_deref() == Some(ns.as_str())
                && p.section.pod_interface.as_deref() == Some(ifname.as_str())
        });
        if in_use {
            return;
        }
        self.tap_reaper.delete(ns, ifname, queues);
    }

    /// Applies the neighbours the workers gleaned, forgets stale ones once a second, and
    /// publishes a new table when anything changed.
    fn learn_neighbors(&mut self, now: u64) {
        for ring in &mut self.neigh_rings {
            while let Ok(ev) = ring.pop() {
                if self.neigh_table.learn(ev, now) {
                    tracing::debug!(ip = %std::net::Ipv4Addr::from(ev.ip), mac = %ev.mac, port = ev.port, "neighbour learned");
                }
            }
        }
        if now >= self.next_neigh_expiry {
            let timeout = self.cfg.node.as_ref().map_or(300, |n| n.neighbor_timeout_secs);
            self.neigh_table.expire(now, timeout * 1_000_000_000);
            self.next_neigh_expiry = now + 1_000_000_000;
        }
        if let Some(t) = self.neigh_table.publish() {
            self.neigh.store(Arc::new(t));
        }
    }

    fn collect_events(&mut self) {
        for wi in 0..self.workers.len() {
            while let Ok(ev) = self.workers[wi].events.pop() {
                match ev {
                    Event::Added(id) => {
                        if let Some(Some(p)) = self.ports.get_mut(id as usize) {
                            p.attached = true;
                        }
                    }
                    Event::Removed(id) => {
                        self.draining.retain(|&d| d != id);
                        self.destroy_tap(id);
                        let purged = self.learner.writer().purge_port(id);
                        self.neigh_table.purge_port(id);
                        info!(port_id = id, fdb_entries_removed = purged, "port removed");
                    }
                }
            }
        }
    }

    fn publish(&mut self) {
        let gen = self.snapshot.load().generation + 1;
        let entries = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as PortId, p.as_ref()?.section.entry())));
        match Snapshot::build(gen, entries) {
            Ok(mut s) => {
                for (i, p) in self.ports.iter().enumerate() {
                    if let Some(p) = p {
                        s.set_owner(i as PortId, p.section.worker as u16);
                    }
                }
                // Looked up once per port (and more) below: a scan here made every attachment
                // cost the square of the number of ports.
                let ids: HashMap<&str, PortId> = self
                    .ports
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| Some((p.as_ref()?.section.name.as_str(), i as PortId)))
                    .collect();
                let id_of = |name: &str| ids.get(name).copied();
                match self.cfg.l3_table(id_of) {
                    Ok(t) => s.set_l3(t.map(Arc::new)),
                    Err(e) => error!("routing state not compiled, routing off: {e}"),
                }
                let ids = &mut self.qos_ids;
                let class_id = |name: &str| {
                    let next = ids.len() as u32 + 1;
                    crate::qos::ClassId(*ids.entry(name.to_string()).or_insert(next))
                };
                for (id, plan) in super::qos::qos_plans(&self.cfg, id_of, class_id) {
                    s.set_qos(id, Some(Arc::new(plan)));
                }
                for id in self.cfg.guarded_ports(id_of) {
                    s.set_guarded(id, true);
                }
                s.set_guard(self.cfg.ddos_guard.as_ref().map(|g| g.guard_config(self.guard_seed)));
                // A rule keeps its counters while it stays the same.
                let counters = &mut self.acl_counters;
                let mut kept = HashMap::new();
                let table = super::flows::acl_table(&self.cfg, id_of, |r| {
                    let c = match counters.remove(&r.name) {
                        Some((old, c)) if old == *r => c,
                        _ => Arc::default(),
                    };
                    kept.insert(r.name.clone(), (r.clone(), c.clone()));
                    c
                });
                *counters = kept;
                s.set_acl(table);
                self.snapshot.store(Arc::new(s))
            }
            // Sections were validated; this would be a bug worth a loud log, not a crash.
            Err(e) => error!("snapshot not published: {e}"),
        }
    }

    /// Applies a new, validated configuration as a diff: ports removed, added, or changed in
    /// place. Changes that need a restart (pool, workers, batch size) are refused whole.
    pub fn apply(&mut self, new: Config) -> Result<(), String> {
        if new.switch != self.cfg.switch
            || new.pool != self.cfg.pool
            || new.workers != self.cfg.workers
        {
            return Err("[switch], [pool] and [[worker]] changes need a restart of vswitchd".into());
        }
        for wi in 0..new.workers.len() {
            let need = worker_frames_needed(&new, wi);
            if need > new.pool.frames {
                return Err(format!(
                    "pool.frames: {} frames are too few for worker {wi}'s ports, which would need {need}",
                    new.pool.frames
                ));
            }
        }
        // By name, both sides: a pod's attachment diffs a thousand ports against a thousand.
        let old_by_name: HashMap<&str, (PortId, &PortSection)> = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                Some((p.as_ref()?.section.name.as_str(), (i as PortId, &p.as_ref()?.section)))
            })
            .collect();
        let new_by_name: HashMap<&str, &PortSection> =
            new.ports.iter().map(|p| (p.name.as_str(), p)).collect();
        let structural = |a: &PortSection, b: &PortSection| {
            a.interface() != b.interface()
                || a.kind != b.kind
                || a.queues != b.queues
                || a.worker != b.worker
                || a.xdp_mode != b.xdp_mode
                || a.pod_netns != b.pod_netns
                || a.pod_interface != b.pod_interface
                || a.attach != b.attach
        };
        // Open new ports first, so a failure changes nothing.
        let mut to_remove: Vec<PortId> = Vec::new();
        let mut to_add: Vec<&PortSection> = Vec::new();
        let mut in_place: Vec<(PortId, PortSection)> = Vec::new();
        for (name, &(id, old)) in &old_by_name {
            match new_by_name.get(name) {
                None => to_remove.push(id),
                Some(&p) if structural(old, p) => {
                    to_remove.push(id);
                    to_add.push(p);
                }
                Some(&p) if p != old => in_place.push((id, p.clone())),
                Some(_) => {}
            }
        }
        for p in &new.ports {
            if !old_by_name.contains_key(p.name.as_str()) {
                to_add.push(p);
            }
        }
        let mut opened = Vec::new();
        for p in &to_add {
            if let (PortKind::Tap, Some(ns), Some(ifname)) =
                (p.kind, &p.pod_netns, &p.pod_interface)
            {
                // The same pod interface again, its old device still being deleted: wait.
                if !self.tap_reaper.wait_gone(ns, ifname, Duration::from_secs(5)) {
                    return Err(format!(
                        "port {:?}: the tap device {ifname:?} in {ns} is still being deleted",
                        p.name
                    ));
                }
            }
            let (area, headroom) = &self.workers[p.worker].area;
            opened.push((p.worker, (*p).clone(), open_port::<N>(p, area, *headroom)?));
        }
        // Remove: out of the snapshot first, then out of the worker.
        for id in &to_remove {
            let p = self.ports[*id as usize].take().expect("known port");
            if let (true, Some(ns), Some(ifname)) =
                (p.section.persist, &p.section.pod_netns, &p.section.pod_interface)
            {
                self.tap_cleanup
                    .insert(*id, (ns.clone(), ifname.clone(), p.section.queues as usize));
            }
            self.draining.push(*id);
            let w = &mut self.workers[p.section.worker];
            if w.push(Command::Remove(*id)).is_err() {
                warn!(port = %p.section.name, "worker command ring full; port removal retried on next reload");
            }
            info!(port = %p.section.name, "removing port");
        }
        for (id, s) in in_place {
            info!(port = %s.name, "port reconfigured");
            let kind = self.ports[id as usize].as_ref().map(|p| p.kind.clone()).unwrap_or_default();
            self.ports[id as usize] = Some(PortState { section: s, kind, attached: true });
        }
        for (wi, section, port) in opened {
            let id = self.free_id().ok_or("no free port id (1024 ports in use)")?;
            if self.ports.len() <= id as usize {
                self.ports.resize(id as usize + 1, None);
            }
            info!(port = %section.name, kind = %port.kind(), id, "adding port");
            self.ports[id as usize] =
                Some(PortState { section, kind: port.kind(), attached: false });
            if let Err(rtrb::PushError::Full(Command::Add(_, p))) =
                self.workers[wi].push(Command::Add(id, port))
            {
                drop(p);
                self.ports[id as usize] = None;
                return Err("worker command ring full".into());
            }
        }
        if new.node != self.cfg.node {
            // Another identity (addresses, uplink, MAC): what was learned may be wrong now.
            self.neigh_table.clear();
            info!("node routing configuration changed");
        }
        if new.peers != self.cfg.peers {
            for p in &new.peers {
                if !self.cfg.peers.contains(p) {
                    info!(peer = %p.name, underlay_ip = %p.underlay_ip, pod_cidr = %p.pod_cidr, "peer added or changed");
                }
            }
            for p in &self.cfg.peers {
                if !new.peers.iter().any(|n| n.name == p.name) {
                    info!(peer = %p.name, "peer removed");
                }
            }
        }
        self.cfg = new;
        self.publish();
        self.log_peers();
        Ok(())
    }

    /// Logs each peer's forwarding mode and why.
    fn log_peers(&self) {
        let snap = self.snapshot.load();
        if let Some(t) = snap.l3() {
            for p in &t.peers {
                info!(peer = %p.name, mode = p.mode.name(), reason = %p.reason, "peer mode");
            }
        }
    }

    /// The neighbour table the workers read.
    pub fn neighbors(&self) -> Arc<Neighbors> {
        self.neigh.load_full()
    }

    /// Adds peer `p` (or replaces the peer of that name), validated with the whole
    /// configuration and applied like a reload; refused whole on any problem.
    pub fn set_peer(&mut self, p: super::config::PeerSection) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        cfg.peers.retain(|o| o.name != p.name);
        cfg.peers.push(p);
        self.apply_checked(cfg)
    }

    /// Removes peer `name`; an error if there is none.
    pub fn remove_peer(&mut self, name: &str) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        let before = cfg.peers.len();
        cfg.peers.retain(|o| o.name != name);
        if cfg.peers.len() == before {
            return Err(format!("no peer {name:?}"));
        }
        self.apply_checked(cfg)
    }

    /// Validates `cfg` whole and applies it, or refuses it with every problem named.
    pub(super) fn apply_checked(&mut self, cfg: Config) -> Result<(), String> {
        let errors = cfg.validate();
        if !errors.is_empty() {
            return Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "));
        }
        self.apply(cfg)
    }

    fn free_id(&self) -> Option<PortId> {
        (0..crate::types::MAX_PORTS as PortId).find(|&i| {
            self.ports.get(i as usize).is_none_or(|p| p.is_none()) && !self.draining.contains(&i)
        })
    }

    /// Stops the workers and waits for them (they close their ports on the way out).
    fn shutdown(&mut self) {
        info!("stopping");
        self.stop.store(true, Ordering::Relaxed);
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(j) = w.join.take() {
                if j.join().is_err() {
                    error!(worker = i, "worker panicked");
                }
            }
        }
        if let Some(j) = self.api.take() {
            let _ = j.join();
        }
        self.tap_reaper.finish();
        info!("stopped: every port closed and XDP program detached");
    }

    /// Ids of the configured ports.
    pub fn port_ids(&self) -> Vec<PortId> {
        self.ports.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|_| i as PortId)).collect()
    }

    /// The configuration section of port `id`.
    pub fn port_section(&self, id: PortId) -> Option<&PortSection> {
        self.ports.get(id as usize)?.as_ref().map(|p| &p.section)
    }

    /// The type and mode port `id` was opened with; "pending" until its worker attached it.
    pub fn port_kind(&self, id: PortId) -> String {
        match self.ports.get(id as usize).and_then(Option::as_ref) {
            Some(p) if p.attached => p.kind.clone(),
            Some(p) => format!("{} (attaching)", p.kind),
            None => String::new(),
        }
    }

    /// The snapshot the workers read now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The FDB, read side.
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The attached pods.
    pub fn pods(&self) -> &super::pods::Pods {
        &self.pods
    }

    pub(super) fn pods_mut(&mut self) -> &mut super::pods::Pods {
        &mut self.pods
    }

    /// The FDB's writer (for the API: static entries, flushes).
    pub fn fdb_writer(&mut self) -> &mut FdbWriter {
        self.learner.writer()
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counters of every worker.
    pub fn worker_counters(&self) -> Vec<Arc<WorkerCounters>> {
        self.workers.iter().map(|w| w.counters.clone()).collect()
    }

    /// Each worker's configuration section.
    pub fn worker_configs(&self) -> Vec<&WorkerSection> {
        self.workers.iter().map(|w| &w.cfg).collect()
    }

    /// Frames per worker pool.
    pub fn pool_frames(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.pool_frames).collect()
    }

    /// Every shaped port's classes and counters, as their workers last published them.
    pub fn qos_reports(&self) -> Vec<QosPortReport> {
        let mut out = Vec::new();
        for w in &self.workers {
            if let Ok(r) = w.qos_report.lock() {
                out.extend(r.iter().cloned());
            }
        }
        out.sort_by_key(|r| r.port);
        out
    }

    /// Every worker's published L2 flow cache entries, with the worker's index.
    pub fn flow_reports(&self) -> Vec<(usize, crate::pipeline::nodes::l2::L2Flow)> {
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            if let Ok(r) = w.flow_report.lock() {
                out.extend(r.iter().map(|f| (i, *f)));
            }
        }
        out
    }

    /// Sends `cmd` to worker `wi`; false if its command ring is full (or there is no such
    /// worker).
    pub(super) fn send_command(&mut self, wi: usize, cmd: Command<N>) -> bool {
        self.workers.get_mut(wi).is_some_and(|w| w.push(cmd).is_ok())
    }

    /// Changes QoS class `name` with `f`, validated with the whole configuration and applied
    /// live (queues kept), or refused whole with the field at fault.
    pub fn set_qos_class(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut super::qos::QosClassSection),
    ) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        let Some(c) = cfg.qos_classes.iter_mut().find(|c| c.name == name) else {
            return Err(format!("no QoS class {name:?}"));
        };
        f(c);
        self.apply_checked(cfg)
    }
}

impl<const N: usize> Drop for Daemon<N> {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.join.is_some()) || self.api.is_some() {
            self.shutdown();
        }
    }
}

/// A worker thread: pin, then poll until stopped.
fn worker_main<const N: usize>(
    wi: usize,
    mut w: Worker<N>,
    cfg: WorkerSection,
    mut commands: Consumer<Command<N>>,
    bell: UnixDatagram,
    mut events: Producer<Event>,
    stop: Arc<AtomicBool>,
) {
    if let Some(core) = cfg.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            warn!(worker = wi, core, "could not pin the worker to its core");
        }
    }
    info!(worker = wi, core = ?cfg.core, idle = ?cfg.idle, ports = w.port_ids().len(), "worker started");
    let spin_ns = cfg.spin_us * 1000;
    let mut idle_since: Option<u64> = None;
    let mut fds = Vec::new();
    let mut pollfds: Vec<libc::pollfd> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Commands first: a port being attached waits for them, not for a pass over every
        // port (1 000 idle TAP pods are 1 000 reads that find nothing).
        while let Ok(cmd) = commands.pop() {
            match cmd {
                Command::Add(id, port) => match w.add_port(id, port) {
                    Ok(()) => {
                        let _ = events.push(Event::Added(id));
                    }
                    Err(e) => error!(worker = wi, "adding port {id}: {e}"),
                },
                Command::Remove(id) => {
                    drop(w.remove_port(id));
                    let _ = events.push(Event::Removed(id));
                }
                // A port this worker does not have: the tap drops, which ends the capture.
                Command::Capture(tap) => drop(w.set_capture(tap)),
            }
        }
        let now = monotonic_ns();
        let n = w.poll_once(now);
        // A scheduler that released a full batch may release more at once: no sleep.
        if n > 0 || w.qos_busy() {
            idle_since = None;
            continue;
        }
        match cfg.idle {
            IdlePolicy::BusyPoll => std::hint::spin_loop(),
            IdlePolicy::Adaptive => {
                let since = *idle_since.get_or_insert(now);
                if now - since < spin_ns {
                    std::hint::spin_loop();
                    continue;
                }
                // Sleep until a port has packets or another worker hands some over (or 10 ms
                // pass, for housekeeping and stop). Housekeeping runs only after a quiet
                // timeout: a packet that wakes the worker is switched first.
                let mut timed_out = false;
                // Packets waiting for ARP: wake up soon to release or expire them.
                let mut timeout_ms = if w.l3_waiting() { 1 } else { 10 };
                // A throttled QoS class: wake up when it may send again (1 to 10 ms).
                if let Some(t) = w.qos_wake() {
                    let ms = t.saturating_sub(now).div_ceil(1_000_000).clamp(1, 10);
                    timeout_ms = timeout_ms.min(ms as i32);
                }
                if w.prepare_sleep() {
                    fds.clear();
                    w.poll_fds(&mut fds);
                    fds.push(bell.as_raw_fd());
                    pollfds.clear();
                    pollfds.extend(fds.iter().map(|&fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    }));
                    timed_out = afxdp::poll(&mut pollfds, timeout_ms).unwrap_or(0) == 0;
                    w.woke();
                    let mut buf = [0u8; 64];
                    while bell.recv(&mut buf).is_ok() {}
                }
                if timed_out {
                    w.housekeep(monotonic_ns());
                }
                idle_since = None;
            }
        }
    }
    info!(worker = wi, "worker stopping");
    drop(w);
}
