//! The control API, daemon side: the HTTP server runs on its own thread (a small tokio
//! runtime) and hands every request to the control loop over a channel; the control loop,
//! the only owner of the switch's state, answers it between ticks. So a request sees and
//! changes the state exactly as the loop does, with no lock shared with the server, and a
//! change is validated whole and published as one new snapshot or refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vswitch_api::{
    ApiError, Backend, DropReasonInfo, FdbEntry, NeighborInfo, NodeInfo, PeerInfo, PeerSpec,
    PortInfo, PortStats as ApiPortStats, PortUpdate, QosClassInfo, QosClassUpdate, QosPortInfo,
    Reply, Request, Response, StaticMac, Status, VlanInfo, WorkerInfo,
};

use super::config::{ApiSection, Config, IdlePolicy, PeerSection, VlanModeName};
use super::daemon::Daemon;
use crate::pipeline::VlanMode;
use crate::pmd::monotonic_ns;
use crate::tables::l3::{ModeSetting, PeerMode};
use crate::telemetry::{DropReason, PortStats, WorkerCounters};
use crate::types::{MacAddr, PortId};

/// A request and where its answer goes.
pub type ApiCall = (Request, SyncSender<Response>);

/// The server's side of the channel to the control loop.
struct ChannelBackend {
    tx: SyncSender<ApiCall>,
}

impl Backend for ChannelBackend {
    fn call(&self, request: Request) -> Response {
        let (rtx, rrx) = sync_channel(1);
        // A capture answers when its bound is reached (at most its time bound).
        let wait = match &request {
            Request::Capture(c) => Duration::from_secs(
                c.seconds.unwrap_or(super::capture::MAX_SECONDS).min(super::capture::MAX_SECONDS)
                    + 10,
            ),
            _ => Duration::from_secs(5),
        };
        self.tx
            .send((request, rtx))
            .map_err(|_| ApiError::unavailable("vswitchd is shutting down"))?;
        rrx.recv_timeout(wait).map_err(|_| {
            ApiError::unavailable(format!(
                "the control loop did not answer within {} s",
                wait.as_secs()
            ))
        })?
    }
}

/// Binds the control socket (and the metrics listener) now, so a bad path or a busy address
/// fails start-up, then serves them on a thread until `stop` is set. Returns the thread and the
/// receiving end the control loop reads requests from.
pub fn spawn(
    cfg: &ApiSection,
    stop: Arc<AtomicBool>,
) -> Result<(JoinHandle<()>, Receiver<ApiCall>), String> {
    let gid = cfg.gid().map_err(|e| format!("api.group: {e}"))?;
    let listener =
        vswitch_api::ApiListener::bind(std::path::Path::new(&cfg.socket), cfg.mode(), gid)
            .map_err(|e| format!("api.socket: {e}"))?;
    let metrics = match cfg.metrics_addr() {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("api.metrics: cannot listen on {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| format!("api.metrics: {e}"))?;
            Some(l)
        }
        None => None,
    };
    let (tx, rx) = sync_channel::<ApiCall>(64);
    let backend: Arc<dyn Backend> = Arc::new(ChannelBackend { tx });
    let join = std::thread::Builder::new()
        .name("vswitch-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("API runtime: {e}"),
            };
            rt.block_on(async move {
                let stopped = |stop: Arc<AtomicBool>| async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                let api = listener.serve(backend.clone(), stopped(stop.clone()));
                match metrics.map(tokio::net::TcpListener::from_std) {
                    Some(Ok(m)) => {
                        let (a, b) = tokio::join!(
                            api,
                            vswitch_api::serve_metrics(m, backend, stopped(stop.clone()))
                        );
                        for r in [a, b] {
                            if let Err(e) = r {
                                tracing::error!("API server: {e}");
                            }
                        }
                    }
                    Some(Err(e)) => tracing::error!("metrics listener: {e}"),
                    None => {
                        if let Err(e) = api.await {
                            tracing::error!("API server: {e}");
                        }
                    }
                }
            });
        })
        .map_err(|e| format!("spawning the API thread: {e}"))?;
    Ok((join, rx))
}

fn api_stats(s: &PortStats) -> ApiPortStats {
    let drops: BTreeMap<String, u64> = DropReason::ALL
        .iter()
        .filter(|r| s.drop_count(**r) > 0)
        .map(|r| (r.name().to_string(), s.drop_count(*r)))
        .collect();
    ApiPortStats {
        rx_packets: s.rx_packets,
        rx_bytes: s.rx_bytes,
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        dropped: s.dropped(),
        drops,
    }
}

impl<const N: usize> Daemon<N> {
    /// Answers one API request.
    pub fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Ok(Reply::Status(Status {
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_secs: self.uptime().as_secs(),
                ports: self.port_ids().len(),
                workers: self.worker_counters().len(),
                fdb_entries: self.fdb().len(),
                fdb_max: self.fdb().max_entries(),
            })),
            Request::ListPorts => {
                Ok(Reply::Ports(self.port_ids().into_iter().map(|id| self.port_info(id)).collect()))
            }
            Request::GetPort(name) => Ok(Reply::Port(self.port_info(self.port_id(&name)?))),
            Request::UpdatePort(name, upd) => self.update_port(&name, upd),
            Request::AddPort(spec) => self.add_port(spec),
            Request::DelPort(name) => self.del_port(&name),
            Request::ListFdb { vlan, port } => {
                let port_id = port.as_deref().map(|p| self.port_id(p)).transpose()?;
                let entries = self
                    .fdb_writer()
                    .entries(monotonic_ns())
                    .into_iter()
                    .filter(|e| vlan.is_none_or(|v| v == e.vlan))
                    .filter(|e| port_id.is_none_or(|p| p == e.port))
                    .collect::<Vec<_>>();
                Ok(Reply::Fdb(
                    entries
                        .into_iter()
                        .map(|e| FdbEntry {
                            vlan: e.vlan,
                            mac: e.mac.to_string(),
                            port: self.port_name(e.port),
                            is_static: e.is_static,
                            age_secs: u64::from(e.age_secs),
                        })
                        .collect(),
                ))
            }
            Request::AddStaticMac(StaticMac { vlan, mac, port }) => {
                let m: MacAddr = mac
                    .parse()
                    .map_err(|e: crate::types::ParseMacError| ApiError::invalid(e.to_string()))?;
                let id = self.port_id(&port)?;
                let carries = self.snapshot().port(id).is_some_and(|e| e.mode.carries(vlan));
                if !carries {
                    return Err(ApiError::invalid(format!(
                        "port {port:?} does not carry VLAN {vlan}"
                    )));
                }
                self.fdb_writer()
                    .add_static(vlan, m, id)
                    .map_err(|e| ApiError::invalid(e.to_string()))?;
                Ok(Reply::Done { message: format!("static MAC {m} on VLAN {vlan} -> {port}") })
            }
            Request::DelMac { vlan, mac } => {
                let m: MacAddr = mac
                    .parse()
                    .map_err(|e: crate::types::ParseMacError| ApiError::invalid(e.to_string()))?;
                if self.fdb_writer().remove(vlan, m) {
                    Ok(Reply::Done { message: format!("removed {m} from VLAN {vlan}") })
                } else {
                    Err(ApiError::not_found(format!("MAC {m} is not in the FDB on VLAN {vlan}")))
                }
            }
            Request::FlushFdb { port, vlan } => {
                let id = port.as_deref().map(|p| self.port_id(p)).transpose()?;
                let w = self.fdb_writer();
                let n = match (id, vlan) {
                    (Some(p), None) => w.flush_port(p),
                    (None, Some(v)) => w.flush_vlan(v),
                    (Some(p), Some(v)) => {
                        let victims: Vec<_> = w
                            .entries(monotonic_ns())
                            .into_iter()
                            .filter(|e| e.port == p && e.vlan == v && !e.is_static)
                            .collect();
                        victims.iter().filter(|e| w.remove(e.vlan, e.mac)).count()
                    }
                    (None, None) => {
                        let vlans: std::collections::BTreeSet<u16> =
                            w.entries(monotonic_ns()).iter().map(|e| e.vlan).collect();
                        vlans.into_iter().map(|v| w.flush_vlan(v)).sum()
                    }
                };
                Ok(Reply::Done { message: format!("flushed {n} learned entries") })
            }
            Request::ListVlans => {
                let snap = self.snapshot();
                Ok(Reply::Vlans(
                    snap.vlans()
                        .map(|(v, ports)| VlanInfo {
                            vlan: v,
                            ports: ports.iter().map(|p| self.port_name(*p)).collect(),
                        })
                        .collect(),
                ))
            }
            Request::ListWorkers => Ok(Reply::Workers(self.workers_info())),
            Request::DropReasons => Ok(Reply::DropReasons(
                DropReason::ALL
                    .iter()
                    .map(|r| DropReasonInfo { name: r.name().into(), help: r.help().into() })
                    .collect(),
            )),
            Request::Metrics => Ok(Reply::Metrics(self.metrics())),
            Request::AttachPod(a) => self.attach_pod(a),
            Request::DetachPod { container_id, ifname } => self.detach_pod(&container_id, &ifname),
            Request::ListPods => Ok(Reply::Pods(self.pods().values().cloned().collect())),
            Request::Trace(t) => self.trace(&t),
            Request::GetNode => self.node_info().map(Reply::Node),
            Request::ListPeers => Ok(Reply::Peers(self.peers_info())),
            Request::SetPeer(name, spec) => self.set_peer_api(name, spec),
            Request::DelPeer(name) => self.del_peer_api(&name),
            Request::ListRoutes => Ok(Reply::Routes(self.routes_info())),
            Request::AddRoute(spec) => self.add_route(spec),
            Request::DelRoute(prefix) => self.del_route(&prefix),
            Request::ListNeighbors => Ok(Reply::Neighbors(
                self.neighbors()
                    .entries()
                    .into_iter()
                    .map(|(ip, n)| NeighborInfo {
                        ip: Ipv4Addr::from(ip).to_string(),
                        mac: n.mac.to_string(),
                        port: self.port_name(n.port),
                    })
                    .collect(),
            )),
            Request::ListQos => Ok(Reply::Qos(self.qos_info())),
            Request::SetQosClass(name, upd) => self.set_qos_api(&name, upd),
            Request::AddQosClass(spec) => self.add_qos_class(spec),
            Request::DelQosClass(name) => self.del_qos_class(&name),
            Request::ListFlowCache => Ok(Reply::FlowCache(self.flow_cache_info())),
            Request::ListFlows => Ok(Reply::Flows(self.flows_info())),
            Request::AddFlow(rule) => self.add_flow(rule),
            Request::DelFlow(name) => self.del_flow(&name),
            // The control loop arms captures itself ([`Daemon::start_capture`]): they answer
            // later. Reaching here means a caller bypassed it.
            Request::Capture(_) => {
                Err(ApiError::internal("a capture must go through the control loop"))
            }
        }
    }

    /// `GET /v1/qos`: every shaped port's classes, settings and counters, as the workers last
    /// published them (at most 100 ms old).
    fn qos_info(&self) -> Vec<QosPortInfo> {
        self.qos_reports()
            .into_iter()
            // A worker's last report may still hold a port removed since.
            .filter(|r| self.port_section(r.port).is_some())
            .map(|r| {
                let snap = self.snapshot();
                let plan = snap.qos(r.port);
                let by_id: BTreeMap<_, _> =
                    r.classes.iter().map(|c| (c.id, c.name.clone())).collect();
                QosPortInfo {
                    port: self.port_name(r.port),
                    backlog: r.backlog,
                    classes: r
                        .classes
                        .iter()
                        .map(|c| {
                            let st = &c.stats;
                            let mut drops = BTreeMap::new();
                            let local = self.local_drops(r.port, c.id);
                            for (k, v) in [
                                ("queue_full", st.dropped_queue_full),
                                ("policed", st.dropped_policed),
                                ("pps_limit", st.dropped_pps),
                            ]
                            .into_iter()
                            .chain(local)
                            {
                                if v > 0 {
                                    drops.insert(k.to_string(), v);
                                }
                            }
                            QosClassInfo {
                                name: c.name.clone(),
                                parent: c.config.parent.map(|p| {
                                    by_id.get(&p).cloned().unwrap_or_else(|| p.to_string())
                                }),
                                ports: plan
                                    .map(|pl| {
                                        pl.leaves()
                                            .filter(|(_, l)| *l == c.id)
                                            .map(|(p, _)| self.port_name(p))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                rate_bps: c.config.rate_bps,
                                ceil_bps: c.config.ceil_bps,
                                burst_bytes: c.config.burst_bytes,
                                rate_burst_bytes: crate::qos::sched::rate_burst(&c.config),
                                priority: c.config.prio,
                                weight: c.config.weight,
                                pps: c.config.pps,
                                mpu: c.config.mpu,
                                mode: match c.config.mode {
                                    crate::qos::Mode::Shape => "shape".into(),
                                    crate::qos::Mode::Police => "police".into(),
                                },
                                queue_limit: c.config.queue_limit,
                                sent_bytes: st.sent_bytes,
                                sent_packets: st.sent_packets,
                                queued_packets: st.queued_packets,
                                queued_bytes: st.queued_bytes,
                                drops,
                                borrowed_bytes: st.borrowed_bytes,
                                lent_bytes: st.lent_bytes,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// What the local limiters of class `class` (of the tree shaping port `shaped`) dropped,
    /// by reason (`local_queue_full`, `local_policed`, `local_pps_limit`): the
    /// `qos_local_*` drops of the ports whose traffic is that class, over every worker (see
    /// `pipeline::nodes::qos::limit_local`).
    fn local_drops(&self, shaped: PortId, class: crate::qos::ClassId) -> [(&'static str, u64); 3] {
        let snap = self.snapshot();
        let ports: Vec<PortId> = snap
            .qos(shaped)
            .map(|plan| plan.leaves().filter(|(_, c)| *c == class).map(|(p, _)| p).collect())
            .unwrap_or_default();
        [
            ("local_queue_full", DropReason::QosLocalQueueFull),
            ("local_policed", DropReason::QosLocalPoliced),
            ("local_pps_limit", DropReason::QosLocalPpsLimit),
        ]
        .map(|(k, r)| (k, ports.iter().map(|&p| self.port_stats(p).drop_count(r)).sum()))
    }

    /// `PATCH /v1/qos/classes/{name}`: changes the class in a copy of the configuration,
    /// validates the whole of it and applies it live, or refuses it whole (the message names
    /// the class and field, e.g. `qos_class[2] ("pod-b").ceil: ...`).
    fn set_qos_api(&mut self, name: &str, upd: QosClassUpdate) -> Response {
        use super::qos::{QosMode, RateSpec};
        let Some(i) = self.config().qos_classes.iter().position(|c| c.name == name) else {
            return Err(ApiError::not_found(format!("no QoS class {name:?}")));
        };
        if upd == QosClassUpdate::default() {
            return Err(ApiError::invalid(
                "nothing to change: give rate, ceil, priority, weight, pps, pps_burst, burst, \
                 mpu, queue_limit or mode",
            ));
        }
        let mode = match upd.mode.as_deref() {
            None => None,
            Some("shape") => Some(QosMode::Shape),
            Some("police") => Some(QosMode::Police),
            Some(m) => {
                return Err(ApiError::invalid(format!(
                    "qos_class[{i}] ({name:?}).mode: {m:?} is not shape or police"
                )))
            }
        };
        // "none" removes the pps limit (and its burst, which has no meaning without it).
        let no_pps = upd.pps.as_deref() == Some("none");
        let pps_after =
            !no_pps && (upd.pps.is_some() || self.config().qos_classes[i].pps.is_some());
        if upd.pps_burst.is_some() && !pps_after {
            return Err(ApiError::invalid(format!(
                "qos_class[{i}] ({name:?}).pps_burst: the class has no pps limit to burst"
            )));
        }
        // The message: each setting given, in the order of the update's fields.
        let what: Vec<String> = [
            ("rate", upd.rate.clone()),
            ("ceil", upd.ceil.clone()),
            ("pps", upd.pps.clone()),
            ("priority", upd.priority.map(|v| v.to_string())),
            ("weight", upd.weight.map(|v| v.to_string())),
            ("pps_burst", upd.pps_burst.map(|v| v.to_string())),
            ("burst", upd.burst.map(|v| v.to_string())),
            ("mpu", upd.mpu.map(|v| v.to_string())),
            ("queue_limit", upd.queue_limit.map(|v| v.to_string())),
            ("mode", upd.mode.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some(format!("{k} {}", v?)))
        .collect();
        self.set_qos_class(name, |c| {
            if let Some(r) = upd.rate {
                c.rate = RateSpec::Text(r);
            }
            if let Some(r) = upd.ceil {
                c.ceil = Some(RateSpec::Text(r));
            }
            if let Some(p) = upd.priority {
                c.priority = p;
            }
            if let Some(w) = upd.weight {
                c.weight = w;
            }
            if no_pps {
                c.pps = None;
                c.pps_burst = None;
            } else if let Some(p) = upd.pps {
                c.pps = Some(RateSpec::Text(p));
            }
            if let Some(b) = upd.pps_burst {
                c.pps_burst = Some(b);
            }
            if let Some(b) = upd.burst {
                c.burst = Some(b);
            }
            if let Some(m) = upd.mpu {
                c.mpu = m;
            }
            if let Some(q) = upd.queue_limit {
                c.queue_limit = q;
            }
            if let Some(m) = mode {
                c.mode = m;
            }
        })
        .map_err(ApiError::invalid)?;
        Ok(Reply::Done { message: format!("QoS class {name:?}: {}", what.join(", ")) })
    }

    /// `GET /v1/node`: the routing identity as compiled into the snapshot the workers use
    /// (defaults filled in), so what is shown is what forwards.
    fn node_info(&self) -> Result<NodeInfo, ApiError> {
        let snap = self.snapshot();
        let t = snap.l3().ok_or_else(|| {
            ApiError::not_found("this node does not route: no [node] in the configuration")
        })?;
        Ok(NodeInfo {
            name: t.node_name.clone(),
            pod_cidr: t.pod_cidr.to_string(),
            gateway: t.gateway.to_string(),
            router_mac: t.router_mac.to_string(),
            pod_vlan: t.pod_vlan,
            underlay_ip: t.underlay.to_string(),
            underlay_gateway: t.underlay_gateway.map(|g| g.to_string()),
            uplink: self.port_name(t.uplink),
            vni: t.vni,
            vxlan_port: t.vxlan_port,
        })
    }

    /// `GET /v1/peers`: every peer with the mode in use and why, and its next hop's MAC when
    /// ARP has resolved it. Empty on a node that does not route.
    fn peers_info(&self) -> Vec<PeerInfo> {
        let snap = self.snapshot();
        let Some(t) = snap.l3() else { return Vec::new() };
        let neigh = self.neighbors();
        t.peers
            .iter()
            .map(|p| PeerInfo {
                name: p.name.clone(),
                underlay_ip: p.underlay_ip.to_string(),
                pod_cidr: p.pod_cidr.to_string(),
                mode: p.mode.name().into(),
                configured: setting_name(p.setting).into(),
                reason: p.reason.clone(),
                vtep_mac: p.vtep_mac.to_string(),
                next_hop: p.next_hop.to_string(),
                next_hop_mac: neigh.get(u32::from(p.next_hop)).map(|n| n.mac.to_string()),
            })
            .collect()
    }

    /// `PUT /v1/peers/{name}`: parses the spec (errors name the field and value), then adds or
    /// replaces the peer through the daemon, which validates it with the whole configuration
    /// and applies it live or refuses it whole.
    fn set_peer_api(&mut self, name: String, spec: PeerSpec) -> Response {
        let underlay_ip: Ipv4Addr = spec.underlay_ip.trim().parse().map_err(|_| {
            ApiError::invalid(format!(
                "underlay_ip {:?} is not an IPv4 address (a.b.c.d)",
                spec.underlay_ip
            ))
        })?;
        let pod_cidr =
            spec.pod_cidr.trim().parse().map_err(|e: crate::tables::route::NetError| {
                ApiError::invalid(format!("pod_cidr: {e}"))
            })?;
        let mode = match spec.mode.as_deref().map(str::trim) {
            None | Some("auto") => ModeSetting::Auto,
            Some("direct") => ModeSetting::Direct,
            Some("vxlan") => ModeSetting::Vxlan,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "mode {other:?} is not \"auto\", \"direct\" or \"vxlan\""
                )))
            }
        };
        let section = PeerSection {
            name: name.clone(),
            underlay_ip,
            pod_cidr,
            mode,
            vtep_mac: spec.vtep_mac.map(|m| m.trim().to_string()),
        };
        let before = self.config().peers.iter().find(|p| p.name == name).cloned();
        if before.as_ref() == Some(&section) {
            return Ok(Reply::Done { message: format!("peer {name:?} unchanged") });
        }
        self.set_peer(section).map_err(ApiError::invalid)?;
        let how = self
            .peers_info()
            .into_iter()
            .find(|p| p.name == name)
            .map_or_else(String::new, |p| format!(": {} ({})", p.mode, p.reason));
        let verb = if before.is_some() { "replaced" } else { "added" };
        Ok(Reply::Done { message: format!("peer {name:?} {verb}{how}") })
    }

    /// `DELETE /v1/peers/{name}`: not found for an unknown peer, else removed live.
    fn del_peer_api(&mut self, name: &str) -> Response {
        let Some(p) = self.config().peers.iter().find(|p| p.name == name) else {
            return Err(ApiError::not_found(format!("no peer {name:?}")));
        };
        let cidr = p.pod_cidr;
        self.remove_peer(name).map_err(ApiError::invalid)?;
        Ok(Reply::Done { message: format!("peer {name:?} removed (no more route to {cidr})") })
    }

    /// `POST /v1/trace`: builds the frame and runs it through the pipeline's decisions against
    /// the current snapshot and FDB; nothing is sent or learned.
    fn trace(&self, t: &vswitch_api::TraceRequest) -> Response {
        use crate::pipeline::trace::{build_frame, to_hex, trace, FrameSpec};
        let in_port = self.port_id(&t.in_port)?;
        let frame = build_frame(&FrameSpec {
            frame_hex: t.frame_hex.as_deref(),
            src_mac: t.src_mac.as_deref(),
            dst_mac: t.dst_mac.as_deref(),
            vlan: t.vlan,
            ethertype: t.ethertype,
            src_ip: t.src_ip.as_deref(),
            dst_ip: t.dst_ip.as_deref(),
            proto: t.proto.as_deref(),
            src_port: t.src_port,
            dst_port: t.dst_port,
            len: t.len,
        })
        .map_err(ApiError::invalid)?;
        let tr = trace(&frame, in_port, &self.snapshot(), self.fdb());
        Ok(Reply::Trace(vswitch_api::TraceResult {
            frame_hex: to_hex(&frame),
            steps: tr
                .steps
                .into_iter()
                .map(|s| vswitch_api::TraceStep { stage: s.stage.into(), detail: s.detail })
                .collect(),
            verdict: tr.verdict.to_string(),
            outputs: tr.verdict.outputs(),
            drop_reason: tr.verdict.drop_reason().map(|r| r.name().to_string()),
        }))
    }

    pub(super) fn port_id(&self, name: &str) -> Result<PortId, ApiError> {
        self.port_ids()
            .into_iter()
            .find(|&id| self.port_section(id).is_some_and(|s| s.name == name))
            .ok_or_else(|| ApiError::not_found(format!("unknown port {name:?}")))
    }

    fn port_name(&self, id: PortId) -> String {
        self.port_section(id).map_or_else(|| format!("#{id}"), |s| s.name.clone())
    }

    /// A port's counters summed over every worker (egress drops may be counted by another
    /// worker than the port's own).
    fn port_stats(&self, id: PortId) -> PortStats {
        let mut total = PortStats::default();
        for c in self.worker_counters() {
            total.merge(&c.port(id).snapshot());
        }
        total
    }

    pub(super) fn port_info(&self, id: PortId) -> PortInfo {
        let s = self.port_section(id).expect("listed port").clone();
        let (allowed, native) = match s.vlan_mode() {
            VlanMode::Access(_) => (Vec::new(), None),
            VlanMode::Trunk { allowed, native } => (allowed.iter().collect(), native),
        };
        PortInfo {
            id,
            name: s.name.clone(),
            // A TAP port's device is the pod's interface, inside the pod's namespace.
            interface: match (s.kind, &s.pod_netns, &s.pod_interface) {
                (super::config::PortKind::Tap, Some(ns), Some(ifname)) => {
                    let ns = ns.rsplit('/').next().unwrap_or(ns);
                    format!("{ns}/{ifname}")
                }
                _ => s.interface().to_string(),
            },
            kind: self.port_kind(id),
            worker: s.worker,
            queues: s.queues,
            up: s.up,
            mode: match s.mode {
                VlanModeName::Access => "access".into(),
                VlanModeName::Trunk => "trunk".into(),
            },
            vlan: (s.mode == VlanModeName::Access).then(|| s.vlan.unwrap_or(1)),
            allowed_vlans: allowed,
            native_vlan: native,
            mtu: s.mtu,
            stats: api_stats(&self.port_stats(id)),
        }
    }

    fn update_port(&mut self, name: &str, upd: PortUpdate) -> Response {
        let id = self.port_id(name)?;
        let mut cfg: Config = self.config().clone();
        let Some(p) = cfg.ports.iter_mut().find(|p| p.name == name) else {
            return Err(ApiError::not_found(format!("unknown port {name:?}")));
        };
        if let Some(up) = upd.up {
            p.up = up;
        }
        if let Some(mode) = &upd.mode {
            p.mode = match mode.as_str() {
                "access" => {
                    p.allowed_vlans.clear();
                    p.native_vlan = None;
                    VlanModeName::Access
                }
                "trunk" => {
                    p.vlan = None;
                    VlanModeName::Trunk
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "mode {other:?} is not \"access\" or \"trunk\""
                    )))
                }
            };
        }
        if let Some(v) = upd.vlan {
            p.vlan = Some(v);
        }
        if let Some(a) = upd.allowed_vlans {
            p.allowed_vlans = a;
        }
        if let Some(n) = upd.native_vlan {
            p.native_vlan = Some(n);
        }
        if let Some(m) = upd.mtu {
            p.mtu = m;
        }
        self.apply_api(cfg)?;
        Ok(Reply::Port(self.port_info(id)))
    }

    fn workers_info(&self) -> Vec<WorkerInfo> {
        let counters = self.worker_counters();
        let cfgs = self.worker_configs();
        let frames = self.pool_frames();
        counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (busy, idle) = (c.busy_ns.get(), c.idle_ns.get());
                let packets = c.packets.get();
                WorkerInfo {
                    id: i,
                    core: cfgs[i].core,
                    idle: match cfgs[i].idle {
                        IdlePolicy::BusyPoll => "busy-poll".into(),
                        IdlePolicy::Adaptive => "adaptive".into(),
                    },
                    ports: self
                        .port_ids()
                        .into_iter()
                        .filter(|id| self.port_section(*id).is_some_and(|s| s.worker == i))
                        .map(|id| self.port_name(id))
                        .collect(),
                    iterations: c.iterations.get(),
                    packets,
                    busy_percent: if busy + idle > 0 {
                        100.0 * busy as f64 / (busy + idle) as f64
                    } else {
                        0.0
                    },
                    ns_per_packet: (packets > 0).then(|| busy as f64 / packets as f64),
                    pool_free: c.pool_free.get() as usize,
                    pool_frames: frames[i],
                }
            })
            .collect()
    }

    /// Prometheus text exposition, rendered from the counters the workers already keep.
    ///
    /// Rendered by hand: the format is a few lines per family, and a registry crate would make
    /// us mirror counters that live in the workers' shared memory into its own on every scrape.
    fn metrics(&self) -> String {
        let mut out = String::new();
        let workers = self.workers_info();
        let ports: Vec<(String, PortStats)> = self
            .port_ids()
            .into_iter()
            .map(|id| (self.port_name(id), self.port_stats(id)))
            .collect();
        for (name, help, get) in [
            (
                "vswitch_port_rx_packets_total",
                "Packets received on the port.",
                (|s: &PortStats| s.rx_packets) as fn(&PortStats) -> u64,
            ),
            ("vswitch_port_rx_bytes_total", "Bytes received on the port.", |s| s.rx_bytes),
            ("vswitch_port_tx_packets_total", "Packets sent out of the port.", |s| s.tx_packets),
            ("vswitch_port_tx_bytes_total", "Bytes sent out of the port.", |s| s.tx_bytes),
        ] {
            family(&mut out, name, help, "counter");
            for (p, s) in &ports {
                let _ = writeln!(out, "{name}{{port=\"{}\"}} {}", escape(p), get(s));
            }
        }
        family(
            &mut out,
            "vswitch_port_drops_total",
            "Packets dropped, by port and reason.",
            "counter",
        );
        for (p, s) in &ports {
            for r in DropReason::ALL {
                let _ = writeln!(
                    out,
                    "vswitch_port_drops_total{{port=\"{}\",reason=\"{}\"}} {}",
                    escape(p),
                    r.name(),
                    s.drop_count(*r)
                );
            }
        }
        for (name, help, kind, get) in [
            (
                "vswitch_worker_iterations_total",
                "Poll loop iterations.",
                "counter",
                (|w: &WorkerInfo| w.iterations as f64) as fn(&WorkerInfo) -> f64,
            ),
            ("vswitch_worker_packets_total", "Packets received by the worker.", "counter", |w| {
                w.packets as f64
            }),
            ("vswitch_worker_busy_ratio", "Share of time spent moving packets.", "gauge", |w| {
                w.busy_percent / 100.0
            }),
            (
                "vswitch_worker_pool_free_frames",
                "Free frames in the worker's buffer pool.",
                "gauge",
                |w| w.pool_free as f64,
            ),
        ] {
            family(&mut out, name, help, kind);
            for w in &workers {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.id, get(w));
            }
        }
        self.routing_metrics(&mut out);
        family(&mut out, "vswitch_fdb_entries", "MAC addresses in the FDB.", "gauge");
        let _ = writeln!(out, "vswitch_fdb_entries {}", self.fdb().len());
        let st = self.fdb().stats();
        family(&mut out, "vswitch_fdb_moves_total", "MAC moves between ports.", "counter");
        let _ = writeln!(out, "vswitch_fdb_moves_total {}", st.moved);
        family(
            &mut out,
            "vswitch_fdb_full_total",
            "MACs not learned because the FDB was full.",
            "counter",
        );
        let _ = writeln!(out, "vswitch_fdb_full_total {}", st.table_full);
        let (hits, misses) = self
            .worker_counters()
            .iter()
            .fold((0, 0), |(h, m), c| (h + c.flow_hits.get(), m + c.flow_misses.get()));
        family(
            &mut out,
            "vswitch_flow_cache_lookups_total",
            "Flow cache lookups by result.",
            "counter",
        );
        let _ = writeln!(out, "vswitch_flow_cache_lookups_total{{result=\"hit\"}} {hits}");
        let _ = writeln!(out, "vswitch_flow_cache_lookups_total{{result=\"miss\"}} {misses}");
        let cached = self.flow_reports().len();
        family(
            &mut out,
            "vswitch_flow_cache_entries",
            "L2 flows cached by the workers (as last published, about once a second).",
            "gauge",
        );
        let _ = writeln!(out, "vswitch_flow_cache_entries {cached}");
        self.flow_rule_metrics(&mut out);
        self.qos_metrics(&mut out);
        out
    }

    /// The flow rules' counters, one series per rule.
    fn flow_rule_metrics(&self, out: &mut String) {
        let rules = self.flows_info();
        type Get = fn(&vswitch_api::FlowRuleInfo) -> u64;
        let rows: [(&str, &str, Get); 3] = [
            ("vswitch_flow_rule_packets_total", "Packets a flow rule matched.", |r| r.packets),
            ("vswitch_flow_rule_bytes_total", "Bytes a flow rule matched.", |r| r.bytes),
            (
                "vswitch_flow_rule_meter_drops_total",
                "Packets a flow rule's meter dropped (also counted as acl_meter drops).",
                |r| r.meter_drops,
            ),
        ];
        for (name, help, get) in rows {
            family(out, name, help, "counter");
            for r in &rules {
                let _ = writeln!(
                    out,
                    "{name}{{rule=\"{}\",action=\"{}\"}} {}",
                    escape(&r.rule.name),
                    escape(&r.rule.action),
                    get(r)
                );
            }
        }
    }

    /// The QoS families, one series per shaped port and class.
    fn qos_metrics(&self, out: &mut String) {
        type Get = fn(&crate::qos::ClassStats) -> u64;
        let reports = self.qos_reports();
        let rows: [(&str, &str, &str, Get); 5] = [
            (
                "vswitch_qos_sent_bytes_total",
                "Bytes sent by (or through) a QoS class.",
                "counter",
                |s| s.sent_bytes,
            ),
            (
                "vswitch_qos_sent_packets_total",
                "Packets sent by (or through) a QoS class.",
                "counter",
                |s| s.sent_packets,
            ),
            (
                "vswitch_qos_borrowed_bytes_total",
                "Bytes a QoS class sent above its guarantee.",
                "counter",
                |s| s.borrowed_bytes,
            ),
            ("vswitch_qos_backlog_packets", "Packets queued in a QoS class.", "gauge", |s| {
                s.queued_packets
            }),
            ("vswitch_qos_backlog_bytes", "Bytes queued in a QoS class.", "gauge", |s| {
                s.queued_bytes
            }),
        ];
        for (name, help, kind, get) in rows {
            family(out, name, help, kind);
            for r in &reports {
                let port = escape(&self.port_name(r.port));
                for c in &r.classes {
                    let _ = writeln!(
                        out,
                        "{name}{{port=\"{port}\",class=\"{}\"}} {}",
                        escape(&c.name),
                        get(&c.stats)
                    );
                }
            }
        }
        family(
            out,
            "vswitch_qos_drops_total",
            "Packets a QoS class dropped, by reason (local_*: by the local limiter, on its ports' traffic that its scheduler does not see).",
            "counter",
        );
        for r in &reports {
            let port = escape(&self.port_name(r.port));
            for c in &r.classes {
                let local = self.local_drops(r.port, c.id);
                for (reason, v) in [
                    ("queue_full", c.stats.dropped_queue_full),
                    ("policed", c.stats.dropped_policed),
                    ("pps_limit", c.stats.dropped_pps),
                ]
                .into_iter()
                .chain(local)
                {
                    let _ = writeln!(
                        out,
                        "vswitch_qos_drops_total{{port=\"{port}\",class=\"{}\",reason=\"{reason}\"}} {v}",
                        escape(&c.name)
                    );
                }
            }
        }
    }

    /// The routing families: what each worker's L3 stage did and what the switch answered or
    /// sent itself, the peers by forwarding mode, and the resolved neighbours. Rendered on
    /// every node (zeros on one that does not route), so the series always exist.
    fn routing_metrics(&self, out: &mut String) {
        /// Family name (empty: the one above), help, extra label, value.
        type Row = (&'static str, &'static str, Option<(&'static str, &'static str)>, Get);
        type Get = fn(&WorkerCounters) -> u64;
        let rows: [Row; 8] = [
            (
                "vswitch_worker_routed_packets_total",
                "Packets routed (L3) between pod networks.",
                None,
                |c| c.routed.get(),
            ),
            (
                "vswitch_worker_vxlan_packets_total",
                "VXLAN packets encapsulated (to peers) or decapsulated (from peers).",
                Some(("direction", "encap")),
                |c| c.vxlan_encap.get(),
            ),
            ("", "", Some(("direction", "decap")), |c| c.vxlan_decap.get()),
            (
                "vswitch_worker_arp_sent_total",
                "ARP packets the switch sent: replies for its addresses, requests for next hops.",
                Some(("type", "reply")),
                |c| c.arp_replies.get(),
            ),
            ("", "", Some(("type", "request")), |c| c.arp_requests.get()),
            (
                "vswitch_worker_icmp_sent_total",
                "ICMP packets the switch sent: echo replies from its own addresses, and errors.",
                Some(("type", "echo_reply")),
                |c| c.icmp_echo_replies.get(),
            ),
            ("", "", Some(("type", "error")), |c| c.icmp_errors.get()),
            (
                "vswitch_worker_local_consumed_total",
                "Packets addressed to the switch itself and consumed (e.g. ARP replies to it).",
                None,
                |c| c.local_consumed.get(),
            ),
        ];
        let counters = self.worker_counters();
        let mut name = "";
        for (first, help, label, get) in rows {
            // An empty name continues the family above with another label value.
            if !first.is_empty() {
                name = first;
                family(out, name, help, "counter");
            }
            for (i, c) in counters.iter().enumerate() {
                let _ = match label {
                    Some((k, v)) => {
                        writeln!(out, "{name}{{worker=\"{i}\",{k}=\"{v}\"}} {}", get(c))
                    }
                    None => writeln!(out, "{name}{{worker=\"{i}\"}} {}", get(c)),
                };
            }
        }
        let snap = self.snapshot();
        let peers = snap.l3().map_or(&[][..], |t| t.peers.as_slice());
        family(out, "vswitch_peers", "Peer nodes, by the forwarding mode in use.", "gauge");
        for mode in [PeerMode::Direct, PeerMode::Vxlan] {
            let n = peers.iter().filter(|p| p.mode == mode).count();
            let _ = writeln!(out, "vswitch_peers{{mode=\"{}\"}} {n}", mode.name());
        }
        family(out, "vswitch_routes", "Routes in the node's table, by origin.", "gauge");
        let statics = snap.l3().map_or(0, |t| t.statics.len());
        let all = snap.l3().map_or(0, |t| t.routes.len());
        let _ = writeln!(out, "vswitch_routes{{origin=\"pod-cidr\"}} {}", all - statics);
        let _ = writeln!(out, "vswitch_routes{{origin=\"static\"}} {statics}");
        family(out, "vswitch_neighbors", "Resolved neighbours (pods, peers, gateway).", "gauge");
        let _ = writeln!(out, "vswitch_neighbors {}", self.neighbors().len());
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The name of a configured mode, as `[[peer]] mode` spells it.
fn setting_name(s: ModeSetting) -> &'static str {
    match s {
        ModeSetting::Auto => "auto",
        ModeSetting::Direct => "direct",
        ModeSetting::Vxlan => "vxlan",
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
