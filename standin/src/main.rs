//! A stand-in game server for the controller's tests (vanilla server jars cannot be fetched
//! here). It speaks enough of the Minecraft protocol for a status ping (handshake, status
//! request → JSON status with players online and max, ping → pong) and for an offline-mode
//! 1.8.9 client to log in, spawn and stay (keep-alives; counted online). It takes `READY_AFTER_MS`
//! before it listens, keeps a "world" in `$DATA/world.txt` (loaded at start, saved on SIGTERM
//! with a save counter), and reads the player count from `$DATA/players` when that file
//! exists (so a test can change it), else from `PLAYERS`.
//!
//! Environment: `PORT` (25565), `PLAYERS` (0), `MAX_PLAYERS` (20), `READY_AFTER_MS` (0),
//! `DATA` (/data), `MOTD`, `VERSION`, `EULA`, `JVM_OPTS` (logged at start, as a server logs
//! its version and memory), `RCON_PASSWORD`, `RCON_PORT` (see `console.rs`). `standin hold` only waits for SIGTERM (a volume helper). Static build for an image:
//! `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p conductor-standin --target x86_64-unknown-linux-gnu`.

mod console;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

struct World {
    path: PathBuf,
    created: String,
    saves: u64,
}

impl World {
    fn load(dir: &str) -> World {
        let path = PathBuf::from(dir).join("world.txt");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
        World {
            created: field("created=").unwrap_or_else(|| format!("{}", unix_secs())),
            saves: field("saves=").and_then(|s| s.parse().ok()).unwrap_or(0),
            path,
        }
    }

    /// Writes a new file and renames it over the old one: a crash never leaves half a world.
    fn save(&mut self) -> std::io::Result<()> {
        self.saves += 1;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("created={}\nsaves={}\nsaved_at={}\n", self.created, self.saves, unix_secs()))?;
        std::fs::rename(tmp, &self.path)
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn read_varint(r: &mut impl Read) -> std::io::Result<i32> {
    let mut value: i32 = 0;
    for i in 0..5 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        value |= i32::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "varint too long"))
}

fn write_varint(out: &mut Vec<u8>, mut v: i32) {
    loop {
        let mut b = (v & 0x7f) as u8;
        v = ((v as u32) >> 7) as i32;
        if v != 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            break;
        }
    }
}

fn read_packet(r: &mut impl Read) -> std::io::Result<(i32, Vec<u8>)> {
    let len = read_varint(r)?;
    if !(1..=32 * 1024).contains(&len) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad packet length"));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    let mut cur = std::io::Cursor::new(body);
    let id = read_varint(&mut cur)?;
    let pos = cur.position() as usize;
    Ok((id, cur.into_inner()[pos..].to_vec()))
}

fn send_packet(w: &mut impl Write, id: i32, payload: &[u8]) -> std::io::Result<()> {
    let mut body = Vec::new();
    write_varint(&mut body, id);
    body.extend_from_slice(payload);
    let mut frame = Vec::new();
    write_varint(&mut frame, body.len() as i32);
    frame.extend_from_slice(&body);
    w.write_all(&frame)
}

fn players(data: &str) -> u32 {
    std::fs::read_to_string(PathBuf::from(data).join("players"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| env("PLAYERS", "0").parse().unwrap_or(0))
}

/// Players logged in right now (counted in the status's `online`).
static ONLINE: AtomicU32 = AtomicU32::new(0);

fn serve(mut s: TcpStream, data: &str, created: &str, saves: u64) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (id, handshake) = read_packet(&mut s)?;
    if id != 0 {
        return Ok(());
    }
    let mut h = std::io::Cursor::new(handshake);
    let protocol = read_varint(&mut h)?;
    let host_len = read_varint(&mut h)?;
    h.set_position(h.position() + host_len.max(0) as u64 + 2);
    if read_varint(&mut h)? == 2 {
        return login(s, protocol);
    }
    loop {
        let (id, payload) = match read_packet(&mut s) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        match id {
            0 => {
                let online = players(data) + ONLINE.load(Ordering::SeqCst);
                let status = format!(
                    r#"{{"version":{{"name":"standin","protocol":767}},"players":{{"max":{},"online":{}}},"description":{{"text":"{}"}},"world":{{"created":"{}","saves":{}}}}}"#,
                    env("MAX_PLAYERS", "20"),
                    online,
                    env("MOTD", "conductor stand-in").replace('"', "'"),
                    created,
                    saves
                );
                let mut p = Vec::new();
                write_string(&mut p, &status);
                send_packet(&mut s, 0, &p)?;
            }
            1 => return send_packet(&mut s, 1, &payload),
            _ => return Ok(()),
        }
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_varint(out, text.len() as i32);
    out.extend_from_slice(text.as_bytes());
}

/// An offline-mode login of a 1.8.x client (protocol 47): login success, then just enough of
/// the play state for a client to spawn (join game, health, position) and keep-alives until
/// it leaves. Other versions are told so.
fn login(mut s: TcpStream, protocol: i32) -> std::io::Result<()> {
    let (id, start) = read_packet(&mut s)?;
    if id != 0 {
        return Ok(());
    }
    let mut c = std::io::Cursor::new(start);
    let len = read_varint(&mut c)?.clamp(0, 64) as usize;
    let name_at = c.position() as usize;
    let name = String::from_utf8_lossy(&c.get_ref()[name_at..(name_at + len).min(c.get_ref().len())]).into_owned();
    if protocol != 47 {
        let mut p = Vec::new();
        write_string(&mut p, r#"{"text":"the stand-in speaks Minecraft 1.8.9 only"}"#);
        return send_packet(&mut s, 0, &p);
    }
    let mut p = Vec::new();
    write_string(&mut p, &format!("00000000-0000-3000-8000-{:012x}", name.len()));
    write_string(&mut p, &name);
    send_packet(&mut s, 0x02, &p)?;
    // Join game: entity id, survival, overworld, normal, 20 players, "default", no reduced debug.
    let mut p = 1i32.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 2, 20]);
    write_string(&mut p, "default");
    p.push(0);
    send_packet(&mut s, 0x01, &p)?;
    let mut p = 20f32.to_be_bytes().to_vec(); // update health: health, food, saturation
    write_varint(&mut p, 20);
    p.extend_from_slice(&5f32.to_be_bytes());
    send_packet(&mut s, 0x06, &p)?;
    let mut p = Vec::new(); // position and look
    for v in [0f64, 64.0, 0.0] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p.extend_from_slice(&0f32.to_be_bytes());
    p.extend_from_slice(&0f32.to_be_bytes());
    p.push(0);
    send_packet(&mut s, 0x08, &p)?;
    println!("standin: {name} joined");
    ONLINE.fetch_add(1, Ordering::SeqCst);
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut last = std::time::Instant::now();
    let mut keep = 0;
    let result = loop {
        if STOP.load(Ordering::SeqCst) {
            break Ok(());
        }
        if last.elapsed() >= Duration::from_secs(5) {
            keep += 1;
            let mut p = Vec::new();
            write_varint(&mut p, keep);
            if let Err(e) = send_packet(&mut s, 0x00, &p) {
                break Err(e);
            }
            last = std::time::Instant::now();
        }
        match read_packet(&mut s) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break Ok(()),
        }
    };
    ONLINE.fetch_sub(1, Ordering::SeqCst);
    println!("standin: {name} left");
    result
}

fn main() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    // `standin hold`: a volume helper — keeps the container up (so the engine mounts its
    // volumes for archive copies) and exits on SIGTERM without touching anything.
    if std::env::args().nth(1).as_deref() == Some("hold") {
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("rcon-cli") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(console::rcon_cli(&args));
    }
    println!(
        "standin: starting version {} with JVM_OPTS={:?} EULA={}",
        env("VERSION", "latest"),
        env("JVM_OPTS", ""),
        env("EULA", "false")
    );
    console::stdin();
    console::rcon_server();
    let data = env("DATA", "/data");
    let _ = std::fs::create_dir_all(&data);
    let mut world = World::load(&data);
    let ready_after: u64 = env("READY_AFTER_MS", "0").parse().unwrap_or(0);
    let mut waited = 0;
    while waited < ready_after && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        waited += 20;
    }
    let port = env("PORT", "25565");
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind the game port");
    listener.set_nonblocking(true).expect("non-blocking listener");
    println!("standin: listening on {port}, world saves={}", world.saves);
    while !STOP.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let (data, created, saves) = (data.clone(), world.created.clone(), world.saves);
                std::thread::spawn(move || serve(s, &data, &created, saves));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    match world.save() {
        Ok(()) => println!("standin: saved the world (saves={})", world.saves),
        Err(e) => {
            eprintln!("standin: saving failed: {e}");
            std::process::exit(1);
        }
    }
}
