//! The control socket: a Unix socket the daemon always serves (whatever
//! `[web]` says), where `pinetd status` on the same machine asks what it is
//! doing. A client sends one request line (`status`), gets one JSON line,
//! and the daemon closes.
//!
//! Who may ask is who may open the socket: it is made mode 0660 in a
//! directory of mode 0750 (the unit's `RuntimeDirectory=`), so root and the
//! daemon's group only, since what it tells (the last problems logged)
//! names students' addresses. A stale socket left by a daemon that died is
//! replaced; one where another daemon still answers is left alone.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::observe::Observatory;
use crate::observe::status::Status;
use crate::problems::{self, Problem};

/// A request's line is at most this long ...
const REQUEST_MAX: u64 = 64;
/// ... and a client has this long to send it and take the answer.
const PATIENCE: Duration = Duration::from_secs(2);
/// Clients served at once; more wait their turn.
const AT_ONCE: usize = 64;
/// The most an answer may be, read by `pinetd status`.
const ANSWER_MAX: u64 = 4 << 20;

/// What the daemon tells `pinetd status`: its [`Status`], who it is as a
/// process, and the last problems it logged.
#[derive(Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub status: Status,
    pub pid: u32,
    /// Started by systemd (NOTIFY_SOCKET was set).
    pub under_systemd: bool,
    /// The config file it runs (and reloads); null on the embedded default.
    pub config: Option<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn of(observatory: &Observatory, host: &str, config: Option<&Path>) -> Report {
        Report {
            status: Status::of(observatory, host),
            pid: std::process::id(),
            under_systemd: crate::notify::enabled(),
            config: config.map(|p| p.display().to_string()),
            problems: problems::recent(),
        }
    }
}

/// What a request gets: the JSON of a fresh [`Report`], made by the daemon.
pub type Answer = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("another pinetd answers at {0}: this one serves no status there")]
    Taken(PathBuf),
    #[error("{0} exists and is not a socket: not removing it")]
    NotASocket(PathBuf),
    #[error("cannot serve status at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The socket, served while this lives; removed when it is dropped (if
/// it is still this one's).
pub struct Control {
    path: PathBuf,
    inode: u64,
    _task: AbortOnDropHandle<()>,
}

impl Control {
    /// Serves `answer` at `path`. Needs a tokio runtime.
    pub fn serve(path: &Path, answer: Answer) -> Result<Control, ServeError> {
        let io = |source| ServeError::Io {
            path: path.to_owned(),
            source,
        };
        make_room(path)?;
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
        let inode = std::fs::metadata(path).map_err(io)?.ino();
        let task = tokio::spawn(accept(listener, answer));
        Ok(Control {
            path: path.to_owned(),
            inode,
            _task: AbortOnDropHandle::new(task),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let ours = std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes the directory if it is missing (mode 0750), and takes away a
/// stale socket; fails when another daemon answers there.
fn make_room(path: &Path) -> Result<(), ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(io)?;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(ServeError::NotASocket(path.to_owned()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServeError::Taken(path.to_owned()));
    }
    std::fs::remove_file(path).map_err(io)
}

async fn accept(listener: UnixListener, answer: Answer) {
    let turns = Arc::new(Semaphore::new(AT_ONCE));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(turn) = turns.clone().acquire_owned().await else {
            return;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            if let Err(e) = timeout(PATIENCE, serve_one(stream, &answer)).await {
                debug!(error = %e, "control socket: a client took too long");
            }
            drop(turn);
        });
    }
}

async fn serve_one(stream: UnixStream, answer: &Answer) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(REQUEST_MAX));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match line.trim() {
        "status" => answer(),
        other => serde_json::json!({
            "error": format!("unknown request {other:?}: this daemon answers \"status\"")
        })
        .to_string(),
    };
    let _ = write.write_all(reply.as_bytes()).await;
    let _ = write.write_all(b"\n").await;
    let _ = write.shutdown().await;
}

/// Why `pinetd status` got no answer.
#[derive(Debug, Error)]
pub enum QueryError {
    #[error(
        "no pinetd answers at {0}: it is not running, or runs with another file ([daemon] control_socket); `systemctl status pinetd` and `journalctl -u pinetd` say more"
    )]
    NotRunning(PathBuf),
    #[error(
        "permission denied at {0}: only root and the daemon's group may ask (try `sudo pinetd status`)"
    )]
    Denied(PathBuf),
    #[error("pinetd at {0} did not answer within {PATIENCE:?}")]
    Timeout(PathBuf),
    #[error("cannot ask pinetd at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinetd at {path} answered what is not a status: {why}")]
    Bad { path: PathBuf, why: String },
}

/// Asks the daemon at `path` for its status: the [`Report`] as JSON.
pub async fn query(path: &Path) -> Result<serde_json::Value, QueryError> {
    match timeout(PATIENCE, ask(path)).await {
        Ok(answer) => answer,
        Err(_) => Err(QueryError::Timeout(path.to_owned())),
    }
}

async fn ask(path: &Path) -> Result<serde_json::Value, QueryError> {
    let failed = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            QueryError::NotRunning(path.to_owned())
        }
        io::ErrorKind::PermissionDenied => QueryError::Denied(path.to_owned()),
        _ => QueryError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let mut stream = UnixStream::connect(path).await.map_err(failed)?;
    stream.write_all(b"status\n").await.map_err(failed)?;
    let mut answer = Vec::new();
    (stream.take(ANSWER_MAX))
        .read_to_end(&mut answer)
        .await
        .map_err(failed)?;
    let bad = |why: String| QueryError::Bad {
        path: path.to_owned(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| bad(e.to_string()))?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Err(bad(error.to_owned()));
    }
    Ok(value)
}
