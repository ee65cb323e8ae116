//! The leaves' queues: FIFO lists threaded through one pool of nodes per scheduler.
//!
//! A queue is its two ends ([`Fifo`], 8 bytes, kept in the class's hot cache line); its
//! packets are [`Node`]s of a shared [`Pool`], each linked to the next. A node a dequeue frees
//! is the next one an enqueue takes (the free list is a stack), so the memory a port's
//! packets go through follows its backlog, not the sum of its classes' bounds.
//!
//! Why not a `VecDeque` per class, reserved at its bound: each class's ring is memory of its
//! own, and as its head moves round the ring every slot of it comes into use in turn. At
//! 10 000 classes with 64-packet bounds, 5 MB of ring slots (and 10 000 ring headers on lines
//! of their own) went through the caches for a backlog of 40 000 packets that fits in 640 KB
//! of nodes here.
//!
//! Room: [`Pool::reserve`] reserves (at `Scheduler::apply`) room for every queue to fill to
//! its bound, and a node is written only when first used, so room never used costs address
//! space, not memory. Nothing allocates afterwards: [`Pool::push`] takes a free node or one
//! from the reserved room (only a pool without room, which the scheduler's bounds rule out,
//! would grow, as a full `VecDeque` does).

use std::collections::TryReserveError;

/// No node (the end of a list).
pub(super) const NIL: u32 = u32::MAX;

/// A queued packet: the item, its length and the next node of its queue (of the free list
/// when free; a free node holds no item).
#[derive(Debug)]
struct Node<T> {
    item: Option<T>,
    len: u32,
    next: u32,
}

/// A queue's ends: its first and last nodes (both [`NIL`] when empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fifo {
    head: u32,
    tail: u32,
}

impl Fifo {
    /// An empty queue.
    pub const EMPTY: Fifo = Fifo { head: NIL, tail: NIL };
}

/// The nodes of every queue of a scheduler, and the free ones.
#[derive(Debug)]
pub(super) struct Pool<T> {
    nodes: Vec<Node<T>>,
    /// The first free node, or [`NIL`] (then nodes come from the reserved room).
    free: u32,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { nodes: Vec::new(), free: NIL }
    }
}

impl<T> Pool<T> {
    /// Makes room for `total` packets queued at once, allocating now so that no push does,
    /// or fails changing nothing. (Never shrinks: nodes in use stay where they are.)
    pub fn try_reserve(&mut self, total: usize) -> Result<(), TryReserveError> {
        self.nodes.try_reserve_exact(total.saturating_sub(self.nodes.len()))
    }

    /// The bytes a queued packet takes.
    pub fn node_size() -> usize {
        std::mem::size_of::<Node<T>>()
    }

    /// Packets that can be queued at once without allocating.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// Whether a push would not allocate.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.free != NIL || self.nodes.len() < self.nodes.capacity()
    }

    /// Appends `item` (`len` bytes) to `q`. Allocates only without room (see
    /// [`Pool::has_room`]).
    #[inline(always)]
    pub fn push(&mut self, q: &mut Fifo, item: T, len: u32) {
        let n = self.free;
        let n = match self.nodes.get_mut(n as usize) {
            Some(node) => {
                self.free = node.next;
                *node = Node { item: Some(item), len, next: NIL };
                n
            }
            None => {
                debug_assert!(self.nodes.len() < self.nodes.capacity(), "pool would grow");
                self.nodes.push(Node { item: Some(item), len, next: NIL });
                (self.nodes.len() - 1) as u32
            }
        };
        match self.nodes.get_mut(q.tail as usize) {
            Some(tail) => tail.next = n,
            None => q.head = n,
        }
        q.tail = n;
    }

    /// Takes the head of `q` with its length, or `None` when `q` is empty.
    #[inline(always)]
    pub fn pop(&mut self, q: &mut Fifo) -> Option<(T, u32)> {
        let n = q.head;
        let node = self.nodes.get_mut(n as usize)?;
        let item = node.item.take()?;
        q.head = node.next;
        if q.head == NIL {
            q.tail = NIL;
        }
        node.next = self.free;
        self.free = n;
        Some((item, node.len))
    }

    /// The lengths of `q`'s packets, first to last.
    pub fn lens(&self, q: Fifo) -> impl Iterator<Item = u32> + '_ {
        let mut n = q.head;
        std::iter::from_fn(move || {
            let node = self.nodes.get(n as usize)?;
            n = node.next;
            Some(node.len)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_fifo_and_share_freed_nodes() {
        let mut pool = Pool::default();
        pool.try_reserve(4).unwrap();
        let (mut a, mut b) = (Fifo::EMPTY, Fifo::EMPTY);
        pool.push(&mut a, 'a', 1);
        pool.push(&mut b, 'x', 10);
        pool.push(&mut a, 'b', 2);
        assert!(pool.has_room());
        pool.push(&mut a, 'c', 3);
        assert!(!pool.has_room(), "four nodes reserved, four in use");
        assert_eq!(pool.lens(a).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(pool.lens(b).collect::<Vec<_>>(), [10]);
        assert_eq!(pool.pop(&mut a), Some(('a', 1)));
        assert!(pool.has_room(), "a freed node is room");
        // The node just freed is the next one taken: the capacity never moves.
        pool.push(&mut b, 'y', 20);
        assert!(!pool.has_room());
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.lens(b).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(pool.pop(&mut b), Some(('x', 10)));
        assert_eq!(pool.pop(&mut a), Some(('b', 2)));
        assert_eq!(pool.pop(&mut a), Some(('c', 3)));
        assert_eq!(a, Fifo::EMPTY);
        assert_eq!(pool.pop(&mut a), None);
        assert_eq!(pool.pop(&mut b), Some(('y', 20)));
        assert_eq!(b, Fifo::EMPTY);
        // An emptied queue takes nodes again.
        pool.push(&mut a, 'd', 4);
        assert_eq!(pool.lens(a).collect::<Vec<_>>(), [4]);
        assert_eq!(pool.capacity(), 4);
    }

    #[test]
    fn reserve_makes_room_without_moving_queued_packets() {
        let mut pool = Pool::default();
        pool.try_reserve(1).unwrap();
        let mut q = Fifo::EMPTY;
        pool.push(&mut q, 7u64, 70);
        assert!(!pool.has_room());
        pool.try_reserve(3).unwrap();
        assert!(pool.capacity() >= 3 && pool.has_room());
        pool.push(&mut q, 8, 80);
        pool.try_reserve(1).unwrap(); // never shrinks
        assert!(pool.capacity() >= 3);
        assert_eq!(pool.pop(&mut q), Some((7, 70)));
        assert_eq!(pool.pop(&mut q), Some((8, 80)));
    }
}
