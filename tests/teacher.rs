//! The teacher's controls over real sockets, as the page (or `curl`) sends
//! them: the token from `[web] admin_token_file` on every action, refused
//! and counted without it, rate-limited when wrong, refused from another
//! site's page; an address blocked for a time on every TCP service and let
//! in again at its end or by hand; and kick, mute, rename and say on raw
//! TCP chat clients. Everything on 127.0.0.0/8.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::web::{Answer, TcpChat, WebSocket, get, get_json, poll_json, post};
use common::{HANG, config, start, temp_dir};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

const TOKEN: &str = "correct-horse-battery-staple";

/// A token file holding `token` and a newline, in a directory of `test`'s own.
fn token_file(test: &str, token: &str) -> PathBuf {
    let path = temp_dir(&format!("teacher-{test}")).join("admin-token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// The web page, the chat and JSON echo on, the token in a file (`None`:
/// no `admin_token_file`): the daemon and its web, chat and JSON addresses.
fn class(test: &str, token: Option<&str>) -> (Daemon, SocketAddr, SocketAddr, SocketAddr) {
    let daemon = start(config(|c| {
        c.web.enabled = true;
        c.chat.enabled = true;
        if let Some(token) = token {
            c.web.admin_token_file = token_file(test, token).display().to_string();
        }
    }));
    let (web, chat, json) = (
        daemon.addrs("web")[0],
        daemon.addrs("chat")[0],
        daemon.addrs("json_echo")[0],
    );
    (daemon, web, chat, json)
}

/// `POST /api/v1/teacher/{action}` with `body`, the token given as `token`.
async fn act(web: SocketAddr, token: Option<&str>, action: &str, body: &str) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    post(web, &format!("/api/v1/teacher/{action}"), &headers, body).await
}

/// The value of the metric sample named `sample` exactly, from `/metrics`.
async fn metric(web: SocketAddr, sample: &str) -> f64 {
    let text = get(web, "/metrics").await.text();
    (text.lines())
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{text}"))
}

/// Everything a TCP service says to a new connection before it closes it
/// (or the first line, for one that stays open).
async fn greeting(to: SocketAddr) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let mut said = Vec::new();
    let mut chunk = [0u8; 1024];
    while !said.contains(&b'\n') {
        match timeout(HANG, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => said.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("{to} said nothing"),
        }
    }
    String::from_utf8_lossy(&said).into_owned()
}

/// What JSON echo answers to `{"a":1}` on a new connection.
async fn json_answer(to: SocketAddr) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    // A refused peer may be closed before it writes: what it was told counts.
    let _ = stream.write_all(b"{\"a\":1}").await;
    let mut said = Vec::new();
    let _ = timeout(HANG, async {
        let mut chunk = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            said.extend_from_slice(&chunk[..n]);
            if said.ends_with(b"\n") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&said).into_owned()
}

/// The blocks the page lists.
async fn blocks(web: SocketAddr) -> Vec<Value> {
    let teacher = get_json(web, "/api/v1/teacher").await;
    teacher["blocks"].as_array().cloned().unwrap_or_default()
}

const BLOCK_ME: &str = r#"{"addr": "127.0.0.1", "seconds": 3600}"#;

#[tokio::test]
async fn without_a_token_file_the_page_is_read_only_for_everyone() {
    let (daemon, web, _, _) = class("none", None);
    let teacher = get_json(web, "/api/v1/teacher").await;
    assert_eq!(teacher["enabled"], false, "{teacher}");
    for token in [None, Some(TOKEN), Some("")] {
        let answer = act(web, token, "block", BLOCK_ME).await;
        assert_eq!(answer.status, 403, "{}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("read-only"), "{error}");
        assert!(error.contains("admin_token_file"), "{error}");
    }
    assert!(blocks(web).await.is_empty(), "nothing happened");
    let refused = r#"pinetd_web_teacher_refused_total{reason="no_token_configured"}"#;
    assert_eq!(metric(web, refused).await, 3.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_wrong_token_changes_nothing_and_is_counted() {
    let (daemon, web, chat, _) = class("wrong", Some(TOKEN));
    let teacher = get_json(web, "/api/v1/teacher").await;
    assert_eq!(teacher["enabled"], true, "{teacher}");
    let missing = act(web, None, "block", BLOCK_ME).await;
    assert_eq!(missing.status, 401, "{}", missing.text());
    assert!(missing.json()["error"].as_str().unwrap().contains("token"));
    for wrong in [
        "correct-horse-battery-stapl",
        "correct-horse-battery-staplf",
    ] {
        let answer = act(web, Some(wrong), "block", BLOCK_ME).await;
        assert_eq!(answer.status, 401, "{}", answer.text());
        assert_eq!(answer.json()["error"], "wrong token");
    }
    let cookie = [("Cookie", "token=correct-horse-battery-staple")];
    let answer = post(web, "/api/v1/teacher/block", &cookie, BLOCK_ME).await;
    assert_eq!(
        answer.status,
        401,
        "a cookie is no token: {}",
        answer.text()
    );
    assert!(blocks(web).await.is_empty(), "nothing happened");
    assert!(greeting(chat).await.starts_with("*** welcome"));
    let refused = |why| format!("pinetd_web_teacher_refused_total{{reason=\"{why}\"}}");
    assert_eq!(metric(web, &refused("missing_token")).await, 2.0);
    assert_eq!(metric(web, &refused("wrong_token")).await, 2.0);
    // Four failures: the fifth try is still allowed.
    let signed_in = act(web, Some(TOKEN), "signin", "{}").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    daemon.shutdown().await;
}

#[tokio::test]
async fn wrong_tokens_from_one_address_are_slowed_to_five_a_minute() {
    let (daemon, web, _, _) = class("guess", Some(TOKEN));
    for guess in 0..5 {
        let answer = act(web, Some(&format!("guess{guess}")), "signin", "{}").await;
        assert_eq!(answer.status, 401, "{}", answer.text());
    }
    for token in ["guess5", TOKEN] {
        let answer = act(web, Some(token), "signin", "{}").await;
        assert_eq!(answer.status, 429, "even the right one: {}", answer.text());
        let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("too many")
        );
    }
    let limited = r#"pinetd_web_teacher_refused_total{reason="rate_limited"}"#;
    assert_eq!(metric(web, limited).await, 2.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_action_from_another_sites_page_is_refused() {
    let (daemon, web, _, _) = class("origin", Some(TOKEN));
    let auth = format!("Bearer {TOKEN}");
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let headers = [("Authorization", auth.as_str()), ("Origin", origin)];
        let answer = post(web, "/api/v1/teacher/block", &headers, BLOCK_ME).await;
        assert_eq!(answer.status, 403, "{origin}: {}", answer.text());
        assert!(answer.json()["error"].as_str().unwrap().contains("Origin"));
    }
    assert!(blocks(web).await.is_empty(), "nothing happened");
    let cross = r#"pinetd_web_teacher_refused_total{reason="cross_origin"}"#;
    assert_eq!(metric(web, cross).await, 3.0);
    let ours = format!("http://{web}");
    let headers = [("Authorization", auth.as_str()), ("Origin", ours.as_str())];
    let answer = post(web, "/api/v1/teacher/signin", &headers, "{}").await;
    assert_eq!(answer.status, 200, "its own page: {}", answer.text());
    daemon.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_get_a_clear_error_and_change_nothing() {
    let (daemon, web, _, _) = class("bodies", Some(TOKEN));
    let token = Some(TOKEN);
    let cases = [
        ("block", "not json"),
        ("block", r#"{"addr": "127.0.0.1"}"#),
        ("block", r#"{"addr": "127.0.0.1:9999", "seconds": 60}"#),
        ("block", r#"{"addr": "127.0.0.1", "seconds": 0}"#),
        ("block", r#"{"addr": "127.0.0.1", "seconds": 60, "why": 1}"#),
        ("unblock", r#"{"addr": "localhost"}"#),
        ("mute", r#"{"id": 1, "seconds": 99999999}"#),
        ("say", r#"{"text": ""}"#),
        ("say", r#"{"text": "two\nlines"}"#),
    ];
    for (action, body) in cases {
        let answer = act(web, token, action, body).await;
        assert!(
            (400..500).contains(&answer.status),
            "{action} {body}: {}",
            answer.status
        );
        assert!(answer.json()["error"].is_string(), "{action} {body}");
    }
    let big = format!(r#"{{"text": "{}"}}"#, "a".repeat(64 * 1024));
    assert_eq!(act(web, token, "say", &big).await.status, 413);
    let not_blocked = act(web, token, "unblock", r#"{"addr": "127.0.0.9"}"#).await;
    assert_eq!(not_blocked.status, 404, "{}", not_blocked.text());
    assert!(blocks(web).await.is_empty(), "nothing happened");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_blocked_address_is_refused_by_chat_and_json_echo_until_its_block_ends() {
    let (daemon, web, chat, json) = class("block", Some(TOKEN));
    let block = r#"{"addr": "127.0.0.1", "seconds": 1}"#;
    let answer = act(web, Some(TOKEN), "block", block).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let told = greeting(chat).await;
    let chat_told = "*** your address is blocked by the teacher for ";
    // The block may end while the test runs: then the chat lets it in.
    if !told.starts_with("*** welcome") {
        assert!(told.starts_with(chat_told), "{told:?}");
    }
    let answered = json_answer(json).await;
    if answered != "{\"a\":1}\n" {
        let error: Value = serde_json::from_str(&answered).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.starts_with("your address is blocked by the teacher for "));
    }
    wait_for_welcome(chat).await;
    assert_eq!(json_answer(json).await, "{\"a\":1}\n");
    assert!(blocks(web).await.is_empty(), "an ended block is gone");
    daemon.shutdown().await;
}

/// Connects to the chat until it says welcome (a block ends).
async fn wait_for_welcome(chat: SocketAddr) {
    let deadline = Instant::now() + HANG;
    loop {
        let told = greeting(chat).await;
        if told.starts_with("*** welcome") {
            return;
        }
        assert!(Instant::now() < deadline, "still refused: {told:?}");
        sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_block_is_shown_with_its_time_left_and_lifted_by_hand() {
    let (daemon, web, chat, json) = class("unblock", Some(TOKEN));
    let answer = act(web, Some(TOKEN), "block", BLOCK_ME).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let told = greeting(chat).await;
    assert!(
        told.starts_with("*** your address is blocked by the teacher for "),
        "{told:?}"
    );
    assert!(told.ends_with("more minutes\n"), "{told:?}");
    let error: Value = serde_json::from_str(&json_answer(json).await).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("blocked by the teacher")
    );
    let mut chat_box = WebSocket::join(web).await;
    let told = chat_box.line().await.unwrap();
    assert!(
        told.starts_with("*** your address is blocked by the teacher"),
        "the page's chat box: {told:?}"
    );
    let listed = blocks(web).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["addr"], "127.0.0.1");
    assert_eq!(listed[0]["left_text"], "60 more minutes");
    // The page itself stays open to a blocked address: the teacher may share it.
    let answer = act(web, Some(TOKEN), "unblock", r#"{"addr": "127.0.0.1"}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(greeting(chat).await.starts_with("*** welcome"));
    assert_eq!(json_answer(json).await, "{\"a\":1}\n");
    let refusals = r#"pinetd_connections_refused_total{service="chat",reason="not_allowed"}"#;
    assert!(metric(web, refusals).await >= 1.0);
    let teacher = get_json(web, "/api/v1/teacher").await;
    let actions: Vec<(&str, &str)> = (teacher["actions"].as_array().unwrap().iter())
        .map(|a| (a["what"].as_str().unwrap(), a["whom"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("unblock", "127.0.0.1"),
            ("block", "127.0.0.1 for 60 minutes")
        ]
    );
    assert_eq!(teacher["actions"][0]["by"], "127.0.0.1");
    let everything = format!("{teacher}{}", get(web, "/api/v1/status").await.text());
    assert!(!everything.contains(TOKEN), "the token is never shown");
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_ipv6_address_is_blocked_with_its_whole_64() {
    let (daemon, web, _chat, _json) = class("block64", Some(TOKEN));
    let block = r#"{"addr": "2001:db8:1:2::7", "seconds": 60}"#;
    let answer = act(web, Some(TOKEN), "block", block).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let listed = blocks(web).await;
    assert_eq!(listed[0]["addr"], "2001:db8:1:2::/64", "{listed:?}");
    let v4_64 = act(web, Some(TOKEN), "unblock", r#"{"addr": "127.0.0.1/64"}"#).await;
    assert_eq!(v4_64.status, 400, "{}", v4_64.text());
    // Lifted by any address of it, or as the list shows it.
    let lift = r#"{"addr": "2001:db8:1:2::/64"}"#;
    let answer = act(web, Some(TOKEN), "unblock", lift).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(blocks(web).await.is_empty());
    daemon.shutdown().await;
}

#[tokio::test]
async fn chat_actions_while_the_chat_does_not_run_say_so() {
    let daemon = start(config(|c| {
        c.web.enabled = true;
        c.web.admin_token_file = token_file("nochat", TOKEN).display().to_string();
    }));
    let web = daemon.addrs("web")[0];
    for (action, body) in [
        ("kick", r#"{"id": 1}"#),
        ("mute", r#"{"id": 1, "seconds": 60}"#),
        ("rename", r#"{"id": 1, "name": "kim"}"#),
        ("say", r#"{"text": "hello"}"#),
    ] {
        let answer = act(web, Some(TOKEN), action, body).await;
        assert_eq!(answer.status, 503, "{action}: {}", answer.text());
        assert_eq!(answer.json()["error"], "the chat is not running");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_token_is_read_again_on_reload_and_a_bad_file_is_a_config_error() {
    let dir = temp_dir("teacher-reload");
    let token = token_file("reload", "first-token");
    let text = format!(
        "[chat]\nenabled = false\n[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n\
         [announcer]\nenabled = false\n[discovery]\nenabled = false\n\
         [web]\nlisten = \"127.0.0.1:0\"\nadmin_token_file = \"{}\"\n",
        token.display()
    );
    let file = dir.join("pinetd.toml");
    std::fs::write(&file, &text).unwrap();
    let first = Config::load(&file).unwrap();
    let mut daemon = start(first.clone());
    let web = daemon.addrs("web")[0];
    assert_eq!(
        act(web, Some("first-token"), "signin", "{}").await.status,
        200
    );
    std::fs::write(&token, "second-token\r\n").unwrap();
    let second = Config::load(&file).unwrap();
    // The reload's log line names the change, never the token.
    assert_eq!(first.changed_keys(&second), ["web.admin_token"]);
    daemon.reload(second).await;
    let web = daemon.addrs("web")[0];
    assert_eq!(
        act(web, Some("first-token"), "signin", "{}").await.status,
        401
    );
    assert_eq!(
        act(web, Some("second-token"), "signin", "{}").await.status,
        200
    );
    std::fs::write(&token, "\n").unwrap();
    let error = Config::load(&file).unwrap_err().to_string();
    let at = format!(
        "{}:13:1: web.admin_token_file: {} is empty",
        file.display(),
        token.display()
    );
    assert!(error.starts_with(&at), "{error}");
    std::fs::remove_file(&token).unwrap();
    let error = Config::load(&file).unwrap_err().to_string();
    assert!(
        error.contains("web.admin_token_file: cannot read"),
        "{error}"
    );
    daemon.shutdown().await;
}

/// The chat client numbered as `chat` is, on the page.
async fn id_of(web: SocketAddr, chat: &TcpChat) -> u64 {
    let path = "/api/v1/connections?service=chat";
    let what = format!("{} listed", chat.name);
    let has = |page: &Value| {
        (page["connections"].as_array().unwrap().iter())
            .find(|c| c["name"]["text"] == chat.name.as_str())
            .and_then(|c| c["id"].as_u64())
    };
    let page = poll_json(web, path, &what, |p| has(p).is_some()).await;
    has(&page).unwrap()
}

#[tokio::test]
async fn kick_mute_rename_and_say_on_tcp_chat_clients() {
    let (daemon, web, chat, _) = class("chat", Some(TOKEN));
    let mut kim = TcpChat::join(chat).await;
    let mut lee = TcpChat::join(chat).await;
    let token = Some(TOKEN);
    let say = act(web, token, "say", r#"{"text": "pens down"}"#).await;
    assert_eq!(say.status, 200, "{}", say.text());
    kim.until("*** teacher: pens down").await;
    lee.until("*** teacher: pens down").await;
    let lee_id = id_of(web, &lee).await;
    let body = format!(r#"{{"id": {lee_id}, "name": "polite"}}"#);
    assert_eq!(act(web, token, "rename", &body).await.status, 200);
    lee.until("polite").await;
    kim.until("polite").await;
    let kim_id = id_of(web, &kim).await;
    let taken = format!(r#"{{"id": {kim_id}, "name": "polite"}}"#);
    let answer = act(web, token, "rename", &taken).await;
    assert_eq!(answer.status, 409, "a name taken: {}", answer.text());
    let nobody = act(web, token, "kick", r#"{"id": 999999}"#).await;
    assert_eq!(nobody.status, 404, "{}", nobody.text());
    let body = format!(r#"{{"id": {lee_id}, "seconds": 600}}"#);
    assert_eq!(act(web, token, "mute", &body).await.status, 200);
    lee.send(b"can anyone hear me\n").await;
    lee.until("*** you are muted by the teacher").await;
    let body = format!(r#"{{"id": {lee_id}, "seconds": 0}}"#);
    assert_eq!(act(web, token, "mute", &body).await.status, 200);
    lee.send(b"back again\n").await;
    let heard = kim.until("back again").await;
    assert!(
        !heard.iter().any(|l| l.contains("can anyone hear me")),
        "{heard:?}"
    );
    kim.send(b"last words\n").await;
    lee.until("last words").await;
    let body = format!(r#"{{"id": {kim_id}}}"#);
    assert_eq!(act(web, token, "kick", &body).await.status, 200);
    kim.until("*** removed by the teacher").await;
    assert_eq!(kim.line().await, None, "closed");
    let teacher = get_json(web, "/api/v1/teacher").await;
    let whats: Vec<&str> = (teacher["actions"].as_array().unwrap().iter())
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["kick", "unmute", "mute", "rename", "say"]);
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_teacher_downloads_todays_transcript_with_the_actions_in_it() {
    let dir = temp_dir("teacher-transcript-room");
    let daemon = start(config(|c| {
        c.web.enabled = true;
        c.chat.enabled = true;
        c.chat.transcript = dir.display().to_string();
        c.web.admin_token_file = token_file("transcript", TOKEN).display().to_string();
    }));
    let (web, chat) = (daemon.addrs("web")[0], daemon.addrs("chat")[0]);
    let mut kim = TcpChat::join(chat).await;
    kim.send(b"hello from kim\n").await;
    let said = act(web, Some(TOKEN), "say", r#"{"text": "pens down"}"#).await;
    assert_eq!(said.status, 200, "{}", said.text());
    let path = "/api/v1/teacher/transcript";
    let auth = format!("Bearer {TOKEN}");
    let deadline = Instant::now() + HANG;
    let text = loop {
        let answer = common::web::get_with(web, path, &[("Authorization", &auth)]).await;
        let text = answer.text();
        if answer.status == 200 && text.contains("\tteacher\tsay pens down") {
            let kind = answer.header("content-type").unwrap_or_default();
            assert!(kind.starts_with("text/tab-separated-values"), "{kind}");
            let disposition = answer.header("content-disposition").unwrap_or_default();
            assert!(
                disposition.starts_with("attachment; filename=\""),
                "{disposition}"
            );
            break text;
        }
        assert!(Instant::now() < deadline, "{}: {text}", answer.status);
        sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(text.contains("\thello from kim"), "{text}");
    assert!(text.contains("*** teacher: pens down"), "{text}");
    let anyone = get(web, path).await;
    assert_eq!(
        anyone.status,
        401,
        "not for read-only viewers: {}",
        anyone.text()
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn without_a_transcript_there_is_none_to_download() {
    let (daemon, web, _, _) = class("no-transcript", Some(TOKEN));
    let auth = format!("Bearer {TOKEN}");
    let path = "/api/v1/teacher/transcript";
    let answer = common::web::get_with(web, path, &[("Authorization", &auth)]).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("[chat] transcript")
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_block_removes_the_chat_clients_of_the_address() {
    let (daemon, web, chat, _) = class("removes", Some(TOKEN));
    let mut kim = TcpChat::join(chat).await;
    let mut lee = TcpChat::join(chat).await;
    id_of(web, &lee).await;
    let answer = act(
        web,
        Some(TOKEN),
        "block",
        r#"{"addr": "127.0.0.1", "seconds": 600}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["whom"],
        "127.0.0.1 for 10 minutes (2 chat clients removed)"
    );
    for client in [&mut kim, &mut lee] {
        client.until("*** removed by the teacher").await;
        assert_eq!(client.line().await, None, "closed");
    }
    daemon.shutdown().await;
}
