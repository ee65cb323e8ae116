//! Flow rules, control side: `[[flow]]` in the configuration and `GET/POST/DELETE /v1/flows`.
//!
//! A rule ([`FlowRule`], the same type on the wire and in the file) is checked field by field
//! ([`validate`], part of [`Config::validate`]: errors read `flow[2] ("no-icmp").vlan: ...`),
//! with the whole set: names unique, no two rules with the same match and priority (which one
//! acts would be arbitrary). A change through the API is made on a copy of the configuration,
//! validated whole and applied like a reload (a new snapshot), or refused with the running
//! rules unchanged. The compiled table ([`crate::tables::acl`]) goes into the snapshot; each
//! rule's counters survive recompiles while the rule itself does not change.
//!
//! ```toml
//! [[flow]]
//! name = "no-icmp-from-a"
//! priority = 100
//! in_port = "pod-a"
//! proto = "icmp"
//! action = "drop"
//! ```

use std::sync::Arc;

use vswitch_api::{ApiError, CachedFlow, FlowRule, FlowRuleInfo, Reply, Response};

use super::config::Config;
use super::daemon::Daemon;
use crate::packet::Verdict;
use crate::tables::acl::{AclTable, Action, Match, Meter, Rule, RuleCounters, MAX_RULES};
use crate::tables::route::Ipv4Net;
use crate::types::{vlan_is_valid, MacAddr, PortId};

/// A rule compiled for the table, before its counters are attached.
type Compiled = (Match, Action, Option<u16>, Option<Meter>);

/// Compiles `r`, resolving port names with `port_id`; the first problem as (field, message).
pub fn compile(
    r: &FlowRule,
    port_id: impl Fn(&str) -> Option<PortId>,
) -> Result<Compiled, (&'static str, String)> {
    let port = |field: &'static str, name: &Option<String>| -> Result<Option<PortId>, _> {
        name.as_deref()
            .map(|n| port_id(n).ok_or((field, format!("unknown port {n:?}"))))
            .transpose()
    };
    let vlan = |field: &'static str, v: Option<u16>| match v {
        Some(v) if !vlan_is_valid(v) => Err((field, format!("VLAN {v} is out of range 1..=4094"))),
        _ => Ok(v),
    };
    let mac = |field: &'static str, m: &Option<String>| -> Result<Option<u64>, _> {
        m.as_deref()
            .map(|t| {
                t.trim()
                    .parse::<MacAddr>()
                    .map(|m| m.to_u64())
                    .map_err(|_| (field, format!("{t:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
            })
            .transpose()
    };
    let net = |field: &'static str, n: &Option<String>| -> Result<Option<(u32, u32)>, _> {
        n.as_deref()
            .map(|t| {
                t.trim()
                    .parse::<Ipv4Net>()
                    .map(|n| (n.addr_u32(), n.mask()))
                    .map_err(|e| (field, format!("{t:?}: {e}")))
            })
            .transpose()
    };
    if r.name.trim().is_empty() || r.name.contains('/') {
        return Err(("name", format!("{:?} is empty or holds a '/'", r.name)));
    }
    let proto = match r.proto.as_deref().map(str::trim) {
        None => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some(t) => Some(t.parse::<u8>().map_err(|_| {
            ("proto", format!("{t:?} is not tcp, udp, icmp or a protocol number 0..=255"))
        })?),
    };
    if (r.src_port.is_some() || r.dst_port.is_some()) && !matches!(proto, Some(6 | 17)) {
        let field = if r.src_port.is_some() { "src_port" } else { "dst_port" };
        return Err((field, "a port match needs proto tcp or udp".into()));
    }
    let ip_match = r.src_ip.is_some() || r.dst_ip.is_some() || proto.is_some();
    if ip_match && r.ethertype.is_some_and(|e| e != 0x0800) {
        return Err((
            "ethertype",
            format!(
                "{:#06x} contradicts the IPv4 fields (src_ip, dst_ip, proto)",
                r.ethertype.unwrap_or(0)
            ),
        ));
    }
    let m = Match {
        in_port: port("in_port", &r.in_port)?,
        vlan: vlan("vlan", r.vlan)?,
        src_mac: mac("src_mac", &r.src_mac)?,
        dst_mac: mac("dst_mac", &r.dst_mac)?,
        ethertype: r.ethertype,
        src_ip: net("src_ip", &r.src_ip)?,
        dst_ip: net("dst_ip", &r.dst_ip)?,
        proto,
        src_port: r.src_port,
        dst_port: r.dst_port,
    };
    let action = match r.action.trim() {
        "drop" | "normal" if r.output.is_some() => {
            return Err((
                "output",
                format!("only action \"output\" takes a port, not {:?}", r.action),
            ))
        }
        "drop" => Action::Drop,
        "normal" => Action::Normal,
        "output" => match port("output", &r.output)? {
            Some(p) => Action::Output(p),
            None => return Err(("output", "action \"output\" needs the port to send to".into())),
        },
        other => {
            return Err(("action", format!("{other:?} is not \"drop\", \"normal\" or \"output\"")))
        }
    };
    let set_vlan = vlan("set_vlan", r.set_vlan)?;
    for (field, v) in [("meter_pps", r.meter_pps), ("meter_bps", r.meter_bps)] {
        if v == Some(0) {
            return Err((field, "0 would drop everything; use action \"drop\"".into()));
        }
    }
    let meter = (r.meter_pps.is_some() || r.meter_bps.is_some())
        .then(|| Meter { bps: r.meter_bps.unwrap_or(0), pps: r.meter_pps.unwrap_or(0) });
    Ok((m, action, set_vlan, meter))
}

/// Checks every `[[flow]]` of `cfg`, reporting each problem through `err(field, message)`.
pub fn validate(cfg: &Config, err: &mut impl FnMut(String, String)) {
    let port_id = |name: &str| cfg.ports.iter().position(|p| p.name == name).map(|i| i as PortId);
    if cfg.flows.len() > MAX_RULES {
        err("flow".into(), format!("{} rules, more than {MAX_RULES}", cfg.flows.len()));
    }
    let mut seen: Vec<(&str, u16, Match)> = Vec::new();
    for (i, r) in cfg.flows.iter().enumerate() {
        let at = |f: &str| format!("flow[{i}] ({:?}).{f}", r.name);
        if cfg.flows[..i].iter().any(|o| o.name == r.name) {
            err(at("name"), "used by an earlier rule".into());
            continue;
        }
        match compile(r, port_id) {
            Err((field, msg)) => err(at(field), msg),
            Ok((m, ..)) => {
                if let Some((other, ..)) =
                    seen.iter().find(|(_, p, om)| *p == r.priority && *om == m)
                {
                    err(
                        at("priority"),
                        format!("rule {other:?} has the same match and priority {}", r.priority),
                    );
                }
                seen.push((&r.name, r.priority, m));
            }
        }
    }
}

/// The rule table of `cfg`, with each rule's counters from `counters`; rules that no longer
/// compile (a port they name was removed since) are left out, and logged.
pub fn acl_table(
    cfg: &Config,
    port_id: impl Fn(&str) -> Option<PortId>,
    mut counters: impl FnMut(&FlowRule) -> Arc<RuleCounters>,
) -> Option<Arc<AclTable>> {
    if cfg.flows.is_empty() {
        return None;
    }
    let mut rules = Vec::new();
    for r in &cfg.flows {
        match compile(r, &port_id) {
            Ok((m, action, set_vlan, meter)) => rules.push(Rule {
                name: r.name.clone(),
                priority: r.priority,
                m,
                action,
                set_vlan,
                meter,
                counters: counters(r),
            }),
            Err((field, msg)) => {
                tracing::warn!(rule = %r.name, "flow rule left out: {field}: {msg}");
            }
        }
    }
    Some(Arc::new(AclTable::new(rules)))
}

/// How a cached verdict reads in `show flows`.
fn verdict_text(v: Verdict, port_name: impl Fn(PortId) -> String) -> String {
    match v {
        Verdict::Output(p) => format!("output:{}", port_name(p)),
        Verdict::Flood => "flood".into(),
        Verdict::Drop(r) => format!("drop:{}", r.name()),
        Verdict::Tunnel(peer) => format!("tunnel:{peer}"),
        Verdict::Continue | Verdict::Held | Verdict::Consumed => format!("{v:?}").to_lowercase(),
    }
}

impl<const N: usize> Daemon<N> {
    /// `GET /v1/flows`: the rules in evaluation order with their counters.
    pub(super) fn flows_info(&self) -> Vec<FlowRuleInfo> {
        let snap = self.snapshot();
        let compiled = snap.acl();
        let mut out: Vec<FlowRuleInfo> = self
            .config()
            .flows
            .iter()
            .map(|r| {
                let c = compiled
                    .and_then(|t| t.rules().iter().find(|c| c.name == r.name))
                    .map_or((0, 0, 0), |c| c.counters.get());
                FlowRuleInfo { rule: r.clone(), packets: c.0, bytes: c.1, meter_drops: c.2 }
            })
            .collect();
        out.sort_by(|a, b| {
            b.rule.priority.cmp(&a.rule.priority).then_with(|| a.rule.name.cmp(&b.rule.name))
        });
        out
    }

    /// `POST /v1/flows`: adds the rule, or replaces the one of its name; validated with the
    /// whole configuration and applied live, or refused whole.
    pub(super) fn add_flow(&mut self, rule: FlowRule) -> Response {
        let mut cfg = self.config().clone();
        let name = rule.name.clone();
        let replaced = cfg.flows.iter().position(|r| r.name == name);
        match replaced {
            Some(i) if cfg.flows[i] == rule => {
                return Ok(Reply::Done { message: format!("flow rule {name:?} unchanged") })
            }
            Some(i) => cfg.flows[i] = rule,
            None => cfg.flows.push(rule),
        }
        self.apply_api(cfg)?;
        let verb = if replaced.is_some() { "replaced" } else { "added" };
        Ok(Reply::Done { message: format!("flow rule {name:?} {verb}") })
    }

    /// `DELETE /v1/flows/{name}`.
    pub(super) fn del_flow(&mut self, name: &str) -> Response {
        let mut cfg = self.config().clone();
        let before = cfg.flows.len();
        cfg.flows.retain(|r| r.name != name);
        if cfg.flows.len() == before {
            return Err(ApiError::not_found(format!("no flow rule {name:?}")));
        }
        self.apply_api(cfg)?;
        Ok(Reply::Done { message: format!("flow rule {name:?} removed") })
    }

    /// `GET /v1/flow-cache`: what every worker last published of its L2 flow cache.
    pub(super) fn flow_cache_info(&self) -> Vec<CachedFlow> {
        let name =
            |id: PortId| self.port_section(id).map_or_else(|| format!("#{id}"), |s| s.name.clone());
        let mut out: Vec<CachedFlow> = self
            .flow_reports()
            .into_iter()
            .map(|(worker, f)| CachedFlow {
                worker,
                in_port: name(f.in_port),
                vlan: f.vlan,
                src_mac: f.src.to_string(),
                dst_mac: f.dst.to_string(),
                action: verdict_text(f.verdict, name),
                hits: f.hits,
            })
            .collect();
        out.sort_by(|a, b| {
            (a.worker, &a.in_port, a.vlan, &a.src_mac, &a.dst_mac)
                .cmp(&(b.worker, &b.in_port, b.vlan, &b.src_mac, &b.dst_mac))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: &str = r#"
[[port]]
name = "pod-a"
interface = "lo"
vlan = 10

[[port]]
name = "pod-b"
interface = "lo2"
vlan = 10
"#;

    fn errors(flows: &str) -> Vec<String> {
        let text = format!("{PORTS}{flows}");
        match Config::parse(&text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_rule_set_compiles_in_priority_order() {
        let text = format!(
            "{PORTS}{}",
            r#"
[[flow]]
name = "no-icmp"
priority = 100
in_port = "pod-a"
proto = "icmp"
action = "drop"

[[flow]]
name = "web"
priority = 200
dst_ip = "10.0.0.0/24"
proto = "tcp"
dst_port = 80
action = "output"
output = "pod-b"
set_vlan = 20
meter_pps = 1000
"#
        );
        let cfg = Config::parse(&text, "t.toml").expect("valid");
        let id = |n: &str| cfg.ports.iter().position(|p| p.name == n).map(|i| i as PortId);
        let t = acl_table(&cfg, id, |_| Arc::default()).unwrap();
        let r = &t.rules()[0];
        assert_eq!(r.name, "web");
        assert_eq!(r.action, Action::Output(1));
        assert_eq!(r.m.dst_ip, Some((0x0a00_0000, 0xffff_ff00)));
        assert_eq!((r.m.proto, r.m.dst_port, r.set_vlan), (Some(6), Some(80), Some(20)));
        assert_eq!(r.meter, Some(Meter { bps: 0, pps: 1000 }));
        assert_eq!(t.rules()[1].m.in_port, Some(0));
        assert!(cfg.snapshot(1).acl().is_some());
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field_and_value() {
        let one = |body: &str| errors(&format!("[[flow]]\nname = \"r\"\n{body}\n"));
        assert_eq!(
            one("in_port = \"pod-z\"\naction = \"drop\""),
            ["flow[0] (\"r\").in_port: unknown port \"pod-z\""]
        );
        assert_eq!(
            one("vlan = 4095\naction = \"drop\""),
            ["flow[0] (\"r\").vlan: VLAN 4095 is out of range 1..=4094"]
        );
        assert_eq!(
            one("dst_port = 80\naction = \"drop\""),
            ["flow[0] (\"r\").dst_port: a port match needs proto tcp or udp"]
        );
        assert_eq!(
            one("action = \"output\""),
            ["flow[0] (\"r\").output: action \"output\" needs the port to send to"]
        );
        assert_eq!(
            one("action = \"reject\""),
            ["flow[0] (\"r\").action: \"reject\" is not \"drop\", \"normal\" or \"output\""]
        );
        assert!(one("src_ip = \"10.0.0.1/24\"\naction = \"drop\"")[0]
            .starts_with("flow[0] (\"r\").src_ip: \"10.0.0.1/24\""));
        assert!(
            one("src_mac = \"zz\"\naction = \"drop\"")[0].contains("src_mac: \"zz\" is not a MAC")
        );
        assert!(one("proto = \"tcp\"\nethertype = 2054\naction = \"drop\"")[0]
            .contains(".ethertype: 0x0806"));
        let dup = errors(
            "[[flow]]\nname = \"a\"\nproto = \"icmp\"\naction = \"drop\"\n\
             [[flow]]\nname = \"b\"\nproto = \"icmp\"\naction = \"normal\"\n\
             [[flow]]\nname = \"a\"\naction = \"drop\"\n",
        );
        assert_eq!(
            dup,
            [
                "flow[1] (\"b\").priority: rule \"a\" has the same match and priority 0",
                "flow[2] (\"a\").name: used by an earlier rule",
            ]
        );
    }
}
