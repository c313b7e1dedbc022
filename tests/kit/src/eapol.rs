//! A real supplicant: `eapol_test` (wpa_supplicant's RADIUS test client) doing EAP-TLS.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::pki::Device;

/// The MAC part of Called-Station-Id the tests send.
pub const AP_MAC_DASHES: &str = "00-00-00-00-00-01";
pub const AP_MAC_COLONS: &str = "00:00:00:00:00:01";

/// The TLS version an EAP-TLS run is made to use. The shipped eap-dane offers 1.2 and 1.3
/// (RFC 9190); the supplicant decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 only (`phase1="tls_disable_tlsv1_3=1"`; wpa_supplicant's own default for EAP-TLS).
    Tls12,
    /// TLS 1.3 offered (`phase1="tls_disable_tlsv1_3=0"`), and 1.2 with it, as a device that
    /// does 1.3 offers them: a server that picks 1.2 shows in [`EapolResult::tls_versions`].
    Tls13,
}

impl TlsVersion {
    /// Both, in the order [`for_each_tls_version`] runs them.
    pub const BOTH: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

    /// As OpenSSL names it (`SSL: Using TLS version TLSv1.3`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// The version of the [`for_each_tls_version`] pass running on this thread; TLS 1.2
    /// outside one. A new [`Supplicant`] uses it.
    pub fn current() -> TlsVersion {
        PASS.with(|p| p.borrow().as_ref().map_or(TlsVersion::Tls12, |pass| pass.version))
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        })
    }
}

/// One [`for_each_tls_version`] pass: its version and what each eapol_test run in it did.
struct Pass {
    version: TlsVersion,
    /// (log file, the version the supplicant was told to use, the versions negotiated).
    runs: Vec<(PathBuf, TlsVersion, Vec<String>)>,
}

thread_local! {
    static PASS: RefCell<Option<Pass>> = const { RefCell::new(None) };
}

/// Runs `f` once under TLS 1.2, then once under TLS 1.3: every [`Supplicant`] made in the
/// pass uses its version (what `f` is given; [`Supplicant::tls`] to be explicit). After each
/// pass, panics unless `f` ran eapol_test on this thread, every run was told that version,
/// and every handshake that got as far as the server's choice negotiated it (at least one
/// did): a pass cannot silently run TLS 1.2 twice, nor authenticate nothing.
pub fn for_each_tls_version(mut f: impl FnMut(TlsVersion)) {
    /// Ends the pass on this thread however `f` returns (a panic caught further up too).
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            PASS.with(|p| p.borrow_mut().take());
        }
    }
    assert!(PASS.with(|p| p.borrow().is_none()), "for_each_tls_version inside a pass");
    for version in TlsVersion::BOTH {
        eprintln!("--- {version} pass");
        PASS.with(|p| *p.borrow_mut() = Some(Pass { version, runs: Vec::new() }));
        let guard = Guard;
        f(version);
        let pass = PASS.with(|p| p.borrow_mut().take()).expect("pass");
        drop(guard);
        assert!(!pass.runs.is_empty(), "the {version} pass ran no eapol_test (on this thread)");
        for (log, told, negotiated) in &pass.runs {
            assert_eq!(
                *told,
                version,
                "{}: a {told} supplicant in the {version} pass (made outside the pass?)",
                log.display()
            );
            assert!(
                negotiated.iter().all(|v| v == version.openssl_name()),
                "{}: the {version} pass negotiated {negotiated:?}",
                log.display()
            );
        }
        assert!(
            pass.runs.iter().any(|(_, _, negotiated)| !negotiated.is_empty()),
            "no handshake of the {version} pass got as far as the server's choice of version: {:?}",
            pass.runs.iter().map(|(log, _, _)| log).collect::<Vec<_>>()
        );
    }
}

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
    /// The TLS version to use (default: [`TlsVersion::current`]).
    pub tls: TlsVersion,
    /// Extra attributes of every Access-Request, as eapol_test's `-N` takes them
    /// (`89:x:00`: a Chargeable-User-Identity request).
    pub radius_attrs: Vec<String>,
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
            tls: TlsVersion::current(),
            radius_attrs: Vec::new(),
        }
    }

    /// Adds an attribute to every Access-Request (`-N`, e.g. `89:x:00`).
    pub fn radius_attr(mut self, spec: &str) -> Supplicant {
        self.radius_attrs.push(spec.to_string());
        self
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

    /// Uses TLS `version` (1.3: offers 1.3 and 1.2, which the server then picks from).
    pub fn tls(mut self, version: TlsVersion) -> Supplicant {
        self.tls = version;
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
    /// The TLS version each handshake negotiated, in order (`TLSv1.2`, `TLSv1.3`), for each
    /// handshake that got as far as the server's choice (one refused by TLS may not).
    pub tls_versions: Vec<String>,
    /// The version the supplicant was told to use.
    pub tls: TlsVersion,
    /// None when eapol_test had to be killed at the harness' own deadline.
    pub exit_code: Option<i32>,
    pub output: String,
}

impl EapolResult {
    /// Panics with the output tail unless this is a clean accept, every handshake of it in
    /// the version the supplicant was told to use.
    pub fn assert_accepted(&self) {
        assert!(
            self.accepted && self.access_accept && self.eap_success && !self.eap_failure,
            "expected Access-Accept with EAP-Success; eapol_test said:\n{}",
            self.tail()
        );
        self.assert_tls(self.tls);
    }

    /// Panics unless there was a handshake and every one negotiated `version`.
    pub fn assert_tls(&self, version: TlsVersion) {
        assert!(
            !self.tls_versions.is_empty() && self.tls_versions.iter().all(|v| v == version.openssl_name()),
            "expected {version}, the handshakes negotiated {:?}:\n{}",
            self.tls_versions,
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
        assert!(
            self.tls_versions.iter().all(|v| v == self.tls.openssl_name()),
            "a {} supplicant negotiated {:?}:\n{}",
            self.tls,
            self.tls_versions,
            self.tail()
        );
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
            if s.tls == TlsVersion::Tls13 { 0 } else { 1 },
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
    for spec in &s.radius_attrs {
        cmd.arg("-N").arg(spec);
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
    let result = parse(status.and_then(|st| st.code()), output, s.tls);
    PASS.with(|p| {
        if let Some(pass) = p.borrow_mut().as_mut() {
            pass.runs.push((out_path.clone(), s.tls, result.tls_versions.clone()));
        }
    });
    result
}

/// The TLS version each handshake in eapol_test's output negotiated. A handshake starts at
/// `EAP-TLS: Start`. wpa_supplicant prints `SSL: Using TLS version` before the server has
/// chosen (then it names the client's highest), so what counts is the line after
/// `Handshake finished`; a handshake the server aborted is known by the messages it got:
/// EncryptedExtensions exists only in TLS 1.3, ServerHelloDone only before it.
fn negotiated_versions(output: &str) -> Vec<String> {
    let mut versions = Vec::new();
    // This handshake's: finished, the version printed after that, the version its messages show.
    let (mut finished, mut printed, mut by_message) = (false, None::<String>, None::<&str>);
    let mut end = |printed: &mut Option<String>, by_message: &mut Option<&str>| {
        if let Some(v) = printed.take().or_else(|| by_message.take().map(str::to_owned)) {
            versions.push(v);
        }
        *by_message = None;
    };
    for line in output.lines().map(str::trim) {
        if line.starts_with("EAP-TLS: Start") {
            end(&mut printed, &mut by_message);
            finished = false;
        } else if line.starts_with("OpenSSL: Handshake finished") {
            finished = true;
        } else if let Some(v) = line.strip_prefix("SSL: Using TLS version ") {
            if finished && printed.is_none() {
                printed = Some(v.to_owned());
            }
        } else if line.starts_with("OpenSSL: RX ver=") {
            if line.ends_with("(handshake/encrypted extensions)") {
                by_message = Some(TlsVersion::Tls13.openssl_name());
            } else if line.ends_with("(handshake/server hello done)") {
                by_message = Some(TlsVersion::Tls12.openssl_name());
            }
        }
    }
    end(&mut printed, &mut by_message);
    versions
}

/// Interprets eapol_test output (exposed for reuse on saved logs); `tls` is the version the
/// supplicant was told to use.
pub fn parse(exit_code: Option<i32>, output: String, tls: TlsVersion) -> EapolResult {
    let has_line = |l: &str| output.lines().any(|x| x.trim() == l);
    EapolResult {
        accepted: exit_code == Some(0) && has_line("SUCCESS"),
        access_accept: output.contains("(Access-Accept)"),
        access_reject: output.contains("(Access-Reject)"),
        eap_success: output.contains("EAP: Received EAP-Success") || output.contains("CTRL-EVENT-EAP-SUCCESS"),
        eap_failure: output.contains("EAP: Received EAP-Failure") || output.contains("CTRL-EVENT-EAP-FAILURE"),
        resumed: output.matches("Handshake finished - resumed=1").count(),
        full_handshakes: output.matches("Handshake finished - resumed=0").count(),
        tls_versions: negotiated_versions(&output),
        tls,
        exit_code,
        output,
    }
}
