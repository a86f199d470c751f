//! The firewall's parsers on real `nft -j` and `iptables-save` output, and
//! how a chain's rules judge a port.

use super::*;

/// `nft -j list ruleset` (nftables 1.0.6) after:
/// `tcp dport 9000 drop`, `udp dport { 20001, 37021 } reject`,
/// `meta l4proto tcp th dport 9990-9999 counter drop`,
/// `ip saddr 10.0.0.0/8 tcp dport 9999 drop`, on `inet filter input`.
const NFT: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "filter", "handle": 1}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9000}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [20001, 37021]}}}, {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]}}, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [9990, 9999]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9999}}, {"drop": null}]}}]}"#;

fn listener(service: &'static str, transport: Transport, addr: &str) -> Listener {
    Listener {
        service,
        transport,
        addr: addr.parse().unwrap(),
    }
}

fn marks(checks: &[Check]) -> Vec<(super::super::report::Mark, &str)> {
    checks.iter().map(|c| (c.mark, c.text.as_str())).collect()
}

#[test]
fn nft_drop_set_range_and_partial_rules() {
    let chains = parse_nft(NFT).unwrap();
    assert_eq!(chains.len(), 1);
    let rules = &chains[0].rules;
    assert_eq!(rules.len(), 4);
    assert_eq!(
        (rules[0].transport, &rules[0].ports[..], rules[0].verdict),
        (Some(Transport::Tcp), &[(9000, 9000)][..], Verdict::Drop)
    );
    assert_eq!(
        rules[0].delete,
        "sudo nft delete rule inet filter input handle 2"
    );
    assert_eq!(rules[1].ports, [(20001, 20001), (37021, 37021)]);
    assert_eq!(rules[1].verdict, Verdict::Reject);
    assert_eq!(rules[2].ports, [(9990, 9999)]);
    assert!(!rules[2].partial, "a counter is no condition");
    assert!(rules[3].partial, "a source address is");

    let json = listener("json_echo", Transport::Tcp, "0.0.0.0:9000");
    let check = judge(&chains, &json).unwrap();
    assert_eq!(check.mark, super::super::report::Mark::Fail);
    assert_eq!(
        check.text,
        "firewall: nftables inet filter input rule handle 2 drops port 9000/tcp (json_echo): nobody can reach it"
    );
    assert!(
        check
            .fix
            .unwrap()
            .starts_with("sudo nft delete rule inet filter input handle 2")
    );
    // UDP on 9000 is not the TCP rule's.
    assert!(judge(&chains, &listener("x", Transport::Udp, "0.0.0.0:9000")).is_none());
    // The range catches 9999 before the partial rule does.
    let chat = judge(&chains, &listener("chat", Transport::Tcp, "[::]:9999")).unwrap();
    assert!(
        chat.text.contains("handle 5 drops port 9999/tcp"),
        "{}",
        chat.text
    );
    assert!(
        judge(
            &chains,
            &listener("udp_echo", Transport::Udp, "0.0.0.0:20001")
        )
        .unwrap()
        .text
        .contains("rejects port 20001/udp")
    );
    assert!(judge(&chains, &listener("web", Transport::Tcp, "0.0.0.0:8080")).is_none());
}

#[test]
fn an_accept_first_wins_and_partial_drops_warn() {
    let json = r#"{"nftables": [
        {"chain": {"family": "ip", "table": "t", "name": "in", "hook": "input", "policy": "drop"}},
        {"chain": {"family": "ip", "table": "t", "name": "out", "hook": "output", "policy": "accept"}},
        {"rule": {"family": "ip", "table": "t", "chain": "in", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth1"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 20001}},
            {"drop": null}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "in", "handle": 4, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": {"set": [9000, 9999]}}},
            {"accept": null}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "in", "handle": 5, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9000}},
            {"drop": null}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "out", "handle": 6, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9999}},
            {"drop": null}]}}
    ]}"#;
    let chains = parse_nft(json).unwrap();
    assert_eq!(chains.len(), 1, "the output chain is not read");
    let listeners = [
        listener("json_echo", Transport::Tcp, "0.0.0.0:9000"),
        listener("chat", Transport::Tcp, "0.0.0.0:9999"),
        listener("udp_echo", Transport::Udp, "0.0.0.0:20001"),
        listener("chat", Transport::Tcp, "[::]:9999"),
    ];
    use super::super::report::Mark;
    let found = checks(&chains, "nftables", &listeners);
    assert_eq!(
        marks(&found),
        [(
            Mark::Warn,
            "firewall: nftables ip t in rule handle 3 drops port 20001/udp (udp_echo) for some peers"
        )],
        "accepted before the drop; IPv6 is not this chain's"
    );
    let web = [listener("web", Transport::Tcp, "0.0.0.0:8080")];
    assert_eq!(
        marks(&checks(&chains, "nftables", &web)),
        [(
            Mark::Warn,
            "firewall: nftables ip t in's policy is drop and no rule of it accepts port 8080/tcp (web)"
        )]
    );
    assert_eq!(
        marks(&checks(&[], "nftables", &web)),
        [(
            Mark::Pass,
            "firewall (nftables) drops none of the services' ports"
        )]
    );
    assert!(parse_nft("not json").is_err());
}

#[test]
fn negated_ports_drop_every_other_port() {
    let json = r#"{"nftables": [
        {"chain": {"family": "inet", "table": "t", "name": "in", "hook": "input", "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 2, "expr": [
            {"match": {"op": "!=", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
            {"drop": null}]}}]}"#;
    let chains = parse_nft(json).unwrap();
    let ssh = listener("ssh", Transport::Tcp, "0.0.0.0:22");
    assert!(judge(&chains, &ssh).is_none());
    let chat = listener("chat", Transport::Tcp, "0.0.0.0:9999");
    assert!(
        judge(&chains, &chat)
            .unwrap()
            .text
            .contains("drops port 9999/tcp")
    );
}

/// `iptables-save` (1.8.9) after `-A INPUT -p tcp --dport 9000 -j DROP`
/// and `-A INPUT -p udp -m multiport --dports 20001,37021 -j REJECT`.
const IPTABLES: &str = "# Generated by iptables-save v1.8.9 (nf_tables)\n\
    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A INPUT -p tcp -m tcp --dport 9000 -j DROP\n\
    -A INPUT -p udp -m multiport --dports 20001,37021 -j REJECT --reject-with icmp-port-unreachable\n\
    -A INPUT -s 192.0.2.0/24 -p tcp -m tcp --dport 9990:9999 -j DROP\n\
    -A INPUT -p tcp -m tcp --dport 8080 -j my-chain\n\
    -A OUTPUT -p tcp -m tcp --dport 8080 -j DROP\n\
    COMMIT\n\
    *nat\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 8080 -j DROP\nCOMMIT\n";

#[test]
fn iptables_save_input_rules() {
    let chain = parse_iptables_save(IPTABLES, true);
    assert!(!chain.policy_drops);
    assert_eq!(chain.rules.len(), 3, "{:?}", chain.rules);
    assert_eq!(chain.rules[0].ports, [(9000, 9000)]);
    assert_eq!(
        chain.rules[0].delete,
        "sudo iptables -D INPUT -p tcp -m tcp --dport 9000 -j DROP"
    );
    assert_eq!(chain.rules[1].ports, [(20001, 20001), (37021, 37021)]);
    assert_eq!(chain.rules[1].verdict, Verdict::Reject);
    assert!(!chain.rules[1].partial);
    assert_eq!(chain.rules[2].ports, [(9990, 9999)]);
    assert!(chain.rules[2].partial);
    use super::super::report::Mark;
    let listeners = [
        listener("json_echo", Transport::Tcp, "0.0.0.0:9000"),
        listener("chat", Transport::Tcp, "0.0.0.0:9999"),
        listener("discovery", Transport::Udp, "0.0.0.0:37021"),
        listener("web", Transport::Tcp, "0.0.0.0:8080"),
        listener("json_echo", Transport::Tcp, "[::]:9000"),
    ];
    let found = checks(&[chain], "iptables", &listeners);
    assert_eq!(
        found.iter().map(|c| c.mark).collect::<Vec<_>>(),
        [Mark::Fail, Mark::Warn, Mark::Fail]
    );
    assert!(found[2].text.contains("rejects port 37021/udp (discovery)"));
    let v6 = parse_iptables_save(":INPUT DROP\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n", false);
    assert!(v6.policy_drops && !v6.v4 && v6.v6);
}
