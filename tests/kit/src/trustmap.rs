//! Trust maps for the harness, written by the real operator CLI (`rlm-rust map`), the same
//! way a static deployment writes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The `rlm-rust` binary cargo built for this test run: cargo tells tests and benches its
/// path (`CARGO_BIN_EXE_rlm-rust`, set while they run); otherwise (the demo example) it is
/// beside the directory of the running executable (`target/<profile>/`).
pub fn cli() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_rlm-rust") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|d| d.parent()).map(|profile| profile.join("rlm-rust")).expect("target dir")
}

/// One role of a JSON policy.
pub struct Role<'a> {
    pub ssid: &'a str,
    pub members: &'a [&'a str],
    /// Reply attributes on accept, e.g. `("Tunnel-Private-Group-Id", "10")`.
    pub reply: &'a [(&'a str, &'a str)],
}

/// A JSON policy text (`{"name": ..., "roles": [...]}`).
pub fn json_policy(name: &str, roles: &[Role<'_>]) -> String {
    let roles: Vec<serde_json::Value> = roles
        .iter()
        .map(|r| {
            let reply: serde_json::Map<String, serde_json::Value> =
                r.reply.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
            serde_json::json!({ "name": r.ssid, "members": r.members, "reply": reply })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "name": name, "roles": roles })).expect("policy json")
}

/// A line-format policy text (`SSID|name` per line).
pub fn line_policy(entries: &[(&str, &str)]) -> String {
    let mut s = String::from("# test policy: SSID|device-name\n");
    for (ssid, name) in entries {
        s.push_str(&format!("{ssid}|{name}\n"));
    }
    s
}

static N: AtomicUsize = AtomicUsize::new(0);

/// Writes `policy` next to `out` and runs `rlm-rust map --policy <p> --out <out> certs..`.
/// The CLI writes `out` atomically (temp name + rename), like the sync does. Panics (with
/// the CLI's output) when it fails.
pub fn map(out: &Path, policy: &str, certificates: &[&Path]) -> String {
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = out.parent().expect("trust map dir");
    std::fs::create_dir_all(dir).expect("trust map dir");
    let policy_path = dir.join(format!("policy-{n}.txt"));
    std::fs::write(&policy_path, policy).expect("write policy");
    let mut cmd = Command::new(cli());
    cmd.arg("map").arg("--policy").arg(&policy_path).arg("--out").arg(out);
    cmd.args(certificates);
    let (ok, output) = run(cmd);
    assert!(ok, "rlm-rust map failed:\n{output}");
    output
}

/// Runs `rlm-rust explain` with trust anchors `cas`; returns (exit ok, output).
pub fn explain(trust_map: &Path, name: &str, ssid: &str, cas: &[&Path], chain: &Path) -> (bool, String) {
    let mut cmd = Command::new(cli());
    cmd.arg("explain").arg("--trust-map").arg(trust_map).args(["--name", name, "--ssid", ssid]);
    for ca in cas {
        cmd.arg("--ca").arg(ca);
    }
    cmd.arg(chain);
    run(cmd)
}

fn run(mut cmd: Command) -> (bool, String) {
    let tmp = tempfile::NamedTempFile::new().expect("temp");
    let f = tmp.reopen().expect("reopen");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup"))
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", cli().display()));
    let status = super::wait_bounded(&mut child, Duration::from_secs(30));
    let output = super::read_lossy(tmp.path());
    (status.is_some_and(|s| s.success()), output)
}

/// Replaces `path` atomically with `bytes` (write a temp file in the same dir, rename).
pub fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-replace");
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}
