//! The daemon's counters for Prometheus (`GET /metrics`), encoded by the
//! official client crate: a [`Collector`] reads the counters the services
//! keep anyway ([`crate::stats`]) at each scrape, so serving costs nothing
//! between scrapes. Every label set is written from the start, at 0 (a
//! rate over a counter that appears late is wrong), and no label holds a
//! client's name or address: services, reasons and interfaces only.
//!
//! The crate writes OpenMetrics, which Prometheus asks for; anyone else
//! (curl, `promtool check metrics`) gets the Prometheus text format 0.0.4,
//! the same lines with each counter's family named with its `_total`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Observatory;
use super::status::seconds;
use super::teacher::Refused;
use crate::config::{
    AnnouncerConfig, ChatConfig, DiscoveryConfig, JsonEchoConfig, TableIn, Transport,
    UdpEchoConfig, WebConfig,
};
use crate::stats::{Close, Refusal, ServiceStats};

/// The refusals of a connection at accept, by every TCP service.
const AT_ACCEPT: [Refusal; 3] = [Refusal::NotAllowed, Refusal::Full, Refusal::PerSource];
/// The refusals of a datagram, by UDP echo and discovery.
const OF_DATAGRAMS: [Refusal; 5] = [
    Refusal::NotAllowed,
    Refusal::BadSource,
    Refusal::Amplification,
    Refusal::RateLimited,
    Refusal::OverLimit,
];
/// What a JSON echo client gets an error for (then it is closed).
const JSON_ERRORS: [Refusal; 4] = [
    Refusal::BadInput,
    Refusal::TooDeep,
    Refusal::OverLimit,
    Refusal::Timeout,
];
/// Why the chat's bridge refuses a message from NATS.
const FROM_NATS: [Refusal; 3] = [Refusal::BadSource, Refusal::OverLimit, Refusal::RateLimited];

/// The registry of the daemon's one collector.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(observatory: Arc<Observatory>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Counters(observatory)));
        Self { registry }
    }

    /// OpenMetrics 1.0, as Prometheus asks for it.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only if a metric's own encoding does.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format 0.0.4, for anyone else.
    pub fn text(&self) -> String {
        prometheus_text(&self.openmetrics())
    }
}

/// The content types of the two formats.
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the Prometheus text format: a counter's family is
/// named as its samples are (with `_total`), and `# UNIT` and `# EOF`,
/// which that format lacks, are left out. Samples are the same in both.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = (openmetrics.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|kind| Some((kind, line.strip_prefix(kind)?)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{kind}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Reads every service's counters at each scrape.
struct Counters(Arc<Observatory>);

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counters")
    }
}

/// The families a collector writes, a few calls each.
struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    /// A family `name` of `kind`, a sample for each set of labels.
    fn family<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = ([(&'static str, String); N], Sample)>,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for (labels, sample) in samples {
            if N == 0 {
                // One sample, written without an empty `{}`.
                return sample.encode(family);
            }
            sample.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A counter with no labels.
    fn counter(&mut self, name: &str, help: &str, n: u64) -> fmt::Result {
        let samples = [([], Sample::Count(n))];
        self.family(name, help, MetricType::Counter, samples)
    }

    /// A counter by the refusals `reasons` of one service, labelled `label`.
    fn refusals(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        stats: &ServiceStats,
        reasons: &[Refusal],
    ) -> fmt::Result {
        let samples = (reasons.iter()).map(|&why| {
            (
                [(label, why.key().to_owned())],
                Sample::Count(stats.refused(why)),
            )
        });
        self.family(name, help, MetricType::Counter, samples)
    }
}

/// A counter's or a gauge's value.
enum Sample {
    Count(u64),
    Level(u64),
    Seconds(f64),
}

impl Sample {
    fn encode(self, metric: MetricEncoder<'_>) -> fmt::Result {
        match self {
            Sample::Count(n) => ConstCounter::new(n).encode(metric),
            Sample::Level(n) => ConstGauge::new(n).encode(metric),
            Sample::Seconds(s) => ConstGauge::new(s).encode(metric),
        }
    }
}

impl Collector for Counters {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let observatory = &self.0;
        let mut families = Families(encoder);
        let version = [("version", env!("CARGO_PKG_VERSION").to_owned())];
        let start = seconds(observatory.started());
        let f = &mut families;
        f.family(
            "pinetd_build_info",
            "The version running; always 1.",
            MetricType::Gauge,
            [(version, Sample::Level(1))],
        )?;
        f.family(
            "pinetd_start_time_seconds",
            "When the daemon started, in Unix seconds.",
            MetricType::Gauge,
            [([], Sample::Seconds(start))],
        )?;
        self.services(f)?;
        self.connections(f)?;
        self.web_and_json(f)?;
        self.chat(f)?;
        self.datagrams(f)
    }
}

impl Counters {
    fn stats(&self, name: &'static str) -> Arc<ServiceStats> {
        self.0.stats().service(name)
    }

    /// Whether each service runs.
    fn services(&self, f: &mut Families<'_>) -> fmt::Result {
        let config = self.0.config();
        let running = (config.tables().into_iter()).map(|table| {
            let up = table.enabled() && self.stats(table.name()).running.load(Relaxed);
            (
                [("service", table.name().to_owned())],
                Sample::Level(up.into()),
            )
        });
        let help = "1 while the service runs, 0 while it is disabled or failing.";
        f.family("pinetd_service_running", help, MetricType::Gauge, running)
    }

    /// The TCP services' connections: now, accepted, refused, closed.
    fn connections(&self, f: &mut Families<'_>) -> fmt::Result {
        let config = self.0.config();
        let tcp: Vec<(&'static str, Arc<ServiceStats>)> = (config.tables().into_iter())
            .filter(|table| matches!(table.listen(), Some((Transport::Tcp, _))))
            .map(|table| (table.name(), self.stats(table.name())))
            .collect();
        let by_service = |value: fn(&ServiceStats) -> Sample| {
            (tcp.iter()).map(move |(name, stats)| ([("service", (*name).to_owned())], value(stats)))
        };
        let by_reason = |why: &'static [Refusal]| {
            tcp.iter().flat_map(move |(name, stats)| {
                why.iter().map(move |&why| {
                    let labels = [
                        ("service", (*name).to_owned()),
                        ("reason", why.key().to_owned()),
                    ];
                    (labels, Sample::Count(stats.refused(why)))
                })
            })
        };
        let closed = tcp.iter().flat_map(|(name, stats)| {
            Close::ALL.iter().map(move |&why| {
                let labels = [
                    ("service", (*name).to_owned()),
                    ("reason", why.key().to_owned()),
                ];
                (labels, Sample::Count(stats.closed(why)))
            })
        });
        let now = by_service(|s| Sample::Level(s.clients.load(Relaxed)));
        f.family(
            "pinetd_connections",
            "Clients connected now.",
            MetricType::Gauge,
            now,
        )?;
        let accepted = by_service(|s| Sample::Count(s.accepted.load(Relaxed)));
        f.family(
            "pinetd_connections_accepted",
            "Connections let in.",
            MetricType::Counter,
            accepted,
        )?;
        let help =
            "Connections refused at accept: not in allow, max_clients or max_per_source reached.";
        f.family(
            "pinetd_connections_refused",
            help,
            MetricType::Counter,
            by_reason(&AT_ACCEPT),
        )?;
        let help = "Connections closed, by why.";
        f.family(
            "pinetd_connections_closed",
            help,
            MetricType::Counter,
            closed,
        )
    }

    /// The web page and JSON echo, beside their connections.
    fn web_and_json(&self, f: &mut Families<'_>) -> fmt::Result {
        let web = self.stats(WebConfig::NAME);
        let help = "HTTP requests to the web service.";
        f.counter("pinetd_web_requests", help, web.messages.load(Relaxed))?;
        let pages = [([], Sample::Level(self.0.watchers() as u64))];
        f.family(
            "pinetd_web_pages_open",
            "Web pages streaming live now.",
            MetricType::Gauge,
            pages,
        )?;
        let teacher = self.0.teacher();
        let refused = (Refused::ALL.iter()).map(|&why| {
            (
                [("reason", why.key().to_owned())],
                Sample::Count(teacher.refused(why)),
            )
        });
        let help = "Teacher actions refused: no token set, token missing or wrong, too many wrong, another site's page.";
        f.family(
            "pinetd_web_teacher_refused",
            help,
            MetricType::Counter,
            refused,
        )?;
        let json = self.stats(JsonEchoConfig::NAME);
        let help = "JSON values answered.";
        f.counter(
            "pinetd_json_values_answered",
            help,
            json.messages.load(Relaxed),
        )?;
        let help = "JSON echo clients sent an error and closed, by kind.";
        f.refusals("pinetd_json_errors", help, "kind", &json, &JSON_ERRORS)
    }

    /// The chat room and its bridge.
    fn chat(&self, f: &mut Families<'_>) -> fmt::Result {
        let chat = self.stats(ChatConfig::NAME);
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Relaxed);
        f.counter(
            "pinetd_chat_lines_relayed",
            "Chat lines clients said to the room.",
            count(&chat.messages),
        )?;
        let help =
            "Chat lines (and notices) handed to readers: each line once per reader but its sender.";
        f.counter("pinetd_chat_deliveries", help, count(&chat.deliveries))?;
        let help = "Chat lines readers skipped for falling behind (on_lag skip).";
        f.counter("pinetd_chat_messages_skipped", help, count(&chat.skipped))?;
        let help = "Messages the NATS bridge published for the other hubs.";
        f.counter(
            "pinetd_chat_bridge_messages_sent",
            help,
            count(&chat.bridge_sent),
        )?;
        let help = "Messages the NATS bridge took from the other hubs.";
        f.counter(
            "pinetd_chat_bridge_messages_received",
            help,
            count(&chat.bridge_received),
        )?;
        let help = "Chat lines the bridge could not pass on (NATS away, or its queue full).";
        f.counter(
            "pinetd_chat_bridge_lines_not_bridged",
            help,
            count(&chat.not_bridged),
        )?;
        let help = "Messages from NATS refused, by reason.";
        f.refusals(
            "pinetd_chat_bridge_messages_refused",
            help,
            "reason",
            &chat,
            &FROM_NATS,
        )
    }

    /// UDP echo, discovery and the announcer.
    fn datagrams(&self, f: &mut Families<'_>) -> fmt::Result {
        let udp = self.stats(UdpEchoConfig::NAME);
        let help = "UDP echo datagrams answered.";
        f.counter(
            "pinetd_udp_echo_datagrams_answered",
            help,
            udp.messages.load(Relaxed),
        )?;
        let help = "UDP echo datagrams left unanswered, by reason.";
        f.refusals(
            "pinetd_udp_echo_datagrams_refused",
            help,
            "reason",
            &udp,
            &OF_DATAGRAMS,
        )?;
        let discovery = self.stats(DiscoveryConfig::NAME);
        let help = "Discovery probes answered.";
        f.counter(
            "pinetd_discovery_probes_answered",
            help,
            discovery.messages.load(Relaxed),
        )?;
        let help = "Discovery probes left unanswered, by reason.";
        f.refusals(
            "pinetd_discovery_probes_refused",
            help,
            "reason",
            &discovery,
            &OF_DATAGRAMS,
        )?;
        let interfaces = self.stats(AnnouncerConfig::NAME).interfaces();
        let label = |name: &String| [("interface", name.clone())];
        let sent = (interfaces.iter()).map(|(name, ok, _)| (label(name), Sample::Count(*ok)));
        let help =
            "Announcements sent, by interface (default: where the kernel routes an explicit `to`).";
        f.family("pinetd_announcements_sent", help, MetricType::Counter, sent)?;
        let failed =
            (interfaces.iter()).map(|(name, _, failed)| (label(name), Sample::Count(*failed)));
        let help = "Announcements that could not be sent, by interface.";
        f.family(
            "pinetd_announcements_failed",
            help,
            MetricType::Counter,
            failed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_a_counter_family_with_its_total() {
        let openmetrics = "# HELP pinetd_x Things.\n# TYPE pinetd_x counter\npinetd_x_total{a=\"b\"} 0\n\
            # HELP pinetd_g Level.\n# TYPE pinetd_g gauge\n# UNIT pinetd_g seconds\npinetd_g 1.5\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP pinetd_x_total Things.\n# TYPE pinetd_x_total counter\npinetd_x_total{a=\"b\"} 0\n\
             # HELP pinetd_g Level.\n# TYPE pinetd_g gauge\npinetd_g 1.5\n"
        );
    }
}
