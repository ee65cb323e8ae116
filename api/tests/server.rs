//! The server and the client together, over a Unix socket in a temporary directory, with a
//! fake backend that records what it was asked and answers from a script.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use vswitch_api::{
    ApiError, ApiListener, Backend, Bandwidth, Client, ClientError, DropReasonInfo, ErrorKind,
    FdbEntry, NeighborInfo, NodeInfo, PeerInfo, PeerSpec, PodAttachment, PortInfo, PortStats,
    PortUpdate, QosClassInfo, QosClassUpdate, QosPortInfo, Reply, Request, Response, RouteInfo,
    StaticMac, Status, TraceRequest, TraceResult, TraceStep, VlanInfo, WorkerInfo,
};

type Script = dyn Fn(&Request) -> Response + Send + Sync;

/// Records every request, answers with `script`.
struct Fake {
    log: Mutex<Vec<Request>>,
    script: Box<Script>,
}

impl Backend for Fake {
    fn call(&self, request: Request) -> Response {
        self.log.lock().unwrap().push(request.clone());
        (self.script)(&request)
    }
}

struct Server {
    _dir: tempfile::TempDir,
    path: PathBuf,
    fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(script: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Server {
        Server::start_with(0o660, None, script)
    }

    fn start_with(
        mode: u32,
        group: Option<u32>,
        script: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("vswitchd.sock");
        let fake = Arc::new(Fake { log: Mutex::new(Vec::new()), script: Box::new(script) });
        let listener = ApiListener::bind(&path, mode, group).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let backend: Arc<dyn Backend> = fake.clone();
        let task = tokio::spawn(listener.serve(backend, async {
            let _ = stopped.await;
        }));
        Server { _dir: dir, path, fake, stop: Some(stop), task }
    }

    fn client(&self) -> Client {
        Client::new(&self.path)
    }

    fn log(&self) -> Vec<Request> {
        self.fake.log.lock().unwrap().clone()
    }

    /// Stop serving; the temporary directory is handed back to be looked at.
    async fn stop(self) -> tempfile::TempDir {
        self.stop.unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
        self._dir
    }
}

fn port(name: &str) -> PortInfo {
    PortInfo {
        id: 1,
        name: name.into(),
        interface: "veth1".into(),
        kind: "afxdp native copy".into(),
        worker: 0,
        queues: 1,
        up: true,
        mode: "access".into(),
        vlan: Some(10),
        allowed_vlans: vec![],
        native_vlan: None,
        mtu: 1500,
        stats: PortStats {
            rx_packets: 5,
            rx_bytes: 500,
            tx_packets: 4,
            tx_bytes: 400,
            dropped: 2,
            drops: BTreeMap::from([("vlan_not_allowed".to_string(), 2)]),
        },
    }
}

/// The natural reply for each request.
fn canned(request: &Request) -> Response {
    Ok(match request {
        Request::Status => Reply::Status(Status {
            version: "0.1.0".into(),
            uptime_secs: 42,
            ports: 1,
            workers: 1,
            fdb_entries: 3,
            fdb_max: 8192,
        }),
        Request::ListPorts => Reply::Ports(vec![port("p1"), port("p2")]),
        Request::GetPort(name) | Request::UpdatePort(name, _) => Reply::Port(port(name)),
        Request::ListFdb { .. } => Reply::Fdb(vec![FdbEntry {
            vlan: 10,
            mac: "02:00:00:00:00:01".into(),
            port: "p1".into(),
            is_static: false,
            age_secs: 7,
        }]),
        Request::AddStaticMac(_) => Reply::Done { message: "added".into() },
        Request::DelMac { .. } => Reply::Done { message: "deleted".into() },
        Request::FlushFdb { .. } => Reply::Done { message: "flushed 3 entries".into() },
        Request::ListVlans => Reply::Vlans(vec![VlanInfo { vlan: 10, ports: vec!["p1".into()] }]),
        Request::ListWorkers => Reply::Workers(vec![WorkerInfo {
            id: 0,
            core: Some(2),
            idle: "busy-poll".into(),
            ports: vec!["p1".into()],
            iterations: 1000,
            packets: 10,
            busy_percent: 1.5,
            ns_per_packet: Some(80.0),
            pool_free: 4000,
            pool_frames: 4096,
        }]),
        Request::DropReasons => Reply::DropReasons(vec![DropReasonInfo {
            name: "vlan_not_allowed".into(),
            help: "tagged with a VLAN the port does not carry".into(),
        }]),
        Request::Metrics => Reply::Metrics("# TYPE vswitch_rx_packets counter\n".into()),
        Request::Trace(t) => Reply::Trace(TraceResult {
            frame_hex: "ffffffffffff".into(),
            steps: vec![TraceStep { stage: "parse".into(), detail: "60 bytes".into() }],
            verdict: format!("flood from {}", t.in_port),
            outputs: vec!["p2".into()],
            drop_reason: None,
        }),
        Request::AttachPod(pod) => Reply::Port(port(&pod.host_interface)),
        Request::DetachPod { .. } => Reply::Done { message: "detached".into() },
        Request::ListPods => Reply::Pods(vec![pod_attachment("c1")]),
        Request::GetNode => Reply::Node(NodeInfo {
            name: "n1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            gateway: "10.244.1.1".into(),
            router_mac: "0a:58:c6:12:00:01".into(),
            pod_vlan: 1,
            underlay_ip: "198.18.0.1/24".into(),
            underlay_gateway: Some("198.18.0.254".into()),
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
        Request::SetPeer(name, _) => Reply::Done { message: format!("peer {name:?} added") },
        Request::DelPeer(name) => Reply::Done { message: format!("peer {name:?} removed") },
        Request::ListRoutes => Reply::Routes(vec![RouteInfo {
            prefix: "10.244.2.0/24".into(),
            via: "n2".into(),
            mode: "direct".into(),
            next_hop: Some("198.18.0.2".into()),
            origin: "pod-cidr".into(),
        }]),
        Request::ListNeighbors => Reply::Neighbors(vec![NeighborInfo {
            ip: "198.18.0.2".into(),
            mac: "02:00:00:00:00:02".into(),
            port: "uplink".into(),
        }]),
        Request::ListQos => Reply::Qos(vec![QosPortInfo {
            port: "uplink".into(),
            backlog: 3,
            classes: vec![QosClassInfo {
                name: "pod-a".into(),
                parent: Some("node".into()),
                ports: vec!["pod-a".into()],
                rate_bps: 150_000_000,
                ceil_bps: 300_000_000,
                burst_bytes: 150_000,
                rate_burst_bytes: 75_000,
                priority: 0,
                weight: 1,
                pps: None,
                mpu: 0,
                mode: "shape".into(),
                queue_limit: 512,
                sent_bytes: 1000,
                sent_packets: 1,
                queued_packets: 3,
                queued_bytes: 4500,
                drops: [("queue_full".to_string(), 2)].into(),
                borrowed_bytes: 0,
                lent_bytes: 0,
            }],
        }]),
        Request::SetQosClass(name, _) => Reply::Done { message: format!("class {name:?} changed") },
        Request::AddQosClass(spec) => {
            Reply::Done { message: format!("class {:?} added", spec.0["name"]) }
        }
        Request::DelQosClass(name) => Reply::Done { message: format!("class {name:?} removed") },
        Request::Capture(c) => Reply::Capture(vswitch_api::CaptureResult {
            port: c.port.clone(),
            direction: "both".into(),
            snaplen: 256,
            stopped: "count".into(),
            not_captured: 0,
            packets: vec![vswitch_api::CapturedPacket {
                ts_ns: 1,
                len: 2,
                data_hex: "abcd".into(),
            }],
        }),
        Request::ListFlowCache => Reply::FlowCache(vec![vswitch_api::CachedFlow {
            in_port: "pod-a".into(),
            action: "flood".into(),
            ..Default::default()
        }]),
        Request::ListFlows => Reply::Flows(vec![vswitch_api::FlowRuleInfo {
            rule: vswitch_api::FlowRule {
                name: "r".into(),
                action: "drop".into(),
                ..Default::default()
            },
            packets: 3,
            ..Default::default()
        }]),
        Request::AddFlow(r) => Reply::Done { message: format!("flow rule {:?} added", r.name) },
        Request::DelFlow(n) => Reply::Done { message: format!("flow rule {n:?} removed") },
        Request::AddPort(spec) => {
            Reply::Port(port(spec.0.get("name").and_then(|n| n.as_str()).unwrap_or("?")))
        }
        Request::DelPort(n) => Reply::Done { message: format!("port {n:?} removed") },
        Request::AddRoute(r) => Reply::Done { message: format!("route {} added", r.prefix) },
        Request::DelRoute(p) => Reply::Done { message: format!("route {p} removed") },
    })
}

fn pod_attachment(container_id: &str) -> PodAttachment {
    PodAttachment {
        container_id: container_id.into(),
        ifname: "eth0".into(),
        netns: "/var/run/netns/cni-1".into(),
        host_interface: "vs0123456789ab".into(),
        vlan: 1,
        mtu: 1450,
        mac: Some("02:00:00:00:00:01".into()),
        ips: vec!["10.244.1.2/24".into()],
        pod_namespace: Some("default".into()),
        pod_name: Some("web-0".into()),
        pod_uid: Some("uid-1".into()),
        cgroup_path: None,
        bandwidth: Some(Bandwidth { egress_rate: Some(1_000_000), ..Default::default() }),
        port_type: None,
    }
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::ListPorts,
        Request::GetPort("pod-a".into()),
        Request::GetPort("odd name/with?chars%".into()),
        Request::UpdatePort(
            "pod-a".into(),
            PortUpdate { up: Some(false), mtu: Some(9000), ..Default::default() },
        ),
        Request::ListFdb { vlan: None, port: None },
        Request::ListFdb { vlan: Some(10), port: Some("pod-a".into()) },
        Request::AddStaticMac(StaticMac {
            vlan: 10,
            mac: "02:00:00:00:00:01".into(),
            port: "pod-a".into(),
        }),
        Request::DelMac { vlan: 10, mac: "02:00:00:00:00:01".into() },
        Request::FlushFdb { port: None, vlan: None },
        Request::FlushFdb { port: Some("pod-a".into()), vlan: Some(20) },
        Request::ListVlans,
        Request::ListWorkers,
        Request::DropReasons,
        Request::Metrics,
        Request::Trace(TraceRequest {
            in_port: "pod-a".into(),
            src_mac: Some("02:00:00:00:00:01".into()),
            dst_mac: Some("02:00:00:00:00:02".into()),
            vlan: Some(10),
            ..Default::default()
        }),
        Request::AttachPod(pod_attachment("c1")),
        Request::DetachPod { container_id: "c1".into(), ifname: "eth0".into() },
        Request::DetachPod { container_id: "id with/slash".into(), ifname: "net%1".into() },
        Request::ListPods,
        Request::GetNode,
        Request::ListPeers,
        Request::SetPeer(
            "n2".into(),
            PeerSpec {
                underlay_ip: "198.18.0.2".into(),
                pod_cidr: "10.244.2.0/24".into(),
                ..Default::default()
            },
        ),
        Request::SetPeer(
            "odd peer/name%".into(),
            PeerSpec {
                underlay_ip: "198.19.0.3".into(),
                pod_cidr: "10.244.3.0/24".into(),
                mode: Some("vxlan".into()),
                vtep_mac: Some("02:00:00:00:00:03".into()),
            },
        ),
        Request::DelPeer("n2".into()),
        Request::ListRoutes,
        Request::ListNeighbors,
        Request::ListQos,
        Request::Capture(vswitch_api::CaptureRequest {
            port: "pod-a".into(),
            count: Some(4),
            ..Default::default()
        }),
        Request::ListFlowCache,
        Request::ListFlows,
        Request::AddFlow(vswitch_api::FlowRule {
            name: "no-icmp".into(),
            proto: Some("icmp".into()),
            action: "drop".into(),
            ..Default::default()
        }),
        Request::DelFlow("no-icmp".into()),
        Request::SetQosClass(
            "pod a".into(),
            QosClassUpdate { ceil: Some("1G".into()), weight: Some(3), ..Default::default() },
        ),
        Request::AddQosClass(vswitch_api::QosClassSpec(
            serde_json::json!({"name": "team a", "parent": "node", "rate": "10M"})
                .as_object()
                .unwrap()
                .clone(),
        )),
        Request::DelQosClass("team a".into()),
    ]
}

#[tokio::test]
async fn every_route_maps_to_the_right_request() {
    let server = Server::start(canned);
    let client = server.client();
    for request in all_requests() {
        let reply = client.call(request.clone()).await.unwrap();
        assert_eq!(reply, canned(&request).unwrap(), "{request:?}");
    }
    assert_eq!(server.log(), all_requests());
    let _ = server.stop().await;
}

#[tokio::test]
async fn bodies_are_plain_json_for_curl() {
    let server = Server::start(canned);
    let client = server.client();
    let raw = client.raw("GET", "/v1/ports", None).await.unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v[1]["name"], "p2");
    assert_eq!(v[0]["stats"]["drops"]["vlan_not_allowed"], 2);

    let raw = client.raw("POST", "/v1/fdb/flush?port=p1", None).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v, serde_json::json!({"message": "flushed 3 entries"}));

    let body = br#"{"in_port": "p1", "frame_hex": "ffffffffffff020000000001"}"#.to_vec();
    let raw = client.raw("POST", "/v1/trace", Some(body)).await.unwrap();
    assert_eq!(raw.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v["verdict"], "flood from p1");
    assert_eq!(v["steps"][0]["stage"], "parse");

    let raw = client.raw("GET", "/v1/pods", None).await.unwrap();
    assert_eq!(raw.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v[0]["container_id"], "c1");
    assert_eq!(v[0]["bandwidth"], serde_json::json!({"egress_rate": 1_000_000}));

    let raw = client.raw("DELETE", "/v1/pods/c1/eth0", None).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v, serde_json::json!({"message": "detached"}));

    let raw = client.raw("GET", "/metrics", None).await.unwrap();
    assert!(raw.content_type.unwrap().starts_with("text/plain; version=0.0.4"));
    assert_eq!(raw.body, b"# TYPE vswitch_rx_packets counter\n");
    let _ = server.stop().await;
}

#[tokio::test]
async fn errors_come_back_with_kind_and_message() {
    let server = Server::start(|request| match request {
        Request::GetPort(name) => Err(ApiError::not_found(format!("unknown port {name:?}"))),
        Request::UpdatePort(..) => Err(ApiError::invalid("VLAN 5000 out of range 1..=4094")),
        Request::AddStaticMac(_) => Err(ApiError::conflict("MAC is static on port p2")),
        Request::Status => Err(ApiError::unavailable("still starting")),
        _ => Err(ApiError::internal("boom")),
    });
    let client = server.client();
    let cases = [
        (Request::GetPort("pod-x".into()), ErrorKind::NotFound, "unknown port \"pod-x\"", 404),
        (
            Request::UpdatePort("p".into(), PortUpdate { vlan: Some(5000), ..Default::default() }),
            ErrorKind::Invalid,
            "VLAN 5000 out of range 1..=4094",
            400,
        ),
        (
            Request::AddStaticMac(StaticMac { vlan: 1, mac: "m".into(), port: "p".into() }),
            ErrorKind::Conflict,
            "MAC is static on port p2",
            409,
        ),
        (Request::Status, ErrorKind::Unavailable, "still starting", 503),
        (Request::ListVlans, ErrorKind::Internal, "boom", 500),
    ];
    for (request, kind, message, status) in cases {
        match client.call(request.clone()).await {
            Err(ClientError::Api(e)) => {
                assert_eq!((e.kind, e.message.as_str()), (kind, message));
            }
            other => panic!("{request:?}: {other:?}"),
        }
        let http = request.to_http();
        let raw = client.raw(http.method, &http.path_and_query, http.body).await.unwrap();
        assert_eq!(raw.status, status, "{request:?}");
    }
    let _ = server.stop().await;
}

#[tokio::test]
async fn bad_json_is_400_naming_the_serde_error() {
    let server = Server::start(canned);
    let client = server.client();
    let raw = client.raw("PATCH", "/v1/ports/p1", Some(b"{\"mtu\": \"big\"}".to_vec())).await;
    let raw = raw.unwrap();
    assert_eq!(raw.status, 400);
    let e = vswitch_api::wire::decode_error(&raw.body).unwrap();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.starts_with("invalid JSON body for PATCH /v1/ports/{name}"), "{e:?}");
    assert!(e.message.contains("invalid type: string \"big\", expected u16"), "{e:?}");

    let raw = client.raw("POST", "/v1/fdb", Some(b"{\"vlan\": 1}".to_vec())).await.unwrap();
    assert_eq!(raw.status, 400);
    let e = vswitch_api::wire::decode_error(&raw.body).unwrap();
    assert!(e.message.contains("missing field `mac`"), "{e:?}");

    assert!(server.log().is_empty(), "the backend saw {:?}", server.log());
    let _ = server.stop().await;
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_405() {
    let server = Server::start(canned);
    let client = server.client();
    let raw = client.raw("GET", "/v1/nope", None).await.unwrap();
    assert_eq!(raw.status, 404);
    let e = vswitch_api::wire::decode_error(&raw.body).unwrap();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::NotFound, "no such route: GET /v1/nope"));

    let raw = client.raw("DELETE", "/v1/ports", None).await.unwrap();
    assert_eq!(raw.status, 405);
    assert_eq!(raw.allow.as_deref(), Some("GET, POST"));
    let raw = client.raw("GET", "/v1/fdb/flush", None).await.unwrap();
    assert_eq!(raw.status, 405);
    assert_eq!(raw.allow.as_deref(), Some("POST"));
    assert!(server.log().is_empty());
    let _ = server.stop().await;
}

#[tokio::test]
async fn a_reply_of_the_wrong_shape_is_a_500() {
    let server = Server::start(|_| Ok(Reply::Done { message: "ok".into() }));
    match server.client().call(Request::ListPorts).await {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.kind, ErrorKind::Internal);
            assert_eq!(
                e.message,
                "vswitchd answered GET /v1/ports with a Done reply (a bug in the daemon)"
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = server.stop().await;
}

#[tokio::test]
async fn a_panicking_backend_is_a_500_and_the_server_goes_on() {
    let server = Server::start(|request| match request {
        Request::Status => panic!("backend bug"),
        other => canned(other),
    });
    let client = server.client();
    match client.call(Request::Status).await {
        Err(ClientError::Api(e)) => assert_eq!(e.kind, ErrorKind::Internal),
        other => panic!("{other:?}"),
    }
    assert!(client.call(Request::ListPorts).await.is_ok());
    let _ = server.stop().await;
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn socket_permissions_are_as_set_and_the_file_goes_at_exit() {
    let server = Server::start_with(0o660, None, canned);
    assert_eq!(mode_of(&server.path), 0o660);
    let path = server.path.clone();
    let dir = path.parent().unwrap().to_path_buf();
    let _tmp = server.stop().await;
    assert!(!path.exists(), "socket file left behind");
    // Nothing else left in the directory (the staging directory is gone).
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);

    // A group we belong to (that of a file we create), so chown works unprivileged.
    let probe = tempfile::NamedTempFile::new().unwrap();
    let gid = probe.as_file().metadata().unwrap().gid();
    let server = Server::start_with(0o600, Some(gid), canned);
    let meta = std::fs::metadata(&server.path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.gid(), gid);
    assert!(server.client().call(Request::Status).await.is_ok());
    let _ = server.stop().await;
}

#[tokio::test]
async fn daemon_not_running_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vswitchd.sock");
    match Client::new(&path).call(Request::Status).await {
        Err(e @ ClientError::DaemonNotRunning { stale: false, .. }) => {
            assert_eq!(
                e.to_string(),
                format!("vswitchd is not running (no socket at {})", path.display())
            );
        }
        other => panic!("{other:?}"),
    }

    // A socket file whose listener is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    match Client::new(&path).call(Request::Status).await {
        Err(ClientError::DaemonNotRunning { stale: true, path: p }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }

    // Binding over it removes the stale file and serves.
    let listener = ApiListener::bind(&path, 0o600, None).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(Arc::new(|r: Request| canned(&r)), async {
        let _ = stopped.await;
    }));
    assert!(Client::new(&path).call(Request::Status).await.is_ok());

    // A second daemon on the same path is refused while the first one lives.
    let e = ApiListener::bind(&path, 0o600, None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(e.to_string().contains("is vswitchd already running?"), "{e}");

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!path.exists());
}

#[tokio::test]
async fn binding_refuses_to_remove_a_non_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vswitchd.sock");
    std::fs::write(&path, "precious").unwrap();
    let e = ApiListener::bind(&path, 0o600, None).unwrap_err();
    assert!(e.to_string().contains("exists and is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

async fn tcp_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn metrics_listener_serves_only_metrics() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backend = move |request: Request| {
        log.lock().unwrap().push(request.clone());
        canned(&request)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(vswitch_api::serve_metrics(listener, Arc::new(backend), async {
        let _ = stopped.await;
    }));

    let (status, body) = tcp_get(addr, "/metrics").await;
    assert_eq!((status, body.as_str()), (200, "# TYPE vswitch_rx_packets counter\n"));
    let (status, body) = tcp_get(addr, "/v1/status").await;
    assert_eq!(status, 404);
    assert!(body.contains("serves only GET /metrics"), "{body}");
    assert_eq!(*seen.lock().unwrap(), vec![Request::Metrics]);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn call_blocking_works_outside_a_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async { Server::start(canned) });
    let reply = server.client().call_blocking(Request::ListVlans).unwrap();
    assert_eq!(reply, canned(&Request::ListVlans).unwrap());
    let _ = runtime.block_on(server.stop());
}
