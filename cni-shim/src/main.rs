//! `vswitch-cni`: the CNI plugin (spec 1.1.0, also 1.0.0) that wires a Kubernetes pod to
//! `vswitchd`, the node's userspace switch.
//!
//! The runtime runs it with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`) and `CNI_PATH` in the
//! environment and the network configuration on stdin:
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "pods", "type": "vswitch-cni",
//!  "socket": "/run/vswitch/vswitchd.sock", "vlan": 1, "mtu": 1450, "portType": "tap",
//!  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]]},
//!  "dns": {"nameservers": ["10.96.0.10"]}}
//! ```
//!
//! (`socket`, `vlan` 1..=4094, `mtu` 68..=9216 and `portType` default as shown; `runtimeConfig`
//! may carry `mac`, `ips`, `cgroupPath`, `bandwidth` and the pod annotations
//! (`io.kubernetes.cri.pod-annotations`); `prevResult` in a chain.)
//!
//! The pod's port type is `tap` (the switch creates the pod's interface as a TAP device with
//! TSO and checksum offload: TCP segments cross whole, the pod starts fastest) or `afxdp` (a
//! veth pair whose host end is an AF_XDP port: the best small-packet rate). `portType` picks
//! it for the network, the pod annotation `vswitch.io/port-type` overrides it per pod, and
//! `VSWITCH_PORT_TYPE` in `CNI_ARGS` overrides both. The result or the
//! error goes to stdout as JSON; an error also exits with status 1. With `VSWITCH_CNI_TIMING=1`
//! in the environment, ADD and DEL write their steps' durations to stderr.
//!
//! # ADD
//!
//! 1. Check the environment and configuration, open `CNI_NETNS`.
//! 2. Ask vswitchd for its status: a switch that does not answer is error 11, try again later.
//! 3. IPAM ADD: start `$CNI_PATH/<ipam.type>` with the same environment and the configuration
//!    (its `cniVersion` lowered to one the IPAM plugin speaks, found with its VERSION, which
//!    is remembered per executable in `cni-ipam-versions.json` next to vswitchd's socket).
//! 4. An AF_XDP pod, while IPAM runs: create the veth pair through rtnetlink: the host end
//!    `vs<12 hex digits of SHA-256(container id/ifname)>` in the plugin's (the switch's)
//!    namespace, up, the pod end created directly in `CNI_NETNS` as `CNI_IFNAME`, both with the
//!    MTU, the pod end with `runtimeConfig.mac` if given. Then wait for IPAM's answer.
//! 5. An AF_XDP pod, inside the pod (a thread that entered the namespace with setns): the
//!    addresses, the interface and `lo` up, IPAM's routes (a route without a gateway uses its
//!    family's gateway) and a default route via the IPAM gateway.
//! 6. AttachPod through the vswitch API. A TAP pod: the daemon creates `CNI_IFNAME` in
//!    `CNI_NETNS` as a TAP device with offloads and opens it as the pod's port; the plugin then
//!    sets its MTU and MAC and configures it as in step 5. An AF_XDP pod: the daemon turns off
//!    the pod interface's tx checksum offload and opens an AF_XDP port on the host end. Both
//!    in the VLAN; the daemon remembers the pod.
//! 7. Print the result: the host interface (an AF_XDP pod's) and the pod interface (with its
//!    sandbox), the IPs pointing at the pod interface, the routes, `dns` from the configuration
//!    (or IPAM); appended to `prevResult` when chained.
//!
//! Rollback: when a step after IPAM ADD fails, what was done is undone, newest first
//! (DetachPod if it was sent, which removes a TAP pod's device, delete the host veth, which
//! takes the pod end with it, IPAM DEL), so a failed ADD leaves nothing behind; the error's
//! `details` say whether the rollback was complete.
//!
//! # DEL
//!
//! Idempotent and best effort: DetachPod (a switch that is down or does not know the pod is
//! fine; the daemon removes a TAP pod's device), delete the host veth if it exists, IPAM DEL
//! (started first, it runs meanwhile, as the reference plugins release the addresses first).
//! All steps run; the first hard failure is reported. `CNI_NETNS` may be missing or gone. A
//! repeated DEL succeeds.
//!
//! # CHECK, GC, STATUS, VERSION
//!
//! - CHECK: IPAM CHECK, then the pod interface exists in the netns with `prevResult`'s
//!   addresses and routes, an AF_XDP pod's host veth exists, and vswitchd lists the attachment
//!   (same port type, host interface and VLAN); every discrepancy is named in the message
//!   (code 100).
//! - GC (1.1): every attachment vswitchd lists that is not in `cni.dev/valid-attachments`
//!   (and was made by this plugin) is detached and its host veth (if any) deleted; GC goes on
//!   to IPAM when it speaks 1.1.
//! - STATUS (1.1): success when vswitchd answers, 50 when not, 51 when the IPAM plugin is
//!   missing or reports a failure.
//! - VERSION: `{"cniVersion": ..., "supportedVersions": ["1.0.0", "1.1.0"]}`.
//!
//! # Error codes
//!
//! | code | meaning |
//! |---|---|
//! | 1 | `cniVersion` not supported (by the plugin or by the IPAM plugin) |
//! | 2 | `runtimeConfig.ips` without an `ipam` section |
//! | 3 | `CNI_NETNS` does not exist or is not a network namespace |
//! | 4 | a `CNI_*` variable missing or malformed (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH` with IPAM) |
//! | 5 | I/O failure: netlink, running the IPAM plugin, talking to vswitchd |
//! | 6 | stdin (or an IPAM result) is not the JSON expected |
//! | 7 | invalid network configuration (e.g. `vlan` 5000, an IPAM plugin not in `CNI_PATH`), or vswitchd rejected a value |
//! | 11 | vswitchd is not running or not ready: try again later |
//! | 50, 51 | STATUS: vswitchd, resp. IPAM, not available |
//! | 100 | CHECK found the attachment not as it should be |
//! | 101 | vswitchd refused the attachment |
//!
//! IPAM errors keep the IPAM plugin's code, with its message prefixed.

mod commands;
mod config;
mod error;
mod ipam;
mod netlink;
mod timing;

use std::io::{Read, Write};

use config::{Command, Env, NetConf, LATEST_VERSION};
use error::{CniError, IO_FAILURE};

fn run(stdin: &[u8]) -> error::Result<Option<serde_json::Value>> {
    let env = Env::parse(|k| std::env::var(k).ok())?;
    if env.command == Command::Version {
        return Ok(Some(commands::version(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    let mut steps = timing::Steps::new();
    let out = match env.command {
        Command::Add => commands::add(&env, &conf, &mut steps).map(Some),
        Command::Del => commands::del(&env, &conf, &mut steps).map(|()| None),
        Command::Check => commands::check(&env, &conf).map(|()| None),
        Command::Gc => commands::gc(&env, &conf).map(|()| None),
        Command::Status => commands::status(&env, &conf).map(|()| None),
        Command::Version => unreachable!("handled above"),
    };
    if matches!(env.command, Command::Add | Command::Del) {
        steps.report(if env.command == Command::Add { "ADD" } else { "DEL" });
    }
    out
}

fn main() {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&stdin),
        Err(e) => Err(CniError::new(IO_FAILURE, format!("cannot read stdin: {e}"))),
    };
    let version = config::version_hint(&stdin).unwrap_or_else(|| LATEST_VERSION.to_string());
    let mut out = std::io::stdout().lock();
    let code = match outcome {
        Ok(Some(result)) => {
            let _ = writeln!(out, "{result}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            eprintln!("vswitch-cni: {e}");
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}
