//! One test suite, two stores: the in-memory one and PostgreSQL (a fresh database per run).
//! PostgreSQL comes from `CONDUCTOR_TEST_PG` (an admin URL such as
//! `postgres://conductor:conductor@127.0.0.1/postgres`); `.ci/run` starts the server and sets
//! it, with `CONDUCTOR_REQUIRE_SERVICES=1` so that nothing is skipped in CI.

use conductor_controller::store::*;
use conductor_controller::{MemoryStore, PgStore};
use conductor_core::model::CostMode;
use conductor_core::NodeKind;
use serde_json::json;

const T: i64 = 1_760_000_000_000;

fn server(owner: i64, name: &str) -> NewServer {
    NewServer { owner, name: name.into(), ram_mib: 4096, disk_mb: 5000, pay_per_use: true, cost_mode: CostMode::Off }
}

fn node(name: &str, kind: NodeKind) -> NewNode {
    NewNode {
        name: name.into(),
        kind,
        type_name: "AX41".into(),
        provider_id: None,
        state: NodeState::Ready,
        ram_mib: 65536,
        usable_mib: 63236,
    }
}

async fn suite(s: &impl Store) {
    // Owners and tokens: only hashes, a token maps to its owner.
    let alice = s.create_owner("alice", T).await.unwrap();
    let bob = s.create_owner("bob", T + 1).await.unwrap();
    assert_ne!(alice.id, bob.id);
    assert!(matches!(s.create_owner("alice", T).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.owner(bob.id).await.unwrap().name, "bob");
    assert!(matches!(s.owner(9999).await, Err(StoreError::NotFound { .. })));
    assert_eq!(s.owners().await.unwrap().len(), 2);
    s.add_token(alice.id, token_hash("tok-a"), T).await.unwrap();
    assert_eq!(s.owner_by_token(token_hash("tok-a")).await.unwrap(), Some(alice.id));
    assert_eq!(s.owner_by_token(token_hash("tok-b")).await.unwrap(), None);
    assert!(matches!(s.add_token(alice.id, token_hash("tok-a"), T).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.add_token(9999, token_hash("x"), T).await, Err(StoreError::NotFound { .. })));

    // Servers: names unique per owner among live servers; listing by owner.
    let a1 = s.create_server(server(alice.id, "survival"), T + 10).await.unwrap();
    assert_eq!((a1.state, a1.node, a1.ram_mib, a1.cost_mode), (ServerState::New, None, 4096, CostMode::Off));
    let b1 = s.create_server(server(bob.id, "survival"), T + 11).await.unwrap();
    assert!(matches!(s.create_server(server(alice.id, "survival"), T).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.create_server(server(4242, "x"), T).await, Err(StoreError::NotFound { .. })));
    // A server's template: none (the default) until set, and back to none.
    assert_eq!(a1.template, None);
    let t = s.set_server_template(a1.id, Some("paper")).await.unwrap();
    assert_eq!((t.template.as_deref(), t.updated_at), (Some("paper"), T + 10), "since when in its state: kept");
    assert_eq!(s.server(a1.id).await.unwrap().template.as_deref(), Some("paper"));
    let a1 = s.set_server_template(a1.id, None).await.unwrap();
    assert_eq!(a1.template, None);
    assert!(matches!(s.set_server_template(4242, None).await, Err(StoreError::NotFound { .. })));
    let mut zero = server(alice.id, "zero");
    zero.ram_mib = 0;
    assert!(matches!(s.create_server(zero, T).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.servers(Some(alice.id)).await.unwrap(), vec![a1.clone()]);
    assert_eq!(s.servers(None).await.unwrap().len(), 2);
    assert_eq!(s.server(b1.id).await.unwrap().owner, bob.id);

    // Nodes: upsert adopts by name; provider ids are unique.
    let ded = s.upsert_node(node("ax41-1", NodeKind::Dedicated), T).await.unwrap();
    let again = s.upsert_node(node("ax41-1", NodeKind::Dedicated), T + 5).await.unwrap();
    assert_eq!(ded, again, "the same node, not a second one");
    let mut vm = node("vm-1", NodeKind::Cloud);
    vm.state = NodeState::Provisioning;
    let vm = s.upsert_node(vm, T).await.unwrap();
    let vm = s.set_node_state(vm.id, NodeState::Ready, Some("hc-17".into()), T + 100).await.unwrap();
    assert_eq!((vm.state, vm.provider_id.as_deref()), (NodeState::Ready, Some("hc-17")));
    let mut clash = node("vm-2", NodeKind::Cloud);
    clash.provider_id = Some("hc-17".into());
    assert!(matches!(s.upsert_node(clash, T).await, Err(StoreError::Conflict(_))));
    let mut bad = node("vm-3", NodeKind::Cloud);
    bad.usable_mib = bad.ram_mib + 1;
    assert!(matches!(s.upsert_node(bad, T).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.nodes().await.unwrap().len(), 2);

    // Lifecycle and placements: open while starting/running on a node.
    s.set_server_state(a1.id, ServerState::Queued, None, T + 20).await.unwrap();
    s.set_server_state(a1.id, ServerState::Starting, Some(ded.id), T + 30).await.unwrap();
    s.set_server_state(a1.id, ServerState::Running, Some(ded.id), T + 50).await.unwrap();
    let p = s.placements(a1.id).await.unwrap();
    assert_eq!(p, vec![Placement { node: ded.id, started_at: T + 30, ended_at: None }]);
    s.set_server_state(a1.id, ServerState::Sleeping, Some(ded.id), T + 90).await.unwrap();
    s.set_server_state(a1.id, ServerState::Starting, Some(vm.id), T + 120).await.unwrap();
    let p = s.placements(a1.id).await.unwrap();
    assert_eq!(
        p,
        vec![
            Placement { node: ded.id, started_at: T + 30, ended_at: Some(T + 90) },
            Placement { node: vm.id, started_at: T + 120, ended_at: None },
        ]
    );
    assert!(matches!(s.set_server_state(a1.id, ServerState::Running, None, T).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        s.set_server_state(a1.id, ServerState::Running, Some(777), T).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(s.set_server_state(999, ServerState::Queued, None, T).await, Err(StoreError::NotFound { .. })));
    // A failed change left the server as it was.
    assert_eq!(s.server(a1.id).await.unwrap().state, ServerState::Starting);
    s.set_server_state(b1.id, ServerState::Deleted, None, T + 200).await.unwrap();
    assert_eq!(s.servers(None).await.unwrap().len(), 1, "deleted servers are not listed");
    // A deleted server's name is free again.
    s.create_server(server(bob.id, "survival"), T + 300).await.unwrap();

    // The event log: in order, paged by sequence.
    for k in 0..5 {
        let seq = s
            .append_event(NewEvent {
                at: T + k,
                kind: "server.started".into(),
                server: Some(a1.id),
                node: Some(ded.id),
                data: json!({ "k": k }),
            })
            .await
            .unwrap();
        assert!(seq > 0);
    }
    let first = s.events(0, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq));
    let rest = s.events(first[2].seq, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].data, json!({ "k": 4 }));
    assert_eq!(rest[1].at, T + 4);
    // The latest events of some kinds, newest first.
    for (k, kind) in ["scaling.decision", "server.slept", "scaling.shadow", "scaling.decision"].iter().enumerate() {
        let e =
            NewEvent { at: T + 10 + k as i64, kind: (*kind).into(), server: None, node: None, data: json!({ "n": k }) };
        s.append_event(e).await.unwrap();
    }
    let latest = s.latest_events(&["scaling.decision", "scaling.shadow"], 2).await.unwrap();
    assert_eq!(latest.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(s.latest_events(&["scaling.decision"], 10).await.unwrap().len(), 2);
    assert!(s.latest_events(&["nothing"], 10).await.unwrap().is_empty());
    // Events of some kinds from an instant on, oldest first, paged by sequence.
    let of = s.events_of(&["scaling.decision", "server.slept"], T + 11, 0, 10).await.unwrap();
    assert_eq!(of.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    let page = s.events_of(&["scaling.decision", "server.slept"], T + 11, of[0].seq, 10).await.unwrap();
    assert_eq!(page.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), [3]);
    assert_eq!(s.events_of(&["server.started"], T + 3, 0, 1).await.unwrap()[0].data, json!({ "k": 3 }));

    // Intents: a retry with the same key is the same intent; finishing twice is refused.
    let i = s.begin_intent("create-vm:vm-2", "create_vm", json!({ "type": "cx43" }), T).await.unwrap();
    let j = s.begin_intent("create-vm:vm-2", "create_vm", json!({ "type": "other" }), T + 1).await.unwrap();
    assert_eq!(i, j);
    assert_eq!(i.state, IntentState::Pending);
    let k = s.begin_intent("start:1", "start_container", json!({}), T).await.unwrap();
    assert_eq!(s.pending_intents().await.unwrap().iter().map(|x| x.id).collect::<Vec<_>>(), vec![i.id, k.id]);
    let done = s.finish_intent(i.id, true, json!({ "provider_id": "hc-18" }), T + 5).await.unwrap();
    assert_eq!((done.state, done.outcome.clone()), (IntentState::Done, Some(json!({ "provider_id": "hc-18" }))));
    assert!(matches!(s.finish_intent(i.id, false, json!({}), T + 6).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.finish_intent(31337, true, json!({}), T).await, Err(StoreError::NotFound { .. })));
    assert_eq!(s.pending_intents().await.unwrap().len(), 1);

    // The ledger: idempotent by key, balance = sum of entries, signs checked.
    let eur = |x: &str| x.parse::<Money>().unwrap();
    let entry = |kind, amount: &str, key: &str| NewEntry {
        owner: bob.id,
        kind,
        amount: eur(amount),
        key: key.into(),
        at: T,
        server: None,
        window_start: None,
        data: json!({}),
    };
    assert_eq!(s.balance(bob.id).await.unwrap(), Money::ZERO);
    let g = s.post(entry(EntryKind::Grant, "5", "grant:bob")).await.unwrap();
    assert!(g.new);
    assert_eq!((g.balance, g.entry.amount.to_string()), (eur("5"), "5.000000".to_string()));
    let again = s.post(entry(EntryKind::Grant, "5", "grant:bob")).await.unwrap();
    assert!(!again.new, "a replayed key books nothing");
    assert_eq!((again.entry.id, again.balance), (g.entry.id, eur("5")));
    let c = s
        .post(NewEntry { window_start: Some(T), ..entry(EntryKind::Charge, "-0.000333", "charge:1:0") })
        .await
        .unwrap();
    assert_eq!((c.balance, c.entry.window_start), (eur("4.999667"), Some(T)));
    for bad in [
        entry(EntryKind::Charge, "0.5", "bad-1"),
        entry(EntryKind::Topup, "-1", "bad-2"),
        entry(EntryKind::Grant, "0.0000001", "bad-3"),
        entry(EntryKind::Topup, "1", ""),
    ] {
        assert!(matches!(s.post(bad).await, Err(StoreError::Invalid(_))));
    }
    let reused = s.post(entry(EntryKind::Topup, "10", "grant:bob")).await;
    assert!(matches!(reused, Err(StoreError::Conflict(_))), "{reused:?}");
    assert!(matches!(
        s.post(NewEntry { owner: 9999, ..entry(EntryKind::Topup, "1", "t-x") }).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(s.balance(9999).await, Err(StoreError::NotFound { .. })));
    let l = s.ledger(bob.id, 0, 10).await.unwrap();
    assert_eq!(l.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["grant:bob", "charge:1:0"]);
    assert_eq!(s.ledger(bob.id, l[0].id, 10).await.unwrap().len(), 1);
    assert_eq!(s.balance(bob.id).await.unwrap(), eur("4.999667"));
    assert_eq!(s.balance(alice.id).await.unwrap(), Money::ZERO);

    // Forecasts: the latest one wins.
    assert_eq!(s.latest_forecast().await.unwrap(), None);
    s.save_forecast(json!({ "n": 1 }), T).await.unwrap();
    s.save_forecast(json!({ "n": 2 }), T + 1).await.unwrap();
    assert_eq!(s.latest_forecast().await.unwrap(), Some((T + 1, json!({ "n": 2 }))));

    // Custom host names: unique, added again idempotently, removed only by their server.
    s.add_host(a1.id, "mc.alice.de", T).await.unwrap();
    s.add_host(a1.id, "mc.alice.de", T).await.unwrap();
    assert!(matches!(s.add_host(b1.id, "mc.alice.de", T).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.add_host(9999, "x.example.org", T).await, Err(StoreError::NotFound { .. })));
    s.add_host(b1.id, "bob.example.org", T).await.unwrap();
    assert_eq!(
        s.hosts().await.unwrap(),
        vec![("bob.example.org".to_string(), b1.id), ("mc.alice.de".to_string(), a1.id)]
    );
    assert!(!s.remove_host(b1.id, "mc.alice.de").await.unwrap());
    assert!(s.remove_host(a1.id, "mc.alice.de").await.unwrap());
    assert_eq!(s.hosts().await.unwrap().len(), 1);

    // Jobs: created queued, listed per owner in order, updated as a whole.
    let new = |owner: i64| NewJob {
        owner,
        image: "busybox".into(),
        cmd: vec!["sleep".into(), "60".into()],
        ram_mib: 1024,
        max_duration_s: 3600,
        price_per_gib_hour: eur("0.0125"),
    };
    let j1 = s.create_job(new(alice.id), T).await.unwrap();
    let j2 = s.create_job(new(bob.id), T + 1).await.unwrap();
    assert!(matches!(s.create_job(new(9999), T).await, Err(StoreError::NotFound { .. })));
    assert_eq!(
        (j1.state, j1.node, j1.started_at, &j1.cmd[..]),
        (JobState::Queued, None, None, &["sleep".to_string(), "60".to_string()][..])
    );
    assert_eq!(s.jobs(Some(bob.id)).await.unwrap(), vec![j2.clone()]);
    assert_eq!(s.jobs(None).await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [j1.id, j2.id]);
    let mut running = j1.clone();
    (running.state, running.node, running.started_at) = (JobState::Running, Some(ded.id), Some(T + 5));
    (running.kill_at, running.outcome) = (Some(T + 50), Some("exit 0".into()));
    s.update_job(&running).await.unwrap();
    assert_eq!(s.job(j1.id).await.unwrap(), running);
    assert_eq!(s.job(j1.id).await.unwrap().price_per_gib_hour, eur("0.0125"), "exact");
    assert!(matches!(s.job(9999).await, Err(StoreError::NotFound { .. })));
    assert!(JobState::Killed.ended() && !JobState::Noticed.ended());
}

#[tokio::test(flavor = "current_thread")]
async fn the_memory_store_keeps_the_contract() {
    suite(&MemoryStore::new()).await;
}

/// A fresh database on the test server, or `None` (with a notice) when none is configured
/// outside CI.
async fn fresh_pg(name: &str) -> Option<PgStore> {
    let Ok(admin) = std::env::var("CONDUCTOR_TEST_PG") else {
        if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() {
            panic!("CONDUCTOR_TEST_PG is not set but services are required");
        }
        eprintln!("skipping: set CONDUCTOR_TEST_PG to run the PostgreSQL store tests (.ci/run does)");
        return None;
    };
    use sqlx::Connection;
    let db = format!("conductor_test_{}_{name}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to CONDUCTOR_TEST_PG");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}")).execute(&mut c).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{db}", &admin[..i]),
        None => panic!("CONDUCTOR_TEST_PG must end in /DATABASE"),
    };
    Some(PgStore::connect(&url).await.expect("connect and migrate"))
}

#[tokio::test(flavor = "current_thread")]
async fn the_postgres_store_keeps_the_contract() {
    let Some(s) = fresh_pg("contract").await else { return };
    suite(&s).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_postgres_event_log_is_append_only_and_migrations_rerun_cleanly() {
    let Some(s) = fresh_pg("append").await else { return };
    let seq = s
        .append_event(NewEvent { at: T, kind: "node.created".into(), server: None, node: None, data: json!({}) })
        .await
        .unwrap();
    let update = sqlx::query("UPDATE events SET kind = 'forged' WHERE seq = $1").bind(seq).execute(s.pool()).await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM events").execute(s.pool()).await;
    assert!(delete.is_err());
    assert_eq!(s.events(0, 10).await.unwrap()[0].kind, "node.created");
    // Tokens are stored hashed: the clear token appears nowhere in the table.
    let o = s.create_owner("carol", T).await.unwrap();
    s.add_token(o.id, token_hash("secret-token-123"), T).await.unwrap();
    let row: (Vec<u8>,) = sqlx::query_as("SELECT token_sha256 FROM api_tokens").fetch_one(s.pool()).await.unwrap();
    assert_eq!(row.0.len(), 32);
    assert!(!String::from_utf8_lossy(&row.0).contains("secret"));
    // Running the migrations again (a restart) changes nothing.
    sqlx::migrate!("./migrations").run(s.pool()).await.unwrap();
    assert_eq!(s.events(0, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn only_one_instance_leads_and_a_standby_takes_over() {
    let Some(first) = fresh_pg("lead").await else { return };
    let url = {
        let admin = std::env::var("CONDUCTOR_TEST_PG").unwrap();
        let i = admin.rfind('/').unwrap();
        format!("{}/conductor_test_{}_lead", &admin[..i], std::process::id())
    };
    let second = PgStore::connect(&url).await.unwrap();
    let lock = first.try_lead(42).await.unwrap().expect("the first instance leads");
    assert!(second.try_lead(42).await.unwrap().is_none(), "the second waits as a standby");
    drop(lock); // the leader dies: its session ends
    let mut took_over = None;
    for _ in 0..50 {
        took_over = second.try_lead(42).await.unwrap();
        if took_over.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(took_over.is_some(), "the standby takes over");
}
