//! Per-step timings of one invocation, for finding where an ADD or DEL spends its time.
//!
//! With `VSWITCH_CNI_TIMING=1` in the environment the plugin writes one line to stderr when it
//! finishes: `vswitch-cni timing ADD total=23.1 probe=0.4 ipam=9.8 ...` (milliseconds, steps in
//! the order they ended). Without it nothing is measured beyond a clock read per step.

use std::time::Instant;

/// The environment variable that turns the report on.
pub const ENV: &str = "VSWITCH_CNI_TIMING";

/// Steps of one invocation.
pub struct Steps {
    start: Instant,
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Default for Steps {
    fn default() -> Self {
        Steps::new()
    }
}

impl Steps {
    /// Starts the clock.
    pub fn new() -> Steps {
        let now = Instant::now();
        Steps { start: now, last: now, done: Vec::new() }
    }

    /// Ends step `name` (the time since the previous step ended).
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    /// The report line.
    pub fn line(&self, command: &str) -> String {
        let mut s = format!(
            "vswitch-cni timing {command} total={:.3}",
            self.start.elapsed().as_secs_f64() * 1e3
        );
        for (name, ms) in &self.done {
            s += &format!(" {name}={ms:.3}");
        }
        s
    }

    /// Writes the report to stderr when `VSWITCH_CNI_TIMING` is set.
    pub fn report(&self, command: &str) {
        if std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("{}", self.line(command));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_step_in_order() {
        let mut s = Steps::new();
        s.mark("a");
        s.mark("b");
        let line = s.line("ADD");
        assert!(line.starts_with("vswitch-cni timing ADD total="), "{line}");
        let a = line.find(" a=").unwrap();
        let b = line.find(" b=").unwrap();
        assert!(a < b, "{line}");
    }
}
