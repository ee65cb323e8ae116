//! `POST /v1/capture`, daemon side: validates the request, arms a tap on the worker that owns
//! the port (a command on its ring: nothing on the fast path changes for the other ports),
//! drains the tap's ring on every control tick, and answers the request once a bound is
//! reached: the packet count, the time, or [`MAX_BYTES`] of captured data. The control loop
//! keeps serving other requests meanwhile.
//!
//! Dropping the reader ends the capture on the worker side too (see
//! [`crate::pipeline::capture`]).

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use vswitch_api::{ApiError, CaptureRequest, CaptureResult, CapturedPacket, Reply, Response};

use super::daemon::{Command, Daemon};
use crate::pipeline::capture::{self, CaptureReader, Direction, Record};
use crate::pipeline::trace::to_hex;
use crate::types::PortId;

/// The most packets one capture returns.
pub const MAX_COUNT: u64 = 100_000;
/// The longest a capture runs, seconds (also when no time bound is given).
pub const MAX_SECONDS: u64 = 60;
/// The most captured bytes one capture returns (the reply is JSON, twice as large in hex).
pub const MAX_BYTES: usize = 32 << 20;

/// A capture waiting for its bound.
pub struct Pending {
    reply: SyncSender<Response>,
    reader: CaptureReader,
    port: PortId,
    port_name: String,
    dir: Direction,
    snaplen: u32,
    count: u64,
    deadline: Instant,
    bytes: usize,
    packets: Vec<CapturedPacket>,
}

/// The bounds of a capture request, checked: direction, count, time, snap length.
pub fn check(c: &CaptureRequest) -> Result<(Direction, u64, u64, u32), ApiError> {
    let dir = match c.direction.as_deref() {
        None => Direction::Both,
        Some(d) => Direction::parse(d).ok_or_else(|| {
            ApiError::invalid(format!("direction {d:?} is not \"rx\", \"tx\" or \"both\""))
        })?,
    };
    let count = match c.count {
        None => MAX_COUNT,
        Some(n) if (1..=MAX_COUNT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!("count {n} is out of range 1..={MAX_COUNT}")))
        }
    };
    let seconds = match c.seconds {
        None => MAX_SECONDS,
        Some(s) if (1..=MAX_SECONDS).contains(&s) => s,
        Some(s) => {
            return Err(ApiError::invalid(format!("seconds {s} is out of range 1..={MAX_SECONDS}")))
        }
    };
    let snaplen = match c.snaplen {
        None => capture::DEFAULT_SNAPLEN,
        Some(n) if (1..=capture::MAX_SNAPLEN).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "snaplen {n} is out of range 1..={}",
                capture::MAX_SNAPLEN
            )))
        }
    };
    Ok((dir, count, seconds, snaplen))
}

impl<const N: usize> Daemon<N> {
    /// Arms a capture for `c`, answering on `reply` when it ends, or at once if refused.
    pub(super) fn start_capture(&mut self, c: CaptureRequest, reply: SyncSender<Response>) {
        if let Err(e) = self.arm_capture(c, reply.clone()) {
            let _ = reply.send(Err(e));
        }
    }

    fn arm_capture(
        &mut self,
        c: CaptureRequest,
        reply: SyncSender<Response>,
    ) -> Result<(), ApiError> {
        let port = self.port_id(&c.port)?;
        let (dir, count, seconds, snaplen) = check(&c)?;
        if let Some(p) = self.captures.iter().find(|p| p.port == port) {
            return Err(ApiError::conflict(format!(
                "port {:?} is being captured already ({} more seconds at most)",
                p.port_name,
                p.deadline.saturating_duration_since(Instant::now()).as_secs()
            )));
        }
        let worker = self.port_section(port).map_or(0, |s| s.worker);
        let (tap, reader) =
            capture::arm(port, dir, snaplen, capture::DEFAULT_RING_BYTES, capture::wall_offset());
        if !self.send_command(worker, Command::Capture(Box::new(tap))) {
            return Err(ApiError::unavailable(format!(
                "worker {worker}'s command ring is full; try again"
            )));
        }
        tracing::info!(port = %c.port, direction = dir.name(), count, seconds, snaplen, "capture started");
        self.captures.push(Pending {
            reply,
            reader,
            port,
            port_name: c.port,
            dir,
            snaplen,
            count,
            deadline: Instant::now() + Duration::from_secs(seconds),
            bytes: 0,
            packets: Vec::new(),
        });
        Ok(())
    }

    /// Drains every running capture and answers those whose bound was reached.
    pub(super) fn service_captures(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.captures.len() {
            let p = &mut self.captures[i];
            // Read before draining: a tap gone now wrote everything it will before the drain.
            let gone = p.reader.abandoned();
            let room = (p.count as usize).saturating_sub(p.packets.len());
            let (packets, bytes) = (&mut p.packets, &mut p.bytes);
            p.reader.drain(room, |r: Record| {
                *bytes += r.data.len();
                packets.push(CapturedPacket {
                    ts_ns: r.ts_ns,
                    len: r.orig_len,
                    data_hex: to_hex(&r.data),
                });
            });
            let stopped = if p.packets.len() as u64 >= p.count {
                Some("count")
            } else if p.bytes >= MAX_BYTES {
                Some("size")
            } else if gone {
                Some("port removed")
            } else if now >= p.deadline {
                Some("time")
            } else {
                None
            };
            let Some(stopped) = stopped else {
                i += 1;
                continue;
            };
            let p = self.captures.swap_remove(i);
            let result = CaptureResult {
                port: p.port_name.clone(),
                direction: p.dir.name().into(),
                snaplen: p.snaplen,
                stopped: stopped.into(),
                not_captured: p.reader.ring_full(),
                packets: p.packets,
            };
            tracing::info!(
                port = %p.port_name,
                captured = result.packets.len(),
                not_captured = result.not_captured,
                stopped,
                "capture finished"
            );
            let _ = p.reply.send(Ok(Reply::Capture(result)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_naming_the_field() {
        let req = |f: fn(&mut CaptureRequest)| {
            let mut c = CaptureRequest { port: "p".into(), ..Default::default() };
            f(&mut c);
            check(&c).map_err(|e| e.message)
        };
        assert_eq!(req(|_| {}), Ok((Direction::Both, MAX_COUNT, MAX_SECONDS, 256)));
        assert_eq!(req(|c| c.count = Some(0)), Err("count 0 is out of range 1..=100000".into()));
        assert!(req(|c| c.seconds = Some(61)).unwrap_err().starts_with("seconds 61"));
        assert!(req(|c| c.snaplen = Some(70000)).unwrap_err().starts_with("snaplen 70000"));
        assert_eq!(
            req(|c| c.direction = Some("in".into())),
            Err("direction \"in\" is not \"rx\", \"tx\" or \"both\"".into())
        );
        assert_eq!(
            req(|c| {
                c.direction = Some("tx".into());
                c.count = Some(5);
                c.seconds = Some(2);
                c.snaplen = Some(65535);
            }),
            Ok((Direction::Tx, 5, 2, 65535))
        );
    }
}
