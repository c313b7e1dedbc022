//! A real authoritative DNS server for tests: Debian's `knotd` on 127.0.0.1 and a free
//! port, in its own temp dir, signing the test's zones with one ECDSA P-256 CSK each.
//!
//! Layouts:
//! * [`Anchoring::FakeRoot`] (default): the server also serves a signed root zone `.`
//!   that delegates every top-level test zone (NS + glue, and DS for signed zones). The
//!   trust anchor is the root's DNSKEY, as in production, and an unsigned zone is
//!   provably Insecure (the signed root proves "no DS"). One knotd serves the root and
//!   every zone: a validating stub pointed at it gets authoritative answers for all of
//!   them, including DS queries (knot answers those from the parent zone).
//! * [`Anchoring::ZoneKeys`]: no root; the anchor file lists the DNSKEY of every signed
//!   zone. Unsigned zones cannot be proven Insecure in this layout.
//!
//! A zone nested in another test zone is delegated from that zone instead of the root.
//! Changes at runtime go through `knotc zone-begin/zone-set/zone-unset/zone-commit`
//! (knot re-signs on commit); each helper waits until the change is visible over DNS.
//!
//! Every external command runs with a time limit; knotd is killed on drop.

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time limit for every knotc / keymgr / kdig invocation.
const COMMAND_LIMIT: Duration = Duration::from_secs(10);
/// Time limit for knotd to load, sign and answer, and for a change to become visible.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// knotd answers nothing until every zone is loaded and signed: on top of READY_LIMIT,
/// start-up may take this long per MiB of zone text (a benchmark's fleet of 1M TLSA
/// records is 1.5 GiB).
const LOAD_PER_MIB: Duration = Duration::from_secs(1);

/// A zone to serve. `body` is zone-file text with owners relative to the zone (or
/// absolute); the harness writes `$ORIGIN`, `$TTL`, SOA, NS and the `ns1` address itself,
/// so the body must not contain an apex SOA or NS.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Zone name without the trailing dot, e.g. `cars.example`.
    pub name: String,
    pub body: String,
    /// Signed by knot (one CSK) and delegated with a DS; or served unsigned.
    pub signed: bool,
    /// Default TTL and SOA MINIMUM (negative TTL) of the zone, in seconds.
    pub ttl: u32,
    /// Authenticated denial by NSEC3 instead of NSEC (signed zones only).
    pub nsec3: bool,
}

impl Zone {
    pub fn signed(name: &str, body: &str) -> Zone {
        Zone {
            name: name.trim_end_matches('.').to_owned(),
            body: body.to_owned(),
            signed: true,
            ttl: 300,
            nsec3: false,
        }
    }

    pub fn unsigned(name: &str, body: &str) -> Zone {
        Zone { signed: false, ..Zone::signed(name, body) }
    }

    pub fn with_ttl(mut self, ttl: u32) -> Zone {
        self.ttl = ttl;
        self
    }

    /// Sign with NSEC3 denial. The validator in hickory 0.26 proves wildcard-expanded
    /// answers only under NSEC3 (under NSEC it calls them Bogus), so zones that publish
    /// wildcard TLSA records use this.
    pub fn with_nsec3(mut self) -> Zone {
        self.nsec3 = true;
        self
    }
}

/// Where the trust chain starts; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    FakeRoot,
    ZoneKeys,
}

/// A running knotd. Killed (and its temp dir removed) on drop.
pub struct DnsServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    zones: Vec<Zone>,
    anchoring: Anchoring,
    anchor_file: PathBuf,
}

/// Output of a finished command.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl DnsServer {
    /// Starts knotd with `zones` under a fake signed root.
    pub fn start(zones: Vec<Zone>) -> DnsServer {
        DnsServer::start_with(zones, Anchoring::FakeRoot)
    }

    /// Starts knotd with `zones` and the given anchoring. Panics (with knotd's log) when
    /// the server does not come up within the time limit.
    pub fn start_with(zones: Vec<Zone>, anchoring: Anchoring) -> DnsServer {
        for tool in ["knotd", "knotc", "keymgr", "kdig"] {
            assert!(have_program(tool), "{tool} not found: apt-get install knot knot-dnsutils");
        }
        assert!(!zones.is_empty(), "DnsServer needs at least one zone");
        // A free port can be taken by someone else between our probe and knotd's bind:
        // try a few ports.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("rlm-dns-").tempdir().expect("temp dir");
            let port = free_port();
            let mut server =
                DnsServer { dir, port, child: None, zones: zones.clone(), anchoring, anchor_file: PathBuf::new() };
            server.anchor_file = server.dir.path().join("trust-anchor.dnskey");
            match server.boot() {
                Ok(()) => return server,
                Err(e) => last_log = format!("{e}\n--- knotd log ---\n{}", server.log()),
            }
        }
        panic!("knotd did not start: {last_log}");
    }

    /// Address to point a resolver at (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// DNSKEY lines (zone-file format, kdig output) trusted for this server's zones.
    pub fn trust_anchor_file(&self) -> &Path {
        &self.anchor_file
    }

    /// The server's temp dir (config, zone files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// knotd's log so far.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("knotd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Replaces the TLSA RRset at `owner` (relative to `zone`, or absolute with a trailing
    /// dot) with one record, e.g. `set_tlsa("example.net", "car54._device", 2, "3 0 0 30..")`.
    pub fn set_tlsa(&self, zone: &str, owner: &str, ttl: u32, rdata: &str) {
        self.edit(zone, &[Edit::Unset(owner, "TLSA"), Edit::Set(owner, ttl, "TLSA", rdata)]);
        let want = rdata.split_whitespace().last().unwrap_or("").to_ascii_lowercase();
        self.wait_visible(&abs_owner(owner, zone), "TLSA", |out| {
            out.to_ascii_lowercase().replace(' ', "").contains(&want)
        });
    }

    /// Adds one record (any type) at `owner`, keeping the RRset's other records.
    pub fn add_record(&self, zone: &str, owner: &str, ttl: u32, rtype: &str, rdata: &str) {
        self.edit(zone, &[Edit::Set(owner, ttl, rtype, rdata)]);
        self.wait_visible(&abs_owner(owner, zone), rtype, |out| !out.trim().is_empty());
    }

    /// Removes the whole `rtype` RRset at `owner`.
    pub fn remove(&self, zone: &str, owner: &str, rtype: &str) {
        self.edit(zone, &[Edit::Unset(owner, rtype)]);
        self.wait_visible(&abs_owner(owner, zone), rtype, |out| out.trim().is_empty());
    }

    /// Makes every answer at `owner` Bogus while the rest of `zone` stays Secure.
    ///
    /// How: `owner` becomes its own signed zone (knot generates a fresh CSK and signs the
    /// records that were at `owner`), delegated from `zone` with a DS whose digest is
    /// wrong. A validator finds a DS that matches no DNSKEY of the child: every RRset in
    /// the child, TLSA included, is Bogus (hickory: `DnsError::DnssecBogus`). The trust
    /// anchor file is unchanged.
    pub fn break_signatures(&mut self, zone: &str, owner: &str) {
        let child = abs_owner(owner, zone);
        let child = child.trim_end_matches('.').to_owned();
        // The records now at owner (minus DNSSEC records, knot makes its own).
        let read = self.knotc(&["zone-read", zone, &format!("{child}.")]);
        let mut body = String::new();
        let mut types = Vec::new();
        for line in read.stdout.lines() {
            // "[zone.] owner. ttl TYPE rdata..."
            let mut fields = line.split_whitespace().skip(1);
            let (Some(_), Some(ttl), Some(rtype)) = (fields.next(), fields.next(), fields.next()) else { continue };
            if matches!(rtype, "RRSIG" | "NSEC" | "NSEC3" | "NS" | "DS") {
                continue;
            }
            let rdata: Vec<&str> = fields.collect();
            body.push_str(&format!("@ {ttl} {rtype} {}\n", rdata.join(" ")));
            if !types.contains(&rtype.to_owned()) {
                types.push(rtype.to_owned());
            }
        }
        self.zones.push(Zone::signed(&child, &body));
        self.write_config();
        let reload = self.knotc(&["reload"]);
        assert!(reload.ok, "knotc reload: {}{}", reload.stdout, reload.stderr);
        self.wait_visible(&format!("{child}."), "DNSKEY", |out| !out.trim().is_empty());

        let ds = self.ds_record(&child);
        let wrong = corrupt_ds(&ds);
        let mut edits: Vec<Edit<'_>> = types.iter().map(|t| Edit::Unset(owner, t.as_str())).collect();
        let ns = format!("ns1.{}.", zone.trim_end_matches('.'));
        edits.push(Edit::Set(owner, 300, "NS", &ns));
        edits.push(Edit::Set(owner, 300, "DS", &wrong));
        self.edit(zone, &edits);
        let digest = wrong.split_whitespace().last().unwrap_or("").to_ascii_lowercase();
        self.wait_visible(&format!("{child}."), "DS", |out| out.to_ascii_lowercase().contains(&digest));
    }

    /// `kdig +short` answer for `name` (absolute or not) and `rtype`, straight from knotd.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        let port = self.port.to_string();
        let out = run(
            "kdig",
            &["@127.0.0.1", "-p", &port, "+time=2", "+retry=1", "+tcp", "+short", name, rtype],
            self.dir.path(),
        );
        out.stdout
    }

    /// Runs `knotc` against this server.
    pub fn knotc(&self, args: &[&str]) -> Output {
        let conf = self.conf_path();
        let conf = conf.to_string_lossy();
        let mut all = vec!["-c", conf.as_ref(), "-t", "5"];
        all.extend_from_slice(args);
        run("knotc", &all, self.dir.path())
    }

    // ---- internals ----

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    fn boot(&mut self) -> Result<(), String> {
        for sub in ["zones", "db", "run"] {
            fs::create_dir_all(self.dir.path().join(sub)).map_err(|e| e.to_string())?;
        }
        self.write_zone_files();
        self.write_config();
        let log = fs::File::create(self.dir.path().join("knotd.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program_path("knotd").unwrap_or_else(|| PathBuf::from("knotd")))
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn knotd: {e}"))?;
        self.child = Some(child);

        // Up and signed: every zone answers its SOA over TCP (proves it is our knotd on
        // that port), every signed zone publishes its DNSKEY.
        for zone in self.served_zone_names() {
            self.wait_until(&format!("SOA {zone}"), |s| s.dig(&zone, "SOA").contains("hostmaster"))?;
        }
        let signed: Vec<String> = self.signed_zone_names();
        for zone in &signed {
            self.wait_until(&format!("DNSKEY {zone}"), |s| !s.dig(zone, "DNSKEY").trim().is_empty())?;
        }
        // DS records for signed zones into their parents (root or an enclosing test zone).
        let mut delegations: Vec<(String, String, String)> = Vec::new(); // (parent, child., DS rdata)
        for zone in self.zones.iter().filter(|z| z.signed) {
            if let Some(parent) = self.parent_of(&zone.name) {
                delegations.push((parent, absolute(&zone.name), self.ds_record(&zone.name)));
            }
        }
        let mut parents: Vec<&str> = delegations.iter().map(|(p, _, _)| p.as_str()).collect();
        parents.dedup();
        for parent in parents {
            let edits: Vec<Edit<'_>> = delegations
                .iter()
                .filter(|(p, _, _)| p == parent)
                .map(|(_, child, ds)| Edit::Set(child.as_str(), 300, "DS", ds.as_str()))
                .collect();
            self.edit(parent, &edits);
        }
        for (_, child, _) in &delegations {
            self.wait_until(&format!("DS {child}"), |s| !s.dig(child, "DS").trim().is_empty())?;
        }

        // Trust anchors, in the format hickory's TrustAnchors::from_file reads.
        let anchor_zones: Vec<String> = match self.anchoring {
            Anchoring::FakeRoot => vec![".".to_owned()],
            Anchoring::ZoneKeys => signed,
        };
        let mut anchors = String::new();
        for zone in &anchor_zones {
            let port = self.port.to_string();
            let out = run(
                "kdig",
                &["@127.0.0.1", "-p", &port, "+time=2", "+retry=1", "+tcp", "+noall", "+answer", zone, "DNSKEY"],
                self.dir.path(),
            );
            if !out.stdout.contains("DNSKEY") {
                return Err(format!("no DNSKEY for {zone}: {}", out.stderr));
            }
            anchors.push_str(&out.stdout);
        }
        fs::write(&self.anchor_file, anchors).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Zone names knotd serves (the root first in the FakeRoot layout).
    fn served_zone_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.anchoring == Anchoring::FakeRoot {
            names.push(".".to_owned());
        }
        names.extend(self.zones.iter().map(|z| absolute(&z.name)));
        names
    }

    fn signed_zone_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.anchoring == Anchoring::FakeRoot {
            names.push(".".to_owned());
        }
        names.extend(self.zones.iter().filter(|z| z.signed).map(|z| absolute(&z.name)));
        names
    }

    /// The closest enclosing served zone of `name` (a test zone, else the fake root).
    fn parent_of(&self, name: &str) -> Option<String> {
        let name = name.trim_end_matches('.');
        let enclosing = self
            .zones
            .iter()
            .map(|z| z.name.as_str())
            .filter(|z| *z != name && name.ends_with(&format!(".{z}")))
            .max_by_key(|z| z.len());
        match (enclosing, self.anchoring) {
            (Some(z), _) => Some(z.to_owned()),
            (None, Anchoring::FakeRoot) => Some(".".to_owned()),
            (None, Anchoring::ZoneKeys) => None,
        }
    }

    fn zone_file(&self, zone: &str) -> PathBuf {
        let file = if zone == "." { "root".to_owned() } else { zone.trim_end_matches('.').to_owned() };
        self.dir.path().join("zones").join(format!("{file}.zone"))
    }

    /// Zone files: header (SOA, NS, ns1 address), the test's body, and delegations (NS +
    /// glue) of the zones below. DS records are added once knot made the child keys.
    fn write_zone_files(&self) {
        let mut texts: Vec<(String, String)> = Vec::new();
        if self.anchoring == Anchoring::FakeRoot {
            let root = "$ORIGIN .\n$TTL 300\n\
                 @ SOA ns.root-test. hostmaster.root-test. 1 3600 600 86400 300\n\
                 @ NS ns.root-test.\n\
                 ns.root-test. A 127.0.0.1\n"
                .to_owned();
            texts.push((".".to_owned(), root));
        }
        for z in &self.zones {
            texts.push((z.name.clone(), zone_text(z)));
        }
        for z in &self.zones {
            if let Some(parent) = self.parent_of(&z.name) {
                let delegation = format!("{n}. NS ns1.{n}.\nns1.{n}. A 127.0.0.1\n", n = z.name);
                if let Some((_, text)) = texts.iter_mut().find(|(name, _)| *name == parent) {
                    text.push_str(&delegation);
                }
            }
        }
        for (name, text) in texts {
            fs::write(self.zone_file(&name), text).expect("write zone file");
        }
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let mut conf = format!(
            "server:\n    rundir: \"{d}/run\"\n    listen: [ 127.0.0.1@{port} ]\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}/db\"\n\
             control:\n    listen: \"{d}/run/knot.sock\"\n\
             policy:\n  - id: csk\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n    nsec3: off\n\
             \x20   rrsig-lifetime: 14d\n    rrsig-refresh: 7d\n    signing-threads: {threads}\n\
             \x20 - id: csk-nsec3\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n    nsec3: on\n\
             \x20   nsec3-iterations: 0\n    nsec3-salt-length: 0\n    rrsig-lifetime: 14d\n    rrsig-refresh: 7d\n\
             \x20   signing-threads: {threads}\n\
             template:\n\
             \x20 - id: signed\n    dnssec-signing: on\n    dnssec-policy: csk\n    zonefile-sync: -1\n\
             \x20   zonefile-load: difference-no-serial\n    journal-content: all\n\
             \x20   journal-max-usage: 8G\n    semantic-checks: on\n\
             \x20 - id: signed-nsec3\n    dnssec-signing: on\n    dnssec-policy: csk-nsec3\n    zonefile-sync: -1\n\
             \x20   zonefile-load: difference-no-serial\n    journal-content: all\n\
             \x20   journal-max-usage: 8G\n    semantic-checks: on\n\
             \x20 - id: unsigned\n    dnssec-signing: off\n    zonefile-sync: -1\n\
             \x20   zonefile-load: difference-no-serial\n    journal-content: all\n\
             \x20   journal-max-usage: 8G\n    semantic-checks: on\n\
             zone:\n",
            port = self.port,
            threads = std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        if self.anchoring == Anchoring::FakeRoot {
            conf.push_str(&format!(
                "  - domain: .\n    file: \"{}\"\n    template: signed\n",
                self.zone_file(".").display()
            ));
        }
        for z in &self.zones {
            conf.push_str(&format!(
                "  - domain: {}.\n    file: \"{}\"\n    template: {}\n",
                z.name,
                self.zone_file(&z.name).display(),
                match (z.signed, z.nsec3) {
                    (true, false) => "signed",
                    (true, true) => "signed-nsec3",
                    (false, _) => "unsigned",
                }
            ));
        }
        fs::write(self.conf_path(), conf).expect("write knot.conf");
        for z in &self.zones {
            let path = self.zone_file(&z.name);
            if !path.exists() {
                fs::write(path, zone_text(z)).expect("write zone file");
            }
        }
    }

    /// The SHA-256 DS of a signed zone's current key (`keymgr <zone> ds`), as rdata text.
    fn ds_record(&self, zone: &str) -> String {
        let conf = self.conf_path();
        let out = run("keymgr", &["-c", &conf.to_string_lossy(), zone.trim_end_matches('.'), "ds"], self.dir.path());
        // "example.net. DS 33607 13 2 <hex>"
        out.stdout
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 6 && f[1] == "DS" && f[4] == "2").then(|| f[2..].join(" "))
            })
            .next()
            .unwrap_or_else(|| panic!("keymgr ds {zone}: {}{}", out.stdout, out.stderr))
    }

    /// One knotc transaction on `zone`; aborted (and the test failed) on any error.
    fn edit(&self, zone: &str, edits: &[Edit<'_>]) {
        let zone = if zone == "." { "." } else { zone.trim_end_matches('.') };
        let begin = self.knotc(&["zone-begin", zone]);
        assert!(begin.ok, "zone-begin {zone}: {}{}", begin.stdout, begin.stderr);
        for edit in edits {
            let out = match edit {
                Edit::Set(owner, ttl, rtype, rdata) => {
                    let ttl = ttl.to_string();
                    let mut args = vec!["zone-set", zone, owner, &ttl, rtype];
                    args.extend(rdata.split_whitespace());
                    self.knotc(&args)
                }
                Edit::Unset(owner, rtype) => {
                    let out = self.knotc(&["zone-unset", zone, owner, rtype]);
                    // Removing what is not there is fine.
                    if !out.ok && (out.stderr.contains("no such") || out.stdout.contains("no such")) {
                        continue;
                    }
                    out
                }
            };
            if !out.ok {
                self.knotc(&["zone-abort", zone]);
                panic!("knotc edit {zone}: {}{}", out.stdout, out.stderr);
            }
        }
        let commit = self.knotc(&["zone-commit", zone]);
        if !commit.ok {
            self.knotc(&["zone-abort", zone]);
            panic!("zone-commit {zone}: {}{}\n{}", commit.stdout, commit.stderr, self.log());
        }
    }

    fn wait_visible(&self, name: &str, rtype: &str, ok: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let out = self.dig(name, rtype);
            if ok(&out) {
                return;
            }
            assert!(start.elapsed() < READY_LIMIT, "{name} {rtype} not as expected after {READY_LIMIT:?}: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How long knotd may take to come up with these zones.
    fn boot_limit(&self) -> Duration {
        let mib = self.zones.iter().map(|z| z.body.len()).sum::<usize>() >> 20;
        READY_LIMIT + LOAD_PER_MIB * mib as u32
    }

    fn wait_until(&mut self, what: &str, cond: impl Fn(&DnsServer) -> bool) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if cond(self) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("knotd exited ({status}) while waiting for {what}"));
                }
            }
            if self.log().contains("zone event 'load' failed") {
                return Err(format!("a zone did not load, waiting for {what}"));
            }
            if start.elapsed() > self.boot_limit() {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl DnsServer {
    /// Kills knotd now (a DNS outage); the temp dir stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Edit<'a> {
    Set(&'a str, u32, &'a str, &'a str),
    Unset(&'a str, &'a str),
}

fn zone_text(z: &Zone) -> String {
    format!(
        "$ORIGIN {n}.\n$TTL {t}\n@ SOA ns1.{n}. hostmaster.{n}. 1 3600 600 86400 {t}\n@ NS ns1\nns1 A 127.0.0.1\n{body}\n",
        n = z.name,
        t = z.ttl,
        body = z.body
    )
}

/// `name` with exactly one trailing dot ("." for the root).
fn absolute(name: &str) -> String {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        ".".to_owned()
    } else {
        format!("{name}.")
    }
}

/// `owner` relative to `zone` (or already absolute) as an absolute name with a dot.
fn abs_owner(owner: &str, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    if owner.ends_with('.') {
        owner.to_owned()
    } else if owner == "@" {
        format!("{zone}.")
    } else {
        format!("{owner}.{zone}.")
    }
}

/// Same key tag and algorithm, digest with its last hex digit changed.
fn corrupt_ds(ds: &str) -> String {
    let mut fields: Vec<String> = ds.split_whitespace().map(str::to_owned).collect();
    if let Some(digest) = fields.last_mut() {
        let flipped = match digest.pop() {
            Some('0') => '1',
            Some(_) => '0',
            None => '0',
        };
        digest.push(flipped);
    }
    fields.join(" ")
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Runs a command with [`COMMAND_LIMIT`]; output goes through files (no pipe deadlock).
pub fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = dir.join(format!(".cmd-{}-{n}.out", std::process::id()));
    let err_path = dir.join(format!(".cmd-{}-{n}.err", std::process::id()));
    let (Ok(out_file), Ok(err_file)) = (fs::File::create(&out_path), fs::File::create(&err_path)) else {
        return Output {
            ok: false,
            stdout: String::new(),
            stderr: format!("cannot create output files in {}", dir.display()),
        };
    };
    let child = Command::new(program_path(program).unwrap_or_else(|| PathBuf::from(program)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn();
    let ok = match child {
        Ok(mut child) => {
            let deadline = Instant::now() + COMMAND_LIMIT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status.success(),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break false;
                    }
                }
            }
        }
        Err(e) => {
            let _ = fs::write(&err_path, format!("spawn {program}: {e}"));
            false
        }
    };
    let read = |p: &Path| fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let output = Output { ok, stdout: read(&out_path), stderr: read(&err_path) };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    output
}

fn have_program(name: &str) -> bool {
    program_path(name).is_some()
}

/// `name` on PATH, or in /usr/sbin (knotd, knotc, keymgr live there on Debian).
fn program_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
