//! Deleting the persistent TAP devices of removed pod ports, off the control loop.
//!
//! Deleting a network device waits for the kernel's RCU grace periods: 5-15 ms a device, during
//! which the control loop, had it done the work itself, answered no API request (the next pod's
//! DEL waited for the previous pod's device). A thread of its own does it instead, one device
//! after another; the control loop only waits for it when it is about to create a device that
//! is still being deleted (the same pod interface attached again), so the new port never
//! attaches to a device on its way out.

use std::collections::HashSet;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// A device: its namespace and name as the port section gives them.
type Device = (String, String);

/// Devices queued or being deleted, and a signal for each one done.
#[derive(Default)]
struct Pending {
    devices: Mutex<HashSet<Device>>,
    done: Condvar,
}

impl Pending {
    /// Deletes `device` (on whichever thread calls it) and signals it done.
    fn reap(&self, device: Device, queues: usize) {
        destroy(&device.0, &device.1, queues);
        self.devices.lock().unwrap_or_else(|e| e.into_inner()).remove(&device);
        self.done.notify_all();
    }
}

/// The deleting thread (started with the first device) and its queue.
#[derive(Default)]
pub struct TapReaper {
    queue: Option<Sender<(Device, usize)>>,
    thread: Option<JoinHandle<()>>,
    pending: Arc<Pending>,
}

impl TapReaper {
    /// Queues the deletion of TAP device `ifname` (with `queues` queues) in `netns`.
    pub fn delete(&mut self, netns: String, ifname: String, queues: usize) {
        let device = (netns, ifname);
        self.pending.devices.lock().unwrap_or_else(|e| e.into_inner()).insert(device.clone());
        if self.queue.is_none() {
            let (tx, rx) = channel::<(Device, usize)>();
            let pending = self.pending.clone();
            let spawned =
                std::thread::Builder::new().name("vswitch-tap-reaper".into()).spawn(move || {
                    for (device, queues) in rx {
                        pending.reap(device, queues);
                    }
                });
            match spawned {
                Ok(thread) => {
                    self.queue = Some(tx);
                    self.thread = Some(thread);
                }
                // No thread: delete here, as the control loop always could.
                Err(e) => {
                    warn!("no thread for deleting tap devices ({e}); deleting in the control loop");
                    self.pending.reap(device, queues);
                    return;
                }
            }
        }
        let queue = self.queue.as_ref().expect("started above");
        if let Err(std::sync::mpsc::SendError((device, queues))) = queue.send((device, queues)) {
            // The thread is gone (it cannot panic short of a bug): do it here.
            self.queue = None;
            self.pending.reap(device, queues);
        }
    }

    /// Waits (at most `timeout`) until device `ifname` in `netns` is not being deleted; true
    /// when it is not.
    pub fn wait_gone(&self, netns: &str, ifname: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let device = (netns.to_string(), ifname.to_string());
        let mut devices = self.pending.devices.lock().unwrap_or_else(|e| e.into_inner());
        while devices.contains(&device) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            devices =
                self.pending.done.wait_timeout(devices, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Deletes what is queued and stops the thread.
    pub fn finish(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("the tap device deleting thread panicked");
            }
        }
    }
}

/// Deletes the device, saying how it went.
fn destroy(ns: &str, ifname: &str, queues: usize) {
    match crate::port::tap::destroy(Some(ns), ifname, queues) {
        Ok(()) => info!(netns = %ns, ifname = %ifname, "tap device deleted"),
        Err(e) => warn!("deleting the tap device of a removed port: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_not_being_deleted_is_not_waited_for() {
        let r = TapReaper::default();
        assert!(r.wait_gone("/var/run/netns/x", "eth0", Duration::ZERO));
    }

    #[test]
    fn waiting_ends_when_the_deletion_is_done() {
        // A device that does not exist: the deletion finds nothing to do and succeeds.
        let mut r = TapReaper::default();
        let ns = "/proc/self/ns/net".to_string();
        r.delete(ns.clone(), "vsreaptest0".into(), 1);
        assert!(r.wait_gone(&ns, "vsreaptest0", Duration::from_secs(10)));
        r.finish();
        assert!(r.thread.is_none());
    }
}
