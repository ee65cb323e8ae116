//! What the runtime hands the plugin: the `CNI_*` environment and the network configuration on
//! stdin, checked here so every later step can trust them.

use std::path::PathBuf;

use serde_json::Value;
use vswitch_api::Bandwidth;

use crate::error::{
    CniError, Result, DECODE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, UNSUPPORTED_FIELD,
};

/// The spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The newest, used when the input names none.
pub const LATEST_VERSION: &str = "1.1.0";
/// The default MTU of the pod's interface: room for an overlay's encapsulation.
pub const DEFAULT_MTU: u16 = 1450;
/// The default access VLAN.
pub const DEFAULT_VLAN: u16 = 1;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Print the supported versions.
    Version,
    /// Report readiness (spec 1.1).
    Status,
    /// Remove attachments not in a list of valid ones (spec 1.1).
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The `CNI_*` environment, with the variables `command` needs checked present and well formed.
#[derive(Debug, Clone)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (required by ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (required by ADD and CHECK; optional for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (required by ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, split into key/value pairs.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

fn invalid_env(msg: String) -> CniError {
    CniError::new(INVALID_ENV, msg)
}

impl Env {
    /// Reads the process environment through `get` (so tests can feed it).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let raw = get("CNI_COMMAND").ok_or_else(|| invalid_env("CNI_COMMAND is not set".into()))?;
        let command = Command::parse(&raw).ok_or_else(|| {
            invalid_env(format!(
                "unknown CNI_COMMAND {raw:?} (expected ADD, DEL, CHECK, VERSION, STATUS or GC)"
            ))
        })?;
        let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |key: &str| -> Result<String> {
            match get(key) {
                Some(v) => Ok(v),
                None if attachment => {
                    Err(invalid_env(format!("{key} is not set ({raw} needs it)")))
                }
                None => Ok(String::new()),
            }
        };
        let container_id = required("CNI_CONTAINERID")?;
        if attachment {
            check_container_id(&container_id)?;
        }
        let ifname = required("CNI_IFNAME")?;
        if attachment {
            check_ifname(&ifname)?;
        }
        let netns = get("CNI_NETNS");
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(invalid_env(format!("CNI_NETNS is not set ({raw} needs it)")));
        }
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Env { command, container_id, netns, ifname, args, path })
    }

    /// The value of `key` in `CNI_ARGS`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The spec: alphanumerics plus `_`, `.` and `-`, starting with an alphanumeric.
fn check_container_id(id: &str) -> Result<()> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid_env(format!(
            "CNI_CONTAINERID {id:?} is invalid (letters, digits, '_', '.', '-' only)"
        )))
    }
}

/// Linux: at most 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
fn check_ifname(name: &str) -> Result<()> {
    let ok = name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid_env(format!("CNI_IFNAME {name:?} is not a valid interface name")))
    }
}

fn parse_args(raw: &str) -> Result<Vec<(String, String)>> {
    raw.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid_env(format!("CNI_ARGS entry {kv:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// The `ipam` section.
#[derive(Debug, Clone)]
pub struct IpamConf {
    /// The IPAM plugin's binary name, looked up in `CNI_PATH`.
    pub plugin: String,
}

/// The network configuration, checked. `raw` is kept whole for the IPAM plugin.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// The configuration as given.
    pub raw: Value,
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `socket`: vswitchd's API socket.
    pub socket: PathBuf,
    /// `vlan`: the pod's access VLAN, 1..=4094.
    pub vlan: u16,
    /// `mtu`, 68..=9216.
    pub mtu: u16,
    /// `ipam`, if any.
    pub ipam: Option<IpamConf>,
    /// `runtimeConfig.mac`.
    pub mac: Option<[u8; 6]>,
    /// `runtimeConfig.cgroupPath`.
    pub cgroup_path: Option<String>,
    /// `runtimeConfig.bandwidth`.
    pub bandwidth: Option<Bandwidth>,
    /// `dns`, copied into the result.
    pub dns: Option<Value>,
    /// `prevResult`, in chains and for CHECK.
    pub prev_result: Option<Value>,
    /// How the pod's interface reaches the switch: `portType` in the configuration (`tap`
    /// when absent), overridden per pod by the annotation [`PORT_TYPE_ANNOTATION`] when the
    /// runtime passes pod annotations (`runtimeConfig["io.kubernetes.cri.pod-annotations"]`,
    /// containerd), or by `VSWITCH_PORT_TYPE` in `CNI_ARGS`.
    pub port_type: PortType,
}

/// The pod annotations for QoS beyond the `bandwidth` capability: a guaranteed egress rate
/// (bits/s, plain digits or with a k/M/G suffix), a borrowing priority (0..=7), an egress
/// packets-per-second limit, and the group class to hang under.
pub const EGRESS_GUARANTEE_ANNOTATION: &str = "vswitch.io/egress-guaranteed-rate";
pub const EGRESS_PRIORITY_ANNOTATION: &str = "vswitch.io/egress-priority";
pub const EGRESS_PPS_ANNOTATION: &str = "vswitch.io/egress-pps";
/// The group class (in the tree of the uplink's root) the pod's egress class hangs under.
pub const EGRESS_GROUP_ANNOTATION: &str = "vswitch.io/egress-qos-group";

/// A rate like Kubernetes' bandwidth annotations write it: digits with an optional k, M or G
/// (decimal), e.g. "10M".
fn parse_rate(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().filter(|v| *v > 0)?.checked_mul(mul)
}

/// The QoS annotations, as the extension fields of a [`Bandwidth`]; errors name the annotation.
fn qos_annotations(a: &serde_json::Map<String, Value>) -> Result<Bandwidth> {
    let text = |key: &str| -> Result<Option<&str>> {
        match a.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(invalid(format!("annotation {key} must be a string, got {v}"))),
        }
    };
    let rate = |key: &str| -> Result<Option<u64>> {
        text(key)?
            .map(|s| {
                parse_rate(s).ok_or_else(|| {
                    invalid(format!("annotation {key} {s:?} is not a positive rate like \"10M\""))
                })
            })
            .transpose()
    };
    let priority = text(EGRESS_PRIORITY_ANNOTATION)?
        .map(|s| {
            s.parse::<u8>().ok().filter(|p| *p <= 7).ok_or_else(|| {
                invalid(format!("annotation {EGRESS_PRIORITY_ANNOTATION} {s:?} is not 0..=7"))
            })
        })
        .transpose()?;
    let group = text(EGRESS_GROUP_ANNOTATION)?
        .map(|s| {
            let ok = !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control);
            ok.then(|| s.to_string()).ok_or_else(|| {
                invalid(format!(
                    "annotation {EGRESS_GROUP_ANNOTATION} {s:?} is not a class name (1 to 64 characters)"
                ))
            })
        })
        .transpose()?;
    Ok(Bandwidth {
        egress_guaranteed_rate: rate(EGRESS_GUARANTEE_ANNOTATION)?,
        egress_priority: priority,
        egress_pps: rate(EGRESS_PPS_ANNOTATION)?,
        egress_group: group,
        ..Bandwidth::default()
    })
}

/// The annotation that picks a pod's port type.
pub const PORT_TYPE_ANNOTATION: &str = "vswitch.io/port-type";

/// How a pod is wired to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortType {
    /// A veth pair whose host end is an AF_XDP port: the fastest for small packets (1.6x the
    /// kernel bridge's 106-byte rate); TCP segments are cut to the MTU, and every socket's bind
    /// costs the kernel a descriptor per frame of the worker's pool.
    Afxdp,
    /// The switch creates the pod's interface as a TAP device with TSO and checksum offload
    /// (the default): 64 KB TCP segments cross the switch whole, and a pod starts faster and
    /// costs the kernel less memory than an AF_XDP one (README, "Wiring pods").
    #[default]
    Tap,
}

impl PortType {
    /// Parses `afxdp` or `tap`; `whence` names the source in the error.
    pub fn parse(s: &str, whence: &str) -> Result<PortType> {
        match s {
            "afxdp" => Ok(PortType::Afxdp),
            "tap" => Ok(PortType::Tap),
            other => Err(invalid(format!("{whence} {other:?} is not \"afxdp\" or \"tap\""))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PortType::Afxdp => "afxdp",
            PortType::Tap => "tap",
        }
    }
}

fn invalid(msg: String) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

fn opt_str<'a>(v: &'a Value, key: &str, whence: &str) -> Result<Option<&'a str>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!("{whence}{key} must be a string, got {other}"))),
    }
}

fn opt_int(v: &Value, key: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u16>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => match n.as_u64() {
            Some(x) if range.contains(&x) => Ok(Some(x as u16)),
            _ => Err(invalid(format!(
                "{key} {n} is out of range {}..={}",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or `-` separated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The `cniVersion` of `stdin`, if it parses and has one: for error output, before (or
/// despite) a full parse.
pub fn version_hint(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS.contains(&s).then(|| s.to_string())
}

impl NetConf {
    /// Parses and checks the configuration on stdin.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(DECODE, "the network configuration on stdin is not valid JSON")
                .details(e.to_string())
        })?;
        if !raw.is_object() {
            return Err(CniError::new(DECODE, "the network configuration must be a JSON object"));
        }
        let cni_version = opt_str(&raw, "cniVersion", "")?
            .ok_or_else(|| invalid("cniVersion is missing".into()))?
            .to_string();
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {cni_version:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        opt_str(&raw, "name", "")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("name is missing".into()))?;
        opt_str(&raw, "type", "")?.ok_or_else(|| invalid("type is missing".into()))?;
        let socket =
            PathBuf::from(opt_str(&raw, "socket", "")?.unwrap_or(vswitch_api::DEFAULT_SOCKET));
        let vlan = opt_int(&raw, "vlan", 1..=4094)?.unwrap_or(DEFAULT_VLAN);
        let mtu = opt_int(&raw, "mtu", 68..=9216)?.unwrap_or(DEFAULT_MTU);
        let ipam = match raw.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(ipam @ Value::Object(_)) => {
                let plugin = opt_str(ipam, "type", "ipam.")?
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid("ipam.type is missing".into()))?;
                if plugin.contains('/') || plugin == "." || plugin == ".." {
                    return Err(invalid(format!("ipam.type {plugin:?} is not a plugin name")));
                }
                Some(IpamConf { plugin: plugin.to_string() })
            }
            Some(other) => return Err(invalid(format!("ipam must be an object, got {other}"))),
        };
        let rc = match raw.get("runtimeConfig") {
            None | Some(Value::Null) => Value::Null,
            Some(rc @ Value::Object(_)) => rc.clone(),
            Some(other) => {
                return Err(invalid(format!("runtimeConfig must be an object, got {other}")))
            }
        };
        let mac = opt_str(&rc, "mac", "runtimeConfig.")?
            .map(|m| {
                parse_mac(m)
                    .ok_or_else(|| invalid(format!("runtimeConfig.mac {m:?} is not a MAC address")))
            })
            .transpose()?;
        if mac.is_some_and(|m| m[0] & 1 == 1) {
            return Err(invalid("runtimeConfig.mac must be a unicast address".into()));
        }
        // runtimeConfig.ips reach IPAM in the configuration itself; only checked here.
        let ips: Vec<String> = match rc.get("ips") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|ip| {
                    ip.as_str().map(str::to_string).ok_or_else(|| {
                        invalid(format!("runtimeConfig.ips must hold strings, got {ip}"))
                    })
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(invalid(format!("runtimeConfig.ips must be a list, got {other}")))
            }
        };
        if !ips.is_empty() && ipam.is_none() {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                "runtimeConfig.ips needs an ipam section to assign them",
            ));
        }
        let cgroup_path = opt_str(&rc, "cgroupPath", "runtimeConfig.")?.map(str::to_string);
        let bandwidth = match rc.get("bandwidth") {
            None | Some(Value::Null) => None,
            Some(bw @ Value::Object(_)) => {
                let field = |key: &str| -> Result<Option<u64>> {
                    match bw.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(n) => n.as_u64().map(Some).ok_or_else(|| {
                            invalid(format!(
                                "runtimeConfig.bandwidth.{key} must be a non-negative integer, \
                                 got {n}"
                            ))
                        }),
                    }
                };
                Some(Bandwidth {
                    ingress_rate: field("ingressRate")?,
                    ingress_burst: field("ingressBurst")?,
                    egress_rate: field("egressRate")?,
                    egress_burst: field("egressBurst")?,
                    ..Bandwidth::default()
                })
            }
            Some(other) => {
                return Err(invalid(format!(
                    "runtimeConfig.bandwidth must be an object, got {other}"
                )))
            }
        };
        let annotations = match rc.get("io.kubernetes.cri.pod-annotations") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(invalid(format!(
                    "runtimeConfig[\"io.kubernetes.cri.pod-annotations\"] must be an object, got {other}"
                )))
            }
        };
        let mut bandwidth = bandwidth;
        let qos = qos_annotations(&annotations)?;
        if qos != Bandwidth::default() {
            let b = bandwidth.get_or_insert_with(Bandwidth::default);
            b.egress_guaranteed_rate = qos.egress_guaranteed_rate;
            b.egress_priority = qos.egress_priority;
            b.egress_pps = qos.egress_pps;
            b.egress_group = qos.egress_group;
        }
        let mut port_type = match opt_str(&raw, "portType", "")? {
            Some(t) => PortType::parse(t, "portType")?,
            None => PortType::default(),
        };
        if let Some(v) = annotations.get(PORT_TYPE_ANNOTATION) {
            let t = v.as_str().ok_or_else(|| {
                invalid(format!("annotation {PORT_TYPE_ANNOTATION} must be a string, got {v}"))
            })?;
            port_type = PortType::parse(t, &format!("annotation {PORT_TYPE_ANNOTATION}"))?;
        }
        let dns = raw.get("dns").filter(|d| !d.is_null()).cloned();
        if dns.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(invalid("dns must be an object".into()));
        }
        let prev_result = raw.get("prevResult").filter(|p| !p.is_null()).cloned();
        if prev_result.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(invalid("prevResult must be an object".into()));
        }
        Ok(NetConf {
            cni_version,
            socket,
            vlan,
            mtu,
            ipam,
            mac,
            cgroup_path,
            bandwidth,
            dns,
            prev_result,
            port_type,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::parse(|k| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn env_needs_what_the_command_needs() {
        assert_eq!(env(&[]).unwrap_err().code, INVALID_ENV);
        assert_eq!(env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code, INVALID_ENV);
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert!(e.msg.contains("CNI_CONTAINERID"), "{e}");
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")])
            .unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        let del =
            env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")])
                .unwrap();
        assert_eq!(del.netns, None);
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "a/b"), ("CNI_IFNAME", "eth0")])
            .unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "a-very-long-interface-name"),
        ])
        .unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
    }

    #[test]
    fn cni_args_are_split() {
        let e = env(&[
            ("CNI_COMMAND", "STATUS"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"),
        ])
        .unwrap();
        assert_eq!(e.arg("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(e.arg("K8S_POD_UID"), None);
        let bad = env(&[("CNI_COMMAND", "STATUS"), ("CNI_ARGS", "novalue")]).unwrap_err();
        assert_eq!(bad.code, INVALID_ENV);
    }

    #[test]
    fn port_type_from_the_configuration_or_the_pod_annotation() {
        let base = r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni""#;
        let c = NetConf::parse(format!("{base}}}").as_bytes()).unwrap();
        assert_eq!(c.port_type, PortType::Tap, "tap by default");
        let c = NetConf::parse(format!(r#"{base},"portType":"afxdp"}}"#).as_bytes()).unwrap();
        assert_eq!(c.port_type, PortType::Afxdp);
        let c = NetConf::parse(format!(r#"{base},"portType":"tap"}}"#).as_bytes()).unwrap();
        assert_eq!(c.port_type, PortType::Tap);
        let ann = |t: &str| {
            format!(
                r#""runtimeConfig":{{"io.kubernetes.cri.pod-annotations":{{"vswitch.io/port-type":"{t}"}}}}"#
            )
        };
        let c = NetConf::parse(format!("{base},{}}}", ann("afxdp")).as_bytes()).unwrap();
        assert_eq!(c.port_type, PortType::Afxdp, "the annotation picks AF_XDP");
        let c = NetConf::parse(format!(r#"{base},"portType":"tap",{}}}"#, ann("afxdp")).as_bytes())
            .unwrap();
        assert_eq!(c.port_type, PortType::Afxdp, "the annotation wins");
        let c = NetConf::parse(format!(r#"{base},"portType":"afxdp",{}}}"#, ann("tap")).as_bytes())
            .unwrap();
        assert_eq!(c.port_type, PortType::Tap, "the annotation wins");
        let e = NetConf::parse(format!(r#"{base},"portType":"vhost"}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        assert!(e.msg.contains("portType") && e.msg.contains("vhost"), "{e}");
        let bad =
            r#""runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"vswitch.io/port-type":"x"}}"#;
        let e = NetConf::parse(format!("{base},{bad}}}").as_bytes()).unwrap_err();
        assert!(e.msg.contains("vswitch.io/port-type") && e.msg.contains("\"x\""), "{e}");
    }

    #[test]
    fn qos_annotations_extend_the_bandwidth_capability() {
        let ann = r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni","runtimeConfig":{
            "bandwidth":{"egressRate":30000000},
            "io.kubernetes.cri.pod-annotations":{"vswitch.io/egress-guaranteed-rate":"10M",
              "vswitch.io/egress-priority":"2","vswitch.io/egress-pps":"50k",
              "vswitch.io/egress-qos-group":"team-a"}}}"#;
        let c = NetConf::parse(ann.as_bytes()).unwrap();
        let b = c.bandwidth.unwrap();
        assert_eq!(b.egress_rate, Some(30_000_000));
        assert_eq!(b.egress_guaranteed_rate, Some(10_000_000));
        assert_eq!(b.egress_priority, Some(2));
        assert_eq!(b.egress_pps, Some(50_000));
        assert_eq!(b.egress_group.as_deref(), Some("team-a"));
        for (key, bad) in [
            ("vswitch.io/egress-guaranteed-rate", "\"ten\""),
            ("vswitch.io/egress-priority", "\"9\""),
            ("vswitch.io/egress-pps", "\"0\""),
            ("vswitch.io/egress-qos-group", "\"\""),
            ("vswitch.io/egress-qos-group", "7"),
        ] {
            let text = format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni","runtimeConfig":{{"io.kubernetes.cri.pod-annotations":{{"{key}":{bad}}}}}}}"#
            );
            let e = NetConf::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_CONFIG);
            assert!(e.msg.contains(key), "{e}");
        }
    }

    #[test]
    fn config_defaults_and_checks() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch-cni"}"#).unwrap();
        assert_eq!((c.vlan, c.mtu), (1, 1450));
        assert_eq!(c.socket, PathBuf::from("/run/vswitch/vswitchd.sock"));
        assert!(c.ipam.is_none());
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{nope"), DECODE);
        assert_eq!(code(r#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#), INCOMPATIBLE_VERSION);
        assert_eq!(code(r#"{"cniVersion":"1.1.0","name":"n","type":"t","vlan":5000}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.1.0","name":"n","type":"t","vlan":"x"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.1.0","name":"n","type":"t","mtu":20}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.1.0","type":"t"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.1.0","name":"n","type":"t","ipam":{"x":1}}"#), 7);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","vlan":10,
                "ipam":{"type":"host-local"},
                "runtimeConfig":{"mac":"02:00:00:00:00:0a","cgroupPath":"/kubepods/x",
                  "bandwidth":{"ingressRate":1000,"egressBurst":2000}}}"#,
        )
        .unwrap();
        assert_eq!(c.vlan, 10);
        assert_eq!(c.ipam.unwrap().plugin, "host-local");
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 10]));
        let bw = c.bandwidth.unwrap();
        assert_eq!(
            (bw.ingress_rate, bw.egress_burst, bw.egress_rate),
            (Some(1000), Some(2000), None)
        );
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:00:00:00:ff"), Some([2, 0, 0, 0, 0, 255]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 255]), "02:00:00:00:00:ff");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The example network list in `config/` is what runtimes hand the plugin: each plugin
    /// entry, with the list's name and version, must parse.
    #[test]
    fn the_shipped_conflist_parses() {
        let text = include_str!("../../config/10-vswitch.conflist");
        let list: Value = serde_json::from_str(text).expect("valid JSON");
        let mut plugin = list["plugins"][0].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        plugin["name"] = list["name"].clone();
        let conf = NetConf::parse(plugin.to_string().as_bytes()).expect("valid plugin config");
        assert_eq!(conf.vlan, 1);
        assert_eq!(conf.socket, PathBuf::from("/run/vswitch/vswitchd.sock"));
        assert!(conf.ipam.is_some());
        assert_eq!(conf.port_type, PortType::Tap);
        let caps = &list["plugins"][0]["capabilities"];
        assert_eq!(
            caps["io.kubernetes.cri.pod-annotations"], true,
            "the per-pod port type and QoS annotations need the runtime to pass annotations"
        );
    }
}
