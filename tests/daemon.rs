//! vswitchd end to end, as root, in network namespaces: pods on veth pairs wired to AF_XDP
//! ports of a real vswitchd, real ping and iperf3 traffic, and the switch's own counters read
//! back through the control API.
//!
//! Each test builds its own namespaces (prefix `vs<tag><pid>-`) and removes them on drop, even
//! when it fails; every load is bounded in time.

use std::process::Command;
use std::time::Duration;

use vswitch::packet::{Batch, Meta, Pool, PoolConfig};
use vswitch::port::afpacket::{AfPacketConfig, AfPacketPort};
use vswitch::port::{netdev, Port};
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::{bin, measure_tries, wait_for, Topo};
use vswitch_suite::switch::{PortSpec, Switch};
use vswitch_suite::{mac, raw_frame, udp_frame};

/// A node namespace `sw` with pods `pods` (name, VLAN), pod i at 10.244.1.(11+i)/24.
fn node(tag: &str, pods: &[(&str, u16)]) -> (Topo, Switch) {
    let mut topo = Topo::new(tag);
    topo.netns("sw");
    for (i, (p, _)) in pods.iter().enumerate() {
        topo.pod(p, "sw", &format!("10.244.1.{}/24", 11 + i));
    }
    let specs: Vec<PortSpec> = pods.iter().map(|(p, v)| PortSpec::pod(&topo, p, *v)).collect();
    let sw = Switch::start(&mut topo, "sw", &specs);
    (topo, sw)
}

fn addr(i: usize) -> String {
    format!("10.244.1.{}", 11 + i)
}

/// Runs iperf3 from `client` to `server_ip` (server in `server`); returns bits per second:
/// what the receiver got for TCP, the sender's rate for UDP.
fn iperf3(topo: &mut Topo, client: &str, server: &str, server_ip: &str, udp: bool) -> f64 {
    let end = topo.iperf3(client, server, server_ip, udp);
    let sum = if udp { &end["sum"] } else { &end["sum_received"] };
    sum["bits_per_second"].as_f64().expect("bits_per_second")
}

#[test]
fn two_pods_ping_and_iperf3_tcp_udp() {
    let (mut topo, sw) = node("a", &[("p1", 10), ("p2", 10)]);
    assert_eq!(topo.ping("p1", &addr(1), 5), 5);
    let tcp = iperf3(&mut topo, "p1", "p2", &addr(1), false);
    assert!(tcp > 50e6, "TCP through the switch: {tcp} bit/s");
    let udp = iperf3(&mut topo, "p2", "p1", &addr(0), true);
    assert!(udp > 10e6, "UDP through the switch: {udp} bit/s");
    let (p1, p2) = (sw.port("p1"), sw.port("p2"));
    assert!(p1.kind.starts_with("afxdp"), "{}", p1.kind);
    // Everything p1 received went to p2 (no other port in the VLAN) or was dropped.
    assert!(p1.stats.rx_packets > 1000 && p2.stats.rx_packets > 1000);
    assert!(p2.stats.tx_packets + p1.stats.dropped >= p1.stats.rx_packets);
}

#[test]
fn pods_in_different_vlans_cannot_reach_each_other() {
    let (topo, sw) = node("b", &[("p1", 10), ("p2", 10), ("p3", 20), ("p4", 20)]);
    assert_eq!(topo.ping("p1", &addr(1), 3), 3);
    assert_eq!(topo.ping("p3", &addr(3), 3), 3);
    // p1 -> p3 across VLANs: ARP for p3 floods VLAN 10 only and is never answered.
    assert_eq!(topo.ping("p1", &addr(2), 3), 0);
    assert_eq!(topo.ping("p4", &addr(0), 2), 0);
    // VLAN 10 broadcasts and unicast never reach p3's port.
    let p3_tx = sw.port("p3").stats.tx_packets;
    let _ = topo.exec("p1", "ip", &["neigh", "flush", "all"]);
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    assert_eq!(sw.port("p3").stats.tx_packets, p3_tx, "VLAN 10 traffic left on a VLAN 20 port");
    // MAC learning: each pod's MAC sits on its own port in its own VLAN.
    let fdb = sw.fdb();
    for (i, (pod, vlan)) in [("p1", 10), ("p2", 10), ("p3", 20), ("p4", 20)].iter().enumerate() {
        let out = topo.exec(pod, "cat", &["/sys/class/net/eth0/address"]);
        let m = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let e = fdb
            .iter()
            .find(|e| e.mac == m)
            .unwrap_or_else(|| panic!("pod {i} MAC {m} not learned"));
        assert_eq!((e.port.as_str(), e.vlan), (*pod, *vlan));
    }
}

#[test]
fn counters_match_the_traffic_sent() {
    let (topo, sw) = node("c", &[("p1", 10), ("p2", 10)]);
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    let (b1, b2) = (sw.port("p1").stats, sw.port("p2").stats);
    let out = topo.exec("p1", "ping", &["-c", "200", "-i", "0.005", "-q", "-W", "1", &addr(1)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 received"), "{out:?}");
    let (a1, a2) = (sw.port("p1").stats, sw.port("p2").stats);
    // 200 requests in on p1 and out of p2, 200 replies the other way; ARP may add a few.
    for (what, n) in [
        ("p1 rx", a1.rx_packets - b1.rx_packets),
        ("p2 tx", a2.tx_packets - b2.tx_packets),
        ("p2 rx", a2.rx_packets - b2.rx_packets),
        ("p1 tx", a1.tx_packets - b1.tx_packets),
    ] {
        assert!((200..=206).contains(&n), "{what}: {n} packets for 200 pings");
    }
    // 98-byte echo frames.
    assert!((a1.rx_bytes - b1.rx_bytes) >= 200 * 98);
}

/// Sends raw frames out of `ifname` inside namespace `ns` with an AF_PACKET socket.
fn inject(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_string();
    netdev::in_netns(&format!("/var/run/netns/{ns}"), move || {
        let mut pool =
            Pool::new(PoolConfig { frames: 256, big_buffers: 0, ..PoolConfig::default() })
                .expect("pool");
        let mut port = AfPacketPort::open(&ifname, AfPacketConfig::default()).expect("AF_PACKET");
        let mut batch: Batch<32> = Batch::new();
        for f in &frames {
            let p = pool.alloc_from(f).expect("buffer");
            batch.push(p, Meta::rx(0)).expect("room");
        }
        let r = Port::<32>::tx(&mut port, &mut pool, &mut batch);
        assert_eq!(r.sent, frames.len(), "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
    })
    .expect("enter pod namespace");
}

#[test]
fn malformed_frames_are_dropped_and_counted_and_the_daemon_keeps_running() {
    let (topo, sw) = node("d", &[("p1", 10), ("p2", 10)]);
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    let bcast = [0xff; 6];
    let ok = udp_frame(bcast, mac(1), None, 20);
    let mut bad_ihl = ok.clone();
    bad_ihl[14] = 0x43;
    let mut src_mc = ok.clone();
    src_mc[6] = 0x01;
    let frames = vec![
        raw_frame(bcast, mac(1), None, 0x0800, &[0x45, 0, 0]),
        bad_ihl,
        raw_frame(bcast, mac(1), Some(10), 0x8100, &[0; 40]),
        raw_frame(bcast, mac(1), None, 0x86dd, &[0x60; 20]),
        src_mc,
    ];
    inject(&topo.name("p1"), "eth0", frames);
    let drops = wait_for(Duration::from_secs(3), || {
        let d = sw.port("p1").stats.drops;
        (d.get("ipv4_malformed") == Some(&2)).then_some(d)
    })
    .unwrap_or_else(|| panic!("drops not counted: {:?}", sw.port("p1").stats.drops));
    assert_eq!(drops.get("vlan_stacked"), Some(&1), "{drops:?}");
    assert_eq!(drops.get("ipv6_malformed"), Some(&1), "{drops:?}");
    assert_eq!(drops.get("src_mac_invalid"), Some(&1), "{drops:?}");
    // Still switching.
    assert_eq!(topo.ping("p1", &addr(1), 3), 3);
    assert!(matches!(sw.call(Request::Status), Ok(Reply::Status(_))));
}

#[test]
fn ports_are_added_and_removed_live_without_losing_other_traffic() {
    let (mut topo, sw) = node("e", &[("p1", 10), ("p2", 10)]);
    topo.pod("p3", "sw", "10.244.1.13/24");
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    // A steady ping between p1 and p2 for 4 s while p3 comes and goes.
    let flood = topo.spawn("p1", "ping", &["-c", "400", "-i", "0.01", "-W", "1", "-q", &addr(1)]);
    let mut ports = vec![PortSpec::pod(&topo, "p1", 10), PortSpec::pod(&topo, "p2", 10)];
    ports.push(PortSpec::pod(&topo, "p3", 10));
    sw.reload(&ports);
    let added = wait_for(Duration::from_secs(5), || {
        sw.ports()
            .iter()
            .find(|p| {
                p.name == "p3"
                    && p.kind.starts_with("afxdp native")
                    && !p.kind.contains("attaching")
            })
            .map(|_| ())
    });
    assert!(added.is_some(), "p3 not attached: {:?}", sw.ports());
    assert_eq!(topo.ping("p3", &addr(0), 3), 3, "the added port switches");
    ports.pop();
    sw.reload(&ports);
    let removed = wait_for(Duration::from_secs(5), || {
        (!sw.ports().iter().any(|p| p.name == "p3")).then_some(())
    });
    assert!(removed.is_some(), "p3 still there");
    assert_eq!(topo.ping("p3", &addr(0), 2), 0, "the removed port no longer switches");
    let out = topo.stop_wait(flood, Duration::from_secs(10)).expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("400 received"), "unrelated flow lost packets: {text}");
}

#[test]
fn sigterm_stops_cleanly_and_detaches_xdp() {
    let (mut topo, sw) = node("f", &[("p1", 10), ("p2", 10)]);
    let sw_ns = topo.name("sw");
    let shows_xdp = |topo: &Topo| {
        let out = topo.exec("sw", "ip", &["link", "show", &topo.name("p1")]);
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    };
    assert!(shows_xdp(&topo), "XDP attached while running");
    let out = topo.stop(sw.pid).expect("vswitchd exited");
    assert_eq!(out.status.code(), Some(0), "{}", sw.log());
    assert!(!shows_xdp(&topo), "XDP left on the interface in {sw_ns}");
    assert!(!sw.socket.exists(), "API socket left behind");
}

#[test]
fn a_bad_configuration_is_refused_whole_and_touches_nothing() {
    let mut topo = Topo::new("g");
    topo.netns("sw");
    topo.pod("p1", "sw", "10.244.1.11/24");
    let dir = std::env::temp_dir().join(format!("vswitch-test-{}", topo.name("cfg")));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: String| {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &topo.name("sw")])
            .arg(bin("vswitchd"))
            .args(["--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let sock = dir.join("s.sock");
    let good = PortSpec::pod(&topo, "p1", 10);
    let missing = PortSpec {
        name: "ghost".into(),
        interface: "vsnope0".into(),
        vlan: 10,
        pod_netns: None,
        worker: 0,
        tap: false,
    };
    let out = run(vswitch_suite::switch::config_text(&sock, &[good, missing]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("\"vsnope0\" does not exist"), "{err}");
    let link = topo.exec("sw", "ip", &["link", "show", &topo.name("p1")]);
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"), "the valid port was touched");
    let bad = PortSpec::pod(&topo, "p1", 4095);
    let out = run(vswitch_suite::switch::config_text(&sock, &[bad]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("vlan: 4095 is out of range 1..=4094"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vswitchctl_shows_and_steers_the_running_switch() {
    let (mut topo, sw) = node("h", &[("p1", 10), ("p2", 10)]);
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    let ports = sw.ctl_json(&["show", "ports"]);
    assert_eq!(ports.as_array().map(Vec::len), Some(2));
    let fdb = sw.ctl_json(&["show", "fdb", "--vlan", "10"]);
    assert_eq!(fdb.as_array().map(Vec::len), Some(2), "{fdb}");
    let workers = sw.ctl_json(&["show", "workers"]);
    assert!(workers[0]["packets"].as_u64().unwrap_or(0) >= 4, "{workers}");
    let vlans = sw.ctl_json(&["show", "vlans"]);
    assert_eq!(vlans[0]["vlan"], 10);
    // Take p2 down: pings stop; up again: they come back.
    assert!(sw.ctl(&["port", "set", "p2", "--down"]).status.success());
    assert_eq!(topo.ping("p1", &addr(1), 2), 0);
    assert!(sw.ctl(&["port", "set", "p2", "--up"]).status.success());
    assert_eq!(topo.ping("p1", &addr(1), 2), 2);
    // Bad input is refused with a clear message and changes nothing.
    let out = sw.ctl(&["port", "set", "nosuch", "--down"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown port \"nosuch\""));
    let out = sw.ctl(&["port", "set", "p1", "--access", "5000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5000 is out of range"), "{out:?}");
    assert_eq!(sw.port("p1").vlan, Some(10));
    let out = sw.ctl(&["fdb", "add", "--vlan", "10", "--mac", "02:00:00:00:00:99", "--port", "p2"]);
    assert!(out.status.success(), "{out:?}");
    let fdb = sw.ctl_json(&["show", "fdb", "--port", "p2"]);
    assert!(fdb
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["mac"] == "02:00:00:00:00:99" && e["is_static"] == true));
    // top: rates while traffic flows.
    let flood = topo.spawn("p1", "ping", &["-c", "100", "-i", "0.01", "-q", &addr(1)]);
    let out = sw.ctl(&["--json", "top", "--interval", "0.5", "--count", "1"]);
    let rates: serde_json::Value = serde_json::from_slice(&out.stdout).expect("top --json");
    let ports = rates["ports"].as_array().unwrap_or_else(|| panic!("no ports: {rates}"));
    let p1 = ports.iter().find(|r| r["port"] == "p1").expect("p1 rates");
    assert!(p1["rx_pps"].as_f64().unwrap() > 10.0, "{rates}");
    topo.stop_wait(flood, Duration::from_secs(5));
    // trace: a broadcast from p1 floods VLAN 10, and nothing is sent or learned.
    let before = sw.port("p2").stats.tx_packets;
    let t = sw.ctl_json(&[
        "trace",
        "--in-port",
        "p1",
        "--src",
        "02:00:00:00:00:77",
        "--dst",
        "ff:ff:ff:ff:ff:ff",
    ]);
    assert!(t["verdict"].as_str().unwrap_or("").starts_with("flood on VLAN 10"), "{t}");
    assert_eq!(sw.port("p2").stats.tx_packets, before, "trace sent a packet");
    assert!(!sw.fdb().iter().any(|e| e.mac == "02:00:00:00:00:77"), "trace learned a MAC");
    let metrics = sw.ctl(&["metrics"]);
    assert!(String::from_utf8_lossy(&metrics.stdout)
        .contains("vswitch_port_rx_packets_total{port=\"p1\"}"));
    assert!(topo.ping("p1", &addr(1), 1) == 1);
}

#[test]
fn pods_on_different_workers_talk_through_the_hand_off_rings() {
    let mut topo = Topo::new("i");
    topo.netns("sw");
    topo.pod("p1", "sw", "10.244.1.11/24");
    topo.pod("p2", "sw", "10.244.1.12/24");
    let ports = [PortSpec::pod(&topo, "p1", 10), PortSpec::pod(&topo, "p2", 10).on_worker(1)];
    let sw = Switch::start(&mut topo, "sw", &ports);
    assert_eq!(topo.ping("p1", &addr(1), 5), 5);
    let tcp = iperf3(&mut topo, "p1", "p2", &addr(1), false);
    assert!(tcp > 50e6, "TCP across workers: {tcp} bit/s");
    let workers = match sw.call(Request::ListWorkers) {
        Ok(Reply::Workers(w)) => w,
        other => panic!("{other:?}"),
    };
    assert_eq!(workers.len(), 2);
    assert_eq!(
        (workers[0].ports.clone(), workers[1].ports.clone()),
        (vec!["p1".to_string()], vec!["p2".to_string()])
    );
    assert!(workers.iter().all(|w| w.packets > 1000), "{workers:?}");
    let p2 = sw.port("p2");
    assert!(p2.stats.tx_packets > 1000 && !p2.stats.drops.contains_key("port_unknown"), "{p2:?}");
}

fn attachment(topo: &Topo, pod: &str, cid: &str) -> vswitch_api::PodAttachment {
    vswitch_api::PodAttachment {
        container_id: cid.to_string(),
        ifname: "eth0".into(),
        netns: format!("/var/run/netns/{}", topo.name(pod)),
        host_interface: topo.name(pod),
        vlan: 10,
        mtu: 1500,
        mac: None,
        ips: vec![],
        pod_namespace: Some("default".into()),
        pod_name: Some(pod.to_string()),
        pod_uid: None,
        cgroup_path: None,
        bandwidth: None,
        port_type: None,
    }
}

#[test]
fn pods_attach_through_the_api_and_survive_a_daemon_restart() {
    let mut topo = Topo::new("j");
    topo.netns("sw");
    topo.pod("p1", "sw", "10.244.1.11/24");
    topo.pod("p2", "sw", "10.244.1.12/24");
    let mut sw = Switch::start(&mut topo, "sw", &[]);
    for (pod, cid) in [("p1", "aaaaaaaaaaaaaaaa1111"), ("p2", "bbbbbbbbbbbbbbbb2222")] {
        match sw.call(Request::AttachPod(attachment(&topo, pod, cid))) {
            Ok(Reply::Port(p)) => assert_eq!(p.name, format!("{}-eth0", &cid[..12])),
            other => panic!("attach {pod}: {other:?}"),
        }
    }
    // Attaching the same pod again is answered with its port, not a second one.
    assert!(matches!(
        sw.call(Request::AttachPod(attachment(&topo, "p1", "aaaaaaaaaaaaaaaa1111"))),
        Ok(Reply::Port(_))
    ));
    assert_eq!(sw.ports().len(), 2);
    assert_eq!(topo.ping("p1", &addr(1), 3), 3);
    // A bad attachment is refused with the field named, and changes nothing.
    let mut bad = attachment(&topo, "p1", "cccccccccccc");
    bad.host_interface = "vsnope0".into();
    match sw.call(Request::AttachPod(bad)) {
        Err(vswitch_api::ClientError::Api(e)) => {
            assert!(e.message.contains("host_interface"), "{e:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sw.ports().len(), 2);
    // The daemon remembers its pods across a restart.
    sw.restart(&mut topo, "sw");
    let pods = match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_eq!(sw.wait_attached().len(), 2);
    assert_eq!(topo.ping("p1", &addr(1), 3), 3, "re-attached pods switch again");
    let table = sw.ctl(&["show", "pods"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("default/p1"), "{table:?}");
    // Detach is idempotent.
    for _ in 0..2 {
        let r = sw.call(Request::DetachPod {
            container_id: "aaaaaaaaaaaaaaaa1111".into(),
            ifname: "eth0".into(),
        });
        assert!(matches!(r, Ok(Reply::Done { .. })), "{r:?}");
    }
    assert_eq!(sw.ports().len(), 1);
    assert_eq!(topo.ping("p2", &addr(0), 2), 0, "a detached pod is off the switch");
    // The first pod's veth goes away for good (as when a pod is deleted); a pod attached
    // afterwards on the same worker still gets a working port.
    let host1 = topo.name("p1");
    topo.ip(&["-n", &topo.name("sw"), "link", "del", &host1]);
    topo.pod("p3", "sw", "10.244.1.13/24");
    match sw.call(Request::AttachPod(attachment(&topo, "p3", "dddddddddddddddd4444"))) {
        Ok(Reply::Port(_)) => {}
        other => panic!("attach after the first pod's device was deleted: {other:?}"),
    }
    assert_eq!(topo.ping("p3", &addr(1), 3), 3);
}

/// A TAP pod's device is deleted off the control loop once its port is gone; the same pod
/// attached again at once keeps it, a moment later (the deletion under way) waits for it and
/// gets a fresh device, never one on its way out. Each attachment persists in a file of its
/// own, gone when the pod is detached.
#[test]
fn a_tap_pod_detached_and_attached_again_gets_a_device() {
    let mut topo = Topo::new("r");
    topo.netns("sw");
    topo.netns("t1");
    let sw = Switch::start(&mut topo, "sw", &[]);
    let mut tap = attachment(&topo, "t1", "eeeeeeeeeeeeeeee5555");
    tap.host_interface = String::new();
    tap.port_type = Some("tap".into());
    let state = sw.dir.join("state").join("pods");
    let files = || std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    let has_eth0 = |topo: &Topo| topo.exec("t1", "ip", &["link", "show", "eth0"]).status.success();
    for round in 0..4 {
        match sw.call(Request::AttachPod(tap.clone())) {
            Ok(Reply::Port(p)) => assert!(p.kind.starts_with("tap"), "round {round}: {p:?}"),
            other => panic!("round {round}: attach: {other:?}\n{}", sw.log()),
        }
        assert!(has_eth0(&topo), "round {round}: no eth0 in the pod");
        assert_eq!(files(), 1, "round {round}: one persisted attachment");
        let r = sw.call(Request::DetachPod {
            container_id: tap.container_id.clone(),
            ifname: "eth0".into(),
        });
        assert!(matches!(r, Ok(Reply::Done { .. })), "round {round}: {r:?}");
        assert_eq!(files(), 0, "round {round}: the attachment's file is gone");
        // Odd rounds: past the control loop's tick, so the deletion is queued or under way.
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    let gone = wait_for(Duration::from_secs(5), || (!has_eth0(&topo)).then_some(()));
    assert!(gone.is_some(), "the detached pod's tap device was not deleted\n{}", sw.log());
    assert!(sw.ports().is_empty());
}

#[test]
fn tap_pods_keep_tcp_segments_whole_and_afxdp_pods_get_them_cut() {
    let mut topo = Topo::new("k");
    topo.netns("sw");
    for t in ["t1", "t2"] {
        topo.netns(t);
        let _ = topo.exec(t, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    topo.pod("p3", "sw", "10.244.1.13/24");
    let ports = [
        PortSpec::tap_pod(&topo, "t1", 10),
        PortSpec::tap_pod(&topo, "t2", 10),
        PortSpec::pod(&topo, "p3", 10),
    ];
    let sw = Switch::start(&mut topo, "sw", &ports);
    // The switch made each TAP pod's eth0; the pod (here: the test) configures it.
    for (i, t) in ["t1", "t2"].iter().enumerate() {
        let ns = topo.name(t);
        topo.ip(&["-n", &ns, "addr", "add", &format!("{}/24", addr(i)), "dev", "eth0"]);
        topo.ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    }
    assert!(sw.port("t1").kind.starts_with("tap vnet"), "{}", sw.port("t1").kind);
    assert_eq!(topo.ping("t1", &addr(1), 3), 3);
    assert_eq!(topo.ping("t1", &addr(2), 3), 3, "TAP pod to AF_XDP pod");
    // TAP to TAP: 64 KB segments cross whole.
    let tap_tap = iperf3(&mut topo, "t1", "t2", &addr(1), false);
    assert!(tap_tap > 50e6, "TAP -> TAP TCP: {tap_tap} bit/s");
    // TAP to AF_XDP: the switch cuts the segments and completes their checksums; the
    // receiving kernel verifies every one (bad checksums would stall TCP).
    let tap_xdp = iperf3(&mut topo, "t1", "p3", &addr(2), false);
    assert!(tap_xdp > 50e6, "TAP -> AF_XDP TCP: {tap_xdp} bit/s");
    let xdp_tap = iperf3(&mut topo, "p3", "t2", &addr(1), false);
    assert!(xdp_tap > 50e6, "AF_XDP -> TAP TCP: {xdp_tap} bit/s");
    let t1 = sw.port("t1").stats;
    assert!(t1.rx_bytes / t1.rx_packets.max(1) > 1500, "TAP rx carried GSO packets: {t1:?}");
    let offload_drops: u64 = t1
        .drops
        .iter()
        .filter(|(k, _)| k.contains("gso") || k.contains("csum") || k.contains("offload"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(offload_drops, 0, "{:?}", t1.drops);
    let csum_errors = topo.exec("p3", "nstat", &["-az", "TcpInCsumErrors"]);
    let text = String::from_utf8_lossy(&csum_errors.stdout);
    let errs: u64 = text
        .lines()
        .find(|l| l.starts_with("TcpInCsumErrors"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_eq!(errs, 0, "the AF_XDP pod saw bad TCP checksums");
    eprintln!(
        "TCP Gbit/s: tap->tap {:.2}, tap->afxdp {:.2}, afxdp->tap {:.2}",
        tap_tap / 1e9,
        tap_xdp / 1e9,
        xdp_tap / 1e9
    );
}

/// A pod attached with the CNI `bandwidth` capability gets a QoS class: its ingressRate shapes
/// the traffic into it (measured with iperf3); the class survives a restart with the pod and
/// goes when the pod is detached. Its egressRate needs a shaped uplink, which this node does not
/// have: the limit is reported as not enforced, and the pod still starts.
#[test]
fn a_pods_cni_bandwidth_limits_become_qos_classes() {
    let mut topo = Topo::new("bw");
    topo.netns("sw");
    topo.pod("p1", "sw", "10.244.1.11/24");
    topo.pod("p2", "sw", "10.244.1.12/24");
    let ports = [PortSpec::pod(&topo, "p2", 10)];
    let mut sw = Switch::start(&mut topo, "sw", &ports);
    let mut a = attachment(&topo, "p1", "dddddddddddddddd4444");
    a.bandwidth = Some(vswitch_api::Bandwidth {
        ingress_rate: Some(40_000_000),
        ingress_burst: None,
        egress_rate: Some(60_000_000),
        egress_burst: None,
        ..Default::default()
    });
    match sw.call(Request::AttachPod(a)) {
        Ok(Reply::Port(_)) => {}
        other => panic!("attach: {other:?}{}", sw.log()),
    }
    // Class figures are published by the worker a moment after the change.
    let listed = |sw: &Switch| {
        wait_for(Duration::from_secs(3), || {
            let qos = sw.ctl_json(&["show", "qos"]).to_string();
            qos.contains("dddddddddddd-eth0-in").then_some(qos)
        })
    };
    assert!(listed(&sw).is_some(), "{}", sw.ctl_json(&["show", "qos"]));
    assert!(
        sw.log().contains("egressRate 60000000 bit/s") && sw.log().contains("not enforced"),
        "{}",
        sw.log()
    );
    // Into the pod: about 40 Mbit/s of frames, i.e. a little less TCP payload (38.3 on a
    // quiet machine). The lower bound only catches a collapse; when the hypervisor takes the
    // CPU (20% stolen once gave 21 Mbit/s, on the build that gets 38.3 without), measure
    // again, three times at most.
    let into = measure_tries(
        "TCP into the pod",
        3,
        || iperf3(&mut topo, "p2", "p1", &addr(0), false),
        |into| format!("{into:.0} bit/s"),
        |into| *into > 25e6,
    );
    assert!(into < 42e6 && into > 25e6, "TCP into the pod at {into} bit/s, shaped at 40M");
    // Out of the pod: not shaped.
    let out = iperf3(&mut topo, "p1", "p2", &addr(1), false);
    assert!(out > 100e6, "TCP out of the pod at {out} bit/s");
    sw.restart(&mut topo, "sw");
    sw.wait_attached();
    assert!(listed(&sw).is_some(), "the class comes back with the pod");
    match sw.call(Request::DetachPod {
        container_id: "dddddddddddddddd4444".into(),
        ifname: "eth0".into(),
    }) {
        Ok(_) => {}
        other => panic!("detach: {other:?}"),
    }
    let gone = wait_for(Duration::from_secs(3), || {
        (!sw.ctl_json(&["show", "qos"]).to_string().contains("dddddddddddd-eth0")).then_some(())
    });
    assert!(gone.is_some(), "the class goes with the pod: {}", sw.ctl_json(&["show", "qos"]));
}
