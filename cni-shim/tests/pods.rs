//! Two pods wired by the plugin to a real vswitchd (started by the suite's harness in a
//! "node" namespace with no configured ports): ADD both, ping between them through the switch,
//! CHECK, DEL twice, and nothing left behind (host veths, host-local reservations, the
//! switch's attachments and ports).
//!
//! Needs `cargo build --workspace --bins` (for vswitchd) and the reference CNI plugins.

mod common;

use common::{attachment_env, link_exists, netconf, require_host_local, reserved_ips, run_in};
use serde_json::Value;
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::Switch;

fn pods(sw: &Switch) -> Vec<vswitch_api::PodAttachment> {
    match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => p,
        other => panic!("ListPods: {other:?}"),
    }
}

#[test]
fn two_pods_ping_through_a_real_vswitchd() {
    require_host_local();
    let mut topo = Topo::new("cp");
    let node = topo.netns("node");
    let names = [topo.netns("pa"), topo.netns("pb")];
    for short in ["pa", "pb"] {
        // No IPv6 chatter: only the test's traffic.
        let _ = topo.exec(short, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let sw = Switch::start(&mut topo, "node", &[]);
    let data = tempfile::tempdir().unwrap();
    let conf = netconf("1.1.0", &sw.socket, Some(data.path())).to_string();
    let ids = ["pod-a-0123456789", "pod-b-0123456789"];
    let netns: Vec<String> = names.iter().map(|n| format!("/var/run/netns/{n}")).collect();

    let mut results: Vec<Value> = Vec::new();
    for (id, ns) in ids.iter().zip(&netns) {
        let out = run_in(Some(&node), &attachment_env("ADD", id, ns, "eth0"), &conf).ok();
        results.push(out.json);
    }
    let hosts: Vec<String> =
        results.iter().map(|r| r["interfaces"][0]["name"].as_str().unwrap().to_string()).collect();
    let addr_b = results[1]["ips"][0]["address"].as_str().unwrap();
    let ip_b = addr_b.split('/').next().unwrap();

    let attached = pods(&sw);
    assert_eq!(attached.len(), 2, "{attached:?}");
    for host in &hosts {
        assert!(attached.iter().any(|p| &p.host_interface == host && p.vlan == 10));
        assert!(sw.ports().iter().any(|p| &p.interface == host), "no switch port on {host}");
    }

    // Through the switch: a's ARP and ICMP reach b only via the two AF_XDP ports.
    let got = wait_for(std::time::Duration::from_secs(10), || {
        let n = topo.ping("pa", ip_b, 3);
        (n >= 2).then_some(n)
    });
    assert!(got.is_some(), "pod a cannot ping pod b ({ip_b}) through vswitchd");

    for ((id, ns), result) in ids.iter().zip(&netns).zip(&results) {
        let mut check: Value = serde_json::from_str(&conf).unwrap();
        check["prevResult"] = result.clone();
        run_in(Some(&node), &attachment_env("CHECK", id, ns, "eth0"), &check.to_string()).ok();
    }

    for (id, ns) in ids.iter().zip(&netns) {
        for _ in 0..2 {
            run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), &conf).ok();
        }
    }
    assert!(pods(&sw).is_empty(), "{:?}", pods(&sw));
    for host in &hosts {
        assert!(!link_exists(&node, host), "{host} left behind");
        assert!(!sw.ports().iter().any(|p| &p.interface == host), "switch port on {host} left");
    }
    for n in &names {
        assert!(!link_exists(n, "eth0"), "eth0 left in {n}");
    }
    assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));
}

/// Two pods whose interfaces the switch creates as TAP devices, one chosen by the network
/// configuration's `portType`, the other by the pod annotation `vswitch.io/port-type` (as
/// containerd passes annotations): they talk through the switch with TCP segments kept whole,
/// keep their addresses and connectivity across a vswitchd restart (the devices persist), and
/// DEL removes the devices.
#[test]
fn tap_pods_from_port_type_and_annotation_survive_a_daemon_restart() {
    require_host_local();
    let mut topo = Topo::new("ct");
    let node = topo.netns("node");
    let names = [topo.netns("ta"), topo.netns("tb")];
    for short in ["ta", "tb"] {
        let _ = topo.exec(short, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let mut sw = Switch::start(&mut topo, "node", &[]);
    let data = tempfile::tempdir().unwrap();
    let mut by_conf = netconf("1.1.0", &sw.socket, Some(data.path()));
    by_conf["portType"] = "tap".into();
    let mut by_annotation = netconf("1.1.0", &sw.socket, Some(data.path()));
    by_annotation["runtimeConfig"] =
        serde_json::json!({"io.kubernetes.cri.pod-annotations": {"vswitch.io/port-type": "tap"}});
    let confs = [by_conf.to_string(), by_annotation.to_string()];
    let ids = ["tap-a-0123456789", "tap-b-0123456789"];
    let netns: Vec<String> = names.iter().map(|n| format!("/var/run/netns/{n}")).collect();
    let mut ips = Vec::new();
    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        let out = run_in(Some(&node), &attachment_env("ADD", id, ns, "eth0"), conf).ok();
        // Only the pod's interface: there is no host end.
        assert_eq!(out.json["interfaces"].as_array().unwrap().len(), 1, "{}", out.json);
        let addr = out.json["ips"][0]["address"].as_str().unwrap().to_string();
        ips.push(addr.split('/').next().unwrap().to_string());
    }
    for (short, n) in ["ta", "tb"].iter().zip(&names) {
        let info = topo.exec(short, "ethtool", &["-i", "eth0"]);
        assert!(String::from_utf8_lossy(&info.stdout).contains("driver: tun"), "{n}: {info:?}");
        let mtu = topo.exec(short, "cat", &["/sys/class/net/eth0/mtu"]);
        assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1450");
    }
    assert!(sw.ports().iter().all(|p| p.kind.starts_with("tap")), "{:?}", sw.ports());
    let reach = |topo: &Topo| {
        wait_for(std::time::Duration::from_secs(10), || {
            (topo.ping("ta", &ips[1], 2) >= 1).then_some(())
        })
    };
    assert!(reach(&topo).is_some(), "tap pod a cannot ping b ({}) through vswitchd", ips[1]);

    // A restart: the pods keep their interfaces and addresses, and the switch takes them back.
    sw.restart(&mut topo, "node");
    sw.wait_attached();
    let addr = topo.exec("tb", "ip", &["-br", "addr", "show", "eth0"]);
    assert!(String::from_utf8_lossy(&addr.stdout).contains(&ips[1]), "{addr:?}");
    assert!(reach(&topo).is_some(), "no connectivity after the restart{}", sw.log());

    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        for _ in 0..2 {
            run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), conf).ok();
        }
    }
    assert!(pods(&sw).is_empty(), "{:?}", pods(&sw));
    for n in &names {
        let gone =
            wait_for(std::time::Duration::from_secs(5), || (!link_exists(n, "eth0")).then_some(()));
        assert!(gone.is_some(), "eth0 left in {n}");
    }
    assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));
}
