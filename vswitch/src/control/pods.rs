//! Pods wired to the switch by the CNI plugin: each attachment becomes a port of the running
//! switch, added through the same validated path as a configuration reload, and is persisted
//! so a restarted daemon re-attaches the pods that are still there.
//!
//! A pod's port is named `<container id, 12 chars>-<ifname>`, sits on the least loaded worker,
//! and carries `pod_netns`/`pod_interface`, so the switch turns off the pod interface's
//! transmit checksum offload (AF_XDP carries no checksum-offload state). The attachments live
//! in `<state dir>/pods/`, one JSON file per attachment written atomically (temporary file +
//! rename) when the pod is attached and removed when it is detached, so that persisting costs
//! the same with a thousand pods as with one. (A single `pods.json` rewritten whole on every
//! change took 1-3 ms at 1 000 pods; one left by an older vswitchd is read and replaced.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{info, warn};
use vswitch_api::{ApiError, PodAttachment, Reply, Response};

use super::config::{Config, PortKind, PortSection, VlanModeName, XdpMode};
use super::qos::{QosClassSection, QosMode, RateSpec, DEFAULT_QUEUE_LIMIT};

/// Names of the QoS classes a pod's CNI bandwidth limits become: `<port>-in`, `<port>-out`.
const INGRESS_SUFFIX: &str = "-in";
const EGRESS_SUFFIX: &str = "-out";
/// The guarantee of a pod's egress class, bits per second, unless the pod asks for one: a
/// token, so that many pods fit under the uplink's rate; the pod borrows up to its egressRate
/// ceiling.
pub const POD_EGRESS_GUARANTEE: u64 = 10_000;
use super::daemon::Daemon;
use crate::port::netdev;
use crate::types::vlan_is_valid;

/// Attachments by (container id, interface name).
pub type Pods = BTreeMap<(String, String), PodAttachment>;

/// Attachment `a`'s key in [`Pods`].
pub fn pod_key(a: &PodAttachment) -> (String, String) {
    (a.container_id.clone(), a.ifname.clone())
}

/// The switch port name of a pod's interface.
pub fn port_name(container_id: &str, ifname: &str) -> String {
    let short: String = container_id.chars().take(12).collect();
    format!("{short}-{ifname}")
}

/// The file attachments persisted in before they had one file each (read, then replaced).
pub fn legacy_state_file(dir: &str) -> PathBuf {
    Path::new(dir).join("pods.json")
}

/// The directory attachments persist in, one file each.
pub fn state_dir(dir: &str) -> PathBuf {
    Path::new(dir).join("pods")
}

/// The file of attachment `key` in [`state_dir`]: the container id and interface name with
/// every byte but `[A-Za-z0-9_.-]` escaped as `%XX`, joined by `@`; a name too long for the
/// file system is cut and made unique by a hash of the whole. The file holds the whole
/// attachment, so nothing is read back from the name.
pub fn state_file(dir: &str, key: &(String, String)) -> PathBuf {
    fn escape(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut name = String::new();
    escape(&key.0, &mut name);
    name.push('@');
    escape(&key.1, &mut name);
    if name.len() > 200 {
        // FNV-1a: stable across builds, unlike the standard library's hasher.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        name = format!("{}~{hash:016x}", &name[..150]);
    }
    state_dir(dir).join(name + ".json")
}

/// Reads persisted attachments: the files of [`state_dir`] and a legacy `pods.json`; a missing
/// directory or file is an empty set. Returns what was read and, apart, what could not be
/// (one unreadable file does not lose the others).
pub fn load(dir: &str) -> (Vec<PodAttachment>, Vec<String>) {
    let (mut pods, mut problems) = (Vec::new(), Vec::new());
    let legacy = legacy_state_file(dir);
    match std::fs::read(&legacy) {
        Ok(bytes) => match serde_json::from_slice::<Vec<PodAttachment>>(&bytes) {
            Ok(p) => pods.extend(p),
            Err(e) => problems.push(format!("{}: {e}", legacy.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("{}: {e}", legacy.display())),
    }
    let mut paths = match state_entries(dir) {
        Ok(paths) => paths,
        Err(e) => {
            problems.push(e);
            return (pods, problems);
        }
    };
    paths.retain(|p| p.extension().is_some_and(|x| x == "json"));
    paths.sort();
    for path in paths {
        match read_attachment(&path) {
            Ok(a) => pods.push(a),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (pods, problems)
}

/// The files in [`state_dir`] (none if it does not exist).
fn state_entries(dir: &str) -> Result<Vec<PathBuf>, String> {
    let sdir = state_dir(dir);
    match std::fs::read_dir(&sdir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("reading {}: {e}", sdir.display())),
    }
}

/// One attachment file.
fn read_attachment(path: &Path) -> Result<PodAttachment, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Writes attachment `a` to its file atomically (temporary file + rename).
pub fn save_one(dir: &str, a: &PodAttachment) -> Result<(), String> {
    let sdir = state_dir(dir);
    std::fs::create_dir_all(&sdir).map_err(|e| format!("creating {}: {e}", sdir.display()))?;
    let path = state_file(dir, &pod_key(a));
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(a).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

/// Removes attachment `key`'s file; one that is not there is fine.
pub fn forget(dir: &str, key: &(String, String)) -> Result<(), String> {
    let path = state_file(dir, key);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

/// Makes the persisted set exactly `pods`, whose files were written as they attached
/// ([`save_one`]): removes the other attachments' files, temporary files, and the legacy
/// `pods.json`. A file that is not an attachment is left for someone to look at ([`load`]
/// names it).
pub fn prune(dir: &str, pods: &Pods) -> Result<(), String> {
    let keep: std::collections::HashSet<PathBuf> =
        pods.keys().map(|k| state_file(dir, k)).collect();
    for path in state_entries(dir)? {
        let stale =
            |p: &Path| p.extension().is_some_and(|x| x == "tmp") || read_attachment(p).is_ok();
        if !keep.contains(&path) && stale(&path) {
            std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
    }
    let legacy = legacy_state_file(dir);
    match std::fs::remove_file(&legacy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", legacy.display()))
        }
        _ => Ok(()),
    }
}

impl<const N: usize> Daemon<N> {
    /// The port sections of the attached pods (kept across configuration reloads).
    pub(super) fn pod_sections(&self) -> Vec<PortSection> {
        self.config()
            .ports
            .iter()
            .filter(|p| {
                self.pods().values().any(|a| port_name(&a.container_id, &a.ifname) == p.name)
            })
            .cloned()
            .collect()
    }

    /// Turns the pod's CNI `bandwidth` into QoS classes in `cfg` (validated with the rest):
    ///
    /// * `ingressRate` (traffic into the pod): a root class `<port>-in` shaping the pod port's
    ///   own egress at that rate (burst from `ingressBurst`).
    /// * `egressRate` (traffic out of the pod): a leaf `<port>-out` under the tree that shapes
    ///   the node's uplink (`qos_root` of the `[node]` uplink port), with a token guarantee and
    ///   the rate as its ceiling (burst from `egressBurst`, the ceiling's, as the reference
    ///   bandwidth plugin's), so the pod borrows up to its limit and never beyond. Its
    ///   traffic to other pods of the node, which that scheduler never sees, is shaped to the
    ///   same ceiling by the worker receiving from the pod (`pipeline::nodes::qos::limit_local`).
    ///   A node whose uplink is not shaped cannot enforce it: the limit is recorded and a note
    ///   returned (the pod still starts, as with the reference bandwidth plugin's absent
    ///   qdisc). With a group (`vswitch.io/egress-qos-group`) the leaf hangs under that class,
    ///   which must be in the uplink root's tree and not a pod's own class: otherwise the ADD
    ///   is refused, naming the annotation. A pod `restoring` after a restart (see
    ///   [`Daemon::restore_pods`]) whose group is gone (made with `qos add`, not in the file)
    ///   hangs under the uplink's root instead, with a note: it keeps its network and its own
    ///   limits, and its stored attachment keeps the group for the next restart.
    fn pod_qos(
        &self,
        a: &PodAttachment,
        section: &mut PortSection,
        cfg: &mut Config,
        restoring: bool,
    ) -> Result<Vec<String>, ApiError> {
        let mut notes = Vec::new();
        let Some(bw) = &a.bandwidth else { return Ok(notes) };
        let class = |name: String,
                     parent: Option<String>,
                     rate: u64,
                     ceil: Option<u64>,
                     burst_bits: Option<u64>| {
            QosClassSection {
                name,
                parent,
                rate: RateSpec::Int(rate.min(i64::MAX as u64) as i64),
                ceil: ceil.map(|c| RateSpec::Int(c.min(i64::MAX as u64) as i64)),
                burst: burst_bits.map(|b| (b / 8).max(1)),
                priority: 0,
                weight: 1,
                pps: None,
                pps_burst: None,
                mpu: 0,
                queue_limit: DEFAULT_QUEUE_LIMIT,
                mode: QosMode::Shape,
            }
        };
        if let Some(rate) = bw.ingress_rate.filter(|r| *r > 0) {
            let root = format!("{}{INGRESS_SUFFIX}", section.name);
            cfg.qos_classes.push(class(root.clone(), None, rate, None, bw.ingress_burst));
            section.qos_root = Some(root);
        }
        let wants_egress = bw.egress_rate.is_some_and(|r| r > 0)
            || bw.egress_guaranteed_rate.is_some()
            || bw.egress_pps.is_some()
            || bw.egress_priority.is_some()
            || bw.egress_group.is_some();
        if wants_egress {
            let uplink_root = cfg.node.as_ref().and_then(|n| {
                cfg.ports.iter().find(|p| p.name == n.uplink).and_then(|p| p.qos_root.clone())
            });
            match uplink_root {
                Some(root) => {
                    let parent = match &bw.egress_group {
                        None => root,
                        Some(g) => match group_under(cfg, g, &root, &self.pod_qos_class_names()) {
                            Ok(group) => group,
                            Err(e) if restoring => {
                                notes.push(format!(
                                    "{}: the pod hangs under the uplink's root {root:?} until it is attached again with the group in place",
                                    e.message
                                ));
                                root
                            }
                            Err(e) => return Err(e),
                        },
                    };
                    let leaf = format!("{}{EGRESS_SUFFIX}", section.name);
                    // Without an egressRate the pod may borrow up to what its parent may.
                    let parent_ceil = cfg.qos_classes.iter().find(|c| c.name == parent).and_then(
                        |c| c.ceil.as_ref().unwrap_or(&c.rate).value().ok(),
                    );
                    let ceil = bw.egress_rate.filter(|r| *r > 0).or(parent_ceil);
                    let guarantee = bw
                        .egress_guaranteed_rate
                        .unwrap_or(POD_EGRESS_GUARANTEE)
                        .min(ceil.unwrap_or(u64::MAX));
                    let mut c = class(leaf.clone(), Some(parent), guarantee, ceil, bw.egress_burst);
                    c.priority = bw.egress_priority.unwrap_or(0);
                    c.pps = bw.egress_pps.map(|p| RateSpec::Int(p.min(i64::MAX as u64) as i64));
                    cfg.qos_classes.push(c);
                    section.qos_class = Some(leaf);
                }
                None => notes.push(format!(
                    "egress limits {} not enforced: the node's uplink is not shaped (set qos_root on the [node] uplink port)",
                    [
                        bw.egress_rate.map(|r| format!("egressRate {r} bit/s")),
                        bw.egress_guaranteed_rate.map(|r| format!("guarantee {r} bit/s")),
                        bw.egress_pps.map(|r| format!("{r} pps")),
                        bw.egress_group.as_ref().map(|g| format!("group {g:?}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
                )),
            }
        }
        Ok(notes)
    }

    /// The QoS classes made from the attached pods' bandwidth limits (kept across reloads, like
    /// their ports).
    pub(super) fn pod_qos_classes(&self) -> Vec<QosClassSection> {
        let names = self.pod_qos_class_names();
        self.config().qos_classes.iter().filter(|c| names.contains(&c.name)).cloned().collect()
    }

    /// The names the attached pods' QoS classes have (or would have).
    fn pod_qos_class_names(&self) -> Vec<String> {
        self.pods()
            .values()
            .flat_map(|a| {
                let port = port_name(&a.container_id, &a.ifname);
                [format!("{port}{INGRESS_SUFFIX}"), format!("{port}{EGRESS_SUFFIX}")]
            })
            .collect()
    }

    fn section_for(&self, a: &PodAttachment) -> PortSection {
        let cfg = self.config();
        // The worker with the fewest ports.
        let worker = (0..cfg.workers.len())
            .min_by_key(|w| cfg.ports.iter().filter(|p| p.worker == *w).count())
            .unwrap_or(0);
        let tap = is_tap(a);
        PortSection {
            name: port_name(&a.container_id, &a.ifname),
            interface: (!tap).then(|| a.host_interface.clone()),
            kind: if tap { PortKind::Tap } else { PortKind::Afxdp },
            xdp_mode: XdpMode::Auto,
            queues: 1,
            ring_size: cfg.switch.pod_ring_size,
            worker,
            mode: VlanModeName::Access,
            vlan: Some(a.vlan),
            allowed_vlans: Vec::new(),
            native_vlan: None,
            mtu: a.mtu,
            up: true,
            pod_netns: Some(a.netns.clone()),
            pod_interface: Some(a.ifname.clone()),
            vnet_hdr: None,
            persist: tap,
            qos_class: None,
            qos_root: None,
            ddos_guard: false,
            attach: None,
            tap_io: None,
        }
    }

    /// Attaches a pod: validates, adds its port live, persists. Attaching the same pod
    /// interface again with the same host interface answers with the existing port.
    pub fn attach_pod(&mut self, a: PodAttachment) -> Response {
        self.attach(a, false)
    }

    /// [`Daemon::attach_pod`]; `restoring`: re-attaching a stored pod after a restart.
    fn attach(&mut self, a: PodAttachment, restoring: bool) -> Response {
        let t0 = std::time::Instant::now();
        let key = pod_key(&a);
        if a.container_id.is_empty() || a.ifname.is_empty() {
            return Err(ApiError::invalid("container_id and ifname must not be empty"));
        }
        if !vlan_is_valid(a.vlan) {
            return Err(ApiError::invalid(format!("vlan: {} is out of range 1..=4094", a.vlan)));
        }
        if let Some(old) = self.pods().get(&key) {
            if old.host_interface == a.host_interface {
                let id = self.port_id(&port_name(&a.container_id, &a.ifname))?;
                return Ok(Reply::Port(self.port_info(id)));
            }
            return Err(ApiError::conflict(format!(
                "{} {} is already attached through {}",
                a.container_id, a.ifname, old.host_interface
            )));
        }
        match a.port_type.as_deref() {
            None | Some("afxdp") | Some("tap") => {}
            Some(t) => {
                return Err(ApiError::invalid(format!(
                    "port_type: {t:?} is not \"afxdp\" or \"tap\""
                )))
            }
        }
        if is_tap(&a) {
            if !a.host_interface.is_empty() {
                return Err(ApiError::invalid(
                    "host_interface: a tap pod has none (the switch creates the pod's interface)",
                ));
            }
        } else if let Err(e) = netdev::ifindex(&a.host_interface) {
            return Err(ApiError::invalid(format!(
                "host_interface: {:?} does not exist: {e}",
                a.host_interface
            )));
        }
        if !Path::new(&a.netns).exists() {
            return Err(ApiError::invalid(format!("netns: {:?} does not exist", a.netns)));
        }
        let mut cfg: Config = self.config().clone();
        let section = self.section_for(&a);
        let name = section.name.clone();
        let own = if section.kind == PortKind::Afxdp { section.ring_size as usize } else { 0 };
        let (need, have) =
            (super::daemon::worker_frames_needed(&cfg, section.worker) + own, cfg.pool.frames);
        if need > have {
            return Err(ApiError::unavailable(format!(
                "worker {}'s pool of {have} frames cannot feed another port ({need} needed): raise pool.frames or lower switch.pod_ring_size",
                section.worker
            )));
        }
        let mut section = section;
        let notes = self.pod_qos(&a, &mut section, &mut cfg, restoring)?;
        cfg.ports.push(section);
        let errors = cfg.validate();
        if !errors.is_empty() {
            let msg = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            return Err(ApiError::invalid(msg));
        }
        let validated = t0.elapsed();
        self.apply(cfg).map_err(ApiError::invalid)?;
        let opened = t0.elapsed();
        for n in notes {
            warn!(port = %name, "{n}");
        }
        let (pod, namespace, container) =
            (a.pod_name.clone(), a.pod_namespace.clone(), a.container_id.clone());
        if let Err(e) = save_one(&self.config().state.dir, &a) {
            warn!("pod attachment not persisted: {e}");
        }
        self.pods_mut().insert(key, a);
        let persisted = t0.elapsed();
        let id = self.port_id(&name)?;
        // Answer once the worker switches the port, so a pod is connected when ADD returns.
        if !self.wait_attached(id, std::time::Duration::from_secs(1)) {
            warn!(port = %name, "worker has not attached the port within 1 s");
        }
        let done = t0.elapsed();
        // Where the time went (ms), for `cni-shim/tests/scale.rs` and anyone chasing latency.
        info!(
            ?pod, ?namespace, %container, port = %name,
            validate_ms = ms(validated),
            open_ms = ms(opened - validated),
            persist_ms = ms(persisted - opened),
            worker_ms = ms(done - persisted),
            total_ms = ms(done),
            "pod attached"
        );
        Ok(Reply::Port(self.port_info(id)))
    }

    /// Detaches a pod's interface; succeeds when it is not attached (idempotent).
    pub fn detach_pod(&mut self, container_id: &str, ifname: &str) -> Response {
        let key = (container_id.to_string(), ifname.to_string());
        if !self.pods().contains_key(&key) {
            return Ok(Reply::Done {
                message: format!("{container_id} {ifname} was not attached"),
            });
        }
        let t0 = std::time::Instant::now();
        let name = port_name(container_id, ifname);
        let mut cfg: Config = self.config().clone();
        cfg.ports.retain(|p| p.name != name);
        let own = [format!("{name}{INGRESS_SUFFIX}"), format!("{name}{EGRESS_SUFFIX}")];
        cfg.qos_classes.retain(|c| !own.contains(&c.name));
        self.apply(cfg).map_err(ApiError::invalid)?;
        let applied = t0.elapsed();
        if let Err(e) = forget(&self.config().state.dir, &key) {
            warn!("pod detachment not persisted: {e}");
        }
        self.pods_mut().remove(&key);
        let done = t0.elapsed();
        info!(
            container = %container_id, ifname, port = %name,
            remove_ms = ms(applied),
            persist_ms = ms(done - applied),
            total_ms = ms(done),
            "pod detached"
        );
        Ok(Reply::Done { message: format!("detached {container_id} {ifname} (port {name})") })
    }

    /// After a restore: the re-attached pods wrote their files as they attached; what else
    /// is persisted goes.
    fn prune_pods(&self) {
        if let Err(e) = prune(&self.config().state.dir, self.pods()) {
            warn!("stale pod attachments not removed: {e}");
        }
    }

    /// Re-attaches persisted pods whose host interface still exists; forgets the others.
    pub fn restore_pods(&mut self) {
        let dir = self.config().state.dir.clone();
        let (saved, problems) = load(&dir);
        for e in &problems {
            warn!("a persisted pod attachment not read: {e}");
        }
        if saved.is_empty() && problems.is_empty() {
            return;
        }
        for a in saved {
            let what = format!("{} {}", a.container_id, a.ifname);
            match self.attach(a, true) {
                Ok(_) => info!(pod = %what, "pod re-attached after restart"),
                Err(e) => warn!(pod = %what, "pod not re-attached: {}", e.message),
            }
        }
        self.prune_pods();
    }
}

/// A duration in milliseconds, as a log field.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Whether the pod's interface is a TAP the switch creates (`port_type = "tap"`).
fn is_tap(a: &PodAttachment) -> bool {
    a.port_type.as_deref() == Some("tap")
}

/// The group class `group` a pod's egress leaf may hang under: a class in the tree of the
/// uplink's root `root` (the root itself included) that is not one of the pods' own
/// (`pods`). Errors name the annotation.
fn group_under(cfg: &Config, group: &str, root: &str, pods: &[String]) -> Result<String, ApiError> {
    const ANN: &str = "annotation vswitch.io/egress-qos-group";
    let classes = &cfg.qos_classes;
    let Some(i) = classes.iter().position(|c| c.name == group) else {
        return Err(ApiError::invalid(format!(
            "{ANN} {group:?}: no such QoS class (vswitchctl qos add {group} --parent {root} --rate ...)"
        )));
    };
    if pods.iter().any(|p| p == group) {
        return Err(ApiError::invalid(format!("{ANN} {group:?}: that is a pod's own class")));
    }
    if super::qos::root_of(classes, i).is_some_and(|r| classes[r].name == root) {
        return Ok(group.to_string());
    }
    Err(ApiError::invalid(format!(
        "{ANN} {group:?}: not in the tree of the uplink's root {root:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own under the system's temporary directory.
    fn scratch(test: &str) -> String {
        let d = std::env::temp_dir().join(format!("vswitch-pods-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.to_str().unwrap().to_string()
    }

    fn pod(container_id: &str, ifname: &str) -> PodAttachment {
        serde_json::from_value(serde_json::json!({
            "container_id": container_id,
            "ifname": ifname,
            "netns": "/var/run/netns/p",
            "host_interface": "",
            "vlan": 10,
            "mtu": 1500,
            "port_type": "tap",
        }))
        .unwrap()
    }

    #[test]
    fn attachments_persist_one_file_each() {
        let dir = scratch("each");
        let (a, b) = (pod("aaa", "eth0"), pod("bbb", "eth1"));
        save_one(&dir, &a).unwrap();
        save_one(&dir, &b).unwrap();
        let (mut got, problems) = load(&dir);
        got.sort_by(|x, y| x.container_id.cmp(&y.container_id));
        assert_eq!((got, problems), (vec![a.clone(), b.clone()], Vec::<String>::new()));
        forget(&dir, &pod_key(&a)).unwrap();
        forget(&dir, &pod_key(&a)).unwrap();
        assert_eq!(load(&dir).0, vec![b]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_stay_inside_the_directory_and_short() {
        let dir = scratch("names");
        let odd = pod("../x/y z", "eth0@1");
        let long = pod(&"c".repeat(300), "eth0");
        let other_long = pod(&format!("{}d", "c".repeat(299)), "eth0");
        for a in [&odd, &long, &other_long] {
            let f = state_file(&dir, &pod_key(a));
            assert_eq!(f.parent(), Some(state_dir(&dir).as_path()), "{}", f.display());
            assert!(f.file_name().unwrap().len() < 255, "{}", f.display());
            save_one(&dir, a).unwrap();
        }
        assert_ne!(state_file(&dir, &pod_key(&long)), state_file(&dir, &pod_key(&other_long)));
        assert_eq!(load(&dir).0.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_legacy_file_is_read_then_replaced() {
        let dir = scratch("legacy");
        let (a, b) = (pod("aaa", "eth0"), pod("bbb", "eth0"));
        std::fs::write(legacy_state_file(&dir), serde_json::to_vec(&[&a, &b]).unwrap()).unwrap();
        let (got, problems) = load(&dir);
        assert_eq!((got.len(), problems.len()), (2, 0));
        // Pod a attaches again (writing its file), pod b has gone meanwhile.
        save_one(&dir, &a).unwrap();
        let pods: Pods = [(pod_key(&a), a.clone())].into_iter().collect();
        prune(&dir, &pods).unwrap();
        assert!(!legacy_state_file(&dir).exists());
        assert_eq!(load(&dir).0, vec![a]);
        std::fs::remove_dir_all(&dir).unwrap();
        // No pod came back: the legacy file goes all the same.
        let dir = scratch("legacy-none");
        std::fs::write(legacy_state_file(&dir), serde_json::to_vec(&[&b]).unwrap()).unwrap();
        prune(&dir, &Pods::new()).unwrap();
        assert!(!legacy_state_file(&dir).exists());
        assert_eq!(load(&dir), (Vec::new(), Vec::new()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_file_is_named_and_kept_and_the_others_load() {
        let dir = scratch("bad");
        let a = pod("aaa", "eth0");
        save_one(&dir, &a).unwrap();
        let bad = state_dir(&dir).join("zzz@eth0.json");
        std::fs::write(&bad, b"{not json").unwrap();
        let (got, problems) = load(&dir);
        assert_eq!(got, vec![a.clone()]);
        assert!(problems.len() == 1 && problems[0].contains("zzz@eth0.json"), "{problems:?}");
        prune(&dir, &[(pod_key(&a), a)].into_iter().collect()).unwrap();
        assert!(bad.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
