//! The CNI error result: `{"cniVersion", "code", "msg", "details"}` on stdout, non-zero exit.

use serde_json::json;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist (here: the network namespace is missing).
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...).
pub const INVALID_ENV: u32 = 4;
/// I/O failure (netlink, running the IPAM plugin, the daemon's socket).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content (stdin is not JSON, an IPAM result that does not parse).
pub const DECODE: u32 = 6;
/// Invalid network configuration (a field out of range or of the wrong type).
pub const INVALID_CONFIG: u32 = 7;
/// Try again later: vswitchd is not running, or not ready.
pub const TRY_AGAIN: u32 = 11;
/// STATUS: the plugin cannot serve ADD (vswitchd does not answer).
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: the IPAM plugin is not available.
pub const IPAM_NOT_AVAILABLE: u32 = 51;
/// Plugin-specific: CHECK found the attachment not as it should be (the message says what).
pub const CHECK_FAILED: u32 = 100;
/// Plugin-specific: vswitchd refused the attachment (the message is the daemon's).
pub const SWITCH_REFUSED: u32 = 101;

/// A failure, as the CNI spec reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The spec's error code (1-99 well-known, 100+ ours).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details, possibly empty.
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`, no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// The same error with `details`.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The JSON printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, CniError>;
