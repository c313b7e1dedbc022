//! A fleet on real parts, as the fleet tests and the discovery bench run it: the stack
//! (knotd, the HTTPS CA server) with radiusd's `rust` instance resolving through a
//! query-logging forwarder ([`DnsProxy`]) to the stack's knotd, a policy of domain entries,
//! each domain's trust anchor published at its wildcard owner
//! (`*._device.<zone> TLSA 2 0 0 <CA>`, DANE-TA), and helpers that run a device's
//! authentications and read what the sync published.

use std::time::{Duration, Instant};

use openssl::x509::X509;

use super::capki::Issued;
use super::dnsproxy::{DnsProxy, TLSA};
use super::eapol::EapolResult;
use super::pki::{Ca, Device};
use super::radiusd::{Options, Radiusd};
use super::stack::{Stack, StackOptions, CARS, TTL};

pub const CARS_WIFI: &str = "Cars-WiFi";
pub const CARS_FLEET: &str = "*._device.cars.example";

pub const PENDING: &str = "reason=discovery pending";

/// Bound on every wait for the sync (discovery, refresh), and on a device's retries.
pub const WAIT: Duration = Duration::from_secs(10);

/// radiusd's decision line for `name` on `ssid` (`accept` or `reject`), up to the reason.
pub fn decision(result: &str, name: &str, ssid: &str) -> String {
    format!("rlm_rust[rust]: {result} name={name} ssid={ssid}")
}

/// The running stack: radiusd's `rust` instance resolves through `dns`, a query-logging
/// forwarder to the stack's knotd. Fields drop in order: radiusd, forwarder, the rest.
pub struct Fleet {
    pub rd: Radiusd,
    pub dns: DnsProxy,
    pub st: Stack,
}

impl Fleet {
    /// Builds the stack with `opts`, runs `publish` on it (DNS records; its result is
    /// handed back), installs `policy` and starts radiusd; returns once the sync has
    /// published the policy (hints count from then on).
    pub fn start<T>(opts: StackOptions, policy: &[(&str, &str)], publish: impl FnOnce(&Stack) -> T) -> (Fleet, T) {
        Fleet::start_tuned(opts, |_| {}, policy, publish)
    }

    /// [`Fleet::start`], with `tune` applied to the lab's options (radiusd's `-X`, more
    /// `rust { }` options) before the raddb is rendered and radiusd started.
    pub fn start_tuned<T>(
        opts: StackOptions,
        tune: impl FnOnce(&mut Options),
        policy: &[(&str, &str)],
        publish: impl FnOnce(&Stack) -> T,
    ) -> (Fleet, T) {
        let nsec3 = opts.nsec3;
        let mut st = Stack::with(opts);
        let dns = DnsProxy::start(st.dns.addr());
        let servers = st.lab.opts.rust_options.iter_mut().find(|(k, _)| k == "dns_servers").expect("dns_servers");
        servers.1 = dns.addr().to_string();
        tune(&mut st.lab.opts);
        st.lab.render();
        let published = publish(&st);
        st.set_policy(policy);
        let rd = st.start();
        let log = rd.wait_for(0, "rlm_rust[rust]: published generation 1", WAIT);
        let domains = policy.iter().filter(|(_, e)| e.starts_with("*.")).count();
        let loaded = format!(": {} names, {domains} domains", policy.len() - domains);
        assert!(log.contains(&loaded), "policy not loaded as {loaded:?}:\n{log}");
        if nsec3 {
            // Each domain's trust anchor reaches the CA set from the policy alone, before
            // any device of the fleet shows up: its first handshake can complete.
            let ca_dir = st.lab.certdir.join("dane-ca");
            let count = || std::fs::read_dir(&ca_dir).map_or(0, |d| d.count());
            assert!(
                super::poll_until(WAIT, || count() >= domains),
                "the fleets' trust anchors never reached the CA set ({} files):\n{}",
                count(),
                rd.log()
            );
        }
        (Fleet { rd, dns, st }, published)
    }

    /// The Cars fleet: `*._device.cars.example` on Cars-WiFi, the Cars CA its anchor.
    pub fn cars(opts: StackOptions) -> Fleet {
        Fleet::start(opts, &[(CARS_WIFI, CARS_FLEET)], |st| publish_anchor(st, CARS, &st.lab.pki.cars_ca)).0
    }

    /// One EAP-TLS run of `device` claiming `identity` on `ssid`, and the radiusd log from
    /// its start to its final reply.
    pub fn attempt(&self, device: &Device, identity: &str, ssid: &str) -> (EapolResult, String) {
        let mark = self.rd.mark();
        let result = self.st.lab.eapol(&self.st.lab.supplicant(device, ssid).identity(identity));
        let log = self.rd.wait_reply_logged(mark);
        (result, log)
    }

    /// Authenticates `device` as its own name until it is accepted, as a device retries
    /// (bounded by [`WAIT`]); every refused try must have ended in EAP-Failure. Returns the
    /// number of tries.
    pub fn admit(&self, device: &Device, ssid: &str) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut tries = 0;
        loop {
            tries += 1;
            let (r, log) = self.attempt(device, &device.name, ssid);
            if r.accepted {
                r.assert_accepted();
                assert!(log.contains(&decision("accept", &device.name, ssid)), "{log}");
                return tries;
            }
            r.assert_rejected_with_eap_failure();
            assert!(Instant::now() < deadline, "{} not admitted within {WAIT:?}; last try:\n{log}", device.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `name`'s entry in the persisted trust map (what the sync last published).
    pub fn entry(&self, name: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.st.lab.trust_map).ok()?;
        let map: serde_json::Value = serde_json::from_str(&text).ok()?;
        map["names"].get(name).cloned()
    }

    /// How many associations `name` has in the trust map (None: no entry at all).
    pub fn associations(&self, name: &str) -> Option<usize> {
        self.entry(name).map(|e| e["associations"].as_array().map_or(0, Vec::len))
    }

    /// Waits until `cond` holds of `name`'s association count; returns how long it took.
    pub fn wait_entry(&self, name: &str, what: &str, cond: impl Fn(Option<usize>) -> bool) -> Duration {
        let t0 = Instant::now();
        let ok = super::poll_until(WAIT, || cond(self.associations(name)));
        assert!(
            ok,
            "{name}: {what} not within {WAIT:?} (entry {:?}); radiusd log:\n{}",
            self.entry(name),
            self.rd.log()
        );
        t0.elapsed()
    }

    /// TLSA queries the sync sent for exactly `name`.
    pub fn tlsa_queries(&self, name: &str) -> usize {
        self.dns.queries().iter().filter(|q| q.name == name && q.rtype == TLSA).count()
    }
}

pub fn nsec3() -> StackOptions {
    StackOptions { nsec3: true, ..StackOptions::default() }
}

/// Publishes `ca` as the trust anchor of `zone`'s devices: `*._device.<zone> TLSA 2 0 0`.
pub fn publish_anchor(st: &Stack, zone: &str, ca: &Ca) {
    st.dns.set_tlsa(zone, "*._device", TTL, &format!("2 0 0 {}", hex::encode(ca.cert.to_der().unwrap())));
}

/// `ca` with its key, as `capki` issuers are given.
pub fn issuer(ca: &Ca) -> Issued {
    ca.issued()
}

/// Writes a supplicant's files: `leaf` and its key, the chain file holding `leaf` then
/// `extra` (what the device sends in its Certificate message).
pub fn device_files(st: &Stack, stem: &str, name: &str, leaf: &Issued, extra: &[&X509]) -> Device {
    let dir = &st.lab.work;
    let (cert, key, chain) =
        (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")), dir.join(format!("{stem}.chain.pem")));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let mut pem = leaf.pem();
    for c in extra {
        pem.extend_from_slice(&c.to_pem().unwrap());
    }
    std::fs::write(&chain, pem).unwrap();
    Device { name: name.to_string(), cert, key, chain }
}

/// Asserts what the first attempt of a name not yet looked up may end in: the module's
/// check rejected it as "discovery pending" (EAP-Failure), or, discovery having won the
/// race, accepted it. Says which.
pub fn assert_pending_or_accepted(first: &EapolResult, log: &str, name: &str, ssid: &str) -> &'static str {
    if first.accepted {
        first.assert_accepted();
        assert!(log.contains(&decision("accept", name, ssid)), "{log}");
        return "accepted (discovery won the race)";
    }
    first.assert_rejected_with_eap_failure();
    let refused_by_tls = log.lines().find(|l| l.contains("Login incorrect")).unwrap_or("(no Login incorrect line)");
    assert!(
        log.contains(&decision("reject", name, ssid)),
        "the first attempt of {name} never reached the module's check, so it was not rejected as \
         \"discovery pending\": {refused_by_tls}\n--- radiusd log of the attempt ---\n{log}"
    );
    assert!(log.contains(&format!("{} {PENDING}", decision("reject", name, ssid))), "{log}");
    "rejected: discovery pending"
}
