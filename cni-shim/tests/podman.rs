//! A real container runtime: podman (CNI network backend) starts two containers from a local
//! root filesystem (busybox), the plugin wires them to a real vswitchd, they ping each other
//! through the switch, and removing them leaves nothing behind. One is on a network that names
//! no port type (a TAP pod, the default), the other on one with `"portType": "afxdp"` (a veth
//! pod), in the same VLAN and subnet: the two kinds talk to each other.
//!
//! Everything runs inside a test "node" namespace: vswitchd under `ip netns exec`, podman
//! under `nsenter --net` (so the container namespaces podman mounts under /run/netns are
//! visible to vswitchd). Podman keeps its storage, run state and configuration in a temporary
//! directory. runc is the OCI runtime: crun refuses this machine's hybrid cgroup layout.
//! Needs podman, runc and busybox-static (scripts/test.sh installs them) and host-local.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{link_exists, plugin, require_host_local, reserved_ips, CNI_BIN_DIR};
use vswitch_api::{Reply, Request};
use vswitch_suite::netns::Topo;
use vswitch_suite::switch::Switch;

/// Podman pointed at a private root, run state and configuration, in the node namespace.
struct Podman {
    netns: String,
    dir: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.join("storage");
        let runroot = self.dir.join("run");
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("podman")
            .args(["--root", root.to_str().unwrap(), "--runroot", runroot.to_str().unwrap()])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", "-t", "0", "-a"]);
    }
}

fn require(tool: &str, path: &str) {
    assert!(Path::new(path).exists(), "{tool} is missing ({path}): scripts/test.sh installs it");
}

#[test]
fn podman_containers_talk_through_vswitchd_and_leave_nothing_behind() {
    require_host_local();
    require("podman", "/usr/bin/podman");
    require("runc", "/usr/sbin/runc");
    require("busybox-static", "/bin/busybox");
    let mut topo = Topo::new("cpm");
    let node = topo.netns("node");
    let sw = Switch::start(&mut topo, "node", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // A root filesystem of busybox alone.
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "ping", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    // The CNI layout podman reads: our plugin and host-local, and the network list.
    let bin = dir.join("cni-bin");
    let conf = dir.join("cni-conf");
    let ipam = dir.join("ipam");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::copy(plugin(), bin.join("vswitch-cni")).unwrap();
    std::fs::copy(Path::new(CNI_BIN_DIR).join("host-local"), bin.join("host-local")).unwrap();
    // Two networks on the same VLAN and subnet, with disjoint address ranges.
    for (name, port_type, first, last) in [
        ("vswpod", None, "10.244.7.10", "10.244.7.99"),
        ("vswxdp", Some("afxdp"), "10.244.7.100", "10.244.7.199"),
    ] {
        let mut plugin = serde_json::json!({
            "type": "vswitch-cni",
            "socket": sw.socket,
            "vlan": 10,
            "mtu": 1500,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.244.7.0/24", "gateway": "10.244.7.1",
                             "rangeStart": first, "rangeEnd": last}]],
                "dataDir": ipam,
            },
        });
        if let Some(t) = port_type {
            plugin["portType"] = t.into();
        }
        let list = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]});
        std::fs::write(conf.join(format!("10-{name}.conflist")), list.to_string()).unwrap();
    }
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = []\npids_limit = 0\n\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n",
            bin.display(),
            conf.display()
        ),
    )
    .unwrap();
    let podman = Podman { netns: node.clone(), dir: dir.to_path_buf() };
    let rootfs_s = rootfs.to_str().unwrap();
    for (name, network) in [("a", "vswpod"), ("b", "vswxdp")] {
        podman.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            "/usr/sbin/runc",
            "--network",
            network,
            "--rootfs",
            rootfs_s,
            "/bin/sleep",
            "120",
        ]);
    }
    let ip_b =
        podman.ok(&["inspect", "b", "--format", "{{.NetworkSettings.Networks.vswxdp.IPAddress}}"]);
    assert!(ip_b.starts_with("10.244.7.1"), "{ip_b}");
    let pods = match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(pods.len(), 2, "{pods:?}");
    // a is a TAP pod (no host end), b an AF_XDP pod (its veth's host end).
    let mut types: Vec<(Option<&str>, bool)> =
        pods.iter().map(|p| (p.port_type.as_deref(), p.host_interface.is_empty())).collect();
    types.sort();
    assert_eq!(types, vec![(None, false), (Some("tap"), true)], "{pods:?}");
    let ping = podman.ok(&["exec", "a", "/bin/ping", "-c", "3", "-W", "2", &ip_b]);
    assert!(ping.contains("3 packets received"), "{ping}");

    podman.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    match sw.call(Request::ListPods) {
        Ok(Reply::Pods(p)) => assert!(p.is_empty(), "attachments left: {p:?}"),
        other => panic!("{other:?}"),
    }
    assert!(sw.ports().is_empty(), "switch ports left");
    assert!(reserved_ips(&ipam).is_empty(), "IPAM reservations left");
    for p in pods.iter().filter(|p| !p.host_interface.is_empty()) {
        assert!(!link_exists(&node, &p.host_interface), "host veth {} left", p.host_interface);
    }
}
