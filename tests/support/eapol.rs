//! A real supplicant: `eapol_test` (wpa_supplicant's RADIUS test client) doing EAP-TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::pki::Device;

/// The MAC part of Called-Station-Id the tests send.
pub const AP_MAC_DASHES: &str = "00-00-00-00-00-01";
pub const AP_MAC_COLONS: &str = "00:00:00:00:00:01";

/// Where the supplicant's client certificate and private key come from.
#[derive(Clone, Debug)]
pub enum Credential {
    /// PEM files: `client_cert` (leaf, or leaf + CA chain) and `private_key`.
    Files { client_cert: PathBuf, private_key: PathBuf },
    /// Raw wpa_supplicant configuration instead of the two file lines: `global` lines go
    /// before `network={` (e.g. `pkcs11_engine_path=...`), `network` lines inside it (e.g.
    /// `engine=1`, `key_id="pkcs11:..."`). For keys behind an OpenSSL engine.
    Raw { global: Vec<String>, network: Vec<String> },
}

/// What one EAP-TLS run sends.
#[derive(Clone, Debug)]
pub struct Supplicant {
    /// EAP identity, hence the User-Name.
    pub identity: String,
    pub credential: Credential,
    /// The CA the supplicant verifies the server against.
    pub ca_cert: PathBuf,
    /// The Called-Station-Id value, or None to send none.
    pub called_station_id: Option<String>,
    /// eapol_test's own timeout (-t), seconds.
    pub timeout_secs: u32,
    /// Extra environment for eapol_test (e.g. `IOTSAFE_READER` for a PKCS#11 module).
    pub env: Vec<(String, String)>,
    /// Re-authentications after the first (`eapol_test -r`): TLS session resumption.
    pub reauths: u32,
    /// Offer TLS 1.3 (wpa_supplicant disables it for EAP-TLS unless told otherwise).
    pub tls13: bool,
}

impl Supplicant {
    /// `device` claiming its own name, on `ssid` (Called-Station-Id `00-00-00-00-00-01:<ssid>`).
    pub fn new(device: &Device, server_ca: &Path, ssid: &str) -> Supplicant {
        let credential = Credential::Files { client_cert: device.chain.clone(), private_key: device.key.clone() };
        Supplicant::with_credential(&device.name, credential, server_ca, ssid)
    }

    /// `identity` authenticating with `credential` on `ssid`.
    pub fn with_credential(identity: &str, credential: Credential, server_ca: &Path, ssid: &str) -> Supplicant {
        Supplicant {
            identity: identity.to_string(),
            credential,
            ca_cert: server_ca.to_path_buf(),
            called_station_id: Some(format!("{AP_MAC_DASHES}:{ssid}")),
            timeout_secs: 15,
            env: Vec::new(),
            reauths: 0,
            tls13: false,
        }
    }

    /// Sets an environment variable for eapol_test.
    pub fn env(mut self, key: &str, value: &str) -> Supplicant {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Authenticates `n` more times on the same supplicant, which offers to resume.
    pub fn reauths(mut self, n: u32) -> Supplicant {
        self.reauths = n;
        self
    }

    /// Offers TLS 1.3 (with `true`), which the server then picks if it allows it.
    pub fn tls13(mut self, on: bool) -> Supplicant {
        self.tls13 = on;
        self
    }

    /// Claims `name` instead of the device's own.
    pub fn identity(mut self, name: &str) -> Supplicant {
        self.identity = name.to_string();
        self
    }

    /// Sends this exact Called-Station-Id (None: the attribute is omitted).
    pub fn called_station_id(mut self, value: Option<&str>) -> Supplicant {
        self.called_station_id = value.map(str::to_string);
        self
    }
}

/// The outcome of one run, parsed from eapol_test's output.
#[derive(Clone, Debug)]
pub struct EapolResult {
    /// eapol_test exited 0 and printed SUCCESS (the authentication succeeded end to end).
    pub accepted: bool,
    /// A RADIUS Access-Accept was received.
    pub access_accept: bool,
    /// A RADIUS Access-Reject was received.
    pub access_reject: bool,
    /// The supplicant was told EAP-Success (must never happen on a reject).
    pub eap_success: bool,
    /// The supplicant was told EAP-Failure.
    pub eap_failure: bool,
    /// Handshakes that resumed a TLS session (`resumed=1`), and that did not.
    pub resumed: usize,
    pub full_handshakes: usize,
    /// The TLS versions the handshakes used, in order (`TLSv1.2`, `TLSv1.3`).
    pub tls_versions: Vec<String>,
    /// None when eapol_test had to be killed at the harness' own deadline.
    pub exit_code: Option<i32>,
    pub output: String,
}

impl EapolResult {
    /// Panics with the output tail unless this is a clean accept.
    pub fn assert_accepted(&self) {
        assert!(
            self.accepted && self.access_accept && self.eap_success && !self.eap_failure,
            "expected Access-Accept with EAP-Success; eapol_test said:\n{}",
            self.tail()
        );
    }

    /// Panics unless this is an Access-Reject carrying EAP-Failure and never EAP-Success.
    pub fn assert_rejected_with_eap_failure(&self) {
        assert!(!self.accepted, "expected a reject, eapol_test succeeded:\n{}", self.tail());
        assert!(!self.eap_success, "a rejected device was told EAP-Success:\n{}", self.tail());
        assert!(
            self.access_reject && !self.access_accept,
            "expected Access-Reject (and no Access-Accept):\n{}",
            self.tail()
        );
        assert!(self.eap_failure, "the rejected device did not receive EAP-Failure:\n{}", self.tail());
    }

    /// The last lines of the output, for failure messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.output.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// Runs eapol_test against 127.0.0.1:`port` (secret testing123), writing its config and
/// output under `work_dir`. Bounded by the supplicant's timeout plus a margin.
pub fn run(work_dir: &Path, port: u16, s: &Supplicant) -> EapolResult {
    let n = RUN.fetch_add(1, Ordering::SeqCst);
    let conf = work_dir.join(format!("eapol-{n}.conf"));
    let out_path = work_dir.join(format!("eapol-{n}.log"));
    let quote = |p: &Path| p.display().to_string().replace('"', "");
    let (global, credential) = match &s.credential {
        Credential::Files { client_cert, private_key } => (
            String::new(),
            format!("\tclient_cert=\"{}\"\n\tprivate_key=\"{}\"\n", quote(client_cert), quote(private_key)),
        ),
        Credential::Raw { global, network } => {
            (global.iter().map(|l| format!("{l}\n")).collect(), network.iter().map(|l| format!("\t{l}\n")).collect())
        }
    };
    std::fs::write(
        &conf,
        format!(
            "{global}network={{\n\tkey_mgmt=WPA-EAP\n\teap=TLS\n\tidentity=\"{}\"\n\tca_cert=\"{}\"\n{credential}\teapol_flags=3\n\tphase1=\"tls_disable_tlsv1_3={}\"\n}}\n",
            s.identity.replace('"', ""),
            quote(&s.ca_cert),
            if s.tls13 { 0 } else { 1 },
        ),
    )
    .expect("write eapol.conf");

    let out = std::fs::File::create(&out_path).expect("eapol log");
    let mut cmd = Command::new("eapol_test");
    cmd.arg("-c")
        .arg(&conf)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-s", "testing123"])
        .arg(format!("-t{}", s.timeout_secs));
    if s.reauths > 0 {
        cmd.arg(format!("-r{}", s.reauths));
    }
    if let Some(csi) = &s.called_station_id {
        cmd.arg("-N").arg(format!("30:s:{csi}"));
    }
    cmd.envs(s.env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn eapol_test (package eapoltest)");
    let status = super::wait_bounded(&mut child, Duration::from_secs(u64::from(s.timeout_secs) + 15));
    let output = super::read_lossy(&out_path);
    parse(status.and_then(|st| st.code()), output)
}

/// Interprets eapol_test output (exposed for reuse on saved logs).
pub fn parse(exit_code: Option<i32>, output: String) -> EapolResult {
    let has_line = |l: &str| output.lines().any(|x| x.trim() == l);
    EapolResult {
        accepted: exit_code == Some(0) && has_line("SUCCESS"),
        access_accept: output.contains("(Access-Accept)"),
        access_reject: output.contains("(Access-Reject)"),
        eap_success: output.contains("EAP: Received EAP-Success") || output.contains("CTRL-EVENT-EAP-SUCCESS"),
        eap_failure: output.contains("EAP: Received EAP-Failure") || output.contains("CTRL-EVENT-EAP-FAILURE"),
        resumed: output.matches("Handshake finished - resumed=1").count(),
        full_handshakes: output.matches("Handshake finished - resumed=0").count(),
        tls_versions: output
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SSL: Using TLS version "))
            .map(str::to_owned)
            .collect(),
        exit_code,
        output,
    }
}
