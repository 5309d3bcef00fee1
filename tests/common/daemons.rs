//! The daemons end to end: free ports, a one-shot HTTP client, the `conductor` binary as a
//! child process killed on drop, a fresh database.
#![allow(dead_code)]

use conductor_controller::PgStore;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request: (status, JSON body or the text as a JSON string). Refused: 0.
pub fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, Value::Null) };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// A `conductor` process, killed (SIGKILL) when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(args: &[&str], log: &Path) -> Daemon {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_conductor"))
            .args(args)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap(),
    )
}

/// Waits until `port` answers HTTP, or panics with the log.
pub fn wait_healthy(port: u16, log: &Path) {
    let t = Instant::now();
    while http(port, "GET", "/healthz", "", "").0 != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no answer:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh database `name` on the server of `admin_url`, server ids from `first_id`.
pub fn fresh_db(rt: &tokio::runtime::Runtime, admin_url: &str, name: &str, first_id: i64) -> (String, PgStore) {
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let store = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut c).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        let store = PgStore::connect(&url).await.unwrap();
        sqlx::query(&format!("ALTER SEQUENCE servers_id_seq RESTART WITH {first_id}"))
            .execute(store.pool())
            .await
            .unwrap();
        store
    });
    (url, store)
}

pub fn state(api: u16, token: &str, id: i64) -> String {
    http(api, "GET", &format!("/v1/servers/{id}"), token, "").1["state"].as_str().unwrap_or("").to_owned()
}

/// Waits until the server is in `want`, or panics with the log.
pub fn wait_state(api: u16, token: &str, id: i64, want: &str, within: Duration, log: &Path) {
    let t = Instant::now();
    while state(api, token, id) != want {
        assert!(
            t.elapsed() < within,
            "server {id} never {want} (is {}):\n{}",
            state(api, token, id),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
