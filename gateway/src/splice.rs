//! Copying a player's connection both ways with back-pressure, holding a buffer only while
//! bytes flow: an idle connection (most of them: a player standing still sends little) costs
//! its two sockets and its task, not two 8 KiB buffers as `tokio::io::copy_bidirectional`'s.
//! Buffers come from a small shared pool, so a chatty connection does not allocate per packet.

use std::io;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const BUF: usize = 32 * 1024;
/// Buffers kept for reuse at most (the rest are freed).
const POOL_MAX: usize = 256;

static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

fn take() -> Box<[u8]> {
    POOL.lock().unwrap().pop().unwrap_or_else(|| vec![0u8; BUF].into_boxed_slice())
}

fn give(b: Box<[u8]>) {
    let mut p = POOL.lock().unwrap();
    if p.len() < POOL_MAX {
        p.push(b);
    }
}

/// Copies `from` to `to` until `from` ends (then `to` is shut down): the bytes copied.
async fn pump(from: OwnedReadHalf, mut to: OwnedWriteHalf) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let mut buf = take();
        let burst = loop {
            match from.try_read(&mut buf) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    if let Err(e) = to.write_all(&buf[..n]).await {
                        break Err(e);
                    }
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        give(buf);
        if burst? {
            let _ = to.shutdown().await;
            return Ok(total);
        }
    }
}

/// Splices `a` and `b` until both directions ended: (bytes a → b, bytes b → a).
pub async fn splice(a: TcpStream, b: TcpStream) -> (u64, u64) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let (up, down) = tokio::join!(pump(ar, bw), pump(br, aw));
    (up.unwrap_or(0), down.unwrap_or(0))
}
