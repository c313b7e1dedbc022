//! The metrics listener: Prometheus text exposition at `/metrics` and the operator's status
//! view at `/status`, on an HTTP/1 listener of its own thread (off unless `metrics_port` is
//! set; loopback by default).
//!
//! It only reads: the request path's decision counters (atomics), the published snapshot,
//! and the sync's counters; the per-name view is asked of the sync loop, bounded in time.
//! A slow or hostile scraper holds only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::clock::unix_now;
use crate::model::snapshot::SnapshotCell;
use crate::request::counters::{DecisionCounters, Stage};
use crate::sync::engine::{StatusReport, SyncHandle};

/// How long `/status` waits for the sync loop.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Names listed by `/status` unless `?limit=` says otherwise.
pub const DEFAULT_STATUS_LIMIT: usize = 1000;

/// What one instance exposes.
#[derive(Clone)]
pub struct Sources {
    /// The instance name (`rust`, `guests`): the `instance` label.
    pub instance: String,
    /// The request path's decision counters, by stage, result and reason.
    pub decisions: Arc<DecisionCounters>,
    /// The cell requests read: the trust map's generation and age come from it.
    pub snapshot: Arc<SnapshotCell>,
    /// The sync's counters and per-name view; None without `policy` (no sync metrics,
    /// no names in `/status`).
    pub sync: Option<SyncHandle>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").field("instance", &self.instance).finish_non_exhaustive()
    }
}

/// Why the listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The address cannot be bound: the port is taken, or the address is not this host's.
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        /// `metrics_address` and `metrics_port`.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bound socket could not be made non-blocking or tell its address.
    #[error("metrics listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The listener's event loop could not be created (the system refused its resources).
    #[error("metrics listener runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listener's thread could not be spawned.
    #[error("metrics listener thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The running listener. Dropping it stops it.
pub struct Exporter {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Binds `addr` now (so a taken port fails the instance's start) and serves from a
    /// thread of its own.
    pub fn start(label: &str, addr: SocketAddr, sources: Sources) -> Result<Exporter, ExporterError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| ExporterError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(ExporterError::Listener)?;
        let addr = listener.local_addr().map_err(ExporterError::Listener)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ExporterError::Runtime)?;
        let (tx, rx) = oneshot::channel();
        let label = label.to_owned();
        let thread = std::thread::Builder::new()
            .name("rlm_rust-metrics".into())
            .spawn(move || runtime.block_on(serve(listener, sources, rx, label)))
            .map_err(ExporterError::Thread)?;
        Ok(Exporter { addr, shutdown: Some(tx), thread: Some(thread) })
    }

    /// Where it listens (the port chosen when `metrics_port` asked for 0 in tests).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, drops open connections and waits for the thread. Idempotent; drop
    /// calls it too.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: std::net::TcpListener, sources: Sources, mut shutdown: oneshot::Receiver<()>, label: String) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{label}: metrics listener: {e}");
            return;
        }
    };
    log::info!("{label}: metrics at http://{}/metrics", listener.local_addr().map_or("?".into(), |a| a.to_string()));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let sources = sources.clone();
                let service = hyper::service::service_fn(move |req| {
                    let sources = sources.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req, &sources).await) }
                });
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(5))
                        .serve_connection(io, service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
            _ = &mut shutdown => break,
        }
    }
    connections.abort_all();
}

async fn respond(req: Request<Incoming>, sources: &Sources) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if req.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => match render_metrics(sources) {
            Ok(text) => reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "encoding failed\n".into()),
        },
        "/status" => {
            let limit = limit_of(req.uri().query()).unwrap_or(DEFAULT_STATUS_LIMIT);
            let report = match &sources.sync {
                Some(sync) => sync.status(limit, STATUS_TIMEOUT).await,
                None => None,
            };
            let body = status_json(sources, report.as_ref());
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics or /status\n".into()),
    }
}

fn limit_of(query: Option<&str>) -> Option<usize> {
    query?.split('&').find_map(|kv| kv.strip_prefix("limit=")).and_then(|v| v.parse().ok())
}

/// The exposition text of one instance.
pub fn render_metrics(sources: &Sources) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("rlm_rust");
    registry.register_collector(Box::new(InstanceCollector(sources.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads the counters at scrape time.
#[derive(Debug)]
struct InstanceCollector(Sources);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels<'_>, u64)]) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels<'_>, f64)]) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for InstanceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let inst = s.instance.as_str();
        let mut decisions = Vec::new();
        for stage in Stage::ALL {
            let at = stage.as_str();
            let accepted = s.decisions.accepted(stage);
            decisions.push((vec![("instance", inst), ("stage", at), ("result", "accept"), ("reason", "")], accepted));
            for (reason, n) in s.decisions.rejected(stage) {
                decisions.push((vec![("instance", inst), ("stage", at), ("result", "reject"), ("reason", reason)], n));
            }
        }
        counter(
            &mut enc,
            "decisions",
            "Decisions, by stage (tls_check: the check-eap-tls virtual server; post_auth), result and reason",
            &decisions,
        )?;

        let map = s.snapshot.load();
        let (generation, age) = match map.as_deref() {
            Some(m) => (m.generation as f64, (unix_now() - m.generated_at).max(0) as f64),
            None => (0.0, 0.0),
        };
        gauge(
            &mut enc,
            "trust_map_generation",
            "Generation of the trust map requests read",
            &[(vec![("instance", inst)], generation)],
        )?;
        gauge(
            &mut enc,
            "trust_map_age_seconds",
            "Seconds since that trust map was built",
            &[(vec![("instance", inst)], age)],
        )?;

        let Some(sync) = &s.sync else { return Ok(()) };
        let st = sync.stats();
        let by_state: Vec<(Labels<'_>, f64)> = st
            .status_counts
            .iter()
            .map(|(k, n)| (vec![("instance", inst), ("state", k.as_str())], *n as f64))
            .collect();
        gauge(&mut enc, "names", "Names tracked by the sync, by state", &by_state)?;
        if let Some((ended, took)) = st.last_round {
            let one = |v: f64| vec![(vec![("instance", inst)], v)];
            gauge(
                &mut enc,
                "sync_last_round_timestamp_seconds",
                "When the sync last finished looking up every configured name",
                &one(ended as f64),
            )?;
            gauge(&mut enc, "sync_round_duration_seconds", "How long that round took", &one(took.as_secs_f64()))?;
        }
        let answers: Vec<(Labels<'_>, u64)> =
            st.dns_answers.iter().map(|(class, n)| (vec![("instance", inst), ("class", *class)], *n)).collect();
        counter(&mut enc, "dns_answers", "TLSA answers, by what DNSSEC proved", &answers)?;
        let one = |v: u64| vec![(vec![("instance", inst)], v)];
        counter(&mut enc, "ca_fetches", "HTTPS requests for CA certificates", &one(st.ca_fetches.requests))?;
        counter(
            &mut enc,
            "ca_fetch_failures",
            "CA fetches that obtained no certificate",
            &one(st.ca_fetches.failures),
        )?;
        counter(&mut enc, "sync_lookups_timed_out", "Lookups cut off by name_timeout", &one(st.timeouts))?;
        counter(&mut enc, "sync_publications", "Trust maps published", &one(st.publications))?;
        let g = |v: usize| vec![(vec![("instance", inst)], v as f64)];
        gauge(&mut enc, "ca_set_size", "CAs in the CA set", &g(st.ca_set_size))?;
        let flight = vec![
            (vec![("instance", inst), ("pool", "refresh")], st.refresh_in_flight as f64),
            (vec![("instance", inst), ("pool", "discovery")], st.discovery_in_flight as f64),
        ];
        gauge(&mut enc, "sync_lookups_in_flight", "Lookups running, by pool", &flight)?;
        Ok(())
    }
}

/// The `/status` document.
pub fn status_json(sources: &Sources, report: Option<&StatusReport>) -> serde_json::Value {
    let map = sources.snapshot.load();
    let trust_map = map.as_deref().map(|m| {
        serde_json::json!({
            "generation": m.generation,
            "generated_at": m.generated_at,
            "names": m.name_count(),
            "associations": m.association_count(),
        })
    });
    let mut doc = serde_json::json!({
        "instance": sources.instance,
        "now": unix_now(),
        "trust_map": trust_map,
        "decisions": Stage::ALL.iter().map(|stage| {
            let rejected: serde_json::Map<_, _> = sources.decisions.rejected(*stage).iter().filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.to_string(), serde_json::json!(n))).collect();
            (stage.as_str().to_string(), serde_json::json!({"accept": sources.decisions.accepted(*stage), "reject": rejected}))
        }).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(r) = report {
        let st = &r.stats;
        doc["sync"] = serde_json::json!({
            "policy": r.policy,
            "names": st.status_counts.iter().map(|(k, n)| (k.as_str().to_string(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "last_round": st.last_round.map(|(at, took)| serde_json::json!({"ended_at": at, "seconds": took.as_secs_f64()})),
            "dns_answers": st.dns_answers.iter().map(|(c, n)| (c.to_string(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "ca_fetches": st.ca_fetches.requests,
            "ca_fetch_failures": st.ca_fetches.failures,
            "ca_set_size": st.ca_set_size,
            "in_flight": st.refresh_in_flight + st.discovery_in_flight,
        });
        doc["names"] = r
            .rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "name": &*row.name,
                    "origin": match row.origin {
                        crate::sync::schedule::Origin::Policy => "policy",
                        crate::sync::schedule::Origin::Anchor => "anchor",
                        crate::sync::schedule::Origin::Discovered { .. } => "discovered",
                    },
                    "state": row.status.as_str(),
                    "tlsa_records": row.records,
                    "associations": row.associations,
                    "changed_at": row.changed_at,
                    "next_refresh_in": row.next_in,
                    "error": row.error.as_deref(),
                })
            })
            .collect();
    }
    doc
}
