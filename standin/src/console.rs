//! The stand-in's console: lines on stdin, and an RCON server (Source RCON, as Minecraft's)
//! when `RCON_PASSWORD` is set, on `RCON_PORT` (25575). Each command is logged
//! (`standin: console: …` / `standin: rcon: …`); `stop` stops the server as SIGTERM does.
//! `standin rcon-cli CMD…` is the client (what `rcon-cli` is in the itzg images): it sends one
//! command to the local RCON server with the container's password and prints the answer.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;

const AUTH: i32 = 3;
const EXEC: i32 = 2;
const RESPONSE: i32 = 0;

fn command(via: &str, line: &str) -> String {
    println!("standin: {via}: {line}");
    if line.trim() == "stop" {
        super::STOP.store(true, Ordering::SeqCst);
        return "Stopping the server".into();
    }
    format!("ran: {line}")
}

/// Reads console lines from stdin until it closes.
pub fn stdin() {
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if !line.trim().is_empty() {
                command("console", &line);
            }
        }
    });
}

fn write(s: &mut TcpStream, id: i32, kind: i32, body: &str) -> std::io::Result<()> {
    let mut p = Vec::with_capacity(14 + body.len());
    p.extend_from_slice(&((10 + body.len()) as i32).to_le_bytes());
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&kind.to_le_bytes());
    p.extend_from_slice(body.as_bytes());
    p.extend_from_slice(&[0, 0]);
    s.write_all(&p)
}

fn read(s: &mut TcpStream) -> std::io::Result<(i32, i32, String)> {
    let mut n = [0u8; 4];
    s.read_exact(&mut n)?;
    let len = i32::from_le_bytes(n);
    if !(10..=4106).contains(&len) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RCON packet length"));
    }
    let mut p = vec![0u8; len as usize];
    s.read_exact(&mut p)?;
    let id = i32::from_le_bytes(p[0..4].try_into().unwrap());
    let kind = i32::from_le_bytes(p[4..8].try_into().unwrap());
    let body = String::from_utf8_lossy(&p[8..p.len() - 2]).into_owned();
    Ok((id, kind, body))
}

fn session(mut s: TcpStream, password: &str) -> std::io::Result<()> {
    let mut authed = false;
    loop {
        let (id, kind, body) = read(&mut s)?;
        match kind {
            AUTH => {
                authed = body == password;
                if !authed {
                    println!("standin: rcon: a login with a wrong password");
                }
                write(&mut s, if authed { id } else { -1 }, EXEC, "")?;
            }
            EXEC if authed => {
                let answer = command("rcon", &body);
                write(&mut s, id, RESPONSE, &answer)?;
            }
            _ => return Ok(()),
        }
    }
}

/// Serves RCON when a password is configured.
pub fn rcon_server() {
    let Ok(password) = std::env::var("RCON_PASSWORD") else { return };
    let port = super::env("RCON_PORT", "25575");
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind the RCON port");
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let password = password.clone();
            std::thread::spawn(move || session(s, &password));
        }
    });
}

/// `standin rcon-cli CMD…`: exit 0 and the answer on stdout, or 1 with the reason.
pub fn rcon_cli(args: &[String]) -> i32 {
    let run = || -> std::io::Result<String> {
        let password = std::env::var("RCON_PASSWORD")
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::NotFound, "RCON_PASSWORD is not set"))?;
        let port = super::env("RCON_PORT", "25575");
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}"))?;
        write(&mut s, 1, AUTH, &password)?;
        let (id, _, _) = read(&mut s)?;
        if id == -1 {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "RCON login refused"));
        }
        write(&mut s, 2, EXEC, &args.join(" "))?;
        Ok(read(&mut s)?.2)
    };
    match run() {
        Ok(answer) => {
            println!("{answer}");
            0
        }
        Err(e) => {
            eprintln!("rcon-cli: {e}");
            1
        }
    }
}
