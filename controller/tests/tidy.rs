//! Docs and code agree on the event log: every kind in `events::ALL` is in ARCHITECTURE.md's
//! table, and the engine names kinds only through the constants.

use conductor_controller::events;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn every_event_kind_is_documented_once_and_used_through_its_constant() {
    let doc = std::fs::read_to_string(format!("{ROOT}/ARCHITECTURE.md")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for kind in events::ALL {
        assert!(seen.insert(kind), "{kind} listed twice in events::ALL");
        assert!(doc.contains(&format!("`{kind}`")), "ARCHITECTURE.md does not list the event kind {kind}");
    }
    // No kind spelled as a string literal in the engine (a typo there would be a new kind).
    let prefixes =
        ["server.", "node.", "intent.", "gc.", "scaling.", "billing.", "account.", "controller.", "container."];
    for entry in std::fs::read_dir(format!("{ROOT}/controller/src/live")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            for p in prefixes {
                assert!(
                    !line.contains(&format!("\"{p}")),
                    "{}:{}: an event kind as a literal: {line}",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}
