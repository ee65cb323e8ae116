//! Pods wired by the plugin to a real vswitchd (started by the suite's harness in a "node"
//! namespace with no configured ports): ADD two, ping between them through the switch, CHECK,
//! DEL twice, and nothing left behind (host veths, TAP devices, host-local reservations, the
//! switch's attachments and ports). Once with AF_XDP pods (a veth each), once with TAP pods
//! (the default: the switch creates the pod's interface), each pod type picked both ways an
//! operator can: the network's `portType` and the pod annotation `vswitch.io/port-type`.
//!
//! Needs `cargo build --workspace --bins` (for vswitchd) and the reference CNI plugins.

mod common;

use common::{attachment_env, link_exists, netconf, require_host_local, reserved_ips, run_in};
use serde_json::{json, Value};
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::Switch;

fn pods(sw: &Switch) -> Vec<vswitch_api::PodAttachment> {
    match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => p,
        other => panic!("ListPods: {other:?}"),
    }
}

/// A pod annotation as containerd passes it.
fn port_type_annotation(t: &str) -> Value {
    json!({"io.kubernetes.cri.pod-annotations": {"vswitch.io/port-type": t}})
}

/// Two AF_XDP pods, one by the network's `portType`, the other by the annotation over the
/// default: a veth each, whose host end is the switch's port.
#[test]
fn afxdp_pods_ping_through_a_real_vswitchd() {
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
    let mut by_conf = netconf("1.1.0", &sw.socket, Some(data.path()));
    by_conf["portType"] = "afxdp".into();
    let mut by_annotation = netconf("1.1.0", &sw.socket, Some(data.path()));
    by_annotation["runtimeConfig"] = port_type_annotation("afxdp");
    let confs = [by_conf.to_string(), by_annotation.to_string()];
    let ids = ["pod-a-0123456789", "pod-b-0123456789"];
    let netns: Vec<String> = names.iter().map(|n| format!("/var/run/netns/{n}")).collect();

    let mut results: Vec<Value> = Vec::new();
    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        let out = run_in(Some(&node), &attachment_env("ADD", id, ns, "eth0"), conf).ok();
        // The host end of the veth, then the pod's interface.
        assert_eq!(out.json["interfaces"].as_array().unwrap().len(), 2, "{}", out.json);
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
    assert!(sw.ports().iter().all(|p| p.kind.starts_with("afxdp")), "{:?}", sw.ports());

    // Through the switch: a's ARP and ICMP reach b only via the two AF_XDP ports.
    let got = wait_for(std::time::Duration::from_secs(10), || {
        let n = topo.ping("pa", ip_b, 3);
        (n >= 2).then_some(n)
    });
    assert!(got.is_some(), "pod a cannot ping pod b ({ip_b}) through vswitchd");

    for (((id, ns), result), conf) in ids.iter().zip(&netns).zip(&results).zip(&confs) {
        let mut check: Value = serde_json::from_str(conf).unwrap();
        check["prevResult"] = result.clone();
        run_in(Some(&node), &attachment_env("CHECK", id, ns, "eth0"), &check.to_string()).ok();
    }
    // CHECK names the port type when the pod should be a TAP one (here by CNI_ARGS).
    let mut check: Value = serde_json::from_str(&confs[0]).unwrap();
    check["prevResult"] = results[0].clone();
    let mut env = attachment_env("CHECK", ids[0], &netns[0], "eth0");
    env.retain(|(k, _)| *k != "CNI_ARGS");
    env.push(("CNI_ARGS", "IgnoreUnknown=1;VSWITCH_PORT_TYPE=tap"));
    let out = run_in(Some(&node), &env, &check.to_string()).err(100);
    assert!(out.msg().contains("port type afxdp instead of tap"), "{}", out.msg());

    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        for _ in 0..2 {
            run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), conf).ok();
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

/// Two pods whose interfaces the switch creates as TAP devices, one by the plugin's default,
/// the other by the pod annotation `vswitch.io/port-type` over a network whose `portType` is
/// `afxdp` (as containerd passes annotations): they talk through the switch, keep their
/// addresses and connectivity across a vswitchd restart (the devices persist), pass CHECK, GC
/// detaches the one no longer valid, and DEL removes the devices.
#[test]
fn tap_pods_by_default_and_annotation_survive_a_daemon_restart() {
    require_host_local();
    let mut topo = Topo::new("ct");
    let node = topo.netns("node");
    let names = [topo.netns("ta"), topo.netns("tb")];
    for short in ["ta", "tb"] {
        let _ = topo.exec(short, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let mut sw = Switch::start(&mut topo, "node", &[]);
    let data = tempfile::tempdir().unwrap();
    let by_default = netconf("1.1.0", &sw.socket, Some(data.path()));
    let mut by_annotation = netconf("1.1.0", &sw.socket, Some(data.path()));
    by_annotation["portType"] = "afxdp".into();
    by_annotation["runtimeConfig"] = port_type_annotation("tap");
    let confs = [by_default.to_string(), by_annotation.to_string()];
    let ids = ["tap-a-0123456789", "tap-b-0123456789"];
    let netns: Vec<String> = names.iter().map(|n| format!("/var/run/netns/{n}")).collect();
    let mut ips = Vec::new();
    let mut results = Vec::new();
    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        let out = run_in(Some(&node), &attachment_env("ADD", id, ns, "eth0"), conf).ok();
        // Only the pod's interface: there is no host end.
        assert_eq!(out.json["interfaces"].as_array().unwrap().len(), 1, "{}", out.json);
        let addr = out.json["ips"][0]["address"].as_str().unwrap().to_string();
        ips.push(addr.split('/').next().unwrap().to_string());
        results.push(out.json);
    }
    let attached = pods(&sw);
    assert_eq!(attached.len(), 2, "{attached:?}");
    for p in &attached {
        assert_eq!((p.port_type.as_deref(), p.host_interface.as_str()), (Some("tap"), ""));
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

    // CHECK passes for both, as the restarted switch re-attached them...
    let check = |i: usize, conf: &str| {
        let mut c: Value = serde_json::from_str(conf).unwrap();
        c["prevResult"] = results[i].clone();
        run_in(Some(&node), &attachment_env("CHECK", ids[i], &netns[i], "eth0"), &c.to_string())
    };
    for (i, conf) in confs.iter().enumerate() {
        check(i, conf).ok();
    }
    // ...and names the port type when the pod should be an AF_XDP one.
    let mut as_afxdp: Value = serde_json::from_str(&confs[0]).unwrap();
    as_afxdp["portType"] = "afxdp".into();
    let out = check(0, &as_afxdp.to_string()).err(100);
    assert!(out.msg().contains("port type tap instead of afxdp"), "{}", out.msg());

    // GC with only b valid: a is detached and its device goes.
    let mut gc = by_default.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": ids[1], "ifname": "eth0"}]);
    run_in(
        Some(&node),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", common::CNI_BIN_DIR)],
        &gc.to_string(),
    )
    .ok();
    let left: Vec<String> = pods(&sw).into_iter().map(|p| p.container_id).collect();
    assert_eq!(left, vec![ids[1].to_string()]);
    let gone = wait_for(std::time::Duration::from_secs(5), || {
        (!link_exists(&names[0], "eth0")).then_some(())
    });
    assert!(gone.is_some(), "GC left eth0 in {}", names[0]);
    assert!(link_exists(&names[1], "eth0"), "GC took the valid pod's eth0");

    for ((id, ns), conf) in ids.iter().zip(&netns).zip(&confs) {
        for _ in 0..2 {
            run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), conf).ok();
        }
    }
    assert!(sw.ports().is_empty(), "switch ports left: {:?}", sw.ports());
    assert!(pods(&sw).is_empty(), "{:?}", pods(&sw));
    for n in &names {
        let gone =
            wait_for(std::time::Duration::from_secs(5), || (!link_exists(n, "eth0")).then_some(()));
        assert!(gone.is_some(), "eth0 left in {n}");
    }
    assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));
}
