//! The CNI operations: ADD, DEL, CHECK, GC, STATUS and VERSION.

use std::fs::File;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use vswitch_api::{Client, ClientError, ErrorKind, PodAttachment, Reply, Request};

use crate::config::{format_mac, Env, NetConf, PortType, LATEST_VERSION, SUPPORTED_VERSIONS};
use crate::error::{
    CniError, Result, CHECK_FAILED, INVALID_CONFIG, IO_FAILURE, IPAM_NOT_AVAILABLE, NOT_AVAILABLE,
    SWITCH_REFUSED, TRY_AGAIN,
};
use crate::ipam::{parse_cidr, Ipam, IpamResult, Route};
use crate::netlink;
use crate::timing::Steps;

/// How long a reachability probe of vswitchd may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon may take to attach or detach a pod (it builds an AF_XDP socket).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `VERSION`: the versions this plugin speaks.
pub fn version(stdin: &[u8]) -> Value {
    let asked = crate::config::version_hint(stdin);
    json!({
        "cniVersion": asked.as_deref().unwrap_or(LATEST_VERSION),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

fn client(conf: &NetConf, timeout: Duration) -> Client {
    Client::new(&conf.socket).with_timeout(timeout)
}

/// Whether `e` means nobody answers on the socket.
fn unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::DaemonNotRunning { .. } | ClientError::Connect { .. })
        || matches!(e, ClientError::Api(a) if a.kind == ErrorKind::Unavailable)
}

/// The CNI error for a failed call to vswitchd about `what`.
fn daemon_error(e: ClientError, what: &str) -> CniError {
    let code = match &e {
        _ if unreachable(&e) => TRY_AGAIN,
        ClientError::Api(a) if a.kind == ErrorKind::Invalid => INVALID_CONFIG,
        ClientError::Api(_) => SWITCH_REFUSED,
        _ => IO_FAILURE,
    };
    CniError::new(code, format!("{what}: {e}"))
}

fn probe(conf: &NetConf) -> Result<()> {
    match client(conf, PROBE_TIMEOUT).call_blocking(Request::Status) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut err = daemon_error(e, "vswitchd does not answer");
            // Whatever the reason, the switch is not ready for pods: try again later.
            err.code = TRY_AGAIN;
            Err(err)
        }
    }
}

fn ipam(conf: &NetConf, env: &Env) -> Result<Option<Ipam>> {
    let cache = conf.socket.parent();
    conf.ipam.as_ref().map(|i| Ipam::find(&i.plugin, env).map(|p| p.with_cache(cache))).transpose()
}

/// The routes to install: IPAM's, a route without a gateway getting the gateway of its
/// family, plus a default route via the gateway of each family that has one and no default.
fn routes_for(r: &IpamResult) -> Vec<Route> {
    let gateway =
        |v4: bool| r.ips.iter().filter(|ip| ip.addr.is_ipv4() == v4).find_map(|ip| ip.gateway);
    let mut routes: Vec<Route> = r
        .routes
        .iter()
        .map(|route| Route {
            gw: route.gw.or_else(|| gateway(route.dst.is_ipv4())),
            ..route.clone()
        })
        .collect();
    for v4 in [true, false] {
        let has_default = routes.iter().any(|rt| rt.dst.is_ipv4() == v4 && rt.prefix == 0);
        if let (false, Some(gw)) = (has_default, gateway(v4)) {
            let dst = if v4 {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            };
            routes.push(Route { dst, prefix: 0, gw: Some(gw) });
        }
    }
    routes
}

/// What ADD has done so far, for the rollback.
#[derive(Default)]
struct Progress {
    veth: bool,
    attach_sent: bool,
}

/// `ADD`: IPAM, veth pair, addresses and routes, the switch port. Anything failing midway is
/// undone; the result (merged into `prevResult` in a chain) is returned.
pub fn add(env: &Env, conf: &NetConf, t: &mut Steps) -> Result<Value> {
    let netns = env.netns.clone().expect("Env::parse checks CNI_NETNS for ADD");
    let ns = netlink::open_netns(&netns)?;
    t.mark("open_netns");
    probe(conf)?;
    t.mark("probe");
    let port_type = port_type(env, conf)?;
    let ipam = ipam(conf, env)?;
    // IPAM runs (a process of its own) while the veth pair is made: neither needs the other.
    let running = ipam.as_ref().map(|i| i.start_add(conf)).transpose()?;
    t.mark("ipam_start");
    let host = netlink::host_ifname(&env.container_id, &env.ifname);
    let mut progress = Progress::default();
    // A veth pod's pair exists before the switch sees it, its host end up; a TAP pod's
    // interface is made by the switch.
    let host_mac = match port_type {
        PortType::Tap => Ok(Vec::new()),
        PortType::Afxdp => netlink::create_veth(&host, &env.ifname, &ns, conf.mtu, conf.mac),
    };
    progress.veth = port_type == PortType::Afxdp && host_mac.is_ok();
    t.mark("veth");
    let ipam_result = match (&ipam, running) {
        (Some(i), Some(r)) => i.finish_add(r),
        _ => Ok(IpamResult::default()),
    };
    t.mark("ipam");
    let outcome = match (ipam_result, host_mac) {
        (Ok(r), Ok(mac)) => {
            wire(env, conf, port_type, &ns, &netns, &host, &mac, &r, &mut progress, t)
        }
        (Ok(_), Err(e)) => Err(e),
        // IPAM assigned nothing: only the veth (if made) to undo, as IPAM failing first did.
        (Err(e), _) => {
            if progress.veth {
                let _ = netlink::delete_link(&host);
            }
            return Err(e);
        }
    };
    let err = match outcome {
        Ok(result) => return Ok(result),
        Err(e) => e,
    };
    // Roll back, newest first; what fails here is reported along with the original error.
    let mut notes = Vec::new();
    if progress.attach_sent {
        let req = Request::DetachPod {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        };
        if let Err(e) = client(conf, CALL_TIMEOUT).call_blocking(req) {
            notes.push(format!("detaching from vswitchd: {e}"));
        }
    }
    if progress.veth {
        if let Err(e) = netlink::delete_link(&host) {
            notes.push(format!("deleting {host}: {}", e.msg));
        }
    }
    if let Some(i) = &ipam {
        if let Err(e) = i.del(conf) {
            notes.push(format!("releasing the addresses: {}", e.msg));
        }
    }
    let rolled = if notes.is_empty() {
        "rolled back".to_string()
    } else {
        format!("rollback incomplete: {}", notes.join("; "))
    };
    let details =
        if err.details.is_empty() { rolled } else { format!("{}; {rolled}", err.details) };
    Err(err.details(details))
}

/// The rest of ADD once IPAM answered and the veth pair (for a veth pod) exists.
#[allow(clippy::too_many_arguments)]
fn wire(
    env: &Env,
    conf: &NetConf,
    port_type: PortType,
    ns: &File,
    netns: &str,
    host: &str,
    host_mac: &[u8],
    ipam: &IpamResult,
    progress: &mut Progress,
    t: &mut Steps,
) -> Result<Value> {
    let tap = port_type == PortType::Tap;
    let routes = routes_for(ipam);
    let addrs: Vec<(IpAddr, u8)> = ipam.ips.iter().map(|ip| (ip.addr, ip.prefix)).collect();
    // A veth pod is configured before the switch sees it; a TAP pod's interface is made by
    // the switch, so it is configured after the attachment.
    let (host, mut pod_mac) = if tap {
        ("", Vec::new())
    } else {
        let pod_mac = netlink::configure_pod(ns, netns, &env.ifname, &addrs, &routes, None)?;
        t.mark("pod_config");
        (host, pod_mac)
    };
    let attachment = PodAttachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: netns.to_string(),
        host_interface: host.to_string(),
        vlan: conf.vlan,
        mtu: conf.mtu,
        mac: conf.mac.map(|m| format_mac(&m)),
        ips: ipam.ips.iter().map(|ip| ip.cidr()).collect(),
        pod_namespace: env.arg("K8S_POD_NAMESPACE").map(str::to_string),
        pod_name: env.arg("K8S_POD_NAME").map(str::to_string),
        pod_uid: env.arg("K8S_POD_UID").map(str::to_string),
        cgroup_path: conf.cgroup_path.clone(),
        bandwidth: conf.bandwidth.clone(),
        port_type: tap.then(|| port_type.name().to_string()),
    };
    progress.attach_sent = true;
    match client(conf, CALL_TIMEOUT).call_blocking(Request::AttachPod(attachment)) {
        Ok(Reply::Port(_)) => {}
        Ok(other) => {
            return Err(CniError::new(
                IO_FAILURE,
                format!(
                    "vswitchd answered AttachPod with {}",
                    vswitch_api::wire::reply_name(&other)
                ),
            ))
        }
        Err(e) => return Err(daemon_error(e, "vswitchd did not attach the pod")),
    }
    t.mark("attach");
    if tap {
        let tap_conf = netlink::TapSetup { mtu: conf.mtu, mac: conf.mac };
        pod_mac = netlink::configure_pod(ns, netns, &env.ifname, &addrs, &routes, Some(tap_conf))?;
        t.mark("pod_config");
    }
    Ok(result(env, conf, netns, host, host_mac, &pod_mac, ipam, &routes))
}

/// The port type vswitchd lists for an attachment (absent means `afxdp`, as the API says).
fn attached_type(p: &PodAttachment) -> &str {
    p.port_type.as_deref().unwrap_or(PortType::Afxdp.name())
}

/// The pod's port type: `VSWITCH_PORT_TYPE` in `CNI_ARGS` over the pod annotation over the
/// configuration's `portType` (`tap` when absent).
fn port_type(env: &Env, conf: &NetConf) -> Result<PortType> {
    match env.arg("VSWITCH_PORT_TYPE") {
        Some(t) => PortType::parse(t, "CNI_ARGS VSWITCH_PORT_TYPE"),
        None => Ok(conf.port_type),
    }
}

/// The CNI result: `prevResult` (if any) with this attachment's interfaces, IPs and routes
/// appended.
#[allow(clippy::too_many_arguments)]
fn result(
    env: &Env,
    conf: &NetConf,
    netns: &str,
    host: &str,
    host_mac: &[u8],
    pod_mac: &[u8],
    ipam: &IpamResult,
    routes: &[Route],
) -> Value {
    let prev = conf.prev_result.clone().unwrap_or_else(|| json!({}));
    let list = |key: &str| prev.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut all_routes = list("routes");
    let with_mtu = conf.cni_version.as_str() >= "1.1.0";
    let mut iface = |name: &str, mac: &[u8], sandbox: Option<&str>| {
        let mut i = json!({"name": name, "mac": format_mac(mac)});
        if with_mtu {
            i["mtu"] = json!(conf.mtu);
        }
        if let Some(s) = sandbox {
            i["sandbox"] = json!(s);
        }
        interfaces.push(i);
        interfaces.len() - 1
    };
    if !host.is_empty() {
        iface(host, host_mac, None);
    }
    let pod_index = iface(&env.ifname, pod_mac, Some(netns));
    for ip in &ipam.ips {
        let mut v = json!({"address": ip.cidr(), "interface": pod_index});
        if let Some(gw) = ip.gateway {
            v["gateway"] = json!(gw.to_string());
        }
        ips.push(v);
    }
    all_routes.extend(routes.iter().map(Route::to_json));
    let mut out = json!({
        "cniVersion": conf.cni_version,
        "interfaces": interfaces,
        "ips": ips,
    });
    if !all_routes.is_empty() {
        out["routes"] = Value::Array(all_routes);
    }
    let dns = conf.dns.clone().or_else(|| ipam.dns.clone()).or_else(|| prev.get("dns").cloned());
    if let Some(dns) = dns {
        out["dns"] = dns;
    }
    out
}

/// `DEL`: best effort and idempotent. Detaches from the switch (a switch that is down is
/// fine), deletes the host veth if present (the pod end goes with it), releases the
/// addresses. Every step runs; the first hard failure is reported at the end. The IPAM
/// plugin (a process of its own) releases the addresses while the rest is done, as the
/// reference plugins release them first.
pub fn del(env: &Env, conf: &NetConf, t: &mut Steps) -> Result<()> {
    let mut first: Option<CniError> = None;
    let mut fail = |e: CniError| {
        eprintln!("vswitch-cni DEL: {e}");
        first.get_or_insert(e);
    };
    let ipam = ipam(conf, env).and_then(|i| {
        let running = i.as_ref().map(|i| i.start_del(conf)).transpose()?;
        Ok(i.zip(running))
    });
    t.mark("ipam_start");
    let req =
        Request::DetachPod { container_id: env.container_id.clone(), ifname: env.ifname.clone() };
    match client(conf, CALL_TIMEOUT).call_blocking(req) {
        Ok(_) => {}
        Err(e) if unreachable(&e) => eprintln!("vswitch-cni DEL: {e} (ignored)"),
        Err(ClientError::Api(a)) if a.kind == ErrorKind::NotFound => {}
        Err(e) => fail(daemon_error(e, "vswitchd did not detach the pod")),
    }
    t.mark("detach");
    let host = netlink::host_ifname(&env.container_id, &env.ifname);
    if let Err(e) = netlink::delete_link(&host) {
        fail(e);
    }
    t.mark("delete_link");
    match ipam {
        Ok(Some((i, running))) => {
            if let Err(e) = i.finish_del(running) {
                fail(e);
            }
        }
        Ok(None) => {}
        Err(e) => fail(e),
    }
    t.mark("ipam");
    first.map_or(Ok(()), Err)
}

/// `CHECK`: the pod interface exists in the netns with `prevResult`'s addresses and routes,
/// the host veth exists (an AF_XDP pod), and vswitchd lists the attachment with the pod's port
/// type and host interface. Every problem is named.
pub fn check(env: &Env, conf: &NetConf) -> Result<()> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(INVALID_CONFIG, "CHECK needs prevResult in the network configuration")
    })?;
    let netns = env.netns.clone().expect("Env::parse checks CNI_NETNS for CHECK");
    let ns = netlink::open_netns(&netns)?;
    probe(conf)?;
    if let Some(i) = ipam(conf, env)? {
        i.check(conf)?;
    }
    let prev = IpamView::parse(prev, &env.ifname, &netns)?;
    let mut problems = Vec::new();
    let state = netlink::pod_state(&ns, &netns, &env.ifname)?;
    if !state.exists {
        problems.push(format!("interface {} not found in {netns}", env.ifname));
    } else {
        for (addr, prefix) in &prev.addrs {
            if !state.addrs.contains(&(*addr, *prefix)) {
                problems.push(format!("address {addr}/{prefix} missing on {}", env.ifname));
            }
        }
        for r in &prev.routes {
            let found = state.routes.iter().any(|s| {
                s.dst == r.dst && s.prefix == r.prefix && (r.gw.is_none() || s.gw == r.gw)
            });
            if !found {
                problems.push(format!("route {} missing on {}", r.to_json(), env.ifname));
            }
        }
    }
    let port_type = port_type(env, conf)?;
    // The host interface vswitchd should list: the veth's host end, none for a TAP pod.
    let host = match port_type {
        PortType::Afxdp => netlink::host_ifname(&env.container_id, &env.ifname),
        PortType::Tap => String::new(),
    };
    if port_type == PortType::Afxdp && !netlink::link_exists(&host)? {
        problems.push(format!("host interface {host} not found"));
    }
    match client(conf, CALL_TIMEOUT).call_blocking(Request::ListPods) {
        Ok(Reply::Pods(pods)) => {
            match pods.iter().find(|p| p.container_id == env.container_id && p.ifname == env.ifname)
            {
                None => problems.push(format!(
                    "vswitchd has no attachment for container {} interface {}",
                    env.container_id, env.ifname
                )),
                Some(p) if attached_type(p) != port_type.name() => problems.push(format!(
                    "vswitchd has the pod with port type {} instead of {}",
                    attached_type(p),
                    port_type.name()
                )),
                Some(p) if p.host_interface != host => problems
                    .push(format!("vswitchd attaches {:?} instead of {host:?}", p.host_interface)),
                Some(p) if p.vlan != conf.vlan => problems.push(format!(
                    "vswitchd has the pod in VLAN {} instead of {}",
                    p.vlan, conf.vlan
                )),
                Some(_) => {}
            }
        }
        Ok(other) => problems.push(format!(
            "vswitchd answered ListPods with {}",
            vswitch_api::wire::reply_name(&other)
        )),
        Err(e) => return Err(daemon_error(e, "cannot list vswitchd's pods")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(CHECK_FAILED, problems.join("; ")))
    }
}

/// The addresses and routes `prevResult` gives the pod interface.
struct IpamView {
    addrs: Vec<(IpAddr, u8)>,
    routes: Vec<Route>,
}

impl IpamView {
    fn parse(prev: &Value, ifname: &str, netns: &str) -> Result<IpamView> {
        let interfaces =
            prev.get("interfaces").and_then(Value::as_array).cloned().unwrap_or_default();
        let index = interfaces.iter().position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox").and_then(Value::as_str) == Some(netns)
        });
        let Some(index) = index else {
            return Err(CniError::new(
                CHECK_FAILED,
                format!("prevResult has no interface {ifname} in sandbox {netns}"),
            ));
        };
        let parsed = IpamResult::parse(prev)?;
        let ips = prev.get("ips").and_then(Value::as_array).cloned().unwrap_or_default();
        let addrs = ips
            .iter()
            .filter(|ip| ip.get("interface").and_then(Value::as_u64) == Some(index as u64))
            .filter_map(|ip| ip.get("address").and_then(Value::as_str).and_then(parse_cidr))
            .collect();
        Ok(IpamView { addrs, routes: parsed.routes })
    }
}

/// `GC` (spec 1.1): detaches every pod vswitchd knows that is not among
/// `cni.dev/valid-attachments`, deletes its host veth (an AF_XDP pod; vswitchd removes a TAP
/// pod's device itself), and passes GC on to IPAM.
pub fn gc(env: &Env, conf: &NetConf) -> Result<()> {
    let valid: Vec<(String, String)> = ["cni.dev/valid-attachments", "cni.dev/attachments"]
        .iter()
        .filter_map(|k| conf.raw.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|a| {
            Some((
                a.get("containerID")?.as_str()?.to_string(),
                a.get("ifname")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut first: Option<CniError> = None;
    if let Some(i) = ipam(conf, env)? {
        if let Err(e) = i.v11(conf, "GC") {
            first = Some(e);
        }
    }
    let c = client(conf, CALL_TIMEOUT);
    let pods = match c.call_blocking(Request::ListPods) {
        Ok(Reply::Pods(p)) => p,
        Ok(other) => {
            return Err(CniError::new(
                IO_FAILURE,
                format!(
                    "vswitchd answered ListPods with {}",
                    vswitch_api::wire::reply_name(&other)
                ),
            ))
        }
        Err(e) => return Err(daemon_error(e, "cannot list vswitchd's pods")),
    };
    for p in pods {
        if valid.iter().any(|(c, i)| *c == p.container_id && *i == p.ifname) {
            continue;
        }
        // Only attachments this plugin made: a veth pod's host end carries its name; a TAP
        // pod has none (vswitchd removes its device on detach).
        let tap = attached_type(&p) == PortType::Tap.name() && p.host_interface.is_empty();
        if !tap && p.host_interface != netlink::host_ifname(&p.container_id, &p.ifname) {
            continue;
        }
        let req = Request::DetachPod { container_id: p.container_id.clone(), ifname: p.ifname };
        if let Err(e) = c.call_blocking(req) {
            first.get_or_insert(daemon_error(e, "vswitchd did not detach a stale pod"));
        }
        if !tap {
            if let Err(e) = netlink::delete_link(&p.host_interface) {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// `STATUS` (spec 1.1): ready when vswitchd answers and the IPAM plugin (if it speaks 1.1)
/// reports ready.
pub fn status(env: &Env, conf: &NetConf) -> Result<()> {
    client(conf, PROBE_TIMEOUT)
        .call_blocking(Request::Status)
        .map_err(|e| CniError::new(NOT_AVAILABLE, format!("vswitchd does not answer: {e}")))?;
    let ipam_down = |e: CniError| CniError::new(IPAM_NOT_AVAILABLE, e.msg).details(e.details);
    if let Some(i) = ipam(conf, env).map_err(ipam_down)? {
        i.v11(conf, "STATUS").map_err(ipam_down)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::IpConfig;

    #[test]
    fn default_route_via_the_gateway() {
        let r = IpamResult {
            ips: vec![IpConfig {
                addr: "10.244.1.5".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.244.1.1".parse().unwrap()),
            }],
            routes: vec![Route { dst: "10.96.0.0".parse().unwrap(), prefix: 12, gw: None }],
            dns: None,
        };
        let routes = routes_for(&r);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].gw, Some("10.244.1.1".parse().unwrap()));
        assert_eq!(routes[1].to_json(), json!({"dst": "0.0.0.0/0", "gw": "10.244.1.1"}));
    }

    #[test]
    fn port_type_cni_args_over_annotation_over_configuration() {
        let env = |args: &str| Env {
            command: crate::config::Command::Add,
            container_id: "c".into(),
            netns: Some("/var/run/netns/p".into()),
            ifname: "eth0".into(),
            args: args
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            path: Vec::new(),
        };
        let conf = |extra: &str| {
            let text =
                format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni"{extra}}}"#);
            NetConf::parse(text.as_bytes()).unwrap()
        };
        let plain = conf("");
        assert_eq!(port_type(&env(""), &plain).unwrap(), PortType::Tap, "the default");
        let afxdp = env("VSWITCH_PORT_TYPE=afxdp");
        assert_eq!(port_type(&afxdp, &plain).unwrap(), PortType::Afxdp);
        let annotated = conf(
            r#","portType":"afxdp","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"vswitch.io/port-type":"tap"}}"#,
        );
        assert_eq!(port_type(&env(""), &annotated).unwrap(), PortType::Tap);
        assert_eq!(port_type(&afxdp, &annotated).unwrap(), PortType::Afxdp, "CNI_ARGS wins");
        let e = port_type(&env("VSWITCH_PORT_TYPE=vhost"), &plain).unwrap_err();
        assert!(e.msg.contains("VSWITCH_PORT_TYPE") && e.msg.contains("vhost"), "{e}");
    }
}
