//! A headless chromium driven through chromedriver (WebDriver over plain
//! http on loopback), for tests of the web page.
//!
//! [`browser`] starts one chromedriver per test on a port of its own choosing
//! (`--port=0`; readiness is its "started successfully on port N" line, never
//! a sleep) and opens one session. chromedriver is started without
//! `--allowed-ips`: with it, chromedriver listens on every interface instead
//! of 127.0.0.1 and ::1 only. Chromium gets a fresh profile and `HOME` and
//! resolves nothing but `localhost` and 127.0.0.1 (any other name or address
//! is "not found"), so a page can reach nothing but this machine.
//!
//! The programs are `chromedriver` and `chromium` on `PATH`, or the paths in
//! `PINETD_CHROMEDRIVER` and `PINETD_CHROMIUM`; a missing one is a
//! [`skip`](super::skip).
//!
//! [`Browser`] runs chromedriver in a process group of its own, which the
//! browser's processes join (all but its crash handlers, which detach and
//! exit with the browser): [`Browser::close`] ends the session, then, like
//! `Drop` after a panic, kills that group and removes the browser's directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{HANG, skip};

/// How long chromedriver may take to say it listens.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How often the `wait_for*` helpers look again.
const POLL: Duration = Duration::from_millis(50);

/// One chromedriver, its session (`client`, also reached through `Deref`)
/// and the browser's directory (profile and `HOME`), all gone on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// chromedriver's address, for the endpoints fantoccini has no call for.
    driver_addr: SocketAddr,
    session: String,
    /// The browser's profile (`profile/`) and `HOME` (`home/`): nothing of
    /// it is written anywhere else.
    dir: PathBuf,
    /// The session was ended by [`Browser::close`].
    closed: bool,
}

/// A browser for one test, or `None` (after a [`skip`] naming the missing
/// program) when chromedriver or chromium is not installed. Anything else
/// that goes wrong (chromedriver exits, no session within [`HANG`]) panics.
pub async fn browser() -> Option<Browser> {
    let driver = match program("PINETD_CHROMEDRIVER", "chromedriver") {
        Ok(path) => path,
        Err(why) => {
            skip(format_args!(
                "no browser tests: {why} (package chromium-driver)"
            ));
            return None;
        }
    };
    let chromium = match program("PINETD_CHROMIUM", "chromium") {
        Ok(path) => path,
        Err(why) => {
            skip(format_args!("no browser tests: {why} (package chromium)"));
            return None;
        }
    };
    Some(Browser::start(&driver, &chromium).await)
}

/// The program named by `var` (a path if it has a `/`, else a name on
/// `PATH`), or `name` on `PATH`; why not, naming it.
fn program(var: &str, name: &str) -> Result<PathBuf, String> {
    let (wanted, how) = match std::env::var_os(var) {
        Some(value) if !value.is_empty() => (PathBuf::from(value), format!(" (from {var})")),
        _ => (PathBuf::from(name), String::new()),
    };
    let found = if wanted.components().count() > 1 {
        Some(wanted.clone()).filter(|path| executable(path))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&wanted))
                .find(|path| executable(path))
        })
    };
    found.ok_or_else(|| format!("no program {}{how}", wanted.display()))
}

fn executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Browser {
    async fn start(driver: &Path, chromium: &Path) -> Browser {
        let dir = fresh_dir();
        let (profile, home) = (dir.join("profile"), dir.join("home"));
        std::fs::create_dir(&profile).unwrap();
        std::fs::create_dir(&home).unwrap();
        let mut command = Command::new(driver);
        command
            .arg("--port=0")
            // The browser's dot-directories (its crash database) here, not in the real home.
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // chromedriver's warnings and the browser's own log.
            .stderr(Stdio::null())
            // Its own group, which the browser's processes join: Drop kills them all.
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", driver.display()));
        let mut lines = stdout_lines(&mut child);

        // "ChromeDriver was started successfully on port 38147."
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + DRIVER_START;
        let port = loop {
            let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    let status = child.wait();
                    remove_dir(&dir);
                    panic!("chromedriver exited ({status:?}) before it listened: {seen:#?}");
                }
                Err(_) => {
                    kill_group(&mut child);
                    remove_dir(&dir);
                    panic!("chromedriver not listening within {DRIVER_START:?}: {seen:#?}");
                }
            };
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok());
            seen.push(line);
            if let Some(port) = port {
                break port;
            }
        };
        let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));

        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    // Only loopback resolves: any other name or address is "not found".
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1400,1800",
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
            // A page that never loads or a script that never ends is an error, not a hang.
            "timeouts": { "pageLoad": 20_000, "script": 20_000, "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connecting = tokio::time::timeout(
            HANG,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://{driver_addr}")),
        )
        .await;
        let client = match connecting {
            Ok(Ok(client)) => client,
            failed => {
                kill_group(&mut child);
                remove_dir(&dir);
                match failed {
                    Ok(Err(e)) => panic!("no WebDriver session from chromedriver: {e}"),
                    _ => panic!("no WebDriver session from chromedriver within {HANG:?}"),
                }
            }
        };
        // From here on, Drop ends it all on every way out.
        let mut browser = Browser {
            client,
            driver: child,
            driver_addr,
            session: String::new(),
            dir,
            closed: false,
        };
        browser.session = match browser.client.session_id().await {
            Ok(Some(id)) => id,
            other => panic!("a new session has an id: {other:?}"),
        };
        browser
    }

    /// chromedriver's process id (also its process group's).
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// The first element matching `css`, once there is one; if none within
    /// `within`, says so.
    pub async fn wait_for(&self, css: &str, within: Duration) -> Result<Element, String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.client.find(Locator::Css(css)).await {
                Ok(element) => return Ok(element),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("no {css:?} within {within:?}: {last}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of the first element matching `css` whose text contains
    /// `needle`, looked for every 50 ms; if none within `within`, what the
    /// matching elements said the last time.
    pub async fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        within: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            match self.client.find_all(Locator::Css(css)).await {
                Ok(elements) => {
                    for element in elements {
                        // An element replaced since the find is no error, just not it.
                        match element.text().await {
                            Ok(text) if text.contains(needle) => return Ok(text),
                            Ok(text) => seen.push(text),
                            Err(e) => seen.push(format!("<{e}>")),
                        }
                    }
                }
                Err(e) => seen.push(format!("<{e}>")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {css:?} with {needle:?} within {within:?}; saw {seen:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A PNG of the window, written to `path`; its bytes.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Vec<u8> {
        let path = path.as_ref();
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, &png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        png
    }

    /// What `js` (a function body: `return ...`) returns, as JSON; panics,
    /// with the browser's message, if it throws.
    pub async fn eval(&self, js: &str) -> Value {
        self.client
            .execute(js, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {js:?} failed: {e}"))
    }

    /// The browser log (`console.*`, uncaught exceptions, failed loads)
    /// since the last call: each entry as chromedriver gives it, with
    /// `level` ("SEVERE", "WARNING", "INFO", ...) and `message`. Reading
    /// empties it. chromedriver's `/se/log`, asked directly: fantoccini
    /// has no call for it.
    pub async fn console(&self) -> Vec<Value> {
        let (addr, path) = (
            self.driver_addr,
            format!("/session/{}/se/log", self.session),
        );
        let reply = tokio::task::spawn_blocking(move || {
            driver_request(addr, "POST", &path, Some(&json!({ "type": "browser" })))
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot read the browser log: {e}"));
        match reply {
            Value::Array(entries) => entries,
            other => panic!("the browser log is not a list: {other}"),
        }
    }

    /// The messages of the SEVERE entries of [`Browser::console`] (which
    /// this empties, the other entries too): `console.error`, uncaught
    /// exceptions, failed loads.
    pub async fn console_errors(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Ends the session (the browser quits), then what `Drop` does.
    pub async fn close(mut self) {
        let ended = tokio::time::timeout(HANG, self.client.clone().close()).await;
        self.closed = matches!(ended, Ok(Ok(())));
    }
}

impl Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.closed {
            // A test that panicked: still let chromedriver end the browser.
            let path = format!("/session/{}", self.session);
            let _ = driver_request(self.driver_addr, "DELETE", &path, None);
        }
        kill_group(&mut self.driver);
        remove_dir(&self.dir);
    }
}

/// SIGKILL to the process group led by `child` (chromedriver and the
/// browser it started), then reaps `child`.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory preconditions. The group is the one
        // `process_group(0)` made for `child`, not yet reaped (so its id is
        // still ours): only processes this harness started are in it.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A new, empty directory for one browser.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pinetd-test-browser-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `dir`, trying again for a moment while a dying browser process
/// still has a file in it open.
fn remove_dir(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir_all(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
}

/// chromedriver's stdout by lines; read to its end, so a late line never
/// meets a closed pipe.
fn stdout_lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// One WebDriver request straight to chromedriver (HTTP/1.1, one
/// connection, 5 s timeouts); the reply's `value`, or the error.
fn driver_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;

    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut reply = Vec::new();
    match length {
        Some(n) => {
            reply.resize(n, 0);
            reader.read_exact(&mut reply).map_err(|e| e.to_string())?;
        }
        None => {
            reader.read_to_end(&mut reply).map_err(|e| e.to_string())?;
        }
    }
    let reply: Value = serde_json::from_slice(&reply)
        .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&reply)))?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{}: {reply}", status.trim_end()));
    }
    Ok(reply["value"].clone())
}
