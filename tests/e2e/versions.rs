//! Versions: deploying v2 while runs wait on v1 sends new runs to v2 at
//! once, lets the old ones finish on v1 (nothing restarts), and shows v1 as
//! drained; rolling back and retiring.

use cairn::store::{DEFAULT_TENANT, RunStatus};
use cairn_tests::{DAY, Host, component};

#[tokio::test]
async fn v2_takes_new_runs_while_100_runs_finish_on_v1_which_then_drains() {
    let host = Host::new().await;
    let v1 = host
        .runtime
        .deploy(DEFAULT_TENANT, component("greeter_v1"))
        .await
        .unwrap();
    let mut old = Vec::new();
    for i in 0..100 {
        let run = host
            .runtime
            .start_run(DEFAULT_TENANT, "greeter", &format!("old-{i}"), "{}")
            .await
            .unwrap();
        old.push(run.id);
    }
    host.drain().await;

    let v2 = host
        .runtime
        .deploy(DEFAULT_TENANT, component("greeter_v2"))
        .await
        .unwrap();
    assert_eq!(v2.journey_id, "greeter");
    assert_ne!(v1.version, v2.version);
    let new = host.start("greeter", "new-0", "{}").await;
    assert_eq!(new.version, v2.version);

    let versions = host
        .runtime
        .store
        .versions(DEFAULT_TENANT, "greeter")
        .await
        .unwrap();
    let (active, previous) = (&versions[0], &versions[1]);
    assert!(active.active && active.version == v2.version);
    assert_eq!(previous.runs.waiting, 100);
    assert_eq!(previous.drained_at, None, "v1 still holds waiting runs");

    host.advance(DAY).await;
    for id in &old {
        let run = host.run(*id).await;
        assert_eq!(run.status, RunStatus::Completed, "{:?}", run.failure);
        assert_eq!(run.version, v1.version);
    }
    let outbox = host
        .runtime
        .store
        .outbox(DEFAULT_TENANT, &Default::default())
        .await
        .unwrap();
    let templates = |t: &str| outbox.iter().filter(|m| m.template == t).count();
    assert_eq!((templates("hello-v1"), templates("hello-v2")), (100, 1));

    let versions = host
        .runtime
        .store
        .versions(DEFAULT_TENANT, "greeter")
        .await
        .unwrap();
    let v1_row = versions.iter().find(|v| v.version == v1.version).unwrap();
    assert_eq!(v1_row.runs.completed, 100);
    assert_eq!(v1_row.runs.live(), 0);
    assert!(v1_row.drained_at.is_some(), "v1 drained");
    let v2_row = versions.iter().find(|v| v.version == v2.version).unwrap();
    assert_eq!((v2_row.runs.completed, v2_row.drained_at), (1, None));

    // The active version cannot be retired; a drained one can, and its
    // runs' history stays.
    let err = host
        .runtime
        .retire(DEFAULT_TENANT, "greeter", &v2.version)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("active version"), "{err}");
    host.runtime
        .retire(DEFAULT_TENANT, "greeter", &v1.version)
        .await
        .unwrap();
    let err = host
        .runtime
        .activate(DEFAULT_TENANT, "greeter", &v1.version)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no version"), "{err}");
    assert_eq!(host.run(old[0]).await.status, RunStatus::Completed);

    // Deploying v1 again revives it; activating it is a rollback.
    host.runtime
        .deploy(DEFAULT_TENANT, component("greeter_v1"))
        .await
        .unwrap();
    host.runtime
        .activate(DEFAULT_TENANT, "greeter", &v2.version)
        .await
        .unwrap();
    host.runtime
        .activate(DEFAULT_TENANT, "greeter", &v1.version)
        .await
        .unwrap();
    let rolled_back = host.start("greeter", "new-1", "{}").await;
    assert_eq!(rolled_back.version, v1.version);
}

#[tokio::test]
async fn a_version_with_waiting_runs_cannot_be_retired() {
    let host = Host::new().await;
    let v1 = host
        .runtime
        .deploy(DEFAULT_TENANT, component("greeter_v1"))
        .await
        .unwrap();
    host.start("greeter", "ada", "{}").await;
    host.runtime
        .deploy(DEFAULT_TENANT, component("greeter_v2"))
        .await
        .unwrap();
    let err = host
        .runtime
        .retire(DEFAULT_TENANT, "greeter", &v1.version)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("1 active or waiting runs"),
        "{err}"
    );
}
