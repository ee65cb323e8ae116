//! Scale: many pods added and deleted on one node through the plugin and a real vswitchd,
//! reporting ADD and DEL latency (p50/p99), and checking that nothing leaks: no host veth, no
//! host-local reservation, no attachment, no switch port.
//!
//! `VSWITCH_CNI_PODS` sets the number of pods (default 1000). Run with `--nocapture` to see
//! the latencies.

mod common;

use std::time::{Duration, Instant};

use common::{attachment_env, link_exists, require_host_local, reserved_ips, run_in};
use serde_json::json;
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::Topo;
use vswitch_suite::switch::Switch;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn many_pods_are_added_and_deleted_without_leaks() {
    require_host_local();
    let n: usize =
        std::env::var("VSWITCH_CNI_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut topo = Topo::new("cs");
    let node = topo.netns("node");
    // Pods' ports keep 64 frames each on their fill rings: 1000 pods need 64 000 frames.
    let extra = format!(
        "\n[switch]\npod_ring_size = 64\n\n[pool]\nframes = {}\n",
        (n * 64 + 4096).next_power_of_two()
    );
    let sw = Switch::start_with(&mut topo, "node", &[], &extra);
    let data = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "vswitch-scale",
        "type": "vswitch-cni",
        "socket": sw.socket,
        "vlan": 10,
        "mtu": 1500,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.0.0/16", "gateway": "10.244.0.1"}]],
            "dataDir": data.path(),
        },
    })
    .to_string();
    // IPv4-only pods: with IPv6 on, every new interface's DAD, router and MLD multicast is
    // flooded to every pod of the VLAN (one AF_XDP send per port), which measures flooding, not
    // the plugin.
    let pods: Vec<(String, String)> = (0..n)
        .map(|i| {
            let ns = topo.netns(&format!("p{i}"));
            let _ =
                topo.exec(&format!("p{i}"), "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            (format!("scale-{i:06}-container"), format!("/var/run/netns/{ns}"))
        })
        .collect();

    let mut add = Vec::with_capacity(n);
    let mut hosts = Vec::with_capacity(n);
    let mut ips = Vec::with_capacity(n);
    for (id, ns) in &pods {
        let t = Instant::now();
        let out = run_in(Some(&node), &attachment_env("ADD", id, ns, "eth0"), &conf).ok();
        add.push(t.elapsed());
        hosts.push(out.json["interfaces"][0]["name"].as_str().unwrap().to_string());
        let ip = out.json["ips"][0]["address"].as_str().unwrap().to_string();
        ips.push(ip.split('/').next().unwrap().to_string());
    }
    let ports = sw.ports();
    assert_eq!(ports.len(), n, "one switch port per pod");
    // The first and the last pod talk through the switch.
    let got = topo.ping("p0", &ips[n - 1], 3);
    assert!(got >= 2, "p0 -> p{} through the switch: {got}/3", n - 1);

    let mut del = Vec::with_capacity(n);
    for (id, ns) in &pods {
        let t = Instant::now();
        run_in(Some(&node), &attachment_env("DEL", id, ns, "eth0"), &conf).ok();
        del.push(t.elapsed());
    }
    add.sort();
    del.sort();
    println!(
        "{n} pods: ADD p50 {:?} p99 {:?} max {:?}; DEL p50 {:?} p99 {:?} max {:?}",
        percentile(&add, 0.5),
        percentile(&add, 0.99),
        add[n - 1],
        percentile(&del, 0.5),
        percentile(&del, 0.99),
        del[n - 1]
    );
    // Nothing left behind.
    assert!(sw.ports().is_empty(), "switch ports left");
    match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => assert!(p.is_empty(), "attachments left: {}", p.len()),
        other => panic!("{other:?}"),
    }
    assert!(reserved_ips(data.path()).is_empty(), "IPAM reservations left");
    let left: Vec<&String> = hosts.iter().filter(|h| link_exists(&node, h)).collect();
    assert!(left.is_empty(), "host veths left: {left:?}");
}
