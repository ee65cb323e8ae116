//! `vswitchctl` run as a program against a fake daemon: vswitch-api's server with a scripted
//! backend on a temporary socket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use vswitch_api::{
    ApiError, ApiListener, Backend, CachedFlow, CaptureRequest, CaptureResult, CapturedPacket,
    DropReasonInfo, FdbEntry, FlowRule, FlowRuleInfo, NeighborInfo, NodeInfo, PeerInfo, PeerSpec,
    PortInfo, PortSpec, PortStats, PortUpdate, QosClassInfo, QosClassSpec, QosClassUpdate,
    QosPortInfo, Reply, Request, Response, RouteInfo, RouteSpec, StaticMac, Status, TraceRequest,
    TraceResult, TraceStep, VlanInfo, WorkerInfo,
};

struct Fake {
    log: Mutex<Vec<Request>>,
}

impl Backend for Fake {
    fn call(&self, request: Request) -> Response {
        self.log.lock().unwrap().push(request.clone());
        answer(&request)
    }
}

fn port(name: &str, trunk: bool) -> PortInfo {
    PortInfo {
        id: if trunk { 2 } else { 1 },
        name: name.into(),
        interface: format!("veth-{name}"),
        kind: "afxdp native copy".into(),
        worker: 0,
        queues: 1,
        up: !trunk,
        mode: if trunk { "trunk" } else { "access" }.into(),
        vlan: (!trunk).then_some(10),
        allowed_vlans: if trunk { vec![10, 20, 30, 31, 32] } else { vec![] },
        native_vlan: trunk.then_some(1),
        mtu: 1500,
        stats: PortStats {
            rx_packets: 1234,
            rx_bytes: 99_000,
            tx_packets: 1200,
            tx_bytes: 98_000,
            dropped: if trunk { 0 } else { 7 },
            drops: if trunk {
                BTreeMap::new()
            } else {
                BTreeMap::from([("vlan_not_allowed".into(), 5), ("no_buffer".into(), 2)])
            },
        },
    }
}

fn answer(request: &Request) -> Response {
    Ok(match request {
        Request::Status => Reply::Status(Status {
            version: "0.1.0".into(),
            uptime_secs: 3725,
            ports: 2,
            workers: 1,
            fdb_entries: 3,
            fdb_max: 8192,
        }),
        Request::ListPorts => Reply::Ports(vec![port("pod-a", false), port("uplink", true)]),
        Request::GetPort(name) if name == "pod-a" => Reply::Port(port("pod-a", false)),
        Request::GetPort(name) | Request::UpdatePort(name, _) => {
            return Err(ApiError::not_found(format!("unknown port {name:?}")))
        }
        Request::ListFdb { .. } => Reply::Fdb(vec![
            FdbEntry {
                vlan: 10,
                mac: "02:00:00:00:00:01".into(),
                port: "pod-a".into(),
                is_static: false,
                age_secs: 65,
            },
            FdbEntry {
                vlan: 20,
                mac: "02:00:00:00:00:02".into(),
                port: "uplink".into(),
                is_static: true,
                age_secs: 0,
            },
        ]),
        Request::AddStaticMac(m) if m.vlan > 4094 => {
            return Err(ApiError::invalid(format!("VLAN {} out of range 1..=4094", m.vlan)))
        }
        Request::AddStaticMac(m) => Reply::Done { message: format!("added {}", m.mac) },
        Request::DelMac { mac, .. } => Reply::Done { message: format!("deleted {mac}") },
        Request::FlushFdb { .. } => Reply::Done { message: "flushed 2 entries".into() },
        Request::ListVlans => Reply::Vlans(vec![
            VlanInfo { vlan: 10, ports: vec!["pod-a".into(), "uplink".into()] },
            VlanInfo { vlan: 20, ports: vec!["uplink".into()] },
        ]),
        Request::ListWorkers => Reply::Workers(vec![WorkerInfo {
            id: 0,
            core: Some(3),
            idle: "busy-poll".into(),
            ports: vec!["pod-a".into(), "uplink".into()],
            iterations: 1_000_000,
            packets: 2434,
            busy_percent: 12.345,
            ns_per_packet: Some(87.6),
            pool_free: 4000,
            pool_frames: 4096,
        }]),
        Request::DropReasons => Reply::DropReasons(vec![
            DropReasonInfo {
                name: "vlan_not_allowed".into(),
                help: "tagged with a VLAN the port does not carry".into(),
            },
            DropReasonInfo { name: "no_buffer".into(), help: "the buffer pool was empty".into() },
        ]),
        Request::Metrics => Reply::Metrics("# TYPE vswitch_up gauge\nvswitch_up 1\n".into()),
        Request::ListPods => Reply::Pods(vec![vswitch_api::PodAttachment {
            container_id: "0123456789abcdef".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/pod-a".into(),
            host_interface: "vs0123456789ab".into(),
            vlan: 10,
            mtu: 1450,
            mac: None,
            ips: vec!["10.244.1.5/24".into()],
            pod_namespace: Some("default".into()),
            pod_name: Some("web-0".into()),
            pod_uid: None,
            cgroup_path: None,
            bandwidth: None,
            port_type: None,
        }]),
        Request::AttachPod(_) | Request::DetachPod { .. } => {
            return Err(ApiError::invalid("not used by vswitchctl"))
        }
        Request::GetNode => Reply::Node(NodeInfo {
            name: "n1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            gateway: "10.244.1.1".into(),
            router_mac: "0a:58:c6:12:00:01".into(),
            pod_vlan: 1,
            underlay_ip: "198.18.0.1/24".into(),
            underlay_gateway: None,
            uplink: "uplink".into(),
            vni: 1,
            vxlan_port: 8472,
        }),
        Request::ListPeers => Reply::Peers(vec![PeerInfo {
            name: "n2".into(),
            underlay_ip: "198.18.0.2".into(),
            pod_cidr: "10.244.2.0/24".into(),
            mode: "direct".into(),
            configured: "auto".into(),
            reason: "auto: 198.18.0.2 is on the uplink's subnet 198.18.0.0/24".into(),
            vtep_mac: "0a:58:c6:12:00:02".into(),
            next_hop: "198.18.0.2".into(),
            next_hop_mac: None,
        }]),
        Request::ListRoutes => Reply::Routes(vec![
            RouteInfo {
                prefix: "10.244.1.0/24".into(),
                via: "local".into(),
                mode: "local".into(),
                next_hop: None,
                origin: "pod-cidr".into(),
            },
            RouteInfo {
                prefix: "0.0.0.0/0".into(),
                via: "198.18.0.254".into(),
                mode: "direct".into(),
                next_hop: Some("198.18.0.254".into()),
                origin: "static".into(),
            },
            RouteInfo {
                prefix: "10.244.2.0/24".into(),
                via: "n2".into(),
                mode: "direct".into(),
                next_hop: Some("198.18.0.2".into()),
                origin: "pod-cidr".into(),
            },
        ]),
        Request::AddRoute(r) if r.prefix.contains("10.244.1.") => {
            return Err(ApiError::invalid(format!(
                "route[0] ({}).prefix: is inside this node's pod_cidr 10.244.1.0/24",
                r.prefix
            )))
        }
        Request::AddRoute(r) => Reply::Done { message: format!("route {} added", r.prefix) },
        Request::DelRoute(p) if p == "0.0.0.0/0" => {
            Reply::Done { message: format!("route {p} removed") }
        }
        Request::DelRoute(p) => return Err(ApiError::not_found(format!("no static route to {p}"))),
        Request::AddPort(spec) if spec.0.contains_key("vlan") && spec.0["vlan"] == 5000 => {
            return Err(ApiError::invalid("port[2] (\"vm1\").vlan: 5000 is out of range 1..=4094"))
        }
        Request::AddPort(spec) => {
            let mut p = port("vm1", spec.0.get("mode").is_some_and(|m| m == "trunk"));
            p.name = spec.0["name"].as_str().unwrap_or("?").into();
            Reply::Port(p)
        }
        Request::DelPort(name) if name == "pod-a" => {
            return Err(ApiError::conflict(format!(
                "port {name:?} is pod default/web-0's interface (container c1): the CNI plugin's DEL removes it"
            )))
        }
        Request::DelPort(name) => Reply::Done { message: format!("port {name:?} removed") },
        Request::ListNeighbors => Reply::Neighbors(vec![NeighborInfo {
            ip: "198.18.0.2".into(),
            mac: "02:00:00:00:00:02".into(),
            port: "uplink".into(),
        }]),
        Request::SetPeer(name, spec) if spec.underlay_ip == "198.18.0.1" => {
            return Err(ApiError::invalid(format!(
                "peer[1] ({name:?}).underlay_ip: 198.18.0.1 is this node's own underlay address"
            )))
        }
        Request::SetPeer(name, _) => Reply::Done { message: format!("peer {name:?} added") },
        Request::DelPeer(name) if name != "n2" => {
            return Err(ApiError::not_found(format!("no peer {name:?}")))
        }
        Request::DelPeer(name) => Reply::Done { message: format!("peer {name:?} removed") },
        Request::ListQos => Reply::Qos(vec![QosPortInfo {
            port: "uplink".into(),
            backlog: 3,
            classes: vec![
                QosClassInfo {
                    name: "node".into(),
                    parent: None,
                    ports: vec![],
                    rate_bps: 300_000_000,
                    ceil_bps: 300_000_000,
                    burst_bytes: 150_000,
                    rate_burst_bytes: 150_000,
                    priority: 0,
                    weight: 1,
                    pps: None,
                    mpu: 0,
                    mode: "shape".into(),
                    queue_limit: 512,
                    sent_bytes: 3000,
                    sent_packets: 3,
                    queued_packets: 0,
                    queued_bytes: 0,
                    drops: BTreeMap::new(),
                    borrowed_bytes: 0,
                    lent_bytes: 0,
                },
                QosClassInfo {
                    name: "pod-a".into(),
                    parent: Some("node".into()),
                    ports: vec!["pod-a".into()],
                    rate_bps: 150_000_000,
                    ceil_bps: 1_500_000_000,
                    priority: 1,
                    weight: 2,
                    pps: Some(1000),
                    mpu: 64,
                    mode: "police".into(),
                    queue_limit: 512,
                    burst_bytes: 15_000,
                    rate_burst_bytes: 15_000,
                    queued_packets: 3,
                    drops: [("policed".to_string(), 7)].into(),
                    borrowed_bytes: 1000,
                    ..Default::default()
                },
            ],
        }]),
        Request::SetQosClass(name, upd) if upd.ceil.as_deref() == Some("1M") => {
            return Err(ApiError::invalid(format!(
                "qos_class[1] ({name:?}).ceil: 1000000 is below the rate 150000000 (the guarantee)"
            )))
        }
        Request::SetQosClass(name, _) => {
            Reply::Done { message: format!("QoS class {name:?} changed") }
        }
        Request::AddQosClass(_) => Reply::Done { message: "QoS class added".into() },
        Request::DelQosClass(name) if name == "pod-a" => {
            return Err(ApiError::conflict(format!(
                "QoS class {name:?} is named by port(s) [\"pod-a\"] (qos_class or qos_root)"
            )))
        }
        Request::DelQosClass(name) => Reply::Done { message: format!("QoS class {name:?} removed") },
        Request::Capture(c) if c.port != "pod-a" => {
            return Err(ApiError::not_found(format!("unknown port {:?}", c.port)))
        }
        Request::Capture(c) => Reply::Capture(CaptureResult {
            port: c.port.clone(),
            direction: c.direction.clone().unwrap_or_default(),
            snaplen: 64,
            stopped: "count".into(),
            not_captured: 3,
            packets: vec![
                CapturedPacket { ts_ns: 1_000_000_001_000, len: 98, data_hex: "02".repeat(64) },
                CapturedPacket { ts_ns: 1_000_000_002_000, len: 60, data_hex: "ff".repeat(60) },
            ],
        }),
        Request::ListFlowCache => Reply::FlowCache(vec![CachedFlow {
            worker: 0,
            in_port: "pod-a".into(),
            vlan: 10,
            src_mac: "02:00:00:00:00:01".into(),
            dst_mac: "02:00:00:00:00:02".into(),
            action: "output:uplink".into(),
            hits: 41,
        }]),
        Request::ListFlows => Reply::Flows(vec![FlowRuleInfo {
            rule: FlowRule {
                name: "no-icmp".into(),
                priority: 100,
                in_port: Some("pod-a".into()),
                proto: Some("icmp".into()),
                action: "drop".into(),
                ..Default::default()
            },
            packets: 5,
            bytes: 490,
            meter_drops: 0,
        }]),
        Request::AddFlow(r) if r.vlan == Some(5000) => {
            return Err(ApiError::invalid(format!(
                "flow[0] ({:?}).vlan: VLAN 5000 is out of range 1..=4094",
                r.name
            )))
        }
        Request::AddFlow(r) => Reply::Done { message: format!("flow rule {:?} added", r.name) },
        Request::DelFlow(name) => Reply::Done { message: format!("flow rule {name:?} removed") },
        Request::Trace(t) if t.in_port != "pod-a" => {
            return Err(ApiError::not_found(format!("unknown port {:?}", t.in_port)))
        }
        Request::Trace(_) => {
            let step = |stage: &str, detail: &str| TraceStep {
                stage: stage.into(),
                detail: detail.into(),
            };
            Reply::Trace(TraceResult {
                frame_hex: "0200000000020200000000010800".into(),
                steps: vec![
                    step("parse", "60 bytes, 02:00:00:00:00:01 -> 02:00:00:00:00:02, untagged"),
                    step("vlan", "untagged frame on pod-a (access VLAN 10): VLAN 10"),
                    step("l2", "destination 02:00:00:00:00:02 on uplink; output to uplink"),
                    step("output", "uplink (trunk 10,20,30-32 native 1): push 802.1Q tag VID 10"),
                ],
                verdict: "output to uplink (push VID 10)".into(),
                outputs: vec!["uplink".into()],
                drop_reason: None,
            })
        }
    })
}

struct Daemon {
    /// Serves the socket on its own threads while the test thread runs the binary.
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    path: PathBuf,
    fake: Arc<Fake>,
}

impl Daemon {
    fn start() -> Daemon {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vswitchd.sock");
        let fake = Arc::new(Fake { log: Mutex::new(Vec::new()) });
        let listener = ApiListener::bind(&path, 0o600, None).unwrap();
        let backend: Arc<dyn Backend> = fake.clone();
        runtime.spawn(listener.serve(backend, std::future::pending()));
        Daemon { _runtime: runtime, _dir: dir, path, fake }
    }

    fn log(&self) -> Vec<Request> {
        self.fake.log.lock().unwrap().clone()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.path, args)
    }
}

fn ctl_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("VSWITCH_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

#[test]
fn show_ports_table() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&["show", "ports"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "IFACE", "KIND", "WORKER", "MODE", "VLANS", "MTU", "STATE", "RX-PKTS",
            "TX-PKTS", "DROPS"
        ]
    );
    assert!(lines[1].starts_with("pod-a   veth-pod-a   afxdp native copy"), "{out}");
    assert!(lines[1].contains(" access  10 "), "{out}");
    assert!(lines[2].contains(" trunk   10,20,30-32 (native 1)  1500  down "), "{out}");
    assert!(lines[1].ends_with("1234     1200      7"), "{out}");
    assert_eq!(d.log(), vec![Request::ListPorts]);
}

#[test]
fn json_prints_the_reply() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&["--json", "show", "ports"]));
    let ports: Vec<PortInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(ports, vec![port("pod-a", false), port("uplink", true)]);

    // --json is global: it may come after the command too.
    let out = ok(&d.ctl(&["fdb", "flush", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!({"message": "flushed 2 entries"}));

    let out = ok(&d.ctl(&["show", "drops", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["reason"], "no_buffer");
    assert_eq!(v[0]["count"], 2);
}

#[test]
fn show_port_explains_drops() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&["show", "port", "pod-a"]));
    assert!(out.starts_with("port pod-a (id 1)\n"), "{out}");
    assert!(out.contains("  rx         1234 packets, 99000 bytes\n"), "{out}");
    assert!(out.contains("drops by reason:"), "{out}");
    assert!(
        out.contains("  vlan_not_allowed      5  tagged with a VLAN the port does not carry"),
        "{out}"
    );
    assert!(out.contains("  no_buffer             2  the buffer pool was empty"), "{out}");
    assert_eq!(d.log(), vec![Request::GetPort("pod-a".into()), Request::DropReasons]);
}

#[test]
fn daemon_errors_exit_1_with_the_message() {
    let d = Daemon::start();
    let o = d.ctl(&["show", "port", "pod-x"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: unknown port \"pod-x\"\n");
    assert_eq!(stdout(&o), "");

    let o = d.ctl(&["fdb", "add", "--vlan", "5000", "--mac", "02:00:00:00:00:09", "--port", "p"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: VLAN 5000 out of range 1..=4094\n");
}

#[test]
fn not_running_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vswitchd.sock");
    let o = ctl_at(&path, &["status"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        stderr(&o),
        format!("error: vswitchd is not running (no socket at {})\n", path.display())
    );
}

#[test]
fn socket_from_the_environment() {
    let d = Daemon::start();
    let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("status")
        .env("VSWITCH_SOCKET", &d.path)
        .output()
        .unwrap();
    let out = ok(&o);
    assert_eq!(
        out,
        "vswitchd 0.1.0\nuptime       1h 2m 5s\nports        2\nworkers      1\n\
         fdb entries  3 of 8192\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = Daemon::start();
    for args in [
        &["show"][..],
        &["port", "set", "pod-a"],
        &["port", "set", "pod-a", "--access", "10", "--trunk", "10"],
        &["fdb", "add", "--vlan", "10"],
        &["show", "fdb", "--vlan", "ten"],
    ] {
        let o = d.ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(d.log().is_empty());
}

#[test]
fn help_documents_exit_codes() {
    let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl")).arg("--help").output().unwrap();
    let out = ok(&o);
    assert!(out.contains("Exit codes:"), "{out}");
    assert!(out.contains("3  vswitchd is not running"), "{out}");
}

#[test]
fn changes_send_the_right_requests() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&[
        "fdb",
        "add",
        "--vlan",
        "10",
        "--mac",
        "02:00:00:00:00:09",
        "--port",
        "pod-a",
    ]));
    assert_eq!(out, "added 02:00:00:00:00:09\n");
    assert_eq!(
        ok(&d.ctl(&["fdb", "del", "--vlan", "10", "--mac", "02:00:00:00:00:09"])),
        "deleted 02:00:00:00:00:09\n"
    );
    ok(&d.ctl(&["fdb", "flush", "--port", "pod-a", "--vlan", "10"]));
    let o = d.ctl(&[
        "port",
        "set",
        "uplink",
        "--trunk",
        "10,20,30-32",
        "--native",
        "1",
        "--mtu",
        "9000",
        "--up",
    ]);
    assert_eq!(o.status.code(), Some(1), "the fake knows no uplink to update");
    ok(&d.ctl(&["show", "fdb", "--vlan", "10", "--port", "pod-a"]));
    assert_eq!(
        d.log(),
        vec![
            Request::AddStaticMac(StaticMac {
                vlan: 10,
                mac: "02:00:00:00:00:09".into(),
                port: "pod-a".into()
            }),
            Request::DelMac { vlan: 10, mac: "02:00:00:00:00:09".into() },
            Request::FlushFdb { port: Some("pod-a".into()), vlan: Some(10) },
            Request::UpdatePort(
                "uplink".into(),
                PortUpdate {
                    up: Some(true),
                    mode: Some("trunk".into()),
                    allowed_vlans: Some(vec![10, 20, 30, 31, 32]),
                    native_vlan: Some(1),
                    mtu: Some(9000),
                    vlan: None,
                }
            ),
            Request::ListFdb { vlan: Some(10), port: Some("pod-a".into()) },
        ]
    );
}

#[test]
fn other_tables() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d.ctl(&["show", "fdb"])),
        "VLAN  MAC                PORT    TYPE       AGE\n  \
         10  02:00:00:00:00:01  pod-a   learned  1m 5s\n  \
         20  02:00:00:00:00:02  uplink  static       -\n"
    );
    assert_eq!(ok(&d.ctl(&["show", "vlans"])), "VLAN  PORTS\n  10  pod-a,uplink\n  20  uplink\n");
    assert_eq!(
        ok(&d.ctl(&["show", "workers"])),
        "ID  CORE  IDLE       PORTS         BUSY%  NS/PKT  PACKETS  POOL-FREE\n \
         0     3  busy-poll  pod-a,uplink   12.3      88     2434  4000/4096\n"
    );
    assert_eq!(
        ok(&d.ctl(&["show", "drops"])),
        "PORT   REASON            COUNT  MEANING\n\
         pod-a  no_buffer             2  the buffer pool was empty\n\
         pod-a  vlan_not_allowed      5  tagged with a VLAN the port does not carry\n"
    );
    assert_eq!(ok(&d.ctl(&["metrics"])), "# TYPE vswitch_up gauge\nvswitch_up 1\n");
}

#[test]
fn trace_prints_each_stage_and_the_action() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&[
        "trace",
        "--in-port",
        "pod-a",
        "--src",
        "02:00:00:00:00:01",
        "--dst",
        "02:00:00:00:00:02",
        "--ip",
        "10.0.0.1,10.0.0.2",
        "--proto",
        "udp",
        "--dport",
        "53",
    ]));
    assert_eq!(
        out,
        "parse   : 60 bytes, 02:00:00:00:00:01 -> 02:00:00:00:00:02, untagged\n\
         vlan    : untagged frame on pod-a (access VLAN 10): VLAN 10\n\
         l2      : destination 02:00:00:00:00:02 on uplink; output to uplink\n\
         output  : uplink (trunk 10,20,30-32 native 1): push 802.1Q tag VID 10\n\
         action  : output to uplink (push VID 10)\n"
    );

    let out = ok(&d.ctl(&["trace", "--in-port", "pod-a", "--hex", "02 00 00", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outputs"], serde_json::json!(["uplink"]));
    assert_eq!(v["steps"][2]["stage"], "l2");

    let o = d.ctl(&["trace", "--in-port", "pod-x", "--hex", "00"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: unknown port \"pod-x\"\n");

    let o = d.ctl(&["trace", "--in-port", "pod-a", "--hex", "00", "--src", "02:00:00:00:00:01"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    assert_eq!(
        d.log(),
        vec![
            Request::Trace(TraceRequest {
                in_port: "pod-a".into(),
                src_mac: Some("02:00:00:00:00:01".into()),
                dst_mac: Some("02:00:00:00:00:02".into()),
                src_ip: Some("10.0.0.1".into()),
                dst_ip: Some("10.0.0.2".into()),
                proto: Some("udp".into()),
                dst_port: Some(53),
                ..Default::default()
            }),
            Request::Trace(TraceRequest {
                in_port: "pod-a".into(),
                frame_hex: Some("02 00 00".into()),
                ..Default::default()
            }),
            Request::Trace(TraceRequest {
                in_port: "pod-x".into(),
                frame_hex: Some("00".into()),
                ..Default::default()
            }),
        ]
    );
}

#[test]
fn protocol_errors_exit_4() {
    // Something that accepts and hangs up without speaking HTTP.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vswitchd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        drop(stream);
    });
    let o = ctl_at(&path, &["status"]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: protocol error talking to vswitchd: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn show_pods_lists_the_cni_attachments() {
    let server = Daemon::start();
    let out = server.ctl(&["show", "pods"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("default/web-0")
            && text.contains("0123456789ab")
            && text.contains("10.244.1.5/24"),
        "{text}"
    );
}

#[test]
fn top_prints_one_sample_per_interval_and_stops_after_count() {
    let server = Daemon::start();
    let out = server.ctl(&["--json", "top", "--interval", "0.1", "--count", "2"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let samples: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(samples.len(), 2);
    // The fake's counters do not move: every rate is zero.
    assert_eq!(samples[0]["ports"][0]["port"], "pod-a");
    assert_eq!(samples[1]["ports"][1]["rx_pps"], 0.0);
    // The shaped uplink's classes, with their configured rates.
    let class = &samples[0]["classes"][1];
    assert_eq!((&class["port"], &class["class"]), (&"uplink".into(), &"pod-a".into()));
    assert_eq!(class["sent_bps"], 0.0);
    assert_eq!(class["rate_bps"], 150_000_000);
    let table = ok(&server.ctl(&["top", "--interval", "0.1", "--count", "1"]));
    assert!(table.contains("SHAPED-PORT  CLASS"), "{table}");
    let out = server.ctl(&["top", "--interval", "0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn routing_tables_and_peer_commands() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d.ctl(&["show", "routes"])),
        "PREFIX         VIA           MODE    NEXT-HOP      ORIGIN\n\
         10.244.1.0/24  local         local   -             pod-cidr\n\
         0.0.0.0/0      198.18.0.254  direct  198.18.0.254  static\n\
         10.244.2.0/24  n2            direct  198.18.0.2    pod-cidr\n"
    );
    assert_eq!(
        ok(&d.ctl(&["show", "neighbors"])),
        "IP          MAC                PORT\n198.18.0.2  02:00:00:00:00:02  uplink\n"
    );
    let out = ok(&d.ctl(&["show", "peers"]));
    assert!(out.starts_with("NAME  UNDERLAY-IP  POD-CIDR       MODE    NEXT-HOP  "), "{out}");
    assert!(out.contains("n2    198.18.0.2   10.244.2.0/24  direct  198.18.0.2  (unresolved)"));
    let out = ok(&d.ctl(&["show", "node"]));
    assert!(out.starts_with("node n1\n  pod cidr         10.244.1.0/24\n"), "{out}");
    assert!(out.contains("  underlay gateway -\n"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&d.ctl(&["--json", "show", "peers"]))).unwrap();
    assert_eq!(v[0]["next_hop_mac"], serde_json::Value::Null);
    assert_eq!(v[0]["configured"], "auto");

    let add = ["peer", "add", "n3", "--underlay-ip", "198.18.0.3", "--pod-cidr", "10.244.3.0/24"];
    assert_eq!(ok(&d.ctl(&[&add[..], &["--mode", "vxlan"]].concat())), "peer \"n3\" added\n");
    let o =
        d.ctl(&["peer", "add", "n4", "--underlay-ip", "198.18.0.1", "--pod-cidr", "10.0.0.0/8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("own underlay address"), "{}", stderr(&o));
    assert_eq!(ok(&d.ctl(&["peer", "del", "n2"])), "peer \"n2\" removed\n");
    let o = d.ctl(&["peer", "del", "n9"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: no peer \"n9\"\n");
    assert_eq!(d.ctl(&["peer", "add", "n5", "--pod-cidr", "10.5.0.0/16"]).status.code(), Some(2));

    assert_eq!(
        d.log(),
        vec![
            Request::ListRoutes,
            Request::ListNeighbors,
            Request::ListPeers,
            Request::GetNode,
            Request::ListPeers,
            Request::SetPeer(
                "n3".into(),
                PeerSpec {
                    underlay_ip: "198.18.0.3".into(),
                    pod_cidr: "10.244.3.0/24".into(),
                    mode: Some("vxlan".into()),
                    vtep_mac: None,
                }
            ),
            Request::SetPeer(
                "n4".into(),
                PeerSpec {
                    underlay_ip: "198.18.0.1".into(),
                    pod_cidr: "10.0.0.0/8".into(),
                    ..Default::default()
                }
            ),
            Request::DelPeer("n2".into()),
            Request::DelPeer("n9".into()),
        ]
    );
}

#[test]
fn port_and_route_add_del_send_the_typed_requests() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&[
        "port",
        "add",
        "vm1",
        "--type",
        "afpacket",
        "--interface",
        "veth-vm1",
        "--trunk",
        "10,20-21",
        "--native",
        "1",
        "--worker",
        "0",
        "--down",
    ]));
    assert!(out.starts_with("NAME "), "{out}");
    assert!(out.contains("vm1 "), "{out}");
    let o = d.ctl(&["port", "add", "vm1", "--access", "5000"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: port[2] (\"vm1\").vlan: 5000 is out of range 1..=4094\n");
    // clap refuses what the API never sees: both VLAN modes at once.
    assert_eq!(
        d.ctl(&["port", "add", "vm2", "--access", "5", "--trunk", "10"]).status.code(),
        Some(2)
    );
    assert_eq!(ok(&d.ctl(&["port", "del", "vm1"])), "port \"vm1\" removed\n");
    let o = d.ctl(&["port", "del", "pod-a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the CNI plugin's DEL removes it"), "{}", stderr(&o));

    assert_eq!(
        ok(&d.ctl(&["route", "add", "0.0.0.0/0", "--via", "198.18.0.254"])),
        "route 0.0.0.0/0 added\n"
    );
    let o = d.ctl(&["route", "add", "10.244.1.128/25", "--peer", "n2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is inside this node's pod_cidr"), "{}", stderr(&o));
    // Exactly one target.
    assert_eq!(d.ctl(&["route", "add", "10.9.0.0/16"]).status.code(), Some(2));
    assert_eq!(
        d.ctl(&["route", "add", "10.9.0.0/16", "--via", "198.18.0.9", "--peer", "n2"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(ok(&d.ctl(&["route", "del", "0.0.0.0/0"])), "route 0.0.0.0/0 removed\n");
    let o = d.ctl(&["route", "del", "10.9.0.0/16"]);
    assert_eq!(o.status.code(), Some(1));

    let spec = |v: serde_json::Value| PortSpec(v.as_object().unwrap().clone());
    assert_eq!(
        d.log(),
        vec![
            Request::AddPort(spec(serde_json::json!({
                "name": "vm1", "type": "afpacket", "interface": "veth-vm1", "worker": 0,
                "mode": "trunk", "allowed_vlans": [10, 20, 21], "native_vlan": 1, "up": false
            }))),
            Request::AddPort(spec(serde_json::json!({"name": "vm1", "vlan": 5000}))),
            Request::DelPort("vm1".into()),
            Request::DelPort("pod-a".into()),
            Request::AddRoute(RouteSpec {
                prefix: "0.0.0.0/0".into(),
                via: Some("198.18.0.254".into()),
                peer: None
            }),
            Request::AddRoute(RouteSpec {
                prefix: "10.244.1.128/25".into(),
                via: None,
                peer: Some("n2".into())
            }),
            Request::DelRoute("0.0.0.0/0".into()),
            Request::DelRoute("10.9.0.0/16".into()),
        ]
    );
}

#[test]
fn qos_table_and_live_class_changes() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&["show", "qos"]));
    assert!(
        out.starts_with("port uplink (backlog 3 packets)\nCLASS  PARENT  PORTS  RATE  CEIL"),
        "{out}"
    );
    assert!(
        out.contains(
            "pod-a  node    pod-a  150M  1.50G  1     2       15000/15000       police pps<=1000"
        ),
        "{out}"
    );
    assert!(out.contains("policed=7"), "{out}");
    // A leaf's queue against its bound; an inner class has no queue of its own.
    assert!(out.contains(" 3/512 "), "{out}");
    assert!(!out.contains("0/512"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&d.ctl(&["--json", "show", "qos"]))).unwrap();
    assert_eq!(v[0]["classes"][1]["drops"]["policed"], 7);
    assert_eq!(
        ok(&d.ctl(&["qos", "set", "pod-a", "--rate", "100M", "--priority", "2"])),
        "QoS class \"pod-a\" changed\n"
    );
    let o = d.ctl(&["qos", "set", "pod-a", "--ceil", "1M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("(\"pod-a\").ceil: 1000000 is below"), "{}", stderr(&o));
    // The other settings, and removing the pps limit.
    let o = d.ctl(&[
        "qos",
        "set",
        "pod-a",
        "--burst",
        "30000",
        "--mpu",
        "128",
        "--queue-limit",
        "256",
        "--mode",
        "shape",
        "--pps",
        "none",
        "--pps-burst",
        "9",
    ]);
    assert_eq!(ok(&o), "QoS class \"pod-a\" changed\n");
    // Nothing to change is a usage error, and so is an unknown mode.
    assert_eq!(d.ctl(&["qos", "set", "pod-a"]).status.code(), Some(2));
    assert_eq!(d.ctl(&["qos", "set", "pod-a", "--mode", "fast"]).status.code(), Some(2));
    // A class added with its settings under the name and parent given; removed; refused.
    let o = d.ctl(&["qos", "add", "team-a", "--parent", "node", "--rate", "100M", "--weight", "3"]);
    assert_eq!(ok(&o), "QoS class added\n");
    assert_eq!(ok(&d.ctl(&["qos", "del", "team-a"])), "QoS class \"team-a\" removed\n");
    let o = d.ctl(&["qos", "del", "pod-a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("named by port(s) [\"pod-a\"]"), "{}", stderr(&o));
    // A class needs at least a setting (its rate).
    assert_eq!(d.ctl(&["qos", "add", "team-b"]).status.code(), Some(2));
    assert_eq!(
        d.log(),
        vec![
            Request::ListQos,
            Request::ListQos,
            Request::SetQosClass(
                "pod-a".into(),
                QosClassUpdate {
                    rate: Some("100M".into()),
                    priority: Some(2),
                    ..Default::default()
                }
            ),
            Request::SetQosClass(
                "pod-a".into(),
                QosClassUpdate { ceil: Some("1M".into()), ..Default::default() }
            ),
            Request::SetQosClass(
                "pod-a".into(),
                QosClassUpdate {
                    pps: Some("none".into()),
                    pps_burst: Some(9),
                    burst: Some(30_000),
                    mpu: Some(128),
                    queue_limit: Some(256),
                    mode: Some("shape".into()),
                    ..Default::default()
                }
            ),
            Request::AddQosClass(QosClassSpec(
                serde_json::json!({"name": "team-a", "parent": "node", "rate": "100M", "weight": 3})
                    .as_object()
                    .unwrap()
                    .clone()
            )),
            Request::DelQosClass("team-a".into()),
            Request::DelQosClass("pod-a".into()),
        ]
    );
}

#[test]
fn capture_writes_a_pcap_and_reports_what_it_missed() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.pcap");
    let f = file.to_str().unwrap();
    let out = ok(&d.ctl(&["capture", "pod-a", "-c", "2", "--direction", "rx", "-w", f]));
    assert_eq!(out, "2 packets captured, 3 not captured: ring full (stopped: count)\n");
    let pcap = std::fs::read(&file).unwrap();
    assert_eq!(&pcap[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(u32::from_le_bytes(pcap[16..20].try_into().unwrap()), 64, "snaplen");
    assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().unwrap()), 1, "Ethernet");
    // First record: 1000 s + 1 µs, 64 of 98 bytes.
    let rec = |at: usize, i: usize| {
        u32::from_le_bytes(pcap[at + 4 * i..at + 4 * i + 4].try_into().unwrap())
    };
    assert_eq!((rec(24, 0), rec(24, 1), rec(24, 2), rec(24, 3)), (1000, 1, 64, 98));
    let second = 24 + 16 + 64;
    assert_eq!((rec(second, 1), rec(second, 2), rec(second, 3)), (2, 60, 60));
    assert_eq!(pcap.len(), second + 16 + 60);
    // To standard output: the pcap alone there, the summary on stderr.
    let o = d.ctl(&["capture", "pod-a", "-w", "-"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, pcap);
    assert!(stderr(&o).starts_with("2 packets captured"));
    // No file and no --json: refused before asking; unknown port: the daemon's message.
    assert_eq!(d.ctl(&["capture", "pod-a"]).status.code(), Some(1));
    let o = d.ctl(&["capture", "pod-x", "-w", f]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: unknown port \"pod-x\"\n");
    assert_eq!(
        d.log(),
        vec![
            Request::Capture(CaptureRequest {
                port: "pod-a".into(),
                direction: Some("rx".into()),
                count: Some(2),
                ..Default::default()
            }),
            Request::Capture(CaptureRequest {
                port: "pod-a".into(),
                direction: Some("both".into()),
                ..Default::default()
            }),
            Request::Capture(CaptureRequest {
                port: "pod-x".into(),
                direction: Some("both".into()),
                ..Default::default()
            }),
        ]
    );
}

#[test]
fn flow_cache_and_flow_rules() {
    let d = Daemon::start();
    let out = ok(&d.ctl(&["show", "flows"]));
    assert!(out.starts_with("WORKER  IN-PORT  VLAN  SRC-MAC"), "{out}");
    assert!(
        out.contains("pod-a      10  02:00:00:00:00:01  02:00:00:00:00:02  output:uplink    41"),
        "{out}"
    );
    let out = ok(&d.ctl(&["flow", "dump"]));
    assert!(
        out.contains("100  no-icmp  in_port=pod-a,proto=icmp  drop           5    490"),
        "{out}"
    );
    assert_eq!(
        ok(&d.ctl(&[
            "flow",
            "add",
            "no-icmp",
            "--priority",
            "100",
            "--in-port",
            "pod-a",
            "--proto",
            "icmp",
            "--action",
            "drop"
        ])),
        "flow rule \"no-icmp\" added\n"
    );
    let o = d.ctl(&["flow", "add", "v", "--vlan", "5000", "--action", "drop"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("(\"v\").vlan: VLAN 5000 is out of range"), "{}", stderr(&o));
    assert_eq!(ok(&d.ctl(&["flow", "del", "no-icmp"])), "flow rule \"no-icmp\" removed\n");
    assert_eq!(d.ctl(&["flow", "add", "x"]).status.code(), Some(2), "--action is required");
    let log = d.log();
    assert_eq!(log[0], Request::ListFlowCache);
    assert_eq!(log[1], Request::ListFlows);
    assert_eq!(
        log[2],
        Request::AddFlow(FlowRule {
            name: "no-icmp".into(),
            priority: 100,
            in_port: Some("pod-a".into()),
            proto: Some("icmp".into()),
            action: "drop".into(),
            ..Default::default()
        })
    );
    assert_eq!(log[4], Request::DelFlow("no-icmp".into()));
}
