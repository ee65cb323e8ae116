//! Per-cgroup QoS: guaranteed rates with borrowing, priorities, weights, packets-per-second
//! limits, policers, and a DDoS guard for the uplink.
//!
//! # Where it sits
//!
//! The data path uses it through `pipeline::nodes::qos` (classification, enqueue, release,
//! the guard stage) and the worker, which owns its ports' schedulers; the control plane
//! compiles `[[qos_class]]` into per-port plans (`control::qos`).
//!
//! One [`Scheduler`] per port, on its egress: the pipeline classifies each packet to a leaf
//! class (a pod), [`Scheduler::enqueue`]s it, and the port's transmit step pulls packets with
//! [`Scheduler::dequeue`] / [`Scheduler::dequeue_batch`] for as long as the port has room
//! ([`Scheduler::enqueue_or_pass`] hands back at once, charged, a packet that the next
//! dequeue would hand out first, so an unthrottled port queues nothing). When
//! dequeue returns nothing while packets are queued, [`Scheduler::next_wake_ns`] says when a
//! class can send again. The [`DdosGuard`] sits on the uplink's ingress, before
//! classification. The library knows nothing of packets: the queued item is a type parameter
//! (a buffer handle), its length and class are passed in, and time is always an argument
//! (`now_ns`), so nothing reads a clock per packet and tests run on a fake clock.
//!
//! # Semantics (HTB, after Linux `sch_htb.c`)
//!
//! Classes form a tree: node uplink -> optional group (e.g. a namespace) -> pod. Each class
//! has a guaranteed rate, a ceiling, a burst, a priority, a weight, an optional pps limit and
//! an MPU (each packet is charged at least MPU bytes). Leaves hold bounded FIFO queues.
//!
//! * A class under its guarantee (rate bucket non-negative) is **green** and sends on its own,
//!   whatever its ancestors' state: guarantees hold under contention. Validation keeps the sum
//!   of the children's guarantees at or below the parent's rate.
//! * A class over its guarantee but under its ceiling is **yellow**: it may **borrow** from
//!   the nearest ancestor that is green (has spare rate). Among borrowers competing for the
//!   same lender, the lower priority number is served first, and equal priorities share by
//!   deficit round robin with a quantum proportional to the weight (hierarchically: at each
//!   level of the tree).
//! * A class over its ceiling or its pps limit is **red** and waits. A class never sends above
//!   its ceiling: over any window, bytes sent <= ceil * window + burst + one packet (the
//!   shaping buckets may go one packet into debt so bursts smaller than a packet still work).
//! * Green classes are served before borrowers (lowest level first, as in HTB), and a sent
//!   packet is charged to every ancestor's ceil, and to the rate of every class at or above
//!   the level it was served from; bytes sent below that level are counted as borrowed.
//! * The burst is the depth of the ceil bucket. The rate bucket holds as long at the rate
//!   (`burst * rate / ceil`, at least ten full-size frames, 15 000 bytes, or the whole burst
//!   if smaller: [`sched::rate_burst`]), so what a class may send at once as guaranteed
//!   follows its guarantee: a pod with a token guarantee and a high ceiling does not get a
//!   ceiling's burst ahead of the guarantees of others.
//! * [`Mode::Police`] classes drop (counted) at enqueue what is over their ceiling or pps limit
//!   instead of delaying it.
//!
//! Token buckets ([`bucket`]) are integer, in units where one nanosecond at `r` per second
//! earns `r`: refills are exact and never drift. Settings change through
//! [`Scheduler::apply`], which validates the whole new set (an error names the class and the
//! setting, and nothing changes) and then applies it atomically, keeping queues, tokens and
//! counters of the classes that stay.
//!
//! # Cost
//!
//! Nothing is allocated on enqueue or dequeue (room for every queue to fill to its bound, the
//! wait wheel and the bitmaps are reserved at [`Scheduler::apply`]). Enqueue is O(1) (O(depth) when a class becomes
//! backlogged); dequeue is O(depth) to pick and charge the packet (row and priority found by bit
//! masks; rows and feeds are bitmaps over the class slots, each a round robin from a cursor, so
//! joining or leaving one touches no other class) plus O(1) when a class starts waiting for tokens
//! or its wait ends (a timing wheel of exact times; it is lazy: more debt on a waiting class does
//! not touch it). No operation scans the classes; only [`Scheduler::apply`] is O(n log n) (it
//! renumbers the classes breadth first, so each parent's children are a range of slots). A packet
//! touches one cache line of its class and of each ancestor, and its node in the one pool of
//! queued packets that all classes share (see `benches/qos.rs` for the cost per packet at 10,
//! 1 000 and 10 000 classes).

pub mod bucket;
pub mod guard;
pub mod policer;
mod queue;
pub mod sched;
mod sets;
mod wheel;

pub use bucket::{ByteBucket, PacketBucket, TokenBucket};
pub use guard::{source_key, DdosGuard, GuardConfig, GuardDrop, GuardStats};
pub use policer::{PoliceVerdict, Policer};
pub use sched::{
    Admitted, Change, ClassConfig, ClassId, ClassStats, DropReason, Field, Mode, Offer, QosError,
    SchedStats, Scheduler,
};
