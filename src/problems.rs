//! The last problems logged (warnings and errors), kept for `pinetd status`:
//! a [`tracing`] layer beside the one that writes the log, so what status
//! shows is word for word what the journal has, with the span's fields
//! (`service=chat`) before the event's.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Problems kept: the newest.
const KEPT: usize = 20;
/// Characters of one problem's text kept.
const TEXT_MAX: usize = 500;

/// One warning or error, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(serialize_with = "unix_seconds")]
    pub at: SystemTime,
    pub level: &'static str,
    pub text: String,
}

fn unix_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let seconds = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    s.serialize_f64(seconds.as_secs_f64())
}

static PROBLEMS: LazyLock<Mutex<VecDeque<Problem>>> = LazyLock::new(Mutex::default);

/// The last problems logged, oldest first.
pub fn recent() -> Vec<Problem> {
    let problems = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    problems.iter().cloned().collect()
}

fn keep(problem: Problem) {
    let mut problems = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    if problems.len() >= KEPT {
        problems.pop_front();
    }
    problems.push_back(problem);
}

/// The layer that keeps them.
pub struct Problems;

/// A span's fields as text, kept in its extensions.
struct SpanFields(String);

impl<S> Layer<S> for Problems
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields.text));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = String::new();
        for span in ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|s| s.from_root())
        {
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                text.push_str(fields);
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        text.push_str(&fields.text);
        let mut text = format!("{}{}", fields.message, text);
        if let Some((cut, _)) = text.char_indices().nth(TEXT_MAX) {
            text.truncate(cut);
            text.push('…');
        }
        keep(Problem {
            at: SystemTime::now(),
            level: if level == Level::ERROR {
                "error"
            } else {
                "warn"
            },
            text,
        });
    }
}

/// The message, then ` key=value` for each other field.
#[derive(Default)]
struct Fields {
    message: String,
    text: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{error, info, info_span, warn};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_are_kept_with_their_spans_fields() {
        let subscriber = tracing_subscriber::registry().with(Problems);
        tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("service", service = "chat");
            let _entered = span.enter();
            info!("not a problem");
            warn!(peer = "127.0.0.1:5000", "a line was cut");
            error!(error = "address in use", "cannot bind");
        });
        let recent = recent();
        let texts: Vec<&str> = recent.iter().map(|p| p.text.as_str()).collect();
        assert!(
            texts.contains(&"a line was cut service=chat peer=127.0.0.1:5000"),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"cannot bind service=chat error=address in use"),
            "{texts:?}"
        );
        assert!(!texts.iter().any(|t| t.contains("not a problem")));
        assert!(recent.iter().any(|p| p.level == "error"));
    }
}
