//! One configured module instance (`rust { }`, `rust guests { }`): its snapshot, its
//! background thread, and the request entry that turns a decision into one log line.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ReplyConfig};
use crate::model::name::MAX_NAME_LEN;
use crate::model::snapshot::SnapshotCell;
use crate::ops::exporter::{Exporter, ExporterError, Sources};
use crate::request::check::{self, ssid_of, Decision, Request};
use crate::request::counters::{DecisionCounters, Stage};
use crate::request::presented::Source;
use crate::sync::engine::{EngineError, SyncThread};
use crate::sync::ondemand::Hint;
use crate::sync::watch::Watcher;

/// What the request path reports back, besides the decision.
pub struct Decided<'m> {
    /// The check's outcome. An accept borrows its reply attributes from the snapshot,
    /// which is why the outcome is only lent to the closure of [`Instance::decide`].
    pub decision: Decision<'m>,
    /// The one-line decision record (name, SSID, result, reason, microseconds).
    pub log_line: String,
}

/// Who keeps the snapshot current: the file watcher (hand-made maps) or the DNS sync.
enum Feeder {
    Watch(Watcher),
    Sync(SyncThread),
}

/// One configured `rust { }` section, running: the snapshot its requests read, the thread
/// that keeps it current (the DNS sync or the file watcher), its reply options, its
/// decision counters and the optional metrics listener. Created at instantiate, stopped at
/// detach.
pub struct Instance {
    label: String,
    snapshot: Arc<SnapshotCell>,
    feeder: Feeder,
    reply: ReplyConfig,
    decisions: Arc<DecisionCounters>,
    exporter: Option<Exporter>,
}

/// Shortest interval accepted. A poll is one stat(); 5 ms lets a trust map written 100
/// times a second reach requests at that rate (the load bench does exactly that).
const MIN_RELOAD: Duration = Duration::from_millis(5);

/// Why an instance did not start.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The DNS sync could not be set up: its resolver (servers, trust anchors,
    /// DNS-over-TLS), its HTTPS client (roots), the random source, its runtime or thread.
    #[error(transparent)]
    Sync(#[from] EngineError),
    /// The trust map file could not be watched.
    #[error(transparent)]
    Watch(#[from] std::io::Error),
    /// The metrics listener could not start (typically: `metrics_port` is in use).
    #[error(transparent)]
    Metrics(#[from] ExporterError),
}

impl Instance {
    /// Starts the instance's background thread. With `policy` set the DNS sync owns the
    /// trust map; without it the file is watched for hand-made maps.
    pub fn start(config: Config) -> Result<Instance, InstanceError> {
        let label = super::logging::instance_label(&config.name);
        let snapshot = Arc::new(SnapshotCell::default());
        let interval = config.reload_interval.max(MIN_RELOAD);
        let feeder = match config.sync {
            Some(sync) => {
                Feeder::Sync(SyncThread::start(label.clone(), sync, config.trust_map, snapshot.clone(), interval)?)
            }
            None => Feeder::Watch(Watcher::start(label.clone(), config.trust_map, snapshot.clone(), interval)?),
        };
        let decisions = Arc::new(DecisionCounters::default());
        let exporter = match config.metrics {
            None => None,
            Some(addr) => {
                let sync = match &feeder {
                    Feeder::Sync(s) => Some(s.handle()),
                    Feeder::Watch(_) => None,
                };
                let sources = Sources {
                    instance: config.name.clone(),
                    decisions: decisions.clone(),
                    snapshot: snapshot.clone(),
                    sync,
                };
                Some(Exporter::start(&label, addr, sources)?)
            }
        };
        Ok(Instance { label, snapshot, feeder, reply: config.reply, decisions, exporter })
    }

    /// Where the metrics listener serves (None: off).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.exporter.as_ref().map(Exporter::addr)
    }

    /// The `Reply-Message` of a reject (empty: none).
    pub fn reject_message(&self) -> &str {
        &self.reply.reject_message
    }

    /// What an accept tells the NAS about who was admitted, besides the role's attributes:
    /// the verified name as `User-Name` (the outer identity is whatever the supplicant
    /// typed), as `Chargeable-User-Identity` when the NAS asked for one (RFC 4372), and the
    /// organisation's domain in the configured attribute.
    pub fn identity_pairs(&self, user_name: &str, wants_cui: bool) -> Vec<(&str, String)> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let Ok(name) = crate::model::name::normalize_into(user_name, &mut buf) else { return Vec::new() };
        let mut pairs = Vec::with_capacity(3);
        if self.reply.user_name {
            pairs.push(("User-Name", name.to_owned()));
        }
        if wants_cui {
            pairs.push(("Chargeable-User-Identity", name.to_owned()));
        }
        if let (Some(attr), Some(org)) = (&self.reply.organisation_attribute, crate::model::name::organisation(name)) {
            pairs.push((attr.as_str(), org.to_owned()));
        }
        pairs
    }

    /// The cell this instance's requests load the current trust map from.
    pub fn snapshot(&self) -> &SnapshotCell {
        &self.snapshot
    }

    /// A name from an EAP identity, seen before its handshake: when the policy admits it
    /// only through its domain, the sync looks it up now, so its answer is usually in by
    /// the time the check runs. Never blocks. Returns whether the sync was told.
    pub fn hint(&self, user_name: &str) -> bool {
        let Feeder::Sync(sync) = &self.feeder else { return false };
        let mut buf = [0u8; MAX_NAME_LEN];
        let Ok(name) = crate::model::name::normalize_into(user_name, &mut buf) else { return false };
        let guard = self.snapshot.load();
        let Some(map) = guard.as_deref() else { return false };
        // Names of exact entries are looked up ahead of time; anything else not under a
        // domain entry is never looked up (it is arbitrary input).
        if !map.policy().covers(name) || map.policy().interned(name).is_some() {
            return false;
        }
        Hint::new(name).is_some_and(|h| sync.hint(h))
    }

    /// Decides `req` and hands the outcome to `effects` while the snapshot is borrowed.
    pub fn decide<R>(&self, stage: Stage, req: &Request<'_>, effects: impl FnOnce(&Decided<'_>) -> R) -> R {
        let started = Instant::now();
        let guard = self.snapshot.load();
        let decision = check::check(guard.as_deref(), req);
        self.decisions.count(stage, &decision);
        let micros = started.elapsed().as_micros();
        let outcome = Decided { log_line: self.log_line(req, &decision, micros), decision };
        effects(&outcome)
    }

    fn log_line(&self, req: &Request<'_>, decision: &Decision<'_>, micros: u128) -> String {
        let mut line = String::with_capacity(160);
        let result = match decision {
            Decision::Accept { .. } => "accept",
            Decision::Reject(_) => "reject",
        };
        let _ = write!(line, "{}: {result} name=", self.label);
        push_escaped(&mut line, req.user_name.unwrap_or("-"));
        line.push_str(" ssid=");
        push_escaped(&mut line, req.called_station_id.and_then(ssid_of).unwrap_or("-"));
        if let Decision::Reject(reason) = decision {
            let _ = write!(line, " reason={reason}");
        }
        // Which certificate decided: the first 8 bytes of its SHA-256 are enough to find
        // it in DNS and in radiusd's debug log.
        match &req.cert {
            Ok(cert) => {
                line.push_str(" cert=");
                for b in &cert.leaf().cert_sha256[..8] {
                    let _ = write!(line, "{b:02x}");
                }
                if cert.source == Source::Resumed {
                    line.push_str(" resumed");
                }
            }
            Err(_) => line.push_str(" cert=-"),
        }
        let _ = write!(line, " ({micros} us)");
        line
    }

    /// Stops the metrics listener and the feeder thread and waits for both; detach calls
    /// it once.
    pub fn stop(&mut self) {
        if let Some(e) = &mut self.exporter {
            e.stop();
        }
        match &mut self.feeder {
            Feeder::Watch(w) => w.stop(),
            Feeder::Sync(s) => s.stop(),
        }
    }
}

/// Attacker-controlled text goes into logs escaped and bounded.
fn push_escaped(out: &mut String, text: &str) {
    const MAX: usize = 256;
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            // Spaces too: the record is `key=value` separated by spaces.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_line_escapes_and_bounds_hostile_names() {
        let mut s = String::new();
        push_escaped(&mut s, "a b\n\u{1b}[31m");
        assert_eq!(s, "a\\u{20}b\\u{a}\\u{1b}[31m");
        let mut s = String::new();
        push_escaped(&mut s, &"x".repeat(1000));
        assert_eq!(s.len(), 259);
    }

    #[test]
    fn an_instance_without_a_map_rejects_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut inst = Instance::start(Config {
            name: "t".into(),
            trust_map: dir.path().join("absent.json"),
            reload_interval: Duration::from_millis(10),
            reply: Default::default(),
            metrics: None,
            sync: None,
        })
        .unwrap();
        let req = Request {
            user_name: Some("car54._device.cars.example"),
            called_station_id: Some("00-00-00-00-00-01:SSID1"),
            ..Default::default()
        };
        let line = inst.decide(Stage::PostAuth, &req, |o| {
            assert_eq!(o.decision, Decision::Reject(check::Reason::NoTrustMap));
            o.log_line.clone()
        });
        assert!(line.starts_with(
            "rlm_rust[t]: reject name=car54._device.cars.example ssid=SSID1 reason=no trust map loaded cert=- ("
        ));
        inst.stop();
    }
}
