//! Where the sync's policy comes from: a file, re-read when it changes, or an `https://`
//! URL on the organisation's own system, polled with conditional requests.
//!
//! A URL is fetched through the sync's HTTPS client (the same web roots, timeout and body
//! limit as `.well-known/ca` fetches) with `If-None-Match` / `If-Modified-Since`, so an
//! unchanged policy costs a 304. A failed fetch, a bad status or a document that does not
//! parse changes nothing: the last good policy stays, and the last good document is kept
//! on disk (with its validators) so a restart while the server is away starts from it.
//! Bad entries of a document that parses are reported one by one and skipped, as in a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::policy::{self, Loaded, PolicyError};
use crate::stores::files::{self, FileStamp};
use crate::sync::https::HttpsClient;

/// A `policy` value that is neither a file nor an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy = {0:?}: only https:// URLs are fetched")]
pub struct PolicySourceError(pub String);

/// The `policy` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A local file, re-read whenever its modification stamp changes.
    File(PathBuf),
    /// An `https://` URL, fetched every `policy_refresh` with conditional requests; its
    /// last good document is kept next to the trust map.
    Url(String),
}

impl PolicySource {
    /// `https://...` is a URL; anything else a path. Plain `http://` is refused: the
    /// policy decides who may join the network.
    pub fn parse(value: &str) -> Result<PolicySource, PolicySourceError> {
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("https://") {
            Ok(PolicySource::Url(value.to_owned()))
        } else if lower.starts_with("http://") {
            Err(PolicySourceError(value.to_owned()))
        } else {
            Ok(PolicySource::File(PathBuf::from(value)))
        }
    }
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::Url(u) => f.write_str(u),
        }
    }
}

/// What one poll found.
#[derive(Debug)]
pub enum Update {
    /// A new policy (with the entries that were skipped).
    Loaded(Loaded),
    /// The file's stamp did not change, or the server answered 304 or sent the same
    /// document again: nothing to do.
    Unchanged,
    /// Nothing usable; the last good policy stays.
    Failed(String),
}

/// The last good document of a URL source, as kept on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct CachedDocument {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Unix seconds of the fetch.
    fetched_at: i64,
    document: String,
}

/// One policy source and what is known about its current version.
pub struct PolicyFeed {
    source: PolicySource,
    client: Option<HttpsClient>,
    /// Where a URL source's last good document is kept.
    cache_path: PathBuf,
    cached: Option<CachedDocument>,
    stamp: Option<FileStamp>,
    /// How often a file is looked at, and a URL fetched.
    file_poll: Duration,
    url_refresh: Duration,
    next: Instant,
    /// Write the last good document to `cache_path` (not for a one-off operator run).
    keep: bool,
}

/// The cached policy, like the trust map it produced, is readable by operators' tools.
const CACHE_MODE: u32 = 0o644;
/// A failed fetch is retried sooner than a good one is refreshed, but not hammered.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

impl PolicyFeed {
    /// A feed of `source`: a file is looked at every `file_poll`, a URL fetched with
    /// `client` every `url_refresh` and its last good document kept at `cache_path`. The
    /// first poll is due at once.
    pub fn new(
        source: PolicySource,
        client: HttpsClient,
        cache_path: PathBuf,
        file_poll: Duration,
        url_refresh: Duration,
    ) -> PolicyFeed {
        let client = matches!(source, PolicySource::Url(_)).then_some(client);
        PolicyFeed {
            source,
            client,
            cache_path,
            cached: None,
            stamp: None,
            file_poll,
            url_refresh,
            next: Instant::now(),
            keep: true,
        }
    }

    /// Leaves the kept document alone (an operator's one-off run must not change what
    /// radiusd starts from).
    pub fn without_keeping(mut self) -> PolicyFeed {
        self.keep = false;
        self
    }

    /// Where this feed reads the policy from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// A URL source's last good document from disk, to start from while the server has
    /// not answered yet (None for a file source, or when there is none for this URL).
    pub fn restore(&mut self) -> Option<Loaded> {
        let PolicySource::Url(url) = &self.source else { return None };
        let text = std::fs::read_to_string(&self.cache_path).ok()?;
        let cached: CachedDocument = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{}: ignoring the kept policy: {e}", self.cache_path.display());
                return None;
            }
        };
        if &cached.url != url {
            return None;
        }
        let loaded = parse(&cached.document, url).ok()?;
        self.cached = Some(cached);
        Some(loaded)
    }

    /// When the next poll is due.
    pub fn next_poll(&self) -> Instant {
        self.next
    }

    /// Looks at the source once (file: stat, then read when it changed; URL: a
    /// conditional GET).
    pub async fn poll(&mut self) -> Update {
        match self.source.clone() {
            PolicySource::File(path) => {
                self.next = Instant::now() + self.file_poll;
                self.poll_file(&path)
            }
            PolicySource::Url(url) => {
                let update = self.poll_url(&url).await;
                let wait = match update {
                    Update::Failed(_) => RETRY_AFTER_FAILURE.min(self.url_refresh),
                    _ => self.url_refresh,
                };
                self.next = Instant::now() + wait;
                update
            }
        }
    }

    fn poll_file(&mut self, path: &Path) -> Update {
        let stamp = FileStamp::of(path);
        if stamp == self.stamp {
            return Update::Unchanged;
        }
        self.stamp = stamp;
        match policy::load(path) {
            Ok(loaded) => Update::Loaded(loaded),
            Err(e) => Update::Failed(e.to_string()),
        }
    }

    async fn poll_url(&mut self, url: &str) -> Update {
        let Some(client) = &self.client else { return Update::Failed("no HTTPS client".into()) };
        let mut headers: Vec<(&str, &str)> = vec![("accept", "application/json, text/plain;q=0.9")];
        if let Some(c) = &self.cached {
            if let Some(etag) = &c.etag {
                headers.push(("if-none-match", etag));
            }
            if let Some(lm) = &c.last_modified {
                headers.push(("if-modified-since", lm));
            }
        }
        let answer = match client.get(url, &headers).await {
            Ok(a) => a,
            Err(e) => return Update::Failed(e.to_string()),
        };
        match answer.status {
            304 if self.cached.is_some() => return Update::Unchanged,
            200 => {}
            status => return Update::Failed(format!("{url}: HTTP status {status}")),
        }
        let document = match String::from_utf8(answer.body) {
            Ok(d) => d,
            Err(_) => return Update::Failed(format!("{url}: the policy is not UTF-8 text")),
        };
        if self.cached.as_ref().is_some_and(|c| c.document == document) {
            return Update::Unchanged;
        }
        let loaded = match parse(&document, url) {
            Ok(l) => l,
            Err(e) => return Update::Failed(e.to_string()),
        };
        let cached = CachedDocument {
            url: url.to_owned(),
            etag: answer.etag,
            last_modified: answer.last_modified,
            fetched_at: crate::clock::unix_now(),
            document,
        };
        if self.keep {
            if let Err(e) = self.write_kept(&cached) {
                log::warn!("{}: cannot keep the fetched policy: {e}", self.cache_path.display());
            }
        }
        self.cached = Some(cached);
        Update::Loaded(loaded)
    }

    fn write_kept(&self, cached: &CachedDocument) -> std::io::Result<()> {
        let json = serde_json::to_vec(cached).map_err(std::io::Error::other)?;
        files::replace_with(&self.cache_path, CACHE_MODE, |f| std::io::Write::write_all(f, &json))
    }
}

/// A policy document by its first non-blank character, as a file is read.
fn parse(document: &str, source: &str) -> Result<Loaded, PolicyError> {
    if document.trim_start().starts_with('{') {
        policy::parse_json(document, source)
    } else {
        Ok(policy::parse_lines(document, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_a_url_only_with_https() {
        assert_eq!(PolicySource::parse("/etc/p").unwrap(), PolicySource::File("/etc/p".into()));
        assert_eq!(
            PolicySource::parse("HTTPS://policy.example/p.json").unwrap(),
            PolicySource::Url("HTTPS://policy.example/p.json".into())
        );
        assert!(PolicySource::parse("http://policy.example/p").unwrap_err().to_string().contains("only https://"));
    }
}
