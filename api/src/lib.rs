//! The control API of `vswitchd`: HTTP/JSON over a Unix socket, like Docker's and
//! Firecracker's, so `curl` reaches it too:
//!
//! ```text
//! curl --unix-socket /run/vswitch/vswitchd.sock http://localhost/v1/ports
//! ```
//!
//! The types are declared once here and used by the daemon, `vswitchctl` and the CNI shim.
//! Clients are thin: every check of a value (VLAN ranges, MAC syntax, port names) happens in
//! the daemon, whose messages name the problem and travel back unchanged.
//!
//! # Routes
//!
//! | method | path | request | reply body (200) |
//! |---|---|---|---|
//! | GET | `/v1/status` | [`Request::Status`] | [`Status`] |
//! | GET | `/v1/ports` | [`Request::ListPorts`] | `[`[`PortInfo`]`]` |
//! | GET | `/v1/ports/{name}` | [`Request::GetPort`] | [`PortInfo`] |
//! | PATCH | `/v1/ports/{name}` (body [`PortUpdate`]) | [`Request::UpdatePort`] | [`PortInfo`] after the change, or `{"message"}` |
//! | GET | `/v1/fdb?vlan=&port=` | [`Request::ListFdb`] | `[`[`FdbEntry`]`]` |
//! | POST | `/v1/fdb` (body [`StaticMac`]) | [`Request::AddStaticMac`] | `{"message": "..."}` |
//! | DELETE | `/v1/fdb/{vlan}/{mac}` | [`Request::DelMac`] | `{"message": "..."}` |
//! | POST | `/v1/fdb/flush?port=&vlan=` | [`Request::FlushFdb`] | `{"message": "..."}` |
//! | GET | `/v1/vlans` | [`Request::ListVlans`] | `[`[`VlanInfo`]`]` |
//! | GET | `/v1/workers` | [`Request::ListWorkers`] | `[`[`WorkerInfo`]`]` |
//! | GET | `/v1/drop-reasons` | [`Request::DropReasons`] | `[`[`DropReasonInfo`]`]` |
//! | POST | `/v1/trace` (body [`TraceRequest`]) | [`Request::Trace`] | [`TraceResult`] |
//! | POST | `/v1/pods` (body [`PodAttachment`]) | [`Request::AttachPod`] | [`PortInfo`] of the pod's port |
//! | GET | `/v1/pods` | [`Request::ListPods`] | `[`[`PodAttachment`]`]` |
//! | DELETE | `/v1/pods/{container_id}/{ifname}` | [`Request::DetachPod`] | `{"message": "..."}` (also when absent) |
//! | GET | `/v1/node` | [`Request::GetNode`] | [`NodeInfo`], or `not_found` (see below) |
//! | GET | `/v1/peers` | [`Request::ListPeers`] | `[`[`PeerInfo`]`]` |
//! | PUT | `/v1/peers/{name}` (body [`PeerSpec`]) | [`Request::SetPeer`] | `{"message": "..."}` |
//! | DELETE | `/v1/peers/{name}` | [`Request::DelPeer`] | `{"message": "..."}` |
//! | GET | `/v1/routes` | [`Request::ListRoutes`] | `[`[`RouteInfo`]`]` |
//! | GET | `/v1/neighbors` | [`Request::ListNeighbors`] | `[`[`NeighborInfo`]`]` |
//! | GET | `/v1/qos` | [`Request::ListQos`] | `[`[`QosPortInfo`]`]` |
//! | PATCH | `/v1/qos/classes/{name}` (body [`QosClassUpdate`]) | [`Request::SetQosClass`] | `{"message": "..."}` |
//! | POST | `/v1/qos/classes` (body [`QosClassSpec`]) | [`Request::AddQosClass`] | `{"message": "..."}` |
//! | DELETE | `/v1/qos/classes/{name}` | [`Request::DelQosClass`] | `{"message": "..."}` |
//! | POST | `/v1/capture` (body [`CaptureRequest`]) | [`Request::Capture`] | [`CaptureResult`], when a bound is reached |
//! | GET | `/v1/flow-cache` | [`Request::ListFlowCache`] | `[`[`CachedFlow`]`]` |
//! | GET | `/v1/flows` | [`Request::ListFlows`] | `[`[`FlowRuleInfo`]`]` |
//! | POST | `/v1/flows` (body [`FlowRule`]) | [`Request::AddFlow`] | `{"message": "..."}` |
//! | DELETE | `/v1/flows/{name}` | [`Request::DelFlow`] | `{"message": "..."}` |
//! | GET | `/metrics` | [`Request::Metrics`] | Prometheus text (`text/plain; version=0.0.4`) |
//!
//! Path segments (`{name}`, `{mac}`) are percent-encoded; query parameters are optional and an
//! empty value counts as absent. A `{"message"}` body is [`Reply::Done`].
//!
//! The routing routes (`node`, `peers`, `routes`, `neighbors`) describe the node's place in a
//! multi-node pod network, configured by `[node]` and `[[peer]]`. On a node without `[node]`
//! (a pure L2 switch) `GET /v1/node` is `not_found`, and the lists are empty rather than
//! errors, so scripts can iterate them on every node alike; `PUT /v1/peers/{name}` is then
//! refused as `invalid` (peers need a `[node]`).
//!
//! # Errors
//!
//! Every failure is a JSON body `{"error": {"kind": "...", "message": "..."}}` ([`ErrorBody`]):
//!
//! | kind | status | when |
//! |---|---|---|
//! | `not_found` | 404 | unknown port, MAC, ...; also an unknown route |
//! | `invalid` | 400 | a value out of range, a bad query parameter, a JSON body that does not parse (serde's message) |
//! | `invalid` | 405 | known path, wrong method (with an `Allow` header) |
//! | `invalid` | 413 | body over 1 MiB |
//! | `conflict` | 409 | the request contradicts the current state |
//! | `unavailable` | 503 | the daemon cannot serve it now |
//! | `internal` | 500 | a bug in the daemon |
//!
//! # Features
//!
//! - `client` (default): [`Client`], for `vswitchctl` and the CNI shim.
//! - `server`: [`serve_unix`], [`ApiListener`], [`serve_metrics_tcp`] and the [`Backend`]
//!   trait the daemon implements.
//!
//! The HTTP mapping itself ([`wire`]) is always there and has no I/O.

mod types;
pub mod wire;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
mod server;

pub use types::{
    ApiError, Bandwidth, CachedFlow, CaptureRequest, CaptureResult, CapturedPacket, DropReasonInfo,
    ErrorBody, ErrorKind, FdbEntry, FlowRule, FlowRuleInfo, NeighborInfo, NodeInfo, PeerInfo,
    PeerSpec, PodAttachment, PortInfo, PortSpec, PortStats, PortUpdate, QosClassInfo, QosClassSpec,
    QosClassUpdate, QosPortInfo, Reply, Request, Response, RouteInfo, RouteSpec, StaticMac, Status,
    TraceRequest, TraceResult, TraceStep, VlanInfo, WorkerInfo,
};

#[cfg(feature = "client")]
pub use client::{Client, ClientError, RawResponse, DEFAULT_SOCKET};

#[cfg(feature = "server")]
pub use server::{serve_metrics, serve_metrics_tcp, serve_unix, ApiListener, Backend};
