//! Runs each service as a supervised task: a service that fails (returns an
//! error or panics) is logged with its name and restarted with capped
//! exponential backoff, while the others never notice. One root
//! `CancellationToken` with a child per service, every task on one
//! `TaskTracker`, and a deadline on the drain.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{Instrument, error, info, info_span, warn};

use crate::observe::Observatory;
use crate::services::Service;

/// The first restart waits this long; each further one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

struct Running {
    token: CancellationToken,
    task: JoinHandle<()>,
    starts: Arc<AtomicU32>,
}

pub struct Supervisor {
    root: CancellationToken,
    tracker: TaskTracker,
    running: HashMap<&'static str, Running>,
    /// Where a failing service is told (for `/healthz`).
    observatory: Option<Arc<Observatory>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            running: HashMap::new(),
            observatory: None,
        }
    }

    /// Tells `observatory` which services are failing (waiting to restart).
    pub fn report_to(&mut self, observatory: Arc<Observatory>) {
        self.observatory = Some(observatory);
    }

    /// Starts `service` under supervision, replacing nothing: stop a running
    /// service of the same name first.
    pub fn spawn(&mut self, service: Arc<dyn Service>) {
        let name = service.name();
        let token = self.root.child_token();
        let starts = Arc::new(AtomicU32::new(0));
        let span = info_span!("service", service = %name);
        let task = self.tracker.spawn(
            supervise(
                service,
                token.clone(),
                starts.clone(),
                self.observatory.clone(),
            )
            .instrument(span),
        );
        self.running.insert(
            name,
            Running {
                token,
                task,
                starts,
            },
        );
    }

    /// How many times the service has been started (1 + restarts); 0 if unknown.
    pub fn starts(&self, name: &str) -> u32 {
        self.running.get(name).map_or(0, |r| r.starts.load(Relaxed))
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    /// Stops one service, waiting at most `grace` for it to finish its work.
    pub async fn stop(&mut self, name: &str, grace: Duration) {
        let Some(running) = self.running.remove(name) else {
            return;
        };
        running.token.cancel();
        let abort = running.task.abort_handle();
        if timeout(grace, running.task).await.is_err() {
            warn!(service = %name, ?grace, "did not stop within the grace time; aborted");
            abort.abort();
        }
    }

    /// Stops everything: cancel, wait at most `grace`, then abort what is left.
    /// Returns the names of the services that had to be aborted.
    pub async fn shutdown(&mut self, grace: Duration) -> Vec<&'static str> {
        self.root.cancel();
        self.tracker.close();
        if timeout(grace, self.tracker.wait()).await.is_ok() {
            self.running.clear();
            return Vec::new();
        }
        let mut left = Vec::new();
        for (name, running) in self.running.drain() {
            if !running.task.is_finished() {
                running.task.abort();
                left.push(name);
            }
        }
        left
    }
}

/// Runs `service` until `token` is cancelled, restarting it when it fails.
async fn supervise(
    service: Arc<dyn Service>,
    token: CancellationToken,
    starts: Arc<AtomicU32>,
    observatory: Option<Arc<Observatory>>,
) {
    let name = service.name();
    let failing = |why: Option<String>| {
        if let Some(observatory) = &observatory {
            observatory.set_failing(name, why);
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        starts.fetch_add(1, Relaxed);
        failing(None);
        let started = Instant::now();
        // Its own task, so a panic is caught; aborted with us if we are aborted.
        let run = AbortOnDropHandle::new(tokio::spawn(
            service.clone().run(token.clone()).in_current_span(),
        ));
        let outcome = run.await;
        if token.is_cancelled() {
            if let Ok(Err(e)) = &outcome {
                warn!(error = %e, "failed while stopping");
            }
            info!("stopped");
            failing(None);
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let why = match outcome {
            Ok(Ok(())) => {
                error!(restart_in = ?backoff, "stopped unexpectedly; restarting");
                "stopped unexpectedly".to_owned()
            }
            Ok(Err(e)) => {
                error!(error = %e, restart_in = ?backoff, "failed; restarting");
                format!("failed: {e}")
            }
            Err(e) if e.is_panic() => {
                let panic = panic_message(e.into_panic());
                error!(panic, restart_in = ?backoff, "panicked; restarting");
                format!("panicked: {panic}")
            }
            Err(_) => {
                failing(None);
                return;
            }
        };
        failing(Some(format!("{why}; restarting in {backoff:?}")));
        tokio::select! {
            _ = token.cancelled() => {
                // Stopped while it waited: not failing any more.
                failing(None);
                return;
            }
            _ = sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".into(), |s| (*s).to_owned()),
    }
}
