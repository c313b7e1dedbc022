//! A throwaway raddb rendered from the repo's shipped `raddb/` files, and a real
//! `freeradius -X` running it with the `rlm_rust.so` cargo just built.
//!
//! Layout of one lab (everything under a private temp dir, removed on drop):
//! ```text
//! <root>/raddb/radiusd.conf            minimal, written here; no user/group (runs as the
//!                                      test's user), reject_delay = 0, log to stdout
//! <root>/raddb/clients.conf            client localhost 127.0.0.1 / testing123
//! <root>/raddb/mods-enabled/rust       raddb/mods-available/rust (+ option overrides)
//! <root>/raddb/mods-enabled/eap-dane   raddb/mods-available/eap-dane
//! <root>/raddb/sites-enabled/...       raddb/sites-available/dane-eap-tls (listen on
//!                                      127.0.0.1:<free port>) and check-eap-tls-dane
//! <root>/lib/                          rlm_rust.so -> target/<profile>/librlm_rust.so,
//!                                      plus a symlink to every /usr/lib/freeradius/*.so
//! <root>/certs/                        ${certdir}: server.pem/.key, dane-ca/ (hashed)
//! <root>/var/lib/rlm_rust/trustmap.json  ${localstatedir}/lib/rlm_rust/trustmap.json
//! <root>/pki/                          the test PKI
//! ```
//! The shipped files are used unmodified except for the textual replacements below, each
//! of which must match exactly once (so a drift in the shipped files fails loudly).
#![allow(unsafe_code)] // test harness: libc calls on the radiusd child

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eapol::{self, EapolResult, Supplicant};
use super::pki::{self, Device, TestPki};

/// The repo's `raddb/` directory.
pub fn shipped_raddb() -> PathBuf {
    super::repo_root().join("raddb")
}

fn shipped(rel: &str) -> String {
    let p = shipped_raddb().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Replaces the single occurrence of `from` in `text`; panics if it occurs 0 or 2+ times.
pub fn replace_once(text: &str, from: &str, to: &str, what: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(n, 1, "{what}: expected exactly one {from:?} in the shipped file, found {n}");
    text.replacen(from, to, 1)
}

/// The built module. `RLM_RUST_SO` overrides; otherwise `target/<profile>/librlm_rust.so`
/// found from this test binary (`target/<profile>/deps/<test>-<hash>`).
pub fn module_so() -> PathBuf {
    if let Some(p) = std::env::var_os("RLM_RUST_SO") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe.parent().and_then(Path::parent).expect("profile dir");
    // `cargo test` leaves the cdylib in deps/ (only `cargo build` copies it up a level), and
    // deps/ always holds the one built with this run; the copy above may be older.
    let candidates = [profile.join("deps/librlm_rust.so"), profile.join("librlm_rust.so")];
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!(
            "built module not found at {} or {} (set RLM_RUST_SO to override)",
            candidates[0].display(),
            candidates[1].display()
        )
    })
}

/// Where radiusd's own modules live (`FR_LIBRARY_PATH` style override: `FR_SYSTEM_LIBDIR`).
fn system_libdir() -> PathBuf {
    std::env::var_os("FR_SYSTEM_LIBDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/freeradius"))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.local_addr().expect("local addr").port()
}

/// How the lab deviates from the shipped configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep `rust` in the outer post-auth (shipped: yes).
    pub post_auth: bool,
    /// Keep eap_dane's `virtual_server = "check-eap-tls-dane"` and enable that site
    /// (shipped: yes).
    pub virtual_server: bool,
    /// `eap_failure_on_reject` of the `rust` instance (shipped: yes).
    pub eap_failure_on_reject: bool,
    /// `reload_interval` of the `rust` instance (shipped: "1.0").
    pub reload_interval: String,
    /// Replaces the post-auth call `rust` with this unlang (only when `post_auth`).
    pub post_auth_unlang: Option<String>,
    /// Extra files for mods-enabled/: (file name, contents). `${localstatedir}` etc. work.
    pub extra_modules: Vec<(String, String)>,
    /// Extra files for sites-enabled/: (file name, contents).
    pub extra_sites: Vec<(String, String)>,
    /// Replaces text in the rendered eap-dane file: (from, to), each matching once.
    pub eap_edits: Vec<(String, String)>,
    /// Replaces text in the rendered dane-eap-tls site: (from, to), each matching once.
    pub site_edits: Vec<(String, String)>,
    /// Use the commented `ca_file` (one bundle) instead of `ca_path`.
    pub ca_file: bool,
    /// Extra `key = value` lines for the `rust { }` section (e.g. the DNS sync options).
    pub rust_options: Vec<(String, String)>,
    /// Run `freeradius -X` (full debug log, what the assertions read). Benchmarks turn
    /// it off: debug logging costs more than the module.
    pub debug: bool,
    /// `tls_max_version` of eap_dane's tls-config (None: as shipped, "1.3"; `Some("1.2")`
    /// pins the server to TLS 1.2).
    pub tls_max_version: Option<&'static str>,
    /// Replaces eap_dane's whole `cache { }` section (None: as shipped).
    pub session_cache: Option<String>,
    /// Write mods-enabled/rust (shipped: yes). `false` runs radiusd without rlm_rust at
    /// all (no module, so no TLS hook either); it needs `post_auth` and `virtual_server`
    /// off, which call the module.
    pub rust_module: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            post_auth: true,
            virtual_server: true,
            eap_failure_on_reject: true,
            reload_interval: "1.0".into(),
            post_auth_unlang: None,
            extra_modules: Vec::new(),
            extra_sites: Vec::new(),
            eap_edits: Vec::new(),
            site_edits: Vec::new(),
            ca_file: false,
            rust_options: Vec::new(),
            debug: true,
            tls_max_version: None,
            session_cache: None,
            rust_module: true,
        }
    }
}

/// One isolated lab: PKI, rendered raddb, trust map path, port.
pub struct Lab {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub raddb: PathBuf,
    pub certdir: PathBuf,
    pub localstatedir: PathBuf,
    /// `${localstatedir}/lib/rlm_rust/trustmap.json`, the shipped `trust_map`.
    pub trust_map: PathBuf,
    /// Scratch dir for supplicant configs/logs and policies.
    pub work: PathBuf,
    pub pki: TestPki,
    pub port: u16,
    pub opts: Options,
}

impl Lab {
    /// Makes the PKI (both device CAs trusted by TLS) and renders the raddb.
    pub fn new(opts: Options) -> Lab {
        // RLM_RUST_KEEP_LAB=1 keeps the lab dir (raddb, logs, PKI) for a post-mortem.
        let keep = std::env::var_os("RLM_RUST_KEEP_LAB").is_some();
        let tmp = tempfile::Builder::new().prefix("rlm_rust-lab-").disable_cleanup(keep).tempdir().expect("temp dir");
        if keep {
            eprintln!("lab kept at {}", tmp.path().display());
        }
        let root = tmp.path().to_path_buf();
        let raddb = root.join("raddb");
        let certdir = root.join("certs");
        let localstatedir = root.join("var");
        let work = root.join("work");
        for d in [
            &raddb,
            &raddb.join("mods-enabled"),
            &raddb.join("sites-enabled"),
            &certdir,
            &localstatedir.join("lib/rlm_rust"),
            &work,
            &root.join("log"),
            &root.join("log/tlscache"),
            &root.join("run"),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let pki = TestPki::new(&root.join("pki"));
        std::fs::copy(&pki.server_cert, certdir.join("server.pem")).expect("server cert");
        std::fs::copy(&pki.server_key, certdir.join("server.key")).expect("server key");
        pki::write_ca_path(&certdir.join("dane-ca"), &pki.device_cas());
        pki::write_ca_file(&certdir.join("dane-ca.pem"), &pki.device_cas());

        let lab = Lab {
            trust_map: localstatedir.join("lib/rlm_rust/trustmap.json"),
            _tmp: tmp,
            root,
            raddb,
            certdir,
            localstatedir,
            work,
            pki,
            port: free_udp_port(),
            opts,
        };
        lab.link_libdir();
        lab.render();
        lab
    }

    fn link_libdir(&self) {
        let lib = self.root.join("lib");
        std::fs::create_dir_all(&lib).expect("libdir");
        std::os::unix::fs::symlink(module_so(), lib.join("rlm_rust.so")).expect("symlink module");
        let sys = system_libdir();
        for e in std::fs::read_dir(&sys).unwrap_or_else(|e| panic!("{}: {e} (is freeradius installed?)", sys.display()))
        {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "so") {
                let name = p.file_name().expect("name");
                if name != "rlm_rust.so" {
                    std::os::unix::fs::symlink(&p, lib.join(name)).expect("symlink");
                }
            }
        }
    }

    /// (Re)writes every raddb file from the shipped ones and the options.
    pub fn render(&self) {
        let o = &self.opts;
        let radiusd_conf = format!(
            r#"# Throwaway radiusd.conf written by the test kit (tests/kit/src/radiusd.rs)
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {var}
sbindir = ${{exec_prefix}}/sbin
logdir = {root}/log
raddbdir = {raddb}
radacctdir = ${{logdir}}/radacct
name = freeradius
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}/mods-config
certdir = {certs}
cadir = ${{certdir}}
run_dir = {root}/run
db_dir = ${{raddbdir}}
libdir = {root}/lib
pidfile = ${{run_dir}}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {{
	destination = stdout
	colourise = no
	stripped_names = no
	auth = yes
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}}
proxy_requests = no
$INCLUDE clients.conf
thread pool {{
	start_servers = 2
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 4
	max_requests_per_server = 0
}}
modules {{
	$INCLUDE mods-enabled/
}}
instantiate {{
}}
policy {{
}}
$INCLUDE sites-enabled/
"#,
            var = self.localstatedir.display(),
            root = self.root.display(),
            raddb = self.raddb.display(),
            certs = self.certdir.display(),
        );
        write(&self.raddb.join("radiusd.conf"), &radiusd_conf);
        write(&self.raddb.join("clients.conf"), "client localhost {\n\tipaddr = 127.0.0.1\n\tsecret = testing123\n}\n");

        // mods-enabled/rust
        let mut rust = shipped("mods-available/rust");
        if !o.eap_failure_on_reject {
            rust = replace_once(
                &rust,
                "\n\teap_failure_on_reject = yes\n",
                "\n\teap_failure_on_reject = no\n",
                "mods-available/rust",
            );
        }
        if o.reload_interval != "1.0" {
            rust = replace_once(
                &rust,
                "\n\treload_interval = 1.0\n",
                &format!("\n\treload_interval = {}\n", o.reload_interval),
                "mods-available/rust",
            );
        }
        if !o.rust_options.is_empty() {
            // An option the shipped file sets is replaced, not set twice.
            let lines: Vec<&str> = rust
                .lines()
                .filter(|l| {
                    !o.rust_options
                        .iter()
                        .any(|(k, _)| l.strip_prefix('\t').is_some_and(|l| l.starts_with(&format!("{k} = "))))
                })
                .collect();
            rust = lines.join("\n") + "\n";
            let extra: String = o.rust_options.iter().map(|(k, v)| format!("\t{k} = \"{v}\"\n")).collect();
            rust = replace_once(
                &rust,
                "\n\teap_failure_on_reject = ",
                &format!("\n{extra}\teap_failure_on_reject = "),
                "mods-available/rust",
            );
        }
        let module = self.raddb.join("mods-enabled/rust");
        if o.rust_module {
            write(&module, &rust);
        } else {
            assert!(!o.post_auth && !o.virtual_server, "without the rust module nothing may call it");
            if module.exists() {
                std::fs::remove_file(&module).expect("rm mods-enabled/rust");
            }
        }

        // mods-enabled/eap-dane
        let mut eap = shipped("mods-available/eap-dane");
        if !o.virtual_server {
            eap = replace_once(&eap, "\t\tvirtual_server = \"check-eap-tls-dane\"\n", "", "mods-available/eap-dane");
        }
        if o.ca_file {
            eap = replace_once(&eap, "\t\tca_path = ${certdir}/dane-ca\n", "", "mods-available/eap-dane");
            eap = replace_once(
                &eap,
                "\t#\tca_file = ${certdir}/dane-ca.pem\n",
                "\t\tca_file = ${certdir}/dane-ca.pem\n",
                "mods-available/eap-dane",
            );
        }
        if let Some(v) = o.tls_max_version {
            let line = eap.lines().find(|l| l.trim_start().starts_with("tls_max_version =")).expect("tls_max_version");
            eap = replace_once(&eap, line, &format!("\t\ttls_max_version = \"{v}\""), "mods-available/eap-dane");
        }
        if let Some(cache) = &o.session_cache {
            let start = eap.find("\t\tcache {\n").expect("cache section");
            let end = start + eap[start..].find("\t\t}\n").expect("end of cache section") + 4;
            eap.replace_range(start..end, cache);
        }
        for (from, to) in &o.eap_edits {
            eap = replace_once(&eap, from, to, "mods-available/eap-dane");
        }
        write(&self.raddb.join("mods-enabled/eap-dane"), &eap);
        for (name, text) in &o.extra_modules {
            write(&self.raddb.join("mods-enabled").join(name), text);
        }

        // sites-enabled/
        let mut site = shipped("sites-available/dane-eap-tls");
        site = replace_once(&site, "\t\tipaddr = *\n", "\t\tipaddr = 127.0.0.1\n", "sites-available/dane-eap-tls");
        site = replace_once(
            &site,
            "\t\tport = 0\n",
            &format!("\t\tport = {}\n", self.port),
            "sites-available/dane-eap-tls",
        );
        // The post-auth call is the `rust` line right before the REJECT section's comment.
        let post_auth = "\n\t\trust\n\n\t\t#\n\t\t#  Runs when the request is being rejected";
        let call = match (&o.post_auth_unlang, o.post_auth) {
            (_, false) => String::new(),
            (Some(unlang), true) => format!("\n{unlang}\n"),
            (None, true) => "\n\t\trust\n".into(),
        };
        site = replace_once(
            &site,
            post_auth,
            &format!("{call}\n\t\t#\n\t\t#  Runs when the request is being rejected"),
            "sites-available/dane-eap-tls",
        );
        for (from, to) in &o.site_edits {
            site = replace_once(&site, from, to, "sites-available/dane-eap-tls");
        }
        write(&self.raddb.join("sites-enabled/dane-eap-tls"), &site);
        for (name, text) in &o.extra_sites {
            write(&self.raddb.join("sites-enabled").join(name), text);
        }
        let vs = self.raddb.join("sites-enabled/check-eap-tls-dane");
        if o.virtual_server {
            write(&vs, &shipped("sites-available/check-eap-tls-dane"));
        } else if vs.exists() {
            std::fs::remove_file(&vs).expect("rm site");
        }
    }

    /// A device certificate from org A ("Cars Device CA").
    pub fn cars_device(&self, stem: &str, name: &str) -> Device {
        self.pki.device(&self.pki.cars_ca, stem, name)
    }

    /// A device certificate from org B ("Meters Device CA").
    pub fn meters_device(&self, stem: &str, name: &str) -> Device {
        self.pki.device(&self.pki.meters_ca, stem, name)
    }

    /// Writes the trust map at the shipped path with `rlm-rust map`.
    pub fn write_map(&self, policy: &str, certificates: &[&Path]) -> String {
        self.write_map_to(&self.trust_map, policy, certificates)
    }

    /// Writes a trust map at `out` with `rlm-rust map`.
    pub fn write_map_to(&self, out: &Path, policy: &str, certificates: &[&Path]) -> String {
        super::trustmap::map(out, policy, certificates)
    }

    /// `device` claiming its own name on `ssid`, verifying radiusd against the server CA.
    pub fn supplicant(&self, device: &Device, ssid: &str) -> Supplicant {
        Supplicant::new(device, &self.pki.server_ca.pem, ssid)
    }

    /// Runs eapol_test against this lab's radiusd.
    pub fn eapol(&self, s: &Supplicant) -> EapolResult {
        eapol::run(&self.work, self.port, s)
    }

    /// `freeradius -C` on this raddb (loads and instantiates every module, then exits).
    /// Returns (exit success, output).
    pub fn config_check(&self) -> (bool, String) {
        let log = self.root.join("config-check.log");
        let mut child = self.spawn(Command::new("freeradius"), &["-C", "-X", "-l", "stdout", "-d"], &log);
        let status = super::wait_bounded(&mut child, Duration::from_secs(30));
        (status.is_some_and(|s| s.success()), super::read_lossy(&log))
    }

    /// Spawns `cmd` (freeradius, or a wrapper running it) with `flags` and this lab's raddb,
    /// stdout and stderr into `log`, and no inherited module search path.
    fn spawn(&self, mut cmd: Command, flags: &[&str], log: &Path) -> Child {
        let f = File::create(log).expect("log");
        cmd.args(flags)
            .arg(&self.raddb)
            .env_remove("FR_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn freeradius")
    }

    /// Starts `freeradius -X` and waits (bounded) for "Ready to process requests".
    /// A port taken meanwhile by someone else is retried with a new port.
    pub fn start(&mut self) -> Radiusd {
        self.start_wrapped(&[])
    }

    /// Like [`Lab::start`], with `freeradius` run under `wrapper` (e.g. valgrind and its
    /// options), which may make start-up much slower.
    pub fn start_wrapped(&mut self, wrapper: &[&str]) -> Radiusd {
        let limit = if wrapper.is_empty() { Duration::from_secs(30) } else { Duration::from_secs(180) };
        let mut last = String::new();
        for attempt in 0..4 {
            if attempt > 0 {
                self.port = free_udp_port();
                self.render();
            }
            let log = self.root.join(format!("radiusd-{attempt}.log"));
            let flags: &[&str] =
                if self.opts.debug { &["-X", "-f", "-l", "stdout", "-d"] } else { &["-f", "-l", "stdout", "-d"] };
            let cmd = match wrapper.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg("freeradius");
                    c
                }
                None => Command::new("freeradius"),
            };
            let child = self.spawn(cmd, flags, &log);
            let mut rd = Radiusd { child: Some(child), log };
            let ready = super::poll_until(limit, || rd.log().contains("Ready to process requests") || rd.exited());
            let text = rd.log();
            if ready && text.contains("Ready to process requests") {
                return rd;
            }
            rd.stop();
            if !(text.contains("Address already in use") || text.contains("Failed binding")) {
                panic!(
                    "freeradius did not become ready{}:\n{text}",
                    if ready { " (it exited)".to_string() } else { format!(" within {limit:?}") }
                );
            }
            last = text;
        }
        panic!("freeradius could not bind a port after 4 attempts:\n{last}");
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A running `freeradius -X`. Killed (SIGTERM, then SIGKILL) on drop.
pub struct Radiusd {
    child: Option<Child>,
    log: PathBuf,
}

impl Radiusd {
    /// The server's process id (for RSS measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        super::read_lossy(&self.log)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A position in the log; pass it to [`Radiusd::log_since`].
    pub fn mark(&self) -> usize {
        std::fs::metadata(&self.log).map(|m| m.len() as usize).unwrap_or(0)
    }

    /// The log written after `mark`.
    pub fn log_since(&self, mark: usize) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Waits (bounded) until the log after `mark` contains `needle`; returns that log.
    /// Panics with the log when it does not appear.
    pub fn wait_for(&self, mark: usize, needle: &str, limit: Duration) -> String {
        let mut text = String::new();
        let found = super::poll_until(limit, || {
            text = self.log_since(mark);
            text.contains(needle)
        });
        assert!(found, "radiusd log did not show {needle:?} within {limit:?}:\n{text}");
        text
    }

    /// Waits for the reply of the authentication that started after `mark` to be logged
    /// ("Sent Access-Accept" or "Sent Access-Reject"), and returns the log since `mark`.
    pub fn wait_reply_logged(&self, mark: usize) -> String {
        let mut text = String::new();
        let found = super::poll_until(Duration::from_secs(10), || {
            text = self.log_since(mark);
            text.contains("Sent Access-Accept") || text.contains("Sent Access-Reject")
        });
        assert!(found, "no final reply in the radiusd log:\n{text}");
        // The reply's attribute lines follow the "Sent" line; give them a moment.
        std::thread::sleep(Duration::from_millis(100));
        self.log_since(mark)
    }

    /// Sends SIGHUP (radiusd re-instantiates HUP-safe modules).
    pub fn hup(&self) {
        if let Some(c) = self.child.as_ref() {
            // SAFETY: plain kill(2) on the pid of our own child, not yet reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGHUP);
            }
        }
    }

    /// Whether radiusd is still running.
    pub fn running(&mut self) -> bool {
        !self.exited()
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Stops radiusd with SIGTERM and waits up to `limit` for it to exit; returns its exit
    /// code (None when it had to be killed or died of a signal).
    pub fn stop_waiting(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        super::terminate(&mut c, limit).and_then(|s| s.code())
    }

    /// Stops radiusd: SIGTERM, up to 5 s to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::terminate(&mut c, Duration::from_secs(5));
        }
    }
}

impl Drop for Radiusd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The attribute lines of the first "Sent <packet>" block in `log` (radiusd -X prints
/// `(N) Sent Access-Accept Id ...` followed by `(N)   Attr = value` lines).
pub fn sent_block(log: &str, packet: &str) -> Option<String> {
    let needle = format!("Sent {packet} ");
    let mut lines = log.lines();
    let head = lines.by_ref().find(|l| l.contains(&needle))?;
    let prefix = head.split(' ').next().unwrap_or("").to_string(); // "(N)"
    let mut block = vec![head.to_string()];
    for l in lines {
        let indented = l.strip_prefix(&prefix).is_some_and(|rest| rest.starts_with("   "));
        if !indented {
            break;
        }
        block.push(l.to_string());
    }
    Some(block.join("\n"))
}
