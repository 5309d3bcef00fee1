//! Minecraft status ping (the "server list ping"): is a game server up, and how many play?
//! Readiness and idle detection use this, never Docker health checks.

use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("talking: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("bad answer: {0}")]
    Protocol(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub online: u32,
    pub max: u32,
    pub version: String,
    /// The whole status JSON as the server sent it.
    pub raw: String,
}

fn varint(out: &mut Vec<u8>, mut v: i32) {
    loop {
        let mut b = (v & 0x7f) as u8;
        v = ((v as u32) >> 7) as i32;
        if v != 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return;
        }
    }
}

async fn read_varint(s: &mut TcpStream) -> Result<i32, PingError> {
    let mut v: i32 = 0;
    for i in 0..5 {
        let b = s.read_u8().await?;
        v |= i32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PingError::Protocol("varint too long".into()))
}

fn packet(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    varint(&mut body, id);
    body.extend_from_slice(payload);
    let mut frame = Vec::new();
    varint(&mut frame, body.len() as i32);
    frame.extend(body);
    frame
}

/// Handshake (next state: status), status request, and the JSON answer.
pub async fn status(host: &str, port: u16, timeout: Duration) -> Result<Status, PingError> {
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect((host, port)).await.map_err(PingError::Connect)?;
        let mut hs = Vec::new();
        varint(&mut hs, 767); // protocol version; servers answer status for any
        varint(&mut hs, host.len() as i32);
        hs.extend_from_slice(host.as_bytes());
        hs.extend_from_slice(&port.to_be_bytes());
        varint(&mut hs, 1);
        s.write_all(&packet(0, &hs)).await?;
        s.write_all(&packet(0, &[])).await?;
        let len = read_varint(&mut s).await?;
        if !(1..=1 << 20).contains(&len) {
            return Err(PingError::Protocol(format!("packet length {len}")));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).await?;
        let mut cur = std::io::Cursor::new(body);
        let id = read_sync_varint(&mut cur)?;
        if id != 0 {
            return Err(PingError::Protocol(format!("packet id {id}, expected 0")));
        }
        let n = read_sync_varint(&mut cur)? as usize;
        let start = cur.position() as usize;
        let body = cur.into_inner();
        let json = body.get(start..start + n).ok_or_else(|| PingError::Protocol("short status".into()))?;
        let raw = String::from_utf8_lossy(json).into_owned();
        #[derive(Deserialize)]
        struct Players {
            online: u32,
            max: u32,
        }
        #[derive(Deserialize)]
        struct Version {
            name: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            players: Players,
            version: Version,
        }
        let a: Answer = serde_json::from_str(&raw).map_err(|e| PingError::Protocol(format!("status JSON: {e}")))?;
        Ok(Status { online: a.players.online, max: a.players.max, version: a.version.name, raw })
    })
    .await
    .map_err(|_| PingError::Timeout(timeout))?
}

fn read_sync_varint(c: &mut std::io::Cursor<Vec<u8>>) -> Result<i32, PingError> {
    let mut v: i32 = 0;
    for i in 0..5 {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(c, &mut b)?;
        v |= i32::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PingError::Protocol("varint too long".into()))
}
