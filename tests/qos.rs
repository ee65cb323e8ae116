//! QoS end to end, as root, in network namespaces: three pods (AF_XDP ports of a real
//! vswitchd) share one uplink whose egress is shaped by a class tree, and iperf3 measures what
//! each pod gets through it to a kernel host behind the uplink.
//!
//! ```text
//!  p1 10.244.1.11 ─┐
//!  p2 10.244.1.12 ─┼─ vswitchd (node namespace) ── uplink ══ veth ══ k 10.244.1.100 (3 iperf3 servers)
//!  p3 10.244.1.13 ─┘                              egress: node 300M ─┬─ p1 150M prio 0
//!                                                                    ├─ p2 100M prio 1 weight 2
//!                                                                    └─ p3  50M prio 1 weight 1
//! ```
//!
//! Rates are measured by the iperf3 receivers (no sleeps stand in for measurements); every
//! process is bounded by `timeout`, and the namespaces go with the `Topo`.

use std::process::Command;
use std::time::Duration;

use vswitch_api::{Reply, Request};
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::{config_text, PortSpec, Switch};

const K_ADDR: &str = "10.244.1.100";
/// TCP payload per full frame: 1448 bytes (MSS with timestamps) in 1514 (what the scheduler
/// charges: the Ethernet frame without FCS). iperf3 reports payload.
const GOODPUT: f64 = 1448.0 / 1514.0;

const CLASSES: &str = r#"
[[qos_class]]
name = "node"
rate = "300M"

[[qos_class]]
name = "p1"
parent = "node"
rate = "150M"
ceil = "300M"
priority = 0

[[qos_class]]
name = "p2"
parent = "node"
rate = "100M"
ceil = "300M"
priority = 1
weight = 2

[[qos_class]]
name = "p3"
parent = "node"
rate = "50M"
ceil = "300M"
priority = 1
weight = 1
"#;

/// The configuration with QoS: the pods' ports name their classes, the uplink's egress is
/// shaped by the tree under "node".
fn qos_config(sw: &Switch, ports: &[PortSpec]) -> String {
    let mut text = config_text(&sw.socket, ports);
    for p in ["p1", "p2", "p3"] {
        let at = format!("name = \"{p}\"\n");
        text = text.replace(&at, &format!("{at}qos_class = \"{p}\"\n"));
    }
    text = text.replace("name = \"uplink\"\n", "name = \"uplink\"\nqos_root = \"node\"\n");
    text + CLASSES
}

fn qos(sw: &Switch) -> Vec<vswitch_api::QosPortInfo> {
    match sw.call(Request::ListQos) {
        Ok(Reply::Qos(q)) => q,
        other => panic!("ListQos: {other:?}"),
    }
}

/// Runs one iperf3 TCP client per `(pod, server port)` at once for `secs` seconds (the first
/// second, slow start, omitted); returns each receiver's rate in Mbit/s.
fn run_clients(topo: &mut Topo, clients: &[(&str, u16)], secs: u32) -> Vec<f64> {
    let t = secs.to_string();
    let limit = (secs + 15).to_string();
    let pids: Vec<u32> = clients
        .iter()
        .map(|(pod, port)| {
            let port = port.to_string();
            let args = [&limit, "iperf3", "-c", K_ADDR, "-p", &port, "-t", &t, "-O", "1", "-J"];
            topo.spawn(pod, "timeout", &args)
        })
        .collect();
    pids.into_iter()
        .zip(clients)
        .map(|(pid, (pod, _))| {
            let out =
                topo.stop_wait(pid, Duration::from_secs(u64::from(secs) + 20)).expect("iperf3");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!("iperf3 from {pod}: {e}: {}", String::from_utf8_lossy(&out.stderr))
            });
            let bps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or_else(|| panic!("iperf3 from {pod}: {v}"));
            bps / 1e6
        })
        .collect()
}

/// Checks rates measured by the receivers against the configured frame rates `want`:
///
/// - each pod's share of the total is within 5% (relative) of its configured share: this is
///   what the scheduler decides, and it held within about 1% in every run;
/// - nobody exceeds its configured rate by more than 5% (the shaper's ceiling);
/// - the total reaches at least 85% of the configured total. Not tighter: on the shared 2-core
///   VM, with three iperf3 pairs, the debug vswitchd and a compiler competing for the cores,
///   the total sometimes falls 5-6% short (measured 275 of 287 Mbit/s once, with shares still
///   49.3/33.6/17.1%), a CPU shortfall rather than a scheduling error; unloaded, each pod was
///   within 0.6% of its rate.
fn check(what: &str, got: &[f64], want: &[f64]) {
    let total: f64 = got.iter().sum();
    let want_total: f64 = want.iter().sum();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (share, want_share) = (g / total, w / want_total);
        assert!(
            (share - want_share).abs() <= 0.05 * want_share,
            "{what}: pod {} got {:.1}% of the total, expected {:.1}% ±5% (all: {got:.1?} Mbit/s)",
            i + 1,
            share * 100.0,
            want_share * 100.0
        );
        let w = w * GOODPUT;
        assert!(*g <= 1.05 * w, "{what}: pod {} got {g:.1} Mbit/s, above {w:.1} +5%", i + 1);
    }
    let want_total = want_total * GOODPUT;
    assert!(
        total >= 0.85 * want_total,
        "{what}: {total:.1} Mbit/s in total, expected {want_total:.1} (all: {got:.1?})"
    );
}

#[test]
fn three_pods_share_a_shaped_uplink_by_guarantee_then_borrow() {
    let mut topo = Topo::new("qo");
    topo.node("n");
    for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
        topo.pod(p, "n", &format!("10.244.1.{}/24", 11 + i));
    }
    topo.node("k");
    topo.veth("n", "up", "k", "kup");
    let kup = topo.name("kup");
    topo.ip(&["-n", &topo.name("k"), "addr", "add", &format!("{K_ADDR}/24"), "dev", &kup]);
    // The switch's AF_XDP uplink carries no checksum-offload state: k sends full checksums.
    let off = topo.exec("k", "ethtool", &["-K", &kup, "tx", "off"]);
    assert!(off.status.success(), "ethtool: {}", String::from_utf8_lossy(&off.stderr));

    let mut ports: Vec<PortSpec> =
        ["p1", "p2", "p3"].iter().map(|p| PortSpec::pod(&topo, p, 1)).collect();
    ports.push(PortSpec::uplink(&topo, "up"));
    let sw = Switch::start(&mut topo, "n", &ports);
    sw.wait_attached();

    // QoS arrives with a reload (SIGHUP), applied live.
    std::fs::write(&sw.config, qos_config(&sw, &ports)).expect("write config");
    let hup = Command::new("kill").args(["-HUP", &sw.pid.to_string()]).status().expect("kill");
    assert!(hup.success());
    let shaped = wait_for(Duration::from_secs(5), || {
        let q = qos(&sw);
        (q.len() == 1 && q[0].classes.len() == 4).then_some(q)
    })
    .unwrap_or_else(|| panic!("QoS not applied: {:?}\n{}", qos(&sw), sw.log()));
    assert_eq!(shaped[0].port, "uplink");
    let p1 = shaped[0].classes.iter().find(|c| c.name == "p1").expect("class p1");
    assert_eq!(
        (p1.rate_bps, p1.ceil_bps, p1.ports.clone()),
        (150_000_000, 300_000_000, vec!["p1".to_string()])
    );
    // The guarantees use the whole root: no default leaf.
    assert!(shaped[0].classes.iter().all(|c| c.name != "default"));

    for p in ["p1", "p2", "p3"] {
        assert!(topo.ping(p, K_ADDR, 2) >= 1, "{p} cannot reach k");
    }
    for port in 5201..=5203u16 {
        let port = port.to_string();
        topo.spawn("k", "timeout", &["60", "iperf3", "-s", "-p", &port]);
    }
    let listening = wait_for(Duration::from_secs(5), || {
        let out = topo.exec("k", "ss", &["-ltnH"]);
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        (5201..=5203).all(|p| s.contains(&format!(":{p} "))).then_some(())
    });
    assert!(listening.is_some(), "iperf3 servers did not start");

    // Phase 1: all three busy. Nobody can borrow (the guarantees fill the root), so each gets
    // its guarantee.
    let all = run_clients(&mut topo, &[("p1", 5201), ("p2", 5202), ("p3", 5203)], 5);
    eprintln!(
        "all busy: {all:.1?} Mbit/s of payload (expected {:.1?})",
        [150.0 * GOODPUT, 100.0 * GOODPUT, 50.0 * GOODPUT]
    );
    check("all busy", &all, &[150.0, 100.0, 50.0]);

    // Phase 2: p1 idle. p2 and p3 (same priority) borrow its 150M by weight, 2:1: 200M and
    // 100M.
    let two = run_clients(&mut topo, &[("p2", 5202), ("p3", 5203)], 5);
    eprintln!(
        "p1 idle: {two:.1?} Mbit/s of payload (expected {:.1?})",
        [200.0 * GOODPUT, 100.0 * GOODPUT]
    );
    check("p1 idle", &two, &[200.0, 100.0]);
    let q = qos(&sw);
    let borrowed =
        |n: &str| q[0].classes.iter().find(|c| c.name == n).map_or(0, |c| c.borrowed_bytes);
    assert!(borrowed("p2") > 0 && borrowed("p3") > 0, "{q:?}");

    // Live changes through vswitchctl: refused whole when inconsistent, named; applied
    // otherwise (the queue is kept).
    let o = sw.ctl(&["qos", "set", "p3", "--rate", "100M"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("(\"node\").rate: 300000000 is below the sum 350000000"), "{err}");
    let o = sw.ctl(&["qos", "set", "p3", "--ceil", "10M", "--rate", "20M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("(\"p3\").ceil: 10000000 is below the rate 20000000"));
    let o = sw.ctl(&["qos", "set", "p3", "--ceil", "60M"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ceil = wait_for(Duration::from_secs(2), || {
        let q = qos(&sw);
        let c = q[0].classes.iter().find(|c| c.name == "p3")?.ceil_bps;
        (c == 60_000_000).then_some(c)
    });
    assert!(ceil.is_some(), "ceil change not applied: {:?}", qos(&sw));
    let one = run_clients(&mut topo, &[("p3", 5203)], 3);
    eprintln!("p3 alone, ceiling 60M: {one:.1?} Mbit/s of payload");
    check("p3 capped", &one, &[60.0]);
    let text = String::from_utf8_lossy(&sw.ctl(&["show", "qos"]).stdout).to_string();
    assert!(text.contains("port uplink"), "{text}");
}
