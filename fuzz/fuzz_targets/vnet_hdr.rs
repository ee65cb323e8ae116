//! A TAP pod's packet as the switch receives it: a virtio-net header the pod wrote (untrusted)
//! and a frame. The input's first 12 bytes are the header, the rest the frame. The switch must
//! never panic or read out of bounds on any of it, and every buffer it takes from the pool must
//! come back: the same path as the data plane (the TAP port's header parse, the parse stage's
//! offload validation, then segmentation towards a port without TSO and checksum completion
//! towards one without checksum offload).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::packet::{gso, GsoType, Meta, Pool, PoolConfig};
use vswitch::pipeline::nodes::parse;
use vswitch::port::tap::{parse_vnet_hdr, VNET_HDR_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < VNET_HDR_LEN {
        return;
    }
    let (h, frame) = data.split_at(VNET_HDR_LEN);
    let Ok(offload) = parse_vnet_hdr(h.try_into().expect("12 bytes")) else { return };
    let mut m = Meta::rx(0);
    m.offload = offload;
    if parse::parse(frame, &mut m).is_err() {
        return;
    }
    let mut pool =
        Pool::new(PoolConfig { frames: 1024, frame_size: 2048, headroom: 256, big_buffers: 2 })
            .expect("pool");
    let Some(pkt) = (if frame.len() <= 2048 - 256 { pool.alloc_from(frame) } else { None }) else {
        return;
    };
    let base = pool.in_use();
    if m.offload.gso_type != GsoType::None {
        for mtu in [1500usize, 1450, 68] {
            let mss = gso::mss_for_mtu(pool.data(&pkt), &m, mtu);
            let mut segs = Vec::new();
            let _ = gso::segment(&mut pool, &pkt, &m, mss, &mut |s| segs.push(s));
            pool.free_all(segs);
            assert_eq!(pool.in_use(), base, "segments leaked");
        }
    } else if m.offload.csum_partial {
        let mut copy = pool.data(&pkt).to_vec();
        let _ = gso::complete_checksum(&mut copy, &m.offload);
    }
    pool.free(pkt);
    assert_eq!(pool.in_use(), 0);
});
