//! Which ports a worker reads on a pass: all of them, except those whose receive is a system
//! call even when nothing waits (TAP devices, [`Port::rx_on_readiness`]), which it reads only
//! when the kernel said they became readable.
//!
//! A worker with a thousand idle TAP pods made a thousand `read`s a pass that found nothing,
//! so every pass, and every packet's wait for one, grew with the pod count. Instead such a
//! port's descriptors sit in an epoll set (through mio, edge-triggered), and the port has a
//! gate:
//!
//! ```text
//!   Ready ──rx found nothing──► Idle ──epoll: readable──► Ready
//!     └──rx found packets──► Ready (read again next pass: more may be queued)
//! ```
//!
//! A pass asks epoll once, without waiting, and only while some gate is idle. The edge fires
//! for every packet the kernel queues after the read that found the queue empty, so nothing
//! is left unread. A port starts Ready (packets may be queued from before). While the worker
//! sleeps, the epoll descriptor stands for all gated ports in its poll(2) set
//! ([`Readiness::sleep_fd`]), so going to sleep does not walk a thousand descriptors either.
//!
//! Without an epoll set (creating it failed) every port is read every pass, as before.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tracing::warn;

use crate::port::Port;
use crate::types::PortId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Read every pass (its receive costs no syscall, or there is no epoll set).
    Always,
    /// May have packets: read it.
    Ready,
    /// Found empty since its last edge: skip it.
    Idle,
}

/// The gates of one worker's ports and the epoll set behind them.
pub struct Readiness {
    /// Created with the first gated port; `None` before, or if it could not be created.
    poll: Option<Poll>,
    /// Creating it failed once: do not try again.
    failed: bool,
    events: Events,
    /// By port id.
    gates: Vec<Gate>,
    /// Gates now `Idle`.
    idle: usize,
    /// Gated ports.
    gated: usize,
    fds: Vec<RawFd>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            poll: None,
            failed: false,
            events: Events::with_capacity(256),
            gates: Vec::new(),
            idle: 0,
            gated: 0,
            fds: Vec::new(),
        }
    }
}

impl Readiness {
    /// Gives port `id` its gate: `Ready` with its descriptors in the epoll set if
    /// [`Port::rx_on_readiness`], else `Always`.
    pub fn add<const N: usize>(&mut self, id: PortId, port: &dyn Port<N>) {
        let i = id as usize;
        if self.gates.len() <= i {
            self.gates.resize(i + 1, Gate::Always);
        }
        self.set(i, Gate::Always);
        if !port.rx_on_readiness() {
            return;
        }
        if !self.open() {
            return;
        }
        let Some(poll) = &self.poll else { return };
        self.fds.clear();
        port.poll_fds(&mut self.fds);
        let registry = poll.registry();
        for (k, fd) in self.fds.iter().enumerate() {
            let r = registry.register(&mut SourceFd(fd), Token(i), Interest::READABLE);
            if let Err(e) = r {
                warn!(port = port.name(), "epoll: {e}; the port is read every pass");
                for fd in &self.fds[..k] {
                    let _ = registry.deregister(&mut SourceFd(fd));
                }
                return;
            }
        }
        self.set(i, Gate::Ready);
    }

    /// Takes port `id`'s descriptors out of the epoll set (before the port closes them).
    pub fn remove<const N: usize>(&mut self, id: PortId, port: &dyn Port<N>) {
        let i = id as usize;
        if self.gates.get(i).is_none_or(|&g| g == Gate::Always) {
            return;
        }
        if let Some(poll) = &self.poll {
            self.fds.clear();
            port.poll_fds(&mut self.fds);
            for fd in &self.fds {
                let _ = poll.registry().deregister(&mut SourceFd(fd));
            }
        }
        self.set(i, Gate::Always);
    }

    /// Creates the epoll set if there is none yet; whether there is one.
    fn open(&mut self) -> bool {
        if self.poll.is_none() && !self.failed {
            match Poll::new() {
                Ok(p) => self.poll = Some(p),
                Err(e) => {
                    warn!("no epoll set ({e}): TAP ports are read every pass");
                    self.failed = true;
                }
            }
        }
        self.poll.is_some()
    }

    fn set(&mut self, i: usize, g: Gate) {
        let old = std::mem::replace(&mut self.gates[i], g);
        self.idle = self.idle + usize::from(g == Gate::Idle) - usize::from(old == Gate::Idle);
        self.gated = self.gated + usize::from(g != Gate::Always) - usize::from(old != Gate::Always);
    }

    /// Opens the gates of the ports that became readable (one `epoll_wait` that does not
    /// wait, only while a gate is idle).
    #[inline]
    pub fn refresh(&mut self) {
        if self.idle == 0 {
            return;
        }
        let Some(poll) = self.poll.as_mut() else { return };
        if poll.poll(&mut self.events, Some(Duration::ZERO)).is_err() {
            return; // EINTR: the next pass asks again
        }
        for ev in self.events.iter() {
            let i = ev.token().0;
            if self.gates.get(i) == Some(&Gate::Idle) {
                self.gates[i] = Gate::Ready;
                self.idle -= 1;
            }
        }
    }

    /// Whether to read port `id` this pass.
    #[inline]
    pub fn may_rx(&self, id: PortId) -> bool {
        self.gates.get(id as usize).is_none_or(|&g| g != Gate::Idle)
    }

    /// Reading port `id` brought nothing; `drained` says that meant empty queues (not a batch
    /// or a pool without room). A read that brings packets leaves the gate open.
    #[inline]
    pub fn found_nothing(&mut self, id: PortId, drained: bool) {
        let i = id as usize;
        if drained && self.gates.get(i) == Some(&Gate::Ready) {
            self.gates[i] = Gate::Idle;
            self.idle += 1;
        }
    }

    /// Whether port `id`'s descriptors are in the epoll set (the sleep waits on
    /// [`Readiness::sleep_fd`] for them).
    pub fn gated(&self, id: PortId) -> bool {
        self.gates.get(id as usize).is_some_and(|&g| g != Gate::Always)
    }

    /// The epoll descriptor, readable when a gated port is: what a sleeping worker polls for
    /// all of them.
    pub fn sleep_fd(&self) -> Option<RawFd> {
        self.poll.as_ref().filter(|_| self.gated > 0).map(|p| p.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::packet::{Batch, Pool, PoolConfig};
    use crate::port::TxReport;

    /// A port whose receive is a read of a socket, counted.
    struct Sock {
        s: UnixStream,
        reads: usize,
    }

    impl Port<32> for Sock {
        fn name(&self) -> &str {
            "sock"
        }
        fn kind(&self) -> String {
            "test".into()
        }
        fn rx(&mut self, _id: PortId, _pool: &mut Pool, _batch: &mut Batch<32>) -> usize {
            use std::io::Read;
            self.reads += 1;
            let mut buf = [0u8; 64];
            let mut n = 0;
            while let Ok(k) = (&self.s).read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            n
        }
        fn tx(&mut self, _pool: &mut Pool, _batch: &mut Batch<32>) -> TxReport {
            TxReport::default()
        }
        fn poll_fds(&self, out: &mut Vec<RawFd>) {
            out.push(self.s.as_raw_fd());
        }
        fn rx_on_readiness(&self) -> bool {
            true
        }
    }

    fn pass(r: &mut Readiness, id: PortId, port: &mut Sock, pool: &mut Pool) -> Option<usize> {
        let mut batch = Batch::<32>::new();
        r.refresh();
        if !r.may_rx(id) {
            return None;
        }
        let n = port.rx(id, pool, &mut batch);
        if n == 0 {
            r.found_nothing(id, true);
        }
        Some(n)
    }

    #[test]
    fn an_idle_port_is_read_again_only_after_data_arrives() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut port = Sock { s: a, reads: 0 };
        let cfg = PoolConfig { frames: 16, frame_size: 2048, headroom: 256, big_buffers: 0 };
        let mut pool = Pool::new(cfg).unwrap();
        let mut r = Readiness::default();
        r.add(3, &port);
        assert!(r.gated(3));
        assert!(r.sleep_fd().is_some());
        // Ready at first: one read finds nothing and closes the gate.
        assert_eq!(pass(&mut r, 3, &mut port, &mut pool), Some(0));
        for _ in 0..100 {
            assert_eq!(pass(&mut r, 3, &mut port, &mut pool), None);
        }
        assert_eq!(port.reads, 1);
        // Data: the edge opens the gate; the port is read until it finds nothing again.
        b.write_all(b"hello").unwrap();
        assert_eq!(pass(&mut r, 3, &mut port, &mut pool), Some(5));
        assert_eq!(pass(&mut r, 3, &mut port, &mut pool), Some(0));
        assert_eq!(pass(&mut r, 3, &mut port, &mut pool), None);
        assert_eq!(port.reads, 3);
        // A read that found nothing because of no room keeps the gate open.
        b.write_all(b"x").unwrap();
        r.refresh();
        r.found_nothing(3, false);
        assert!(r.may_rx(3));
        // Removed: out of the epoll set, and read every pass like any port.
        r.remove(3, &port);
        assert!(!r.gated(3));
        assert!(r.sleep_fd().is_none());
        assert!(r.may_rx(3));
    }

    #[test]
    fn ports_without_the_need_are_always_read() {
        struct Plain;
        impl Port<32> for Plain {
            fn name(&self) -> &str {
                "plain"
            }
            fn kind(&self) -> String {
                "test".into()
            }
            fn rx(&mut self, _: PortId, _: &mut Pool, _: &mut Batch<32>) -> usize {
                0
            }
            fn tx(&mut self, _: &mut Pool, _: &mut Batch<32>) -> TxReport {
                TxReport::default()
            }
        }
        let mut r = Readiness::default();
        r.add(0, &Plain);
        r.found_nothing(0, true);
        assert!(r.may_rx(0));
        assert!(!r.gated(0));
        assert!(r.sleep_fd().is_none());
    }
}
