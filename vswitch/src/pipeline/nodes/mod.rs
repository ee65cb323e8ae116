//! The pipeline's stages, one file each, in the order a packet meets them.

pub mod acl;
pub mod l2;
pub mod l3;
pub mod output;
pub mod parse;
pub mod qos;
pub mod reply;
pub mod vlan;
