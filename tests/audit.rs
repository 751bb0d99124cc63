//! The audit trail: an event per state-changing action in `.tenantctl/audit.jsonl`,
//! `tenantctl log <id>` snapshotted. Offline: the actions here fail before reaching AWS
//! (their failures are events too); the lifecycle test reads the events of a real add and
//! remove.

use serde_json::Value;

use crate::support::{Workdir, snapshot_text};

#[test]
fn failed_actions_are_events_and_log_shows_them_in_every_format() {
    let mut ws = Workdir::offline();
    ws.set_env("TENANTCTL_ACTOR", "auditor");
    // Refused before anything happens: no event (the id is not a tenant's).
    ws.tenantctl(&["add", "Bad_Id", "--tier", "starter"])
        .assert_code(1);
    // Attempted and failed: events with the error tenantctl printed.
    ws.tenantctl(&["add", "acme", "--tier", "starter"])
        .assert_code(1);
    ws.tenantctl(&["export", "acme"]).assert_code(1);
    // Reads leave no event.
    ws.tenantctl(&["cost"]).assert_code(0);
    ws.tenantctl(&["list"]).assert_code(0);

    let text = std::fs::read_to_string(ws.path().join(".tenantctl/audit.jsonl")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["action"], "add");
    assert_eq!(events[0]["who"], "auditor");
    assert_eq!(events[0]["result"], "failed");
    assert_eq!(events[0]["exit_code"], 1);
    assert!(
        events[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown tenant `acme`")
    );

    for format in ["human", "json", "markdown"] {
        let r = ws.tenantctl(&["log", "acme", "--output", format]);
        r.assert_code(0);
        insta::assert_snapshot!(format!("log_{format}"), snapshot_text(&r, &[]));
    }
    let r = ws.tenantctl(&["log", "nobody"]);
    r.assert_code(0);
    assert_eq!(r.stdout(), "0 event(s) for tenant `nobody`\n");
    let r = ws.tenantctl(&["log", "Nobody"]);
    r.assert_code(1);
    assert!(
        r.stderr().starts_with("error: invalid tenant id `Nobody`"),
        "{}",
        r.dump()
    );
}
