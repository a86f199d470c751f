//! The live web page in a headless chromium (tests/common/browser.rs),
//! against the daemon in-process on 127.0.0.1:0 (the real binary for the
//! restart): what students do over raw TCP and UDP shows on the page, the
//! chat box reaches the room, hostile text stays text, the page comes back
//! after a restart, pauses, speaks Korean; and a screenshot of a busy
//! classroom for the README. Every wait is for something the page shows.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::browser::{Browser, browser};
use common::{Proc, config, skip, start};
use fantoccini::Locator;
use fantoccini::key::Key;
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};

/// How long the page may take to show what it will show: snapshots come
/// four times a second, so this is only a guard for a loaded machine.
const SEEN: Duration = Duration::from_secs(5);

/// A line of the room, the text after its time.
const ROOM_TEXT: &str = "#room .room-line .text";
const MEMBER_NAME: &str = "#members tbody tr[data-id] .name";

/// The daemon with its web page and what `edit` enables, and a browser on
/// the page once it has drawn its first snapshot; `None` (skipped) with no
/// browser.
async fn open_page(edit: impl FnOnce(&mut Config)) -> Option<(Daemon, Browser)> {
    let browser = browser().await?;
    let daemon = start(config(|c| {
        c.web.enabled = true;
        edit(c);
    }));
    goto_page(&browser, daemon.addrs("web")[0]).await;
    Some((daemon, browser))
}

/// Opens the page at `web` and waits for its first snapshot (the service
/// cards are drawn from it).
async fn goto_page(browser: &Browser, web: SocketAddr) {
    browser.goto(&format!("http://{web}/")).await.unwrap();
    browser
        .wait_for("#service-list .service", SEEN)
        .await
        .unwrap();
}

/// The browser, then the daemon, ended.
async fn close(browser: Browser, daemon: Daemon) {
    browser.close().await;
    assert!(daemon.shutdown().await, "the daemon stops within its grace");
}

/// The text of the first element matching `css`, as shown. Read in one
/// script: the page redraws a list as it changes (every snapshot, while a
/// member's time connected counts up), so an element found by one
/// WebDriver call may be gone by the next.
async fn text_of(browser: &Browser, css: &str) -> String {
    let js = format!("return document.querySelector({css:?})?.innerText ?? null");
    match browser.eval(&js).await {
        Value::String(text) => text,
        other => panic!("no {css} on the page: {other}"),
    }
}

/// The texts of every element matching `css`, read in one script.
async fn texts_of(browser: &Browser, css: &str) -> Vec<String> {
    let js = format!("return [...document.querySelectorAll({css:?})].map((e) => e.innerText)");
    let texts = browser.eval(&js).await;
    let texts = texts.as_array().unwrap_or_else(|| panic!("{css}: {texts}"));
    texts
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `js` (a function body) until it returns `true`; how long that
/// took, or what it returned last.
async fn until_js(browser: &Browser, js: &str, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let value = browser.eval(js).await;
        if value == json!(true) {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= within {
            return Err(format!("{js:?} still {value} after {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const BANNER_SHOWN: &str = "return !document.getElementById('banner').classList.contains('hidden')";
const BANNER_HIDDEN: &str = "return document.getElementById('banner').classList.contains('hidden')";

/// A student on the chat hub over raw TCP, as netcat would be.
struct Student {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    addr: SocketAddr,
}

impl Student {
    /// Connects to the hub at `chat` and, once welcomed, takes `name`.
    async fn join(chat: SocketAddr, name: &str) -> Student {
        let stream = TcpStream::connect(chat).await.unwrap();
        let addr = stream.local_addr().unwrap();
        let (reader, writer) = stream.into_split();
        let mut student = Student {
            reader: BufReader::new(reader),
            writer,
            addr,
        };
        student.until("*** welcome").await;
        student.send(format!("/nick {name}\n").as_bytes()).await;
        student.until("*** you are now").await;
        student
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next line (invalid UTF-8 as U+FFFD), or None at the end or after [`SEEN`].
    async fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match tokio::time::timeout(SEEN, self.reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&line).into_owned()),
            _ => None,
        }
    }

    /// The first line containing `needle` (those before it skipped).
    async fn until(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        while let Some(line) = self.line().await {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        panic!("no line with {needle:?}; got {seen:#?}");
    }
}

/// Sends `bytes` to JSON echo at `addr` from `ip`; its first reply line.
async fn json_exchange(ip: &str, addr: SocketAddr, bytes: &[u8]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    tokio::time::timeout(SEEN, reader.read_line(&mut reply))
        .await
        .expect("JSON echo answers")
        .unwrap();
    reply
}

/// A UDP socket on 127.0.0.1 with a source port below 1024 (this runs as
/// root in CI), or None after a [`skip`].
async fn low_port_socket() -> Option<UdpSocket> {
    let mut last = None;
    for port in [853, 854, 855, 856, 857, 858, 859, 860] {
        match UdpSocket::bind(("127.0.0.1", port)).await {
            Ok(socket) => return Some(socket),
            Err(e) => last = Some(e),
        }
    }
    skip(format_args!(
        "no UDP socket on a port below 1024 (needs root): {last:?}"
    ));
    None
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The host's name, as the page shows it.
fn host_name() -> String {
    hostname::get()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// One string of the page's translation `lang`.
fn translation(lang: &str, key: &str) -> String {
    let table = match lang {
        "en" => include_str!("../src/services/web/assets/i18n/en.json"),
        "ko" => include_str!("../src/services/web/assets/i18n/ko.json"),
        other => panic!("no translation {other}"),
    };
    let table: Value = serde_json::from_str(table).unwrap();
    table[key]
        .as_str()
        .unwrap_or_else(|| panic!("{lang} has no {key}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_tcp_chat_client_shows_in_the_members_and_its_line_in_the_room() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    let chat = daemon.addrs("chat")[0];

    let joined = Instant::now();
    let mut kim = Student::join(chat, "kim").await;
    // Typically well within 1 s (snapshots come every 250 ms); 2 s on a loaded machine.
    let name = browser
        .wait_for_text(MEMBER_NAME, "kim", Duration::from_secs(2))
        .await
        .unwrap();
    let took = joined.elapsed();
    assert_eq!(name, "kim");
    assert!(took < Duration::from_secs(2), "kim shown after {took:?}");
    let addr = text_of(&browser, "#members tbody tr[data-id] .addr").await;
    assert_eq!(addr, kim.addr.to_string(), "the member's address");

    kim.send(b"hello\n").await;
    let line = browser
        .wait_for_text(ROOM_TEXT, "hello", SEEN)
        .await
        .unwrap();
    assert_eq!(line, "[kim] hello");
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_typed_in_the_chat_box_reaches_tcp_clients_and_is_not_echoed() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    let mut kim = Student::join(daemon.addrs("chat")[0], "kim").await;

    let name = browser.wait_for("#chat-name", SEEN).await.unwrap();
    name.send_keys("webby").await.unwrap();
    browser
        .find(Locator::Css("#chat-join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#chat-state[data-state=joined]", SEEN)
        .await
        .unwrap();
    let input = browser.wait_for("#chat-input:enabled", SEEN).await.unwrap();
    input
        .send_keys(&format!("hi from the page{}", char::from(Key::Enter)))
        .await
        .unwrap();

    assert_eq!(
        kim.until("hi from the page").await,
        "[webby] hi from the page\n"
    );
    kim.send(b"back\n").await;
    let heard = browser
        .wait_for_text("#chat-log div.heard", "[kim] back", SEEN)
        .await
        .unwrap();
    assert_eq!(heard, "[kim] back");
    // kim's reply came after the page's line: an echo would be in the log by now.
    let heard = texts_of(&browser, "#chat-log div.heard").await;
    assert!(
        heard.iter().all(|line| !line.contains("hi from the page")),
        "not echoed: {heard:#?}"
    );
    let mine = texts_of(&browser, "#chat-log div.mine").await;
    assert_eq!(
        mine,
        [translation("en", "chatbox.mine").replace("{text}", "hi from the page")]
    );
    assert_eq!(
        text_of(&browser, "#chat-input").await,
        "",
        "the input is emptied"
    );
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_shows_as_an_error_with_its_column_and_the_character_marked() {
    let Some((daemon, browser)) = open_page(|_| {}).await else {
        return;
    };
    let json = daemon.addrs("json_echo")[0];
    let bad = br#"{"name": "jung", "ok": tru}"#;
    let reply = json_exchange("127.0.0.1", json, &[&bad[..], b"\n"].concat()).await;
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let column = reply["column"].as_u64().expect("the reply has a column");
    assert_eq!(column, 24, "the column of the t of tru: {reply}");

    let error = browser
        .wait_for_text(
            "#json-activity .event[data-kind=error] .error",
            "column",
            SEEN,
        )
        .await
        .unwrap();
    assert!(error.contains(&format!("column {column}")), "{error}");
    assert!(error.contains("line 1"), "{error}");
    let mark = text_of(
        &browser,
        "#json-activity .event[data-kind=error] .input span.mark",
    )
    .await;
    assert_eq!(mark, "t");
    let input = text_of(&browser, "#json-activity .event[data-kind=error] .input").await;
    assert_eq!(
        input.trim_end_matches("\\n").as_bytes(),
        bad,
        "the input as sent"
    );
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_from_a_port_below_1024_shows_as_refused_with_the_reason() {
    let Some(socket) = low_port_socket().await else {
        return;
    };
    let Some((daemon, browser)) = open_page(|_| {}).await else {
        return;
    };
    let echo = daemon.addrs("udp_echo")[0];
    socket.send_to(b"from a low port", echo).await.unwrap();

    let reason = browser
        .wait_for_text("#udp-activity .event .reason", "below 1024", SEEN)
        .await
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    assert!(reason.contains(&format!("source port {port}")), "{reason}");
    let kind = browser
        .find(Locator::Css("#udp-activity .event"))
        .await
        .unwrap()
        .attr("data-kind")
        .await
        .unwrap();
    assert_eq!(kind.as_deref(), Some("refused"));
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_lines_and_json_show_as_text_and_run_nothing() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    // A name has no spaces: `/` separates an HTML tag's attributes as well.
    let name = "<img/src=x/onerror=alert(1)>";
    let mut student = Student::join(daemon.addrs("chat")[0], name).await;
    student
        .send(b"<script>window.pwned=1</script>\n<b>bold</b>\na\x07b\xffc\n")
        .await;
    let key = "<img src=x onerror=window.pwned=2>";
    let json = format!("{{\"{key}\": 1}}\n");
    let echoed = json_exchange("127.0.0.1", daemon.addrs("json_echo")[0], json.as_bytes()).await;
    assert_eq!(echoed, format!("{{\"{key}\":1}}\n"));

    let shown = browser
        .wait_for_text(MEMBER_NAME, name, SEEN)
        .await
        .unwrap();
    assert_eq!(shown, name);
    // The hub relays control characters and invalid UTF-8 as U+FFFD.
    for line in [
        "<script>window.pwned=1</script>",
        "<b>bold</b>",
        "a\u{fffd}b\u{fffd}c",
    ] {
        let shown = browser.wait_for_text(ROOM_TEXT, line, SEEN).await.unwrap();
        assert_eq!(shown, format!("[{name}] {line}"));
    }
    let input = browser
        .wait_for_text("#json-activity .event .input", key, SEEN)
        .await
        .unwrap();
    assert_eq!(input, json.trim_end());
    let output = text_of(&browser, "#json-activity .event .output").await;
    assert_eq!(output.trim_end_matches("\\n"), format!("{{\"{key}\":1}}"));
    // Bytes that are no text at all show escaped, and say so.
    json_exchange(
        "127.0.0.2",
        daemon.addrs("json_echo")[0],
        b"[\"a\x07b\xffc\"]\n",
    )
    .await;
    let input = browser
        .wait_for_text(
            "#json-activity .event[data-kind=error] .input",
            "\\xff",
            SEEN,
        )
        .await
        .unwrap();
    // The bell is escaped too (`\u{7}`; docs/web-api.md says `\x07`).
    assert!(input.starts_with(r#"["a\"#), "{input}");
    assert!(input.contains(r#"b\xffc"]"#), "{input}");
    assert!(!input.contains('\x07'), "{input:?}");
    // The error is at the bell: its whole escape is marked, not its backslash.
    let mark = text_of(&browser, "#json-activity .event[data-kind=error] .mark").await;
    assert!(mark == r"\u{7}" || mark == r"\x07", "{mark:?}");
    let marker = text_of(&browser, "#json-activity .event[data-kind=error] .invalid").await;
    assert_eq!(marker, translation("en", "shown.invalid"));

    let made = browser
        .eval(
            "return ['#room', '#members', '#json-activity']
               .map((box) => document.querySelectorAll(`${box} img, ${box} script, ${box} b`).length)",
        )
        .await;
    assert_eq!(
        made,
        json!([0, 0, 0]),
        "no element made of what students sent"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('img').length")
            .await,
        json!(1),
        "only the page's own icon"
    );
    assert_eq!(
        browser.eval("return typeof window.pwned").await,
        json!("undefined")
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    close(browser, daemon).await;
}

/// The real binary with the chat on 127.0.0.1:0 and the page on `web`.
fn restart_config(web: u16) -> String {
    format!(
        "[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n\
         [announcer]\nenabled = false\n[discovery]\nenabled = false\n\
         [chat]\nlisten = \"127.0.0.1:0\"\n\
         [web]\nlisten = \"127.0.0.1:{web}\"\n"
    )
}

/// The addresses of `proc`'s chat and web page, read off its log.
fn chat_and_web(proc: &mut Proc) -> (SocketAddr, SocketAddr) {
    let addrs = tokio::task::block_in_place(|| proc.addrs(&["chat", "web"]));
    (addrs["chat"], addrs["web"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_it_lost_the_daemon_and_comes_back_after_a_restart() {
    let Some(browser) = browser().await else {
        return;
    };
    let port = free_port();
    let (mut daemon, path) = Proc::on_config("web-page-restart", &restart_config(port));
    let (chat, web) = chat_and_web(&mut daemon);
    assert_eq!(web.port(), port);
    goto_page(&browser, web).await;
    browser
        .wait_for_text("#host", &host_name(), SEEN)
        .await
        .unwrap();
    until_js(&browser, BANNER_HIDDEN, SEEN).await.unwrap();
    let mut before = Student::join(chat, "before").await;
    before.send(b"before the restart\n").await;
    browser
        .wait_for_text(ROOM_TEXT, "before the restart", SEEN)
        .await
        .unwrap();

    daemon.signal("TERM");
    let stopped = Instant::now();
    let code = tokio::task::block_in_place(|| daemon.exit_code(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", daemon.log.join("\n"));
    until_js(&browser, BANNER_SHOWN, Duration::from_secs(3))
        .await
        .unwrap();
    let lost = stopped.elapsed();
    drop(before);

    let mut daemon = Proc::start(&["--config", path.to_str().unwrap()]);
    let (chat, web) = chat_and_web(&mut daemon);
    assert_eq!(web.port(), port, "the page on the same port again");
    // The page tries again after 1 s, 2 s, 4 s, then every 5 s.
    let back = until_js(&browser, BANNER_HIDDEN, Duration::from_secs(10))
        .await
        .unwrap();
    let mut after = Student::join(chat, "after").await;
    after.send(b"after the restart\n").await;
    browser
        .wait_for_text(ROOM_TEXT, "after the restart", SEEN)
        .await
        .unwrap();
    // A fresh snapshot: the old daemon's room is gone from the page.
    let room = texts_of(&browser, ROOM_TEXT).await;
    assert!(
        room.iter().all(|line| !line.contains("before the restart")),
        "{room:#?}"
    );
    eprintln!("banner shown {lost:?} after SIGTERM; hidden {back:?} after the restart");

    daemon.signal("TERM");
    let code = tokio::task::block_in_place(|| daemon.exit_code(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", daemon.log.join("\n"));
    browser.close().await;
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_the_room_as_it_was_until_resumed() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    let chat = daemon.addrs("chat")[0];
    let mut kim = Student::join(chat, "kim").await;
    let mut lee = Student::join(chat, "lee").await;
    kim.send(b"line 1\nline 2\n").await;
    browser
        .wait_for_text(ROOM_TEXT, "line 2", SEEN)
        .await
        .unwrap();

    let pause = browser.find(Locator::Css("#pause")).await.unwrap();
    pause.click().await.unwrap();
    assert_eq!(
        pause.attr("aria-pressed").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        pause.text().await.unwrap(),
        translation("en", "header.resume")
    );
    let paused = text_of(&browser, "#room").await;

    kim.send(b"line 3\nline 4\n").await;
    assert_eq!(lee.until("line 4").await, "[kim] line 4\n");
    // The server has them: snapshots with them are due within 250 ms.
    let room: Value = browser
        .eval("return fetch('/api/v1/room').then((r) => r.json())")
        .await;
    assert!(room.to_string().contains("[kim] line 4"), "{room}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(text_of(&browser, "#room").await, paused, "paused");

    pause.click().await.unwrap();
    assert_eq!(
        pause.attr("aria-pressed").await.unwrap().as_deref(),
        Some("false")
    );
    let line = browser
        .wait_for_text(ROOM_TEXT, "line 4", SEEN)
        .await
        .unwrap();
    assert_eq!(line, "[kim] line 4");
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_korean_the_labels_change_and_korean_names_and_lines_are_intact() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    assert_eq!(
        text_of(&browser, "#services-title").await,
        translation("en", "services.title")
    );
    let korean = browser.wait_for("#lang-ko", SEEN).await.unwrap();
    assert_eq!(korean.text().await.unwrap(), "한국어");
    korean.click().await.unwrap();
    let services = translation("ko", "services.title");
    browser
        .wait_for_text("#services-title", &services, SEEN)
        .await
        .unwrap();
    for (css, key) in [
        ("#chat-title", "chat.title"),
        ("#json-title", "json.title"),
        ("#pause", "header.pause"),
        ("#chat-join", "chatbox.join"),
    ] {
        assert_eq!(
            text_of(&browser, css).await,
            translation("ko", key),
            "{css}"
        );
    }
    assert_eq!(
        browser.eval("return document.documentElement.lang").await,
        json!("ko")
    );

    let mut student = Student::join(daemon.addrs("chat")[0], "김민수").await;
    student.send("안녕하세요\n".as_bytes()).await;
    let name = browser
        .wait_for_text(MEMBER_NAME, "김민수", SEEN)
        .await
        .unwrap();
    assert_eq!(name, "김민수");
    let line = browser
        .wait_for_text(ROOM_TEXT, "안녕하세요", SEEN)
        .await
        .unwrap();
    assert_eq!(line, "[김민수] 안녕하세요");

    // The choice is remembered: the page comes back in Korean.
    browser.refresh().await.unwrap();
    browser
        .wait_for_text("#services-title", &services, SEEN)
        .await
        .unwrap();
    close(browser, daemon).await;
}

/// Where the README's screenshot goes: the target directory of this build.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("web-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_of_a_running_classroom() {
    let Some((daemon, browser)) = open_page(|c| c.chat.enabled = true).await else {
        return;
    };
    let chat = daemon.addrs("chat")[0];
    let json = daemon.addrs("json_echo")[0];
    let echo = daemon.addrs("udp_echo")[0];

    let mut minsu = Student::join(chat, "김민수").await;
    let mut kim = Student::join(chat, "kim").await;
    let mut lee = Student::join(chat, "lee").await;
    let _park = Student::join(chat, "park").await;
    kim.send(b"hello everyone\n").await;
    minsu.send("안녕하세요!\n".as_bytes()).await;
    lee.send(b"is the JSON echo up?\n").await;
    kim.send(b"yes, try port 9000\n").await;

    json_exchange("127.0.0.2", json, br#"{"name": "jung", "ok": true}"#).await;
    json_exchange("127.0.0.3", json, b"{\"name\": \"jung\", \"ok\": tru}\n").await;
    let student = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    student.send_to(b"ping 1", echo).await.unwrap();
    let mut reply = [0u8; 64];
    let got = tokio::time::timeout(SEEN, student.recv_from(&mut reply)).await;
    assert!(got.is_ok(), "the UDP echo answers");
    let refused = low_port_socket().await;
    if let Some(socket) = &refused {
        socket.send_to(b"ping", echo).await.unwrap();
    }

    browser
        .wait_for_text(ROOM_TEXT, "port 9000", SEEN)
        .await
        .unwrap();
    browser
        .wait_for_text(MEMBER_NAME, "park", SEEN)
        .await
        .unwrap();
    browser
        .wait_for("#json-activity .event[data-kind=error]", SEEN)
        .await
        .unwrap();
    browser
        .wait_for("#json-activity .event[data-kind=exchange]", SEEN)
        .await
        .unwrap();
    browser
        .wait_for("#udp-activity .event[data-kind=datagram]", SEEN)
        .await
        .unwrap();
    if refused.is_some() {
        browser
            .wait_for("#udp-activity .event[data-kind=refused]", SEEN)
            .await
            .unwrap();
    }

    // The whole page, 1400 wide.
    let height = browser
        .eval("return document.documentElement.scrollHeight")
        .await
        .as_u64()
        .unwrap();
    let height = u32::try_from(height).unwrap().clamp(800, 4000);
    browser.set_window_size(1400, height + 100).await.unwrap();
    let path = screenshot_path();
    let png = browser.screenshot(&path).await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 10_000, "a page's worth: {} bytes", png.len());
    eprintln!("screenshot: {}", path.display());
    close(browser, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_activity_shows_inputs_and_replies_without_their_line_ends() {
    let Some((daemon, browser)) = open_page(|_| {}).await else {
        return;
    };
    let json = daemon.addrs("json_echo")[0];
    json_exchange("127.0.0.1", json, b"{\"ok\": true}\n").await;
    json_exchange("127.0.0.2", json, b"{\"ok\": tru}\n").await;
    browser
        .wait_for("#json-activity .event[data-kind=exchange]", SEEN)
        .await
        .unwrap();
    browser
        .wait_for("#json-activity .event[data-kind=error]", SEEN)
        .await
        .unwrap();
    let shown = texts_of(
        &browser,
        "#json-activity .event .input, #json-activity .event .output",
    )
    .await;
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown.iter().all(|text| !text.ends_with("\\n")),
        "{shown:#?}"
    );
    close(browser, daemon).await;
}
