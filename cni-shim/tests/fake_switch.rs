//! The whole plugin against a fake vswitchd (the real API server, a backend that only keeps the
//! attachments): real veth pairs, host-local IPAM, addresses and routes in real namespaces.
//! ADD, CHECK, DEL twice, GC, and the rollback of an ADD the switch refuses.
//!
//! The fake switch makes no devices, so the pods here are AF_XDP pods (`"portType": "afxdp"`:
//! the plugin makes the veth); TAP pods, whose interface the switch creates, are exercised
//! against a real vswitchd in `pods.rs`, and both kinds' refused ADD is rolled back here.

mod common;

use common::{attachment_env, link_exists, netconf, reserved_ips, run_in, FakeSwitch};
use serde_json::{json, Value};
use vswitch_api::ApiError;
use vswitch_suite::netns::Topo;

fn host_ifname_of(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().expect("host interface name").to_string()
}

/// [`netconf`] for AF_XDP pods (a veth the plugin makes).
fn afxdp_conf(version: &str, socket: &std::path::Path, data: &std::path::Path) -> Value {
    let mut v = netconf(version, socket, Some(data));
    v["portType"] = json!("afxdp");
    v
}

#[test]
fn add_check_del_gc_with_a_fake_switch() {
    common::require_host_local();
    let mut topo = Topo::new("cf");
    let node = topo.netns("node");
    let pod_a = topo.netns("pa");
    let pod_b = topo.netns("pb");
    let (ns_a, ns_b) = (format!("/var/run/netns/{pod_a}"), format!("/var/run/netns/{pod_b}"));
    let data = tempfile::tempdir().unwrap();
    let sw = FakeSwitch::start();
    let mut conf = afxdp_conf("1.1.0", &sw.socket, data.path());
    conf["runtimeConfig"] = json!({
        "mac": "02:00:00:aa:00:01",
        "cgroupPath": "/kubepods/besteffort/pod-u-1",
        "bandwidth": {"ingressRate": 1000000, "ingressBurst": 50000},
    });

    let out =
        run_in(Some(&node), &attachment_env("ADD", "ctr-a", &ns_a, "eth0"), &conf.to_string()).ok();
    let result = out.json;
    assert_eq!(result["cniVersion"], "1.1.0");
    let host = host_ifname_of(&result);
    assert!(host.starts_with("vs") && host.len() == 14, "{host}");
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], ns_a.as_str());
    assert_eq!(result["interfaces"][1]["mac"], "02:00:00:aa:00:01");
    assert_eq!(result["interfaces"][1]["mtu"], 1450);
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["ips"][0]["gateway"], "10.244.1.1");
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.244.1.") && addr.ends_with("/24"), "{addr}");
    assert_eq!(result["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]));
    assert_eq!(result["dns"]["nameservers"], json!(["10.96.0.10"]));

    // The kernel agrees: host end up in the node, pod end with address, MAC, MTU and route.
    assert!(link_exists(&node, &host));
    let show = topo.exec("pa", "ip", &["-o", "addr", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains(&addr));
    let link = String::from_utf8_lossy(&topo.exec("pa", "ip", &["link", "show", "eth0"]).stdout)
        .to_string();
    assert!(link.contains("mtu 1450") && link.contains("02:00:00:aa:00:01"), "{link}");
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    let routes =
        String::from_utf8_lossy(&topo.exec("pa", "ip", &["route", "show"]).stdout).to_string();
    assert!(routes.contains("default via 10.244.1.1 dev eth0"), "{routes}");

    // The switch was told everything.
    let pods = sw.pods();
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert_eq!((p.container_id.as_str(), p.ifname.as_str()), ("ctr-a", "eth0"));
    assert_eq!((p.host_interface.as_str(), p.vlan, p.mtu), (host.as_str(), 10, 1450));
    assert_eq!(p.netns, ns_a);
    assert_eq!(p.ips, vec![addr.clone()]);
    assert_eq!(p.mac.as_deref(), Some("02:00:00:aa:00:01"));
    assert_eq!(p.pod_name.as_deref(), Some("web-0"));
    assert_eq!(p.pod_namespace.as_deref(), Some("default"));
    assert_eq!(p.pod_uid.as_deref(), Some("u-1"));
    assert_eq!(p.cgroup_path.as_deref(), Some("/kubepods/besteffort/pod-u-1"));
    assert_eq!(p.bandwidth.as_ref().unwrap().ingress_rate, Some(1_000_000));
    assert_eq!(p.port_type, None, "an AF_XDP pod goes as the API's default");

    // CHECK with the result as prevResult passes...
    let mut check = afxdp_conf("1.1.0", &sw.socket, data.path());
    check["prevResult"] = result.clone();
    run_in(Some(&node), &attachment_env("CHECK", "ctr-a", &ns_a, "eth0"), &check.to_string()).ok();
    // ...but not when the pod should be a TAP pod (the default).
    let mut as_tap = check.clone();
    as_tap.as_object_mut().unwrap().remove("portType");
    let out =
        run_in(Some(&node), &attachment_env("CHECK", "ctr-a", &ns_a, "eth0"), &as_tap.to_string())
            .err(100);
    assert!(out.msg().contains("port type afxdp instead of tap"), "{}", out.msg());
    // ...and names what is missing once the route is gone.
    topo.ip(&["-n", &pod_a, "route", "del", "default"]);
    let out =
        run_in(Some(&node), &attachment_env("CHECK", "ctr-a", &ns_a, "eth0"), &check.to_string())
            .err(100);
    assert!(out.msg().contains("route") && out.msg().contains("0.0.0.0/0"), "{}", out.msg());

    // A second pod, then GC with only it valid: the first goes.
    let plain = afxdp_conf("1.1.0", &sw.socket, data.path());
    let out_b =
        run_in(Some(&node), &attachment_env("ADD", "ctr-b", &ns_b, "eth0"), &plain.to_string())
            .ok();
    let host_b = host_ifname_of(&out_b.json);
    assert_ne!(host_b, host);
    assert_eq!(reserved_ips(data.path()).len(), 2);
    let mut gc = plain.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-b", "ifname": "eth0"}]);
    run_in(
        Some(&node),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", common::CNI_BIN_DIR)],
        &gc.to_string(),
    )
    .ok();
    let left: Vec<String> = sw.pods().into_iter().map(|p| p.container_id).collect();
    assert_eq!(left, vec!["ctr-b".to_string()]);
    assert!(!link_exists(&node, &host), "GC left {host}");
    assert!(link_exists(&node, &host_b));

    // DEL twice for both: nothing left behind.
    for (id, ns) in [("ctr-a", &ns_a), ("ctr-b", &ns_b)] {
        for _ in 0..2 {
            run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), &plain.to_string()).ok();
        }
    }
    assert!(sw.pods().is_empty());
    assert!(!link_exists(&node, &host_b));
    assert!(!link_exists(&pod_b, "eth0"));
    assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));

    // STATUS: the switch answers.
    run_in(
        None,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", common::CNI_BIN_DIR)],
        &plain.to_string(),
    )
    .ok();
}

#[test]
fn a_refused_add_is_rolled_back() {
    common::require_host_local();
    let mut topo = Topo::new("cr");
    let node = topo.netns("node");
    let pod = topo.netns("pod");
    let netns = format!("/var/run/netns/{pod}");
    let data = tempfile::tempdir().unwrap();
    let sw = FakeSwitch::start();
    *sw.refuse.lock().unwrap() = Some(ApiError::conflict("no room for another port"));
    let conf = afxdp_conf("1.0.0", &sw.socket, data.path()).to_string();

    // Refused: an AF_XDP pod (veth made, then deleted) and a TAP pod (the default: nothing
    // made by the plugin before AttachPod) both leave nothing behind.
    let tap_conf = netconf("1.0.0", &sw.socket, Some(data.path())).to_string();
    for c in [&conf, &tap_conf] {
        let out = run_in(Some(&node), &attachment_env("ADD", "ctr-r", &netns, "eth0"), c).err(101);
        assert!(out.msg().contains("no room for another port"), "{}", out.msg());
        assert_eq!(out.json["details"], "rolled back");
        assert_eq!(out.json["cniVersion"], "1.0.0");
        assert!(!link_exists(&pod, "eth0"), "pod interface left behind");
        let links =
            String::from_utf8_lossy(&topo.exec("node", "ip", &["-o", "link"]).stdout).to_string();
        assert!(!links.contains(": vs"), "host veth left behind: {links}");
        assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));
        assert!(sw.pods().is_empty());
    }

    // An interface name already taken in the pod: the veth cannot be made; rolled back too.
    *sw.refuse.lock().unwrap() = None;
    topo.ip(&["-n", &pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    let out = run_in(Some(&node), &attachment_env("ADD", "ctr-r", &netns, "eth0"), &conf).err(5);
    assert!(out.msg().contains("veth"), "{}", out.msg());
    assert!(reserved_ips(data.path()).is_empty(), "{:?}", reserved_ips(data.path()));
    assert!(sw.pods().is_empty());
}
