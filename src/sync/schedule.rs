//! The sync's memory: per name, the last good discovery and when to look again.
//!
//! Pure state, no I/O, so every rule below is unit-tested without DNS:
//! - a name is refreshed at min(TTL, max_interval), never sooner than min_interval unless
//!   the TTL itself is shorter (honoured down to 1 s), with jitter so 10k names with one
//!   TTL do not all fire in the same second;
//! - a withdrawn (no TLSA, nothing usable) or Bogus name loses its associations at once:
//!   that is revocation at the speed of the TTL;
//! - a failed lookup (timeout, SERVFAIL, HTTPS down) keeps the last good entry and backs
//!   off, until the entry is older than max_stale: then it is dropped (fail closed);
//! - an association whose authenticated certificate has expired is dropped even while DNS
//!   is unreachable;
//! - a name discovered on demand (allowed through its domain) is refreshed while it keeps
//!   showing up, remembered as "nothing published" for the negative TTL when DNS says so,
//!   and forgotten once it has not shown up for `discovery_idle`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::model::association::Association;
use crate::model::policy::parent;
use crate::sync::discover::Outcome;

/// Timing rules, from the instance configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Refresh floor for TTLs longer than it, and the first step of the failure back-off.
    pub min_interval: Duration,
    /// Longest wait before a name is looked up again (caps TTL and back-off alike).
    pub max_interval: Duration,
    /// How long after DNS last confirmed it a failing name's entry is still served.
    pub max_stale: Duration,
    /// How long a name discovered on demand is kept without showing up again.
    pub discovery_idle: Duration,
}

/// The last good state of a name.
#[derive(Debug, Clone)]
pub struct Good {
    /// Shared with the trust map's entry of the name.
    pub associations: Arc<[Association]>,
    /// The CA certificates these associations' handshakes need in the CA set.
    pub cas: Arc<[X509]>,
    /// When DNS last confirmed it (Unix seconds).
    pub verified_at: i64,
}

/// What the trust map should say about a name.
#[derive(Debug, Clone, Copy)]
pub enum Shown<'s> {
    /// Nothing: not looked up yet (or forgotten).
    Nothing,
    /// DNS says nothing usable is published (kept for names discovered on demand, so the
    /// check can tell "nothing published" from "not looked up yet").
    Negative,
    /// The name's last good associations (confirmed, or still within `max_stale`).
    Good(&'s Good),
}

/// Why a name is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An exact entry of the policy.
    Policy,
    /// A name no device has, under a domain entry: what the domain's wildcard answers for
    /// it is the fleet's trust anchor, which must be in the CA set before the first of its
    /// devices shakes hands. Never shown in the trust map.
    Anchor,
    /// Allowed through its domain, seen in an EAP conversation at `last_seen` (Unix s).
    Discovered {
        /// Last time (Unix seconds) the name was seen on the request path; the name is
        /// forgotten `discovery_idle` after it.
        last_seen: i64,
    },
}

impl Origin {
    fn is_discovered(self) -> bool {
        matches!(self, Origin::Discovered { .. })
    }
}

/// Which pool a lookup runs in: names discovered on demand have their own, so a flood of
/// them never takes a slot from a policy name's refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// A name of the policy.
    Refresh,
    /// A name discovered on demand.
    Discovery,
}

impl Pool {
    fn of(origin: Origin) -> Pool {
        match origin {
            Origin::Policy | Origin::Anchor => Pool::Refresh,
            Origin::Discovered { .. } => Pool::Discovery,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many lookups may run at once: per pool, and per pool and domain (the parent of the
/// name), so one slow or hostile zone holds at most `per_domain` slots of a pool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lookups of the policy's names (and anchor probes) in flight at once.
    pub refresh: usize,
    /// Lookups of names discovered on demand in flight at once.
    pub discovery: usize,
    /// Lookups in flight per pool under any one parent domain.
    pub per_domain: usize,
}

impl Limits {
    fn of(&self, pool: Pool) -> usize {
        match pool {
            Pool::Refresh => self.refresh,
            Pool::Discovery => self.discovery,
        }
    }
}

#[derive(Debug, Clone)]
struct NameState {
    origin: Origin,
    good: Option<Good>,
    negative: bool,
    due: Instant,
    failures: u32,
    /// The pool whose counters the running lookup holds.
    flying: Option<Pool>,
    /// What the last lookup concluded (None: not looked up yet), and why when it was not
    /// a publication: for the operator's status view.
    last: Option<&'static str>,
    error: Option<Box<str>>,
    /// TLSA records in the last answer.
    records: u16,
    /// When what the trust map shows for the name last changed (Unix seconds).
    changed_at: i64,
    /// Looked up since the current round began (names of the configuration only).
    swept: bool,
}

/// What the status view says of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameStatus {
    /// Not looked up yet (a name discovered on demand, or one the policy just added).
    Pending,
    /// Associations published, confirmed by the last lookup.
    Published,
    /// Associations still published while lookups fail (until max_stale).
    Stale,
    /// DNS says nothing usable is published.
    Withdrawn,
    /// The last answer failed DNSSEC validation.
    Bogus,
    /// Lookups fail and nothing is published.
    Failing,
}

impl NameStatus {
    /// Every status, in the order the metrics and status counts list them.
    pub const ALL: [NameStatus; 6] = [
        NameStatus::Pending,
        NameStatus::Published,
        NameStatus::Stale,
        NameStatus::Withdrawn,
        NameStatus::Bogus,
        NameStatus::Failing,
    ];

    /// The status as the metrics label and the status view spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            NameStatus::Pending => "pending_discovery",
            NameStatus::Published => "published",
            NameStatus::Stale => "stale",
            NameStatus::Withdrawn => "withdrawn",
            NameStatus::Bogus => "bogus",
            NameStatus::Failing => "failing",
        }
    }
}

/// One row of the status view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRow {
    /// The tracked name (a device name, or a domain entry's anchor probe).
    pub name: Arc<str>,
    /// Why it is tracked: policy entry, anchor probe, or discovered on demand.
    pub origin: Origin,
    /// Where the name stands, as the operator reads it.
    pub status: NameStatus,
    /// Associations the trust map serves for it now (0 when none).
    pub associations: usize,
    /// TLSA records in the last answer (saturates at 65535).
    pub records: u16,
    /// When what the trust map shows for it last changed (Unix seconds; 0: never).
    pub changed_at: i64,
    /// Seconds until the next lookup (0: due or running).
    pub next_in: u64,
    /// Why the last lookup did not publish (withdrawn, bogus or failed); None after a
    /// publication.
    pub error: Option<Box<str>>,
}

/// A round: every name of the configuration looked up once.
#[derive(Debug, Clone, Copy)]
struct Round {
    started: Instant,
    /// Names of the configuration not looked up yet in this round.
    remaining: usize,
    /// The last completed round: when it ended (Unix seconds) and how long it took.
    last: Option<(i64, Duration)>,
}

/// The names of one pool and domain waiting for their refresh, earliest first. Entries
/// are not removed in place: an entry is live only while it matches its name's state
/// (same due time, same pool, not in flight), and stale ones are dropped when they reach
/// the top. Every name has at most one live entry.
/// Names (or domains) by due time, earliest on top.
type DueHeap = BinaryHeap<Reverse<(Instant, Arc<str>)>>;

#[derive(Debug, Default)]
struct Queue {
    waiting: DueHeap,
    in_flight: usize,
    /// The time under which this queue is listed in its pool's `heads`, if it is.
    listed: Option<Instant>,
}

/// Every tracked name and its state, with the due queues that keep picking the next
/// lookups O(log n) at a million names.
#[derive(Debug)]
pub struct Schedule {
    timing: Timing,
    limits: Limits,
    names: HashMap<Arc<str>, NameState>,
    /// Per pool, per domain.
    queues: [HashMap<Arc<str>, Queue>; 2],
    /// Per pool: the queues with a waiting name and a free slot, by their earliest due.
    heads: [DueHeap; 2],
    in_flight: [usize; 2],
    /// How many of `names` were discovered on demand.
    discovered: usize,
    round: Round,
    seed: std::collections::hash_map::RandomState,
}

impl Schedule {
    /// An empty schedule with these timing rules and pool sizes.
    pub fn new(timing: Timing, limits: Limits) -> Schedule {
        Schedule {
            timing,
            limits,
            names: HashMap::new(),
            queues: Default::default(),
            heads: Default::default(),
            in_flight: [0; 2],
            discovered: 0,
            round: Round { started: Instant::now(), remaining: 0, last: None },
            seed: Default::default(),
        }
    }

    /// Makes the policy names tracked equal to `names`: new ones are due now, removed
    /// ones are forgotten (with their entries), names discovered on demand are kept.
    /// Returns the names whose trust map entry goes away.
    pub fn set_names(&mut self, names: impl IntoIterator<Item = Arc<str>>, now: Instant) -> Vec<Arc<str>> {
        self.set_configured(Origin::Policy, names, now)
    }

    /// Makes the anchor probes tracked equal to `names` (one per domain entry).
    pub fn set_anchors(&mut self, names: impl IntoIterator<Item = Arc<str>>, now: Instant) -> Vec<Arc<str>> {
        self.set_configured(Origin::Anchor, names, now)
    }

    fn set_configured(
        &mut self,
        origin: Origin,
        names: impl IntoIterator<Item = Arc<str>>,
        now: Instant,
    ) -> Vec<Arc<str>> {
        let wanted: HashMap<Arc<str>, ()> = names.into_iter().map(|n| (n, ())).collect();
        let gone: Vec<Arc<str>> = self
            .names
            .iter()
            .filter(|(n, s)| s.origin == origin && !wanted.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        let dropped = gone.into_iter().filter(|n| self.forget(n)).collect();
        for n in wanted.into_keys() {
            match self.names.get_mut(&n) {
                None => {
                    self.names.insert(n.clone(), NameState::new(origin, now));
                    self.round.remaining += 1;
                    self.enqueue(&n);
                }
                Some(state) if state.origin.is_discovered() && origin == Origin::Policy => {
                    // A discovered name that the policy now lists by name becomes a policy
                    // name, refreshed in the policy's pool.
                    state.origin = Origin::Policy;
                    state.swept = false;
                    self.discovered -= 1;
                    self.round.remaining += 1;
                    self.enqueue(&n);
                }
                Some(_) => {}
            }
        }
        dropped
    }

    /// How many tracked names were discovered on demand.
    pub fn discovered(&self) -> usize {
        self.discovered
    }

    /// Starts tracking a name discovered on demand, due now. False when it is tracked.
    pub fn add_discovered(&mut self, name: Arc<str>, wall: i64, now: Instant) -> bool {
        if self.names.contains_key(&name) {
            return false;
        }
        self.names.insert(name.clone(), NameState::new(Origin::Discovered { last_seen: wall }, now));
        self.discovered += 1;
        self.enqueue(&name);
        true
    }

    /// A discovered name showed up again (it keeps being refreshed).
    pub fn seen(&mut self, name: &str, wall: i64) -> bool {
        match self.names.get_mut(name) {
            Some(NameState { origin: Origin::Discovered { last_seen }, .. }) => {
                *last_seen = (*last_seen).max(wall);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Forgets the names discovered on demand that `keep` refuses (their domain left the
    /// policy). Returns those that had an entry.
    pub fn retain_discovered(&mut self, mut keep: impl FnMut(&str) -> bool) -> Vec<Arc<str>> {
        let gone: Vec<Arc<str>> =
            self.names.iter().filter(|(n, s)| s.origin.is_discovered() && !keep(n)).map(|(n, _)| n.clone()).collect();
        gone.into_iter().filter(|n| self.forget(n)).collect()
    }

    /// Stops tracking `name`; true when it had a trust map entry. Its queue entry goes
    /// stale; a lookup still running gives its slot back now (its result finds no name).
    fn forget(&mut self, name: &str) -> bool {
        let Some(state) = self.names.remove(name) else { return false };
        if state.origin.is_discovered() {
            self.discovered -= 1;
        } else if !state.swept {
            self.round.remaining = self.round.remaining.saturating_sub(1);
        }
        if let Some(pool) = state.flying {
            self.land(name, pool);
        }
        state.good.is_some() || state.negative
    }

    /// Restores a name's last good state (from the persisted snapshot at start-up). The
    /// name stays due now, so it is re-verified as soon as DNS answers.
    pub fn restore(&mut self, name: &str, good: Good) {
        if let Some(s) = self.names.get_mut(name) {
            s.good = Some(good);
        }
    }

    /// Starts the lookups that are due, within the limits: the longest overdue first,
    /// except that a pool or domain with no free slot is passed over. The names returned
    /// are in flight until their outcome is recorded.
    pub fn take_due(&mut self, now: Instant) -> Vec<(Arc<str>, Pool)> {
        let mut started = Vec::new();
        for pool in [Pool::Refresh, Pool::Discovery] {
            let i = pool.index();
            while self.in_flight[i] < self.limits.of(pool) {
                let Some(Reverse((listed, domain))) = self.heads[i].peek().cloned() else { break };
                if listed > now {
                    break;
                }
                self.heads[i].pop();
                let Some(queue) = self.queues[i].get_mut(&domain) else { continue };
                if queue.listed != Some(listed) {
                    continue; // listed again under another time since
                }
                queue.listed = None;
                drop_stale(&self.names, pool, queue);
                let next = queue.waiting.peek().map(|Reverse((due, _))| *due);
                if next.is_none_or(|due| due > now) || queue.in_flight >= self.limits.per_domain {
                    self.list(pool, &domain);
                    continue;
                }
                let Some(Reverse((_, name))) = queue.waiting.pop() else { continue };
                queue.in_flight += 1;
                self.in_flight[i] += 1;
                if let Some(state) = self.names.get_mut(&name) {
                    state.flying = Some(pool);
                }
                started.push((name, pool));
                self.list(pool, &domain);
            }
        }
        started
    }

    /// Names due now and not in flight, longest overdue first (for the operator tool and
    /// tests: this walks every name).
    pub fn due_now(&self, now: Instant) -> Vec<Arc<str>> {
        let mut due: Vec<(&Arc<str>, Instant)> =
            self.names.iter().filter(|(_, s)| s.due <= now && s.flying.is_none()).map(|(n, s)| (n, s.due)).collect();
        due.sort_unstable_by_key(|(_, d)| *d);
        due.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// When `take_due` may next start something (a pool with no free slot waits for a
    /// lookup to finish instead).
    pub fn next_due(&self) -> Option<Instant> {
        [Pool::Refresh, Pool::Discovery]
            .into_iter()
            .filter(|p| self.in_flight[p.index()] < self.limits.of(*p))
            .filter_map(|p| self.heads[p.index()].peek().map(|Reverse((t, _))| *t))
            .min()
    }

    /// Marks `name` as being looked up outside the limits (an operator's round). Its
    /// slot is counted until its outcome is recorded.
    pub fn start(&mut self, name: &str) {
        let Some(state) = self.names.get_mut(name) else { return };
        if state.flying.is_some() {
            return;
        }
        let pool = Pool::of(state.origin);
        state.flying = Some(pool);
        let domain = domain_of(name);
        let i = pool.index();
        self.in_flight[i] += 1;
        match self.queues[i].get_mut(domain) {
            Some(q) => q.in_flight += 1,
            None => {
                self.queues[i].insert(Arc::from(domain), Queue { in_flight: 1, ..Queue::default() });
            }
        }
    }

    /// Why `name` is tracked; None when it is not.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.names.get(name).map(|s| s.origin)
    }

    /// Records a lookup result and queues the name's next refresh. Returns true when what
    /// the trust map shows changed.
    pub fn record(&mut self, name: &str, outcome: Outcome, now: Instant, wall: i64) -> bool {
        let timing = self.timing;
        let jitter = self.jitter(name);
        let Some((key, state)) = self.names.get_key_value(name) else { return false };
        let (key, flying) = (key.clone(), state.flying);
        if let Some(pool) = flying {
            self.land(name, pool);
        }
        let Some(state) = self.names.get_mut(name) else { return false };
        state.flying = None;
        let discovered = state.origin.is_discovered();
        state.last = Some(outcome.kind());
        state.error = match &outcome {
            Outcome::Published(_) => None,
            Outcome::Withdrawn { reason, .. } | Outcome::Bogus { reason } | Outcome::Failed { reason } => {
                Some(reason.as_str().into())
            }
        };
        let sweeps = !discovered && !std::mem::replace(&mut state.swept, true);
        let changed = match outcome {
            Outcome::Published(d) => {
                let changed = state.negative || state.good.as_ref().is_none_or(|g| g.associations != d.associations);
                state.due = now + refresh_after(d.ttl, timing, jitter);
                state.failures = 0;
                state.negative = false;
                state.good = Some(Good { associations: d.associations, cas: d.cas.into(), verified_at: wall });
                changed
            }
            Outcome::Withdrawn { ttl, .. } => {
                state.due = now + refresh_after(ttl, timing, jitter);
                state.failures = 0;
                let had = state.good.take().is_some();
                // A discovered name's "nothing here" is shown, so the check can tell it
                // from "not looked up yet"; a policy name simply has no entry.
                let was_negative = std::mem::replace(&mut state.negative, discovered);
                had || was_negative != state.negative
            }
            Outcome::Bogus { .. } => {
                state.failures = state.failures.saturating_add(1);
                state.due = now + backoff(state.failures, timing);
                let was_negative = std::mem::replace(&mut state.negative, discovered);
                state.good.take().is_some() || was_negative != state.negative
            }
            Outcome::Failed { .. } => {
                state.failures = state.failures.saturating_add(1);
                state.due = now + backoff(state.failures, timing);
                false
            }
        };
        if changed {
            if let Some(state) = self.names.get_mut(name) {
                state.changed_at = wall;
            }
        }
        if sweeps {
            self.swept_one(now, wall);
        }
        self.enqueue(&key);
        changed
    }

    /// How many TLSA records the last answer for `name` held (for the status view).
    pub fn note_records(&mut self, name: &str, records: usize) {
        if let Some(state) = self.names.get_mut(name) {
            state.records = u16::try_from(records).unwrap_or(u16::MAX);
        }
    }

    /// A name of the configuration was looked up for the first time this round; the
    /// last one ends the round and starts the next.
    fn swept_one(&mut self, now: Instant, wall: i64) {
        self.round.remaining = self.round.remaining.saturating_sub(1);
        if self.round.remaining > 0 {
            return;
        }
        self.round.last = Some((wall, now.saturating_duration_since(self.round.started)));
        self.round.started = now;
        let mut configured = 0;
        for state in self.names.values_mut().filter(|s| !s.origin.is_discovered()) {
            state.swept = false;
            configured += 1;
        }
        self.round.remaining = configured;
    }

    /// The last completed round: when it ended (Unix seconds) and how long it took.
    pub fn last_round(&self) -> Option<(i64, Duration)> {
        self.round.last
    }

    /// How many names are in each status.
    pub fn status_counts(&self) -> [(NameStatus, usize); 6] {
        let mut counts = NameStatus::ALL.map(|s| (s, 0));
        for state in self.names.values() {
            let i = NameStatus::ALL.iter().position(|s| *s == state.status()).unwrap_or(0);
            counts[i].1 += 1;
        }
        counts
    }

    /// The status rows of up to `limit` names, problems first (then by name).
    pub fn rows(&self, now: Instant, limit: usize) -> Vec<NameRow> {
        let mut rows: Vec<NameRow> = self
            .names
            .iter()
            .map(|(name, s)| NameRow {
                name: name.clone(),
                origin: s.origin,
                status: s.status(),
                associations: s.good.as_ref().map_or(0, |g| g.associations.len()),
                records: s.records,
                changed_at: s.changed_at,
                next_in: if s.flying.is_some() { 0 } else { s.due.saturating_duration_since(now).as_secs() },
                error: s.error.clone(),
            })
            .collect();
        let rank = |s: NameStatus| match s {
            NameStatus::Bogus => 0,
            NameStatus::Failing => 1,
            NameStatus::Stale => 2,
            NameStatus::Withdrawn => 3,
            NameStatus::Pending => 4,
            NameStatus::Published => 5,
        };
        rows.sort_by(|a, b| (rank(a.status), &a.name).cmp(&(rank(b.status), &b.name)));
        rows.truncate(limit);
        rows
    }

    /// Drops entries DNS has not confirmed for max_stale, associations whose certificate
    /// has expired, and names discovered on demand that stopped showing up. Returns the
    /// names whose trust map entry changed.
    pub fn expire(&mut self, wall: i64) -> Vec<Arc<str>> {
        let max_stale = i64::try_from(self.timing.max_stale.as_secs()).unwrap_or(i64::MAX);
        let idle = i64::try_from(self.timing.discovery_idle.as_secs()).unwrap_or(i64::MAX);
        let mut changed = Vec::new();
        let mut idle_names = Vec::new();
        for (name, state) in self.names.iter_mut() {
            if let Origin::Discovered { last_seen } = state.origin {
                if wall.saturating_sub(last_seen) > idle && state.flying.is_none() {
                    idle_names.push(name.clone());
                    continue;
                }
            }
            if let Some(good) = &mut state.good {
                let live = |a: &Association| a.not_after.is_none_or(|t| t >= wall);
                let expired = !good.associations.iter().all(live);
                if expired {
                    good.associations = good.associations.iter().filter(|a| live(a)).cloned().collect();
                }
                let stale = wall.saturating_sub(good.verified_at) > max_stale;
                if expired || stale {
                    changed.push(name.clone());
                }
                if good.associations.is_empty() || stale {
                    state.good = None;
                }
            }
        }
        changed.extend(idle_names.into_iter().filter(|n| self.forget(n)));
        changed
    }

    /// What the trust map should show for `name`.
    pub fn shown(&self, name: &str) -> Shown<'_> {
        match self.names.get(name) {
            Some(NameState { good: Some(g), .. }) => Shown::Good(g),
            Some(NameState { negative: true, .. }) => Shown::Negative,
            _ => Shown::Nothing,
        }
    }

    /// Every name with a good entry, in no particular order.
    pub fn published(&self) -> impl Iterator<Item = (&Arc<str>, &Good)> {
        self.names.iter().filter_map(|(n, s)| s.good.as_ref().map(|g| (n, g)))
    }

    /// Every tracked name.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.names.keys()
    }

    /// Names being looked up now, and how many of them were discovered on demand.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.in_flight.iter().sum(), self.in_flight[Pool::Discovery.index()])
    }

    /// Names tracked, of every origin.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name is tracked.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Queues `name` under its due time in its pool and domain.
    fn enqueue(&mut self, name: &Arc<str>) {
        let Some(state) = self.names.get(name) else { return };
        if state.flying.is_some() {
            return;
        }
        let (pool, due, domain) = (Pool::of(state.origin), state.due, domain_of(name));
        let queues = &mut self.queues[pool.index()];
        match queues.get_mut(domain) {
            Some(q) => q.waiting.push(Reverse((due, name.clone()))),
            None => {
                let mut q = Queue::default();
                q.waiting.push(Reverse((due, name.clone())));
                queues.insert(Arc::from(domain), q);
            }
        }
        self.list(pool, domain);
    }

    /// A lookup of `name` in `pool` ended: its slots are free again.
    fn land(&mut self, name: &str, pool: Pool) {
        let i = pool.index();
        self.in_flight[i] = self.in_flight[i].saturating_sub(1);
        let domain = domain_of(name);
        if let Some(q) = self.queues[i].get_mut(domain) {
            q.in_flight = q.in_flight.saturating_sub(1);
        }
        self.list(pool, domain);
    }

    /// Lists a queue in its pool's heads under its earliest live due time, when it has a
    /// free slot and is not listed that early already; forgets it when it is empty.
    fn list(&mut self, pool: Pool, domain: &str) {
        let i = pool.index();
        let Some(key) = self.queues[i].get_key_value(domain).map(|(k, _)| k.clone()) else { return };
        let Some(queue) = self.queues[i].get_mut(domain) else { return };
        drop_stale(&self.names, pool, queue);
        let Some(Reverse((due, _))) = queue.waiting.peek() else {
            if queue.in_flight == 0 {
                self.queues[i].remove(domain);
            }
            return;
        };
        if queue.in_flight >= self.limits.per_domain || queue.listed.is_some_and(|t| t <= *due) {
            return;
        }
        let due = *due;
        queue.listed = Some(due);
        self.heads[i].push(Reverse((due, key)));
    }

    /// A per-name factor in [0.9, 1.0]: spreads refreshes without a random source.
    fn jitter(&self, name: &str) -> f64 {
        let mut h = self.seed.build_hasher();
        h.write(name.as_bytes());
        0.9 + (h.finish() % 1000) as f64 / 10_000.0
    }
}

/// The queue a name waits in: its parent domain (what a zone operator controls).
fn domain_of(name: &str) -> &str {
    parent(name).unwrap_or("")
}

/// Pops the entries at the top of `queue` that no longer match their name's state.
fn drop_stale(names: &HashMap<Arc<str>, NameState>, pool: Pool, queue: &mut Queue) {
    while let Some(Reverse((due, name))) = queue.waiting.peek() {
        let live = names.get(name).is_some_and(|s| s.due == *due && s.flying.is_none() && Pool::of(s.origin) == pool);
        if live {
            return;
        }
        queue.waiting.pop();
    }
}

impl NameState {
    fn status(&self) -> NameStatus {
        match (self.last, &self.good) {
            (None, _) => NameStatus::Pending,
            (Some("published"), Some(_)) => NameStatus::Published,
            (Some(_), Some(_)) => NameStatus::Stale,
            (Some("bogus"), None) => NameStatus::Bogus,
            (Some("failed"), None) => NameStatus::Failing,
            (Some(_), None) => NameStatus::Withdrawn,
        }
    }

    fn new(origin: Origin, now: Instant) -> NameState {
        NameState {
            origin,
            good: None,
            negative: false,
            due: now,
            failures: 0,
            flying: None,
            last: None,
            error: None,
            records: 0,
            changed_at: 0,
            swept: false,
        }
    }
}

/// Refresh just before the TTL runs out (jitter <= 1), within [min_interval, max_interval].
/// A TTL below min_interval is honoured down to one second: that is the revocation bound.
fn refresh_after(ttl: Duration, t: Timing, jitter: f64) -> Duration {
    let floor = t.min_interval.min(ttl).max(Duration::from_secs(1));
    ttl.min(t.max_interval).mul_f64(jitter).max(floor)
}

fn backoff(failures: u32, t: Timing) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    t.min_interval.saturating_mul(1 << exp).min(t.max_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::association::{Matching, Selector, Usage};
    use crate::sync::discover::Discovered;

    fn timing() -> Timing {
        Timing {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(3600),
            max_stale: Duration::from_secs(600),
            discovery_idle: Duration::from_secs(900),
        }
    }

    const LIMITS: Limits = Limits { refresh: 100, discovery: 100, per_domain: 100 };

    fn assoc(cert: u8, not_after: i64) -> Association {
        Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, &[cert], Some(not_after)).unwrap()
    }

    fn published(cert: u8, ttl: u64) -> Outcome {
        Outcome::Published(Discovered {
            associations: vec![assoc(cert, 10_000)].into(),
            cas: vec![],
            ttl: Duration::from_secs(ttl),
        })
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    fn due_in(s: &Schedule, name: &str, t0: Instant) -> Duration {
        s.names[name].due - t0
    }

    #[test]
    fn new_names_are_due_at_once_and_refresh_at_ttl() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example", "b.example"]), t0);
        let mut due = s.due_now(t0);
        due.sort();
        assert_eq!(due, names(&["a.example", "b.example"]));
        assert!(s.record("a.example", published(1, 60), t0, 100));
        assert!(!s.due_now(t0).contains(&Arc::from("a.example")));
        let next = due_in(&s, "a.example", t0);
        assert!(next >= Duration::from_secs(54) && next <= Duration::from_secs(60), "{next:?}");
        // The same associations again are no change.
        assert!(!s.record("a.example", published(1, 60), t0, 160));
        assert!(s.record("a.example", published(2, 60), t0, 220));
    }

    #[test]
    fn a_name_in_flight_is_not_started_twice() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example"]), t0);
        s.start("a.example");
        assert!(s.due_now(t0).is_empty());
        assert_eq!(s.in_flight(), (1, 0));
        s.record("a.example", Outcome::Failed { reason: "timeout".into() }, t0, 0);
        assert_eq!(s.in_flight(), (0, 0));
    }

    #[test]
    fn ttl_is_clamped_between_min_and_max_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example", "b.example"]), t0);
        s.record("a.example", published(1, 1), t0, 0);
        s.record("b.example", published(1, 86_400), t0, 0);
        assert!(due_in(&s, "a.example", t0) >= Duration::from_secs(1));
        assert!(due_in(&s, "a.example", t0) <= Duration::from_secs(5));
        assert!(due_in(&s, "b.example", t0) <= Duration::from_secs(3600));
        assert!(due_in(&s, "b.example", t0) >= Duration::from_secs(3240));
    }

    #[test]
    fn withdrawn_and_bogus_revoke_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example", "b.example"]), t0);
        s.record("a.example", published(1, 60), t0, 0);
        s.record("b.example", published(1, 60), t0, 0);
        let withdrawn = Outcome::Withdrawn { reason: "NXDOMAIN".into(), ttl: Duration::from_secs(60) };
        assert!(s.record("a.example", withdrawn, t0, 1));
        assert!(s.record("b.example", Outcome::Bogus { reason: "bad RRSIG".into() }, t0, 1));
        assert_eq!(s.published().count(), 0);
        assert!(matches!(s.shown("a.example"), Shown::Nothing), "a policy name without records has no entry");
    }

    #[test]
    fn failures_keep_the_last_good_entry_until_max_stale_with_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example"]), t0);
        s.record("a.example", published(1, 60), t0, 1000);
        let mut dues = vec![];
        for i in 0..4 {
            assert!(!s.record("a.example", Outcome::Failed { reason: "timeout".into() }, t0, 1000 + i));
            dues.push(due_in(&s, "a.example", t0));
        }
        assert_eq!(dues, [5, 10, 20, 40].map(Duration::from_secs));
        assert_eq!(s.published().count(), 1, "kept while fresh enough");
        assert!(s.expire(1000 + 600).is_empty());
        assert_eq!(s.expire(1000 + 601), names(&["a.example"]));
        assert_eq!(s.published().count(), 0, "dropped after max_stale: fail closed");
    }

    #[test]
    fn expired_certificates_leave_even_without_dns() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example"]), t0);
        let two = Discovered {
            associations: vec![assoc(1, 500), assoc(2, 900)].into(),
            cas: vec![],
            ttl: Duration::from_secs(60),
        };
        s.record("a.example", Outcome::Published(two), t0, 400);
        assert_eq!(s.expire(501), names(&["a.example"]));
        assert_eq!(s.published().next().unwrap().1.associations.len(), 1);
        s.expire(901);
        assert_eq!(s.published().count(), 0);
    }

    #[test]
    fn names_leaving_the_policy_lose_their_associations() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), LIMITS);
        s.set_names(names(&["a.example", "b.example"]), t0);
        s.record("a.example", published(1, 60), t0, 0);
        assert!(s.set_names(names(&["a.example"]), t0).is_empty(), "b was not published");
        assert_eq!(s.set_names(names(&["c.example"]), t0), names(&["a.example"]));
        assert_eq!(s.due_now(t0), names(&["c.example"]));
        assert_eq!(s.published().count(), 0);
    }

    #[test]
    fn discovered_names_show_negatives_refresh_while_seen_and_leave_when_idle() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing { max_stale: Duration::from_secs(86_400), ..timing() }, LIMITS);
        assert!(s.add_discovered(Arc::from("bus1.fleet.example"), 1000, t0));
        assert!(!s.add_discovered(Arc::from("bus1.fleet.example"), 1001, t0), "already tracked");
        let none = Outcome::Withdrawn { reason: "no TLSA record".into(), ttl: Duration::from_secs(30) };
        assert!(s.record("bus1.fleet.example", none, t0, 1000), "a negative answer is shown");
        assert!(matches!(s.shown("bus1.fleet.example"), Shown::Negative));
        assert!(s.record("bus1.fleet.example", published(1, 60), t0, 1010));
        assert!(matches!(s.shown("bus1.fleet.example"), Shown::Good(_)));
        // Policy changes do not touch discovered names.
        assert!(s.set_names(names(&["a.example"]), t0).is_empty());
        assert!(s.seen("bus1.fleet.example", 1500));
        assert!(s.expire(1500 + 900).is_empty(), "seen within discovery_idle");
        assert_eq!(s.expire(1500 + 901), names(&["bus1.fleet.example"]), "idle: forgotten");
        assert!(matches!(s.shown("bus1.fleet.example"), Shown::Nothing));
        assert!(!s.seen("bus1.fleet.example", 3000));
    }

    fn started(s: &mut Schedule, now: Instant) -> Vec<String> {
        let mut v: Vec<String> = s.take_due(now).into_iter().map(|(n, _)| n.to_string()).collect();
        v.sort();
        v
    }

    fn failed() -> Outcome {
        Outcome::Failed { reason: "timeout".into() }
    }

    #[test]
    fn take_due_starts_the_longest_overdue_first_within_the_pool() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 2, discovery: 1, per_domain: 10 });
        s.set_names(names(&["a.x.example", "b.x.example", "c.y.example"]), t0);
        // a: due in 10 s, b: in 5 s, c: now.
        s.record("a.x.example", published(1, 10), t0, 0);
        s.record("b.x.example", failed(), t0, 0);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(started(&mut s, t0), ["c.y.example"]);
        assert!(started(&mut s, at(4)).is_empty(), "nothing else due yet");
        assert_eq!(s.next_due(), Some(t0 + due_in(&s, "b.x.example", t0)));
        assert_eq!(started(&mut s, at(20)), ["b.x.example"], "c holds a slot; b is the longer overdue");
        s.record("c.y.example", published(1, 60), at(20), 0);
        assert_eq!(started(&mut s, at(20)), ["a.x.example"]);
        assert_eq!(s.in_flight(), (2, 0));
    }

    #[test]
    fn a_full_pool_starts_nothing_more_until_a_lookup_lands() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 2, discovery: 2, per_domain: 10 });
        s.set_names(names(&["a.x.example", "b.x.example", "c.x.example"]), t0);
        let first = started(&mut s, t0);
        assert_eq!(first.len(), 2);
        assert!(s.take_due(t0).is_empty());
        assert_eq!(s.next_due(), None, "a full pool does not wake the loop");
        s.record(&first[0], published(1, 60), t0, 0);
        assert_eq!(started(&mut s, t0), ["c.x.example"]);
    }

    #[test]
    fn a_saturated_domain_does_not_hold_back_other_domains() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 10, discovery: 10, per_domain: 2 });
        let slow: Vec<String> = (0..50).map(|i| format!("n{i}.slow.example")).collect();
        let mut all: Vec<&str> = slow.iter().map(String::as_str).collect();
        all.push("car1.fast.example");
        s.set_names(names(&all), t0);
        let first = started(&mut s, t0);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first.contains(&"car1.fast.example".to_string()));
        assert!(s.take_due(t0).is_empty(), "slow.example holds its two slots");
        // car1 comes round again while slow.example is still stuck: it starts.
        s.record("car1.fast.example", published(1, 1), t0, 0);
        assert_eq!(started(&mut s, t0 + Duration::from_secs(2)), ["car1.fast.example"]);
    }

    #[test]
    fn discovered_names_have_their_own_pool() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 1, discovery: 1, per_domain: 10 });
        s.set_names(names(&["car1.cars.example"]), t0);
        for i in 0..100 {
            s.add_discovered(Arc::from(format!("x{i}.fleet.example")), 0, t0);
        }
        let got = s.take_due(t0);
        let pools: Vec<Pool> = got.iter().map(|(_, p)| *p).collect();
        assert_eq!(got.len(), 2);
        assert!(pools.contains(&Pool::Refresh) && pools.contains(&Pool::Discovery));
        assert!(got.iter().any(|(n, _)| &**n == "car1.cars.example"));
        assert_eq!(s.in_flight(), (2, 1));
    }

    #[test]
    fn a_name_forgotten_while_in_flight_gives_its_slot_back() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 1, discovery: 1, per_domain: 1 });
        s.set_names(names(&["a.x.example", "b.x.example"]), t0);
        let first = started(&mut s, t0);
        assert_eq!(first.len(), 1);
        let other = if first[0] == "a.x.example" { "b.x.example" } else { "a.x.example" };
        s.set_names(names(&[other]), t0);
        assert_eq!(started(&mut s, t0), [other]);
        // The late result of the forgotten name changes nothing and frees nothing twice.
        assert!(!s.record(&first[0], published(1, 60), t0, 0));
        assert_eq!(s.in_flight(), (1, 0));
    }

    #[test]
    fn a_name_that_joins_the_policy_moves_to_the_refresh_pool() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 1, discovery: 0, per_domain: 1 });
        s.add_discovered(Arc::from("bus1.fleet.example"), 0, t0);
        assert!(s.take_due(t0).is_empty(), "the discovery pool has no slot");
        s.set_names(names(&["bus1.fleet.example"]), t0);
        assert_eq!(s.take_due(t0), vec![(Arc::from("bus1.fleet.example"), Pool::Refresh)]);
        assert_eq!(s.discovered(), 0);
    }

    #[test]
    fn every_name_is_started_once_per_refresh_at_scale() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing(), Limits { refresh: 64, discovery: 8, per_domain: 16 });
        let list: Vec<String> = (0..20_000).map(|i| format!("d{i}.z{}.example", i % 50)).collect();
        s.set_names(list.iter().map(|n| Arc::from(n.as_str())), t0);
        let mut seen = std::collections::HashSet::new();
        loop {
            let batch = s.take_due(t0);
            if batch.is_empty() {
                break;
            }
            assert!(s.in_flight().0 <= 64);
            for (n, _) in batch {
                assert!(seen.insert(n.clone()), "{n} started twice");
                s.record(&n, published(1, 60), t0, 0);
            }
        }
        assert_eq!(seen.len(), 20_000);
        assert_eq!(s.in_flight(), (0, 0));
        assert!(s.take_due(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(s.take_due(t0 + Duration::from_secs(61)).len(), 64);
    }
}
