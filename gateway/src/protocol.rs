//! The pre-play part of the Minecraft Java Edition protocol that a gateway reads and writes:
//! VarInt framing, the handshake, status request/response and ping, login start, the login
//! disconnect, and the legacy (0xFE) server-list ping of old clients.
//!
//! Own code rather than a codec crate: `azalea-protocol` (the maintained one) encodes one
//! game version (the latest) and pulls in an ECS, a resolver and NBT, while a gateway must read
//! these few packets from every client version (login start differs between 1.18, 1.19,
//! 1.19.3 and 1.20.2) and nothing after them — after login start the bytes are spliced.
//!
//! Untrusted input: every length is checked against a limit before anything is allocated,
//! a VarInt longer than 5 bytes or a negative length is an error, and parsing never panics
//! (fuzzed in `tests/fuzz.rs`).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest handshake frame: a 255-character host name (4 bytes a character at most) plus the
/// Forge/FML or forwarding suffixes some clients add, the port and the varints.
pub const MAX_HANDSHAKE: usize = 2048;
/// Largest login start (1.19's carries a signed public key: up to ~4.6 KB).
pub const MAX_LOGIN_START: usize = 8192;
/// Status request and ping are tiny.
pub const MAX_SMALL: usize = 64;
/// A backend's status response (its favicon is a base64 PNG of ≤ 64×64 px).
pub const MAX_STATUS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("a VarInt longer than 5 bytes")]
    VarIntTooLong,
    #[error("packet of {len} bytes over the limit of {max}")]
    TooLong { len: i64, max: usize },
    #[error("negative or empty length")]
    BadLength,
    #[error("truncated packet")]
    Truncated,
    #[error("unexpected packet id {0:#04x}")]
    UnexpectedId(i32),
    #[error("invalid string")]
    BadString,
    #[error("unknown next state {0}")]
    BadNextState(i32),
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtocolError::Closed
        } else {
            ProtocolError::Io(e.to_string())
        }
    }
}

/// Decodes a VarInt from the start of `buf`: `Ok(None)` if more bytes are needed.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(i32, usize)>, ProtocolError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some(&b) = buf.get(i) else { return Ok(None) };
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value as i32, i + 1)));
        }
    }
    Err(ProtocolError::VarIntTooLong)
}

pub fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut v = v as u32;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A cursor over one packet's body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn varint(&mut self) -> Result<i32, ProtocolError> {
        match decode_varint(&self.buf[self.pos..])? {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(ProtocolError::Truncated),
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(ProtocolError::Truncated)?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// A string of at most `max_chars` characters (its byte length ≤ 4 × that).
    pub fn string(&mut self, max_chars: usize) -> Result<&'a str, ProtocolError> {
        let len = self.varint()?;
        if len < 0 || len as usize > max_chars * 4 {
            return Err(ProtocolError::BadString);
        }
        let s = std::str::from_utf8(self.bytes(len as usize)?).map_err(|_| ProtocolError::BadString)?;
        if s.chars().count() > max_chars {
            return Err(ProtocolError::BadString);
        }
        Ok(s)
    }

    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn bool(&mut self) -> Result<bool, ProtocolError> {
        Ok(self.bytes(1)?[0] != 0)
    }

    pub fn rest(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// One frame read from the wire: its packet id, its body after the id, and the exact bytes
/// (length prefix included) to replay to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub id: i32,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

/// Reads one uncompressed frame of at most `max` bytes. Reads the length byte by byte (at most
/// 5), so nothing is buffered beyond the frame; the caller puts a deadline around it.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, ProtocolError> {
    let mut raw = Vec::with_capacity(8);
    let len = loop {
        let b = r.read_u8().await?;
        raw.push(b);
        if let Some((len, _)) = decode_varint(&raw)? {
            break len;
        }
    };
    if len <= 0 {
        return Err(ProtocolError::BadLength);
    }
    if len as usize > max {
        return Err(ProtocolError::TooLong { len: i64::from(len), max });
    }
    let head = raw.len();
    raw.resize(head + len as usize, 0);
    r.read_exact(&mut raw[head..]).await?;
    let mut body = Reader::new(&raw[head..]);
    let id = body.varint()?;
    let at = head + body.pos;
    Ok(Frame { id, body: raw[at..].to_vec(), raw })
}

/// Encodes a packet: length, id, body.
pub fn frame(id: i32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(body.len() + 5);
    write_varint(&mut inner, id);
    inner.extend_from_slice(body);
    let mut out = Vec::with_capacity(inner.len() + 5);
    write_varint(&mut out, inner.len() as i32);
    out.extend_from_slice(&inner);
    out
}

pub fn write_string(out: &mut Vec<u8>, s: &str) {
    write_varint(out, s.len() as i32);
    out.extend_from_slice(s.as_bytes());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextState {
    Status,
    Login,
    /// 1.20.5+: a transfer from another server (handled as a login).
    Transfer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub protocol: i32,
    /// As the client sent it (with any FML marker or port).
    pub address: String,
    pub port: u16,
    pub next: NextState,
}

pub fn parse_handshake(f: &Frame) -> Result<Handshake, ProtocolError> {
    if f.id != 0 {
        return Err(ProtocolError::UnexpectedId(f.id));
    }
    let mut r = Reader::new(&f.body);
    let protocol = r.varint()?;
    let address = r.string(MAX_HANDSHAKE / 4)?.to_owned();
    let port = r.u16()?;
    let next = match r.varint()? {
        1 => NextState::Status,
        2 => NextState::Login,
        3 => NextState::Transfer,
        n => return Err(ProtocolError::BadNextState(n)),
    };
    Ok(Handshake { protocol, address, port, next })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginStart {
    pub name: String,
    /// Sent by 1.19.1+ clients (optional until 1.20.2).
    pub uuid: Option<[u8; 16]>,
}

/// Login start of any version: the name always comes first; the UUID's place depends on the
/// protocol version (760: after the optional signature data; 761–763: optional; 764+: always).
pub fn parse_login_start(f: &Frame, protocol: i32) -> Result<LoginStart, ProtocolError> {
    if f.id != 0 {
        return Err(ProtocolError::UnexpectedId(f.id));
    }
    let mut r = Reader::new(&f.body);
    let name = r.string(16)?.to_owned();
    if name.is_empty() {
        return Err(ProtocolError::BadString);
    }
    let uuid = |r: &mut Reader| -> Result<[u8; 16], ProtocolError> { Ok(r.bytes(16)?.try_into().expect("16 bytes")) };
    let uuid = match protocol {
        759 | 760 => {
            if r.bool()? {
                r.bytes(8)?; // timestamp
                let key = r.varint()?;
                if !(0..=512).contains(&key) {
                    return Err(ProtocolError::BadLength);
                }
                r.bytes(key as usize)?;
                let sig = r.varint()?;
                if !(0..=4096).contains(&sig) {
                    return Err(ProtocolError::BadLength);
                }
                r.bytes(sig as usize)?;
            }
            if protocol == 760 && r.rest() > 0 && r.bool()? {
                Some(uuid(&mut r)?)
            } else {
                None
            }
        }
        761..=763 => {
            if r.rest() > 0 && r.bool()? {
                Some(uuid(&mut r)?)
            } else {
                None
            }
        }
        p if p >= 764 => Some(uuid(&mut r)?),
        _ => None,
    };
    Ok(LoginStart { name, uuid })
}

/// A JSON text component with plain text.
pub fn text_component(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// The login-state disconnect (packet 0x00 with a JSON text component, in every version).
pub fn login_disconnect(text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    write_string(&mut body, &text_component(text));
    frame(0x00, &body)
}

/// A status response (packet 0x00, JSON).
pub fn status_response(json: &str) -> Vec<u8> {
    let mut body = Vec::new();
    write_string(&mut body, json);
    frame(0x00, &body)
}

/// The status JSON a client's server list shows.
pub fn status_json(version: &str, protocol: i32, online: u32, max: u32, motd: &str, favicon: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "version": { "name": version, "protocol": protocol },
        "players": { "max": max, "online": online },
        "description": { "text": motd },
    });
    if let Some(f) = favicon {
        v["favicon"] = serde_json::Value::String(f.to_owned());
    }
    v.to_string()
}

/// The answer to a legacy (0xFE) ping: a kick packet with `§1`, protocol, version, MOTD,
/// players and max separated by NULs, in UTF-16BE (what 1.4–1.6 clients and newer clients'
/// fallback read).
pub fn legacy_status(protocol: i32, version: &str, motd: &str, online: u32, max: u32) -> Vec<u8> {
    let text = format!("§1\0{protocol}\0{version}\0{motd}\0{online}\0{max}");
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out = vec![0xFF];
    out.extend_from_slice(&(units.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for u in units.iter().take(u16::MAX as usize) {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

/// The host name a handshake asks for: lower case, without a Forge/FML or forwarding suffix
/// (after a NUL), a trailing dot or a port.
pub fn normalise_host(address: &str) -> String {
    let host = address.split('\0').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(protocol: i32, host: &str, port: u16, next: i32) -> Vec<u8> {
        let mut b = Vec::new();
        write_varint(&mut b, protocol);
        write_string(&mut b, host);
        b.extend_from_slice(&port.to_be_bytes());
        write_varint(&mut b, next);
        frame(0, &b)
    }

    async fn read(bytes: &[u8], max: usize) -> Result<Frame, ProtocolError> {
        read_frame(&mut &bytes[..], max).await
    }

    #[tokio::test]
    async fn a_handshake_round_trips_and_keeps_its_raw_bytes() {
        let raw = handshake(767, "Survival.Alice.play.example.net.\0FML2\0", 25565, 2);
        let f = read(&raw, MAX_HANDSHAKE).await.unwrap();
        assert_eq!(f.raw, raw);
        let h = parse_handshake(&f).unwrap();
        assert_eq!((h.protocol, h.port, h.next), (767, 25565, NextState::Login));
        assert_eq!(normalise_host(&h.address), "survival.alice.play.example.net");
    }

    #[test]
    fn varints_match_the_protocol_examples() {
        for (v, bytes) in [
            (0, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (25565, vec![0xdd, 0xc7, 0x01]),
            (2147483647, vec![0xff, 0xff, 0xff, 0xff, 0x07]),
            (-1, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(decode_varint(&bytes).unwrap(), Some((v, bytes.len())));
        }
        assert_eq!(decode_varint(&[0x80, 0x80]).unwrap(), None);
        assert_eq!(decode_varint(&[0xff; 6]), Err(ProtocolError::VarIntTooLong));
    }

    #[tokio::test]
    async fn hostile_frames_are_refused_before_anything_is_allocated() {
        // A 6-byte VarInt, a 2 GB length, a negative length, an empty one.
        assert_eq!(read(&[0xff; 6], MAX_HANDSHAKE).await, Err(ProtocolError::VarIntTooLong));
        let mut two_gb = Vec::new();
        write_varint(&mut two_gb, 2_000_000_000);
        assert!(matches!(read(&two_gb, MAX_HANDSHAKE).await, Err(ProtocolError::TooLong { .. })));
        assert_eq!(read(&[0xff, 0xff, 0xff, 0xff, 0x0f], MAX_HANDSHAKE).await, Err(ProtocolError::BadLength));
        assert_eq!(read(&[0x00], MAX_HANDSHAKE).await, Err(ProtocolError::BadLength));
        // A frame that promises more than it sends.
        assert_eq!(read(&[0x05, 0x00, 0x01], MAX_HANDSHAKE).await, Err(ProtocolError::Closed));
    }

    #[test]
    fn login_start_of_every_version_gives_the_name_and_the_uuid_where_sent() {
        let uuid = [7u8; 16];
        let with = |protocol: i32, tail: &[u8]| {
            let mut b = Vec::new();
            write_string(&mut b, "Steve");
            b.extend_from_slice(tail);
            let f = Frame { id: 0, body: b, raw: vec![] };
            parse_login_start(&f, protocol).unwrap()
        };
        assert_eq!(with(340, &[]).uuid, None); // 1.12
        assert_eq!(with(759, &[0]).uuid, None); // 1.19, no signature
        let mut t = vec![0, 1];
        t.extend_from_slice(&uuid);
        assert_eq!(with(760, &t).uuid, Some(uuid)); // 1.19.2
        let mut t = vec![1];
        t.extend_from_slice(&uuid);
        assert_eq!(with(763, &t).uuid, Some(uuid)); // 1.20.1
        assert_eq!(with(767, &uuid).uuid, Some(uuid)); // 1.21
        assert_eq!(with(767, &uuid).name, "Steve");
        let long = Frame {
            id: 0,
            body: {
                let mut b = Vec::new();
                write_string(&mut b, "x".repeat(17).as_str());
                b
            },
            raw: vec![],
        };
        assert_eq!(parse_login_start(&long, 767), Err(ProtocolError::BadString));
    }

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(normalise_host("MC.Example.NET."), "mc.example.net");
        assert_eq!(normalise_host("mc.example.net:25565"), "mc.example.net");
        assert_eq!(normalise_host("mc.example.net\0FML\0"), "mc.example.net");
        assert_eq!(normalise_host("mc.example.net.\0FML3\0"), "mc.example.net");
    }

    #[test]
    fn the_legacy_answer_is_utf16_with_its_length_in_characters() {
        let b = legacy_status(127, "1.21", "hi", 0, 20);
        assert_eq!(b[0], 0xFF);
        let n = u16::from_be_bytes([b[1], b[2]]) as usize;
        assert_eq!(b.len(), 3 + 2 * n);
        let units: Vec<u16> = b[3..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(String::from_utf16(&units).unwrap(), "§1\u{0}127\u{0}1.21\u{0}hi\u{0}0\u{0}20");
    }
}
