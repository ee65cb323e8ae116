//! `crr`: a short-connection benchmark in the style of netperf's TCP_CRR.
//!
//! ```text
//! crr server --port P [--addr 0.0.0.0]
//! crr client --addr A --port P --seconds S [--json]
//! ```
//!
//! One transaction = open a TCP connection, send one byte, receive one byte, close. The client
//! runs transactions back to back, one at a time, for `--seconds`, timing each from just before
//! `connect()` to just after `close()`, and prints the rate and the latency distribution.
//!
//! The server takes one connection at a time: it reads the byte, echoes it, then waits for the
//! client's FIN before closing, so the TIME_WAIT state stays on the client side (as netperf
//! does). Give the client's network namespace `net.ipv4.tcp_tw_reuse=1` and a wide
//! `net.ipv4.ip_local_port_range`, or it runs out of ports after a few seconds.
//!
//! Both sides are single-threaded and use only `std::net`. The server runs until it is killed.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Longest wait on any single step of a transaction before it counts as an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(name = "crr", about = "TCP connect/request/response/close rate and latency")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Answer transactions, one connection at a time, until killed.
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        addr: IpAddr,
        /// TCP port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// Run transactions back to back and report the rate and latency per connection.
    Client {
        /// The server's address.
        #[arg(long)]
        addr: IpAddr,
        /// The server's port.
        #[arg(long)]
        port: u16,
        /// How long to run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Print one JSON object instead of a key=value line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().role {
        Role::Server { addr, port } => match serve(SocketAddr::new(addr, port)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crr server: {e}");
                ExitCode::FAILURE
            }
        },
        Role::Client { addr, port, seconds, json } => {
            if !(seconds > 0.0 && seconds.is_finite()) {
                eprintln!("crr client: --seconds must be a positive number");
                return ExitCode::from(2);
            }
            let report = run_client(SocketAddr::new(addr, port), Duration::from_secs_f64(seconds));
            println!("{}", if json { report.json() } else { report.line() });
            if report.conns == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn serve(at: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(at)?;
    let mut served: u64 = 0;
    loop {
        let (mut conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("crr server: accept: {e}");
                continue;
            }
        };
        // One bad connection must not stall the server forever.
        let _ = conn.set_read_timeout(Some(STEP_TIMEOUT));
        let _ = conn.set_nodelay(true);
        let mut byte = [0u8; 1];
        if conn.read_exact(&mut byte).is_ok() && conn.write_all(&byte).is_ok() {
            served += 1;
            // Wait for the client's FIN (read returns 0) so the client closes first.
            let _ = conn.read(&mut byte);
        }
        drop(conn);
        if served.is_power_of_two() && served >= 1 << 20 {
            eprintln!("crr server: {served} transactions served");
        }
    }
}

/// One transaction; `Ok` once the connection is closed after a full request/response.
fn transaction(to: &SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(to, STEP_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(STEP_TIMEOUT))?;
    s.write_all(b"x")?;
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte)?;
    drop(s); // close(): our FIN goes out, TIME_WAIT stays here
    Ok(())
}

struct Report {
    conns: u64,
    errors: u64,
    secs: f64,
    /// Latency per successful transaction, microseconds, sorted.
    lat_us: Vec<u32>,
    first_error: Option<String>,
}

fn run_client(to: SocketAddr, length: Duration) -> Report {
    let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut errors: u64 = 0;
    let mut first_error = None;
    let start = Instant::now();
    let end = start + length;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        match transaction(&to) {
            Ok(()) => {
                let us = t0.elapsed().as_micros();
                lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
                // Nothing works at all (no server, no route): stop early.
                if lat_us.is_empty() && errors >= 100 {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    Report { conns: lat_us.len() as u64, errors, secs, lat_us, first_error }
}

impl Report {
    fn cps(&self) -> f64 {
        if self.secs > 0.0 {
            self.conns as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The `q`-quantile (0..=1) by nearest rank, 0 when there are no samples.
    fn quantile(&self, q: f64) -> u32 {
        if self.lat_us.is_empty() {
            return 0;
        }
        let rank = (q * self.lat_us.len() as f64).ceil() as usize;
        self.lat_us[rank.clamp(1, self.lat_us.len()) - 1]
    }

    fn avg(&self) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        self.lat_us.iter().map(|&v| f64::from(v)).sum::<f64>() / self.lat_us.len() as f64
    }

    fn line(&self) -> String {
        let mut s = format!(
            "conns={} secs={:.3} cps={:.1} avg_us={:.1} p50_us={} p99_us={} max_us={} errors={}",
            self.conns,
            self.secs,
            self.cps(),
            self.avg(),
            self.quantile(0.50),
            self.quantile(0.99),
            self.lat_us.last().copied().unwrap_or(0),
            self.errors
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!(" first_error=\"{}\"", e.replace('"', "'")));
        }
        s
    }

    fn json(&self) -> String {
        let err = match &self.first_error {
            Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
            None => "null".to_string(),
        };
        format!(
            "{{\"conns\":{},\"secs\":{:.3},\"conn_per_sec\":{:.1},\"avg_us\":{:.1},\"p50_us\":{},\
             \"p99_us\":{},\"max_us\":{},\"errors\":{},\"first_error\":{}}}",
            self.conns,
            self.secs,
            self.cps(),
            self.avg(),
            self.quantile(0.50),
            self.quantile(0.99),
            self.lat_us.last().copied().unwrap_or(0),
            self.errors,
            err
        )
    }
}
