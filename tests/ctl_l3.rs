//! `vswitchctl`'s routing views and peer commands against a real vswitchd, as root, in network
//! namespaces: node `n1` runs the switch with one pod and an AF_XDP uplink whose far end is a
//! plain kernel host `k` (198.18.0.2, configured as peer `n2`). The test reads `show node`,
//! `show peers`, `show routes` and `show neighbors`, adds and removes peers live, checks that
//! bad peers are refused whole with messages naming the problem, and traces a routed packet.
//! A second test adds and removes static routes and ports live, under traffic.
//!
//! Addresses exist only inside the test's namespaces (pods 10.244.0.0/16, underlay
//! 198.18.0.0/15). Every wait is bounded; the namespaces go when the `Topo` drops.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::{PortSpec, Switch};

const NODE: &str = r#"
[node]
name = "n1"
pod_cidr = "10.244.1.0/24"
uplink = "uplink"
underlay_ip = "198.18.0.1/24"

[[peer]]
name = "n2"
underlay_ip = "198.18.0.2"
pod_cidr = "10.244.2.0/24"
"#;

/// The default router MAC of a node at 198.18.0.1: 0a:58 and the address.
const ROUTER_MAC: &str = "0a:58:c6:12:00:01";

fn array(v: Value, what: &str) -> Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("{what} is not an array: {v}")).clone()
}

fn peers(sw: &Switch) -> Vec<Value> {
    array(sw.ctl_json(&["show", "peers"]), "show peers")
}

fn peer(sw: &Switch, name: &str) -> Value {
    let all = peers(sw);
    all.iter().find(|p| p["name"] == name).cloned().unwrap_or_else(|| panic!("no {name}: {all:?}"))
}

fn routes(sw: &Switch) -> Vec<Value> {
    array(sw.ctl_json(&["show", "routes"]), "show routes")
}

fn route(sw: &Switch, prefix: &str) -> Option<Value> {
    routes(sw).into_iter().find(|r| r["prefix"] == prefix)
}

fn neighbor(sw: &Switch, ip: &str) -> Option<Value> {
    array(sw.ctl_json(&["show", "neighbors"]), "show neighbors").into_iter().find(|n| n["ip"] == ip)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `peer add n3 --underlay-ip IP --pod-cidr CIDR MORE...`.
fn add<'a>(ip: &'a str, cidr: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    [&["peer", "add", "n3", "--underlay-ip", ip, "--pod-cidr", cidr][..], more].concat()
}

/// Pings `addr` from `from` until a first reply (10 s at most: the first echo waits for ARP).
fn reach(topo: &Topo, sw: &Switch, from: &str, addr: &str) {
    let first = wait_for(Duration::from_secs(10), || (topo.ping(from, addr, 1) == 1).then_some(()));
    assert!(first.is_some(), "{from} -> {addr}: no reply in 10 s\n{:?}\n{}", sw.ports(), sw.log());
}

#[test]
fn routing_views_and_live_peers() {
    let mut topo = Topo::new("cl");
    topo.node("n1");
    topo.node("k");
    topo.veth("n1", "u1", "k", "u2");
    let (k, u2) = (topo.name("k"), topo.name("u2"));
    topo.sysctl("k", &["net.ipv6.conf.all.disable_ipv6=1"]);
    topo.ip(&["-n", &k, "addr", "add", "198.18.0.2/24", "dev", &u2]);
    topo.pod("a1", "n1", "10.244.1.11/24");
    topo.sysctl("a1", &["net.ipv6.conf.all.disable_ipv6=1"]);
    topo.ip(&["-n", &topo.name("a1"), "route", "add", "default", "via", "10.244.1.1"]);
    let uplink = PortSpec {
        name: "uplink".into(),
        interface: topo.name("u1"),
        vlan: 1,
        pod_netns: None,
        worker: 0,
        tap: false,
    };
    let ports = [uplink, PortSpec::pod(&topo, "a1", 1)];
    let sw = Switch::start_with(&mut topo, "n1", &ports, NODE);
    sw.wait_attached();

    // show node: the [node] table with its defaults filled in.
    let node = sw.ctl_json(&["show", "node"]);
    assert_eq!(node["name"], "n1", "{node}");
    assert_eq!(node["pod_cidr"], "10.244.1.0/24", "{node}");
    assert_eq!(node["gateway"], "10.244.1.1", "{node}");
    assert_eq!(node["router_mac"], ROUTER_MAC, "{node}");
    assert_eq!(node["underlay_ip"], "198.18.0.1/24", "{node}");
    assert_eq!(node["underlay_gateway"], Value::Null, "{node}");
    assert_eq!(node["uplink"], "uplink", "{node}");
    assert_eq!((node["vni"].as_u64(), node["vxlan_port"].as_u64()), (Some(1), Some(8472)));

    // show peers: n2 on the uplink's subnet, so direct, and the reason says so.
    let n2 = peer(&sw, "n2");
    assert_eq!(n2["mode"], "direct", "{n2}");
    assert_eq!(n2["configured"], "auto", "{n2}");
    assert_eq!(n2["underlay_ip"], "198.18.0.2", "{n2}");
    assert_eq!(n2["pod_cidr"], "10.244.2.0/24", "{n2}");
    assert_eq!(n2["next_hop"], "198.18.0.2", "{n2}");
    assert_eq!(n2["vtep_mac"], "0a:58:c6:12:00:02", "{n2}");
    assert!(n2["reason"].as_str().is_some_and(|r| r.contains("198.18.0.0/24")), "{n2}");

    // show routes: longest prefix first; here both /24, by address.
    let r = routes(&sw);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (&r[0]["prefix"], &r[0]["via"], &r[0]["mode"], &r[0]["next_hop"]),
        (&Value::from("10.244.1.0/24"), &Value::from("local"), &Value::from("local"), &Value::Null)
    );
    assert_eq!(
        (&r[1]["prefix"], &r[1]["via"], &r[1]["mode"], &r[1]["next_hop"]),
        (
            &Value::from("10.244.2.0/24"),
            &Value::from("n2"),
            &Value::from("direct"),
            &Value::from("198.18.0.2")
        )
    );
    let table = sw.ctl(&["show", "routes"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("PREFIX         VIA    MODE    NEXT-HOP    ORIGIN\n"), "{text}");
    assert!(text.contains("10.244.2.0/24  n2     direct  198.18.0.2  pod-cidr\n"), "{text}");

    // The switch answers the pod for its gateway and the kernel host for its underlay
    // address, and learns both neighbours from their ARP.
    reach(&topo, &sw, "a1", "10.244.1.1");
    reach(&topo, &sw, "k", "198.18.0.1");
    let pod_mac = topo.mac("a1", "eth0");
    let k_mac = topo.mac("k", &u2);
    let learned = wait_for(Duration::from_secs(5), || {
        Some((neighbor(&sw, "10.244.1.11")?, neighbor(&sw, "198.18.0.2")?))
    });
    let (pod, host) = learned.unwrap_or_else(|| {
        panic!("neighbours not learned: {}", sw.ctl_json(&["show", "neighbors"]))
    });
    assert_eq!((&pod["mac"], &pod["port"]), (&Value::from(pod_mac.clone()), &Value::from("a1")));
    assert_eq!(
        (&host["mac"], &host["port"]),
        (&Value::from(k_mac.clone()), &Value::from("uplink"))
    );
    assert_eq!(peer(&sw, "n2")["next_hop_mac"], k_mac.as_str());

    // The metrics count what the switch answered, and the peer.
    let metrics = String::from_utf8_lossy(&sw.ctl(&["metrics"]).stdout).into_owned();
    assert!(metrics.contains("vswitch_peers{mode=\"direct\"} 1\n"), "{metrics}");
    let counted = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(counted("vswitch_worker_arp_sent_total{worker=\"0\",type=\"reply\"}") >= 2);
    assert!(counted("vswitch_worker_icmp_sent_total{worker=\"0\",type=\"echo_reply\"}") >= 2);

    // Bad peers are refused whole, the message naming the problem; nothing changes.
    let e = sw.ctl_refused(&add("198.19.0.3", "10.244.3.0/24", &[]));
    assert!(e.contains("198.19.0.3") && e.contains("underlay_gateway"), "{e}");
    let e = sw.ctl_refused(&add("198.18.0.3", "10.244.2.128/25", &[]));
    assert!(e.contains("10.244.2.128/25") && e.contains("overlaps") && e.contains("\"n2\""), "{e}");
    let e = sw.ctl_refused(&add("198.18.0.1", "10.244.3.0/24", &[]));
    assert!(e.contains("198.18.0.1") && e.contains("own underlay address"), "{e}");
    let e = sw.ctl_refused(&add("198.18.0.3", "10.244.3.0/24", &["--mode", "x"]));
    assert!(e.contains("mode \"x\""), "{e}");
    let e = sw.ctl_refused(&add("198.18.0.300", "10.244.3.0/24", &[]));
    assert!(e.contains("underlay_ip \"198.18.0.300\""), "{e}");
    let names: Vec<Value> = peers(&sw).iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [Value::from("n2")]);
    assert_eq!(routes(&sw).len(), 2);

    // A good one is applied live, in the mode asked for.
    let o = sw.ctl(&add("198.18.0.3", "10.244.3.0/24", &["--mode", "vxlan"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let n3 = peer(&sw, "n3");
    assert_eq!((&n3["mode"], &n3["configured"]), (&Value::from("vxlan"), &Value::from("vxlan")));
    assert_eq!(n3["next_hop"], "198.18.0.3", "{n3}");
    let r3 = route(&sw, "10.244.3.0/24").expect("route to n3's pods");
    assert_eq!((&r3["via"], &r3["mode"]), (&Value::from("n3"), &Value::from("vxlan")));
    assert_eq!(peer(&sw, "n2")["mode"], "direct");

    // Removed live; an unknown peer is not found (exit 1, the daemon's message).
    let o = sw.ctl(&["peer", "del", "n3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(route(&sw, "10.244.3.0/24").is_none());
    assert_eq!(peers(&sw).len(), 1);
    assert_eq!(sw.ctl_refused(&["peer", "del", "n9"]), "error: no peer \"n9\"\n");

    // A packet from the pod to the router MAC goes through the l3 stage.
    let trace = sw.ctl_json(&[
        "trace",
        "--in-port",
        "a1",
        "--src",
        &pod_mac,
        "--dst",
        ROUTER_MAC,
        "--ip",
        "10.244.1.11,10.244.2.11",
        "--proto",
        "icmp",
    ]);
    let steps = array(trace["steps"].clone(), "trace steps");
    let l3 = steps.iter().find(|s| s["stage"] == "l3");
    assert!(l3.is_some(), "no l3 step: {trace}");
}

/// Static routes and ports, added and removed live while an unrelated ping runs, which must
/// lose nothing. `k` is a kernel router on the underlay (198.18.0.2) in front of a host `x` on
/// 198.19.5.0/24, a network only a static route reaches.
#[test]
fn static_routes_and_ports_live() {
    let mut topo = Topo::new("cr");
    topo.node("n1");
    topo.node("k");
    topo.node("x");
    topo.veth("n1", "u1", "k", "u2");
    topo.veth("k", "kx", "x", "xk");
    let (k, x, u2) = (topo.name("k"), topo.name("x"), topo.name("u2"));
    let (kx, xk) = (topo.name("kx"), topo.name("xk"));
    topo.sysctl("k", &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv4.ip_forward=1"]);
    topo.sysctl("x", &["net.ipv6.conf.all.disable_ipv6=1"]);
    topo.ip(&["-n", &k, "addr", "add", "198.18.0.2/24", "dev", &u2]);
    topo.ip(&["-n", &k, "addr", "add", "198.19.5.1/24", "dev", &kx]);
    topo.ip(&["-n", &k, "route", "add", "10.244.1.0/24", "via", "198.18.0.1"]);
    topo.ip(&["-n", &x, "addr", "add", "198.19.5.2/24", "dev", &xk]);
    topo.ip(&["-n", &x, "route", "add", "default", "via", "198.19.5.1"]);
    for (pod, addr) in [("a1", "10.244.1.11/24"), ("a2", "10.244.1.12/24")] {
        topo.pod(pod, "n1", addr);
        topo.ip(&["-n", &topo.name(pod), "route", "add", "default", "via", "10.244.1.1"]);
    }
    let ports = [PortSpec::uplink(&topo, "u1"), PortSpec::pod(&topo, "a1", 1)];
    let sw = Switch::start_with(&mut topo, "n1", &ports, NODE);
    sw.wait_attached();
    reach(&topo, &sw, "a1", "198.18.0.2");

    // The unrelated flow: a1 to the kernel router, 100 pings a second for 20 s, through every
    // change.
    let steady =
        topo.spawn("a1", "ping", &["-c", "2000", "-i", "0.01", "-W", "1", "-q", "198.18.0.2"]);

    // No route to x yet: the switch answers net unreachable.
    let out = topo.ping_text("a1", &["-c", "1", "-W", "2", "198.19.5.2"]);
    assert!(out.contains("Destination Net Unreachable"), "{out}");

    // A static route via the kernel router reaches it.
    let o = sw.ctl(&["route", "add", "198.19.5.0/24", "--via", "198.18.0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = route(&sw, "198.19.5.0/24").expect("the static route is listed");
    assert_eq!(
        (&r["via"], &r["mode"], &r["next_hop"], &r["origin"]),
        (
            &Value::from("198.18.0.2"),
            &Value::from("direct"),
            &Value::from("198.18.0.2"),
            &Value::from("static")
        )
    );
    reach(&topo, &sw, "a1", "198.19.5.2");
    let metrics = String::from_utf8_lossy(&sw.ctl(&["metrics"]).stdout).into_owned();
    assert!(metrics.contains("vswitch_routes{origin=\"static\"} 1\n"), "{metrics}");

    // Conflicts and nonsense are refused whole, naming the problem; the table is unchanged.
    let e = sw.ctl_refused(&["route", "add", "198.19.5.0/24", "--via", "198.18.0.3"]);
    assert!(e.contains("198.19.5.0/24") && e.contains("exists"), "{e}");
    let e = sw.ctl_refused(&["route", "add", "10.244.1.0/25", "--via", "198.18.0.2"]);
    assert!(e.contains("inside this node's pod_cidr"), "{e}");
    let e = sw.ctl_refused(&["route", "add", "198.20.0.0/16", "--via", "198.30.0.1"]);
    assert!(e.contains("198.30.0.1") && e.contains("uplink's subnet"), "{e}");
    let e = sw.ctl_refused(&["route", "add", "198.20.0.0/16", "--peer", "n7"]);
    assert!(e.contains("\"n7\""), "{e}");
    let e = sw.ctl_refused(&["route", "add", "198.20.0.0/33", "--via", "198.18.0.2"]);
    assert!(e.contains("198.20.0.0/33"), "{e}");
    let e = sw.ctl_refused(&["route", "del", "10.244.2.0/24"]);
    assert!(e.contains("peer's pod_cidr"), "{e}");
    assert_eq!(routes(&sw).len(), 3);

    // A port added live switches at once; a duplicate, a missing interface, a bad VLAN are
    // refused; the pods' subnet is one L2 segment, so a2 reaches a1 directly.
    let a2_if = topo.name("a2");
    let a2_ns = format!("/var/run/netns/{}", topo.name("a2"));
    let add = [
        "port",
        "add",
        "a2",
        "--interface",
        &a2_if,
        "--access",
        "1",
        "--pod-netns",
        &a2_ns,
        "--pod-interface",
        "eth0",
    ];
    let added = sw.ctl_json(&add);
    assert_eq!((&added["name"], &added["vlan"]), (&Value::from("a2"), &Value::from(1)), "{added}");
    reach(&topo, &sw, "a2", "10.244.1.11");
    reach(&topo, &sw, "a2", "198.19.5.2");
    let e = sw.ctl_refused(&add);
    assert!(e.contains("\"a2\" exists"), "{e}");
    let e = sw.ctl_refused(&["port", "add", "a3", "--interface", "nonexistent0"]);
    assert!(e.contains("nonexistent0"), "{e}");
    let e = sw.ctl_refused(&["port", "add", "a3", "--interface", &a2_if, "--access", "4095"]);
    assert!(e.contains("vlan") && e.contains("4095"), "{e}");
    let e = sw.ctl_refused(&["port", "del", "uplink"]);
    assert!(e.contains("node.uplink"), "{e}");
    assert_eq!(sw.ctl_refused(&["port", "del", "a9"]), "error: unknown port \"a9\"\n");

    // Removed live: a2 is cut off, and the port is gone.
    let o = sw.ctl(&["port", "del", "a2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!sw.ports().iter().any(|p| p.name == "a2"));
    assert_eq!(topo.ping("a2", "10.244.1.11", 2), 0);

    // And the static route goes: net unreachable again.
    let o = sw.ctl(&["route", "del", "198.19.5.0/24"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = topo.ping_text("a1", &["-c", "1", "-W", "2", "198.19.5.2"]);
    assert!(out.contains("Destination Net Unreachable"), "{out}");

    // Not one packet of the unrelated flow was lost.
    let done = topo.stop_wait(steady, Duration::from_secs(40)).expect("ping output");
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "{text}\nping's stderr: {}\nping's exit: {:?}",
        String::from_utf8_lossy(&done.stderr),
        done.status
    );
}
