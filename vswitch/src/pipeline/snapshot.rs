//! The forwarding state the workers read: an immutable [`Snapshot`] compiled by the control
//! plane from the validated configuration and published RCU-style (`ArcSwap`). A worker loads
//! it once per iteration; a change is a new snapshot with a higher generation, which also
//! invalidates the workers' flow caches.
//!
//! A port whose egress is shaped carries a [`QosPlan`]: the classes of its scheduler and which
//! leaf class the traffic of each ingress port goes to. The worker that owns the port applies
//! a new plan to its scheduler when the generation changes, keeping the queues.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::qos::sched::MAX_CLASS_ID;
use crate::qos::{ClassConfig, ClassId, GuardConfig};
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

    /// Sets port `id`'s QoS plan (`None`: its egress is not shaped).
    pub fn set_qos(&mut self, id: PortId, plan: Option<Arc<QosPlan>>) {
        if self.qos.len() <= id as usize {
            self.qos.resize(id as usize + 1, None);
        }
        self.qos[id as usize] = plan;
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
    fn bad_entries_are_refused_with_names() {
        let e = Snapshot::build(1, [(0, access("pod-a", 4095))]).unwrap_err();
        assert_eq!(e.to_string(), "port \"pod-a\": VLAN 4095 is out of range 1..=4094");
        let e = Snapshot::build(1, [(0, access("a", 1)), (0, access("b", 1))]).unwrap_err();
        assert_eq!(e, SnapshotError::DuplicateId(0));
        let e = Snapshot::build(1, [(MAX_PORTS as PortId, access("a", 1))]).unwrap_err();
        assert!(matches!(e, SnapshotError::PortId(_)));
    }
}
