//! The status view for a person: renders the `/status` document (or the one built from a
//! persisted trust map) as a summary and a per-name table.

use std::fmt::Write as _;

use serde_json::Value;

/// "5 s ago", "3 min ago", "2 h ago", "4 d ago"; "-" for 0 (never).
pub fn ago(then: i64, now: i64) -> String {
    if then <= 0 {
        return "-".into();
    }
    let secs = now.saturating_sub(then).max(0);
    span(secs as u64) + " ago"
}

fn span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn counts(map: &Value) -> String {
    let Some(obj) = map.as_object() else { return "-".into() };
    let parts: Vec<String> = obj
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k} {}", n.as_u64().unwrap_or(0)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The whole view.
pub fn render(doc: &Value, now: i64) -> String {
    let mut out = String::new();
    let who = doc["instance"].as_str().map(|i| format!("instance {i}")).unwrap_or_else(|| {
        format!("{} (persisted; the running module's view needs --url)", doc["source"].as_str().unwrap_or("?"))
    });
    match doc.get("trust_map").filter(|m| !m.is_null()) {
        Some(m) => {
            let _ = writeln!(
                out,
                "{who}: trust map generation {} (built {}): {} names, {} certificate associations",
                m["generation"],
                ago(m["generated_at"].as_i64().unwrap_or(0), now),
                m["names"],
                m["associations"]
            );
        }
        None => {
            let _ = writeln!(out, "{who}: no trust map loaded");
        }
    }
    if let Some(stages) = doc["decisions"].as_object() {
        for (stage, d) in stages {
            let _ = writeln!(out, "decisions at {stage}: {} accepted; rejected: {}", d["accept"], counts(&d["reject"]));
        }
    }
    if let Some(s) = doc.get("sync") {
        let round = match s["last_round"].as_object() {
            Some(r) => format!(
                "last round ended {}, took {:.1} s",
                ago(r["ended_at"].as_i64().unwrap_or(0), now),
                r["seconds"].as_f64().unwrap_or(0.0)
            ),
            None => "no round completed yet".into(),
        };
        let _ = writeln!(
            out,
            "sync: policy {}: {round}; {} lookups in flight",
            s["policy"].as_str().unwrap_or("?"),
            s["in_flight"]
        );
        let _ = writeln!(out, "names: {}", counts(&s["names"]));
        let _ = writeln!(
            out,
            "DNS answers: {}; CA fetches {} ({} failed); CA set {}",
            counts(&s["dns_answers"]),
            s["ca_fetches"],
            s["ca_fetch_failures"],
            s["ca_set_size"]
        );
    }
    let rows = doc["names"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if rows.is_empty() {
        return out;
    }
    let width = rows.iter().filter_map(|r| r["name"].as_str()).map(str::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<17}  {:>4}  {:>5}  {:<11}  {:<8}  LAST ERROR",
        "NAME", "STATE", "TLSA", "ASSOC", "CHANGED", "NEXT"
    );
    for r in rows {
        let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let num = |k: &str| r[k].as_u64().map_or("-".into(), |n| n.to_string());
        let next = r["next_refresh_in"].as_u64().map_or("-".into(), span);
        let _ = writeln!(
            out,
            "{:<width$}  {:<17}  {:>4}  {:>5}  {:<11}  {:<8}  {}",
            text("name"),
            text("state"),
            num("tlsa_records"),
            num("associations"),
            ago(r["changed_at"].as_i64().unwrap_or(0), now),
            next,
            text("error")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_says_them() {
        let now = 1_000_000;
        assert_eq!(ago(0, now), "-");
        assert_eq!(ago(now - 5, now), "5 s ago");
        assert_eq!(ago(now - 600, now), "10 min ago");
        assert_eq!(ago(now - 3 * 86_400, now), "3 d ago");
    }

    #[test]
    fn a_live_document_renders_summary_and_rows() {
        let doc = serde_json::json!({
            "instance": "rust", "now": 1000,
            "trust_map": {"generation": 7, "generated_at": 990, "names": 2, "associations": 2},
            "decisions": {"post_auth": {"accept": 3, "reject": {"discovery_pending": 1}}},
            "sync": {"policy": "/p", "names": {"published": 1, "failing": 1}, "last_round": {"ended_at": 995, "seconds": 0.5},
                     "dns_answers": {"secure": 4}, "ca_fetches": 1, "ca_fetch_failures": 0, "ca_set_size": 1, "in_flight": 0},
            "names": [{"name": "car1.example.net", "state": "failing", "tlsa_records": 0, "associations": 0,
                       "changed_at": 900, "next_refresh_in": 30, "error": "timeout"}],
        });
        let text = render(&doc, 1000);
        assert!(text.contains("instance rust: trust map generation 7 (built 10 s ago): 2 names"), "{text}");
        assert!(text.contains("decisions at post_auth: 3 accepted; rejected: discovery_pending 1"), "{text}");
        assert!(text.contains("last round ended 5 s ago, took 0.5 s"), "{text}");
        assert!(text.contains("names: failing 1, published 1"), "{text}");
        let row = text.lines().find(|l| l.starts_with("car1.example.net")).expect("row");
        assert!(row.contains("failing") && row.contains("30 s") && row.ends_with("timeout"), "{row}");
    }
}
