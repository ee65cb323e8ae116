//! Pods on several nodes, as root, in network namespaces: each node a namespace running
//! vswitchd with its pods on AF_XDP ports and an AF_XDP uplink on an underlay veth that holds
//! no address (the switch owns the node's underlay address). Pods on other nodes are routed,
//! directly on a shared underlay subnet or in VXLAN as Flannel does, so a kernel Flannel node
//! interoperates; the switch's gateway answers ping and sends ICMP errors; peers change live.
//!
//! Underlays use 198.18.0.0/15 and pods 10.244.0.0/16, only inside the tests' namespaces.
//! Node `nK` has pods in 10.244.K.0/24 behind gateway 10.244.K.1. Every load is bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::{NodeSpec, PeerSpec, PortSpec, Switch};

/// Floors for traffic across nodes: modest, so a loaded 2-core CI machine passes them.
const TCP_FLOOR: f64 = 50e6;
const UDP_FLOOR: f64 = 10e6;

/// Pod `pod` on node `node` at `ip` (in its node's /24), eth0 MTU `mtu`, default route via
/// the node's gateway (`.1`).
fn pod(topo: &mut Topo, pod: &str, node: &str, ip: &str, mtu: u32) {
    topo.pod(pod, node, &format!("{ip}/24"));
    let ns = topo.name(pod);
    topo.ip(&["-n", &ns, "link", "set", "eth0", "mtu", &mtu.to_string()]);
    topo.ip(&["-n", &ns, "route", "add", "default", "via", &gateway(ip)]);
}

/// Addresses the `eth0` vswitchd created in TAP pod `pod` (at `ip`/24, MTU `mtu`, up, default
/// route via the gateway), as the CNI plugin would.
fn address_tap_pod(topo: &Topo, pod: &str, ip: &str, mtu: u32) {
    let ns = topo.name(pod);
    topo.ip(&["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    topo.ip(&["-n", &ns, "link", "set", "eth0", "mtu", &mtu.to_string(), "up"]);
    topo.ip(&["-n", &ns, "route", "add", "default", "via", &gateway(ip)]);
}

/// The gateway of a pod address: `.1` of its /24.
fn gateway(ip: &str) -> String {
    let (net, _) = ip.rsplit_once('.').expect("dotted quad");
    format!("{net}.1")
}

/// Node `k`'s `[node]` table: pods 10.244.k.0/24, underlay address `underlay` ("a.b.c.d/len").
fn node_spec(k: u8, underlay: &str) -> NodeSpec {
    NodeSpec::new(&format!("n{k}"), &format!("10.244.{k}.0/24"), underlay)
}

/// Peer node `k` at `underlay_ip` with pods 10.244.k.0/24.
fn peer_spec(k: u8, underlay_ip: &str, mode: &str) -> PeerSpec {
    PeerSpec::new(&format!("n{k}"), underlay_ip, &format!("10.244.{k}.0/24"), mode)
}

/// The ports of a vswitch node: the uplink on `<prefix><uplink>` and `pods` (VLAN 1).
fn node_ports(topo: &Topo, uplink: &str, pods: &[&str]) -> Vec<PortSpec> {
    let mut ports = vec![PortSpec::uplink(topo, uplink)];
    ports.extend(pods.iter().map(|p| PortSpec::pod(topo, p, 1)));
    ports
}

/// Starts vswitchd in node namespace `node` with its uplink and pods, configured as `spec`
/// with `peers`; returns once every port is attached.
fn start_node(
    topo: &mut Topo,
    node: &str,
    uplink: &str,
    pods: &[&str],
    spec: &NodeSpec,
    peers: &[PeerSpec],
) -> Switch {
    let ports = node_ports(topo, uplink, pods);
    let sw = Switch::start_with(topo, node, &ports, &spec.toml(peers));
    sw.wait_attached();
    sw
}

/// What the switches say about themselves, for failure messages: each one's ports with their
/// counters and drop reasons, and the end of its log.
fn dump(sws: &[&Switch]) -> String {
    let mut s = String::new();
    for sw in sws {
        let log = sw.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        s += &format!("\n== {}\n", sw.dir.display());
        // Not `sw.ports()`: a daemon that died must not hide the failure being reported.
        match sw.call(Request::ListPorts) {
            Ok(Reply::Ports(ports)) => {
                for p in ports {
                    s += &format!("{}: {:?}\n", p.name, p.stats);
                }
            }
            other => s += &format!("ListPorts: {other:?}\n"),
        }
        for l in tail.iter().rev() {
            s += &format!("log: {}\n", strip_ansi(l));
        }
    }
    s
}

/// `line` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Pings `addr` from `from` until a first reply (10 s at most: the first packets to a peer may
/// wait for ARP on the uplink), then expects 3 replies to 3 pings.
fn reach(topo: &Topo, from: &str, addr: &str, sws: &[&Switch]) {
    let first = wait_for(Duration::from_secs(10), || (topo.ping(from, addr, 1) == 1).then_some(()));
    assert!(first.is_some(), "{from} -> {addr}: no reply in 10 s{}", dump(sws));
    assert_eq!(topo.ping(from, addr, 3), 3, "{from} -> {addr}{}", dump(sws));
}

/// `vswitchctl --json show peers`.
fn peers(sw: &Switch) -> Vec<Value> {
    let v = sw.ctl_json(&["show", "peers"]);
    v.as_array().unwrap_or_else(|| panic!("show peers is not an array: {v}")).clone()
}

/// Peer `name` in `show peers`.
fn peer(sw: &Switch, name: &str) -> Value {
    let all = peers(sw);
    all.iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {name}: {all:?}"))
}

/// `vswitchctl --json show routes`.
fn routes(sw: &Switch) -> Vec<Value> {
    let v = sw.ctl_json(&["show", "routes"]);
    v.as_array().unwrap_or_else(|| panic!("show routes is not an array: {v}")).clone()
}

/// The TTLs of the echo replies in ping's output.
fn reply_ttls(text: &str) -> Vec<u8> {
    text.lines()
        .filter_map(|l| l.split_once(" ttl=")?.1.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Runs iperf3 from `client` to `server_ip` (server in `server`), 2 s, bounded by `timeout`;
/// returns the bits per second the receiver got (UDP: 100 Mbit/s offered).
fn iperf3(topo: &mut Topo, client: &str, server: &str, server_ip: &str, udp: bool) -> f64 {
    let end = topo.iperf3(client, server, server_ip, udp);
    end["sum_received"]["bits_per_second"].as_f64().expect("bits_per_second")
}

/// The kernel's checksum error counters in namespace `ns` (/proc/net/snmp and
/// /proc/net/netstat, read from inside it): `IpExt.InCsumErrors`, `Udp.InCsumErrors`, ...
fn csum_errors(topo: &Topo, ns: &str) -> BTreeMap<String, u64> {
    let out = topo.exec(ns, "cat", &["/proc/net/snmp", "/proc/net/netstat"]);
    assert!(out.status.success(), "read counters in {ns}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // Each group is a line of names, then a line of values, both starting with "Group:".
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((group, rest)) = line.split_once(':') else { continue };
        let Some(keys) = names.remove(group) else {
            names.insert(group, rest);
            continue;
        };
        for (k, v) in keys.split_whitespace().zip(rest.split_whitespace()) {
            if k == "InCsumErrors" {
                m.insert(format!("{group}.{k}"), v.parse().unwrap_or(u64::MAX));
            }
        }
    }
    assert!(m.contains_key("Udp.InCsumErrors") && m.contains_key("IpExt.InCsumErrors"), "{m:?}");
    m
}

/// n1 and n2 joined by one underlay veth (`u1` in n1, `u2` in n2, 198.18.0.1 and .2/24 owned
/// by the switches), pods a1, a2 on n1 (10.244.1.11, .12) and b1, b2 on n2 (10.244.2.11, .12)
/// with eth0 MTU `mtu`, each node running vswitchd with the other as a peer in `mode`.
fn two_nodes(tag: &str, mode: &str, mtu: u32) -> (Topo, Switch, Switch) {
    let mut topo = Topo::new(tag);
    topo.node("n1");
    topo.node("n2");
    topo.veth("n1", "u1", "n2", "u2");
    for (p, n, ip) in [
        ("a1", "n1", "10.244.1.11"),
        ("a2", "n1", "10.244.1.12"),
        ("b1", "n2", "10.244.2.11"),
        ("b2", "n2", "10.244.2.12"),
    ] {
        pod(&mut topo, p, n, ip, mtu);
    }
    let sw1 = start_node(
        &mut topo,
        "n1",
        "u1",
        &["a1", "a2"],
        &node_spec(1, "198.18.0.1/24"),
        &[peer_spec(2, "198.18.0.2", mode)],
    );
    let sw2 = start_node(
        &mut topo,
        "n2",
        "u2",
        &["b1", "b2"],
        &node_spec(2, "198.18.0.2/24"),
        &[peer_spec(1, "198.18.0.1", mode)],
    );
    (topo, sw1, sw2)
}

#[test]
fn two_nodes_direct_routing() {
    let (mut topo, sw1, sw2) = two_nodes("ma", "auto", 1500);
    let sws = [&sw1, &sw2];
    // The gateway is the switch: it answers ARP (with the default router MAC, 0a:58 and the
    // node's underlay address 198.18.0.1) and ping.
    reach(&topo, "a1", "10.244.1.1", &sws);
    reach(&topo, "b1", "10.244.2.1", &sws);
    let neigh = topo.exec("a1", "ip", &["-j", "neigh", "show", "10.244.1.1", "dev", "eth0"]);
    let neigh: Value = serde_json::from_slice(&neigh.stdout).expect("ip -j neigh");
    assert_eq!(neigh[0]["lladdr"], "0a:58:c6:12:00:01", "gateway MAC: {neigh}");
    // Same node: switched.
    reach(&topo, "a1", "10.244.1.12", &sws);
    reach(&topo, "b2", "10.244.2.11", &sws);
    // Across nodes, both ways: routed, so the TTL went down.
    reach(&topo, "a1", "10.244.2.11", &sws);
    reach(&topo, "b2", "10.244.1.12", &sws);
    let text = topo.ping_text("a1", &["-c", "3", "-i", "0.2", "-W", "1", "10.244.2.11"]);
    let ttls = reply_ttls(&text);
    assert!(ttls.len() == 3 && ttls.iter().all(|&t| t < 64), "not routed: {text}");
    // Same subnet underlay in auto mode: direct routing.
    let p = peer(&sw1, "n2");
    assert_eq!(p["mode"], "direct", "{p}");
    assert_eq!(p["underlay_ip"], "198.18.0.2", "{p}");
    assert_eq!(p["pod_cidr"], "10.244.2.0/24", "{p}");
    assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    assert_eq!(peer(&sw2, "n1")["mode"], "direct");
    // The route to n2's pods goes to n2 (named, or by its underlay address).
    let r = routes(&sw1);
    assert!(
        r.iter().any(|r| r["prefix"] == "10.244.2.0/24"
            && r["via"].as_str().is_some_and(|v| v == "n2" || v.contains("198.18.0.2"))),
        "no route to n2's pods via n2: {r:?}"
    );
    // Bulk traffic across nodes.
    let tcp = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(tcp > TCP_FLOOR, "TCP n1 -> n2: {tcp} bit/s{}", dump(&sws));
    let udp = iperf3(&mut topo, "b2", "a2", "10.244.1.12", true);
    assert!(udp > UDP_FLOOR, "UDP n2 -> n1: {udp} bit/s{}", dump(&sws));
    let up = sw1.port("uplink").stats;
    assert!(up.tx_packets > 1000 && up.rx_packets > 1000, "uplink {up:?}");
    // ICMP errors from the gateway: TTL expiring at the first hop, and no route.
    let text = topo.ping_text("a1", &["-t", "1", "-c", "2", "-i", "0.3", "-W", "1", "10.244.2.11"]);
    assert!(
        text.contains("From 10.244.1.1 ") && text.contains("Time to live exceeded"),
        "ping -t 1 across nodes: {text}"
    );
    let text = topo.ping_text("a1", &["-c", "2", "-i", "0.3", "-W", "1", "10.244.99.5"]);
    assert!(text.contains("Destination Net Unreachable"), "ping without a route: {text}");
    eprintln!("direct routing: TCP {:.2} Gbit/s, UDP {:.0} Mbit/s", tcp / 1e9, udp / 1e6);
}

#[test]
fn two_nodes_vxlan() {
    let (mut topo, sw1, sw2) = two_nodes("mb", "vxlan", 1450);
    let sws = [&sw1, &sw2];
    reach(&topo, "a1", "10.244.2.11", &sws);
    reach(&topo, "b2", "10.244.1.12", &sws);
    for (sw, other) in [(&sw1, "n2"), (&sw2, "n1")] {
        let p = peer(sw, other);
        assert_eq!(p["mode"], "vxlan", "{p}");
        assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    }
    let tcp = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(tcp > TCP_FLOOR, "TCP n1 -> n2 in VXLAN: {tcp} bit/s{}", dump(&sws));
    let back = iperf3(&mut topo, "b2", "a2", "10.244.1.12", false);
    assert!(back > TCP_FLOOR, "TCP n2 -> n1 in VXLAN: {back} bit/s{}", dump(&sws));
    // A pod that believes in 1500 bytes: a full-size DF packet does not fit the tunnel
    // (1500 - 50 bytes of VXLAN headers), and the gateway says so; 1450 bytes do fit.
    topo.ip(&["-n", &topo.name("a1"), "link", "set", "eth0", "mtu", "1500"]);
    let big = ["-M", "do", "-s", "1472", "-c", "2", "-i", "0.3", "-W", "1", "10.244.2.11"];
    let text = topo.ping_text("a1", &big);
    assert!(text.contains("Frag needed and DF set (mtu = 1450)"), "1500-byte DF ping: {text}");
    let fits = ["-M", "do", "-s", "1422", "-c", "3", "-i", "0.2", "-W", "1", "10.244.2.11"];
    let text = topo.ping_text("a1", &fits);
    assert!(text.contains("3 received"), "1450-byte DF ping: {text}{}", dump(&sws));
    eprintln!("VXLAN: TCP {:.2} / {:.2} Gbit/s", tcp / 1e9, back / 1e9);
}

/// A namespace `f` holding the bridge `br0` with one leg per `(node, ifname)`: the veth end
/// `<prefix><ifname>` in `node` and `<prefix>f<ifname>` on the bridge.
fn fabric(topo: &mut Topo, legs: &[(&str, &str)]) {
    topo.node("f");
    let f = topo.name("f");
    topo.ip(&["-n", &f, "link", "add", "br0", "type", "bridge"]);
    topo.ip(&["-n", &f, "link", "set", "br0", "up"]);
    for (node, ifname) in legs {
        let leg = format!("f{ifname}");
        topo.veth(node, ifname, "f", &leg);
        topo.ip(&["-n", &f, "link", "set", &topo.name(&leg), "master", "br0"]);
    }
}

#[test]
fn three_nodes_mixed_direct_and_vxlan() {
    let mut topo = Topo::new("mc");
    for n in ["n1", "n2", "n3", "r"] {
        topo.node(n);
    }
    // n1, n2 and the router r on one L2 underlay (198.18.0.0/24); n3 behind r (198.19.0.0/24).
    fabric(&mut topo, &[("n1", "u1"), ("n2", "u2"), ("r", "r0")]);
    topo.veth("r", "r3", "n3", "u3");
    let r = topo.name("r");
    topo.ip(&["-n", &r, "addr", "add", "198.18.0.254/24", "dev", &topo.name("r0")]);
    topo.ip(&["-n", &r, "addr", "add", "198.19.0.254/24", "dev", &topo.name("r3")]);
    topo.sysctl("r", &["net.ipv4.ip_forward=1"]);
    // Pods at the VXLAN MTU everywhere, as Flannel sets it when any path may be a tunnel.
    pod(&mut topo, "a1", "n1", "10.244.1.11", 1450);
    pod(&mut topo, "b1", "n2", "10.244.2.11", 1450);
    pod(&mut topo, "c1", "n3", "10.244.3.11", 1450);
    let spec = |k: u8, underlay: &str, gw: &str| NodeSpec {
        underlay_gateway: Some(gw.into()),
        ..node_spec(k, underlay)
    };
    let all = [
        peer_spec(1, "198.18.0.1", "auto"),
        peer_spec(2, "198.18.0.2", "auto"),
        peer_spec(3, "198.19.0.3", "auto"),
    ];
    let others = |k: usize| -> Vec<PeerSpec> {
        all.iter().enumerate().filter(|(i, _)| i + 1 != k).map(|(_, p)| p.clone()).collect()
    };
    let sw1 = start_node(
        &mut topo,
        "n1",
        "u1",
        &["a1"],
        &spec(1, "198.18.0.1/24", "198.18.0.254"),
        &others(1),
    );
    let sw2 = start_node(
        &mut topo,
        "n2",
        "u2",
        &["b1"],
        &spec(2, "198.18.0.2/24", "198.18.0.254"),
        &others(2),
    );
    let sw3 = start_node(
        &mut topo,
        "n3",
        "u3",
        &["c1"],
        &spec(3, "198.19.0.3/24", "198.19.0.254"),
        &others(3),
    );
    let sws = [&sw1, &sw2, &sw3];
    // The switches own their underlay addresses: the router's ARP and pings are answered.
    for u in ["198.18.0.1", "198.18.0.2", "198.19.0.3"] {
        reach(&topo, "r", u, &sws);
    }
    // n1 reaches n2 directly, n3 only through the router, so in VXLAN.
    let p2 = peer(&sw1, "n2");
    assert_eq!(p2["mode"], "direct", "{p2}");
    let p3 = peer(&sw1, "n3");
    assert_eq!(p3["mode"], "vxlan", "{p3}");
    assert!(p3["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p3}");
    assert_eq!(peer(&sw3, "n1")["mode"], "vxlan");
    assert_eq!(peer(&sw2, "n3")["mode"], "vxlan");
    for (from, to) in [
        ("a1", "10.244.2.11"),
        ("b1", "10.244.1.11"),
        ("a1", "10.244.3.11"),
        ("c1", "10.244.1.11"),
        ("b1", "10.244.3.11"),
        ("c1", "10.244.2.11"),
    ] {
        reach(&topo, from, to, &sws);
    }
    let tcp = iperf3(&mut topo, "a1", "c1", "10.244.3.11", false);
    assert!(tcp > TCP_FLOOR, "TCP n1 -> n3 in VXLAN through r: {tcp} bit/s{}", dump(&sws));
    eprintln!("n1 -> n3 via router: TCP {:.2} Gbit/s", tcp / 1e9);
}

/// Makes node namespace `node` a kernel Flannel node (vxlan backend), as flanneld and the CNI
/// bridge plugin leave it: the underlay address 198.18.0.`k`/24 on `<prefix><underlay>`, the
/// bridge `cni0` (10.244.`k`.1/24) with `pods` attached, and the VTEP `flannel.1` (VNI 1, UDP
/// 8472, MTU 1450, 10.244.`k`.0/32). Returns flannel.1's MAC.
fn flannel_node(topo: &Topo, node: &str, underlay: &str, k: u8, pods: &[&str]) -> String {
    flannel_node_with(topo, node, underlay, k, pods, false)
}

/// [`flannel_node`]; `offload` leaves the underlay veth's checksum and segmentation offloads on,
/// so its VXLAN packets reach the peer as the kernel built them (GSO, partial checksums), as a
/// TAP uplink takes them.
fn flannel_node_with(
    topo: &Topo,
    node: &str,
    underlay: &str,
    k: u8,
    pods: &[&str],
    offload: bool,
) -> String {
    let ns = topo.name(node);
    let dev = topo.name(underlay);
    let local = format!("198.18.0.{k}");
    topo.sysctl(node, &["net.ipv4.ip_forward=1"]);
    topo.ip(&["-n", &ns, "addr", "add", &format!("{local}/24"), "dev", &dev]);
    // The veth stands for a wire, which carries finished checksums (a NIC completes them); a
    // veth would hand the peer's AF_XDP socket CHECKSUM_PARTIAL frames with half-done ones.
    if !offload {
        let out = topo.exec(node, "ethtool", &["-K", &dev, "tx", "off"]);
        assert!(out.status.success(), "ethtool -K {dev} tx off: {out:?}");
    }
    topo.ip(&["-n", &ns, "link", "add", "cni0", "type", "bridge"]);
    topo.ip(&["-n", &ns, "link", "set", "cni0", "mtu", "1450"]);
    topo.ip(&["-n", &ns, "addr", "add", &format!("10.244.{k}.1/24"), "dev", "cni0"]);
    topo.ip(&["-n", &ns, "link", "set", "cni0", "up"]);
    for p in pods {
        let host = topo.name(p);
        topo.ip(&["-n", &ns, "link", "set", &host, "mtu", "1450", "master", "cni0"]);
    }
    topo.ip(&[
        "-n",
        &ns,
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "local",
        &local,
        "dev",
        &dev,
        "dstport",
        "8472",
        "nolearning",
    ]);
    topo.ip(&["-n", &ns, "link", "set", "flannel.1", "mtu", "1450", "up"]);
    topo.ip(&["-n", &ns, "addr", "add", &format!("10.244.{k}.0/32"), "dev", "flannel.1"]);
    topo.mac(node, "flannel.1")
}

/// What flanneld programs on `node` for the remote node `k` (VTEP MAC `vtep_mac`, underlay
/// 198.18.0.`k`): the neighbour 10.244.k.0, the VTEP's forwarding entry, and the route.
fn flannel_remote(topo: &Topo, node: &str, k: u8, vtep_mac: &str) {
    let ns = topo.name(node);
    let vtep_ip = format!("10.244.{k}.0");
    topo.ip(&[
        "-n",
        &ns,
        "neigh",
        "replace",
        &vtep_ip,
        "lladdr",
        vtep_mac,
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ]);
    let out = std::process::Command::new("bridge")
        .args(["-n", &ns, "fdb", "append", vtep_mac, "dev", "flannel.1"])
        .args(["dst", &format!("198.18.0.{k}"), "self", "permanent"])
        .output()
        .expect("run bridge");
    assert!(out.status.success(), "bridge fdb append: {out:?}");
    let cidr = format!("10.244.{k}.0/24");
    topo.ip(&["-n", &ns, "route", "add", &cidr, "via", &vtep_ip, "dev", "flannel.1", "onlink"]);
}

#[test]
fn kernel_flannel_vxlan_interop() {
    let mut topo = Topo::new("md");
    topo.node("n1");
    topo.node("n2");
    topo.veth("n1", "u1", "n2", "u2");
    pod(&mut topo, "a1", "n1", "10.244.1.11", 1450);
    pod(&mut topo, "b1", "n2", "10.244.2.11", 1450);
    // n2: the kernel, set up as Flannel does, with n1 (the switch) as its remote node.
    const ROUTER_MAC: &str = "0a:58:0a:f4:01:01";
    let vtep2 = flannel_node(&topo, "n2", "u2", 2, &["b1"]);
    flannel_remote(&topo, "n2", 1, ROUTER_MAC);
    // n1: vswitchd, n2 a VXLAN peer whose inner MAC is its flannel.1's.
    let n1 = NodeSpec { router_mac: Some(ROUTER_MAC.into()), ..node_spec(1, "198.18.0.1/24") };
    let n2 = PeerSpec { vtep_mac: Some(vtep2), ..peer_spec(2, "198.18.0.2", "vxlan") };
    let sw = start_node(&mut topo, "n1", "u1", &["a1"], &n1, &[n2]);
    let sws = [&sw];
    assert_eq!(peer(&sw, "n2")["mode"], "vxlan");
    // The switch answers ARP and ping for its underlay address on the wire.
    reach(&topo, "n2", "198.18.0.1", &sws);
    reach(&topo, "a1", "10.244.1.1", &sws);
    let counted = ["n2", "a1", "b1"].map(|ns| csum_errors(&topo, ns));
    reach(&topo, "a1", "10.244.2.11", &sws);
    reach(&topo, "b1", "10.244.1.11", &sws);
    let out = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(out > TCP_FLOOR, "TCP switch -> Flannel node: {out} bit/s{}", dump(&sws));
    let back = iperf3(&mut topo, "b1", "a1", "10.244.1.11", false);
    assert!(back > TCP_FLOOR, "TCP Flannel node -> switch: {back} bit/s{}", dump(&sws));
    // The kernels verified every outer IP and UDP checksum (n2) and inner ones (the pods).
    for (ns, before) in ["n2", "a1", "b1"].iter().zip(counted) {
        assert_eq!(csum_errors(&topo, ns), before, "checksum errors counted in {ns}");
    }
    eprintln!("with kernel Flannel: TCP {:.2} / {:.2} Gbit/s", out / 1e9, back / 1e9);
}

/// The same interop with offloads on both sides: a TAP pod and a TAP uplink on the switch's
/// node, the Flannel node's veth with its offloads on. VXLAN crosses in both directions as
/// 64 KB UDP tunnel GSO packets, and every kernel verifies the checksums it gets.
#[test]
fn kernel_flannel_vxlan_interop_with_a_tap_uplink() {
    let mut topo = Topo::new("mv");
    topo.node("n1");
    topo.node("n2");
    topo.node("a1");
    topo.veth("n1", "u1", "n2", "u2");
    pod(&mut topo, "b1", "n2", "10.244.2.11", 1450);
    const ROUTER_MAC: &str = "0a:58:0a:f4:01:01";
    let vtep2 = flannel_node_with(&topo, "n2", "u2", 2, &["b1"], true);
    flannel_remote(&topo, "n2", 1, ROUTER_MAC);
    let n1 = NodeSpec { router_mac: Some(ROUTER_MAC.into()), ..node_spec(1, "198.18.0.1/24") };
    let n2 = PeerSpec { vtep_mac: Some(vtep2), ..peer_spec(2, "198.18.0.2", "vxlan") };
    let extra = uplink_toml(&topo, 1, Uplink::Tap) + &n1.toml(&[n2]);
    let ports = [PortSpec::tap_pod(&topo, "a1", 1)];
    let sw = Switch::start_with(&mut topo, "n1", &ports, &extra);
    sw.wait_attached();
    address_tap_pod(&topo, "a1", "10.244.1.11", 1450);
    let sws = [&sw];
    assert!(sw.port("uplink").kind.contains("uplink of"), "{:?}", sw.port("uplink"));
    reach(&topo, "n2", "198.18.0.1", &sws);
    let counted = ["n2", "a1", "b1"].map(|ns| csum_errors(&topo, ns));
    reach(&topo, "a1", "10.244.2.11", &sws);
    reach(&topo, "b1", "10.244.1.11", &sws);
    let rx_before = sw.port("uplink").stats;
    let out = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(out > TCP_FLOOR, "TCP switch -> Flannel node: {out} bit/s{}", dump(&sws));
    let back = iperf3(&mut topo, "b1", "a1", "10.244.1.11", false);
    assert!(back > TCP_FLOOR, "TCP Flannel node -> switch: {back} bit/s{}", dump(&sws));
    for (ns, before) in ["n2", "a1", "b1"].iter().zip(counted) {
        assert_eq!(csum_errors(&topo, ns), before, "checksum errors counted in {ns}");
    }
    let up = sw.port("uplink").stats;
    let tx_avg = (up.tx_bytes - rx_before.tx_bytes) / (up.tx_packets - rx_before.tx_packets).max(1);
    assert!(tx_avg > 3000, "VXLAN to Flannel averaged {tx_avg} B per packet: segments were cut");
    assert_eq!(up.dropped, 0, "{}", dump(&sws));
    let rx_avg = (up.rx_bytes - rx_before.rx_bytes) / (up.rx_packets - rx_before.rx_packets).max(1);
    eprintln!(
        "TAP uplink with kernel Flannel: TCP {:.2} / {:.2} Gbit/s, {tx_avg} / {rx_avg} B per uplink packet{}",
        out / 1e9,
        back / 1e9,
        dump(&sws)
    );
}

#[test]
fn peer_added_and_removed_live() {
    let mut topo = Topo::new("me");
    for n in ["n1", "n2", "n3"] {
        topo.node(n);
    }
    fabric(&mut topo, &[("n1", "u1"), ("n2", "u2"), ("n3", "u3")]);
    pod(&mut topo, "a1", "n1", "10.244.1.11", 1500);
    pod(&mut topo, "b1", "n2", "10.244.2.11", 1500);
    pod(&mut topo, "c1", "n3", "10.244.3.11", 1500);
    let (p1, p2, p3) = (
        peer_spec(1, "198.18.0.1", "auto"),
        peer_spec(2, "198.18.0.2", "auto"),
        peer_spec(3, "198.18.0.3", "auto"),
    );
    // n1 starts knowing n2 only; n2 and n3 know everybody.
    let n1 = node_spec(1, "198.18.0.1/24");
    let sw1 = start_node(&mut topo, "n1", "u1", &["a1"], &n1, std::slice::from_ref(&p2));
    let spec2 = node_spec(2, "198.18.0.2/24");
    let sw2 = start_node(&mut topo, "n2", "u2", &["b1"], &spec2, &[p1.clone(), p3.clone()]);
    let spec3 = node_spec(3, "198.18.0.3/24");
    let sw3 = start_node(&mut topo, "n3", "u3", &["c1"], &spec3, &[p1, p2.clone()]);
    let sws = [&sw1, &sw2, &sw3];
    reach(&topo, "a1", "10.244.2.11", &sws);
    reach(&topo, "b1", "10.244.3.11", &sws);
    let no_route_to_n3 = |topo: &Topo| {
        let text = topo.ping_text("a1", &["-c", "2", "-i", "0.3", "-W", "1", "10.244.3.11"]);
        assert!(
            text.contains(" 0 received") && text.contains("Destination Net Unreachable"),
            "n1 has no route to n3's pods: {text}"
        );
    };
    no_route_to_n3(&topo);
    assert_eq!(peers(&sw1).len(), 1);
    // A steady ping between n1 and n2 while n3 is added to n1 and removed again.
    let started = Instant::now();
    let flood =
        topo.spawn("a1", "ping", &["-c", "1500", "-i", "0.01", "-W", "1", "-q", "10.244.2.11"]);
    std::thread::sleep(Duration::from_millis(300));
    let ports = node_ports(&topo, "u1", &["a1"]);
    sw1.reload_with(&ports, &n1.toml(&[p2.clone(), p3]));
    let has_n3 = |sw: &Switch| peers(sw).iter().any(|p| p["name"] == "n3");
    let added = wait_for(Duration::from_secs(5), || has_n3(&sw1).then_some(()));
    assert!(added.is_some(), "n3 not added: {:?}{}", peers(&sw1), dump(&sws));
    assert_eq!(peer(&sw1, "n3")["mode"], "direct");
    reach(&topo, "a1", "10.244.3.11", &sws);
    assert!(routes(&sw1).iter().any(|r| r["prefix"] == "10.244.3.0/24"), "{:?}", routes(&sw1));
    sw1.reload_with(&ports, &n1.toml(&[p2]));
    let removed = wait_for(Duration::from_secs(5), || (!has_n3(&sw1)).then_some(()));
    assert!(removed.is_some(), "n3 not removed: {:?}{}", peers(&sw1), dump(&sws));
    assert!(!routes(&sw1).iter().any(|r| r["prefix"] == "10.244.3.0/24"), "{:?}", routes(&sw1));
    // 1500 pings at 10 ms take 15 s: both reloads happened while they were under way.
    assert!(started.elapsed() < Duration::from_secs(14), "reloads took {:?}", started.elapsed());
    let out = topo.stop_wait(flood, Duration::from_secs(30)).expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1500 received") && text.contains(" 0% packet loss"),
        "n1 <-> n2 lost packets across the reloads: {text}{}",
        dump(&sws)
    );
    no_route_to_n3(&topo);
    reach(&topo, "a1", "10.244.2.11", &sws);
}

/// How an offload-aware node's uplink reaches the underlay veth.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Uplink {
    /// An AF_PACKET port with `PACKET_VNET_HDR`: plain GSO crosses whole, VXLAN is cut.
    Afpacket,
    /// A TAP the switch wires to the veth with tc: GSO and UDP tunnel GSO cross whole.
    Tap,
}

/// The `[[port]]` table of node `k`'s uplink on `<prefix>u<k>`.
fn uplink_toml(topo: &Topo, k: u8, kind: Uplink) -> String {
    let nic = topo.name(&format!("u{k}"));
    match kind {
        Uplink::Afpacket => format!(
            "\n[[port]]\nname = \"uplink\"\ninterface = \"{nic}\"\ntype = \"afpacket\"\n"
        ),
        Uplink::Tap => format!(
            "\n[[port]]\nname = \"uplink\"\ntype = \"tap\"\ninterface = \"{}\"\nattach = \"{nic}\"\n",
            topo.name(&format!("t{k}"))
        ),
    }
}

/// n1 and n2 as in [`two_nodes`], but with offload-aware ports end to end: each pod's eth0 is a
/// TAP the switch creates (the pod hands over 64 KB TCP segments), and each uplink is `kind`.
/// Pods a1 (10.244.1.11) and b1 (10.244.2.11), eth0 MTU `mtu`, peers in `mode`.
fn two_offload_nodes(tag: &str, mode: &str, mtu: u32, kind: Uplink) -> (Topo, Switch, Switch) {
    let mut topo = Topo::new(tag);
    topo.node("n1");
    topo.node("n2");
    topo.veth("n1", "u1", "n2", "u2");
    let mut sws = Vec::new();
    for (k, node, pod, other) in [(1u8, "n1", "a1", 2u8), (2, "n2", "b1", 1)] {
        topo.node(pod);
        let uplink = uplink_toml(&topo, k, kind);
        let spec = node_spec(k, &format!("198.18.0.{k}/24"));
        let peers = [peer_spec(other, &format!("198.18.0.{other}"), mode)];
        let ports = [PortSpec::tap_pod(&topo, pod, 1)];
        let sw = Switch::start_with(&mut topo, node, &ports, &(uplink + &spec.toml(&peers)));
        sw.wait_attached();
        address_tap_pod(&topo, pod, &format!("10.244.{k}.11"), mtu);
        sws.push(sw);
    }
    let sw2 = sws.pop().expect("two switches");
    let sw1 = sws.pop().expect("two switches");
    (topo, sw1, sw2)
}

/// TCP between TAP pods on two nodes: runs clean (no checksum errors in either pod), and in
/// direct mode the uplink carries the pods' segments whole (far larger than the MTU on
/// average). In VXLAN mode an AF_PACKET uplink has them cut to fit the tunnel (MSS respected
/// after encap); a TAP uplink carries them whole as UDP tunnel GSO, which the kernel cuts.
fn offload_tcp(tag: &str, mode: &str, mtu: u32, kind: Uplink) {
    let (mut topo, sw1, sw2) = two_offload_nodes(tag, mode, mtu, kind);
    let sws = [&sw1, &sw2];
    reach(&topo, "a1", "10.244.2.11", &sws);
    let before = [csum_errors(&topo, "a1"), csum_errors(&topo, "b1")];
    let up_before = sw1.port("uplink").stats.tx_packets;
    let bytes_before = sw1.port("uplink").stats.tx_bytes;
    let tcp = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(tcp > TCP_FLOOR, "TCP a1 -> b1 ({mode}): {tcp} bit/s{}", dump(&sws));
    let back = iperf3(&mut topo, "b1", "a1", "10.244.1.11", false);
    assert!(back > TCP_FLOOR, "TCP b1 -> a1 ({mode}): {back} bit/s{}", dump(&sws));
    assert_eq!(before, [csum_errors(&topo, "a1"), csum_errors(&topo, "b1")], "checksum errors");
    let up = sw1.port("uplink").stats;
    let avg = (up.tx_bytes - bytes_before) / (up.tx_packets - up_before).max(1);
    if mode == "vxlan" && kind == Uplink::Afpacket {
        assert!(avg <= 1514, "VXLAN frames on the uplink average {avg} bytes: over the MTU");
    } else {
        assert!(avg > 3000, "{mode}: uplink frames average {avg} bytes: segments were cut");
    }
    assert_eq!(sw1.port("uplink").stats.dropped, 0, "{}", dump(&sws));
    let up2 = sw2.port("uplink").stats;
    let rx_avg = up2.rx_bytes / up2.rx_packets.max(1);
    eprintln!(
        "{mode} over {kind:?}: TCP {:.2} / {:.2} Gbit/s, {avg} B per packet out of n1's uplink, {rx_avg} B per packet into n2's",
        tcp / 1e9,
        back / 1e9
    );
}

#[test]
fn tap_pods_across_nodes_direct_keep_segments_whole() {
    offload_tcp("mf", "auto", 1500, Uplink::Afpacket);
}

#[test]
fn tap_pods_across_nodes_in_vxlan() {
    offload_tcp("mg", "vxlan", 1450, Uplink::Afpacket);
}

#[test]
fn tap_uplink_keeps_segments_whole_direct() {
    offload_tcp("mt", "auto", 1500, Uplink::Tap);
}

#[test]
fn tap_uplink_keeps_vxlan_segments_whole() {
    offload_tcp("mu", "vxlan", 1450, Uplink::Tap);
}

/// A pod attached through the API (as the CNI plugin does) with an egress limit, a guarantee
/// and a group gets a leaf under that group in the tree that shapes its node's uplink: its
/// TCP to another node is held to the limit, measured with iperf3. A group outside that tree
/// is refused.
#[test]
fn a_pods_egress_limit_is_enforced_on_the_shaped_uplink() {
    let mut topo = Topo::new("mh");
    topo.node("n1");
    topo.node("n2");
    topo.veth("n1", "u1", "n2", "u2");
    pod(&mut topo, "a1", "n1", "10.244.1.11", 1500);
    pod(&mut topo, "b1", "n2", "10.244.2.11", 1500);
    // n1's uplink is shaped: a 1 Gbit/s root the pods' egress classes hang under.
    let uplink = format!(
        "\n[[port]]\nname = \"uplink\"\ninterface = \"{}\"\nqos_root = \"node\"\n\n[[qos_class]]\nname = \"node\"\nrate = \"1G\"\n",
        topo.name("u1")
    );
    let spec1 = node_spec(1, "198.18.0.1/24");
    let mut sw1 = Switch::start_with(
        &mut topo,
        "n1",
        &[],
        &(uplink + &spec1.toml(&[peer_spec(2, "198.18.0.2", "auto")])),
    );
    let sw2 = start_node(
        &mut topo,
        "n2",
        "u2",
        &["b1"],
        &node_spec(2, "198.18.0.2/24"),
        &[peer_spec(1, "198.18.0.1", "auto")],
    );
    let a = vswitch_api::PodAttachment {
        container_id: "eeeeeeeeeeeeeeee5555".into(),
        ifname: "eth0".into(),
        netns: format!("/var/run/netns/{}", topo.name("a1")),
        host_interface: topo.name("a1"),
        vlan: 1,
        mtu: 1500,
        mac: None,
        ips: vec!["10.244.1.11/24".into()],
        pod_namespace: Some("default".into()),
        pod_name: Some("a1".into()),
        pod_uid: None,
        cgroup_path: None,
        bandwidth: Some(vswitch_api::Bandwidth {
            egress_rate: Some(30_000_000),
            egress_guaranteed_rate: Some(10_000_000),
            egress_priority: Some(2),
            egress_group: Some("team".into()),
            ..Default::default()
        }),
        port_type: None,
    };
    // The group does not exist yet: refused, naming the annotation; then made live.
    match sw1.call(Request::AttachPod(a.clone())) {
        Err(e) => assert!(
            e.to_string().contains("vswitch.io/egress-qos-group \"team\": no such QoS class"),
            "{e:?}"
        ),
        other => panic!("attach a1 to a missing group: {other:?}"),
    }
    let o = sw1.ctl(&["qos", "add", "team", "--parent", "node", "--rate", "100M", "--ceil", "1G"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    match sw1.call(Request::AttachPod(a)) {
        Ok(Reply::Port(_)) => {}
        other => panic!("attach a1: {other:?}{}", sw1.log()),
    }
    let sws = [&sw1, &sw2];
    reach(&topo, "a1", "10.244.2.11", &sws);
    // a1's egress leaf as `show qos` lists it.
    let a1_leaf = |sw: &Switch| {
        let qos = sw.ctl_json(&["show", "qos"]);
        let classes = qos[0]["classes"].as_array()?.clone();
        classes.into_iter().find(|c| c["name"] == "eeeeeeeeeeee-eth0-out")
    };
    let leaf = a1_leaf(&sw1)
        .unwrap_or_else(|| panic!("no leaf for a1: {}", sw1.ctl_json(&["show", "qos"])));
    assert_eq!(leaf["parent"], "team", "{leaf}");
    let out = iperf3(&mut topo, "a1", "b1", "10.244.2.11", false);
    assert!(
        out < 31.5e6 && out > 18e6,
        "a1's TCP out at {out} bit/s, limited to 30M{}",
        dump(&sws)
    );
    // Into a1 nothing is limited.
    let back = iperf3(&mut topo, "b1", "a1", "10.244.1.11", false);
    assert!(back > 100e6, "TCP into a1 at {back} bit/s{}", dump(&sws));

    // The group was made live, not in the file: a reload is refused whole, naming it, and
    // the pod keeps its place.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &sw1.pid.to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let refused = wait_for(Duration::from_secs(5), || {
        let log = sw1.log();
        log.contains("refused, running configuration kept").then_some(log)
    })
    .unwrap_or_else(|| panic!("reload not refused:\n{}", sw1.log()));
    assert!(refused.contains("\"team\" is not a [[qos_class]]"), "{refused}");
    let qos = sw1.ctl_json(&["show", "qos"]).to_string();
    assert!(qos.contains("\"team\"") && qos.contains("eeeeeeeeeeee-eth0-out"), "{qos}");

    // Nor does the group survive a restart: the pod comes back under the uplink's root, with
    // its own limits and a note naming the group, and keeps its network.
    sw1.restart(&mut topo, "n1");
    sw1.wait_attached();
    // (The worker publishes class figures a moment after the change.)
    let leaf = wait_for(Duration::from_secs(3), || a1_leaf(&sw1))
        .unwrap_or_else(|| panic!("a1 not re-attached: {}", sw1.log()));
    let (parent, ceil) = (&leaf["parent"], &leaf["ceil_bps"]);
    assert_eq!((parent, ceil), (&"node".into(), &30_000_000.into()), "{leaf}");
    let log = sw1.log();
    assert!(
        log.contains("\"team\": no such QoS class")
            && log.contains("hangs under the uplink's root"),
        "{log}"
    );
    reach(&topo, "a1", "10.244.2.11", &[&sw1, &sw2]);
}
