//! Throwaway hosts for integration tests: network namespaces and veth pairs made with `ip`,
//! named with a per-test prefix, and removed when the [`Topo`] is dropped, even when the test
//! fails. Processes started through a `Topo` are ended by PID on drop. Nothing touches the root
//! namespace: addresses exist only inside the test's namespaces (10.244.0.0/16 for pods,
//! 198.18.0.0/15 for node underlays).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the test can build namespaces (root, `ip` present). Tests that need them fail with
/// this explanation otherwise: CI runs as root.
pub fn require_root() {
    // /proc/self/status tells the effective uid (second field of "Uid:").
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("1");
    assert_eq!(euid, "0", "this test builds network namespaces and must run as root");
}

/// A test's namespaces and processes.
pub struct Topo {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Topo {
    /// A topology whose names start with `vs<tag><pid % 1000>-` (`tag`: 1-3 characters, unique
    /// per test, so parallel tests never share a name and interface names stay under 16).
    pub fn new(tag: &str) -> Topo {
        require_root();
        assert!(tag.len() <= 3, "tag {tag:?} too long");
        let prefix = format!("vs{tag}{}-", std::process::id() % 1000);
        let t = Topo { prefix, namespaces: Vec::new(), children: Vec::new() };
        t.cleanup_leftovers();
        t
    }

    /// The full name of `short` (a namespace or the switch-side interface of a pod).
    pub fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    fn cleanup_leftovers(&self) {
        let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let n = line.split_whitespace().next().unwrap_or("");
            if n.starts_with(&self.prefix) {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }

    /// Runs `ip ARGS`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A namespace named `short` with loopback up.
    pub fn netns(&mut self, short: &str) -> String {
        let n = self.name(short);
        self.ip(&["netns", "add", &n]);
        self.namespaces.push(n.clone());
        self.ip(&["-n", &n, "link", "set", "lo", "up"]);
        n
    }

    /// A pod namespace `pod` with `eth0` at `addr` (e.g. "10.244.1.11/24"), whose veth peer is
    /// the interface `<prefix><pod>` in namespace `sw`, up and without an address.
    pub fn pod(&mut self, pod: &str, sw: &str, addr: &str) -> String {
        let ns = self.netns(pod);
        let swns = self.name(sw);
        let host = self.name(pod);
        self.ip(&[
            "link", "add", &host, "netns", &swns, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        // No IPv6 chatter (router solicitations, DAD) so counters see only the test's traffic.
        let _ = self.exec(pod, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        self.ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        self.ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        self.ip(&["-n", &swns, "link", "set", &host, "up"]);
        ns
    }

    /// A node namespace `short`: loopback up, IPv6 off (no router solicitations or DAD on its
    /// interfaces, so the switch and the counters see only the test's traffic).
    pub fn node(&mut self, short: &str) -> String {
        let n = self.netns(short);
        self.sysctl(
            short,
            &["net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        n
    }

    /// Sets sysctls (`key=value`) inside namespace `short`, panicking on failure.
    pub fn sysctl(&self, short: &str, settings: &[&str]) {
        let out = self.exec(short, "sysctl", &[&["-qw"], settings].concat());
        assert!(
            out.status.success(),
            "sysctl {settings:?} in {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A veth pair, both ends up and without an address: `<prefix><if_a>` in namespace `ns_a`
    /// and `<prefix><if_b>` in namespace `ns_b` (short names).
    pub fn veth(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) {
        let (a, b) = (self.name(if_a), self.name(if_b));
        let (na, nb) = (self.name(ns_a), self.name(ns_b));
        self.ip(&[
            "link", "add", &a, "netns", &na, "type", "veth", "peer", "name", &b, "netns", &nb,
        ]);
        self.ip(&["-n", &na, "link", "set", &a, "up"]);
        self.ip(&["-n", &nb, "link", "set", &b, "up"]);
    }

    /// The MAC address of interface `ifname` (its full name) in namespace `short`.
    pub fn mac(&self, short: &str, ifname: &str) -> String {
        let out = self.exec(short, "ip", &["-j", "link", "show", "dev", ifname]);
        assert!(out.status.success(), "ip link show {ifname} in {short}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link JSON");
        v[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address for {ifname} in {short}: {v}"))
            .to_string()
    }

    /// Runs `ping ARGS` in namespace `from` (bounded by `timeout 20`) and returns everything
    /// it printed, stdout then stderr: for ICMP errors ("Time to live exceeded") and TTLs.
    pub fn ping_text(&self, from: &str, args: &[&str]) -> String {
        let out = self.exec(from, "timeout", &[&["20", "ping"], args].concat());
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Runs a command inside namespace `short` and returns its output.
    pub fn exec(&self, short: &str, cmd: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name(short), cmd])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {cmd} in {short}: {e}"))
    }

    /// Starts a command inside namespace `short`; it is ended (by PID) when the Topo drops.
    pub fn spawn(&mut self, short: &str, cmd: &str, args: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name(short), cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd} in {short}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Like [`Topo::spawn`], with the process's stdout and stderr going to the file `log` (a
    /// long-running, chatty process must not block on a pipe nobody reads).
    pub fn spawn_logged(
        &mut self,
        short: &str,
        cmd: &str,
        args: &[&str],
        log: &std::path::Path,
    ) -> u32 {
        let file =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name(short), cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd} in {short}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Sends SIGTERM to a process started with [`Topo::spawn`] and waits for it (bounded).
    pub fn stop(&mut self, pid: u32) -> Option<Output> {
        let i = self.children.iter().position(|c| c.id() == pid)?;
        let child = self.children.remove(i);
        // ip netns exec execs the command, so the PID is the command's own.
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let mut child = child;
        wait_exit(&mut child, Duration::from_secs(10));
        let _ = child.kill();
        child.wait_with_output().ok()
    }

    /// Waits for a process started with [`Topo::spawn`] to end by itself and returns its
    /// output. After `timeout` it gets SIGINT, so that a ping still running (its timers
    /// slowed on a starved machine) prints its summary of what it sent, and 2 s later SIGKILL.
    pub fn stop_wait(&mut self, pid: u32, timeout: Duration) -> Option<Output> {
        let i = self.children.iter().position(|c| c.id() == pid)?;
        let mut child = self.children.remove(i);
        if !wait_exit(&mut child, timeout) {
            eprintln!("stop_wait: pid {pid} still running after {timeout:?}: SIGINT");
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            wait_exit(&mut child, Duration::from_secs(2));
        }
        let _ = child.kill();
        child.wait_with_output().ok()
    }

    /// Runs iperf3 for 2 s from namespace `client` to `server_ip`, the server (`-1`: one test)
    /// in `server`, everything bounded by `timeout`; UDP offers 100 Mbit/s. Returns the `end`
    /// object of iperf3's JSON report (`sum_received`, and for UDP `sum` with the loss).
    pub fn iperf3(
        &mut self,
        client: &str,
        server: &str,
        server_ip: &str,
        udp: bool,
    ) -> serde_json::Value {
        let port = if udp { "5202" } else { "5201" };
        let spid = self.spawn(server, "iperf3", &["-s", "-1", "-p", port]);
        std::thread::sleep(Duration::from_millis(300));
        let mut args = vec!["20", "iperf3", "-c", server_ip, "-p", port, "-t", "2", "-J"];
        if udp {
            args.extend(["-u", "-b", "100M"]);
        }
        let out = self.exec(client, "timeout", &args);
        self.stop(spid);
        assert!(
            out.status.success(),
            "iperf3 {client} -> {server_ip}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
        v["end"].take()
    }

    /// Ping from namespace `from` to `addr`: how many of `count` replies came back.
    pub fn ping(&self, from: &str, addr: &str, count: u32) -> u32 {
        let out =
            self.exec(from, "ping", &["-c", &count.to_string(), "-i", "0.2", "-W", "1", addr]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                let (_, rest) = l.split_once(" packets transmitted, ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        // SIGTERM first: a child that is `timeout CMD` passes it on to CMD and exits, where a
        // SIGKILL would leave CMD (an iperf3 server) running without its time bound.
        for c in &self.children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Where cargo put the workspace's binaries (`vswitchd`, `vswitchctl`) for this test build.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
}

/// Measures a rate up to `tries` times, until `enough` accepts the result, and returns the
/// last result. Each try is printed (`what`, the result as `show` puts it, and the share of
/// the machine's CPU time the hypervisor stole meanwhile): on a shared VM, steal is what a
/// rate measured in a namespace test falls short with, so a failure says whether the
/// machine or the switch fell short.
pub fn measure_tries<T>(
    what: &str,
    tries: u32,
    mut measure: impl FnMut() -> T,
    show: impl Fn(&T) -> String,
    enough: impl Fn(&T) -> bool,
) -> T {
    let mut attempt = 1;
    loop {
        let before = cpu_ticks();
        let got = measure();
        let stolen = steal_share(before, cpu_ticks()) * 100.0;
        eprintln!("{what}, try {attempt}: {}, {stolen:.0}% of CPU time stolen", show(&got));
        if attempt >= tries || enough(&got) {
            return got;
        }
        attempt += 1;
    }
}

/// The machine's CPU time so far, in ticks: (steal, all), from `/proc/stat`.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is also
    // counted in user and nice.
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    (f.get(7).copied().unwrap_or(0), f.iter().take(8).sum())
}

/// The share of CPU time stolen between two readings of [`cpu_ticks`].
fn steal_share(a: (u64, u64), b: (u64, u64)) -> f64 {
    let all = b.1.saturating_sub(a.1);
    if all == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / all as f64
}

/// Polls `child` every 20 ms until it exits or `timeout` passes; whether it exited.
fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A workspace binary, built by `cargo build --workspace --bins` (the test script does that).
/// `cargo test` alone does not rebuild another package's binaries: after a change to the
/// switch, build them again before running a namespace test by itself.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first", p.display());
    p
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
