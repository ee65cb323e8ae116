//! Live changes to ports, static routes and QoS classes through the API (`vswitchctl port
//! add|del`, `vswitchctl route add|del`, `vswitchctl qos add|del`).
//!
//! Each change edits a copy of the running configuration, validates the whole of it as a file
//! would be, and applies it as a diff (new snapshot, port commands); anything wrong is refused
//! with the field named and nothing changes. Changes made here last until the next reload:
//! SIGHUP re-reads the file (keeping only the pods' attachments), as it does for peers and flow
//! rules.

use tracing::info;
use vswitch_api::{ApiError, PortSpec, QosClassSpec, Reply, Response, RouteInfo, RouteSpec};

use super::config::Config;
use super::daemon::Daemon;
use super::pods::port_name;
use crate::tables::l3::{Route, StaticVia};
use crate::tables::route::Ipv4Net;

/// How long `port add` waits for the worker to switch the new port before answering anyway.
const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl<const N: usize> Daemon<N> {
    /// `POST /v1/ports`: a `[[port]]` section as JSON, checked with the daemon's own schema
    /// (unknown fields and bad values are refused by name). Answers with the port once its
    /// worker switches it.
    pub(super) fn add_port(&mut self, spec: PortSpec) -> Response {
        let section: super::config::PortSection =
            serde_json::from_value(serde_json::Value::Object(spec.0))
                .map_err(|e| ApiError::invalid(format!("port: {e}")))?;
        let name = section.name.clone();
        if self.config().ports.iter().any(|p| p.name == name) {
            return Err(ApiError::conflict(format!(
                "port {name:?} exists (vswitchctl port set changes it)"
            )));
        }
        let mut cfg = self.config().clone();
        cfg.ports.push(section);
        self.apply_api(cfg)?;
        let id = self.port_id(&name)?;
        if !self.wait_attached(id, ATTACH_WAIT) {
            tracing::warn!(port = %name, "worker has not attached the port within 2 s");
        }
        info!(port = %name, "port added through the API");
        Ok(Reply::Port(self.port_info(id)))
    }

    /// `DELETE /v1/ports/{name}`: removes a port live. A pod's port belongs to the CNI plugin
    /// (its DEL removes it with the pod's QoS classes and state), so it is refused here; so is a
    /// port the rest of the configuration still names (the uplink, a flow rule's output).
    pub(super) fn del_port(&mut self, name: &str) -> Response {
        self.port_id(name)?;
        if let Some(a) =
            self.pods().values().find(|a| port_name(&a.container_id, &a.ifname) == name)
        {
            return Err(ApiError::conflict(format!(
                "port {name:?} is pod {}/{}'s interface (container {}): the CNI plugin's DEL removes it",
                a.pod_namespace.as_deref().unwrap_or("-"),
                a.pod_name.as_deref().unwrap_or("-"),
                a.container_id
            )));
        }
        let mut cfg = self.config().clone();
        cfg.ports.retain(|p| p.name != name);
        self.apply_api(cfg)?;
        info!(port = %name, "port removed through the API");
        Ok(Reply::Done { message: format!("port {name:?} removed") })
    }

    /// `POST /v1/qos/classes`: a `[[qos_class]]` section as JSON, checked with the daemon's
    /// own schema and then with the whole tree (its parent must exist, the guarantees of a
    /// parent's children fit its rate, ...). The shaped ports' schedulers take it at once.
    pub(super) fn add_qos_class(&mut self, spec: QosClassSpec) -> Response {
        let section: super::qos::QosClassSection =
            serde_json::from_value(serde_json::Value::Object(spec.0))
                .map_err(|e| ApiError::invalid(format!("qos_class: {e}")))?;
        let name = section.name.clone();
        if self.config().qos_classes.iter().any(|c| c.name == name) {
            return Err(ApiError::conflict(format!(
                "QoS class {name:?} exists (vswitchctl qos set changes it)"
            )));
        }
        let mut cfg = self.config().clone();
        cfg.qos_classes.push(section);
        self.apply_api(cfg)?;
        info!(class = %name, "QoS class added through the API");
        Ok(Reply::Done { message: format!("QoS class {name:?} added") })
    }

    /// `DELETE /v1/qos/classes/{name}`: removes a class live. Refused, naming who, while a
    /// child class or a port still names it (a pod's classes go with its CNI DEL).
    pub(super) fn del_qos_class(&mut self, name: &str) -> Response {
        let cfg = self.config();
        if !cfg.qos_classes.iter().any(|c| c.name == name) {
            return Err(ApiError::not_found(format!("no QoS class {name:?}")));
        }
        let kids: Vec<&str> = cfg
            .qos_classes
            .iter()
            .filter(|c| c.parent.as_deref() == Some(name))
            .map(|c| c.name.as_str())
            .collect();
        if !kids.is_empty() {
            return Err(ApiError::conflict(format!(
                "QoS class {name:?} is the parent of {kids:?}: remove them first"
            )));
        }
        let ports: Vec<&str> = cfg
            .ports
            .iter()
            .filter(|p| [&p.qos_class, &p.qos_root].iter().any(|c| c.as_deref() == Some(name)))
            .map(|p| p.name.as_str())
            .collect();
        if !ports.is_empty() {
            return Err(ApiError::conflict(format!(
                "QoS class {name:?} is named by port(s) {ports:?} (qos_class or qos_root)"
            )));
        }
        let mut cfg = cfg.clone();
        cfg.qos_classes.retain(|c| c.name != name);
        self.apply_api(cfg)?;
        info!(class = %name, "QoS class removed through the API");
        Ok(Reply::Done { message: format!("QoS class {name:?} removed") })
    }

    /// `POST /v1/routes`: adds a static route; a route of the same prefix is a conflict.
    pub(super) fn add_route(&mut self, spec: RouteSpec) -> Response {
        let prefix: Ipv4Net = spec
            .prefix
            .trim()
            .parse()
            .map_err(|e| ApiError::invalid(format!("prefix {:?}: {e}", spec.prefix)))?;
        if self.config().node.is_none() {
            return Err(ApiError::invalid(
                "this switch does not route: routes need a [node] table in the configuration",
            ));
        }
        if self.config().routes.iter().any(|r| r.prefix.parse::<Ipv4Net>() == Ok(prefix)) {
            return Err(ApiError::conflict(format!(
                "a static route to {prefix} exists (route del it first)"
            )));
        }
        let target = match (&spec.via, &spec.peer) {
            (Some(v), None) => format!("via {v}"),
            (None, Some(p)) => format!("to peer {p:?}"),
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of via (an underlay gateway) and peer",
                ))
            }
        };
        let mut cfg = self.config().clone();
        cfg.routes.push(RouteSpec { prefix: prefix.to_string(), ..spec });
        self.apply_api(cfg)?;
        info!(%prefix, %target, "static route added");
        Ok(Reply::Done { message: format!("route {prefix} {target} added") })
    }

    /// `DELETE /v1/routes/{prefix}`: removes a static route (pod CIDR routes follow `[node]`
    /// and the peers, and go with them).
    pub(super) fn del_route(&mut self, prefix: &str) -> Response {
        let net: Ipv4Net = prefix
            .trim()
            .parse()
            .map_err(|e| ApiError::invalid(format!("prefix {prefix:?}: {e}")))?;
        let mut cfg = self.config().clone();
        let before = cfg.routes.len();
        cfg.routes.retain(|r| r.prefix.parse::<Ipv4Net>() != Ok(net));
        if cfg.routes.len() == before {
            let why = match self.snapshot().l3().and_then(|t| t.routes.get(&net).copied()) {
                Some(Route::Local) => " (it is this node's pod_cidr)",
                Some(Route::Peer(_)) => " (it is a peer's pod_cidr: peer del removes it)",
                _ => "",
            };
            return Err(ApiError::not_found(format!("no static route to {net}{why}")));
        }
        self.apply_api(cfg)?;
        info!(prefix = %net, "static route removed");
        Ok(Reply::Done { message: format!("route {net} removed") })
    }

    /// `GET /v1/routes`: the LPM's routes in its own order (longest prefix first, then by
    /// address). Empty on a node that does not route.
    pub(super) fn routes_info(&self) -> Vec<RouteInfo> {
        let snap = self.snapshot();
        let Some(t) = snap.l3() else { return Vec::new() };
        t.routes
            .iter()
            .map(|(net, route)| {
                let (via, mode, next_hop, origin) = match *route {
                    Route::Local => ("local".to_string(), "local", None, "pod-cidr"),
                    Route::Peer(i) => match t.peers.get(usize::from(i)) {
                        Some(p) => (
                            p.name.clone(),
                            p.mode.name(),
                            Some(p.next_hop.to_string()),
                            if p.pod_cidr == net { "pod-cidr" } else { "static" },
                        ),
                        // The table is built with its peers; an index past them is a bug,
                        // shown rather than hidden.
                        None => (format!("#{i}"), "unknown", None, "static"),
                    },
                    Route::Gateway(i) => match t.statics.get(usize::from(i)).map(|s| &s.via) {
                        Some(StaticVia::Gateway(gw)) => {
                            (gw.to_string(), "direct", Some(gw.to_string()), "static")
                        }
                        _ => (format!("#{i}"), "unknown", None, "static"),
                    },
                };
                RouteInfo {
                    prefix: net.to_string(),
                    via,
                    mode: mode.into(),
                    next_hop,
                    origin: origin.into(),
                }
            })
            .collect()
    }

    /// Validates `cfg` whole and applies it, or refuses it with every problem named.
    pub(super) fn apply_api(&mut self, cfg: Config) -> Result<(), ApiError> {
        self.apply_checked(cfg).map_err(ApiError::invalid)
    }
}
