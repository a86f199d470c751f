//! The headless-browser harness (tests/common/browser.rs) against a page
//! served here on 127.0.0.1: finding, clicking, waiting for text, reading
//! markup back literally, screenshots, the console, and the skip when a
//! program is missing.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::browser;
use fantoccini::Locator;
use serde_json::json;

/// Longer than anything here takes: only a guard against a hang.
const WAIT: Duration = Duration::from_secs(10);

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title><link rel="icon" href="data:,"></head>
<body>
<h1>Harness page</h1>
<button id="go">Press</button>
<p id="status">idle</p>
<p id="echo"></p>
<script src="/app.js"></script>
</body></html>
"#;

/// The change comes a little after the click, so finding it takes a wait.
const APP_JS: &str = r#"
let presses = 0;
document.getElementById("go").addEventListener("click", () => {
  presses += 1;
  document.getElementById("echo").textContent = "<b>not bold</b> & <i>";
  setTimeout(() => {
    document.getElementById("status").textContent = `pressed ${presses} time`;
  }, 150);
});
"#;

const BROKEN: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>broken</title><link rel="icon" href="data:,"></head>
<body><p id="status">idle</p><script src="/broken.js"></script></body></html>
"#;

const BROKEN_JS: &str = r#"
console.error("broken.js ran");
throw new Error("thrown on purpose");
"#;

/// A tiny HTTP server on 127.0.0.1 for the pages above; its base URL. Each
/// connection gets a thread (the browser may open one it never uses).
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || answer(stream));
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = match path {
        "/" => ("200 OK", "text/html; charset=utf-8", PAGE),
        "/app.js" => ("200 OK", "text/javascript", APP_JS),
        "/broken" => ("200 OK", "text/html; charset=utf-8", BROKEN),
        "/broken.js" => ("200 OK", "text/javascript", BROKEN_JS),
        _ => ("404 Not Found", "text/plain", "not here\n"),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// The process `pid` is gone (and reaped).
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_click_changes_the_page() {
    let Some(browser) = browser().await else {
        return;
    };
    let site = serve();
    browser.goto(&format!("{site}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "harness");

    let button = browser.wait_for("#go", WAIT).await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Press");
    assert_eq!(
        browser.wait_for_text("#status", "idle", WAIT).await,
        Ok("idle".to_owned())
    );
    button.click().await.unwrap();
    assert_eq!(
        browser.wait_for_text("p", "pressed", WAIT).await,
        Ok("pressed 1 time".to_owned())
    );

    // Markup set as text is text: it reads back as written, and no element was made of it.
    let echo = browser.find(Locator::Css("#echo")).await.unwrap();
    assert_eq!(echo.text().await.unwrap(), "<b>not bold</b> & <i>");
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#echo *, b, i').length")
            .await,
        json!(0)
    );

    let dir = common::temp_dir("browser-harness");
    let path = dir.join("page.png");
    let png = browser.screenshot(&path).await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 1000,
        "a page's worth of PNG: {} bytes",
        png.len()
    );
    assert_eq!(std::fs::read(&path).unwrap(), png);
    std::fs::remove_dir_all(&dir).unwrap();

    let driver = browser.driver_pid();
    browser.close().await;
    assert!(gone(driver), "chromedriver ended with the session");
}

#[tokio::test]
async fn waits_say_what_they_saw_and_the_console_is_read() {
    let Some(browser) = browser().await else {
        return;
    };
    let site = serve();
    browser.goto(&format!("{site}/broken")).await.unwrap();

    let missed = browser
        .wait_for_text("#status", "pressed", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(missed.contains(r#"saw ["idle"]"#), "{missed}");
    let missing = browser
        .wait_for("#nothing", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(missing.contains("#nothing"), "{missing}");

    // The page's console.error and its uncaught exception, both before its load ended.
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("broken.js ran")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("thrown on purpose")),
        "{errors:#?}"
    );
    // Reading empties the log; a script's logging shows up at the next read.
    assert_eq!(
        browser
            .eval("console.error('from eval'); console.log('not an error'); return 1 + 1")
            .await,
        json!(2)
    );
    let console = browser.console().await;
    assert_eq!(console.len(), 2, "{console:#?}");
    assert_eq!(console[0]["level"], "SEVERE");
    assert!(
        console[0]["message"]
            .as_str()
            .unwrap()
            .contains("from eval")
    );
    assert_eq!(console[1]["level"], "INFO");

    // Only 127.0.0.1 and localhost resolve: even another loopback address is "not found".
    let elsewhere = site.replace("127.0.0.1", "127.0.0.2");
    let refused = browser.goto(&elsewhere).await.unwrap_err().to_string();
    assert!(refused.contains("ERR_NAME_NOT_RESOLVED"), "{refused}");

    // No close: Drop ends it all, as after a failed assertion.
    let driver = browser.driver_pid();
    drop(browser);
    assert!(gone(driver), "chromedriver ended on drop");
}

/// This test binary run again, on [`a_click_changes_the_page`] only, with
/// the programs as in `env` (nothing inherited) and `PINETD_REQUIRE_ALL`
/// as given: did it pass, and what it said.
fn run_browser_test(env: &[(&str, &str)], require_all: Option<&str>) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["a_click_changes_the_page", "--exact", "--nocapture"])
        .env_remove("PINETD_CHROMEDRIVER")
        .env_remove("PINETD_CHROMIUM")
        .env_remove("PINETD_REQUIRE_ALL")
        .envs(env.iter().copied());
    if let Some(value) = require_all {
        command.env("PINETD_REQUIRE_ALL", value);
    }
    let out = command.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn a_missing_program_skips_unless_all_are_required() {
    // Some program that exists, for the driver when chromium is the one missing:
    // the check comes before anything is started.
    let exists = std::env::current_exe().unwrap();
    let exists = exists.to_str().unwrap();
    for (env, named) in [
        (
            [("PINETD_CHROMEDRIVER", "/nonexistent/chromedriver")].as_slice(),
            "no program /nonexistent/chromedriver (from PINETD_CHROMEDRIVER)",
        ),
        (
            &[
                ("PINETD_CHROMEDRIVER", exists),
                ("PINETD_CHROMIUM", "/nonexistent/chromium"),
            ],
            "no program /nonexistent/chromium (from PINETD_CHROMIUM)",
        ),
    ] {
        let (passed, said) = run_browser_test(env, None);
        assert!(passed, "{said}");
        assert!(said.contains("skipped: no browser tests:"), "{said}");
        assert!(said.contains(named), "{said}");
        assert!(said.contains("1 passed"), "{said}");

        let (passed, said) = run_browser_test(env, Some("1"));
        assert!(!passed, "{said}");
        assert!(
            said.contains("cannot skip with PINETD_REQUIRE_ALL set"),
            "{said}"
        );
        assert!(said.contains(named), "{said}");
    }
}
