//! The web service over plain sockets, as `curl`, a script or a browser
//! talks to it: the JSON API and what it shows of the other services, the
//! page and its assets, the chat box's WebSocket, the live stream, and what
//! a slow, hostile or crowding peer gets. Everything on 127.0.0.0/8.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::web::{
    Answer, EventStream, Frame, Next, TcpChat, WebSocket, ask, connect_from, get, get_from,
    get_json, get_with, poll_json,
};
use common::{HANG, config, skip, start};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

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

/// Polls the activity of `service` until `peer` has an event of `kind`; that event.
async fn event_of(web: SocketAddr, service: &str, peer: SocketAddr, kind: &str) -> Value {
    let path = format!("/api/v1/activity?service={service}");
    let what = format!("a {kind} event of {peer}");
    let found = |activity: &Value| {
        items(&activity["events"])
            .iter()
            .find(|e| e["peer"] == peer.to_string() && e["kind"] == kind)
            .cloned()
    };
    let activity = poll_json(web, &path, &what, |a| found(a).is_some()).await;
    found(&activity).unwrap()
}

/// The connection of `addr` in a `/api/v1/connections` page.
fn connection(page: &Value, addr: SocketAddr) -> Option<&Value> {
    items(&page["connections"])
        .iter()
        .find(|c| c["addr"] == addr.to_string())
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

/// JSON echo records each exchange only while a page is open (what it
/// keeps always are errors, refusals and connections).
#[tokio::test]
async fn exchanges_are_shown_while_a_page_watches() {
    let (daemon, web) = web(|_| {});
    let json_echo = daemon.addrs("json_echo")[0];
    let exchange = async || {
        let mut client = TcpStream::connect(json_echo).await.unwrap();
        client.write_all(b"[1, 2] ").await.unwrap();
        let mut reply = [0u8; 6];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"[1,2]\n");
        client.local_addr().unwrap()
    };
    let unwatched = exchange().await;
    let mut page = EventStream::open("127.0.0.1", web).await;
    page.snapshot(HANG).await;
    let watched = exchange().await;
    let event = event_of(web, "json_echo", watched, "exchange").await;
    assert_eq!(event["input"]["text"], "[1, 2]", "{event:#}");
    // Shown without the line's end.
    assert_eq!(event["output"]["text"], "[1,2]", "{event:#}");
    let activity = get_json(web, "/api/v1/activity?service=json_echo").await;
    let unseen = items(&activity["events"])
        .iter()
        .all(|e| e["peer"] != unwatched.to_string());
    assert!(unseen, "{activity:#}");
    daemon.shutdown().await;
}

/// JSON echo's `{"a": tru }`, as the course's client sends it (no newline).
#[tokio::test]
async fn a_json_mistake_is_shown_where_it_is_and_with_its_connection() {
    let (daemon, web) = web(|_| {});
    let json_echo = daemon.addrs("json_echo")[0];
    let mut client = TcpStream::connect(json_echo).await.unwrap();
    let me = client.local_addr().unwrap();
    client.write_all(br#"{"a": tru }"#).await.unwrap();
    let mut reply = Vec::new();
    timeout(HANG, client.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"{\"error\""), "{reply:?}");

    let event = event_of(web, "json_echo", me, "error").await;
    assert_eq!(event["error"]["line"], 1, "{event:#}");
    assert_eq!(event["error"]["column"], 7, "{event:#}");
    assert_eq!(event["input"]["text"], r#"{"a": tru }"#, "{event:#}");
    assert_eq!(event["input"]["mark"], 6, "{event:#}");
    assert_eq!(event["input"]["invalid_utf8"], false);
    // The reply, without its line's end.
    let told = String::from_utf8(reply).unwrap();
    assert_eq!(event["output"]["text"], told.trim_end());

    let path = "/api/v1/connections?service=json_echo&state=closed";
    let closed = poll_json(web, path, "the connection closed", |page| {
        connection(page, me).is_some()
    })
    .await;
    let conn = connection(&closed, me).unwrap();
    assert_eq!(conn["reason"], "bad input", "{conn:#}");
    assert_eq!(conn["errors"], 1, "{conn:#}");
    assert!(conn["closed_at"].as_f64().unwrap() >= conn["since"].as_f64().unwrap());
    daemon.shutdown().await;
}

/// Sends `input` to JSON echo, reads its answer to the end; the error event shown.
async fn json_error_shown(web: SocketAddr, json_echo: SocketAddr, input: &[u8]) -> Value {
    let mut client = TcpStream::connect(json_echo).await.unwrap();
    let me = client.local_addr().unwrap();
    client.write_all(input).await.unwrap();
    let _ = timeout(HANG, client.read_to_end(&mut Vec::new())).await;
    event_of(web, "json_echo", me, "error").await
}

#[tokio::test]
async fn what_is_not_text_is_shown_escaped_and_what_is_long_is_cut() {
    let (daemon, web) = web(|_| {});
    let json_echo = daemon.addrs("json_echo")[0];

    let event = json_error_shown(web, json_echo, b"[1, \x07\xff]").await;
    let input = &event["input"];
    assert_eq!(input["text"], r"[1, \u{7}\xff]", "{event:#}");
    assert_eq!(input["invalid_utf8"], true);
    assert_eq!(input["bytes"], 7);
    assert_eq!(input["mark"], 4, "the mark is on the bell: {event:#}");

    // The mark counts characters of the text, not bytes of the input.
    let event = json_error_shown(web, json_echo, r#"{"이름": tru }"#.as_bytes()).await;
    assert_eq!(event["input"]["text"], r#"{"이름": tru }"#);
    assert_eq!(event["input"]["mark"], 7, "{event:#}");

    let long = format!(r#"["{}", x]"#, "a".repeat(3000));
    let event = json_error_shown(web, json_echo, long.as_bytes()).await;
    let input = &event["input"];
    assert_eq!(input["cut"], true, "{input:#}");
    assert_eq!(input["bytes"], long.len());
    // The error, far into it, is shown with the 1024 bytes around and before it.
    let from = long.len() - 1024;
    assert_eq!(input["from"], from, "{input:#}");
    assert_eq!(input["text"], &long[from..]);
    let mark = input["mark"].as_u64().unwrap() as usize;
    assert_eq!(long[from..].chars().nth(mark), Some('x'));
    daemon.shutdown().await;
}

/// A socket on 127.0.0.1 with a port below 1024 (the tests run as root), or None.
fn low_port_socket() -> Option<UdpSocket> {
    let socket = [853, 999, 1000, 700, 600]
        .into_iter()
        .find_map(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).ok())?;
    socket.set_nonblocking(true).unwrap();
    Some(UdpSocket::from_std(socket).unwrap())
}

#[tokio::test]
async fn a_datagram_from_a_low_port_is_shown_refused_and_why() {
    let Some(low) = low_port_socket() else {
        skip(format_args!(
            "no port below 1024 could be bound on 127.0.0.1"
        ));
        return;
    };
    let (daemon, web) = web(|_| {});
    let udp_echo = daemon.addrs("udp_echo")[0];
    low.send_to(b"ping", udp_echo).await.unwrap();
    let event = event_of(web, "udp_echo", low.local_addr().unwrap(), "refused").await;
    let reason = event["reason"].as_str().unwrap();
    assert!(reason.contains("below 1024"), "{event:#}");
    let status = get_json(web, "/api/v1/status").await;
    assert_eq!(service(&status, "udp_echo")["refused"]["bad_source"], 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_source_over_its_rate_limit_is_shown_refused_and_counted() {
    let (daemon, web) = web(|c| c.udp_echo.rate_limit = 1);
    let udp_echo = daemon.addrs("udp_echo")[0];
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..5 {
        client.send_to(b"quick", udp_echo).await.unwrap();
    }
    let event = event_of(web, "udp_echo", client.local_addr().unwrap(), "refused").await;
    assert!(
        event["reason"].as_str().unwrap().contains("rate_limit"),
        "{event:#}"
    );
    let status = get_json(web, "/api/v1/status").await;
    let limited = &service(&status, "udp_echo")["refused"]["rate_limited"];
    assert!(limited.as_u64().unwrap() > 0, "{status:#}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_room_and_its_members_are_shown_and_who_left_and_why() {
    let (daemon, web) = web(|c| c.chat.enabled = true);
    let chat = daemon.addrs("chat")[0];
    let mut quiet = TcpChat::join(chat).await;
    let mut kim = TcpChat::join(chat).await;
    kim.send(b"/nick kim\nhello\n").await;
    quiet.until("[kim] hello").await;

    let path = "/api/v1/connections?service=chat";
    let open = poll_json(web, path, "kim's line counted", |page| {
        items(&page["connections"])
            .iter()
            .any(|c| c["name"]["text"] == "kim" && c["said"] == 1)
    })
    .await;
    assert_eq!(open["total"], 2, "{open:#}");
    let names: BTreeSet<&str> = items(&open["connections"])
        .iter()
        .map(|c| c["name"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(names, [quiet.name.as_str(), "kim"].into());
    let quiet_one = items(&open["connections"])
        .iter()
        .find(|c| c["name"]["text"] == quiet.name.as_str())
        .unwrap();
    assert_eq!(quiet_one["said"], 0);

    let room = get_json(web, "/api/v1/room").await;
    let said: Vec<&Value> = items(&room["lines"])
        .iter()
        .filter(|l| l["text"]["text"] == "[kim] hello")
        .collect();
    assert_eq!(said.len(), 1, "{room:#}");
    assert_eq!(said[0]["notice"], false);
    let joined = items(&room["lines"])
        .iter()
        .find(|l| l["text"]["text"] == "*** kim joined")
        .unwrap_or_else(|| panic!("no join: {room:#}"));
    assert_eq!(
        (&joined["notice"], &joined["name"]),
        (&json!(true), &Value::Null)
    );

    kim.send(b"bye\n").await;
    kim.until("*** bye").await;
    let quiet_name = quiet.name.clone();
    drop(quiet);
    let path = "/api/v1/connections?service=chat&state=closed";
    let closed = poll_json(web, path, "both closed", |page| page["total"] == 2).await;
    let reasons: BTreeSet<(&str, &str)> = items(&closed["connections"])
        .iter()
        .map(|c| {
            let name = c["name"]["text"].as_str().unwrap();
            (name, c["reason"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("kim", "said bye"),
            (quiet_name.as_str(), "closed by the client")
        ]
        .into()
    );
    daemon.shutdown().await;
}

/// docs/web-api.md: a room line's `name` is null "for the hub's own `***`
/// lines", so a member's line carries its speaker's name.
#[tokio::test]
async fn a_members_line_in_the_room_names_its_speaker() {
    let (daemon, web) = web(|c| c.chat.enabled = true);
    let chat = daemon.addrs("chat")[0];
    let mut quiet = TcpChat::join(chat).await;
    let mut kim = TcpChat::join(chat).await;
    kim.send(b"/nick kim\nhello\n").await;
    quiet.until("[kim] hello").await;
    let room = get_json(web, "/api/v1/room").await;
    let line = items(&room["lines"])
        .iter()
        .find(|l| l["text"]["text"] == "[kim] hello")
        .unwrap();
    assert_eq!(line["name"]["text"], "kim", "{line:#}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn connections_are_paged_and_sorted() {
    let (daemon, web) = web(|_| {});
    let json_echo = daemon.addrs("json_echo")[0];
    let mut clients = Vec::new();
    for _ in 0..250 {
        clients.push(TcpStream::connect(json_echo).await.unwrap());
    }
    let path = "/api/v1/connections?service=json_echo";
    poll_json(web, path, "250 open", |page| page["total"] == 250).await;

    let page = get_json(web, &format!("{path}&limit=100&offset=200")).await;
    assert_eq!(
        (&page["total"], &page["offset"], &page["limit"]),
        (&json!(250), &json!(200), &json!(100))
    );
    assert_eq!(items(&page["connections"]).len(), 50);

    let addrs = |order: &str| {
        let path = format!("{path}&sort=addr&order={order}&limit=1000");
        async move {
            let page = get_json(web, &path).await;
            items(&page["connections"])
                .iter()
                .map(|c| c["addr"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let descending = addrs("desc").await;
    assert_eq!(descending.len(), 250);
    assert!(descending.is_sorted_by(|a, b| a >= b), "{descending:?}");
    let mut ascending = addrs("asc").await;
    ascending.reverse();
    assert_eq!(ascending, descending);

    let capped = get_json(web, &format!("{path}&limit=5000")).await;
    assert_eq!(capped["limit"], 1000);
    assert_eq!(items(&capped["connections"]).len(), 250);
    drop(clients);
    daemon.shutdown().await;
}

/// GET `path`: 400 with a JSON error naming what was wrong (`hint`).
async fn refused_with_json(web: SocketAddr, path: &str, hint: &str) {
    let answer = get(web, path).await;
    assert_eq!(answer.status, 400, "{path}: {}", answer.text());
    let kind = answer.header("content-type").unwrap_or_default();
    assert!(kind.starts_with("application/json"), "{path}: {kind}");
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(hint), "{path}: {error}");
}

#[tokio::test]
async fn a_bad_question_is_answered_400_with_a_json_error() {
    let (daemon, web) = web(|_| {});
    for (path, hint) in [
        ("/api/v1/connections?service=chat&state=gone", "state"),
        ("/api/v1/connections?service=chat&order=up", "order"),
        ("/api/v1/connections?service=chat&sort=color", "sort"),
        ("/api/v1/connections?service=gopher", "gopher"),
        ("/api/v1/activity", "service"),
        ("/api/v1/activity?service=gopher", "gopher"),
    ] {
        refused_with_json(web, path, hint).await;
    }
    daemon.shutdown().await;
}

/// The same, for what the query extractor itself turns down.
#[tokio::test]
async fn a_malformed_query_is_answered_400_with_a_json_error() {
    let (daemon, web) = web(|_| {});
    for (path, hint) in [
        ("/api/v1/connections", "service"),
        ("/api/v1/connections?service=chat&limit=many", "limit"),
        ("/api/v1/connections?service=chat&offset=-1", "offset"),
        ("/api/v1/activity?service=chat&limit=many", "limit"),
        ("/api/v1/room?limit=many", "limit"),
    ] {
        refused_with_json(web, path, hint).await;
    }
    daemon.shutdown().await;
}

/// A daemon with the chat and the page: the daemon, the chat's and the page's addresses.
fn chat_and_web(edit: impl FnOnce(&mut Config)) -> (Daemon, SocketAddr, SocketAddr) {
    let (daemon, web) = web(|c| {
        c.chat.enabled = true;
        edit(c);
    });
    let chat = daemon.addrs("chat")[0];
    (daemon, chat, web)
}

/// The name a chat box's welcome gives it.
async fn welcomed(ws: &mut WebSocket) -> String {
    let welcome = ws.until("*** welcome").await.pop().unwrap();
    let rest = welcome.split_once("you are ").unwrap().1;
    rest.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_chat_box_and_a_tcp_member_hear_each_other_and_the_box_never_itself() {
    let (daemon, chat, web) = chat_and_web(|_| {});
    let mut tcp = TcpChat::join(chat).await;
    let mut ws = WebSocket::join(web).await;
    let name = welcomed(&mut ws).await;
    tcp.until(&format!("{name} joined")).await;

    ws.send("hello from the page").await;
    let heard = tcp.until("hello from the page").await.pop().unwrap();
    assert_eq!(heard, format!("[{name}] hello from the page\n"));
    tcp.send(b"hello from netcat\n").await;
    let lines = ws.until("hello from netcat").await;
    assert_eq!(
        lines.last().unwrap(),
        &format!("[{}] hello from netcat\n", tcp.name)
    );
    assert!(
        lines.iter().all(|l| !l.contains("hello from the page")),
        "{lines:#?}"
    );

    ws.send("/nick minsu").await;
    assert_eq!(ws.until("you are now").await, ["*** you are now minsu\n"]);
    assert_eq!(
        tcp.until("is now").await.pop().unwrap(),
        format!("*** {name} is now minsu\n")
    );
    ws.send("again").await;
    assert_eq!(tcp.until("again").await.pop().unwrap(), "[minsu] again\n");

    let members = get_json(web, "/api/v1/connections?service=chat").await;
    assert_eq!(members["total"], 2, "the chat box is a member: {members:#}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_from_another_site_is_forbidden() {
    let (daemon, _chat, web) = chat_and_web(|_| {});
    for origin in ["http://evil.example", "http://127.0.0.1:1", "null"] {
        match WebSocket::open("127.0.0.1", web, Some(origin)).await {
            Ok(_) => panic!("{origin} was let in"),
            Err(answer) => assert_eq!(answer.status, 403, "{origin}: {answer:?}"),
        }
    }
    let members = get_json(web, "/api/v1/connections?service=chat").await;
    assert_eq!(members["total"], 0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_counts_against_the_chats_max_per_source() {
    let (daemon, _chat, web) = chat_and_web(|c| c.chat.max_per_source = 2);
    let origin = format!("http://{web}");
    let mut first = WebSocket::join(web).await;
    let mut second = WebSocket::join(web).await;
    welcomed(&mut first).await;
    welcomed(&mut second).await;

    let mut third = WebSocket::open("127.0.0.1", web, Some(&origin))
        .await
        .expect("the upgrade itself is the page's to give");
    assert_eq!(
        third.frame().await,
        Some(Frame::Text(
            "*** too many connections from your address, try again later\n".into()
        ))
    );
    assert!(matches!(third.frame().await, Some(Frame::Close(_)) | None));

    let mut elsewhere = WebSocket::open("127.0.0.2", web, Some(&origin))
        .await
        .expect("joins from 127.0.0.2");
    welcomed(&mut elsewhere).await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_from_outside_the_chats_allow_list_is_told_so() {
    let (daemon, _chat, web) =
        chat_and_web(|c| c.chat.allow = vec!["127.0.0.1/32".parse().unwrap()]);
    let origin = format!("http://{web}");
    let mut outsider = WebSocket::open("127.0.0.5", web, Some(&origin))
        .await
        .expect("the page itself lets it in");
    assert_eq!(
        outsider.line().await.as_deref(),
        Some("*** your address is not in the chat's allow list\n")
    );
    assert_eq!(outsider.line().await, None, "and closed");
    let status = get_json(web, "/api/v1/status").await;
    assert_eq!(service(&status, "chat")["refused"]["not_allowed"], 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_without_a_chat_is_503() {
    let (daemon, web) = web(|_| {});
    let origin = format!("http://{web}");
    match WebSocket::open("127.0.0.1", web, Some(&origin)).await {
        Ok(_) => panic!("a chat box with no chat"),
        Err(answer) => assert_eq!(answer.status, 503, "{answer:?}"),
    }
    daemon.shutdown().await;
}

/// The chat's `rate_limit` slows a chat box as it slows a TCP client: the
/// lines wait, none is lost. (At 25 a second, 50 lines take a second more
/// than the bucket's first 25.)
#[tokio::test]
async fn a_chat_box_over_the_rate_limit_is_slowed_not_cut() {
    let (daemon, chat, web) = chat_and_web(|c| c.chat.rate_limit = 25);
    let mut tcp = TcpChat::join(chat).await;
    let mut ws = WebSocket::join(web).await;
    let name = welcomed(&mut ws).await;
    tcp.until(&format!("{name} joined")).await;
    let started = Instant::now();
    for n in 0..50 {
        ws.send(&format!("line {n:02}")).await;
    }
    let mut heard = Vec::new();
    while heard.len() < 50 {
        let line = tcp.until(&format!("[{name}] line")).await.pop().unwrap();
        heard.push(line);
    }
    let took = started.elapsed();
    let sent: Vec<String> = (0..50).map(|n| format!("[{name}] line {n:02}\n")).collect();
    assert_eq!(heard, sent, "every line, in order");
    assert!(took >= Duration::from_millis(900), "not slowed: {took:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_that_closes_or_says_bye_leaves_the_room() {
    let (daemon, chat, web) = chat_and_web(|_| {});
    let mut tcp = TcpChat::join(chat).await;
    let mut closing = WebSocket::join(web).await;
    let closing_name = welcomed(&mut closing).await;
    let mut leaving = WebSocket::join(web).await;
    let leaving_name = welcomed(&mut leaving).await;
    tcp.until(&format!("{leaving_name} joined")).await;

    closing.close().await;
    tcp.until(&format!("{closing_name} left")).await;
    leaving.send("bye").await;
    assert_eq!(leaving.until("bye").await.pop().unwrap(), "*** bye\n");
    assert_eq!(leaving.line().await, None, "closed after its goodbye");
    tcp.until(&format!("{leaving_name} left")).await;

    let path = "/api/v1/connections?service=chat&state=closed";
    let closed = poll_json(web, path, "both closed", |page| page["total"] == 2).await;
    let reasons: BTreeSet<(&str, &str)> = items(&closed["connections"])
        .iter()
        .map(|c| {
            let name = c["name"]["text"].as_str().unwrap();
            (name, c["reason"].as_str().unwrap())
        })
        .collect();
    let expected = [
        (closing_name.as_str(), "closed by the client"),
        (leaving_name.as_str(), "said bye"),
    ];
    assert_eq!(reasons, expected.into());
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chat_box_that_sends_binary_is_closed_and_leaves_the_room() {
    let (daemon, chat, web) = chat_and_web(|_| {});
    let mut tcp = TcpChat::join(chat).await;
    let mut ws = WebSocket::join(web).await;
    let name = welcomed(&mut ws).await;
    tcp.until(&format!("{name} joined")).await;
    ws.send_frame(0x2, b"\x00\x01binary").await;
    let close = loop {
        match ws.frame().await {
            Some(Frame::Text(_)) => {}
            other => break other,
        }
    };
    assert_eq!(close, Some(Frame::Close(Some(1003))));
    tcp.until(&format!("{name} left")).await;
    daemon.shutdown().await;
}

/// Sends `GET / HTTP/1.1` and then one header byte every 300 ms until the
/// server closes (or `give_up` passes); how long it was let go on.
async fn slowloris(web: SocketAddr, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut peer = TcpStream::connect(web).await.unwrap();
    peer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while started.elapsed() < give_up {
        tokio::select! {
            read = peer.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => if peer.write_all(b"X").await.is_err() {
                return Some(started.elapsed());
            },
        }
    }
    None
}

#[tokio::test]
async fn a_slowloris_is_closed_at_the_header_timeout_while_others_are_served() {
    let header_timeout = Duration::from_secs(1);
    let (daemon, web) = web(|c| c.web.header_timeout = header_timeout);
    let slow = tokio::spawn(slowloris(web, Duration::from_secs(10)));
    let asked = Instant::now();
    let answer = get(web, "/healthz").await;
    assert_eq!(answer.status, 200);
    assert!(asked.elapsed() < header_timeout, "{:?}", asked.elapsed());
    let closed_after = slow.await.unwrap().expect("closed within 10 s");
    assert!(closed_after >= header_timeout, "{closed_after:?}");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn what_is_not_http_is_answered_400_or_closed_and_the_page_goes_on() {
    let (daemon, web) = web(|_| {});
    let tls_hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x5a\x17\xc3\x8e\x00\x00";
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    for junk in [&tls_hello[..], b"hello\n", huge.as_bytes()] {
        let mut peer = TcpStream::connect(web).await.unwrap();
        // The server may close before it has read everything (a reset).
        let _ = peer.write_all(junk).await;
        let mut answer = Vec::new();
        let _ = timeout(HANG, peer.read_to_end(&mut answer))
            .await
            .expect("closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{junk:?}: {answer}"
        );
        assert_eq!(get(web, "/healthz").await.status, 200, "after {junk:?}");
    }
    daemon.shutdown().await;
}

/// The open-files limit of this process, as `ulimit -n` says it.
fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0
}

/// 1000 chat boxes from one address: `max_per_source` lets 50 in and
/// turns the others away at once (a 429, or a reset if the refusal crossed
/// the request), and another address is served as ever.
#[tokio::test]
async fn a_thousand_chat_boxes_from_one_address_get_fifty_and_the_class_goes_on() {
    // Each box open costs a file here, and three in the daemon.
    if open_files_limit() < 4096 {
        skip(format_args!(
            "the open-files limit is {}, under 4096",
            open_files_limit()
        ));
        return;
    }
    let (daemon, _chat, web) = chat_and_web(|c| c.web.max_per_source = 50);
    let origin = format!("http://{web}");
    let started = Instant::now();
    // All connected at once, then each asks for its chat box.
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(TcpStream::connect(web).await.unwrap());
    }
    let (mut open, mut answered_429, mut reset) = (Vec::new(), 0, 0);
    for stream in streams {
        match WebSocket::upgrade(stream, web, Some(&origin)).await {
            Ok(ws) => open.push(ws),
            Err(Ok(answer)) => {
                assert_eq!(answer.status, 429, "{answer:?}");
                answered_429 += 1;
            }
            Err(Err(_)) => reset += 1,
        }
    }
    let took = started.elapsed();
    assert_eq!(open.len(), 50, "{answered_429} answered 429, {reset} reset");
    for ws in &mut open {
        welcomed(ws).await;
    }
    // 127.0.0.1 has no room left: another address asks.
    let answer = get_from("127.0.0.3", web, "/api/v1/status").await;
    assert_eq!(answer.status, 200);
    let status = answer.json();
    assert_eq!(service(&status, "web")["refused"]["per_source"], 950);
    let members = get_from("127.0.0.3", web, "/api/v1/connections?service=chat").await;
    assert_eq!(members.json()["total"], 50);
    let mut elsewhere = WebSocket::open("127.0.0.3", web, Some(&origin))
        .await
        .expect("joins from 127.0.0.3");
    welcomed(&mut elsewhere).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
    daemon.shutdown().await;
}

/// The lines of a snapshot's room, as text.
fn room_of(snapshot: &Value) -> Vec<&str> {
    items(&snapshot["chat"]["room"])
        .iter()
        .map(|l| l["text"]["text"].as_str().unwrap())
        .collect()
}

/// Reads snapshots until one's room has `line`; panics after `within`.
async fn snapshot_with(stream: &mut EventStream, line: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let snapshot = stream.snapshot(left).await;
        if room_of(&snapshot).contains(&line) {
            return snapshot;
        }
    }
}

#[tokio::test]
async fn a_page_stream_starts_whole_and_follows_the_room_without_a_snapshot_a_line() {
    let (daemon, chat, web) = chat_and_web(|_| {});
    let opened = Instant::now();
    let mut stream = EventStream::open("127.0.0.1", web).await;
    let first = stream.snapshot(HANG).await;
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the first came after {took:?}"
    );
    for key in ["status", "chat", "json_echo", "udp_echo", "discovery"] {
        assert!(first.get(key).is_some(), "no {key}: {first:#}");
    }
    assert_eq!(items(&first["status"]["services"]).len(), 6);

    let mut talker = TcpChat::join(chat).await;
    talker.send(b"on the page?\n").await;
    let said = Instant::now();
    let line = format!("[{}] on the page?", talker.name);
    snapshot_with(&mut stream, &line, Duration::from_secs(2)).await;
    assert!(said.elapsed() < Duration::from_secs(2));

    let burst: String = (0..200).map(|n| format!("burst {n:03}\n")).collect();
    talker.send(burst.as_bytes()).await;
    let window = Instant::now() + Duration::from_secs(2);
    let mut events = 0;
    let mut last = None;
    while let Next::Event(name, data) = stream.next(window - Instant::now()).await {
        assert_eq!(name, "snapshot");
        events += 1;
        last = Some(data);
    }
    assert!(events < 20, "{events} snapshots for 200 lines in 2 s");
    let last: Value = serde_json::from_str(&last.expect("at least one snapshot")).unwrap();
    let room = room_of(&last);
    assert!(
        room.iter()
            .any(|l| l.starts_with(&format!("[{}] burst", talker.name))),
        "{room:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_a_page_stream_and_disabling_the_web_ends_it_but_not_the_chat() {
    let (mut daemon, chat, web) = chat_and_web(|_| {});
    let mut stream = EventStream::open("127.0.0.1", web).await;
    stream.snapshot(HANG).await;
    let mut a = TcpChat::join(chat).await;
    let mut b = TcpChat::join(chat).await;

    // One connection from an address at a time, from now on.
    let mut second = daemon.config().clone();
    second.web.max_per_source = 1;
    let changed = daemon.reload(second.clone()).await;
    assert_eq!(changed, ["web"]);
    assert_eq!(daemon.addrs("web"), [web], "on its port still");
    a.send(b"after the reload\n").await;
    let line = format!("[{}] after the reload", a.name);
    snapshot_with(&mut stream, &line, HANG).await;
    let crowded = get(web, "/healthz").await;
    assert_eq!(crowded.status, 429, "the stream is 127.0.0.1's one");
    assert_eq!(get_from("127.0.0.2", web, "/healthz").await.status, 200);

    let mut third = second.clone();
    third.web.enabled = false;
    assert_eq!(daemon.reload(third).await, ["web"]);
    assert!(daemon.addrs("web").is_empty());
    let ended = loop {
        match stream.next(HANG).await {
            Next::Event(..) => {}
            other => break other,
        }
    };
    assert!(matches!(ended, Next::Ended), "{ended:?}");
    a.send(b"still here\n").await;
    assert_eq!(
        b.until("still here").await.pop().unwrap(),
        format!("[{}] still here\n", a.name)
    );
    daemon.shutdown().await;
}

/// Fails as soon as it runs, every time.
struct AlwaysFails;

impl pinetd::services::Service for AlwaysFails {
    fn name(&self) -> &'static str {
        "always_fails"
    }

    fn run(
        self: Arc<Self>,
        _shutdown: tokio_util::sync::CancellationToken,
    ) -> pinetd::services::ServiceFuture {
        Box::pin(async { Err(std::io::Error::other("broken on purpose")) })
    }
}

#[tokio::test]
async fn healthz_names_a_failing_service_and_why() {
    let (mut daemon, web) = web(|_| {});
    daemon.supervisor().spawn(Arc::new(AlwaysFails));
    let deadline = Instant::now() + HANG;
    let answer: Answer = loop {
        let answer = get(web, "/healthz").await;
        if answer.status != 200 {
            break answer;
        }
        assert!(Instant::now() < deadline, "still ok: {}", answer.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(answer.status, 503, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["status"], "failing");
    let reasons = items(&body["reasons"]);
    assert!(
        reasons.iter().any(|r| {
            let r = r.as_str().unwrap();
            r.contains("always_fails") && r.contains("broken on purpose")
        }),
        "{body:#}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_says_goodbye_to_chat_boxes_and_ends_page_streams() {
    let (daemon, _chat, web) = chat_and_web(|_| {});
    let mut ws = WebSocket::join(web).await;
    welcomed(&mut ws).await;
    let mut stream = EventStream::open("127.0.0.1", web).await;
    stream.snapshot(HANG).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(daemon.shutdown());
    ws.until("*** server shutting down").await;
    assert_eq!(ws.line().await, None, "closed after its goodbye");
    let ended = loop {
        match stream.next(HANG).await {
            Next::Event(..) => {}
            other => break other,
        }
    };
    assert!(matches!(ended, Next::Ended), "{ended:?}");
    assert!(
        shutdown.await.unwrap(),
        "everything finished in the grace time"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A daemon with the chat (no rate limit, `write_timeout` 1 s) and the
/// page, and a chat box from a socket that takes in little, whose browser
/// reads nothing while a member floods the room until the chat drops the
/// box's member for taking nothing: then the box has stopped reading the
/// room, stuck sending to the browser. The daemon, the page's address and
/// the box.
async fn a_deaf_chat_box(edit: impl FnOnce(&mut Config)) -> (Daemon, SocketAddr, WebSocket) {
    let (daemon, chat, web) = chat_and_web(|c| {
        c.chat.rate_limit = 0;
        c.chat.write_timeout = Duration::from_secs(1);
        edit(c);
    });
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(web).await.unwrap();
    let origin = format!("http://{web}");
    let Ok(mut deaf) = WebSocket::upgrade(stream, web, Some(&origin)).await else {
        panic!("no chat box");
    };
    let name = welcomed(&mut deaf).await;
    let mut flooder = TcpStream::connect(chat).await.unwrap();
    let flood = tokio::spawn(async move {
        let lines = format!("{}\n", "x".repeat(999)).repeat(1000);
        while flooder.write_all(lines.as_bytes()).await.is_ok() {}
    });
    let path = "/api/v1/connections?service=chat&state=closed";
    let closed = poll_json(web, path, "the chat to drop the deaf box", |page| {
        items(&page["connections"])
            .iter()
            .any(|c| c["name"]["text"] == name.as_str())
    })
    .await;
    flood.abort();
    let reason = &items(&closed["connections"])[0]["reason"];
    assert_eq!(reason, "took nothing for write_timeout");
    (daemon, web, deaf)
}

/// A browser that reads nothing costs its own connection, not the
/// daemon's shutdown. (A TCP member that reads nothing does not hold it up.)
#[tokio::test]
async fn a_chat_box_that_reads_nothing_does_not_hold_up_a_shutdown() {
    let grace = Duration::from_secs(3);
    let (daemon, _web, _deaf) = a_deaf_chat_box(|c| c.daemon.shutdown_grace = grace).await;
    let started = Instant::now();
    let finished = daemon.shutdown().await;
    let took = started.elapsed();
    assert!(finished, "aborted after the grace time ({took:?})");
    assert!(took < grace, "{took:?}");
}

/// When the chat drops a chat box's member, the page's connection ends
/// too: it holds a place in the web's `max_clients` and `max_per_source`.
#[tokio::test]
async fn a_chat_box_dropped_by_the_chat_frees_its_place() {
    let (daemon, web, _deaf) = a_deaf_chat_box(|_| {}).await;
    // Asked from elsewhere: then the web's only other client is the box.
    let deadline = Instant::now() + HANG;
    loop {
        let status = get_from("127.0.0.2", web, "/api/v1/status").await.json();
        let clients = service(&status, "web")["clients"].as_u64().unwrap();
        if clients == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{clients} web clients after {HANG:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.shutdown().await;
}

/// The whole answer to a raw `request` (`Connection: close`), as text.
async fn raw(web: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(web).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(HANG, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A page of another site whose name was rebound to the Pi's address (DNS
/// rebinding) asks with that name in `Host`: it reads nothing.
#[tokio::test]
async fn only_requests_for_this_servers_own_names_are_answered() {
    let (daemon, web) = web(|c| c.web.hosts = vec!["pi07.school.example".into()]);
    let ask = |host: &str| {
        format!("GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    for host in ["evil.example", "pi07.school.example.evil.example:8080"] {
        let answer = raw(web, &ask(host)).await;
        assert!(answer.starts_with("HTTP/1.1 421"), "{host}: {answer}");
        assert!(!answer.contains("\"services\""), "{answer}");
    }
    let port = web.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "PI07.school.example".into(),
    ] {
        let answer = raw(web, &ask(&host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    daemon.shutdown().await;
}

/// One address asking as fast as it can is slowed (429); another is not.
#[tokio::test]
async fn one_address_asking_too_fast_is_told_to_slow_down_and_others_are_served() {
    let (daemon, web) = web(|c| c.web.max_per_source = 0);
    let mut statuses = Vec::new();
    for _ in 0..120 {
        statuses.push(get_from("127.0.0.5", web, "/healthz").await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let served = statuses.iter().filter(|&&s| s == 200).count();
    assert!(served >= 50, "{statuses:?}");
    assert_eq!(get_from("127.0.0.6", web, "/healthz").await.status, 200);
    daemon.shutdown().await;
}

/// A reload that narrows `[web] allow` closes the pages it no longer admits.
#[tokio::test]
async fn narrowing_allow_closes_the_pages_it_no_longer_admits() {
    let (mut daemon, web) = web(|c| c.chat.enabled = true);
    let mut outside = EventStream::open("127.0.0.7", web).await;
    outside.snapshot(HANG).await;
    let mut inside = EventStream::open("127.0.0.1", web).await;
    inside.snapshot(HANG).await;
    let mut box_outside = WebSocket::open("127.0.0.7", web, None).await.ok().unwrap();
    box_outside.until("welcome").await;

    let mut narrower = daemon.config().clone();
    narrower.web.allow = vec!["127.0.0.1/32".parse().unwrap()];
    assert_eq!(daemon.reload(narrower).await, ["web"]);
    let deadline = Instant::now() + HANG;
    loop {
        match outside.next(Duration::from_secs(1)).await {
            Next::Ended => break,
            _ if Instant::now() > deadline => panic!("the page outside allow still streams"),
            _ => {}
        }
    }
    let closed = timeout(HANG, async {
        loop {
            match box_outside.frame().await {
                Some(Frame::Close(_)) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the chat box outside allow is closed");
    // The page inside goes on.
    assert!(matches!(inside.next(HANG).await, Next::Event(..)));
    daemon.shutdown().await;
}

/// The Pis heard announcing: each daemon once (by its instance), with its
/// latest line; other senders by address.
#[tokio::test]
async fn announcements_heard_are_listed_once_per_daemon() {
    // A port of its own for the announcements, so no other test's are heard.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (daemon, web) =
        web(|c| c.announcer.to = vec![SocketAddr::from(([127, 255, 255, 255], port))]);
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let announce = |seq: u64| {
        format!(
            r#"{{"pinetd":1,"host":"pi-<b>07</b>","instance":"abc","addrs":["127.0.0.1"],"services":{{"chat":9999}},"ttl":30,"seq":{seq}}}"#
        )
    };
    let heard = |v: &Value| items(&v["heard"]).to_vec();
    // The web's socket may not be bound the instant the daemon is: send until heard.
    let listed = poll_until(web, "/api/v1/heard", |v| {
        let _ = sender.try_send_to(announce(1).as_bytes(), to);
        !heard(v).is_empty()
    })
    .await;
    assert!(
        heard(&listed)[0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("pi-<b>07</b>  127.0.0.1  chat 9999")
    );
    sender.send_to(announce(2).as_bytes(), to).await.unwrap();
    sender.send_to(b"not a pinetd", to).await.unwrap();
    let listed = poll_until(web, "/api/v1/heard", |v| heard(v).len() == 2).await;
    let daemon_line = heard(&listed)
        .into_iter()
        .find(|h| h["text"]["text"].as_str().unwrap().contains("seq 2"));
    assert!(
        daemon_line.is_some(),
        "one entry for the daemon, at its latest: {listed:#}"
    );
    daemon.shutdown().await;
}

/// Polls `path` until `done` says its JSON is as wanted (a hang after HANG).
async fn poll_until(web: SocketAddr, path: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + HANG;
    loop {
        let value = get_json(web, path).await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never as wanted: {value:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
