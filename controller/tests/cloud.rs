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

mod cloud_init {
    use conductor_controller::bootstrap::{render, Vars, ATTACH, PREPARE, VM};
    use conductor_controller::pki::Secret;

    fn vars() -> Vars {
        Vars {
            ca_pem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\nVM\n-----END CERTIFICATE-----\n".into(),
            key_pem: Secret::new("-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n".into()),
            docker_port: 2376,
            controller_cidrs: vec!["10.0.0.2/32".into()],
            gateway_cidrs: vec!["10.0.1.0/24".into()],
            images: vec!["localhost/conductor-standin:test".into()],
        }
    }

    /// The YAML as JSON, by a YAML parser that is not ours (Python's).
    fn parse(text: &str) -> serde_json::Value {
        use std::io::Write;
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with PyYAML");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "not valid YAML: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn files(doc: &serde_json::Value) -> Vec<(String, String, String)> {
        doc["write_files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
                        (s("path"), s("permissions"), s("content"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn commands(doc: &serde_json::Value) -> Vec<String> {
        let cmd = |c: &serde_json::Value| {
            c.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>().join(" ")
        };
        doc["runcmd"].as_array().unwrap().iter().map(cmd).collect()
    }

    const FILES: [&str; 6] = [
        "/etc/docker/tls/ca.pem",
        "/etc/docker/tls/cert.pem",
        "/etc/docker/tls/key.pem",
        "/etc/docker/daemon.json",
        "/etc/systemd/system/docker.service.d/conductor.conf",
        "/etc/nftables.conf",
    ];

    #[test]
    fn the_vm_bootstrap_writes_exactly_these_files_and_runs_exactly_these_commands() {
        let text = render("vm.yaml", VM, &vars()).unwrap();
        assert!(text.expose().starts_with("#cloud-config\n"));
        let doc = parse(text.expose());
        let written = files(&doc);
        assert_eq!(written.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), FILES);
        // The values arrive whole; only the key is private.
        assert_eq!(written[0].2, vars().ca_pem);
        assert_eq!(written[2].2, vars().key_pem.expose());
        assert_eq!(
            written.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
            ["0644", "0644", "0600", "0644", "0644", "0644"]
        );
        let daemon: serde_json::Value = serde_json::from_str(&written[3].2).unwrap();
        assert_eq!(daemon["hosts"][1], "tcp://0.0.0.0:2376");
        assert_eq!(
            (daemon["tlsverify"].as_bool(), daemon["tlskey"].as_str()),
            (Some(true), Some("/etc/docker/tls/key.pem"))
        );
        assert_eq!(doc["packages"], serde_json::json!(["docker.io", "nftables"]));
        assert_eq!(
            commands(&doc),
            [
                "systemctl daemon-reload",
                "systemctl enable --now nftables",
                "systemctl enable docker",
                "systemctl restart docker",
                "sh -c docker pull localhost/conductor-standin:test",
                "docker volume create --label conductor.bootstrap=done conductor-bootstrap",
            ]
        );
        // The snapshot variant: the same files, no install, no pull.
        let attach = parse(render("attach.yaml", ATTACH, &vars()).unwrap().expose());
        assert_eq!(files(&attach).iter().map(|f| f.0.clone()).collect::<Vec<_>>(), FILES);
        assert!(attach.get("packages").is_none());
        assert!(commands(&attach).iter().all(|c| !c.contains("pull")));
        assert_eq!(
            commands(&attach).last().unwrap(),
            "docker volume create --label conductor.bootstrap=done conductor-bootstrap"
        );
        // The image preparation: no certificate, ends powered off and clean.
        let prepare = parse(render("prepare.yaml", PREPARE, &vars()).unwrap().expose());
        assert!(files(&prepare).is_empty());
        assert_eq!(
            commands(&prepare),
            ["sh -c docker pull localhost/conductor-standin:test", "cloud-init clean --logs", "poweroff"]
        );
    }

    /// nft itself checks the firewall's syntax (`-c`: nothing is applied), where installed.
    #[test]
    fn the_firewall_is_valid_nftables() {
        let doc = parse(render("vm.yaml", VM, &vars()).unwrap().expose());
        let rules = files(&doc).into_iter().find(|f| f.0 == "/etc/nftables.conf").unwrap().2;
        let path = std::env::temp_dir().join(format!("conductor-nft-{}.conf", std::process::id()));
        std::fs::write(&path, rules).unwrap();
        match std::process::Command::new("nft").arg("-c").arg("-f").arg(&path).output() {
            Ok(out) => assert!(out.status.success(), "nft -c: {}", String::from_utf8_lossy(&out.stderr)),
            Err(_) if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err() => eprintln!("skipping: no nft"),
            Err(e) => panic!("nft: {e}"),
        }
        let _ = std::fs::remove_file(path);
    }

    /// cloud-init's own schema check (`.ci/cloud-init.sh` unpacks Debian's cloud-init and
    /// prints the command: CONDUCTOR_TEST_CLOUD_INIT).
    #[test]
    fn the_templates_pass_cloud_inits_schema_check() {
        let Ok(tool) = std::env::var("CONDUCTOR_TEST_CLOUD_INIT") else {
            assert!(std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err(), "CONDUCTOR_TEST_CLOUD_INIT is not set");
            eprintln!("skipping: set CONDUCTOR_TEST_CLOUD_INIT (bash .ci/cloud-init.sh prints it)");
            return;
        };
        for (name, template) in [("vm.yaml", VM), ("attach.yaml", ATTACH), ("prepare.yaml", PREPARE)] {
            let path = std::env::temp_dir().join(format!("conductor-{}-{name}", std::process::id()));
            std::fs::write(&path, render(name, template, &vars()).unwrap().expose()).unwrap();
            let out = std::process::Command::new(&tool).arg("-c").arg(&path).output().unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && said.contains("Valid"), "{name}: {said}");
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A VM is reached on its address on the configured private network; without one on its
/// public address; a network that does not exist is named in a permanent error.
#[tokio::test(flavor = "current_thread")]
async fn vms_are_reached_on_their_private_network_address() {
    let fake = FakeHetzner::new(Behaviour { action_ms: 0, subnet: 7, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let on_net = HetznerCloud::new("t", Some(&url), quick()).with_network(Some("conductor".into()));
    let (a, _) = on_net.create(&new_vm("cdt-net-1")).await.unwrap();
    let (b, _) = on_net.create(&new_vm("cdt-net-2")).await.unwrap();
    assert_eq!((a.address.as_deref(), b.address.as_deref()), (Some("127.7.0.1"), Some("127.7.0.2")));
    let listed = on_net.list(&format!("{LABEL_MANAGED}=test")).await.unwrap();
    let mut addresses: Vec<_> = listed.iter().filter_map(|v| v.address.clone()).collect();
    addresses.sort();
    assert_eq!(addresses, ["127.7.0.1", "127.7.0.2"]);
    // The fake's view agrees (what a test harness binds a front on).
    assert_eq!(fake.servers()[0].private_ip.as_deref(), a.address.as_deref());

    let public = HetznerCloud::new("t", Some(&url), quick());
    let (c, _) = public.create(&new_vm("cdt-pub-3")).await.unwrap();
    assert_eq!(c.address.as_deref(), Some("192.0.2.3"));
    assert_eq!(fake.servers()[2].private_ip, None);

    let missing = HetznerCloud::new("t", Some(&url), quick()).with_network(Some("elsewhere".into()));
    let e = missing.create(&new_vm("cdt-x")).await.unwrap_err();
    assert_eq!(e.retry(), conductor_controller::driver::Retry::Permanent, "{e}");
    assert!(e.to_string().contains("\"elsewhere\""), "{e}");
    assert_eq!(fake.servers().len(), 3, "nothing created");
}

/// `snapshot:<labels>` boots the newest available snapshot with those labels (through the
/// real hcloud client's image listing); a numeric id is used as it is; no match is a
/// permanent error naming the selector, and nothing is created.
#[tokio::test]
async fn a_snapshot_is_chosen_by_its_labels_newest_first() {
    let label = |v: &str| HashMap::from([("conductor-node".to_string(), v.to_string())]);
    let snapshots = vec![(7, label("v2"), 100), (11, label("v3"), 300), (9, label("v3"), 200), (12, label("v4"), 50)];
    let fake = FakeHetzner::new(Behaviour { action_ms: 0, snapshots, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let cloud = HetznerCloud::new("t", Some(&url), quick());
    let with = |name: &str, image: &str| NewVm { image: image.into(), ..new_vm(name) };
    cloud.create(&with("cdt-s1", "snapshot:conductor-node=v3")).await.unwrap();
    cloud.create(&with("cdt-s2", "snapshot:123456")).await.unwrap();
    let images: Vec<String> = fake.servers().into_iter().map(|s| s.image).collect();
    assert_eq!(images, ["11", "123456"], "the newest v3 snapshot, then the id as given");
    let e = cloud.create(&with("cdt-s3", "snapshot:conductor-node=v9")).await.unwrap_err();
    assert_eq!(e.retry(), conductor_controller::driver::Retry::Permanent, "{e}");
    assert!(e.to_string().contains("conductor-node=v9"), "{e}");
    assert_eq!(fake.servers().len(), 2, "nothing created");
}
