//! End to end: eapol_test (wpa_supplicant 2.10) does EAP-TLS against a
//! throwaway FreeRADIUS 3.2 on loopback, with the client key on the
//! simulated IoT SAFE card, reached through OpenSSL's pkcs11 engine
//! (libp11) -> this module -> pcscd -> vpcd -> simulator.
//!
//! Needs root, pcscd, vsmartcard-vpcd, freeradius, eapoltest and
//! libengine-pkcs11-openssl; installs a copy of the module under
//! /usr/lib/x86_64-linux-gnu/pkcs11/ (Debian's wpa_supplicant refuses
//! engine modules outside /usr/lib/) and removes it afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use iotsafe::reader::Target;
use iotsafe_sim::rig::{self, Pcscd};
use iotsafe_sim::{provision, Sim, SimConfig};

const RADIUS_PORT: u16 = 18212;
const SECRET: &str = "testing123";
const IDENTITY: &str = "car54._device.cars.example";
const ENGINE: &str = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
const MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/pkcs11";

fn p256_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn issue(
    cn: &str,
    key: &PKey<Public>,
    issuer: Option<(&X509, &PKey<Private>)>,
    self_key: Option<&PKey<Private>>,
    client: bool,
    serial: u32,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
            b.sign(self_key.unwrap(), MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let eku = if client {
                ExtendedKeyUsage::new().client_auth().build().unwrap()
            } else {
                ExtendedKeyUsage::new().server_auth().build().unwrap()
            };
            b.append_extension(eku).unwrap();
            let san = SubjectAlternativeName::new().dns(cn).build(&b.x509v3_context(Some(ca), None)).unwrap();
            b.append_extension(san).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn public(k: &PKey<Private>) -> PKey<Public> {
    PKey::public_key_from_pem(&k.public_key_to_pem().unwrap()).unwrap()
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the installed module copy on drop.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn built_module() -> PathBuf {
    // cargo builds this package's cdylib next to the test executable
    // (target/debug/deps/libiotsafe_pkcs11.so); `cargo build` also copies
    // it one level up. Prefer the copy built for this very test run.
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.to_path_buf(), deps.parent().unwrap().to_path_buf()]
        .iter()
        .map(|d| d.join("libiotsafe_pkcs11.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libiotsafe_pkcs11.so not built next to {}", exe.display()))
}

fn write_raddb(dir: &Path, pki: &Path) {
    let log = dir.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let conf = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {log}
raddbdir = {dir}
radacctdir = {log}
name = radiusd
confdir = {dir}
modconfdir = {dir}
certdir = {pki}
cadir = {pki}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
	destination = stdout
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}}
client localhost {{
	ipaddr = 127.0.0.1
	secret = {SECRET}
}}
thread pool {{
	start_servers = 2
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 3
	max_requests_per_server = 0
}}
modules {{
	eap {{
		default_eap_type = tls
		timer_expire = 60
		ignore_unknown_eap_types = no
		max_sessions = 64
		tls-config tls-common {{
			private_key_file = {pki}/server.key
			certificate_file = {pki}/server.pem
			ca_file = {pki}/ca.pem
			cipher_list = "DEFAULT"
			tls_min_version = "1.2"
			tls_max_version = "1.2"
			ecdh_curve = "prime256v1"
			cache {{
				enable = no
			}}
		}}
		tls {{
			tls = tls-common
		}}
	}}
}}
instantiate {{
}}
policy {{
}}
server default {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {RADIUS_PORT}
	}}
	authorize {{
		eap {{
			ok = return
		}}
	}}
	authenticate {{
		eap
	}}
	post-auth {{
		Post-Auth-Type REJECT {{
			eap
		}}
	}}
}}
"#,
        log = log.display(),
        dir = dir.display(),
        pki = pki.display(),
    );
    std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
}

/// Reads a child's stdout until `needle` appears or `timeout` passes.
fn wait_for_output(child: &mut Child, needle: &str, timeout: Duration) -> Result<(), String> {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => {
                seen.push_str(&chunk);
                if seen.contains(needle) {
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return Ok(());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    Err(seen)
}

fn run_eapol(conf: &Path, reader: &str, timeout_s: u32) -> (bool, String) {
    let mut child = Command::new("eapol_test")
        .args(["-c"])
        .arg(conf)
        .args(["-a", "127.0.0.1", "-p", &RADIUS_PORT.to_string(), "-s", SECRET, "-t", &timeout_s.to_string()])
        .env("IOTSAFE_READER", reader)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eapol_test (apt-get install eapoltest)");
    let mut out = child.stdout.take().unwrap();
    let reader_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("eapol_test hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), reader_t.join().unwrap())
}

#[test]
fn eapol_test_eap_tls_with_key_on_simulated_iot_safe() {
    for tool in ["freeradius", "eapol_test"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} missing (see ci.sh)"
        );
    }
    assert!(Path::new(ENGINE).exists(), "{ENGINE} missing: apt-get install libengine-pkcs11-openssl");

    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();

    // Card with a fresh key 01.
    let pcscd = Pcscd::start(rig::DEFAULT_NAME, rig::DEFAULT_PORT).unwrap();
    let card = tmp.path().join("card");
    provision::provision(&card, "factory._device.example").unwrap();
    let _sim = Sim::insert(SimConfig::new(&card, pcscd.port(0))).unwrap();
    let reader = pcscd.reader(0);
    rig::wait_card(&reader, true, Duration::from_secs(15)).unwrap();

    // Enrol: CA signs a certificate for the card's public key; write it to file 02.
    let target = Target { reader: Some(reader.clone()), ..Target::default() };
    let point = iotsafe::reader::with_applet(&target, |a| a.public_key(&[1])).unwrap();
    let card_pub = iotsafe::csr::public_key(&point).unwrap();
    let ca_key = p256_key();
    let ca = issue("IoT SAFE Test CA", &public(&ca_key), None, Some(&ca_key), false, 1);
    let client = issue(IDENTITY, &card_pub, Some((&ca, &ca_key)), None, true, 2);
    iotsafe::reader::with_applet(&target, |a| a.update_file(&[2], &client.to_der().unwrap())).unwrap();
    let srv_key = p256_key();
    let srv = issue("radius.test", &public(&srv_key), Some((&ca, &ca_key)), None, false, 3);
    std::fs::write(pki.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(pki.join("server.pem"), srv.to_pem().unwrap()).unwrap();
    std::fs::write(pki.join("server.key"), srv_key.private_key_to_pem_pkcs8().unwrap()).unwrap();

    // Install the module where Debian's wpa_supplicant accepts it.
    std::fs::create_dir_all(MODULE_DIR).unwrap();
    let module = Path::new(MODULE_DIR).join(format!("libiotsafe_pkcs11-test{}.so", std::process::id()));
    std::fs::copy(built_module(), &module).unwrap();
    let _installed = Installed(module.clone());

    // RADIUS server.
    let raddb = tmp.path().join("raddb");
    std::fs::create_dir_all(&raddb).unwrap();
    write_raddb(&raddb, &pki);
    let mut radiusd = Command::new("freeradius")
        .args(["-X", "-d"])
        .arg(&raddb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Err(seen) = wait_for_output(&mut radiusd, "Ready to process requests", Duration::from_secs(30)) {
        let _ = radiusd.kill();
        let _ = radiusd.wait();
        panic!("freeradius did not start:\n{seen}");
    }
    let _radiusd = Proc(radiusd);

    let eapol_conf = |key_id: u8| {
        format!(
            "pkcs11_engine_path={ENGINE}\npkcs11_module_path={module}\nnetwork={{\n\
             \tkey_mgmt=IEEE8021X\n\teap=TLS\n\tidentity=\"{IDENTITY}\"\n\tca_cert=\"{ca}\"\n\
             \tengine=1\n\tengine_id=\"pkcs11\"\n\
             \tkey_id=\"pkcs11:token=iotsafe;id=%{key_id:02x};type=private\"\n\
             \tcert_id=\"pkcs11:token=iotsafe;id=%01;type=cert\"\n\teapol_flags=0\n}}\n",
            module = module.display(),
            ca = pki.join("ca.pem").display(),
        )
    };
    let good = tmp.path().join("eapol.conf");
    std::fs::write(&good, eapol_conf(1)).unwrap();
    let (ok, log) = run_eapol(&good, &reader, 30);
    eprintln!("--- eapol_test with key 01 ---\n{log}");
    assert!(ok && log.contains("SUCCESS"), "eapol_test failed:\n{log}");
    assert!(log.contains("EAP-TLS") || log.contains("eap=13"), "{log}");

    // Negative control: a key that is not on the card cannot authenticate.
    let bad = tmp.path().join("eapol-bad.conf");
    std::fs::write(&bad, eapol_conf(9)).unwrap();
    let (ok, log) = run_eapol(&bad, &reader, 5);
    eprintln!("--- eapol_test with key 09 ---\n{log}");
    assert!(!ok && !log.contains("\nSUCCESS"), "missing key must fail:\n{log}");
}
