//! The TLS verification hook in a real radiusd: it is installed on the eap module's TLS
//! context or radiusd does not start, a request without what it captures is rejected with
//! its own reason, several instances share one context, and the hook never outlives the
//! module (shutdown and HUP under valgrind). Authentications run under TLS 1.2 and TLS 1.3.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::eapol::for_each_tls_version;
use testkit::pki::CAR54;
use testkit::radiusd::{free_udp_port, Lab, Options};
use testkit::skip;
use testkit::trustmap::line_policy;

const CARS_WIFI: &str = "Cars-WiFi";

/// `freeradius -C` with `opts`; asserts it refuses to start and that the error line names
/// every word of `names` (the option, the value, what was missing).
fn assert_refused(opts: Options, names: &[&str]) {
    let lab = Lab::new(opts);
    let (ok, out) = lab.config_check();
    assert!(!ok, "radiusd started although the hook cannot be installed:\n{out}");
    let line = out.lines().find(|l| l.contains("rlm_rust:") && names.iter().all(|n| l.contains(n)));
    assert!(line.is_some(), "no error line naming {names:?}:\n{out}");
    assert!(out.contains("Instantiation failed for module \"rust\""), "{out}");
}

fn with_rust_options(options: &[(&str, &str)]) -> Options {
    Options {
        rust_options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Options::default()
    }
}

#[test]
fn an_unknown_eap_instance_stops_radiusd() {
    if skip() {
        return;
    }
    assert_refused(with_rust_options(&[("eap_instance", "eap_nowhere")]), &["eap_instance", "eap_nowhere"]);
}

#[test]
fn an_unknown_tls_config_stops_radiusd() {
    if skip() {
        return;
    }
    assert_refused(with_rust_options(&[("tls_config", "tls-elsewhere")]), &["tls_config", "tls-elsewhere"]);
}

#[test]
fn a_tls_config_no_eap_method_uses_has_no_context_and_stops_radiusd() {
    if skip() {
        return;
    }
    // A second tls-config section, parsed by nobody: FreeRADIUS never made a context for it.
    let spare = "\ttls-config tls-spare {\n\t\tprivate_key_file = ${certdir}/server.key\n\t\tcertificate_file = ${certdir}/server.pem\n\t}\n\n\ttls-config tls-common {";
    let opts = Options {
        eap_edits: vec![("\ttls-config tls-common {".into(), spare.into())],
        ..with_rust_options(&[("tls_config", "tls-common tls-spare")])
    };
    assert_refused(opts, &["tls_config", "tls-spare", "no TLS context"]);
}

#[test]
fn realm_dir_contexts_cannot_be_covered_and_stop_radiusd() {
    if skip() {
        return;
    }
    let mut lab_opts = Options::default();
    // The directory must exist for FreeRADIUS itself to get as far as our instantiate.
    let realm_dir = std::env::temp_dir().join(format!("rlm_rust-realms-{}", std::process::id()));
    std::fs::create_dir_all(&realm_dir).unwrap();
    lab_opts.eap_edits = vec![(
        "\t\tca_path_reload_interval = 3600\n".into(),
        format!("\t\tca_path_reload_interval = 3600\n\t\trealm_dir = {}\n", realm_dir.display()),
    )];
    assert_refused(lab_opts, &["tls_config", "realm_dir"]);
    let _ = std::fs::remove_dir_all(&realm_dir);
}

/// A plain RADIUS request (no EAP, so no TLS handshake and nothing captured) that a site
/// accepts and then hands to the module in post-auth: rejected with its own reason.
#[test]
fn a_request_without_a_captured_certificate_is_rejected_with_its_own_reason() {
    if skip() {
        return;
    }
    let port = free_udp_port();
    let site = format!(
        "server plain {{\n\tlisten {{\n\t\ttype = auth\n\t\tipaddr = 127.0.0.1\n\t\tport = {port}\n\t}}\n\
         \tauthorize {{\n\t\tupdate control {{\n\t\t\t&Auth-Type := Accept\n\t\t}}\n\t}}\n\
         \tauthenticate {{\n\t}}\n\tpost-auth {{\n\t\trust\n\t}}\n}}\n"
    );
    let mut lab = Lab::new(Options { extra_sites: vec![("plain".into(), site)], ..Options::default() });
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.cert]);
    let rd = lab.start();
    let mark = rd.mark();
    let request = format!("User-Name = \"{CAR54}\"\nCalled-Station-Id = \"00-00-00-00-00-01:{CARS_WIFI}\"\n");
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "5", &format!("127.0.0.1:{port}"), "auth", "testing123"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient (package freeradius-utils)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), request.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Received Access-Reject"), "radclient did not get a reject:\n{text}");
    let log = rd.wait_for(mark, "reason=no certificate captured from the TLS handshake", Duration::from_secs(5));
    assert!(
        log.contains(&format!(
            "rlm_rust[rust]: reject name={CAR54} ssid={CARS_WIFI} reason=no certificate captured from the TLS handshake cert=-"
        )),
        "{log}"
    );
}

/// Two instances on one eap module: one hook on its context, removed when the last
/// instance goes, at shutdown.
#[test]
fn instances_share_the_hook_and_shutdown_removes_it() {
    if skip() {
        return;
    }
    let guests = "rust guests {\n\ttrust_map = ${localstatedir}/lib/rlm_rust/guests.json\n}\n";
    let mut lab =
        Lab::new(Options { extra_modules: vec![("rust-guests".into(), guests.into())], ..Options::default() });
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.cert]);
    let mut rd = lab.start();
    for_each_tls_version(|_| lab.eapol(&lab.supplicant(&car54, CARS_WIFI)).assert_accepted());
    rd.stop();
    let log = rd.log();
    assert_eq!(log.matches("verification hook installed on eap_dane/tls-common").count(), 1, "{log}");
    assert_eq!(log.matches("verification hook removed from eap_dane/tls-common").count(), 1, "{log}");
    // Removed on the shutdown path, after the server stopped serving.
    let removed = log.find("verification hook removed").unwrap();
    assert!(log[..removed].contains("Exiting normally"), "{log}");
}

/// radiusd under valgrind: a handshake through the hook, a HUP that re-reads the module
/// configuration, and a clean shutdown (which frees the eap module's TLS context and
/// unloads our object) must leave no invalid access and no callback into unloaded code.
#[test]
fn the_hook_never_outlives_the_module_under_valgrind() {
    if skip() {
        return;
    }
    if !testkit::have_program("valgrind") {
        panic!("valgrind not on PATH (scripts/setup.sh installs it)");
    }
    let mut lab = Lab::new(Options { debug: true, ..Options::default() });
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.cert]);
    let vg_log = lab.root.join("valgrind.log");
    let mut rd = lab.start_wrapped(&[
        "valgrind",
        "--error-exitcode=99",
        "--trace-children=no",
        "--num-callers=30",
        &format!("--log-file={}", vg_log.display()),
    ]);
    let supplicant = || {
        let mut s = lab.supplicant(&car54, CARS_WIFI);
        s.timeout_secs = 60;
        s
    };
    for_each_tls_version(|_| lab.eapol(&supplicant()).assert_accepted());

    // HUP after touching the module file: radiusd re-reads its configuration.
    std::thread::sleep(Duration::from_millis(1100));
    let module_file = lab.raddb.join("mods-enabled/rust");
    let mut text = std::fs::read_to_string(&module_file).unwrap();
    text.push_str("# touched for HUP\n");
    std::fs::write(&module_file, text).unwrap();
    let mark = rd.mark();
    rd.hup();
    rd.wait_for(mark, "Ready to process requests", Duration::from_secs(60));
    for_each_tls_version(|_| lab.eapol(&supplicant()).assert_accepted());

    let status = rd.stop_waiting(Duration::from_secs(120));
    let report = testkit::read_lossy(&vg_log);
    let log = rd.log();
    assert!(log.contains("verification hook removed from eap_dane/tls-common"), "{log}");
    for bad in ["Invalid read", "Invalid write", "Jump to the invalid address", "Process terminating", "Invalid free"] {
        assert!(!report.contains(bad), "valgrind: {bad}:\n{report}");
    }
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "valgrind found errors:\n{report}");
    assert_eq!(status, Some(0), "radiusd under valgrind did not exit cleanly:\n{report}");
}
