//! Whether the host firewall drops the services' ports: the input chains
//! of `nft -j list ruleset` (else `iptables-save` and `ip6tables-save`),
//! read for the simple rules that decide a TCP or UDP port (`tcp dport
//! 9000 drop`, `-p udp --dport 20001 -j REJECT`, sets and ranges), in
//! order, and the chain's policy. A rule with other conditions (a source,
//! an interface, a state) may drop some peers: a warning, not a failure.
//! Anything subtler (jumps to other chains) is not followed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::report::Check;
use crate::config::{Listener, Transport};

/// How long `nft` or `iptables-save` may take.
const PATIENCE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

/// One rule of an input chain that names destination ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// None: TCP and UDP (`th dport` without `meta l4proto`).
    pub transport: Option<Transport>,
    /// Inclusive ranges.
    pub ports: Vec<(u16, u16)>,
    /// `dport != ...`: every port but these.
    pub negated: bool,
    /// IPv4 and IPv6 it applies to.
    pub v4: bool,
    pub v6: bool,
    /// It has other conditions too (addresses, interfaces, states): it
    /// may apply to some peers only.
    pub partial: bool,
    pub verdict: Verdict,
    /// Where it is, as a person finds it.
    pub name: String,
    /// The command that deletes it.
    pub delete: String,
}

impl Rule {
    /// A rule not yet read: every transport and family, no port, no
    /// conditions; the parsers fill it in from its text.
    fn any() -> Self {
        Rule {
            transport: None,
            ports: Vec::new(),
            negated: false,
            v4: true,
            v6: true,
            partial: false,
            verdict: Verdict::Accept,
            name: String::new(),
            delete: String::new(),
        }
    }

    fn decides(&self, transport: Transport, port: u16, v4: bool) -> bool {
        let family = if v4 { self.v4 } else { self.v6 };
        let listed = self.ports.iter().any(|&(a, b)| (a..=b).contains(&port));
        family && self.transport.is_none_or(|t| t == transport) && listed != self.negated
    }
}

/// An input chain: its rules in order, and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub policy_drops: bool,
    pub v4: bool,
    pub v6: bool,
    pub rules: Vec<Rule>,
}

/// The input chains of `nft -j list ruleset`.
pub fn parse_nft(json: &str) -> Result<Vec<Chain>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = value["nftables"]
        .as_array()
        .ok_or("no \"nftables\" array")?;
    let mut chains: Vec<(String, String, String, Chain)> = Vec::new();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        if chain["hook"] != "input" {
            continue;
        }
        let text = |key: &str| chain[key].as_str().unwrap_or("").to_owned();
        let (v4, v6) = families(&text("family"));
        chains.push((
            text("family"),
            text("table"),
            text("name"),
            Chain {
                name: format!(
                    "nftables {} {} {}",
                    text("family"),
                    text("table"),
                    text("name")
                ),
                policy_drops: chain["policy"] == "drop",
                v4,
                v6,
                rules: Vec::new(),
            },
        ));
    }
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let key = |k: &str| rule[k].as_str().unwrap_or("").to_owned();
        let Some((family, table, name, chain)) = chains
            .iter_mut()
            .find(|(f, t, n, _)| *f == key("family") && *t == key("table") && *n == key("chain"))
        else {
            continue;
        };
        let handle = rule["handle"].as_u64().unwrap_or(0);
        let exprs = rule["expr"].as_array().map_or(&[][..], Vec::as_slice);
        if let Some(mut parsed) = nft_rule(exprs) {
            parsed.v4 = chain.v4;
            parsed.v6 = chain.v6;
            parsed.name = format!("{} rule handle {handle}", chain.name);
            parsed.delete = format!("sudo nft delete rule {family} {table} {name} handle {handle}");
            chain.rules.push(parsed);
        }
    }
    Ok(chains.into_iter().map(|(_, _, _, chain)| chain).collect())
}

/// IPv4 and IPv6, as an nftables family covers them.
fn families(family: &str) -> (bool, bool) {
    match family {
        "ip" => (true, false),
        "ip6" => (false, true),
        "inet" | "netdev" | "bridge" => (true, true),
        _ => (false, false),
    }
}

/// One rule's expressions; None when it names no port or has no verdict.
fn nft_rule(exprs: &[Value]) -> Option<Rule> {
    let mut rule = Rule::any();
    let (mut named_port, mut verdict) = (false, None);
    for expr in exprs {
        if let Some(m) = expr.get("match") {
            let (left, right) = (&m["left"], &m["right"]);
            let negated = m["op"] == "!=";
            if left["payload"]["field"] == "dport" {
                let protocol = left["payload"]["protocol"].as_str().unwrap_or("");
                match protocol {
                    "tcp" => rule.transport = Some(Transport::Tcp),
                    "udp" => rule.transport = Some(Transport::Udp),
                    "th" => {}
                    _ => rule.partial = true,
                }
                rule.ports = nft_ports(right)?;
                rule.negated = negated;
                named_port = true;
            } else if left["meta"]["key"] == "l4proto" && !negated {
                match right.as_str() {
                    Some("tcp") => rule.transport = Some(Transport::Tcp),
                    Some("udp") => rule.transport = Some(Transport::Udp),
                    _ => rule.partial = true,
                }
            } else {
                rule.partial = true;
            }
        } else if expr.get("drop").is_some() {
            verdict = Some(Verdict::Drop);
        } else if expr.get("reject").is_some() {
            verdict = Some(Verdict::Reject);
        } else if expr.get("accept").is_some() {
            verdict = Some(Verdict::Accept);
        } else if expr.get("counter").is_none() && expr.get("log").is_none() {
            rule.partial = true;
        }
    }
    rule.verdict = verdict?;
    named_port.then_some(rule)
}

/// `9000`, `{"set": [9000, {"range": [1, 2]}]}`, `{"range": [1, 2]}`.
fn nft_ports(right: &Value) -> Option<Vec<(u16, u16)>> {
    let one = |v: &Value| -> Option<(u16, u16)> {
        if let Some(port) = v.as_u64() {
            let port = u16::try_from(port).ok()?;
            return Some((port, port));
        }
        let range = v["range"].as_array()?;
        let end = |i: usize| range.get(i)?.as_u64().and_then(|p| u16::try_from(p).ok());
        Some((end(0)?, end(1)?))
    };
    match right["set"].as_array() {
        Some(set) => set.iter().map(one).collect(),
        None => Some(vec![one(right)?]),
    }
}

/// The INPUT chain of the filter table in `iptables-save` output (`v4`:
/// from iptables-save, else ip6tables-save).
pub fn parse_iptables_save(text: &str, v4: bool) -> Chain {
    let mut chain = Chain {
        name: format!("{} INPUT", if v4 { "iptables" } else { "ip6tables" }),
        policy_drops: false,
        v4,
        v6: !v4,
        rules: Vec::new(),
    };
    let mut filter = false;
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            filter = table == "filter";
        } else if !filter {
        } else if let Some(policy) = line.strip_prefix(":INPUT ") {
            chain.policy_drops = policy.starts_with("DROP");
        } else if let Some(spec) = line.strip_prefix("-A INPUT ") {
            if let Some(mut rule) = iptables_rule(spec) {
                let command = if v4 { "iptables" } else { "ip6tables" };
                rule.v4 = v4;
                rule.v6 = !v4;
                rule.name = format!("{command} rule `-A INPUT {spec}`");
                rule.delete = format!("sudo {command} -D INPUT {spec}");
                chain.rules.push(rule);
            }
        }
    }
    chain
}

/// One `-A INPUT` rule's options; None when it names no port or has no verdict.
fn iptables_rule(spec: &str) -> Option<Rule> {
    let mut rule = Rule::any();
    let (mut named_port, mut verdict, mut negate) = (false, None, false);
    let mut words = spec.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "!" => {
                negate = true;
                continue;
            }
            "-p" | "--protocol" => match words.next() {
                Some("tcp") => rule.transport = Some(Transport::Tcp),
                Some("udp") => rule.transport = Some(Transport::Udp),
                _ => rule.partial = true,
            },
            "-m" | "--match" => {
                words.next();
            }
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                rule.ports = iptables_ports(words.next()?)?;
                rule.negated = negate;
                named_port = true;
            }
            "-j" | "--jump" => {
                verdict = match words.next() {
                    Some("DROP") => Some(Verdict::Drop),
                    Some("REJECT") => Some(Verdict::Reject),
                    Some("ACCEPT") => Some(Verdict::Accept),
                    // A jump to another chain is not followed.
                    _ => return None,
                };
            }
            "--reject-with" => {
                words.next();
            }
            "--comment" => {
                words.next();
            }
            _ => rule.partial = true,
        }
        negate = false;
    }
    rule.verdict = verdict?;
    named_port.then_some(rule)
}

/// `9000`, `9990:9999`, `20001,37021`.
fn iptables_ports(text: &str) -> Option<Vec<(u16, u16)>> {
    text.split(',')
        .map(|part| match part.split_once(':') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let port = part.parse().ok()?;
                Some((port, port))
            }
        })
        .collect()
}

/// What the chains do to one listener: the first rule that decides it,
/// a partial drop before it, or the policy.
fn judge(chains: &[Chain], listener: &Listener) -> Option<Check> {
    let (transport, port) = (listener.transport, listener.addr.port());
    let v4 = listener.addr.is_ipv4();
    let what = format!("{port}/{transport} ({})", listener.service);
    for chain in chains.iter().filter(|c| if v4 { c.v4 } else { c.v6 }) {
        let mut partial = None;
        let mut decided = false;
        for rule in chain
            .rules
            .iter()
            .filter(|r| r.decides(transport, port, v4))
        {
            match (rule.verdict, rule.partial) {
                (Verdict::Accept, false) => {
                    decided = true;
                    break;
                }
                (Verdict::Accept, true) => {}
                (_, false) => return Some(stopped(rule, &what)),
                (_, true) => {
                    partial.get_or_insert(rule);
                }
            }
        }
        if let Some(rule) = partial {
            return Some(Check::warn(
                format!("firewall: {} drops port {what} for some peers", rule.name),
                format!(
                    "check that it spares the students' networks; {} removes it",
                    rule.delete
                ),
            ));
        }
        if !decided && chain.policy_drops {
            return Some(Check::warn(
                format!(
                    "firewall: {}'s policy is drop and no rule of it accepts port {what}",
                    chain.name
                ),
                format!(
                    "add a rule that accepts {transport} port {port}, like `{transport} dport {port} accept`"
                ),
            ));
        }
    }
    None
}

/// The line for a rule that drops or rejects a port for everyone.
fn stopped(rule: &Rule, what: &str) -> Check {
    let does = match rule.verdict {
        Verdict::Reject => "rejects",
        _ => "drops",
    };
    let file = if rule.delete.starts_with("sudo nft") {
        "/etc/nftables.conf"
    } else {
        "/etc/iptables/rules.v4 or rules.v6"
    };
    Check::fail(
        format!(
            "firewall: {} {does} port {what}: nobody can reach it",
            rule.name
        ),
        format!(
            "{} (and take it out of the file that loads it at boot, like {file})",
            rule.delete
        ),
    )
}

/// The firewall's lines: one ✓ when no rule stops a listener, else one
/// line per listener stopped.
pub fn checks(chains: &[Chain], from: &str, listeners: &[Listener]) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    for listener in listeners {
        if let Some(check) = judge(chains, listener) {
            if !checks.contains(&check) {
                checks.push(check);
            }
        }
    }
    if checks.is_empty() {
        checks.push(Check::pass(format!(
            "firewall ({from}) drops none of the services' ports"
        )));
    }
    checks
}

/// What `program args` printed, if it ran and succeeded in time; Err(why)
/// when it ran and failed, Ok(None) when it is not here.
async fn run(program: &str, args: &[&str]) -> Result<Option<String>, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(PATIENCE, out).await {
        Err(_) => Err(format!("{program} took more than {PATIENCE:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Ok(out)) => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
    }
}

/// Reads the firewall (nftables, else iptables) and judges `listeners`.
pub async fn check(listeners: &[Listener]) -> Vec<Check> {
    let cannot = |why: String| {
        vec![Check::skip(format!(
            "firewall: cannot read its rules ({why}); `sudo pinetd doctor` can"
        ))]
    };
    let mut chains = Vec::new();
    let (mut from, mut read) = ("nftables", false);
    match run("nft", &["-j", "list", "ruleset"]).await {
        Ok(Some(json)) => match parse_nft(&json) {
            Ok(found) => (chains, read) = (found, true),
            Err(why) => return cannot(format!("nft -j: {why}")),
        },
        Ok(None) => {}
        Err(why) => return cannot(why),
    }
    // Legacy iptables rules are not in nftables' ruleset.
    if chains.is_empty() {
        for (program, v4) in [("iptables-save", true), ("ip6tables-save", false)] {
            match run(program, &[]).await {
                Ok(Some(text)) => {
                    let chain = parse_iptables_save(&text, v4);
                    if !chain.rules.is_empty() || chain.policy_drops {
                        from = "iptables";
                    }
                    chains.push(chain);
                    read = true;
                }
                Ok(None) => {}
                Err(why) => return cannot(why),
            }
        }
    }
    if !read {
        return vec![Check::skip(
            "firewall: neither nft nor iptables-save is here, not checked",
        )];
    }
    checks(&chains, from, listeners)
}

#[cfg(test)]
mod tests;
