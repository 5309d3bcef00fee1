//! The cloud driver: the real `hcloud` client against the local fake of the Hetzner API.

use conductor_controller::cloud::{CloudConfig, HetznerCloud, NewVm, LABEL_MANAGED};
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use std::collections::HashMap;
use std::time::Duration;

fn quick() -> CloudConfig {
    CloudConfig { requests_per_s: 200.0, burst: 50.0, max_attempts: 5, backoff: Duration::from_millis(20) }
}

fn new_vm(name: &str) -> NewVm {
    NewVm {
        name: name.into(),
        type_name: "cx43".into(),
        image: "ubuntu-24.04".into(),
        location: Some("fsn1".into()),
        user_data: Some("#cloud-config\nruncmd: [echo hi]\n".into()),
        labels: HashMap::from([
            (LABEL_MANAGED.to_string(), "test".to_string()),
            ("node".to_string(), name.to_string()),
        ]),
    }
}

async fn setup(b: Behaviour, knobs: CloudConfig) -> (FakeHetzner, HetznerCloud) {
    let fake = FakeHetzner::new(b);
    let url = fake.serve(0).await.unwrap();
    (fake, HetznerCloud::new("test-token", Some(&url), knobs))
}

fn posts(fake: &FakeHetzner) -> usize {
    fake.requests().iter().filter(|(m, p)| m == "POST" && p == "/v1/servers").count()
}

#[tokio::test(flavor = "current_thread")]
async fn a_vm_is_created_waited_for_listed_by_label_and_deleted() {
    let (fake, cloud) = setup(Behaviour { action_ms: 300, ..Behaviour::default() }, quick()).await;
    let (vm, action) = cloud.create(&new_vm("cdt-vm-1")).await.unwrap();
    assert_eq!((vm.name.as_str(), vm.type_name.as_str(), vm.running), ("cdt-vm-1", "cx43", false));
    cloud.wait_action(action.unwrap(), Duration::from_secs(10)).await.unwrap();
    let listed = cloud.list(&format!("{LABEL_MANAGED}=test")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].running, "running once its action finished");
    assert_eq!(listed[0].labels["node"], "cdt-vm-1");
    assert!(cloud.list(&format!("{LABEL_MANAGED}=prod")).await.unwrap().is_empty());
    assert_eq!(fake.user_data()["cdt-vm-1"].as_deref(), Some("#cloud-config\nruncmd: [echo hi]\n"));
    cloud.delete(vm.id).await.unwrap();
    cloud.delete(vm.id).await.unwrap(); // already gone: fine
    assert!(fake.server_names().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_retried_create_never_makes_a_duplicate() {
    let (fake, cloud) = setup(Behaviour::default(), quick()).await;
    let (first, a) = cloud.create(&new_vm("cdt-vm-7")).await.unwrap();
    assert!(a.is_some());
    // The same intent again (say, after a crash between the call and recording its result).
    let (again, b) = cloud.create(&new_vm("cdt-vm-7")).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(b, None, "nothing new to wait for");
    assert_eq!(fake.server_names(), vec!["cdt-vm-7"]);
}

#[tokio::test(flavor = "current_thread")]
async fn transient_failures_and_throttling_are_retried_with_backoff() {
    let (fake, cloud) = setup(Behaviour { fail_next: 2, ..Behaviour::default() }, quick()).await;
    cloud.create(&new_vm("cdt-vm-2")).await.unwrap();
    assert_eq!(posts(&fake), 3, "two 503s, then the create");
    assert_eq!(fake.server_names(), vec!["cdt-vm-2"]);

    // The server allows 3 requests a second; the client, unaware, fires 8 lists: some get
    // 429 and are retried until they pass.
    fake.set(|b| b.rate_per_s = 3);
    let knobs = CloudConfig { backoff: Duration::from_millis(300), ..quick() };
    let url = fake.serve(0).await.unwrap();
    let eager = HetznerCloud::new("t", Some(&url), knobs);
    for _ in 0..8 {
        assert_eq!(eager.list(&format!("{LABEL_MANAGED}=test")).await.unwrap().len(), 1);
    }
    let lists = fake.requests().iter().filter(|(m, p)| m == "GET" && p == "/v1/servers").count();
    assert!(lists > 8, "some lists were throttled and retried ({lists} requests)");

    // Too many failures: the error says so.
    fake.set(|b| {
        b.rate_per_s = 1000;
        b.fail_next = 100;
    });
    let err = eager.list("x").await.unwrap_err().to_string();
    assert!(err.contains("gave up after 5 attempts") && err.contains("unavailable"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_side_budget_keeps_under_the_servers_limit() {
    // The server allows 5 requests a second; a client budget of 4 a second (burst 1) never
    // meets a 429: every request the fake sees is one the client made once.
    let b = Behaviour { rate_per_s: 5, ..Behaviour::default() };
    let knobs = CloudConfig { requests_per_s: 4.0, burst: 1.0, max_attempts: 1, backoff: Duration::from_millis(10) };
    let (fake, cloud) = setup(b, knobs).await;
    for _ in 0..10 {
        cloud.list("x").await.unwrap();
    }
    assert_eq!(fake.requests().len(), 10);
}

#[tokio::test(flavor = "current_thread")]
async fn limits_and_slow_actions_are_reported_not_retried() {
    let (fake, cloud) = setup(Behaviour { max_servers: 1, action_ms: 60_000, ..Behaviour::default() }, quick()).await;
    let (_, action) = cloud.create(&new_vm("cdt-vm-a")).await.unwrap();
    let err = cloud.create(&new_vm("cdt-vm-b")).await.unwrap_err();
    assert_eq!(err.code(), Some("resource_limit_exceeded"));
    assert_eq!(posts(&fake), 2, "a limit is not retried");
    let err = cloud.wait_action(action.unwrap(), Duration::from_millis(500)).await.unwrap_err().to_string();
    assert!(err.contains("not finished"), "{err}");
}
