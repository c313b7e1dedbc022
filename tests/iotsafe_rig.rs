//! IoT SAFE rig, end to end: a device whose EAP-TLS key lives on a
//! (simulated) IoT SAFE SIM is enrolled and admitted by its DNS name, then revoked.
//!
//! Real parts only: pcscd with the vpcd reader and the `iotsafe-sim` card, the `iotsafe`
//! CLI, the `Cars Device CA` of the test PKI, knotd serving the signed zone, the HTTPS CA
//! publication, radiusd with the module's DNS sync, and `eapol_test` signing on the card
//! through OpenSSL's pkcs11 engine (libp11) and `libiotsafe_pkcs11.so`.
//!
//! 1. `iotsafe key generate` makes a new key 01 on the card;
//! 2. `iotsafe csr` has the card sign a CSR for `rig1._device.cars.example` (checked with
//!    OpenSSL);
//! 3. the Cars Device CA issues the certificate from the CSR's public key;
//! 4. `iotsafe cert write` stores it in file 02, `iotsafe cert read` must return it;
//! 5. the line `iotsafe tlsa` prints goes into the signed zone as is;
//! 6. the name goes into the policy, radiusd syncs and publishes it;
//! 7. eapol_test with the key on the card -> Access-Accept, `accept name=...` logged, under
//!    TLS 1.2 and under TLS 1.3 (the card signs the CertificateVerify of each);
//! 8. the TLSA record is removed -> the name leaves the trust map, the same card gets
//!    EAP-Failure with `name has no published certificate association`, under both.
//!
//! Needs root, pcscd, vsmartcard-vpcd, libengine-pkcs11-openssl (scripts/setup.sh) and the
//! IoT SAFE workspace built (`cargo build --locked --manifest-path iotsafe/Cargo.toml -p
//! iotsafe -p iotsafe-sim -p iotsafe-pkcs11`, which scripts/test.sh does first); the
//! binaries are taken from `iotsafe/target/debug/` (`IOTSAFE_TARGET_DIR` overrides).
//! Only one pcscd can run per host: like the iotsafe workspace's tests, this test takes
//! the flock `/tmp/iotsafe-pcscd-rig.lock` first and fails if another pcscd runs.
//! `RLM_RUST_SKIP_IOTSAFE=1` (or `RLM_RUST_SKIP_EAP_TLS=1`) skips it.
#![allow(unsafe_code)] // test harness: libc calls (flock, process groups)

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::x509::{X509Req, X509};

use testkit::eapol::{for_each_tls_version, Credential, Supplicant};
use testkit::pki::{self, Ca};
use testkit::stack::{Stack, CARS, TTL};

const NAME: &str = "rig1._device.cars.example";
const SSID: &str = "Cars-WiFi";

/// The rig's shared lock, reader and port: the same as `iotsafe_sim::rig`.
const LOCK_PATH: &str = "/tmp/iotsafe-pcscd-rig.lock";
const READER_NAME: &str = "IoTSAFE Sim";
const READER: &str = "IoTSAFE Sim 00 00";
const VPCD_PORT: u16 = 0x8CB0;
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
const PCSCD_PID: &str = "/run/pcscd/pcscd.pid";

/// Debian's wpa_supplicant loads engines and modules only from under /usr/lib/.
const ENGINE: &str = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
const MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/pkcs11";

fn skip() -> bool {
    for knob in ["RLM_RUST_SKIP_EAP_TLS", "RLM_RUST_SKIP_IOTSAFE"] {
        if std::env::var_os(knob).is_some() {
            eprintln!("{knob} set: skipping");
            return true;
        }
    }
    false
}

/// The IoT SAFE workspace's build output.
fn iotsafe_built(file: &str) -> PathBuf {
    let dir = std::env::var_os("IOTSAFE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("iotsafe/target/debug"));
    let p = dir.join(file);
    assert!(
        p.exists(),
        "{} missing: build the IoT SAFE workspace first (scripts/test.sh does): \
         cargo build --locked --manifest-path iotsafe/Cargo.toml -p iotsafe -p iotsafe-sim -p iotsafe-pkcs11",
        p.display()
    );
    p
}

/// Exclusive right to run pcscd on this host (the flock every rig user takes).
struct RigLock {
    _file: File,
}

impl RigLock {
    fn take(limit: Duration) -> RigLock {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .unwrap_or_else(|e| panic!("{LOCK_PATH}: {e}"));
        let ok = testkit::poll_until(limit, || {
            // SAFETY: flock(2) on a descriptor we own; no memory is passed.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        });
        assert!(ok, "rig lock {LOCK_PATH} still held after {limit:?} (another pcscd test running?)");
        RigLock { _file: file }
    }
}

/// A process of the rig: SIGTERM on drop, SIGKILL after 5 s. It also gets SIGTERM when
/// the thread that started it dies (PR_SET_PDEATHSIG), so a killed test leaves no pcscd.
struct Proc {
    child: Option<Child>,
    what: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(what: &'static str, program: &Path, args: &[&str], log: PathBuf) -> Proc {
        let out = File::create(&log).expect("log");
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone().expect("dup")).stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what} ({}): {e}", program.display()));
        Proc { child: Some(child), what, log }
    }

    /// Panics with the log if the process has exited.
    fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{} exited ({status}); log:\n{}", self.what, testkit::read_lossy(&self.log));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            testkit::terminate(&mut c, Duration::from_secs(5));
        }
    }
}

/// One finished tool run.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// Runs `program` (bounded: 30 s), output captured in files under `work`.
fn run_tool(work: &Path, program: &Path, args: &[&str]) -> Out {
    let n = RUN.fetch_add(1, Ordering::SeqCst);
    let (out_path, err_path) = (work.join(format!("tool-{n}.out")), work.join(format!("tool-{n}.err")));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("out"))
        .stderr(File::create(&err_path).expect("err"))
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let status = testkit::wait_bounded(&mut child, Duration::from_secs(30));
    let (stdout, stderr) = (testkit::read_lossy(&out_path), testkit::read_lossy(&err_path));
    assert!(status.is_some(), "{} {args:?} hung for 30 s; stderr:\n{stderr}", program.display());
    Out { ok: status.is_some_and(|s| s.success()), stdout, stderr }
}

/// pcscd with the vpcd reader and the simulated card plugged in. Fields drop in order:
/// card first, then pcscd, then the lock.
struct Rig {
    sim: Proc,
    pcscd: Proc,
    work: PathBuf,
    iotsafe: PathBuf,
    _lock: RigLock,
}

fn running_pcscd() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(PCSCD_PID).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "pcscd").then_some(pid)
}

impl Rig {
    /// Starts pcscd with a private reader config (`IoTSAFE Sim 00 00` on 127.0.0.1:36016),
    /// provisions a factory card in `work/card` and plugs it in. Waits are bounded.
    fn up(lock: RigLock, work: &Path) -> Rig {
        if let Some(pid) = running_pcscd() {
            panic!("another pcscd (pid {pid}) is running; the rig needs its own (systemctl stop pcscd.socket pcscd)");
        }
        assert!(Path::new(VPCD_DRIVER).exists(), "{VPCD_DRIVER} missing: apt-get install vsmartcard-vpcd");
        let iotsafe = iotsafe_built("iotsafe");
        let sim_bin = iotsafe_built("iotsafe-sim");
        std::fs::create_dir_all(work).expect("rig dir");
        // pcscd parses every file of its config dir: only the reader entry goes there.
        let conf = work.join("reader.conf.d");
        std::fs::create_dir_all(&conf).expect("reader.conf.d");
        std::fs::write(
            conf.join("vpcd-iotsafe"),
            format!(
                "FRIENDLYNAME \"{READER_NAME}\"\nDEVICENAME /dev/null:0x{VPCD_PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{VPCD_PORT:04X}\n"
            ),
        )
        .expect("reader conf");
        let conf = conf.display().to_string();
        let pcscd = Proc::spawn(
            "pcscd",
            Path::new("/usr/sbin/pcscd"),
            &["--foreground", "--debug", "-c", &conf],
            work.join("pcscd.log"),
        );
        let card = work.join("card");
        let card_s = card.display().to_string();
        let prov = run_tool(work, &sim_bin, &["provision", "--dir", &card_s, "--name", "factory._device.example"]);
        assert!(prov.ok, "iotsafe-sim provision: {}", prov.stderr);
        // The struct owns pcscd from here on (the card is plugged in below).
        let mut rig = Rig {
            sim: Proc { child: None, what: "iotsafe-sim", log: work.join("sim.log") },
            pcscd,
            work: work.to_path_buf(),
            iotsafe,
            _lock: lock,
        };
        rig.wait_readers(|out| out.lines().any(|l| l.starts_with(READER)), "reader listed");
        let port = VPCD_PORT.to_string();
        rig.sim =
            Proc::spawn("iotsafe-sim", &sim_bin, &["run", "--dir", &card_s, "--port", &port], rig.sim.log.clone());
        rig.wait_readers(|out| out.lines().any(|l| l.starts_with(&format!("{READER}\tcard"))), "card present");
        rig
    }

    /// Polls `iotsafe readers` (each run bounded) until `cond` holds, at most 15 s.
    fn wait_readers(&mut self, cond: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let last = loop {
            self.pcscd.assert_running();
            self.sim.assert_running();
            let out = run_tool(&self.work, &self.iotsafe, &["readers"]);
            if out.ok && cond(&out.stdout) {
                return;
            }
            if Instant::now() >= deadline {
                break format!("{}{}", out.stdout, out.stderr);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        panic!(
            "rig: {what} not reached within 15 s; `iotsafe readers` said:\n{last}\npcscd log:\n{}\nsim log:\n{}",
            tail(&testkit::read_lossy(&self.pcscd.log)),
            testkit::read_lossy(&self.sim.log)
        );
    }

    /// `iotsafe --reader READER <args>`; panics (with stderr) unless it succeeds.
    fn iotsafe(&self, args: &[&str]) -> Out {
        let mut all = vec!["--reader", READER];
        all.extend_from_slice(args);
        let out = run_tool(&self.work, &self.iotsafe, &all);
        assert!(out.ok, "iotsafe {args:?} failed:\n{}{}", out.stdout, out.stderr);
        out
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A copy of the PKCS#11 module under /usr/lib (Debian's trusted path), removed on drop.
struct InstalledModule(PathBuf);

impl InstalledModule {
    fn install() -> InstalledModule {
        std::fs::create_dir_all(MODULE_DIR).expect("module dir");
        let path = Path::new(MODULE_DIR).join(format!("libiotsafe_pkcs11-rig{}.so", std::process::id()));
        std::fs::copy(iotsafe_built("libiotsafe_pkcs11.so"), &path)
            .unwrap_or_else(|e| panic!("install {}: {e}", path.display()));
        InstalledModule(path)
    }
}

impl Drop for InstalledModule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the device CA does with a CSR: a leaf for `name` (CN and only SAN dNSName) with
/// the CSR's public key, EKU clientAuth, SKI and AKI keyid, as testkit::pki's leaves.
fn issue_from_csr(ca: &Ca, req: &X509Req, name: &str) -> X509 {
    let public = req.public_key().expect("CSR public key");
    testkit::capki::certify(&pki::device_spec(name, &[name], pki::Aki::KeyId), &public, &ca.issued())
}

fn no_space_lower(s: &str) -> String {
    s.split_whitespace().collect::<String>().to_ascii_lowercase()
}

#[test]
fn iot_safe_card_enrolled_by_csr_is_admitted_by_its_tlsa_record_and_revoked() {
    if skip() {
        return;
    }
    assert!(Path::new(ENGINE).exists(), "{ENGINE} missing: apt-get install libengine-pkcs11-openssl");
    let t0 = Instant::now();
    let lock = RigLock::take(Duration::from_secs(600));
    let waited = t0.elapsed();
    let mut st = Stack::new();
    let work = st.lab.root.join("iotsafe");
    let rig = Rig::up(lock, &work);
    let rig_up = t0.elapsed();
    let w = |f: &str| work.join(f).display().to_string();

    // 1. A new key pair in slot 01 (replaces the factory key).
    let factory = rig.iotsafe(&["key", "public", "--id", "01", "--format", "pem"]).stdout;
    let generated = rig.iotsafe(&["key", "generate", "--id", "01", "--format", "pem"]).stdout;
    let card_key = PKey::public_key_from_pem(generated.as_bytes()).expect("generated key is PEM");
    let factory = PKey::public_key_from_pem(factory.as_bytes()).expect("factory key is PEM");
    assert!(!card_key.public_eq(&factory), "key generate did not replace the factory key");
    let now_public = rig.iotsafe(&["key", "public", "--id", "01", "--format", "pem"]).stdout;
    assert_eq!(now_public, generated, "key public disagrees with key generate");

    // 2. The CSR, signed on the card; OpenSSL must verify it and see the name.
    rig.iotsafe(&["csr", "--key", "01", "--name", NAME, "--format", "pem", "-o", &w("rig1.csr")]);
    let verify = run_tool(&work, Path::new("openssl"), &["req", "-in", &w("rig1.csr"), "-noout", "-verify"]);
    assert!(
        verify.ok && verify.stderr.contains("verify OK"),
        "openssl req -verify: {}{}",
        verify.stdout,
        verify.stderr
    );
    let text = run_tool(&work, Path::new("openssl"), &["req", "-in", &w("rig1.csr"), "-noout", "-text"]);
    assert!(text.ok, "openssl req -text: {}", text.stderr);
    assert!(text.stdout.contains(&format!("CN = {NAME}")), "CSR subject:\n{}", text.stdout);
    assert!(text.stdout.contains(&format!("DNS:{NAME}")), "CSR SAN:\n{}", text.stdout);
    let req = X509Req::from_pem(&std::fs::read(work.join("rig1.csr")).expect("csr")).expect("CSR PEM");
    let csr_key = req.public_key().expect("CSR key");
    assert!(req.verify(&csr_key).expect("verify"), "CSR signature");
    assert!(csr_key.public_eq(&card_key), "the CSR carries another key than the card's key 01");

    // 3. The Cars Device CA (published by the stack at .well-known/ca) issues it.
    let cert = issue_from_csr(&st.lab.pki.cars_ca, &req, NAME);
    let der = cert.to_der().expect("der");
    std::fs::write(work.join("rig1.pem"), cert.to_pem().expect("pem")).expect("write cert");

    // 4. Into the card's certificate file 02, and back.
    let before = rig.iotsafe(&["cert", "read", "--id", "02", "--format", "der", "-o", &w("factory.der")]);
    assert!(before.stdout.is_empty());
    assert_ne!(std::fs::read(work.join("factory.der")).expect("factory cert"), der);
    rig.iotsafe(&["cert", "write", "--id", "02", "--in", &w("rig1.pem")]);
    rig.iotsafe(&["cert", "read", "--id", "02", "--format", "der", "-o", &w("readback.der")]);
    assert_eq!(std::fs::read(work.join("readback.der")).expect("read back"), der, "file 02 read back differs");
    let enrolled = t0.elapsed();

    // 5. The zone-file line `iotsafe tlsa` prints is what DNS serves.
    let line = rig.iotsafe(&["tlsa", "--id", "02"]).stdout;
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields.len() >= 7 && fields[1] == "IN" && fields[2] == "TLSA", "unexpected tlsa line: {line:?}");
    let (owner, rdata) = (fields[0], fields[3..].join(" "));
    assert_eq!(owner, format!("{NAME}."), "tlsa owner");
    assert_eq!(rdata, format!("4 0 0 {}", hex::encode(&der)), "tlsa rdata is not the certificate");
    st.dns.set_tlsa(CARS, owner, TTL, &rdata);
    let served = st.dns.dig(owner, "TLSA");
    assert_eq!(no_space_lower(&served), no_space_lower(&rdata), "knotd serves another TLSA record");

    // 6. Policy + radiusd with the sync; the name gets published.
    st.set_policy(&[(SSID, NAME)]);
    let rd = st.start();
    let took = st.wait_published(&rd, NAME, true, Duration::from_secs(20));
    eprintln!("published {NAME} {took:.2?} after radiusd start");

    // 7. eapol_test with the key on the card (pkcs11 engine -> our module -> pcscd -> card).
    let module = InstalledModule::install();
    let credential = Credential::Raw {
        global: vec![format!("pkcs11_engine_path={ENGINE}"), format!("pkcs11_module_path={}", module.0.display())],
        network: vec![
            "engine=1".into(),
            "engine_id=\"pkcs11\"".into(),
            "key_id=\"pkcs11:token=iotsafe;id=%01;type=private\"".into(),
            "cert_id=\"pkcs11:token=iotsafe;id=%01;type=cert\"".into(),
        ],
    };
    // Made in each TLS version's pass, so it uses that version.
    let supplicant = || {
        Supplicant::with_credential(NAME, credential.clone(), &st.lab.pki.server_ca.pem, SSID)
            .env("IOTSAFE_READER", READER)
    };
    let serial = cert.serial_number().to_bn().expect("bn").to_hex_str().expect("hex").to_ascii_lowercase();
    let mut auth_took = Vec::new();
    for_each_tls_version(|tls| {
        let mark = rd.mark();
        let t_auth = Instant::now();
        let res = st.lab.eapol(&supplicant());
        res.assert_accepted();
        assert!(res.output.contains("TLS: Using private key from engine"), "key not from the engine:\n{}", res.tail());
        auth_took.push(format!("{tls} {:.2?}", t_auth.elapsed()));
        rd.wait_for(mark, &format!("rlm_rust[rust]: accept name={NAME}"), Duration::from_secs(5));
        // The client certificate radiusd saw is the one on the card.
        let log = rd.log_since(mark);
        assert!(
            log.to_ascii_lowercase().contains(&serial),
            "radiusd did not see serial {serial} of the card's certificate:\n{log}"
        );
    });

    // 8. Withdraw the TLSA record: the name leaves the trust map, the card is rejected.
    let removed = Instant::now();
    st.dns.remove(CARS, owner, "TLSA");
    st.wait_published(&rd, NAME, false, Duration::from_secs(30));
    let revoked = removed.elapsed();
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&supplicant()).assert_rejected_with_eap_failure();
        rd.wait_for(mark, "reason=name has no published certificate association", Duration::from_secs(5));
    });

    eprintln!(
        "iotsafe rig: lock wait {waited:.2?}, rig up at {rig_up:.2?}, enrolled at {enrolled:.2?}, \
         EAP-TLS with the card {}, TLSA removed -> out of the trust map {revoked:.2?} \
         (TTL {TTL} s), total {:.2?}",
        auth_took.join(", "),
        t0.elapsed()
    );
    drop(module);
    drop(rd);
    drop(rig);
}
