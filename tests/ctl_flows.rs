//! `vswitchctl capture`, `show flows` and `flow add|del|dump` against a real vswitchd, as root,
//! in network namespaces: two pods `a` (10.244.1.11) and `b` (10.244.1.12) on one switch.
//!
//! - A capture on `a` while `a` pings `b` gives a pcap with the echo requests (rx on `a`) and
//!   the replies (tx on `a`), counted from the file.
//! - A rule dropping ICMP from `a` makes ping fail while TCP and UDP (iperf3) still pass; its
//!   hits equal the pings sent; deleting it restores ping.
//! - `show flows` lists the cached L2 flows between the pods.
//! - Bad rules and captures are refused with messages naming the field and value, and the
//!   running rules are unchanged.
//!
//! Every wait is bounded; the namespaces go when the `Topo` drops.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use vswitch_suite::netns::{wait_for, Topo};
use vswitch_suite::switch::{PortSpec, Switch};

const B: &str = "10.244.1.12";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// ICMP echo requests and replies in a pcap file (Ethernet, IPv4), and the other records.
fn icmp_in_pcap(f: &[u8]) -> (usize, usize, usize) {
    assert!(f.len() >= 24 && f[0..4] == [0xd4, 0xc3, 0xb2, 0xa1], "not a pcap file");
    assert_eq!(u32::from_le_bytes(f[20..24].try_into().unwrap()), 1, "linktype Ethernet");
    let (mut req, mut rep, mut other) = (0, 0, 0);
    let mut at = 24;
    while at + 16 <= f.len() {
        let incl = u32::from_le_bytes(f[at + 8..at + 12].try_into().unwrap()) as usize;
        let d = &f[at + 16..at + 16 + incl];
        at += 16 + incl;
        let icmp = d.len() > 34 && d[12..14] == [0x08, 0x00] && d[23] == 1;
        let ihl = d.get(14).map_or(0, |b| (b & 0x0f) as usize * 4);
        match (icmp, d.get(14 + ihl)) {
            (true, Some(8)) => req += 1,
            (true, Some(0)) => rep += 1,
            _ => other += 1,
        }
    }
    assert_eq!(at, f.len(), "records end with the file");
    (req, rep, other)
}

fn rules(sw: &Switch) -> Vec<Value> {
    sw.ctl_json(&["flow", "dump"]).as_array().cloned().expect("flow dump is an array")
}

#[test]
fn capture_flow_rules_and_the_flow_cache() {
    let mut topo = Topo::new("fw");
    topo.node("n");
    topo.pod("a", "n", "10.244.1.11/24");
    topo.pod("b", "n", "10.244.1.12/24");
    for p in ["a", "b"] {
        topo.sysctl(p, &["net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let ports = [PortSpec::pod(&topo, "a", 1), PortSpec::pod(&topo, "b", 1)];
    let sw = Switch::start(&mut topo, "n", &ports);
    sw.wait_attached();
    let first = wait_for(Duration::from_secs(10), || (topo.ping("a", B, 1) == 1).then_some(()));
    assert!(first.is_some(), "a -> b: no reply in 10 s\n{}", sw.log());

    // capture: 3 s on a, both directions, while a sends 4 pings.
    let dir = tempfile_dir(&sw);
    let pcap = dir.join("a.pcap");
    let file = pcap.to_str().unwrap();
    let (out, pinged) = std::thread::scope(|s| {
        let cap = s.spawn(|| sw.ctl(&["capture", "a", "--seconds", "3", "-w", file]));
        std::thread::sleep(Duration::from_millis(500));
        let pinged = topo.ping("a", B, 4);
        (cap.join().expect("capture thread"), pinged)
    });
    assert!(out.status.success(), "capture: {}", stderr(&out));
    assert_eq!(pinged, 4);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.ends_with("not captured: ring full (stopped: time)\n"), "{summary}");
    assert!(summary.contains(", 0 not captured"), "{summary}");
    let (req, rep, _) = icmp_in_pcap(&std::fs::read(&pcap).expect("pcap written"));
    assert_eq!((req, rep), (4, 4), "echo requests (rx) and replies (tx) on a");
    // A count bound, rx only: the 2 first requests, no replies.
    let (out, _) = std::thread::scope(|s| {
        let cap = s.spawn(|| {
            sw.ctl(&["capture", "a", "-c", "2", "--direction", "rx", "--seconds", "10", "-w", file])
        });
        std::thread::sleep(Duration::from_millis(500));
        (cap.join_with(|| topo.ping("a", B, 3)), ())
    });
    assert!(out.status.success(), "capture: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped: count"));
    let (req, rep, other) = icmp_in_pcap(&std::fs::read(&pcap).unwrap());
    assert_eq!((req + other, rep), (2, 0), "two rx packets, no replies");
    assert!(req >= 1, "an echo request among them");

    // show flows: the cached L2 flows between the pods (published once a second).
    let cached = wait_for(Duration::from_secs(5), || {
        topo.ping("a", B, 1);
        let v = sw.ctl_json(&["show", "flows"]);
        let flows = v.as_array()?.clone();
        let ab = flows.iter().any(|f| f["in_port"] == "a" && f["action"] == "output:b");
        let ba = flows.iter().any(|f| f["in_port"] == "b" && f["action"] == "output:a");
        (ab && ba).then_some(flows)
    });
    let flows =
        cached.unwrap_or_else(|| panic!("no a<->b flows: {}", sw.ctl_json(&["show", "flows"])));
    assert!(flows.iter().all(|f| f["vlan"] == 1), "{flows:?}");

    // A rule dropping ICMP from a: ping fails, its hits are the pings sent.
    let add =
        ["flow", "add", "no-icmp-a", "--priority", "100", "--in-port", "a", "--proto", "icmp"];
    let o = sw.ctl(&[&add[..], &["--action", "drop"]].concat());
    assert!(o.status.success(), "flow add: {}", stderr(&o));
    assert_eq!(topo.ping("a", B, 5), 0, "ICMP from a is dropped");
    let r = rules(&sw);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["rule"]["name"], "no-icmp-a");
    assert_eq!(r[0]["packets"], 5, "hits = pings sent: {r:?}");
    assert_eq!(r[0]["bytes"], 5 * 98, "{r:?}");
    assert_eq!(sw.port("a").stats.drops.get("acl_drop"), Some(&5));
    // TCP and UDP still pass.
    topo.spawn("b", "timeout", &["60", "iperf3", "-s", "-p", "5201"]);
    let listening = wait_for(Duration::from_secs(5), || {
        let out = topo.exec("b", "ss", &["-ltnH"]);
        String::from_utf8_lossy(&out.stdout).contains(":5201").then_some(())
    });
    assert!(listening.is_some(), "iperf3 server did not start");
    for udp in [false, true] {
        let mut args = vec!["20", "iperf3", "-c", B, "-p", "5201", "-t", "1"];
        if udp {
            args.extend(["-u", "-b", "1M"]);
        }
        let o = topo.exec("a", "timeout", &args);
        assert!(
            o.status.success(),
            "iperf3 udp={udp}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }

    // Bad input: refused naming field and value; the running rules unchanged.
    let msg = sw.ctl_refused(&["flow", "add", "v", "--vlan", "5000", "--action", "drop"]);
    assert!(msg.contains("(\"v\").vlan: VLAN 5000 is out of range 1..=4094"), "{msg}");
    let msg = sw.ctl_refused(&["flow", "add", "p", "--in-port", "nope", "--action", "drop"]);
    assert!(msg.contains("(\"p\").in_port: unknown port \"nope\""), "{msg}");
    let msg = sw.ctl_refused(&["flow", "add", "d", "--dport", "80", "--action", "drop"]);
    assert!(msg.contains("(\"d\").dst_port: a port match needs proto tcp or udp"), "{msg}");
    let dup = ["flow", "add", "dup", "--priority", "100", "--in-port", "a", "--proto", "icmp"];
    let msg = sw.ctl_refused(&[&dup[..], &["--action", "normal"]].concat());
    assert!(msg.contains("rule \"no-icmp-a\" has the same match and priority 100"), "{msg}");
    let msg = sw.ctl_refused(&["flow", "del", "nope"]);
    assert!(msg.contains("no flow rule \"nope\""), "{msg}");
    let msg = sw.ctl_refused(&["capture", "nope", "-w", file]);
    assert!(msg.contains("unknown port \"nope\""), "{msg}");
    let msg = sw.ctl_refused(&["capture", "a", "-c", "0", "-w", file]);
    assert!(msg.contains("count 0 is out of range 1..=100000"), "{msg}");
    let msg = sw.ctl_refused(&["capture", "a", "--direction", "in", "-w", file]);
    assert!(msg.contains("direction \"in\""), "{msg}");
    let r = rules(&sw);
    assert_eq!((r.len(), &r[0]["packets"]), (1, &Value::from(5)), "{r:?}");
    assert_eq!(topo.ping("a", B, 2), 0, "the rule still drops");

    // flow del restores ping.
    let o = sw.ctl(&["flow", "del", "no-icmp-a"]);
    assert!(o.status.success(), "flow del: {}", stderr(&o));
    assert_eq!(topo.ping("a", B, 3), 3);
    assert!(rules(&sw).is_empty());
}

/// A directory for the test's files, inside the switch's own (removed with it).
fn tempfile_dir(sw: &Switch) -> std::path::PathBuf {
    let d = sw.dir.join("captures");
    std::fs::create_dir_all(&d).expect("create capture dir");
    d
}

/// Joins a capture thread after running `f` meanwhile.
trait JoinWith {
    fn join_with<T>(self, f: impl FnOnce() -> T) -> Output;
}

impl JoinWith for std::thread::ScopedJoinHandle<'_, Output> {
    fn join_with<T>(self, f: impl FnOnce() -> T) -> Output {
        f();
        self.join().expect("capture thread")
    }
}
