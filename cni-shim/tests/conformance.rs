//! The CNI protocol as a runtime sees it, without any vswitchd: VERSION, every error path of
//! the environment and the configuration, a switch that is not running (ADD 11, DEL fine,
//! STATUS 50).

mod common;

use common::{attachment_env, netconf, run, run_in};
use serde_json::json;
use vswitch_suite::netns::Topo;

fn missing_socket() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vswitch-cni-test-{}/none.sock", std::process::id()))
}

fn conf() -> String {
    netconf("1.1.0", &missing_socket(), None).to_string()
}

#[test]
fn version_lists_the_supported_versions() {
    let out = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion": "1.0.0"}"#).ok();
    assert_eq!(out.json, json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}));
    // Without input, the newest version answers.
    let out = run(&[("CNI_COMMAND", "VERSION")], "").ok();
    assert_eq!(out.json["cniVersion"], "1.1.0");
}

#[test]
fn malformed_json_is_6() {
    let env = attachment_env("ADD", "c1", "/var/run/netns/none", "eth0");
    let out = run(&env, "{not json").err(6);
    assert!(out.msg().contains("not valid JSON"), "{}", out.msg());
    run(&env, "[1, 2]").err(6);
}

#[test]
fn missing_or_bad_env_is_4() {
    let out = run(&[], &conf()).err(4);
    assert!(out.msg().contains("CNI_COMMAND"), "{}", out.msg());
    let out = run(&[("CNI_COMMAND", "FROB")], &conf()).err(4);
    assert!(out.msg().contains("FROB"), "{}", out.msg());
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let env: Vec<_> = attachment_env("ADD", "c1", "/var/run/netns/none", "eth0")
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let out = run(&env, &conf()).err(4);
        assert!(out.msg().contains(missing), "{missing}: {}", out.msg());
    }
    let env = attachment_env("ADD", "bad/id", "/var/run/netns/none", "eth0");
    run(&env, &conf()).err(4);
    let env = attachment_env("ADD", "c1", "/var/run/netns/none", "much-too-long-ifname");
    run(&env, &conf()).err(4);
    let mut env = attachment_env("ADD", "c1", "/var/run/netns/none", "eth0");
    env.retain(|(k, _)| *k != "CNI_ARGS");
    env.push(("CNI_ARGS", "K8S_POD_NAME"));
    run(&env, &conf()).err(4);
}

#[test]
fn unknown_version_is_1() {
    let env = attachment_env("ADD", "c1", "/var/run/netns/none", "eth0");
    let out = run(&env, &netconf("0.3.1", &missing_socket(), None).to_string()).err(1);
    assert!(out.msg().contains("0.3.1"), "{}", out.msg());
    run(&env, &netconf("2.0.0", &missing_socket(), None).to_string()).err(1);
}

#[test]
fn invalid_config_is_7() {
    let env = attachment_env("ADD", "c1", "/var/run/netns/none", "eth0");
    let mut c = netconf("1.1.0", &missing_socket(), None);
    c["vlan"] = json!(5000);
    let out = run(&env, &c.to_string()).err(7);
    assert!(out.msg().contains("vlan 5000"), "{}", out.msg());
    // The error carries the configuration's version.
    assert_eq!(out.json["cniVersion"], "1.1.0");
    for (key, value) in [
        ("vlan", json!(0)),
        ("vlan", json!("ten")),
        ("mtu", json!(10)),
        ("ipam", json!({"ranges": []})),
        ("ipam", json!("host-local")),
        ("runtimeConfig", json!({"mac": "not-a-mac"})),
        ("runtimeConfig", json!({"bandwidth": {"ingressRate": -1}})),
        (
            "runtimeConfig",
            json!({"io.kubernetes.cri.pod-annotations": {"vswitch.io/port-type": "vhost"}}),
        ),
        ("portType", json!("veth")),
        ("portType", json!(1)),
        ("name", json!("")),
    ] {
        let mut c = netconf("1.1.0", &missing_socket(), None);
        c[key] = value.clone();
        run(&env, &c.to_string()).err(7);
    }
    // runtimeConfig.ips cannot be honoured without IPAM.
    let mut c = netconf("1.1.0", &missing_socket(), None);
    c["runtimeConfig"] = json!({"ips": ["10.244.1.9/24"]});
    run(&env, &c.to_string()).err(2);
}

#[test]
fn nonexistent_netns_is_3_naming_it() {
    let env = attachment_env("ADD", "c1", "/var/run/netns/vswitch-cni-no-such-ns", "eth0");
    let out = run(&env, &conf()).err(3);
    assert!(out.msg().contains("/var/run/netns/vswitch-cni-no-such-ns"), "{}", out.msg());
    let env = attachment_env("CHECK", "c1", "/var/run/netns/vswitch-cni-no-such-ns", "eth0");
    let mut c = netconf("1.1.0", &missing_socket(), None);
    c["prevResult"] = json!({"cniVersion": "1.1.0", "interfaces": [], "ips": []});
    run(&env, &c.to_string()).err(3);
}

#[test]
fn switch_not_running_add_is_11_del_succeeds_status_is_50() {
    let mut topo = Topo::new("cc");
    let node = topo.netns("node");
    let pod = topo.netns("pod");
    let netns = format!("/var/run/netns/{pod}");
    let data = tempfile::tempdir().unwrap();
    // A TAP pod (the default) and an AF_XDP pod alike.
    let tap = netconf("1.1.0", &missing_socket(), Some(data.path()));
    let mut afxdp = tap.clone();
    afxdp["portType"] = json!("afxdp");
    for c in [tap.to_string(), afxdp.to_string()] {
        let out = run_in(Some(&node), &attachment_env("ADD", "c1", &netns, "eth0"), &c).err(11);
        assert!(out.msg().contains("not running"), "{}", out.msg());
        // Nothing was made: no address reserved, no veth.
        assert!(common::reserved_ips(data.path()).is_empty());
        assert!(!common::link_exists(&pod, "eth0"));
        let links = topo.exec("node", "ip", &["-o", "link"]);
        assert!(!String::from_utf8_lossy(&links.stdout).contains(": vs"), "{links:?}");

        // DEL succeeds with the switch down, with or without the netns, and when repeated.
        for netns in [netns.as_str(), "", "/var/run/netns/vswitch-cni-gone"] {
            run_in(Some(&node), &attachment_env("DEL", "c1", netns, "eth0"), &c).ok();
        }
    }

    let out = run(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", common::CNI_BIN_DIR)], &conf()).err(50);
    assert!(out.msg().contains("vswitchd"), "{}", out.msg());
    // GC needs the daemon's list: try again later.
    run(&[("CNI_COMMAND", "GC")], &conf()).err(11);
}

#[test]
fn check_without_prev_result_is_7() {
    let env = attachment_env("CHECK", "c1", "/var/run/netns/none", "eth0");
    let out = run(&env, &conf()).err(7);
    assert!(out.msg().contains("prevResult"), "{}", out.msg());
}
