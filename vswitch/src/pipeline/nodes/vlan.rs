//! VLAN ingress: gives every packet its VLAN inside the switch from the port's mode and the tag
//! it arrived with, and drops what the port may not carry.
//!
//! - Access port: untagged frames (and priority-tagged ones, VID 0) join the port's VLAN; frames
//!   tagged with a real VID are dropped (`vlan_tagged_on_access`).
//! - Trunk port: tagged frames must carry an allowed VLAN (`vlan_not_allowed`); untagged and
//!   priority-tagged frames join the native VLAN, or are dropped when there is none
//!   (`vlan_untagged_on_trunk`).
//!
//! The tag itself stays on the wire bytes; egress pushes, pops or rewrites it for each output
//! port, so a packet is touched only where its output needs it.

use crate::packet::{flags, Batch, Meta};
use crate::pipeline::snapshot::{Snapshot, VlanMode};
use crate::telemetry::DropReason;

/// Runs VLAN ingress over the batch. Before it, `Meta::vlan` holds the VID of the wire tag
/// (when `flags::TAGGED`); after it, the packet's VLAN inside the switch.
pub fn run<const N: usize>(batch: &mut Batch<N>, snap: &Snapshot) {
    for m in batch.meta_mut() {
        if !m.is_dropped() {
            classify(m, snap);
        }
    }
}

/// VLAN ingress for one packet: its VLAN inside the switch, or a drop. Used by [`run`] and by
/// the packet tracer.
#[inline]
pub(crate) fn classify(m: &mut Meta, snap: &Snapshot) {
    let Some(port) = snap.port(m.in_port) else {
        return m.drop(DropReason::PortUnknown);
    };
    if !port.up {
        return m.drop(DropReason::PortDown);
    }
    // VID 0 is a priority tag: the frame is untagged as far as VLANs go.
    let vid = if m.flags & flags::TAGGED != 0 { m.vlan } else { 0 };
    match &port.mode {
        VlanMode::Access(v) => {
            if vid != 0 {
                return m.drop(DropReason::VlanTaggedOnAccess);
            }
            m.vlan = *v;
        }
        VlanMode::Trunk { allowed, native } => {
            if vid == 0 {
                match native {
                    Some(n) => m.vlan = *n,
                    None => m.drop(DropReason::VlanUntaggedOnTrunk),
                }
            } else if !(allowed.contains(vid) || *native == Some(vid)) {
                m.drop(DropReason::VlanNotAllowed);
            }
        }
    }
}
