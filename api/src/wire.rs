//! The one mapping between [`Request`]s / [`Reply`]s and HTTP: methods, paths, query strings and
//! bodies. The client and the server both use it, so a route is declared once.
//!
//! Pure functions, no I/O: they are usable (and tested) without the `client` or `server`
//! features.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Serialize};

use crate::types::{
    ApiError, CaptureRequest, ErrorBody, ErrorKind, FlowRule, PeerSpec, PodAttachment, PortInfo,
    PortSpec, PortUpdate, QosClassSpec, QosClassUpdate, Reply, Request, RouteSpec, StaticMac,
    TraceRequest,
};

/// Content type of JSON bodies.
pub const JSON: &str = "application/json";
/// Content type of `GET /metrics` (Prometheus text exposition format 0.0.4).
pub const METRICS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request body the server reads.
pub const MAX_BODY: usize = 1 << 20;

/// Characters escaped in a path segment (a port name or MAC): everything that would end or
/// change the segment, plus `%` itself. Non-ASCII is always escaped.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A request as HTTP: what the client sends for a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `PATCH`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Path and query string, percent-encoded, e.g. `/v1/fdb?vlan=10`.
    pub path_and_query: String,
    /// JSON body, for `PATCH /v1/ports/{name}`, `PUT /v1/peers/{name}` and the `POST`s.
    pub body: Option<Vec<u8>>,
}

/// The body of [`Reply::Done`]: `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneBody {
    message: String,
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn with_query(path: String, pairs: &[(&str, Option<String>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs {
        if let Some(value) = value {
            query.append_pair(key, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path
    }
}

fn json_body<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (string keys, no custom impls).
    serde_json::to_vec(value).expect("request bodies serialize")
}

impl Request {
    /// The HTTP request for this API request.
    pub fn to_http(&self) -> HttpRequest {
        let (method, path_and_query, body) = match self {
            Request::Status => ("GET", "/v1/status".to_string(), None),
            Request::ListPorts => ("GET", "/v1/ports".to_string(), None),
            Request::GetPort(name) => ("GET", format!("/v1/ports/{}", segment(name)), None),
            Request::UpdatePort(name, update) => {
                ("PATCH", format!("/v1/ports/{}", segment(name)), Some(json_body(update)))
            }
            Request::AddPort(spec) => ("POST", "/v1/ports".to_string(), Some(json_body(spec))),
            Request::DelPort(name) => ("DELETE", format!("/v1/ports/{}", segment(name)), None),
            Request::ListFdb { vlan, port } => (
                "GET",
                with_query(
                    "/v1/fdb".to_string(),
                    &[("vlan", vlan.map(|v| v.to_string())), ("port", port.clone())],
                ),
                None,
            ),
            Request::AddStaticMac(mac) => ("POST", "/v1/fdb".to_string(), Some(json_body(mac))),
            Request::DelMac { vlan, mac } => {
                ("DELETE", format!("/v1/fdb/{vlan}/{}", segment(mac)), None)
            }
            Request::FlushFdb { port, vlan } => (
                "POST",
                with_query(
                    "/v1/fdb/flush".to_string(),
                    &[("port", port.clone()), ("vlan", vlan.map(|v| v.to_string()))],
                ),
                None,
            ),
            Request::ListVlans => ("GET", "/v1/vlans".to_string(), None),
            Request::ListWorkers => ("GET", "/v1/workers".to_string(), None),
            Request::DropReasons => ("GET", "/v1/drop-reasons".to_string(), None),
            Request::Metrics => ("GET", "/metrics".to_string(), None),
            Request::Trace(t) => ("POST", "/v1/trace".to_string(), Some(json_body(t))),
            Request::AttachPod(pod) => ("POST", "/v1/pods".to_string(), Some(json_body(pod))),
            Request::DetachPod { container_id, ifname } => {
                ("DELETE", format!("/v1/pods/{}/{}", segment(container_id), segment(ifname)), None)
            }
            Request::ListPods => ("GET", "/v1/pods".to_string(), None),
            Request::GetNode => ("GET", "/v1/node".to_string(), None),
            Request::ListPeers => ("GET", "/v1/peers".to_string(), None),
            Request::SetPeer(name, spec) => {
                ("PUT", format!("/v1/peers/{}", segment(name)), Some(json_body(spec)))
            }
            Request::DelPeer(name) => ("DELETE", format!("/v1/peers/{}", segment(name)), None),
            Request::ListRoutes => ("GET", "/v1/routes".to_string(), None),
            Request::AddRoute(r) => ("POST", "/v1/routes".to_string(), Some(json_body(r))),
            Request::DelRoute(prefix) => {
                ("DELETE", format!("/v1/routes/{}", segment(prefix)), None)
            }
            Request::ListNeighbors => ("GET", "/v1/neighbors".to_string(), None),
            Request::ListQos => ("GET", "/v1/qos".to_string(), None),
            Request::SetQosClass(name, upd) => {
                ("PATCH", format!("/v1/qos/classes/{}", segment(name)), Some(json_body(upd)))
            }
            Request::AddQosClass(spec) => {
                ("POST", "/v1/qos/classes".to_string(), Some(json_body(spec)))
            }
            Request::DelQosClass(name) => {
                ("DELETE", format!("/v1/qos/classes/{}", segment(name)), None)
            }
            Request::Capture(c) => ("POST", "/v1/capture".to_string(), Some(json_body(c))),
            Request::ListFlowCache => ("GET", "/v1/flow-cache".to_string(), None),
            Request::ListFlows => ("GET", "/v1/flows".to_string(), None),
            Request::AddFlow(rule) => ("POST", "/v1/flows".to_string(), Some(json_body(rule))),
            Request::DelFlow(name) => ("DELETE", format!("/v1/flows/{}", segment(name)), None),
        };
        HttpRequest { method, path_and_query, body }
    }

    /// The route pattern, for messages and logs: `PATCH /v1/ports/{name}`.
    pub fn route(&self) -> &'static str {
        match self {
            Request::Status => "GET /v1/status",
            Request::ListPorts => "GET /v1/ports",
            Request::GetPort(_) => "GET /v1/ports/{name}",
            Request::UpdatePort(..) => "PATCH /v1/ports/{name}",
            Request::AddPort(_) => "POST /v1/ports",
            Request::DelPort(_) => "DELETE /v1/ports/{name}",
            Request::ListFdb { .. } => "GET /v1/fdb",
            Request::AddStaticMac(_) => "POST /v1/fdb",
            Request::DelMac { .. } => "DELETE /v1/fdb/{vlan}/{mac}",
            Request::FlushFdb { .. } => "POST /v1/fdb/flush",
            Request::ListVlans => "GET /v1/vlans",
            Request::ListWorkers => "GET /v1/workers",
            Request::DropReasons => "GET /v1/drop-reasons",
            Request::Metrics => "GET /metrics",
            Request::Trace(_) => "POST /v1/trace",
            Request::AttachPod(_) => "POST /v1/pods",
            Request::DetachPod { .. } => "DELETE /v1/pods/{container_id}/{ifname}",
            Request::ListPods => "GET /v1/pods",
            Request::GetNode => "GET /v1/node",
            Request::ListPeers => "GET /v1/peers",
            Request::SetPeer(..) => "PUT /v1/peers/{name}",
            Request::DelPeer(_) => "DELETE /v1/peers/{name}",
            Request::ListRoutes => "GET /v1/routes",
            Request::AddRoute(_) => "POST /v1/routes",
            Request::DelRoute(_) => "DELETE /v1/routes/{prefix}",
            Request::ListNeighbors => "GET /v1/neighbors",
            Request::ListQos => "GET /v1/qos",
            Request::SetQosClass(..) => "PATCH /v1/qos/classes/{name}",
            Request::AddQosClass(_) => "POST /v1/qos/classes",
            Request::DelQosClass(_) => "DELETE /v1/qos/classes/{name}",
            Request::Capture(_) => "POST /v1/capture",
            Request::ListFlowCache => "GET /v1/flow-cache",
            Request::ListFlows => "GET /v1/flows",
            Request::AddFlow(_) => "POST /v1/flows",
            Request::DelFlow(_) => "DELETE /v1/flows/{name}",
        }
    }
}

/// Why an HTTP request is not an API request: the status to answer with, the error for the
/// body, and for 405 the methods the path allows (the `Allow` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// HTTP status: 400, 404, 405 or 413.
    pub status: u16,
    /// The error for the JSON body.
    pub error: ApiError,
    /// For 405: the methods the path allows, e.g. `"GET, PATCH"`.
    pub allow: Option<&'static str>,
}

impl RouteError {
    fn new(status: u16, kind: ErrorKind, message: String) -> RouteError {
        RouteError { status, error: ApiError::new(kind, message), allow: None }
    }

    fn invalid(message: String) -> RouteError {
        RouteError::new(400, ErrorKind::Invalid, message)
    }

    /// 413: the body is larger than [`MAX_BODY`].
    pub fn body_too_large() -> RouteError {
        RouteError::new(
            413,
            ErrorKind::Invalid,
            format!("request body larger than {MAX_BODY} bytes"),
        )
    }
}

/// What a path names, before the method is looked at.
enum Resource {
    Status,
    Ports,
    Port(String),
    Fdb,
    FdbEntry(u16, String),
    FdbFlush,
    Vlans,
    Workers,
    DropReasons,
    Metrics,
    Trace,
    Pods,
    Pod(String, String),
    Node,
    Peers,
    Peer(String),
    Routes,
    Route(String),
    Neighbors,
    Qos,
    QosClasses,
    QosClass(String),
    Capture,
    FlowCache,
    Flows,
    Flow(String),
}

impl Resource {
    fn allow(&self) -> &'static str {
        match self {
            Resource::Ports => "GET, POST",
            Resource::Port(_) => "GET, PATCH, DELETE",
            Resource::Routes => "GET, POST",
            Resource::Route(_) => "DELETE",
            Resource::Fdb => "GET, POST",
            Resource::FdbEntry(..) => "DELETE",
            Resource::FdbFlush | Resource::Trace => "POST",
            Resource::Pods => "GET, POST",
            Resource::Pod(..) => "DELETE",
            Resource::Peer(_) => "PUT, DELETE",
            Resource::QosClasses => "POST",
            Resource::QosClass(_) => "PATCH, DELETE",
            Resource::Capture => "POST",
            Resource::Flows => "GET, POST",
            Resource::Flow(_) => "DELETE",
            _ => "GET",
        }
    }
}

fn decode_segment(raw: &str, what: &str) -> Result<String, RouteError> {
    percent_decode_str(raw).decode_utf8().map(|s| s.into_owned()).map_err(|_| {
        RouteError::invalid(format!("{what} {raw:?} in the path is not UTF-8 once decoded"))
    })
}

fn parse_vlan(raw: &str, whence: &str) -> Result<u16, RouteError> {
    raw.parse::<u16>().map_err(|_| {
        RouteError::invalid(format!("{whence} {raw:?} is not a VLAN number (0..=65535)"))
    })
}

fn resource(method: &str, path: &str) -> Result<Resource, RouteError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let resource = match segments.as_slice() {
        ["metrics"] => Resource::Metrics,
        ["v1", "status"] => Resource::Status,
        ["v1", "ports"] => Resource::Ports,
        ["v1", "ports", name] => Resource::Port(decode_segment(name, "port name")?),
        ["v1", "fdb"] => Resource::Fdb,
        ["v1", "fdb", "flush"] => Resource::FdbFlush,
        ["v1", "fdb", vlan, mac] => {
            Resource::FdbEntry(parse_vlan(vlan, "VLAN")?, decode_segment(mac, "MAC address")?)
        }
        ["v1", "vlans"] => Resource::Vlans,
        ["v1", "workers"] => Resource::Workers,
        ["v1", "drop-reasons"] => Resource::DropReasons,
        ["v1", "trace"] => Resource::Trace,
        ["v1", "pods"] => Resource::Pods,
        ["v1", "pods", container_id, ifname] => Resource::Pod(
            decode_segment(container_id, "container id")?,
            decode_segment(ifname, "interface name")?,
        ),
        ["v1", "node"] => Resource::Node,
        ["v1", "peers"] => Resource::Peers,
        ["v1", "peers", name] => Resource::Peer(decode_segment(name, "peer name")?),
        ["v1", "routes"] => Resource::Routes,
        ["v1", "routes", prefix] => Resource::Route(decode_segment(prefix, "route prefix")?),
        ["v1", "neighbors"] => Resource::Neighbors,
        ["v1", "qos"] => Resource::Qos,
        ["v1", "qos", "classes"] => Resource::QosClasses,
        ["v1", "qos", "classes", name] => Resource::QosClass(decode_segment(name, "class name")?),
        ["v1", "capture"] => Resource::Capture,
        ["v1", "flow-cache"] => Resource::FlowCache,
        ["v1", "flows"] => Resource::Flows,
        ["v1", "flows", name] => Resource::Flow(decode_segment(name, "flow rule name")?),
        _ => {
            return Err(RouteError::new(
                404,
                ErrorKind::NotFound,
                format!("no such route: {method} {path}"),
            ))
        }
    };
    Ok(resource)
}

/// Query parameters, checked against the ones a route accepts. An empty value counts as absent.
fn query_params(
    query: Option<&str>,
    accepted: &[&str],
) -> Result<Vec<(String, String)>, RouteError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !accepted.contains(&key.as_ref()) {
            let expected = if accepted.is_empty() {
                "this route takes none".to_string()
            } else {
                format!("expected {}", accepted.join(", "))
            };
            return Err(RouteError::invalid(format!(
                "unknown query parameter {key:?} ({expected})"
            )));
        }
        if params.iter().any(|(k, _)| *k == key) {
            return Err(RouteError::invalid(format!("query parameter {key:?} given twice")));
        }
        if !value.is_empty() {
            params.push((key.into_owned(), value.into_owned()));
        }
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn vlan_param(params: &[(String, String)]) -> Result<Option<u16>, RouteError> {
    param(params, "vlan").map(|v| parse_vlan(v, "query parameter vlan")).transpose()
}

fn body_json<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    route: &str,
    expected: &str,
) -> Result<T, RouteError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RouteError::invalid(format!(
            "{route} needs a JSON body ({expected}), got an empty one"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        RouteError::invalid(format!("invalid JSON body for {route} ({expected}): {e}"))
    })
}

/// The API request an HTTP request stands for. `path` is the raw (still percent-encoded) path,
/// `query` the raw query string without `?`.
///
/// Unknown path: 404. Known path, wrong method: 405 with `allow`. Bad query parameter, path
/// segment or JSON body: 400 naming the problem (for JSON, serde's message with line and column).
pub fn parse_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Request, RouteError> {
    let resource = resource(method, path)?;
    let request = match (method, resource) {
        // Prometheus scrape configs may add parameters; they mean nothing here.
        ("GET", Resource::Metrics) => Request::Metrics,
        ("GET", Resource::Status) => {
            query_params(query, &[])?;
            Request::Status
        }
        ("GET", Resource::Ports) => {
            query_params(query, &[])?;
            Request::ListPorts
        }
        ("GET", Resource::Port(name)) => {
            query_params(query, &[])?;
            Request::GetPort(name)
        }
        ("PATCH", Resource::Port(name)) => {
            query_params(query, &[])?;
            let update: PortUpdate = body_json(
                body,
                "PATCH /v1/ports/{name}",
                "fields up, mode, vlan, allowed_vlans, native_vlan, mtu",
            )?;
            Request::UpdatePort(name, update)
        }
        ("POST", Resource::Ports) => {
            query_params(query, &[])?;
            let spec: PortSpec = body_json(
                body,
                "POST /v1/ports",
                "an object with the fields of a [[port]] section: name, type, interface, ...",
            )?;
            Request::AddPort(spec)
        }
        ("DELETE", Resource::Port(name)) => {
            query_params(query, &[])?;
            Request::DelPort(name)
        }
        ("GET", Resource::Fdb) => {
            let params = query_params(query, &["vlan", "port"])?;
            Request::ListFdb {
                vlan: vlan_param(&params)?,
                port: param(&params, "port").map(str::to_string),
            }
        }
        ("POST", Resource::Fdb) => {
            query_params(query, &[])?;
            let mac: StaticMac = body_json(body, "POST /v1/fdb", "fields vlan, mac, port")?;
            Request::AddStaticMac(mac)
        }
        ("DELETE", Resource::FdbEntry(vlan, mac)) => {
            query_params(query, &[])?;
            Request::DelMac { vlan, mac }
        }
        ("POST", Resource::FdbFlush) => {
            let params = query_params(query, &["port", "vlan"])?;
            Request::FlushFdb {
                port: param(&params, "port").map(str::to_string),
                vlan: vlan_param(&params)?,
            }
        }
        ("GET", Resource::Vlans) => {
            query_params(query, &[])?;
            Request::ListVlans
        }
        ("GET", Resource::Workers) => {
            query_params(query, &[])?;
            Request::ListWorkers
        }
        ("GET", Resource::DropReasons) => {
            query_params(query, &[])?;
            Request::DropReasons
        }
        ("POST", Resource::Trace) => {
            query_params(query, &[])?;
            let trace: TraceRequest = body_json(
                body,
                "POST /v1/trace",
                "fields in_port, and frame_hex or src_mac, dst_mac, vlan, ethertype, src_ip, \
                 dst_ip, proto, src_port, dst_port, len",
            )?;
            Request::Trace(trace)
        }
        ("GET", Resource::Pods) => {
            query_params(query, &[])?;
            Request::ListPods
        }
        ("POST", Resource::Pods) => {
            query_params(query, &[])?;
            let pod: PodAttachment = body_json(
                body,
                "POST /v1/pods",
                "fields container_id, ifname, netns, host_interface, vlan, mtu, mac, ips, \
                 pod_namespace, pod_name, pod_uid, cgroup_path, bandwidth, port_type",
            )?;
            Request::AttachPod(pod)
        }
        ("DELETE", Resource::Pod(container_id, ifname)) => {
            query_params(query, &[])?;
            Request::DetachPod { container_id, ifname }
        }
        ("GET", Resource::Node) => {
            query_params(query, &[])?;
            Request::GetNode
        }
        ("GET", Resource::Peers) => {
            query_params(query, &[])?;
            Request::ListPeers
        }
        ("PUT", Resource::Peer(name)) => {
            query_params(query, &[])?;
            let spec: PeerSpec = body_json(
                body,
                "PUT /v1/peers/{name}",
                "fields underlay_ip, pod_cidr, mode, vtep_mac",
            )?;
            Request::SetPeer(name, spec)
        }
        ("DELETE", Resource::Peer(name)) => {
            query_params(query, &[])?;
            Request::DelPeer(name)
        }
        ("GET", Resource::Routes) => {
            query_params(query, &[])?;
            Request::ListRoutes
        }
        ("POST", Resource::Routes) => {
            query_params(query, &[])?;
            let r: RouteSpec = body_json(body, "POST /v1/routes", "fields prefix, via, peer")?;
            Request::AddRoute(r)
        }
        ("DELETE", Resource::Route(prefix)) => {
            query_params(query, &[])?;
            Request::DelRoute(prefix)
        }
        ("GET", Resource::Neighbors) => {
            query_params(query, &[])?;
            Request::ListNeighbors
        }
        ("GET", Resource::Qos) => {
            query_params(query, &[])?;
            Request::ListQos
        }
        ("PATCH", Resource::QosClass(name)) => {
            query_params(query, &[])?;
            let upd: QosClassUpdate = body_json(
                body,
                "PATCH /v1/qos/classes/{name}",
                "fields rate, ceil, priority, weight, pps, pps_burst, burst, mpu, queue_limit, mode",
            )?;
            Request::SetQosClass(name, upd)
        }
        ("POST", Resource::QosClasses) => {
            query_params(query, &[])?;
            let spec: QosClassSpec = body_json(
                body,
                "POST /v1/qos/classes",
                "an object with the fields of a [[qos_class]] section: name, parent, rate, ...",
            )?;
            Request::AddQosClass(spec)
        }
        ("DELETE", Resource::QosClass(name)) => {
            query_params(query, &[])?;
            Request::DelQosClass(name)
        }
        ("POST", Resource::Capture) => {
            query_params(query, &[])?;
            let c: CaptureRequest = body_json(
                body,
                "POST /v1/capture",
                "fields port, direction, count, seconds, snaplen",
            )?;
            Request::Capture(c)
        }
        ("GET", Resource::FlowCache) => {
            query_params(query, &[])?;
            Request::ListFlowCache
        }
        ("GET", Resource::Flows) => {
            query_params(query, &[])?;
            Request::ListFlows
        }
        ("POST", Resource::Flows) => {
            query_params(query, &[])?;
            let rule: FlowRule = body_json(
                body,
                "POST /v1/flows",
                "fields name, priority, in_port, vlan, src_mac, dst_mac, ethertype, src_ip, \
                 dst_ip, proto, src_port, dst_port, action, output, set_vlan, meter_pps, meter_bps",
            )?;
            Request::AddFlow(rule)
        }
        ("DELETE", Resource::Flow(name)) => {
            query_params(query, &[])?;
            Request::DelFlow(name)
        }
        (_, resource) => {
            let allow = resource.allow();
            let mut error = RouteError::new(
                405,
                ErrorKind::Invalid,
                format!("method {method} not allowed on {path} (allowed: {allow})"),
            );
            error.allow = Some(allow);
            return Err(error);
        }
    };
    Ok(request)
}

/// Whether `reply` is a shape `request` may be answered with (see [`Request`]'s variants).
pub fn reply_fits(request: &Request, reply: &Reply) -> bool {
    matches!(
        (request, reply),
        (Request::Status, Reply::Status(_))
            | (Request::ListPorts, Reply::Ports(_))
            | (Request::GetPort(_), Reply::Port(_))
            | (Request::UpdatePort(..), Reply::Port(_) | Reply::Done { .. })
            | (Request::AddPort(_), Reply::Port(_))
            | (Request::DelPort(_), Reply::Done { .. })
            | (Request::AddRoute(_), Reply::Done { .. })
            | (Request::DelRoute(_), Reply::Done { .. })
            | (Request::ListFdb { .. }, Reply::Fdb(_))
            | (Request::AddStaticMac(_), Reply::Done { .. })
            | (Request::DelMac { .. }, Reply::Done { .. })
            | (Request::FlushFdb { .. }, Reply::Done { .. })
            | (Request::ListVlans, Reply::Vlans(_))
            | (Request::ListWorkers, Reply::Workers(_))
            | (Request::DropReasons, Reply::DropReasons(_))
            | (Request::Metrics, Reply::Metrics(_))
            | (Request::Trace(_), Reply::Trace(_))
            | (Request::AttachPod(_), Reply::Port(_))
            | (Request::DetachPod { .. }, Reply::Done { .. })
            | (Request::ListPods, Reply::Pods(_))
            | (Request::GetNode, Reply::Node(_))
            | (Request::ListPeers, Reply::Peers(_))
            | (Request::SetPeer(..), Reply::Done { .. })
            | (Request::DelPeer(_), Reply::Done { .. })
            | (Request::ListRoutes, Reply::Routes(_))
            | (Request::ListNeighbors, Reply::Neighbors(_))
            | (Request::ListQos, Reply::Qos(_))
            | (Request::SetQosClass(..), Reply::Done { .. })
            | (Request::AddQosClass(_), Reply::Done { .. })
            | (Request::DelQosClass(_), Reply::Done { .. })
            | (Request::Capture(_), Reply::Capture(_))
            | (Request::ListFlowCache, Reply::FlowCache(_))
            | (Request::ListFlows, Reply::Flows(_))
            | (Request::AddFlow(_), Reply::Done { .. })
            | (Request::DelFlow(_), Reply::Done { .. })
    )
}

/// The variant name of a reply, for messages.
pub fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Status(_) => "Status",
        Reply::Ports(_) => "Ports",
        Reply::Port(_) => "Port",
        Reply::Fdb(_) => "Fdb",
        Reply::Vlans(_) => "Vlans",
        Reply::Workers(_) => "Workers",
        Reply::DropReasons(_) => "DropReasons",
        Reply::Metrics(_) => "Metrics",
        Reply::Trace(_) => "Trace",
        Reply::Pods(_) => "Pods",
        Reply::Node(_) => "Node",
        Reply::Peers(_) => "Peers",
        Reply::Routes(_) => "Routes",
        Reply::Neighbors(_) => "Neighbors",
        Reply::Qos(_) => "Qos",
        Reply::Capture(_) => "Capture",
        Reply::FlowCache(_) => "FlowCache",
        Reply::Flows(_) => "Flows",
        Reply::Done { .. } => "Done",
    }
}

fn pretty<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("replies serialize");
    out.push(b'\n');
    out
}

/// The content type and body for a successful reply: the variant's content as JSON
/// (`GET /v1/ports` is a JSON array of ports, `Done` is `{"message": ...}`), or for
/// [`Reply::Metrics`] the Prometheus text itself.
pub fn encode_reply(reply: &Reply) -> (&'static str, Vec<u8>) {
    let body = match reply {
        Reply::Status(v) => pretty(v),
        Reply::Ports(v) => pretty(v),
        Reply::Port(v) => pretty(v),
        Reply::Fdb(v) => pretty(v),
        Reply::Vlans(v) => pretty(v),
        Reply::Workers(v) => pretty(v),
        Reply::DropReasons(v) => pretty(v),
        Reply::Trace(v) => pretty(v),
        Reply::Pods(v) => pretty(v),
        Reply::Node(v) => pretty(v),
        Reply::Peers(v) => pretty(v),
        Reply::Routes(v) => pretty(v),
        Reply::Neighbors(v) => pretty(v),
        Reply::Qos(v) => pretty(v),
        Reply::Capture(v) => pretty(v),
        Reply::FlowCache(v) => pretty(v),
        Reply::Flows(v) => pretty(v),
        Reply::Done { message } => pretty(&DoneBody { message: message.clone() }),
        Reply::Metrics(text) => return (METRICS_TEXT, text.clone().into_bytes()),
    };
    (JSON, body)
}

/// The reply a successful (2xx) body carries for `request`; the error names what did not parse.
pub fn decode_reply(request: &Request, body: &[u8]) -> Result<Reply, String> {
    fn json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
    let done = |body: &[u8]| json::<DoneBody>(body).map(|d| Reply::Done { message: d.message });
    let reply = match request {
        Request::Status => Reply::Status(json(body)?),
        Request::ListPorts => Reply::Ports(json(body)?),
        Request::GetPort(_) => Reply::Port(json(body)?),
        Request::UpdatePort(..) => match done(body) {
            Ok(reply) => reply,
            Err(_) => Reply::Port(json::<PortInfo>(body)?),
        },
        Request::AddPort(_) => Reply::Port(json(body)?),
        Request::DelPort(_) | Request::AddRoute(_) | Request::DelRoute(_) => done(body)?,
        Request::ListFdb { .. } => Reply::Fdb(json(body)?),
        Request::AddStaticMac(_) | Request::DelMac { .. } | Request::FlushFdb { .. } => done(body)?,
        Request::ListVlans => Reply::Vlans(json(body)?),
        Request::ListWorkers => Reply::Workers(json(body)?),
        Request::DropReasons => Reply::DropReasons(json(body)?),
        Request::Trace(_) => Reply::Trace(json(body)?),
        Request::AttachPod(_) => Reply::Port(json(body)?),
        Request::DetachPod { .. } => done(body)?,
        Request::ListPods => Reply::Pods(json(body)?),
        Request::GetNode => Reply::Node(json(body)?),
        Request::ListPeers => Reply::Peers(json(body)?),
        Request::SetPeer(..) | Request::DelPeer(_) => done(body)?,
        Request::ListRoutes => Reply::Routes(json(body)?),
        Request::ListNeighbors => Reply::Neighbors(json(body)?),
        Request::ListQos => Reply::Qos(json(body)?),
        Request::SetQosClass(..) | Request::AddQosClass(_) | Request::DelQosClass(_) => done(body)?,
        Request::Capture(_) => Reply::Capture(json(body)?),
        Request::ListFlowCache => Reply::FlowCache(json(body)?),
        Request::ListFlows => Reply::Flows(json(body)?),
        Request::AddFlow(_) | Request::DelFlow(_) => done(body)?,
        Request::Metrics => Reply::Metrics(
            String::from_utf8(body.to_vec())
                .map_err(|_| "metrics text is not UTF-8".to_string())?,
        ),
    };
    Ok(reply)
}

/// The JSON body of an error reply: `{"error": {"kind": ..., "message": ...}}`.
pub fn encode_error(error: &ApiError) -> Vec<u8> {
    pretty(&ErrorBody { error: error.clone() })
}

/// The error an error reply (non-2xx) carries, if its body is the API's error JSON.
pub fn decode_error(body: &[u8]) -> Option<ApiError> {
    serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Status,
            Request::ListPorts,
            Request::GetPort("pod a/b%c?d#é".to_string()),
            Request::UpdatePort(
                "eth0".to_string(),
                PortUpdate {
                    mode: Some("trunk".into()),
                    allowed_vlans: Some(vec![10, 20]),
                    native_vlan: Some(1),
                    ..Default::default()
                },
            ),
            Request::ListFdb { vlan: None, port: None },
            Request::ListFdb { vlan: Some(10), port: Some("p&q=r s".into()) },
            Request::AddStaticMac(StaticMac {
                vlan: 10,
                mac: "aa:bb:cc:dd:ee:ff".into(),
                port: "p1".into(),
            }),
            Request::DelMac { vlan: 4094, mac: "aa:bb:cc:dd:ee:ff".into() },
            Request::FlushFdb { port: None, vlan: None },
            Request::FlushFdb { port: Some("p1".into()), vlan: Some(7) },
            Request::ListVlans,
            Request::ListWorkers,
            Request::DropReasons,
            Request::Metrics,
            Request::Trace(TraceRequest { in_port: "p1".into(), ..Default::default() }),
            Request::Trace(TraceRequest {
                in_port: "pod a".into(),
                frame_hex: None,
                src_mac: Some("02:00:00:00:00:01".into()),
                dst_mac: Some("ff:ff:ff:ff:ff:ff".into()),
                vlan: Some(10),
                ethertype: Some(0x0800),
                src_ip: Some("10.0.0.1".into()),
                dst_ip: Some("10.0.0.2".into()),
                proto: Some("tcp".into()),
                src_port: Some(1234),
                dst_port: Some(80),
                len: Some(1500),
            }),
            Request::AttachPod(pod()),
            Request::AttachPod(PodAttachment {
                mac: None,
                ips: vec![],
                pod_namespace: None,
                pod_name: None,
                pod_uid: None,
                cgroup_path: None,
                bandwidth: None,
                port_type: None,
                ..pod()
            }),
            Request::DetachPod { container_id: "abc123".into(), ifname: "eth0".into() },
            Request::DetachPod { container_id: "odd/id%?#".into(), ifname: "net 1".into() },
            Request::ListPods,
            Request::GetNode,
            Request::ListPeers,
            Request::SetPeer(
                "n2".into(),
                PeerSpec {
                    underlay_ip: "198.18.0.2".into(),
                    pod_cidr: "10.244.2.0/24".into(),
                    mode: None,
                    vtep_mac: None,
                },
            ),
            Request::SetPeer(
                "node b/c%?#".into(),
                PeerSpec {
                    underlay_ip: "198.19.0.3".into(),
                    pod_cidr: "10.244.3.0/24".into(),
                    mode: Some("vxlan".into()),
                    vtep_mac: Some("02:00:00:00:00:03".into()),
                },
            ),
            Request::DelPeer("n2".into()),
            Request::DelPeer("node b/c%?#".into()),
            Request::ListQos,
            Request::AddQosClass(QosClassSpec(
                serde_json::json!({"name": "team a", "parent": "node", "rate": "100M",
                    "mode": "police"})
                .as_object()
                .unwrap()
                .clone(),
            )),
            Request::DelQosClass("team a/b%".into()),
            Request::SetQosClass(
                "pod a/b".into(),
                QosClassUpdate {
                    rate: Some("100M".into()),
                    priority: Some(1),
                    ..Default::default()
                },
            ),
            Request::ListRoutes,
            Request::AddRoute(RouteSpec {
                prefix: "10.96.0.0/12".into(),
                via: Some("198.18.0.254".into()),
                peer: None,
            }),
            Request::AddRoute(RouteSpec {
                prefix: "0.0.0.0/0".into(),
                via: None,
                peer: Some("node b/c".into()),
            }),
            Request::DelRoute("10.96.0.0/12".into()),
            Request::AddPort(PortSpec(
                serde_json::json!({"name": "vm 1", "type": "tap", "mode": "trunk",
                    "allowed_vlans": [10, 20]})
                .as_object()
                .unwrap()
                .clone(),
            )),
            Request::DelPort("vm 1/x".into()),
            Request::ListNeighbors,
            Request::Capture(CaptureRequest {
                port: "pod a".into(),
                direction: Some("rx".into()),
                count: Some(10),
                ..Default::default()
            }),
            Request::ListFlowCache,
            Request::ListFlows,
            Request::AddFlow(FlowRule {
                name: "no-icmp".into(),
                priority: 100,
                in_port: Some("pod a".into()),
                proto: Some("icmp".into()),
                action: "drop".into(),
                ..Default::default()
            }),
            Request::DelFlow("odd/name%?".into()),
        ]
    }

    fn pod() -> PodAttachment {
        PodAttachment {
            container_id: "0123456789abcdef".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/cni-1234".into(),
            host_interface: "vs0123456789ab".into(),
            vlan: 10,
            mtu: 1450,
            mac: Some("02:00:00:00:00:01".into()),
            ips: vec!["10.244.1.2/24".into(), "fd00::2/64".into()],
            pod_namespace: Some("default".into()),
            pod_name: Some("web-0".into()),
            pod_uid: Some("6f1c5a1e-0000-4000-8000-000000000001".into()),
            cgroup_path: Some("/kubepods/pod6f1c".into()),
            bandwidth: Some(crate::types::Bandwidth {
                ingress_rate: Some(1_000_000),
                ingress_burst: Some(100_000),
                egress_rate: None,
                egress_burst: None,
                ..Default::default()
            }),
            port_type: Some("tap".into()),
        }
    }

    #[test]
    fn every_request_round_trips_through_http() {
        for request in all_requests() {
            let http = request.to_http();
            let (path, query) = match http.path_and_query.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (http.path_and_query.as_str(), None),
            };
            let body = http.body.clone().unwrap_or_default();
            let parsed = parse_request(http.method, path, query, &body)
                .unwrap_or_else(|e| panic!("{request:?} -> {http:?}: {e:?}"));
            assert_eq!(parsed, request, "via {http:?}");
            assert!(request.route().starts_with(http.method));
        }
    }

    #[test]
    fn unknown_route_is_404_and_wrong_method_405() {
        let e = parse_request("GET", "/v2/ports", None, b"").unwrap_err();
        assert_eq!(e.status, 404);
        assert_eq!(e.error.kind, ErrorKind::NotFound);
        assert_eq!(e.error.message, "no such route: GET /v2/ports");

        let e = parse_request("PUT", "/v1/ports/p1", None, b"").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow, Some("GET, PATCH, DELETE"));
        assert!(e.error.message.contains("PUT not allowed on /v1/ports/p1"), "{e:?}");
    }

    #[test]
    fn bad_bodies_and_queries_name_the_problem() {
        let e = parse_request("PATCH", "/v1/ports/p1", None, br#"{"vlna": 5}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.error.message.contains("unknown field `vlna`"), "{}", e.error.message);

        let e = parse_request("PATCH", "/v1/ports/p1", None, b"").unwrap_err();
        assert!(e.error.message.contains("empty"), "{}", e.error.message);

        let e = parse_request("POST", "/v1/fdb", None, b"{not json").unwrap_err();
        assert!(e.error.message.contains("line 1 column"), "{}", e.error.message);

        let e = parse_request("GET", "/v1/fdb", Some("vlan=abc"), b"").unwrap_err();
        assert_eq!(
            e.error.message,
            r#"query parameter vlan "abc" is not a VLAN number (0..=65535)"#
        );

        let e = parse_request("GET", "/v1/fdb", Some("mac=1"), b"").unwrap_err();
        assert_eq!(e.error.message, r#"unknown query parameter "mac" (expected vlan, port)"#);

        let e = parse_request("DELETE", "/v1/fdb/x/aa:bb", None, b"").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn pod_routes_name_their_problems() {
        let e = parse_request("PUT", "/v1/pods", None, b"").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow, Some("GET, POST"));
        let e = parse_request("GET", "/v1/pods/abc/eth0", None, b"").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow, Some("DELETE"));
        let e = parse_request("POST", "/v1/pods", None, br#"{"container_id": "x"}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.error.message.contains("missing field"), "{}", e.error.message);
        let e = parse_request("DELETE", "/v1/pods/abc", None, b"").unwrap_err();
        assert_eq!(e.status, 404);
    }

    #[test]
    fn pod_replies_round_trip() {
        let pods = Reply::Pods(vec![pod()]);
        assert!(reply_fits(&Request::ListPods, &pods));
        let (ct, body) = encode_reply(&pods);
        assert_eq!(ct, JSON);
        assert_eq!(decode_reply(&Request::ListPods, &body), Ok(pods));
        let done = Reply::Done { message: "detached".into() };
        let detach = Request::DetachPod { container_id: "c".into(), ifname: "eth0".into() };
        assert!(reply_fits(&detach, &done));
        assert!(!reply_fits(&Request::AttachPod(pod()), &done));
        let (_, body) = encode_reply(&done);
        assert_eq!(decode_reply(&detach, &body), Ok(done));
    }

    #[test]
    fn peer_routes_name_their_problems() {
        let e = parse_request("POST", "/v1/peers/n2", None, b"").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow, Some("PUT, DELETE"));
        let e = parse_request("DELETE", "/v1/peers", None, b"").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow, Some("GET"));
        let e = parse_request("GET", "/v1/routes/10.0.0.0%2F8", None, b"").unwrap_err();
        assert_eq!(e.allow, Some("DELETE"));
        let r = parse_request("DELETE", "/v1/routes/10.0.0.0%2F8", None, b"").unwrap();
        assert_eq!(r, Request::DelRoute("10.0.0.0/8".into()));
        let e = parse_request("POST", "/v1/routes", None, br#"{"prefix": "0.0.0.0/0", "gw": 1}"#)
            .unwrap_err();
        assert!(e.error.message.contains("unknown field `gw`"), "{}", e.error.message);
        let e = parse_request("POST", "/v1/ports", None, b"[1]").unwrap_err();
        assert!(e.error.message.contains("POST /v1/ports"), "{}", e.error.message);
        for path in ["/v1/node", "/v1/neighbors"] {
            let e = parse_request("PUT", path, None, b"{}").unwrap_err();
            assert_eq!((e.status, e.allow), (405, Some("GET")), "{path}");
        }
        let e = parse_request("PUT", "/v1/peers/n2", None, b"").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.error.message.contains("PUT /v1/peers/{name} needs a JSON body"), "{e:?}");
        let e = parse_request("PUT", "/v1/peers/n2", None, br#"{"underlay_ip": "198.18.0.2"}"#)
            .unwrap_err();
        assert!(e.error.message.contains("missing field `pod_cidr`"), "{}", e.error.message);
        let body = br#"{"underlay_ip": "1.2.3.4", "pod_cidr": "10.0.0.0/24", "mtu": 1}"#;
        let e = parse_request("PUT", "/v1/peers/n2", None, body).unwrap_err();
        assert!(e.error.message.contains("unknown field `mtu`"), "{}", e.error.message);
        let e = parse_request("GET", "/v1/routes", Some("peer=n2"), b"").unwrap_err();
        assert_eq!(e.error.message, r#"unknown query parameter "peer" (this route takes none)"#);
        let e = parse_request("GET", "/v1/peers/n2/x", None, b"").unwrap_err();
        assert_eq!(e.status, 404);
    }

    #[test]
    fn routing_replies_round_trip() {
        use crate::types::{NeighborInfo, NodeInfo, PeerInfo, RouteInfo};
        let replies = [
            (
                Request::GetNode,
                Reply::Node(NodeInfo {
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
            ),
            (
                Request::ListPeers,
                Reply::Peers(vec![PeerInfo {
                    name: "n2".into(),
                    underlay_ip: "198.18.0.2".into(),
                    pod_cidr: "10.244.2.0/24".into(),
                    mode: "direct".into(),
                    configured: "auto".into(),
                    reason: "auto: 198.18.0.2 is on the uplink's subnet 198.18.0.0/24".into(),
                    vtep_mac: "0a:58:c6:12:00:02".into(),
                    next_hop: "198.18.0.2".into(),
                    next_hop_mac: Some("02:00:00:00:00:02".into()),
                }]),
            ),
            (
                Request::ListRoutes,
                Reply::Routes(vec![
                    RouteInfo {
                        prefix: "10.244.1.0/24".into(),
                        via: "local".into(),
                        mode: "local".into(),
                        next_hop: None,
                        origin: "pod-cidr".into(),
                    },
                    RouteInfo {
                        prefix: "10.244.2.0/24".into(),
                        via: "n2".into(),
                        mode: "direct".into(),
                        next_hop: Some("198.18.0.2".into()),
                        origin: "pod-cidr".into(),
                    },
                ]),
            ),
            (
                Request::ListNeighbors,
                Reply::Neighbors(vec![NeighborInfo {
                    ip: "10.244.1.11".into(),
                    mac: "02:00:00:00:00:0b".into(),
                    port: "a1".into(),
                }]),
            ),
            (Request::DelPeer("n2".into()), Reply::Done { message: "removed".into() }),
            (
                Request::SetPeer("n2".into(), PeerSpec::default()),
                Reply::Done { message: "added".into() },
            ),
        ];
        for (request, reply) in replies {
            assert!(reply_fits(&request, &reply), "{request:?} {reply:?}");
            let (ct, body) = encode_reply(&reply);
            assert_eq!(ct, JSON);
            assert_eq!(decode_reply(&request, &body), Ok(reply));
        }
        assert!(!reply_fits(&Request::ListPeers, &Reply::Routes(vec![])));
        assert!(!reply_fits(&Request::GetNode, &Reply::Done { message: String::new() }));
        // The JSON is the documented shape: an array of objects with these keys.
        let (_, body) = encode_reply(&Reply::Routes(vec![RouteInfo {
            prefix: "10.244.1.0/24".into(),
            via: "local".into(),
            mode: "local".into(),
            next_hop: None,
            origin: "pod-cidr".into(),
        }]));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"prefix": "10.244.1.0/24", "via": "local", "mode": "local", "next_hop": null,
                 "origin": "pod-cidr"}
            ])
        );
    }

    #[test]
    fn empty_query_values_count_as_absent() {
        let r = parse_request("GET", "/v1/fdb", Some("vlan=&port="), b"").unwrap();
        assert_eq!(r, Request::ListFdb { vlan: None, port: None });
    }

    #[test]
    fn replies_round_trip() {
        let done = Reply::Done { message: "flushed 3 entries".into() };
        let (ct, body) = encode_reply(&done);
        assert_eq!(ct, JSON);
        assert_eq!(
            decode_reply(&Request::FlushFdb { port: None, vlan: None }, &body),
            Ok(done.clone())
        );
        let update = Request::UpdatePort("p".into(), PortUpdate::default());
        assert_eq!(decode_reply(&update, &body), Ok(done));

        let metrics = Reply::Metrics("# HELP x\nx 1\n".into());
        let (ct, body) = encode_reply(&metrics);
        assert_eq!(ct, METRICS_TEXT);
        assert_eq!(decode_reply(&Request::Metrics, &body), Ok(metrics));

        let err = ApiError::not_found("unknown port \"pod-x\"");
        let body = encode_error(&err);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["kind"], "not_found");
        assert_eq!(v["error"]["message"], "unknown port \"pod-x\"");
        assert_eq!(decode_error(&body), Some(err));
    }

    #[test]
    fn error_kinds_map_to_statuses() {
        for (kind, status) in [
            (ErrorKind::NotFound, 404),
            (ErrorKind::Invalid, 400),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ] {
            assert_eq!(kind.http_status(), status);
            assert_eq!(ErrorKind::from_http_status(status), kind);
        }
    }
}
