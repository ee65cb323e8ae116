//! QoS in the configuration: `[[qos_class]]` tables, the ports' `qos_class` / `qos_root`, and
//! `[ddos_guard]`; their validation (with the scheduler library's own, on a scratch
//! scheduler) and their compilation into per-port [`QosPlan`]s for the snapshot.
//!
//! ```toml
//! [[qos_class]]            # the root of the uplink's egress tree: the link's capacity
//! name = "node"
//! rate = "300M"            # bits/s: integer, or a string with k, M, G (powers of 1000)
//!
//! [[qos_class]]
//! name = "pod-a"
//! parent = "node"
//! rate = "150M"            # guaranteed
//! ceil = "300M"            # may borrow up to this (default: rate)
//! priority = 0             # 0 (borrows first) .. 7
//!
//! [[port]]
//! name = "uplink"
//! qos_root = "node"        # this port's egress is scheduled by the tree under "node"
//! [[port]]
//! name = "pod-a"
//! qos_class = "pod-a"      # traffic from this port is class "pod-a" on every shaped egress
//! ```
//!
//! A port whose egress has a scheduler classifies each packet by its ingress port: the leaf
//! that port names, if it is in this tree; otherwise a leaf `default` under the root that the
//! compiler adds when the root's rate exceeds its children's guarantees (with that spare as
//! its guarantee and the root's ceiling), or, when the guarantees use the whole root, the
//! packet is sent unshaped (as HTB's direct queue does).
//!
//! Class ids are chosen by the caller of [`qos_plans`]: the daemon keeps one id per class name
//! for its lifetime, so a class keeps its queue and counters across reloads and edits.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::config::Config;
use crate::pipeline::snapshot::{QosPlan, DEFAULT_CLASS, LOCAL_QUEUE_MAX};
use crate::qos::bucket::MAX_BURST_BYTES;
use crate::qos::sched::{MAX_DEPTH, MAX_QUEUE_LIMIT, NPRIO};
use crate::qos::{Change, ClassConfig, ClassId, Field, GuardConfig, Mode, Scheduler};
use crate::types::PortId;

/// A rate as written: bits (or packets) per second, an integer or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RateSpec {
    Int(i64),
    Text(String),
}

impl RateSpec {
    /// The value: `"300M"` is 300 000 000, `"1.5G"` 1 500 000 000, `"500k"` 500 000; an
    /// optional `bit`, `bps` or `pps` suffix is accepted. Zero and negative values are errors.
    pub fn value(&self) -> Result<u64, String> {
        let v = match self {
            RateSpec::Int(i) if *i <= 0 => return Err(format!("{i} is not a positive rate")),
            RateSpec::Int(i) => *i as u64,
            RateSpec::Text(t) => parse_rate(t)?,
        };
        Ok(v)
    }
}

impl From<u64> for RateSpec {
    fn from(v: u64) -> Self {
        RateSpec::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

fn parse_rate(t: &str) -> Result<u64, String> {
    let bad = || format!("{t:?} is not a rate like 300M, 1G, 500k or 1000000");
    let s = t.trim();
    let s = ["bit", "bps", "pps"].iter().find_map(|u| s.strip_suffix(u)).unwrap_or(s);
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        Some('t' | 'T') => (&s[..s.len() - 1], 1e12),
        _ => (s, 1.0),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() {
        return Err(bad());
    }
    if n <= 0.0 {
        return Err(format!("{t:?} is not a positive rate"));
    }
    let v = (n * mult).round();
    if !(1.0..=1e15).contains(&v) {
        return Err(format!("{t:?} is out of range 1..=1000T"));
    }
    Ok(v as u64)
}

/// What a class does with traffic above its limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QosMode {
    /// Delay it in the class's queue.
    #[default]
    Shape,
    /// Drop it (counted as `qos_policed` / `qos_pps_limit`).
    Police,
}

/// `[[qos_class]]`: one class of a QoS tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosClassSection {
    pub name: String,
    /// The parent class; none for a root (a port's `qos_root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Guaranteed rate, bits per second.
    pub rate: RateSpec,
    /// Ceiling, bits per second (default: the rate, no borrowing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceil: Option<RateSpec>,
    /// Burst of the ceiling's bucket, bytes (default: 4 ms at the ceiling, at least 15 000);
    /// the guarantee's bucket holds as long at the rate, at least 15 000
    /// ([`crate::qos::sched::rate_burst`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Borrowing priority, 0 (first) to 7.
    #[serde(default)]
    pub priority: u8,
    /// Share of spare capacity among borrowers of the same priority.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Packets-per-second limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps: Option<RateSpec>,
    /// Burst of the pps limit, packets (default: 4 ms of it, at least 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps_burst: Option<u64>,
    /// Minimum bytes charged per packet.
    #[serde(default)]
    pub mpu: u32,
    /// Queue bound of a leaf, packets.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: u32,
    /// "shape" (delay) or "police" (drop).
    #[serde(default)]
    pub mode: QosMode,
}

fn default_weight() -> u32 {
    1
}

/// The default queue bound of a leaf class, packets.
pub const DEFAULT_QUEUE_LIMIT: u32 = 512;

fn default_queue_limit() -> u32 {
    DEFAULT_QUEUE_LIMIT
}

/// The name the compiler gives a root's default leaf.
pub const DEFAULT_LEAF_NAME: &str = "default";

/// `[ddos_guard]`: limits on the ingress of the uplink (`[node] uplink`) and of the ports with
/// `ddos_guard = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdosGuardSection {
    /// Packets per second allowed from one source address.
    pub source_pps: RateSpec,
    /// Burst per source, packets (default: 100 ms of `source_pps`, at least 16).
    #[serde(default)]
    pub source_burst: Option<u64>,
    /// TCP SYNs (without ACK) per second allowed in total.
    pub syn_pps: RateSpec,
    /// SYN burst, packets (default: 100 ms of `syn_pps`, at least 16).
    #[serde(default)]
    pub syn_burst: Option<u64>,
    /// Sources tracked at once (a power of two is used).
    #[serde(default = "default_guard_slots")]
    pub slots: usize,
}

fn default_guard_slots() -> usize {
    65536
}

impl DdosGuardSection {
    /// The guard's limits (assumes the section validated).
    pub fn guard_config(&self, seed: u64) -> GuardConfig {
        let src = self.source_pps.value().unwrap_or(1);
        let syn = self.syn_pps.value().unwrap_or(1);
        GuardConfig {
            slots: self.slots,
            source_pps: src,
            source_burst: self.source_burst.unwrap_or((src / 10).max(16)),
            syn_pps: syn,
            syn_burst: self.syn_burst.unwrap_or((syn / 10).max(16)),
            seed,
        }
    }
}

impl QosClassSection {
    /// The scheduler's settings of this class under `parent` (assumes the rates validated).
    pub fn class_config(&self, parent: Option<ClassId>) -> ClassConfig {
        let rate = self.rate.value().unwrap_or(1);
        let ceil = self.ceil.as_ref().map_or(Ok(rate), RateSpec::value).unwrap_or(rate);
        let pps = self.pps.as_ref().and_then(|p| p.value().ok());
        ClassConfig {
            parent,
            rate_bps: rate,
            ceil_bps: ceil,
            burst_bytes: self.burst.unwrap_or_else(|| default_burst(ceil)),
            prio: self.priority,
            weight: self.weight,
            pps,
            pps_burst: self.pps_burst.unwrap_or_else(|| pps.map_or(1, |p| (p / 250).max(8))),
            mpu: self.mpu,
            queue_limit: self.queue_limit,
            mode: match self.mode {
                QosMode::Shape => Mode::Shape,
                QosMode::Police => Mode::Police,
            },
        }
    }
}

/// A class's burst when its section gives none, bytes: 4 ms at `ceil_bps`, at least 15 000
/// bytes: enough that a worker woken a few milliseconds late (poll(2) has millisecond
/// resolution) loses no tokens; the guarantee's bucket then holds 4 ms at the rate, at least
/// 15 000 bytes too. (Public for `benches/qos.rs`, which measures with it.)
pub fn default_burst(ceil_bps: u64) -> u64 {
    (ceil_bps / 8 / 250).clamp(15_000, MAX_BURST_BYTES)
}

/// The config file's name of a scheduler setting.
fn field_name(f: Field) -> &'static str {
    match f {
        Field::Id => "name",
        Field::Parent => "parent",
        Field::Rate => "rate",
        Field::Ceil => "ceil",
        Field::Burst => "burst",
        Field::Prio => "priority",
        Field::Weight => "weight",
        Field::Pps => "pps",
        Field::PpsBurst => "pps_burst",
        Field::QueueLimit => "queue_limit",
    }
}

/// The root of class `i` (following parents; `None` on a cycle or unknown parent).
pub(super) fn root_of(classes: &[QosClassSection], i: usize) -> Option<usize> {
    let mut c = i;
    for _ in 0..=MAX_DEPTH {
        match &classes[c].parent {
            None => return Some(c),
            Some(p) => c = classes.iter().position(|x| &x.name == p)?,
        }
    }
    None
}

/// The default leaf of root `r`: the spare of its guarantee over its children's, if any.
fn default_leaf(classes: &[QosClassSection], r: usize, root: ClassId) -> Option<ClassConfig> {
    let rc = classes[r].class_config(None);
    let used: u64 = classes
        .iter()
        .filter(|c| c.parent.as_deref() == Some(&classes[r].name))
        .map(|c| c.rate.value().unwrap_or(0))
        .sum();
    let spare = rc.rate_bps.checked_sub(used).filter(|s| *s > 0)?;
    Some(ClassConfig {
        parent: Some(root),
        rate_bps: spare,
        ceil_bps: rc.ceil_bps,
        burst_bytes: default_burst(rc.ceil_bps),
        prio: (NPRIO - 1) as u8,
        weight: 1,
        pps: None,
        pps_burst: 1,
        mpu: 0,
        queue_limit: DEFAULT_QUEUE_LIMIT,
        mode: Mode::Shape,
    })
}

/// Checks the QoS sections, reporting each problem as `qos_class[i] ("name").field: ...`,
/// `port[i] ("name").qos_class: ...` or `ddos_guard.field: ...`. When the per-field checks
/// pass, the whole set goes through the scheduler's own validation
/// on a scratch scheduler, so what passes here is what the workers' schedulers accept.
pub(super) fn validate(cfg: &Config, err: &mut impl FnMut(String, String)) {
    let classes = &cfg.qos_classes;
    let mut local = Vec::new();
    let mut e = |f: String, m: String| {
        local.push(());
        err(f, m)
    };
    let mut names = HashSet::new();
    for (i, c) in classes.iter().enumerate() {
        let at = |f: &str| format!("qos_class[{i}] ({:?}).{f}", c.name);
        if c.name.is_empty() || c.name.len() > 64 {
            e(format!("qos_class[{i}].name"), format!("{:?} must be 1 to 64 characters", c.name));
        } else if c.name == DEFAULT_LEAF_NAME {
            e(at("name"), format!("{DEFAULT_LEAF_NAME:?} is reserved for the default leaf the switch adds under a root"));
        } else if !names.insert(c.name.as_str()) {
            e(at("name"), format!("{:?} is used by another class", c.name));
        }
        if let Some(p) = &c.parent {
            if p == &c.name {
                e(at("parent"), format!("{p:?} is the class itself"));
            } else if !classes.iter().any(|x| &x.name == p) {
                e(at("parent"), format!("{p:?} is not a [[qos_class]]"));
            } else if root_of(classes, i).is_none() {
                e(at("parent"), format!("{p:?}: a cycle, or deeper than {MAX_DEPTH} levels"));
            }
        }
        let rate = c.rate.value();
        if let Err(m) = &rate {
            e(at("rate"), m.clone());
        }
        if let Some(ceil) = &c.ceil {
            match (ceil.value(), &rate) {
                (Err(m), _) => e(at("ceil"), m),
                (Ok(ceil), Ok(rate)) if ceil < *rate => {
                    e(at("ceil"), format!("{ceil} is below the rate {rate} (the guarantee)"))
                }
                _ => {}
            }
        }
        if let Some(Err(m)) = c.pps.as_ref().map(RateSpec::value) {
            e(at("pps"), m);
        }
        if usize::from(c.priority) >= NPRIO {
            e(at("priority"), format!("{} is out of range 0..={}", c.priority, NPRIO - 1));
        }
        if c.weight == 0 || c.weight > crate::qos::sched::MAX_WEIGHT {
            e(
                at("weight"),
                format!("{} is out of range 1..={}", c.weight, crate::qos::sched::MAX_WEIGHT),
            );
        }
        if c.burst.is_some_and(|b| b == 0 || b > MAX_BURST_BYTES) {
            e(
                at("burst"),
                format!("{} is out of range 1..={MAX_BURST_BYTES}", c.burst.unwrap_or(0)),
            );
        }
        if c.queue_limit == 0 || c.queue_limit > MAX_QUEUE_LIMIT {
            e(
                at("queue_limit"),
                format!("{} is out of range 1..={MAX_QUEUE_LIMIT}", c.queue_limit),
            );
        }
    }
    // The children's guarantees fit their parent's.
    for (i, c) in classes.iter().enumerate() {
        let Ok(rate) = c.rate.value() else { continue };
        let kids: Vec<&QosClassSection> =
            classes.iter().filter(|k| k.parent.as_deref() == Some(&c.name)).collect();
        let sum: u64 = kids.iter().filter_map(|k| k.rate.value().ok()).sum();
        if sum > rate {
            let list: Vec<String> = kids
                .iter()
                .map(|k| format!("{} {}", k.name, k.rate.value().unwrap_or(0)))
                .collect();
            e(
                format!("qos_class[{i}] ({:?}).rate", c.name),
                format!(
                    "{rate} is below the sum {sum} of its children's guarantees ({})",
                    list.join(", ")
                ),
            );
        }
    }
    let has_children = |name: &str| classes.iter().any(|k| k.parent.as_deref() == Some(name));
    for (i, p) in cfg.ports.iter().enumerate() {
        let at = |f: &str| format!("port[{i}] ({:?}).{f}", p.name);
        if let Some(c) = &p.qos_class {
            match classes.iter().find(|x| &x.name == c) {
                None => e(at("qos_class"), format!("{c:?} is not a [[qos_class]]")),
                Some(_) if has_children(c) => {
                    e(at("qos_class"), format!("{c:?} has child classes; a port names a leaf"))
                }
                Some(x) if x.parent.is_none() => e(
                    at("qos_class"),
                    format!("{c:?} is a root; a port names a leaf under the root of a shaped port"),
                ),
                Some(_) => {}
            }
        }
        if let Some(r) = &p.qos_root {
            match classes.iter().find(|x| &x.name == r) {
                None => e(at("qos_root"), format!("{r:?} is not a [[qos_class]]")),
                Some(x) if x.parent.is_some() => {
                    e(at("qos_root"), format!("{r:?} has a parent; qos_root names a root class"))
                }
                Some(_) => {}
            }
        }
    }
    if let Some(g) = &cfg.ddos_guard {
        if let Err(m) = g.source_pps.value() {
            e("ddos_guard.source_pps".into(), m);
        }
        if let Err(m) = g.syn_pps.value() {
            e("ddos_guard.syn_pps".into(), m);
        }
        for (f, v) in [("source_burst", g.source_burst), ("syn_burst", g.syn_burst)] {
            if v == Some(0) {
                e(format!("ddos_guard.{f}"), "0 lets nothing through".into());
            }
        }
        if !(4..=1 << 24).contains(&g.slots) {
            e("ddos_guard.slots".into(), format!("{} is out of range 4..=16777216", g.slots));
        }
    }
    if !local.is_empty() || classes.is_empty() {
        return;
    }
    // The library's validation of the whole set (the default leaves fit by construction).
    let ids: HashMap<&str, ClassId> =
        classes.iter().enumerate().map(|(i, c)| (c.name.as_str(), ClassId(i as u32 + 1))).collect();
    let mut changes = Vec::new();
    for c in classes {
        let parent = c.parent.as_deref().map(|p| ids[p]);
        changes.push(Change::Set(ids[c.name.as_str()], c.class_config(parent)));
    }
    let mut sched: Scheduler<()> = Scheduler::new();
    if let Err(q) = sched.apply(changes, 0) {
        let i = (q.class.0 as usize).saturating_sub(1);
        let name = classes.get(i).map_or("?", |c| c.name.as_str());
        err(format!("qos_class[{i}] ({name:?}).{}", field_name(q.field)), q.reason);
    }
}

/// The QoS plans of the shaped ports: for each port with a `qos_root`, the classes of that
/// root's tree (plus its default leaf), and the leaf of each port whose `qos_class` is in the
/// tree. `port_id` maps port names to the ids the snapshot uses; `class_id` gives each class
/// name its id (stable across calls, so the workers keep queues on a change). Assumes a
/// validated configuration.
pub fn qos_plans(
    cfg: &Config,
    port_id: impl Fn(&str) -> Option<PortId>,
    mut class_id: impl FnMut(&str) -> ClassId,
) -> Vec<(PortId, QosPlan)> {
    let classes = &cfg.qos_classes;
    let mut out = Vec::new();
    for p in &cfg.ports {
        let Some(root_name) = &p.qos_root else { continue };
        let Some(id) = port_id(&p.name) else { continue };
        let Some(r) = classes.iter().position(|c| &c.name == root_name) else { continue };
        let mut cfgs = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut members: Vec<usize> = Vec::new();
        for i in 0..classes.len() {
            if root_of(classes, i) == Some(r) {
                members.push(i);
            }
        }
        for &i in &members {
            let c = &classes[i];
            let cid = class_id(&c.name);
            let parent = c.parent.as_deref().map(&mut class_id);
            cfgs.insert(cid, c.class_config(parent));
            names.insert(cid, c.name.clone());
        }
        let root_id = class_id(root_name);
        let default = default_leaf(classes, r, root_id).map(|d| {
            cfgs.insert(DEFAULT_CLASS, d);
            names.insert(DEFAULT_CLASS, DEFAULT_LEAF_NAME.to_string());
            DEFAULT_CLASS
        });
        let leaves: Vec<(PortId, ClassId)> = cfg
            .ports
            .iter()
            .filter_map(|q| {
                let leaf = q.qos_class.as_ref()?;
                let i = members.iter().copied().find(|&i| &classes[i].name == leaf)?;
                Some((port_id(&q.name)?, class_id(&classes[i].name)))
            })
            .collect();
        out.push((id, QosPlan::new(cfgs, names, leaves, default)));
    }
    out
}

/// Frames a worker's shaped ports may hold in their queues, and its local limiters (for
/// sizing its pool).
pub fn queued_frames(cfg: &Config, worker: usize) -> usize {
    let local = local_queued_frames(cfg, worker);
    cfg.ports
        .iter()
        .filter(|p| p.worker == worker)
        .filter_map(|p| p.qos_root.as_ref())
        .map(|root| {
            let r = cfg.qos_classes.iter().position(|c| &c.name == root);
            let leaves: usize = (0..cfg.qos_classes.len())
                .filter(|&i| r.is_some() && root_of(&cfg.qos_classes, i) == r)
                .filter(|&i| {
                    let n = &cfg.qos_classes[i].name;
                    !cfg.qos_classes.iter().any(|k| k.parent.as_deref() == Some(n))
                })
                .map(|i| cfg.qos_classes[i].queue_limit as usize)
                .sum();
            leaves + DEFAULT_QUEUE_LIMIT as usize
        })
        .sum::<usize>()
        + local
}

/// Frames the local limiters of a worker may hold: one queue per shaping class of the ports it
/// receives from, when the class's tree shapes a port (see `pipeline::nodes::qos::limit_local`).
fn local_queued_frames(cfg: &Config, worker: usize) -> usize {
    let classes = &cfg.qos_classes;
    let shaped: HashSet<&str> = cfg.ports.iter().filter_map(|p| p.qos_root.as_deref()).collect();
    let mut limited = HashSet::new();
    cfg.ports
        .iter()
        .filter(|p| p.worker == worker)
        .filter_map(|p| classes.iter().position(|c| Some(&c.name) == p.qos_class.as_ref()))
        .filter(|&i| classes[i].mode == QosMode::Shape)
        .filter(|&i| root_of(classes, i).is_some_and(|r| shaped.contains(classes[r].name.as_str())))
        .filter(|&i| limited.insert(i))
        .map(|i| classes[i].queue_limit.min(LOCAL_QUEUE_MAX) as usize)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[port]]
        name = "uplink"
        qos_root = "node"
        [[port]]
        name = "p1"
        qos_class = "p1"
        [[port]]
        name = "p2"
        qos_class = "p2"
        [[port]]
        name = "p3"
        [[qos_class]]
        name = "node"
        rate = "300M"
        [[qos_class]]
        name = "team"
        parent = "node"
        rate = "200M"
        ceil = "300M"
        [[qos_class]]
        name = "p1"
        parent = "team"
        rate = "150M"
        ceil = "300M"
        priority = 0
        [[qos_class]]
        name = "p2"
        parent = "team"
        rate = 50000000
        ceil = "0.3G"
        priority = 1
        weight = 2
        pps = "10k"
        mpu = 64
        mode = "police"
    "#;

    #[test]
    fn rates_parse_with_units() {
        let v = |t: &str| RateSpec::Text(t.into()).value();
        assert_eq!(v("300M"), Ok(300_000_000));
        assert_eq!(v("1.5G"), Ok(1_500_000_000));
        assert_eq!(v("500k"), Ok(500_000));
        assert_eq!(v("100Mbit"), Ok(100_000_000));
        assert_eq!(v("42"), Ok(42));
        assert!(v("fast").unwrap_err().contains("is not a rate like"));
        assert!(v("0M").unwrap_err().contains("not a positive rate"));
        assert!(v("-5M").unwrap_err().contains("not a positive rate"));
        assert_eq!(RateSpec::Int(-1).value(), Err("-1 is not a positive rate".into()));
    }

    #[test]
    fn a_tree_compiles_to_per_port_plans() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        let s = c.snapshot(1);
        let plan = s.qos(0).expect("the uplink is shaped");
        assert!(s.qos(1).is_none() && s.qos(3).is_none());
        let id =
            |n: &str| ClassId(c.qos_classes.iter().position(|x| x.name == n).unwrap() as u32 + 1);
        assert_eq!(plan.classify(1), Some(id("p1")));
        assert_eq!(plan.classify(2), Some(id("p2")));
        // p3 names no class: the root's spare 100M is the default leaf's guarantee.
        assert_eq!(plan.classify(3), Some(DEFAULT_CLASS));
        let d = &plan.classes[&DEFAULT_CLASS];
        assert_eq!(
            (d.rate_bps, d.ceil_bps, d.parent, d.prio),
            (100_000_000, 300_000_000, Some(id("node")), 7)
        );
        assert_eq!(plan.classes.len(), 5);
        let p2 = &plan.classes[&id("p2")];
        assert_eq!((p2.rate_bps, p2.ceil_bps, p2.prio, p2.weight), (50_000_000, 300_000_000, 1, 2));
        assert_eq!((p2.pps, p2.mpu, p2.mode), (Some(10_000), 64, Mode::Police));
        assert_eq!(p2.parent, Some(id("team")));
        // 4 ms at the 300M ceiling.
        assert_eq!(p2.burst_bytes, 150_000);
        assert_eq!(plan.name(id("p1")), "p1");
        // The classified pods' traffic that the uplink's scheduler does not see is limited
        // at their classes' ceilings (and pps); p3, classified by default only, is not.
        let l1 = s.local_limit(1).expect("p1 limited");
        assert_eq!((l1.class, l1.ceil_bps, l1.shaped_by.clone()), (id("p1"), 300_000_000, vec![0]));
        let l2 = s.local_limit(2).expect("p2 limited");
        assert_eq!((l2.ceil_bps, l2.pps, l2.mpu), (300_000_000, Some((10_000, 40)), 64));
        assert!(s.local_limit(3).is_none() && s.local_limit(0).is_none());
        // A scheduler accepts the plan as is.
        let mut sched: Scheduler<()> = Scheduler::new();
        sched.apply(plan.classes.iter().map(|(&i, c)| Change::Set(i, c.clone())), 0).unwrap();
        // Guarantees that use the whole root leave no default leaf: the rest goes unshaped.
        let full = GOOD.replace("rate = \"200M\"", "rate = \"300M\"");
        let c = Config::parse(&full, "t.toml").unwrap();
        let s = c.snapshot(1);
        assert_eq!(s.qos(0).unwrap().classify(3), None);
        // Frames the shaped port may hold are counted for the pool, and those p1's local
        // limiter may (p2 polices: it queues nothing).
        assert_eq!(queued_frames(&c, 0), 2 * 512 + 512 + 64);
    }

    #[test]
    fn every_refusal_names_the_class_and_field() {
        let text = r#"
            [[port]]
            name = "uplink"
            qos_root = "leaf"
            [[port]]
            name = "a"
            qos_class = "nope"
            [[port]]
            name = "b"
            qos_class = "node"
            [[port]]
            name = "c"
            qos_class = "mid"
            [[port]]
            name = "d"
            qos_root = "ghost"
            [[qos_class]]
            name = "node"
            rate = "100M"
            [[qos_class]]
            name = "mid"
            parent = "node"
            rate = "60M"
            [[qos_class]]
            name = "leaf"
            parent = "mid"
            rate = "50M"
            ceil = "40M"
            [[qos_class]]
            name = "big"
            parent = "mid"
            rate = "20M"
            [[qos_class]]
            name = "zero"
            parent = "node"
            rate = 0
            priority = 9
            weight = 0
            [[qos_class]]
            name = "neg"
            parent = "orphan"
            rate = -5
            pps = "x"
            [[qos_class]]
            name = "big"
            rate = "1M"
            [[qos_class]]
            name = "default"
            rate = "1M"
            [[qos_class]]
            name = "loop1"
            parent = "loop2"
            rate = "1M"
            [[qos_class]]
            name = "loop2"
            parent = "loop1"
            rate = "1M"
            [ddos_guard]
            source_pps = 0
            syn_pps = "1k"
            slots = 2
        "#;
        let e = Config::parse(text, "t.toml").unwrap_err();
        let want = [
            "qos_class[2] (\"leaf\").ceil: 40000000 is below the rate 50000000 (the guarantee)",
            "qos_class[4] (\"zero\").rate: 0 is not a positive rate",
            "qos_class[4] (\"zero\").priority: 9 is out of range 0..=7",
            "qos_class[4] (\"zero\").weight: 0 is out of range 1..=1000000",
            "qos_class[5] (\"neg\").parent: \"orphan\" is not a [[qos_class]]",
            "qos_class[5] (\"neg\").rate: -5 is not a positive rate",
            "qos_class[5] (\"neg\").pps: \"x\" is not a rate like",
            "qos_class[6] (\"big\").name: \"big\" is used by another class",
            "qos_class[7] (\"default\").name: \"default\" is reserved",
            "qos_class[8] (\"loop1\").parent: \"loop2\": a cycle",
            "qos_class[9] (\"loop2\").parent: \"loop1\": a cycle",
            "qos_class[1] (\"mid\").rate: 60000000 is below the sum 70000000 of its children's guarantees (leaf 50000000, big 20000000)",
            "port[0] (\"uplink\").qos_root: \"leaf\" has a parent",
            "port[1] (\"a\").qos_class: \"nope\" is not a [[qos_class]]",
            "port[2] (\"b\").qos_class: \"node\" has child classes",
            "port[3] (\"c\").qos_class: \"mid\" has child classes",
            "port[4] (\"d\").qos_root: \"ghost\" is not a [[qos_class]]",
            "ddos_guard.source_pps: 0 is not a positive rate",
            "ddos_guard.slots: 2 is out of range",
        ];
        e.assert_fields(&want);
        // Unknown keys in a class are refused.
        let e = Config::parse("[[qos_class]]\nname = \"a\"\nrate = 1\nprio = 3\n", "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("prio"), "{e}");
        // What the per-field checks let through, the scheduler's own validation catches,
        // named the same way (here the burst above the library's bound).
        let e = Config::parse(
            "[[qos_class]]\nname = \"r\"\nrate = \"1M\"\n[[qos_class]]\nname = \"l\"\nparent = \"r\"\nrate = \"1M\"\npps = 5\npps_burst = 0\n",
            "t.toml",
        )
        .unwrap_err();
        let f: Vec<String> = e.field_errors().iter().map(|f| f.to_string()).collect();
        assert_eq!(f, vec!["qos_class[1] (\"l\").pps_burst: pps_burst 0 is not in 1..=4294967296"]);
    }
}
