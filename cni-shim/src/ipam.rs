//! Delegation to the IPAM plugin (`ipam.type`, e.g. `host-local`): executed from `CNI_PATH`
//! with the runtime's environment, `CNI_COMMAND` set to the operation, and the network
//! configuration on stdin, its `cniVersion` lowered to one the IPAM plugin supports.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::config::{Env, NetConf, SUPPORTED_VERSIONS};
use crate::error::{CniError, Result, DECODE, INVALID_CONFIG, INVALID_ENV, IO_FAILURE};

/// An address IPAM assigned: `address` in CIDR notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway, if IPAM named one.
    pub gateway: Option<IpAddr>,
}

impl IpConfig {
    /// `10.244.1.2/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

/// A route: destination prefix and optional gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network address.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Next hop; `None` for an on-link route.
    pub gw: Option<IpAddr>,
}

impl Route {
    /// The route as it appears in a CNI result.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"dst": format!("{}/{}", self.dst, self.prefix)});
        if let Some(gw) = self.gw {
            v["gw"] = Value::String(gw.to_string());
        }
        v
    }
}

/// Parses `a.b.c.d/n` or `x::y/n`.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

/// The parts of an IPAM result this plugin uses.
#[derive(Debug, Clone, Default)]
pub struct IpamResult {
    /// The addresses.
    pub ips: Vec<IpConfig>,
    /// The routes.
    pub routes: Vec<Route>,
    /// DNS settings, if IPAM gave any.
    pub dns: Option<Value>,
}

fn decode(what: &str) -> CniError {
    CniError::new(DECODE, format!("cannot decode the IPAM result: {what}"))
}

impl IpamResult {
    /// Reads `ips`, `routes` and `dns` of a (1.0-style) result.
    pub fn parse(v: &Value) -> Result<IpamResult> {
        let mut out = IpamResult::default();
        for ip in v.get("ips").and_then(Value::as_array).into_iter().flatten() {
            let address = ip.get("address").and_then(Value::as_str).unwrap_or("");
            let (addr, prefix) =
                parse_cidr(address).ok_or_else(|| decode(&format!("bad address {address:?}")))?;
            let gateway = match ip.get("gateway").and_then(Value::as_str) {
                Some(g) => Some(g.parse().map_err(|_| decode(&format!("bad gateway {g:?}")))?),
                None => None,
            };
            out.ips.push(IpConfig { addr, prefix, gateway });
        }
        for r in v.get("routes").and_then(Value::as_array).into_iter().flatten() {
            let dst = r.get("dst").and_then(Value::as_str).unwrap_or("");
            let (dst, prefix) =
                parse_cidr(dst).ok_or_else(|| decode(&format!("bad route dst {dst:?}")))?;
            let gw = match r.get("gw").and_then(Value::as_str) {
                Some(g) => Some(g.parse().map_err(|_| decode(&format!("bad route gw {g:?}")))?),
                None => None,
            };
            out.routes.push(Route { dst, prefix, gw });
        }
        out.dns = v.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned();
        Ok(out)
    }
}

/// The IPAM plugin of a configuration, found in `CNI_PATH`.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// The plugin's name (`ipam.type`).
    pub name: String,
    /// Its executable.
    pub path: PathBuf,
    /// Where the versions it supports are remembered between invocations (see
    /// [`Ipam::with_cache`]); `None`: asked every time.
    cache: Option<PathBuf>,
}

/// The name of the file that remembers IPAM plugins' supported versions.
pub const VERSION_CACHE: &str = "cni-ipam-versions.json";

/// An IPAM plugin started with [`Ipam::start`] and not yet waited for.
pub struct Running {
    command: &'static str,
    child: std::process::Child,
}

/// What identifies an executable's contents well enough to trust a remembered answer of it:
/// path, device, inode, size and modification time.
fn identity(p: &Path) -> Option<Value> {
    use std::os::unix::fs::MetadataExt;
    let m = p.metadata().ok()?;
    Some(serde_json::json!([p.to_str()?, m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()]))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Ipam {
    /// Finds `name` in the directories of `CNI_PATH`.
    pub fn find(name: &str, env: &Env) -> Result<Ipam> {
        if env.path.is_empty() {
            return Err(CniError::new(
                INVALID_ENV,
                format!("CNI_PATH is not set, so the IPAM plugin {name:?} cannot be found"),
            ));
        }
        env.path
            .iter()
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
            .map(|path| Ipam { name: name.to_string(), path, cache: None })
            .ok_or_else(|| {
                let dirs: Vec<String> = env.path.iter().map(|d| d.display().to_string()).collect();
                CniError::new(
                    INVALID_CONFIG,
                    format!("IPAM plugin {name:?} not found in CNI_PATH ({})", dirs.join(":")),
                )
            })
    }

    /// Remembers the versions the plugin supports in [`VERSION_CACHE`] under `dir` (which must
    /// exist; vswitchd's socket directory), keyed by the executable's identity, so that ADD and
    /// DEL run the plugin once instead of twice (`VERSION`, then the operation: each run of a
    /// Go plugin costs 2-5 ms, more on a loaded node). A changed executable is asked again.
    pub fn with_cache(mut self, dir: Option<&Path>) -> Ipam {
        self.cache = dir.filter(|d| d.is_dir()).map(|d| d.join(VERSION_CACHE));
        self
    }

    /// Runs the plugin with `command`, `stdin` and the process environment; its stdout as
    /// JSON (`Value::Null` when empty), or its error.
    fn exec(&self, command: &'static str, stdin: &[u8]) -> Result<Value> {
        self.wait(self.start(command, stdin)?)
    }

    /// Starts the plugin with `command` and `stdin`, without waiting for it.
    pub fn start(&self, command: &'static str, stdin: &[u8]) -> Result<Running> {
        let mut child = Command::new(&self.path)
            .env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.io_error(e))?;
        // A plugin that exits without reading stdin closes the pipe: not our failure. The
        // configuration fits in the pipe's buffer, so this does not wait for the plugin.
        let _ = child.stdin.take().expect("piped stdin").write_all(stdin);
        Ok(Running { command, child })
    }

    fn io_error(&self, e: std::io::Error) -> CniError {
        CniError::new(IO_FAILURE, format!("cannot run IPAM plugin {}", self.path.display()))
            .details(e.to_string())
    }

    /// Waits for a plugin started with [`Ipam::start`]: its stdout as JSON (`Value::Null`
    /// when empty), or its error.
    pub fn wait(&self, running: Running) -> Result<Value> {
        let command = running.command;
        let out = running.child.wait_with_output().map_err(|e| self.io_error(e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = if text.trim().is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_str(&text).ok()
        };
        if out.status.success() {
            return parsed.ok_or_else(|| {
                CniError::new(
                    DECODE,
                    format!("IPAM plugin {} {command}: output is not JSON", self.name),
                )
                .details(text.into_owned())
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let err = parsed.as_ref().filter(|v| v.get("code").is_some());
        Err(match err {
            Some(e) => {
                let code = e["code"].as_u64().unwrap_or(IO_FAILURE as u64) as u32;
                let msg = e.get("msg").and_then(Value::as_str).unwrap_or("").to_string();
                let details = e.get("details").and_then(Value::as_str).unwrap_or("").to_string();
                CniError::new(code, format!("IPAM plugin {} {command}: {msg}", self.name))
                    .details(if details.is_empty() { stderr } else { details })
            }
            None => CniError::new(
                IO_FAILURE,
                format!("IPAM plugin {} {command} failed ({})", self.name, out.status),
            )
            .details(format!("{}{}", text.trim(), stderr)),
        })
    }

    /// The versions the plugin supports (`VERSION`), remembered when there is a cache.
    pub fn versions(&self, cni_version: &str) -> Result<Vec<String>> {
        let id = identity(&self.path);
        let key = id.as_ref().map(Value::to_string);
        let mut cached: serde_json::Map<String, Value> = self
            .cache
            .as_ref()
            .and_then(|c| std::fs::read(c).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        if let Some(hit) = key.as_ref().and_then(|k| cached.get(k)) {
            return Ok(list(hit));
        }
        let stdin = serde_json::json!({"cniVersion": cni_version}).to_string();
        let v = self.exec("VERSION", stdin.as_bytes())?;
        let supported = v.get("supportedVersions").cloned().unwrap_or(Value::Null);
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            // Best effort: a cache that cannot be written only costs the next run a VERSION.
            cached.retain(|_, v| v.is_array());
            cached.insert(key, supported.clone());
            let tmp = cache.with_extension(format!("{}.tmp", std::process::id()));
            let bytes = serde_json::to_vec(&cached).expect("JSON serializes");
            if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, cache).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(list(&supported))
    }

    /// The configuration to give the plugin: `conf` with `cniVersion` lowered to the newest
    /// version both sides support, at most `min_version` or more; `None` when there is none
    /// (e.g. GC with a plugin that predates spec 1.1).
    pub fn stdin_for(&self, conf: &NetConf, min_version: &str) -> Result<Option<Vec<u8>>> {
        let theirs = self.versions(&conf.cni_version)?;
        let version = SUPPORTED_VERSIONS
            .iter()
            .rev()
            .filter(|v| **v <= conf.cni_version.as_str() && **v >= min_version)
            .find(|v| theirs.iter().any(|t| t == *v));
        Ok(version.map(|v| {
            let mut raw = conf.raw.clone();
            raw["cniVersion"] = Value::String(v.to_string());
            serde_json::to_vec(&raw).expect("JSON serializes")
        }))
    }

    fn stdin_or_incompatible(&self, conf: &NetConf) -> Result<Vec<u8>> {
        self.stdin_for(conf, SUPPORTED_VERSIONS[0])?.ok_or_else(|| {
            CniError::new(
                crate::error::INCOMPATIBLE_VERSION,
                format!(
                    "IPAM plugin {} supports none of the versions {}",
                    self.name,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )
        })
    }

    /// Starts `ADD` (the addresses for the attachment), so that it runs while the caller does
    /// other work.
    pub fn start_add(&self, conf: &NetConf) -> Result<Running> {
        let stdin = self.stdin_or_incompatible(conf)?;
        self.start("ADD", &stdin)
    }

    /// The addresses an `ADD` started with [`Ipam::start_add`] assigned.
    pub fn finish_add(&self, running: Running) -> Result<IpamResult> {
        IpamResult::parse(&self.wait(running)?)
    }

    /// `DEL`: releases the attachment's addresses (idempotent in the plugin).
    pub fn del(&self, conf: &NetConf) -> Result<()> {
        self.finish_del(self.start_del(conf)?)
    }

    /// Starts `DEL`, so that it runs while the caller does other work (host-local reads every
    /// reservation of the network to find the attachment's: 5-10 ms at 1 000 pods).
    pub fn start_del(&self, conf: &NetConf) -> Result<Running> {
        let stdin = self.stdin_or_incompatible(conf)?;
        self.start("DEL", &stdin)
    }

    /// Waits for a `DEL` started with [`Ipam::start_del`].
    pub fn finish_del(&self, running: Running) -> Result<()> {
        self.wait(running).map(drop)
    }

    /// `CHECK`, with `prevResult` in the configuration.
    pub fn check(&self, conf: &NetConf) -> Result<()> {
        let stdin = self.stdin_or_incompatible(conf)?;
        self.exec("CHECK", &stdin).map(drop)
    }

    /// A spec 1.1 verb (`GC`, `STATUS`); skipped (`Ok(false)`) when the plugin predates 1.1.
    pub fn v11(&self, conf: &NetConf, command: &'static str) -> Result<bool> {
        match self.stdin_for(conf, "1.1.0")? {
            Some(stdin) => self.exec(command, &stdin).map(|_| true),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_results_parse() {
        let v = serde_json::json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "10.244.1.2/24", "gateway": "10.244.1.1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.244.1.254"}],
            "dns": {}
        });
        let r = IpamResult::parse(&v).unwrap();
        assert_eq!(r.ips[0].cidr(), "10.244.1.2/24");
        assert_eq!(r.ips[0].gateway, Some("10.244.1.1".parse().unwrap()));
        assert_eq!(
            r.routes[1].to_json(),
            serde_json::json!({"dst": "10.96.0.0/12", "gw": "10.244.1.254"})
        );
        assert!(r.dns.is_none());
        assert!(IpamResult::parse(&serde_json::json!({"ips": [{"address": "x"}]})).is_err());
        assert_eq!(parse_cidr("fd00::1/64"), Some(("fd00::1".parse().unwrap(), 64)));
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
    }
}
