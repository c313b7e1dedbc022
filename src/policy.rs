//! Which names may join which SSID, and what a member of each SSID's role gets on accept.
//!
//! Two input formats, both reported line by line so an operator can fix a file:
//! - lines: `SSID|device-name`, `#` comments and blank lines ignored;
//! - JSON: `{"name": ..., "roles": [{"name": SSID, "members": [...], "reply": {attr: value}}]}`.
//!
//! A bad entry is reported (file, line, reason) and skipped; the rest still loads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::name;

/// A reply attribute added on accept (e.g. `Tunnel-Private-Group-Id = 10` for a VLAN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyAttr {
    pub attribute: String,
    pub value: String,
}

/// The role bound to one SSID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub members: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply: Vec<ReplyAttr>,
}

/// SSID -> role. Ordered maps keep written snapshots stable and diffable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub ssids: BTreeMap<String, Role>,
}

/// One problem found in a policy source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// A loaded policy with the entries that were skipped.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub policy: Policy,
    pub diagnostics: Vec<Diagnostic>,
}

impl Policy {
    /// Every name allowed on at least one SSID.
    pub fn names(&self) -> BTreeSet<&str> {
        self.ssids.values().flat_map(|r| r.members.iter().map(String::as_str)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ssids.is_empty()
    }
}

/// Reads a policy file, choosing the format from its first non-blank character.
/// An unreadable file is an error (the caller keeps its previous policy).
pub fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read policy: {e}", path.display()))?;
    let file = path.display().to_string();
    if text.trim_start().starts_with('{') {
        parse_json(&text, &file)
    } else {
        Ok(parse_lines(&text, &file))
    }
}

/// SSIDs are 1..=32 octets (IEEE 802.11); we also refuse control characters and `|`.
fn check_ssid(ssid: &str) -> Result<(), String> {
    if ssid.is_empty() {
        return Err("empty SSID".into());
    }
    if ssid.len() > 32 {
        return Err(format!("SSID {ssid:?} is longer than 32 bytes"));
    }
    if ssid.chars().any(|c| c.is_control() || c == '|') {
        return Err(format!("SSID {ssid:?} contains a control character or '|'"));
    }
    Ok(())
}

/// Parses the `SSID|device-name` line format.
pub fn parse_lines(text: &str, file: &str) -> Loaded {
    let mut out = Loaded::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut bad = |reason: String| out.diagnostics.push(Diagnostic { file: file.into(), line: line_no, reason });
        let Some((ssid, name)) = line.split_once('|') else {
            bad(format!("expected SSID|device-name, got {line:?}"));
            continue;
        };
        if name.contains('|') {
            bad(format!("more than one '|' in {line:?}"));
            continue;
        }
        if let Err(e) = check_ssid(ssid) {
            bad(e);
            continue;
        }
        let name = match name::normalize(name.trim()) {
            Ok(n) => n,
            Err(e) => {
                bad(format!("device name {:?}: {e}", name.trim()));
                continue;
            }
        };
        let role = out.policy.ssids.entry(ssid.to_owned()).or_default();
        if !role.members.insert(name.clone()) {
            bad(format!("duplicate entry {name} on SSID {ssid} (ignored)"));
        }
    }
    out
}

#[derive(Deserialize)]
struct JsonPolicy {
    #[serde(default)]
    #[allow(dead_code)] // informational: the policy's own name
    name: Option<String>,
    roles: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRole {
    name: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    reply: BTreeMap<String, String>,
}

/// Parses the JSON format. Syntax errors fail the whole file (with line and column);
/// a bad role or member is reported and skipped.
pub fn parse_json(text: &str, file: &str) -> Result<Loaded, String> {
    let doc: JsonPolicy = serde_json::from_str(text)
        .map_err(|e| format!("{file}:{}:{}: invalid policy JSON: {e}", e.line(), e.column()))?;
    let mut out = Loaded::default();
    for (idx, value) in doc.roles.into_iter().enumerate() {
        // serde_json values carry no positions; name the entry by index and SSID instead.
        let mut bad = |reason: String| {
            out.diagnostics.push(Diagnostic { file: file.into(), line: 0, reason: format!("roles[{idx}]: {reason}") })
        };
        let role: JsonRole = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                bad(format!("{e}"));
                continue;
            }
        };
        if let Err(e) = check_ssid(&role.name) {
            bad(e);
            continue;
        }
        let entry = out.policy.ssids.entry(role.name.clone()).or_default();
        for (attribute, value) in role.reply {
            entry.reply.push(ReplyAttr { attribute, value });
        }
        for member in role.members {
            match name::normalize(member.trim()) {
                Ok(n) => {
                    if !entry.members.insert(n.clone()) {
                        bad(format!("duplicate member {n} (ignored)"));
                    }
                }
                Err(e) => bad(format!("member {member:?}: {e}")),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_loads_good_lines_and_reports_bad_ones() {
        let text = "# cars\nSSID1|car54._device.cars.example\n\nSSID1|CAR55._device.cars.example.\n\
                    SSID2|car54._device.cars.example\nSSID1|10.0.0.1\nSSID1|\nnopipe\nSSID1|a b.example\n\
                    SSID1|car54._device.cars.example\n|x.example\n";
        let l = parse_lines(text, "allowed.txt");
        assert_eq!(l.policy.ssids.len(), 2);
        let s1 = &l.policy.ssids["SSID1"].members;
        assert!(s1.contains("car54._device.cars.example"));
        assert!(s1.contains("car55._device.cars.example"));
        assert_eq!(s1.len(), 2);
        assert!(l.policy.ssids["SSID2"].members.contains("car54._device.cars.example"));
        let lines: Vec<usize> = l.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![6, 7, 8, 9, 10, 11]);
        assert!(l.diagnostics[0].reason.contains("IP address"), "{}", l.diagnostics[0]);
        assert!(l.diagnostics[1].reason.contains("empty name"));
        assert!(l.diagnostics[2].reason.contains("expected SSID|device-name"));
        assert!(l.diagnostics[3].reason.contains("' '"));
        assert!(l.diagnostics[4].reason.contains("duplicate"));
        assert!(l.diagnostics[5].reason.contains("empty SSID"));
        assert_eq!(l.diagnostics[0].to_string(), format!("allowed.txt:6: {}", l.diagnostics[0].reason));
    }

    #[test]
    fn json_format_with_reply_attributes() {
        let text = r#"{"name": "fleet", "roles": [
            {"name": "SSID1", "members": ["car54._device.cars.example", "bad name"],
             "reply": {"Tunnel-Private-Group-Id": "10"}},
            {"name": "", "members": ["x._device.cars.example"]},
            {"name": "SSID2", "members": ["meter1._device.meters.example"], "colour": "red"}
        ]}"#;
        let l = parse_json(text, "policy.json").unwrap();
        let r = &l.policy.ssids["SSID1"];
        assert_eq!(r.members.len(), 1);
        assert_eq!(r.reply, vec![ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: "10".into() }]);
        assert!(!l.policy.ssids.contains_key("SSID2"), "a role with unknown fields is skipped");
        assert_eq!(l.diagnostics.len(), 3, "{:?}", l.diagnostics);
        assert!(l.diagnostics[0].reason.starts_with("roles[0]: member \"bad name\""));
        assert!(l.diagnostics[1].reason.contains("empty SSID"));
        assert!(l.diagnostics[2].reason.contains("unknown field"));
    }

    #[test]
    fn json_syntax_error_names_file_and_position() {
        let e = parse_json("{\n \"roles\": [,]}", "p.json").unwrap_err();
        assert!(e.starts_with("p.json:2:"), "{e}");
    }
}
