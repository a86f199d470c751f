//! The teacher's controls on the live page, in a headless chromium
//! (tests/common/browser.rs) against the daemon in-process: a wrong token
//! is told, the right one shows the controls (and only then), a block made
//! on the page is listed with its time left and refuses the address,
//! unblocked by a click; kick and mute from a member's row. Every wait is
//! for something the page shows; a screenshot goes to /tmp/teacher.png.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::browser::{Browser, browser};
use common::{config, start, temp_dir};
use fantoccini::Locator;
use pinetd::daemon::Daemon;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long the page may take to show what it will show (snapshots come
/// four times a second): a guard for a loaded machine.
const SEEN: Duration = Duration::from_secs(5);
const TOKEN: &str = "chalk-and-talk-42";
const MEMBER_NAME: &str = "#members tbody tr[data-id] .name";

/// The daemon with the chat, the web page and a token file, and a browser
/// on the page once it has drawn; `None` (skipped) with no browser.
async fn open_page(test: &str) -> Option<(Daemon, Browser)> {
    let browser = browser().await?;
    let token: PathBuf = temp_dir(&format!("teacher-page-{test}")).join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let daemon = start(config(|c| {
        c.web.enabled = true;
        c.chat.enabled = true;
        c.web.admin_token_file = token.display().to_string();
        let transcript = temp_dir(&format!("teacher-page-{test}-transcript"));
        c.chat.transcript = transcript.display().to_string();
    }));
    let web = daemon.addrs("web")[0];
    browser.goto(&format!("http://{web}/")).await.unwrap();
    browser
        .wait_for("#service-list .service", SEEN)
        .await
        .unwrap();
    Some((daemon, browser))
}

/// A student on the chat over raw TCP, as netcat would be.
struct Student {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Student {
    async fn join(chat: SocketAddr, name: &str) -> Student {
        let (reader, writer) = TcpStream::connect(chat).await.unwrap().into_split();
        let mut student = Student {
            reader: BufReader::new(reader),
            writer,
        };
        student.until("*** welcome").await;
        student.send(&format!("/nick {name}\n")).await;
        student.until("*** you are now").await;
        student
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// The first line containing `needle`; panics at the end or after [`SEEN`].
    async fn until(&mut self, needle: &str) -> String {
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(SEEN, self.reader.read_line(&mut line)).await;
            assert!(matches!(read, Ok(Ok(1..))), "no line with {needle:?}");
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// Types `text` into the input `css` and submits its form.
async fn submit(browser: &Browser, css: &str, text: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    let js = format!("document.querySelector({css:?}).form.requestSubmit(); return true;");
    browser.eval(&js).await;
}

/// Runs `js` on the control `control` (`button.kick`, `select.mute`) of the
/// member named `name`, found afresh (the list is redrawn as it changes).
async fn on_member(browser: &Browser, name: &str, control: &str, js: &str) {
    let script = format!(
        "const row = [...document.querySelectorAll('#members tbody tr[data-id]')]
           .find((r) => r.querySelector('.name')?.textContent.split(' ')[0] === {name:?});
         const control = row?.querySelector({control:?});
         if (!control) return false;
         {js}
         return true;"
    );
    assert_eq!(
        browser.eval(&script).await,
        json!(true),
        "{name}'s {control}"
    );
}

/// How many elements match `css`.
async fn count(browser: &Browser, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teacher_signs_in_and_blocks_and_unblocks_from_the_page() {
    let Some((daemon, browser)) = open_page("block").await else {
        return;
    };
    let chat = daemon.addrs("chat")[0];
    let _kim = Student::join(chat, "kim").await;
    let _minsu = Student::join(chat, "김민수").await;
    let _lee = Student::join(chat, "lee").await;
    browser
        .wait_for_text(MEMBER_NAME, "lee", SEEN)
        .await
        .unwrap();
    browser.wait_for("#teacher-signin", SEEN).await.unwrap();
    assert_eq!(
        count(&browser, "#members button.kick").await,
        0,
        "read-only: no controls"
    );

    sign_in(&browser).await;

    block_two(&browser, chat).await;
    say_and_mute(&browser).await;
    screenshot(&browser).await;
    let unblock = "#teacher-blocks tbody tr:first-child button";
    browser
        .find(Locator::Css(unblock))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("#teacher-actions .what", "unblocked", SEEN)
        .await
        .unwrap();
    assert_eq!(count(&browser, "#teacher-blocks td.addr").await, 1);

    browser
        .find(Locator::Css("#teacher-signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#teacher-signin:not(.hidden)", SEEN)
        .await
        .unwrap();
    assert_eq!(
        count(&browser, "#members button.kick").await,
        0,
        "signed out: no controls"
    );
    no_console_errors(&browser).await;
    browser.close().await;
    assert!(daemon.shutdown().await);
}

/// A wrong token is told and shows nothing; the right one shows a Kick
/// button on each of the three members' rows.
async fn sign_in(browser: &Browser) {
    submit(browser, "#teacher-token", "not-the-token").await;
    browser
        .wait_for_text("#teacher-message", "Wrong token", SEEN)
        .await
        .unwrap();
    assert_eq!(count(browser, "#members button.kick").await, 0);
    submit(browser, "#teacher-token", TOKEN).await;
    browser
        .wait_for("#members tbody tr[data-id] button.kick", SEEN)
        .await
        .unwrap();
    assert_eq!(count(browser, "#members button.kick").await, 3);
}

/// Blocks 127.0.0.9 for the form's first time and 127.0.0.10 for an hour,
/// each listed; the first is refused by the chat at `chat`.
async fn block_two(browser: &Browser, chat: SocketAddr) {
    submit(browser, "#teacher-block-addr", "127.0.0.9").await;
    browser
        .wait_for_text("#teacher-blocks td.addr", "127.0.0.9", SEEN)
        .await
        .unwrap();
    browser
        .wait_for_text("#teacher-blocks td.left", "m", SEEN)
        .await
        .unwrap();
    let js = "document.getElementById('teacher-block-time').value = '3600'; return true;";
    browser.eval(js).await;
    submit(browser, "#teacher-block-addr", "127.0.0.10").await;
    browser
        .wait_for_text("#teacher-actions .whom", "127.0.0.10 for 60 minutes", SEEN)
        .await
        .unwrap();
    let mut blocked = common::web::connect_from("127.0.0.9", chat).await.unwrap();
    let mut told = String::new();
    blocked.read_to_string(&mut told).await.unwrap();
    assert!(
        told.starts_with("*** your address is blocked by the teacher for "),
        "{told:?}"
    );
}

/// Says a line to the room from the page and mutes lee: the room shows the
/// line, the actions list both, and the transcript can be downloaded.
async fn say_and_mute(browser: &Browser) {
    submit(browser, "#teacher-say-text", "Pens down, please").await;
    browser
        .wait_for_text("#room .room-line", "*** teacher: Pens down, please", SEEN)
        .await
        .unwrap();
    let mute = "control.value = '300'; control.dispatchEvent(new Event('change'));";
    on_member(browser, "lee", "select.mute", mute).await;
    browser
        .wait_for_text("#teacher-actions .whom", "for 5 minutes", SEEN)
        .await
        .unwrap();
    browser
        .wait_for("#teacher-transcript:not(.hidden)", SEEN)
        .await
        .unwrap();
}

/// Nothing in the browser's log but the wrong token's 401, which the
/// browser logs itself.
async fn no_console_errors(browser: &Browser) {
    let errors = browser.console_errors().await;
    let unexpected: Vec<_> = (errors.iter())
        .filter(|e| !e.contains("/api/v1/teacher/signin") || !e.contains("401"))
        .collect();
    assert!(unexpected.is_empty(), "{errors:?}");
}

/// The page as a teacher at a projector sees it, 1400 wide, to /tmp/teacher.png.
async fn screenshot(browser: &Browser) {
    let height = browser
        .eval("return document.documentElement.scrollHeight")
        .await;
    let height = u32::try_from(height.as_u64().unwrap())
        .unwrap()
        .clamp(800, 5000);
    browser.set_window_size(1400, height + 100).await.unwrap();
    let png = browser.screenshot("/tmp/teacher.png").await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teacher_kicks_and_mutes_from_the_page() {
    let Some((daemon, browser)) = open_page("kick").await else {
        return;
    };
    let chat = daemon.addrs("chat")[0];
    let mut kim = Student::join(chat, "kim").await;
    let mut lee = Student::join(chat, "lee").await;
    browser
        .wait_for_text(MEMBER_NAME, "lee", SEEN)
        .await
        .unwrap();
    submit(&browser, "#teacher-token", TOKEN).await;
    browser
        .wait_for("#members tbody tr[data-id] button.kick", SEEN)
        .await
        .unwrap();

    let mute = "control.value = '300'; control.dispatchEvent(new Event('change'));";
    on_member(&browser, "lee", "select.mute", mute).await;
    browser
        .wait_for_text("#teacher-actions .what", "muted", SEEN)
        .await
        .unwrap();
    lee.send("can anyone hear me\n").await;
    lee.until("*** you are muted by the teacher").await;
    // lee's row says so, with the time left.
    let badge = "#members tbody tr[data-id] .name .badge.muted";
    let shown = browser.wait_for_text(badge, "muted", SEEN).await.unwrap();
    assert!(shown.contains('m'), "{shown}");
    let lift = "control.value = '0'; control.dispatchEvent(new Event('change'));";
    on_member(&browser, "lee", "select.mute", lift).await;
    let unmuted = "return document.querySelectorAll(
        '#members tbody tr[data-id] .name .badge.muted').length === 0";
    let deadline = std::time::Instant::now() + SEEN;
    while browser.eval(unmuted).await != json!(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "lee still shown muted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    on_member(&browser, "kim", "button.kick", "control.click();").await;
    kim.until("*** removed by the teacher").await;
    browser
        .wait_for_text("#teacher-actions .what", "kicked", SEEN)
        .await
        .unwrap();
    let gone = "return ![...document.querySelectorAll('#members tbody tr[data-id] .name')]
        .some((n) => n.textContent.split(' ')[0] === 'kim')";
    let deadline = std::time::Instant::now() + SEEN;
    while browser.eval(gone).await != json!(true) {
        assert!(std::time::Instant::now() < deadline, "kim still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.close().await;
    assert!(daemon.shutdown().await);
}
