//! Scale: many pods added and deleted on one node through the plugin and a real vswitchd,
//! reporting ADD and DEL latency (p50/p99), and checking that nothing leaks: no host veth, no
//! pod interface (TAP device or veth end), no host-local reservation, no attachment, no switch
//! port.
//!
//! `VSWITCH_CNI_PODS` sets the number of pods (default 1000), `VSWITCH_CNI_PORT_TYPE` their
//! port type (`tap` or `afxdp`; unset, the network configuration names none and the pods get
//! the plugin's default, `tap`), `VSWITCH_CNI_POOL_FRAMES` the switch's pool size (default:
//! what the pods' fill rings need, rounded up to a power of two; it matters to AF_XDP pods,
//! whose bind costs the kernel a descriptor per pool frame). Run with `--nocapture` to see the
//! latencies, with a breakdown by step: the plugin's own (`VSWITCH_CNI_TIMING`) and the
//! daemon's, from its log (the `pod attached` and `pod detached` lines); with
//! `VSWITCH_CNI_FIFTHS=1` also each step's p50/p99 over each fifth of the pods in order, which
//! shows what grows with their number.
//!
//! Measured at 1 000 pods (release build, this 2-CPU VM): TAP pods ADD p50 7.9-11.3 ms, p99
//! 14.7-24.4 ms, DEL 5.3-6.7 / 10.0-15.3 ms; AF_XDP pods ADD p50 22.8-29.9 ms, p99 57-103 ms
//! with the default pool, p99 33-34 ms with `VSWITCH_CNI_POOL_FRAMES=68096`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{attachment_env, link_exists, require_host_local, reserved_ips, run_in};
use serde_json::json;
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::Topo;
use vswitch_suite::switch::Switch;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `text` without terminal colour sequences (the daemon's log has them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Step durations in milliseconds, by step name, in the order steps were first seen.
#[derive(Default)]
struct Breakdown {
    order: Vec<String>,
    steps: BTreeMap<String, Vec<f64>>,
}

impl Breakdown {
    /// Adds the `name=ms` fields of `line` that follow `after`.
    fn add_line(&mut self, line: &str, after: &str) {
        let Some(rest) = line.split_once(after).map(|(_, r)| r) else { return };
        for field in rest.split_whitespace() {
            let Some((name, v)) = field.split_once('=') else { continue };
            let Ok(ms) = v.parse::<f64>() else { continue };
            if !self.steps.contains_key(name) {
                self.order.push(name.to_string());
            }
            self.steps.entry(name.to_string()).or_default().push(ms);
        }
    }

    fn print(&mut self, what: &str) {
        if self.order.is_empty() {
            return;
        }
        // Which steps grow with the number of pods: each fifth of the run on its own.
        if std::env::var_os("VSWITCH_CNI_FIFTHS").is_some_and(|v| v != "0") {
            for name in &self.order {
                let v = &self.steps[name];
                let fifths: Vec<String> = v
                    .chunks(v.len().div_ceil(5).max(1))
                    .map(|c| {
                        let mut c = c.to_vec();
                        c.sort_by(f64::total_cmp);
                        let at = |p: f64| c[((c.len() as f64 - 1.0) * p).round() as usize];
                        format!("{:.1}/{:.1}", at(0.5), at(0.99))
                    })
                    .collect();
                println!("    {what} {name} by fifth of the pods: {}", fifths.join("  "));
            }
        }
        let mut out = format!("  {what}:");
        for name in &self.order {
            let v = self.steps.get_mut(name).expect("seen");
            v.sort_by(f64::total_cmp);
            let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
            out += &format!(" {name} {:.1}/{:.1}", at(0.5), at(0.99));
        }
        println!("{out}  (ms, p50/p99)");
    }
}

/// The plugin's environment for `cmd` on pod `id`, with its step timings on.
fn timed<'a>(cmd: &'a str, id: &'a str, ns: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = attachment_env(cmd, id, ns, "eth0");
    env.push(("VSWITCH_CNI_TIMING", "1"));
    env
}

#[test]
fn many_pods_are_added_and_deleted_without_leaks() {
    require_host_local();
    let n: usize =
        std::env::var("VSWITCH_CNI_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    // Unset: the configuration names no port type, so the pods get the plugin's default.
    let port_type = std::env::var("VSWITCH_CNI_PORT_TYPE").ok().filter(|t| !t.is_empty());
    let mut topo = Topo::new("cs");
    let node = topo.netns("node");
    // Pods' ports keep 64 frames each on their fill rings: 1000 pods need 64 000 frames.
    // `VSWITCH_CNI_POOL_FRAMES` overrides the pool size: every AF_XDP socket's bind allocates
    // and zeroes a kernel descriptor (128 bytes) per pool frame, so a pod's attachment costs
    // time and kernel memory in proportion to the pool (16 MiB a pod with 131 072 frames).
    let frames = std::env::var("VSWITCH_CNI_POOL_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((n * 64 + 4096).next_power_of_two());
    let extra = format!("\n[switch]\npod_ring_size = 64\n\n[pool]\nframes = {frames}\n");
    let sw = Switch::start_with(&mut topo, "node", &[], &extra);
    let data = tempfile::tempdir().unwrap();
    let mut conf = json!({
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
    });
    if let Some(t) = &port_type {
        conf["portType"] = json!(t);
    }
    let conf = conf.to_string();
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
    let mut add_steps = Breakdown::default();
    let mut hosts = Vec::with_capacity(n);
    let mut ips = Vec::with_capacity(n);
    for (id, ns) in &pods {
        let t = Instant::now();
        let out = run_in(Some(&node), &timed("ADD", id, ns), &conf).ok();
        add.push(t.elapsed());
        add_steps.add_line(&out.stderr, "timing ADD ");
        // An AF_XDP pod's result names its host veth first; a TAP pod's only the pod's.
        if out.json["interfaces"].as_array().is_some_and(|i| i.len() == 2) {
            hosts.push(out.json["interfaces"][0]["name"].as_str().unwrap().to_string());
        }
        let ip = out.json["ips"][0]["address"].as_str().unwrap().to_string();
        ips.push(ip.split('/').next().unwrap().to_string());
    }
    let ports = sw.ports();
    assert_eq!(ports.len(), n, "one switch port per pod");
    // The port type the pods got (the plugin's default when none was asked for); the switch's
    // kinds say more (`afxdp-native`, `tap (attaching)`).
    let family = |k: &str| ["tap", "afxdp"].into_iter().find(|f| k.starts_with(f)).unwrap_or("?");
    let kind = family(&ports[0].kind);
    let kinds: std::collections::BTreeSet<&str> = ports.iter().map(|p| p.kind.as_str()).collect();
    assert!(kinds.iter().all(|k| family(k) == kind), "mixed port kinds: {kinds:?}");
    if let Some(t) = &port_type {
        assert_eq!(kind, t, "asked for {t} pods");
    }
    assert_eq!(hosts.len(), if kind == "afxdp" { n } else { 0 }, "host veths");
    // The first and the last pod talk through the switch.
    let got = topo.ping("p0", &ips[n - 1], 3);
    assert!(got >= 2, "p0 -> p{} through the switch: {got}/3", n - 1);

    let mut del = Vec::with_capacity(n);
    let mut del_steps = Breakdown::default();
    for (id, ns) in &pods {
        let t = Instant::now();
        let out = run_in(Some(&node), &timed("DEL", id, ns), &conf).ok();
        del.push(t.elapsed());
        del_steps.add_line(&out.stderr, "timing DEL ");
    }
    add.sort();
    del.sort();
    println!(
        "{n} {kind} pods: ADD p50 {:?} p99 {:?} max {:?}; DEL p50 {:?} p99 {:?} max {:?}",
        percentile(&add, 0.5),
        percentile(&add, 0.99),
        add[n - 1],
        percentile(&del, 0.5),
        percentile(&del, 0.99),
        del[n - 1]
    );
    add_steps.print("plugin ADD");
    del_steps.print("plugin DEL");
    let (mut attach_steps, mut detach_steps) = (Breakdown::default(), Breakdown::default());
    for line in strip_ansi(&sw.log()).lines() {
        if line.contains("pod attached") {
            attach_steps.add_line(line, "pod attached");
        } else if line.contains("pod detached") {
            detach_steps.add_line(line, "pod detached");
        }
    }
    attach_steps.print("vswitchd AttachPod");
    detach_steps.print("vswitchd DetachPod");
    // Nothing left behind.
    assert!(sw.ports().is_empty(), "switch ports left");
    match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => assert!(p.is_empty(), "attachments left: {}", p.len()),
        other => panic!("{other:?}"),
    }
    assert!(reserved_ips(data.path()).is_empty(), "IPAM reservations left");
    let left: Vec<&String> = hosts.iter().filter(|h| link_exists(&node, h)).collect();
    assert!(left.is_empty(), "host veths left: {left:?}");
    // A veth's pod end goes with its host end; a TAP pod's device is deleted by vswitchd off
    // its control loop (5-15 ms a device, after DEL has answered): give it time.
    let mut left: Vec<&str> =
        pods.iter().map(|(_, ns)| ns.trim_start_matches("/var/run/netns/")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        left.retain(|ns| link_exists(ns, "eth0"));
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        left.is_empty(),
        "pod interfaces left in {} pods after 60 s: {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );
}
