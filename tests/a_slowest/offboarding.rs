//! `remove` end to end on moto + PostgreSQL + Terraform: the safe order (export, destroy,
//! then data), a failed export and a destroy that found nothing both stop before any data
//! is deleted, an interrupted remove resumes, the tenant's S3 prefix is archived, and an
//! enterprise tenant removed with `--shred` keeps an archived final snapshot while its key
//! goes, and its id can be added again inside the secret recovery window.

use std::process::Stdio;

use serde_json::Value;

use crate::support::postgres::cluster;
use crate::support::{Run, Workdir, e2e_database, start_paused, unique};

/// A data bucket of the test's own: the platform's denies every request without TLS (its
/// `DenyInsecureTransport` policy), and moto is reached over plain HTTP.
fn own_data_bucket(ws: &Workdir, rt: &tokio::runtime::Runtime) -> String {
    let bucket = unique("ob-data");
    rt.block_on(async {
        let conf = crate::support::moto::sdk_config().await;
        let s3 = tenantctl::aws::AwsClients::from_sdk_config(&conf).s3;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
    });
    ws.edit_config(
        "data_bucket = \"tenantctl-local-data\"",
        &format!("data_bucket = \"{bucket}\""),
    );
    bucket
}

fn append_config(ws: &Workdir, text: &str) {
    let p = ws.path().join("tenantctl.toml");
    let mut cfg = std::fs::read_to_string(&p).unwrap();
    cfg.push_str(text);
    std::fs::write(&p, cfg).unwrap();
}

fn role_exists(ws: &Workdir, id: &str) -> bool {
    ws.aws(&["iam", "get-role", "--role-name", &format!("tenant-{id}")])
        .is_ok()
}

fn keys_under(rt: &tokio::runtime::Runtime, bucket: &str, prefix: &str) -> Vec<String> {
    rt.block_on(async {
        let conf = crate::support::moto::sdk_config().await;
        let s3 = tenantctl::aws::AwsClients::from_sdk_config(&conf).s3;
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

/// Starts `args` paused at `point` (`TENANTCTL_PAUSE_AT`), waits for the pause and kills
/// the process outright, as a crash would.
fn kill_at(ws: &Workdir, args: &[&str], point: &str) -> String {
    let (mut child, reader) = start_paused(ws, args, point, Stdio::null());
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

fn assert_stderr(run: &Run, needle: &str) {
    assert!(
        run.stderr().contains(needle),
        "expected `{needle}`\n{}",
        run.dump()
    );
}

/// A starter tenant with rows and objects: a failed export, then a destroy that finds no
/// state, each stop `remove` with every row and object in place; a remove killed after
/// the destroy resumes; the objects end up in the archive, not the live prefix; `list`
/// shows the removed tenant's export.
#[test]
fn remove_exports_first_deletes_data_only_after_a_real_destroy_and_resumes() {
    let ws = Workdir::new().with_database();
    let id = unique("ob-st");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = own_data_bucket(&ws, &rt);
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);
    let admin = rt.block_on(cluster().admin(e2e_database()));
    rt.block_on(admin.batch_execute(&format!(
        "INSERT INTO pool.accounts (tenant_id, email, name)
         SELECT '{id}', 'u' || g || '@x', 'n' || g FROM generate_series(1, 20) g;"
    )))
    .unwrap();
    let rows = || -> i64 {
        rt.block_on(admin.query_one(
            "SELECT count(*) FROM pool.accounts WHERE tenant_id = $1",
            &[&id],
        ))
        .unwrap()
        .get(0)
    };
    let s3 = rt.block_on(async {
        let conf = crate::support::moto::sdk_config().await;
        tenantctl::aws::AwsClients::from_sdk_config(&conf).s3
    });
    for key in ["a.txt", "dir/b.txt"] {
        rt.block_on(
            s3.put_object()
                .bucket(&bucket)
                .key(format!("tenants/{id}/{key}"))
                .body(b"customer file".to_vec().into())
                .send(),
        )
        .unwrap();
    }
    let live = format!("tenants/{id}/");
    let untouched = |why: &str| {
        assert_eq!(rows(), 20, "{why}: rows deleted");
        assert_eq!(
            keys_under(&rt, &bucket, &live).len(),
            2,
            "{why}: objects deleted"
        );
        assert!(role_exists(&ws, &id), "{why}: resources destroyed");
        assert!(ws.path().join(format!("tenants/{id}.toml")).exists());
    };

    // A failed export (an archive bucket that does not exist) stops the removal first.
    let cfg_path = ws.path().join("tenantctl.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    append_config(&ws, "\n[archive]\nbucket = \"no-such-archive-bucket\"\n");
    let failed = ws.tenantctl(&["remove", &id, "--yes"]);
    failed.assert_code(1);
    assert_stderr(&failed, "nothing was removed");
    assert_stderr(&failed, "--no-export");
    untouched("failed export");
    std::fs::write(&cfg_path, &cfg).unwrap();

    // The state is not where tenantctl looks: the destroy finds nothing, no data goes.
    let state = ws
        .path()
        .join(format!(".tenantctl/roots/{id}/terraform.tfstate"));
    let aside = ws.path().join("aside.tfstate");
    std::fs::rename(&state, &aside).unwrap();
    let nothing = ws.tenantctl(&["remove", &id, "--yes"]);
    nothing.assert_code(1);
    assert_stderr(&nothing, "no database data and no objects were deleted");
    assert_stderr(&nothing, &format!("IAM role `tenant-{id}` exists"));
    untouched("empty state");
    std::fs::rename(&aside, &state).unwrap();

    // Killed after the destroy: the rerun continues there.
    let paused = kill_at(&ws, &["remove", &id, "--yes"], "destroyed");
    assert!(paused.contains("resuming the removal"), "{paused}");
    assert!(!role_exists(&ws, &id), "the destroy ran: {paused}");
    assert_eq!(rows(), 20, "data deleted before the remove was done");
    let listed = ws.tenantctl(&["list", "--output", "json"]);
    listed.assert_code(0);
    assert!(listed.stdout().contains("removing"), "{}", listed.dump());

    let done = ws.tenantctl(&["remove", &id, "--yes"]);
    done.assert_code(0);
    assert_stderr(&done, "resuming the removal");
    assert_stderr(&done, "2 objects");
    assert_eq!(rows(), 0, "{}", done.dump());
    assert!(
        keys_under(&rt, &bucket, &live).is_empty(),
        "objects left in the live prefix"
    );
    let archived = keys_under(&rt, &bucket, &format!("archive/tenants/{id}/objects-"));
    assert_eq!(archived.len(), 2, "{archived:?}\n{}", done.dump());
    assert!(
        archived.iter().any(|k| k.ends_with("/dir/b.txt")),
        "{archived:?}"
    );
    assert!(!ws.path().join(format!("tenants/{id}.toml")).exists());

    // `list` shows what is left of the removed tenant: its export.
    let listed = ws.tenantctl(&["list", "--output", "json"]);
    listed.assert_code(0);
    let list: Value = serde_json::from_str(&listed.stdout()).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("removed tenant not listed\n{}", listed.dump()));
    assert_eq!(row["state"], "removed");
    let export = &row["exports"][0];
    assert!(
        export["location"]
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("s3://{bucket}/archive/tenants/{id}/"))),
        "{row}"
    );
    assert!(export["bytes"].as_u64().unwrap() > 0, "{row}");
    assert!(export["created_at"].is_string(), "{row}");
    let human = ws.tenantctl(&["list"]);
    assert!(
        human.stdout().contains(&format!("{id}: removed; export")),
        "{}",
        human.dump()
    );
}

/// Enterprise, with a final snapshot and a 7-day secret recovery window: `remove
/// --shred` leaves the final snapshot copied under the archive key with a unique name
/// and the tenant key pending deletion; the same id is added again (its secrets
/// restored and adopted) and removed again, with a second, distinct snapshot.
#[test]
fn enterprise_remove_shred_keeps_an_archived_snapshot_and_the_id_comes_back() {
    let ws = Workdir::new().with_database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    own_data_bucket(&ws, &rt);
    ws.edit_config("skip_final_snapshot = true", "skip_final_snapshot = false");
    ws.edit_config(
        "secret_recovery_window_days = 0",
        "secret_recovery_window_days = 7",
    );
    let archive_key = ws
        .aws(&["kms", "create-key", "--description", "platform archive"])
        .unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    append_config(
        &ws,
        &format!(
            "\n[archive]\nkms_key_id = \"{archive_key}\"\n\n[keys]\ndeletion_window_days = 7\n"
        ),
    );
    // An id that sorts after every other tenant's in the shared test zone: moto refuses
    // to CREATE a record identical to one created (and since deleted) before when any
    // record sorts after it (`get_record_sets` keeps everything from the name on), so a
    // second add of the same id fails there; AWS creates it.
    let id = unique("zz-ob-ent");
    let ident = format!("tenant-{id}");
    let snapshots = || -> Vec<Value> {
        ws.aws(&["rds", "describe-db-snapshots"]).unwrap()["DBSnapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                s["DBSnapshotIdentifier"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{ident}-")))
            })
            .collect()
    };
    let mut names = Vec::new();
    for round in 1..=2 {
        let add = ws.tenantctl(&["add", &id, "--tier", "enterprise"]);
        add.assert_code(0);
        if round == 2 {
            assert_stderr(&add, &format!("restoring secret `tenants/{id}/db`"));
        }
        let key = ws
            .aws(&[
                "rds",
                "describe-db-instances",
                "--db-instance-identifier",
                &ident,
            ])
            .unwrap()["DBInstances"][0]["KmsKeyId"]
            .as_str()
            .unwrap()
            .to_string();
        let removed = ws.tenantctl(&["remove", &id, "--yes", "--shred"]);
        removed.assert_code(0);
        assert_stderr(&removed, "scheduled for deletion in 7 days");
        assert_stderr(&removed, "unreadable");
        let state =
            ws.aws(&["kms", "describe-key", "--key-id", &key]).unwrap()["KeyMetadata"]["KeyState"]
                .clone();
        assert_eq!(
            state,
            "PendingDeletion",
            "round {round}: {}",
            removed.dump()
        );
        let snaps = snapshots();
        assert_eq!(
            snaps.len(),
            round,
            "one archived snapshot per removal: {snaps:?}"
        );
        for s in &snaps {
            assert_eq!(s["KmsKeyId"], archive_key.as_str(), "{s}");
            assert!(
                s["DBSnapshotIdentifier"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{ident}-archive-")),
                "{s}"
            );
        }
        names = snaps
            .iter()
            .map(|s| s["DBSnapshotIdentifier"].as_str().unwrap().to_string())
            .collect();
        let secret = ws
            .aws(&[
                "secretsmanager",
                "describe-secret",
                "--secret-id",
                &format!("tenants/{id}/db"),
            ])
            .unwrap();
        assert!(
            !secret["DeletedDate"].is_null(),
            "inside the recovery window: {secret}"
        );
    }
    names.dedup();
    assert_eq!(names.len(), 2, "{names:?}");
}
