//! The web service over plain sockets, as `curl`, a script or a browser
//! talks to it: the JSON API and what it shows of the other services, the
//! page and its assets, the chat box's WebSocket, the live stream, and what
//! a slow, hostile or crowding peer gets. Everything on 127.0.0.0/8.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::web::{ask, connect_from, get, get_json, get_with};
use common::{config, start};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use serde_json::{Value, json};

/// A daemon with the web page on, then `edit`: the daemon and the page's address.
fn web(edit: impl FnOnce(&mut Config)) -> (Daemon, SocketAddr) {
    let daemon = start(config(|c| {
        c.web.enabled = true;
        edit(c);
    }));
    let web = daemon.addrs("web")[0];
    (daemon, web)
}

/// The elements of a JSON list; panics, showing it, if it is not one.
fn items(list: &Value) -> &[Value] {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
}

/// The service named `name` of a `/api/v1/status` answer.
fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    items(&status["services"])
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {status:#}"))
}

#[tokio::test]
async fn healthz_says_ok_while_every_service_runs() {
    let (daemon, web) = web(|_| {});
    let answer = get(web, "/healthz").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"status": "ok"}));
    daemon.shutdown().await;
}

#[tokio::test]
async fn status_lists_every_service_where_it_really_listens() {
    let (daemon, web) = web(|c| c.chat.enabled = true);
    let status = get_json(web, "/api/v1/status").await;
    let names: Vec<&str> = items(&status["services"])
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chat",
            "json_echo",
            "udp_echo",
            "announcer",
            "discovery",
            "web"
        ]
    );
    let refusals: BTreeSet<&str> = [
        "not_allowed",
        "bad_source",
        "amplification",
        "rate_limited",
        "over_limit",
        "per_source",
        "full",
        "bad_input",
        "too_deep",
        "timeout",
    ]
    .into();
    let config = daemon.config().clone();
    for (name, enabled, max_clients) in [
        ("chat", true, Some(config.chat.max_clients)),
        ("json_echo", true, Some(config.json_echo.max_clients)),
        ("udp_echo", true, None),
        ("announcer", false, None),
        ("discovery", false, None),
        ("web", true, Some(config.web.max_clients)),
    ] {
        let card = service(&status, name);
        assert_eq!(card["enabled"], enabled, "{card:#}");
        assert_eq!(card["running"], enabled, "{card:#}");
        if enabled {
            let bound: Vec<String> = daemon.addrs(name).iter().map(|a| a.to_string()).collect();
            assert_eq!(card["listen"], json!(bound), "{card:#}");
        }
        assert_eq!(card["max_clients"], json!(max_clients), "{card:#}");
        // TCP services count their clients; this request is one of the web's.
        match (name, max_clients) {
            ("web", _) => assert!(card["clients"].as_u64().unwrap() >= 1, "{card:#}"),
            (_, Some(_)) => assert_eq!(card["clients"], 0, "{card:#}"),
            (_, None) => assert_eq!(card["clients"], Value::Null, "{card:#}"),
        }
        let keys: BTreeSet<&str> = (card["refused"].as_object().unwrap().keys())
            .map(String::as_str)
            .collect();
        assert_eq!(keys, refusals, "{name}");
    }
    assert_eq!(service(&status, "udp_echo")["transport"], "udp");
    assert_eq!(service(&status, "chat")["transport"], "tcp");
    daemon.shutdown().await;
}

/// Every answer, a page, an asset, an error or a refusal of the API, says
/// what a browser may do with it.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let (daemon, web) = web(|_| {});
    for path in [
        "/",
        "/healthz",
        "/api/v1/status",
        "/api/v1/room",
        "/api/v1/connections?service=nothing",
        "/assets/app.js",
        "/assets/nothing.js",
        "/no/such/page",
    ] {
        let answer = get(web, path).await;
        let csp = answer.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp:?}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp:?}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let (daemon, web) = web(|_| {});
    let answer = get(web, "/api/v2/status").await;
    assert_eq!(answer.status, 404);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(answer.json()["error"].is_string(), "{}", answer.text());
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_page_is_in_the_readers_language() {
    let (daemon, web) = web(|_| {});
    let korean = get_with(web, "/", &[("Accept-Language", "ko-KR,ko;q=0.9")]).await;
    assert_eq!(korean.status, 200);
    assert!(
        korean
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        korean.text().contains("<html lang=\"ko\">"),
        "{}",
        korean.text()
    );
    let default = get(web, "/").await;
    assert!(
        default.text().contains("<html lang=\"en\">"),
        "{}",
        default.text()
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn assets_come_with_their_types_and_nothing_outside_them_is_served() {
    let (daemon, web) = web(|_| {});
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/i18n/ko.json", "application/json"),
    ] {
        let answer = get(web, path).await;
        assert_eq!(answer.status, 200, "{path}");
        let got = answer.header("content-type").unwrap();
        assert!(got.starts_with(kind), "{path}: {got}");
        assert!(!answer.body.is_empty(), "{path}");
    }
    let korean = get(web, "/assets/i18n/ko.json").await.json();
    assert!(korean.is_object(), "a table of strings: {korean}");
    for path in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/i18n/../../Cargo.toml",
        "/assets/i18n/..%2f..%2fCargo.json",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
    ] {
        let answer = get(web, path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
        assert!(!answer.text().contains("[package]"), "{path}");
        assert!(!answer.text().contains("root:"), "{path}");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_address_outside_the_webs_allow_list_is_closed_unanswered() {
    let (daemon, web) = web(|c| c.web.allow = vec!["127.0.0.1/32".parse().unwrap()]);
    let outsider = connect_from("127.0.0.2", web).await.unwrap();
    let asked = ask(outsider, web, "/api/v1/status", &[]).await;
    assert!(asked.is_err(), "{asked:?}");
    let status = get_json(web, "/api/v1/status").await;
    assert_eq!(service(&status, "web")["refused"]["not_allowed"], 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn api_answers_are_never_cached() {
    let (daemon, web) = web(|_| {});
    for path in [
        "/healthz",
        "/api/v1/status",
        "/api/v1/room",
        "/api/v1/heard",
        "/api/v1/activity?service=chat",
        "/api/v1/connections?service=chat",
    ] {
        let answer = get(web, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        answer.json();
    }
    daemon.shutdown().await;
}
