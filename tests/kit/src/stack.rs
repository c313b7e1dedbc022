//! The whole stack for end-to-end sync tests and the demo, all on loopback:
//! knotd serving DNSSEC-signed zones (TTL 2 s) under a fake signed root with the devices'
//! TLSA records, an HTTPS server publishing the device CAs at `.well-known/ca/<AKI>.pem`,
//! and radiusd whose `rust` instance runs the DNS trust sync against both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::x509::X509;

use super::dns::{DnsServer, Zone};
use super::https::{HttpsServer, WebPki};
use super::pki::{Ca, Device};
use super::radiusd::{Lab, Options, Radiusd};

/// TTL of every record in the test zones: the revocation bound under test.
pub const TTL: u32 = 2;
/// Zones the stack serves (all signed): the two organisations and the IoT Registry.
pub const CARS: &str = "cars.example";
pub const METERS: &str = "meters.example";
pub const REGISTRY: &str = "iotregistry.ca";
/// The authority hosts serving `.well-known/ca/`.
pub const CARS_WEB: &str = "device.cars.example";
pub const METERS_WEB: &str = "device.meters.example";

pub struct Stack {
    pub lab: Lab,
    pub dns: DnsServer,
    pub web: HttpsServer,
    pub docroot: PathBuf,
    pub policy: PathBuf,
}

fn der_hex(pem_path: &Path) -> String {
    let cert = X509::from_pem(&std::fs::read(pem_path).expect("read cert")).expect("parse cert");
    hex::encode(cert.to_der().expect("der"))
}

/// `.well-known/ca/` file name of a CA: its key id as lower-case hex bytes joined by '-'.
pub fn well_known_name(ca: &X509) -> String {
    let ski = ca.subject_key_id().expect("CA has an SKI").as_slice().to_vec();
    ski.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-") + ".pem"
}

/// How a stack deviates from [`Stack::new`].
#[derive(Clone, Default)]
pub struct StackOptions {
    /// Sign the device zones (`cars.example`, `meters.example`) with NSEC3 instead of
    /// NSEC: wildcard TLSA records validate only under NSEC3 (see `Zone::with_nsec3`).
    pub nsec3: bool,
    /// More zones for the same knotd (delegated from the fake root), as given.
    pub extra_zones: Vec<Zone>,
}

impl Stack {
    /// Starts DNS and HTTPS, publishes both organisations' CAs, and prepares (but does
    /// not start) radiusd with the sync enabled and an empty CA set. Zones are NSEC-signed.
    // No Default: starting servers is not a default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Stack {
        Stack::with(StackOptions::default())
    }

    /// [`Stack::new`] with the device zones signed with NSEC3 (for wildcard records).
    pub fn with_nsec3() -> Stack {
        Stack::with(StackOptions { nsec3: true, ..StackOptions::default() })
    }

    /// [`Stack::new`] with `opts`.
    pub fn with(opts: StackOptions) -> Stack {
        let mut lab = Lab::new(Options::default());
        // The sync owns the CA set: start from nothing, so every trusted CA came from DNS.
        let ca_dir = lab.certdir.join("dane-ca");
        let _ = std::fs::remove_dir_all(&ca_dir);
        std::fs::create_dir_all(&ca_dir).expect("ca dir");

        let device_zone = |name: &str| {
            let zone = Zone::signed(name, "").with_ttl(TTL);
            if opts.nsec3 {
                zone.with_nsec3()
            } else {
                zone
            }
        };
        let mut zones = vec![device_zone(CARS), device_zone(METERS), Zone::signed(REGISTRY, "").with_ttl(TTL)];
        zones.extend(opts.extra_zones);
        let dns = DnsServer::start(zones);
        let web_pki = WebPki::new(&lab.root, &[CARS_WEB, METERS_WEB]);
        let docroot = lab.root.join("www");
        std::fs::create_dir_all(docroot.join(".well-known/ca")).expect("docroot");
        let web = HttpsServer::start(&web_pki, Some(docroot.clone()));
        let policy = lab.work.join("policy.txt");
        std::fs::write(&policy, "").expect("policy");

        let addr = web.addr();
        lab.opts.rust_options = vec![
            ("policy".into(), policy.display().to_string()),
            ("ca_path".into(), "${certdir}/dane-ca".into()),
            ("dns_servers".into(), dns.addr().to_string()),
            ("dns_trust_anchors".into(), dns.trust_anchor_file().display().to_string()),
            ("dns_timeout".into(), "1".into()),
            ("https_roots".into(), web_pki.root_pem.display().to_string()),
            ("https_resolve".into(), format!("{CARS_WEB}={addr} {METERS_WEB}={addr}")),
            ("https_timeout".into(), "2".into()),
            ("min_interval".into(), "1".into()),
            ("max_interval".into(), "30".into()),
            ("max_stale".into(), "1h".into()),
        ];
        // Policy changes are picked up within this.
        lab.opts.reload_interval = "0.2".into();
        lab.render();
        let stack = Stack { lab, dns, web, docroot, policy };
        stack.publish_ca(&stack.lab.pki.cars_ca);
        stack.publish_ca(&stack.lab.pki.meters_ca);
        stack
    }

    /// Serves `ca` at its `.well-known/ca/` URL (both authority hosts share the server).
    pub fn publish_ca(&self, ca: &Ca) {
        let path = self.docroot.join(".well-known/ca").join(well_known_name(&ca.cert));
        std::fs::write(path, ca.cert.to_pem().expect("pem")).expect("write CA");
    }

    /// Publishes `device`'s certificate as `TLSA 4 0 0` at its name (`<owner>.<zone>`).
    pub fn publish(&self, zone: &str, device: &Device) {
        let owner = owner_in(zone, &device.name);
        self.dns.set_tlsa(zone, &owner, TTL, &format!("4 0 0 {}", der_hex(&device.cert)));
    }

    /// Removes every TLSA record at `device`'s name.
    pub fn withdraw(&self, zone: &str, device: &Device) {
        self.dns.remove(zone, &owner_in(zone, &device.name), "TLSA");
    }

    /// Lists `device`'s certificate in the IoT Registry (`3 0 1` at its CN `cn`).
    pub fn register(&self, cn: &str, device: &Device) {
        let cert = X509::from_pem(&std::fs::read(&device.cert).expect("read")).expect("parse");
        let digest = hex::encode(cert.digest(MessageDigest::sha256()).expect("digest"));
        self.dns.set_tlsa(REGISTRY, &owner_in(REGISTRY, cn), TTL, &format!("3 0 1 {digest}"));
    }

    pub fn unregister(&self, cn: &str) {
        self.dns.remove(REGISTRY, &owner_in(REGISTRY, cn), "TLSA");
    }

    /// Replaces the policy file (`SSID|name` lines), atomically.
    pub fn set_policy(&self, lines: &[(&str, &str)]) {
        let text: String = lines.iter().map(|(ssid, name)| format!("{ssid}|{name}\n")).collect();
        super::trustmap::replace_atomically(&self.policy, text.as_bytes());
    }

    pub fn start(&mut self) -> Radiusd {
        self.lab.start()
    }

    /// Names in the persisted trust map (what the sync last published).
    pub fn published_names(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.lab.trust_map) else { return Vec::new() };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
        v["names"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Waits (bounded) until `name` is published (`true`) or not (`false`); returns the
    /// time it took. Panics with the radiusd log on timeout.
    pub fn wait_published(&self, rd: &Radiusd, name: &str, present: bool, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let ok = super::poll_until(limit, || self.published_names().iter().any(|n| n == name) == present);
        assert!(
            ok,
            "{name} not {} within {limit:?}; radiusd log:\n{}",
            if present { "published" } else { "withdrawn" },
            rd.log()
        );
        // The snapshot is swapped right after the file is renamed.
        std::thread::sleep(Duration::from_millis(50));
        t0.elapsed()
    }
}

/// `car54._device.cars.example` in zone `cars.example` -> `car54._device`.
pub fn owner_in(zone: &str, name: &str) -> String {
    name.strip_suffix(zone).map(|o| o.trim_end_matches('.').to_owned()).unwrap_or_else(|| format!("{name}."))
}
