//! The forwarding state the workers read: an immutable [`Snapshot`] compiled by the control
//! plane from the validated configuration and published RCU-style (`ArcSwap`). A worker loads
//! it once per iteration; a change is a new snapshot with a higher generation, which also
//! invalidates the workers' flow caches.
//!
//! A port whose egress is shaped carries a [`QosPlan`]: the classes of its scheduler and which
//! leaf class the traffic of each ingress port goes to. The worker that owns the port applies
//! a new plan to its scheduler when the generation changes, keeping the queues. The plans also
//! give each classified ingress port its [`LocalLimit`]: the class's ceiling and pps limit, for
//! the traffic of that port that no scheduler of its class sees (to other pods of the node),
//! which the worker receiving from the port limits (`pipeline::nodes::qos::limit_local`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::qos::sched::MAX_CLASS_ID;
use crate::qos::{ClassConfig, ClassId, GuardConfig, Mode};
use crate::tables::acl::AclTable;
use crate::tables::l3::L3Table;
use crate::types::{vlan_is_valid, PortId, VlanId, MAX_PORTS};

/// A set of VLAN ids as a 4096-bit bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet([0; 64])
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl VlanSet {
    #[inline]
    pub fn contains(&self, v: VlanId) -> bool {
        let v = v as usize & 0xfff;
        self.0[v >> 6] & (1 << (v & 63)) != 0
    }

    pub fn insert(&mut self, v: VlanId) {
        let v = v as usize & 0xfff;
        self.0[v >> 6] |= 1 << (v & 63);
    }

    pub fn iter(&self) -> impl Iterator<Item = VlanId> + '_ {
        (0..4096u16).filter(|&v| self.contains(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// How a port maps frames to VLANs.
// The trunk's bitmap (512 bytes) is inline on purpose: entries are built once per snapshot and
// read in place on the fast path, where a box would be one more pointer to chase.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged on the wire; inside the switch every frame belongs to this VLAN. Tagged frames
    /// arriving are dropped.
    Access(VlanId),
    /// Tagged on the wire with any VLAN of `allowed`; untagged frames belong to `native` (and
    /// frames of the native VLAN leave untagged), or are dropped when there is none.
    Trunk { allowed: VlanSet, native: Option<VlanId> },
}

impl VlanMode {
    /// Whether frames of `vlan` may use this port.
    #[inline]
    pub fn carries(&self, vlan: VlanId) -> bool {
        match self {
            VlanMode::Access(v) => *v == vlan,
            VlanMode::Trunk { allowed, native } => allowed.contains(vlan) || *native == Some(vlan),
        }
    }

    /// Whether a frame of `vlan` leaves this port with a tag.
    #[inline]
    pub fn egress_tagged(&self, vlan: VlanId) -> bool {
        match self {
            VlanMode::Access(_) => false,
            VlanMode::Trunk { native, .. } => *native != Some(vlan),
        }
    }
}

/// One port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub name: String,
    pub up: bool,
    pub mode: VlanMode,
    /// Largest L3 payload (IP packet) the port sends; frames are checked against it on egress.
    pub mtu: u16,
}

/// The class of traffic that no `qos_class` names (e.g. from a port without one): a leaf under
/// the root, created by the control plane when the root has spare rate.
pub const DEFAULT_CLASS: ClassId = ClassId(MAX_CLASS_ID);

/// The QoS plan of one egress port: its scheduler's classes and the classification of its
/// traffic by ingress port. Built by the control plane from a validated configuration (the
/// classes passed [`crate::qos::Scheduler::apply`] there), so applying it cannot fail for a
/// reason of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosPlan {
    /// Every class of the port's tree, root included.
    pub classes: BTreeMap<ClassId, ClassConfig>,
    /// The classes' names, for counters and the API.
    pub names: BTreeMap<ClassId, String>,
    /// The leaf for traffic no port names: [`DEFAULT_CLASS`] when the root has spare rate;
    /// `None` sends it unshaped, like HTB's direct queue (the root's guarantees are then
    /// given out entirely to named classes).
    pub default: Option<ClassId>,
    /// Leaf class by ingress port id; `u32::MAX` for none.
    leaf_of: Box<[u32]>,
}

impl QosPlan {
    /// A plan of `classes` (with their `names`) where traffic from the ports of `leaves` goes
    /// to the given leaf and the rest to `default`.
    pub fn new(
        classes: BTreeMap<ClassId, ClassConfig>,
        names: BTreeMap<ClassId, String>,
        leaves: impl IntoIterator<Item = (PortId, ClassId)>,
        default: Option<ClassId>,
    ) -> QosPlan {
        let mut leaf_of = vec![u32::MAX; MAX_PORTS].into_boxed_slice();
        for (port, class) in leaves {
            if let Some(slot) = leaf_of.get_mut(port as usize) {
                *slot = class.0;
            }
        }
        QosPlan { classes, names, default, leaf_of }
    }

    /// The leaf class of a packet that came in on `in_port`; `None`: send it unshaped.
    #[inline]
    pub fn classify(&self, in_port: PortId) -> Option<ClassId> {
        match self.leaf_of.get(in_port as usize) {
            Some(&c) if c != u32::MAX => Some(ClassId(c)),
            _ => self.default,
        }
    }

    /// The ports whose traffic has a leaf of its own, with that leaf.
    pub fn leaves(&self) -> impl Iterator<Item = (PortId, ClassId)> + '_ {
        self.leaf_of
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != u32::MAX)
            .map(|(p, &c)| (p as PortId, ClassId(c)))
    }

    /// The name of class `id` (its number if unnamed).
    pub fn name(&self, id: ClassId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }
}

/// The most packets a port's traffic may have waiting in its local limiter's queue (less if
/// its class's `queue_limit` is lower). The control plane counts them when sizing a worker's
/// pool.
pub const LOCAL_QUEUE_MAX: u32 = 64;
/// The most bytes waiting in a local limiter's queue: 64 full frames. Binds only for GSO
/// packets, which would otherwise hold up to 64 KB each.
pub const LOCAL_QUEUE_BYTES: u64 = 64 * 1514;

/// The limit on what a port whose traffic is a leaf class (`qos_class`) sends where that class's
/// scheduler does not see it: to another pod of the node, or out of a port its tree does not
/// shape. Derived from the QoS plans by [`Snapshot::set_qos`]; the worker that receives from
/// the port limits that traffic to the class's ceiling (`pipeline::nodes::qos::limit_local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLimit {
    /// The leaf class (its id, as in the plans).
    pub class: ClassId,
    /// The class's ceiling, bits per second, and the burst of its buckets, bytes.
    pub ceil_bps: u64,
    pub burst_bytes: u64,
    /// The class's packets-per-second limit and its burst, packets.
    pub pps: Option<(u64, u64)>,
    /// Minimum bytes charged per packet.
    pub mpu: u32,
    /// Shape (queue what is over the limit) or police (drop it), as the class does.
    pub mode: Mode,
    /// The queue bound of a shaping class, packets: its `queue_limit`, at most
    /// [`LOCAL_QUEUE_MAX`].
    pub queue_limit: u32,
    /// The ports whose egress scheduler classifies this port's traffic (usually the node's
    /// uplink): traffic to them is shaped there, not policed at ingress.
    pub shaped_by: Vec<PortId>,
}

impl LocalLimit {
    fn new(class: ClassId, c: &ClassConfig) -> LocalLimit {
        LocalLimit {
            class,
            ceil_bps: c.ceil_bps,
            burst_bytes: c.burst_bytes,
            pps: c.pps.map(|p| (p, c.pps_burst)),
            mpu: c.mpu,
            mode: c.mode,
            queue_limit: c.queue_limit.min(LOCAL_QUEUE_MAX),
            shaped_by: Vec::new(),
        }
    }

    /// Whether the traffic leaving through `port` goes through a scheduler of this class.
    #[inline]
    pub fn shaped_at(&self, port: PortId) -> bool {
        self.shaped_by.contains(&port)
    }
}

/// The compiled forwarding state. Immutable once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every published change.
    pub generation: u64,
    ports: Vec<Option<PortEntry>>,
    /// Member ports of every VLAN, for flooding; indexed by VLAN id.
    flood: Vec<Box<[PortId]>>,
    /// The worker that polls and transmits each port (0 unless set).
    owners: Vec<u16>,
    /// The node's routing state, when it routes between nodes (`[node]`).
    l3: Option<Arc<L3Table>>,
    /// The QoS plan of each port whose egress is shaped, by port id.
    qos: Vec<Option<Arc<QosPlan>>>,
    /// The local limit of each port whose traffic is a leaf class of a plan, by port id.
    local_limits: Vec<Option<LocalLimit>>,
    /// Ports whose ingress goes through the DDoS guard, and its limits.
    guarded: Vec<PortId>,
    guard: Option<GuardConfig>,
    /// The flow rules, when there is at least one.
    acl: Option<Arc<AclTable>>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            generation: 0,
            ports: Vec::new(),
            flood: vec![Box::default(); 4096],
            owners: Vec::new(),
            l3: None,
            qos: Vec::new(),
            local_limits: Vec::new(),
            guarded: Vec::new(),
            guard: None,
            acl: None,
        }
    }
}

/// Why a snapshot could not be built. The control plane validates before compiling, so these
/// are a last line of defence with the same precise messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("port id {0} is out of range (0..{MAX_PORTS})")]
    PortId(PortId),
    #[error("port id {0} is used twice")]
    DuplicateId(PortId),
    #[error("port {port:?}: VLAN {vlan} is out of range 1..=4094")]
    Vlan { port: String, vlan: VlanId },
    #[error("port {port:?}: MTU {mtu} is out of range 68..=9000")]
    Mtu { port: String, mtu: u16 },
}

impl Snapshot {
    /// Compiles a snapshot from `(id, entry)` pairs.
    pub fn build(
        generation: u64,
        entries: impl IntoIterator<Item = (PortId, PortEntry)>,
    ) -> Result<Snapshot, SnapshotError> {
        let mut ports: Vec<Option<PortEntry>> = Vec::new();
        for (id, e) in entries {
            if id as usize >= MAX_PORTS {
                return Err(SnapshotError::PortId(id));
            }
            if !(68..=9000).contains(&e.mtu) {
                return Err(SnapshotError::Mtu { port: e.name, mtu: e.mtu });
            }
            let bad = match &e.mode {
                VlanMode::Access(v) => (!vlan_is_valid(*v)).then_some(*v),
                VlanMode::Trunk { allowed, native } => {
                    allowed.iter().chain(*native).find(|v| !vlan_is_valid(*v))
                }
            };
            if let Some(vlan) = bad {
                return Err(SnapshotError::Vlan { port: e.name, vlan });
            }
            if ports.len() <= id as usize {
                ports.resize(id as usize + 1, None);
            }
            if ports[id as usize].is_some() {
                return Err(SnapshotError::DuplicateId(id));
            }
            ports[id as usize] = Some(e);
        }
        let mut members: Vec<Vec<PortId>> = vec![Vec::new(); 4096];
        for (id, e) in ports.iter().enumerate() {
            let Some(e) = e else { continue };
            match &e.mode {
                VlanMode::Access(v) => members[*v as usize].push(id as PortId),
                VlanMode::Trunk { allowed, native } => {
                    for v in allowed.iter().chain(*native) {
                        if !members[v as usize].contains(&(id as PortId)) {
                            members[v as usize].push(id as PortId);
                        }
                    }
                }
            }
        }
        let flood = members.into_iter().map(Vec::into_boxed_slice).collect();
        Ok(Snapshot {
            generation,
            ports,
            flood,
            owners: Vec::new(),
            l3: None,
            qos: Vec::new(),
            local_limits: Vec::new(),
            guarded: Vec::new(),
            guard: None,
            acl: None,
        })
    }

    /// Records that worker `worker` owns port `id` (polls it and transmits on it).
    pub fn set_owner(&mut self, id: PortId, worker: u16) {
        if self.owners.len() <= id as usize {
            self.owners.resize(id as usize + 1, 0);
        }
        self.owners[id as usize] = worker;
    }

    /// Sets the routing state. The uplink leaves every flood domain: it carries only what the
    /// L3 stage sends it, never the pod network's broadcasts.
    pub fn set_l3(&mut self, l3: Option<Arc<L3Table>>) {
        if let Some(t) = &l3 {
            for m in &mut self.flood {
                if m.contains(&t.uplink) {
                    *m = m.iter().copied().filter(|&p| p != t.uplink).collect();
                }
            }
        }
        self.l3 = l3;
    }

    /// Sets port `id`'s QoS plan (`None`: its egress is not shaped), and with it the
    /// [`LocalLimit`]s of the ports the plan classifies: each gets its leaf's ceiling, burst,
    /// pps limit and MPU, and `id` among the ports that shape it. A port whose class is in no
    /// plan any more loses its limit. A configuration gives a port one class, so every plan
    /// that names the port names the same class; were two to differ, the last set would give
    /// the limit. O(ports) per call.
    pub fn set_qos(&mut self, id: PortId, plan: Option<Arc<QosPlan>>) {
        if self.qos.len() <= id as usize {
            self.qos.resize(id as usize + 1, None);
        }
        for slot in &mut self.local_limits {
            if let Some(l) = slot {
                l.shaped_by.retain(|&p| p != id);
                if l.shaped_by.is_empty() {
                    *slot = None;
                }
            }
        }
        if let Some(plan) = &plan {
            for (port, class) in plan.leaves() {
                let Some(c) = plan.classes.get(&class) else { continue };
                if self.local_limits.len() <= port as usize {
                    self.local_limits.resize(port as usize + 1, None);
                }
                let slot = &mut self.local_limits[port as usize];
                let shaped_by = slot.take().map(|l| l.shaped_by).unwrap_or_default();
                let mut l = LocalLimit::new(class, c);
                l.shaped_by = shaped_by;
                l.shaped_by.push(id);
                *slot = Some(l);
            }
        }
        self.qos[id as usize] = plan;
    }

    /// The limit on port `id`'s traffic that no scheduler of its class sees, if its traffic
    /// is a leaf class of a shaped port.
    #[inline]
    pub fn local_limit(&self, id: PortId) -> Option<&LocalLimit> {
        self.local_limits.get(id as usize).and_then(Option::as_ref)
    }

    /// Port `id`'s QoS plan, if its egress is shaped.
    #[inline]
    pub fn qos(&self, id: PortId) -> Option<&Arc<QosPlan>> {
        self.qos.get(id as usize).and_then(Option::as_ref)
    }

    /// Every port with a QoS plan.
    pub fn qos_ports(&self) -> impl Iterator<Item = (PortId, &Arc<QosPlan>)> {
        self.qos.iter().enumerate().filter_map(|(i, p)| Some((i as PortId, p.as_ref()?)))
    }

    /// Puts port `id`'s ingress behind the DDoS guard (or takes it out).
    pub fn set_guarded(&mut self, id: PortId, on: bool) {
        self.guarded.retain(|&p| p != id);
        if on {
            self.guarded.push(id);
        }
    }

    /// Sets the DDoS guard's limits (`None`: no guard anywhere).
    pub fn set_guard(&mut self, cfg: Option<GuardConfig>) {
        self.guard = cfg;
    }

    /// The DDoS guard's limits if port `id`'s ingress goes through it.
    #[inline]
    pub fn guard(&self, id: PortId) -> Option<&GuardConfig> {
        self.guard.as_ref().filter(|_| self.guarded.contains(&id))
    }

    /// Sets the flow rules (an empty table is stored as none, so the stage is skipped).
    pub fn set_acl(&mut self, acl: Option<Arc<AclTable>>) {
        self.acl = acl.filter(|t| !t.is_empty());
    }

    /// The flow rules, if there are any.
    #[inline]
    pub fn acl(&self) -> Option<&Arc<AclTable>> {
        self.acl.as_ref()
    }

    /// The routing state, if the node routes.
    #[inline]
    pub fn l3(&self) -> Option<&L3Table> {
        self.l3.as_deref()
    }

    /// The worker that owns port `id`.
    #[inline]
    pub fn owner(&self, id: PortId) -> u16 {
        self.owners.get(id as usize).copied().unwrap_or(0)
    }

    /// The port with id `id`, if configured.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }

    /// Every configured port with its id.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortEntry)> {
        self.ports.iter().enumerate().filter_map(|(i, e)| Some((i as PortId, e.as_ref()?)))
    }

    /// The ports that carry `vlan` (flood domain), whatever their state.
    #[inline]
    pub fn flood_members(&self, vlan: VlanId) -> &[PortId] {
        self.flood.get(vlan as usize).map_or(&[], |b| b)
    }

    /// VLANs with at least one member port.
    pub fn vlans(&self) -> impl Iterator<Item = (VlanId, &[PortId])> {
        self.flood
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(v, m)| (v as VlanId, &**m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(name: &str, v: VlanId) -> PortEntry {
        PortEntry { name: name.into(), up: true, mode: VlanMode::Access(v), mtu: 1500 }
    }

    #[test]
    fn flood_domains_follow_vlan_modes() {
        let mut allowed = VlanSet::default();
        allowed.insert(10);
        allowed.insert(20);
        let trunk = PortEntry {
            name: "t".into(),
            up: true,
            mode: VlanMode::Trunk { allowed, native: Some(1) },
            mtu: 1500,
        };
        let s = Snapshot::build(
            1,
            [(0, access("a", 10)), (1, access("b", 20)), (2, trunk), (5, access("c", 10))],
        )
        .unwrap();
        assert_eq!(s.flood_members(10), &[0, 2, 5]);
        assert_eq!(s.flood_members(20), &[1, 2]);
        assert_eq!(s.flood_members(1), &[2]);
        assert!(s.flood_members(30).is_empty());
        assert!(s.port(3).is_none());
        assert_eq!(s.ports().count(), 4);
        let t = &s.port(2).unwrap().mode;
        assert!(t.carries(20) && t.carries(1) && !t.carries(30));
        assert!(t.egress_tagged(10) && !t.egress_tagged(1));
    }

    #[test]
    fn the_plans_give_their_classified_ports_local_limits() {
        // Tree: root 1, leaves 2 (port 1) and 3 (port 2, pps-limited); port 3 unclassified.
        let leaf = |ceil| ClassConfig {
            burst_bytes: 20_000,
            mpu: 64,
            ..ClassConfig::new(Some(ClassId(1)), 1000, ceil)
        };
        let classes = BTreeMap::from([
            (ClassId(1), ClassConfig::new(None, 100, 100)),
            (ClassId(2), leaf(50)),
            (ClassId(3), ClassConfig { pps: Some(1000), pps_burst: 8, ..leaf(70) }),
        ]);
        let plan = Arc::new(QosPlan::new(
            classes,
            BTreeMap::new(),
            [(1, ClassId(2)), (2, ClassId(3))],
            None,
        ));
        let mut s = Snapshot::default();
        s.set_qos(5, Some(plan.clone()));
        let l = s.local_limit(1).expect("port 1 is limited");
        assert_eq!(
            (l.class, l.ceil_bps, l.burst_bytes, l.pps, l.mpu, l.shaped_by.as_slice()),
            (ClassId(2), 50, 20_000, None, 64, &[5][..])
        );
        assert!(l.shaped_at(5) && !l.shaped_at(2));
        assert_eq!(s.local_limit(2).map(|l| (l.ceil_bps, l.pps)), Some((70, Some((1000, 8)))));
        assert!(s.local_limit(3).is_none() && s.local_limit(5).is_none());
        // A second port shaped by the same tree (two uplinks): both are the class's.
        s.set_qos(6, Some(plan.clone()));
        assert_eq!(s.local_limit(1).unwrap().shaped_by, vec![5, 6]);
        // Replacing a plan re-derives; removing the last takes the limits away.
        s.set_qos(5, Some(plan));
        assert_eq!(s.local_limit(1).unwrap().shaped_by, vec![6, 5]);
        s.set_qos(5, None);
        s.set_qos(6, None);
        assert!(s.local_limit(1).is_none() && s.local_limit(2).is_none());
    }

    #[test]
    fn bad_entries_are_refused_with_names() {
        let e = Snapshot::build(1, [(0, access("pod-a", 4095))]).unwrap_err();
        assert_eq!(e.to_string(), "port \"pod-a\": VLAN 4095 is out of range 1..=4094");
        let e = Snapshot::build(1, [(0, access("a", 1)), (0, access("b", 1))]).unwrap_err();
        assert_eq!(e, SnapshotError::DuplicateId(0));
        let e = Snapshot::build(1, [(MAX_PORTS as PortId, access("a", 1))]).unwrap_err();
        assert!(matches!(e, SnapshotError::PortId(_)));
    }
}
