//! The full L2 path (access port <-> trunk, VLAN push one way and pop the other, 1 000 learned
//! MACs behind the trunk) for a fixed number of packets, to count instructions per packet
//! with `valgrind --tool=callgrind`, a figure that does not move with the machine's load:
//!
//! ```sh
//! cargo build --release --example l2_callgrind
//! valgrind --tool=callgrind target/release/examples/l2_callgrind 200000
//! valgrind --tool=callgrind target/release/examples/l2_callgrind 400000
//! ```
//! Instructions per packet = (difference of the two totals) / 200 000, which cancels the
//! set-up; `callgrind_annotate` shows where they go.

use vswitch_suite::l2bench::L2Bench;

fn main() {
    let packets: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut bench: L2Bench<32> = L2Bench::new(1000, 1024);
    let moved = bench.run(packets);
    println!("{moved} packets through the L2 path");
}
