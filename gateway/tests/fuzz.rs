//! Fuzzing the parser of untrusted input: a million random and mutated inputs (seeded, so a
//! failure replays: `CONDUCTOR_FUZZ_SEED`, `CONDUCTOR_FUZZ_CASES`) through the same frame
//! reader and packet parsers a connection uses — no panic, no hang, and nothing allocated
//! beyond the limit of the state the input is read in.

use conductor_gateway::protocol::*;
use rand::{Rng, SeedableRng};

/// Valid packets of every kind to mutate from.
fn seeds() -> Vec<Vec<u8>> {
    let hs = |p: i32, host: &str, next: i32| {
        let mut b = Vec::new();
        write_varint(&mut b, p);
        write_string(&mut b, host);
        b.extend_from_slice(&25565u16.to_be_bytes());
        write_varint(&mut b, next);
        frame(0, &b)
    };
    let login = |name: &str, tail: &[u8]| {
        let mut b = Vec::new();
        write_string(&mut b, name);
        b.extend_from_slice(tail);
        frame(0, &b)
    };
    vec![
        hs(47, "lobby.alice.play.example.net", 1),
        hs(767, "mc.example.org\0FML2\0", 2),
        hs(766, "x.y", 3),
        login("Steve", &[]),
        login("Alex", &[1; 17]),
        login("Alex", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]),
        frame(0, &[]),
        frame(1, &42i64.to_be_bytes()),
    ]
}

fn mutate(rng: &mut impl Rng, mut b: Vec<u8>) -> Vec<u8> {
    // Zero to three changes: some inputs stay valid (the deep paths), most are broken.
    for _ in 0..rng.random_range(0..=3) {
        match rng.random_range(0..6) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            2 => {
                let i = rng.random_range(0..=b.len());
                b.insert(i, rng.random());
            }
            3 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b.remove(i);
            }
            4 => b.truncate(rng.random_range(0..=b.len())),
            _ => {
                // A hostile length prefix.
                let mut head = Vec::new();
                write_varint(&mut head, rng.random());
                b.splice(0..b.len().min(1), head);
            }
        }
    }
    b
}

fn random(rng: &mut impl Rng) -> Vec<u8> {
    let n = rng.random_range(0..64);
    (0..n).map(|_| rng.random()).collect()
}

/// What a connection does with the bytes, state by state.
/// How deep the input got: frames read, and whether a handshake parsed.
async fn parse(input: &[u8], deep: &std::cell::Cell<(u64, u64)>) {
    let mut r = input;
    let limits = [MAX_HANDSHAKE, MAX_LOGIN_START, MAX_SMALL];
    for (i, max) in limits.iter().enumerate() {
        let Ok(f) = read_frame(&mut r, *max).await else { return };
        deep.set((deep.get().0 + 1, deep.get().1));
        assert!(f.raw.len() <= max + 5, "a frame over its limit was read");
        assert!(f.raw.len() <= input.len(), "more bytes than the input");
        match i {
            0 => {
                if let Ok(h) = parse_handshake(&f) {
                    deep.set((deep.get().0, deep.get().1 + 1));
                    let host = normalise_host(&h.address);
                    assert!(host.len() <= h.address.len());
                    let _ = parse_login_start(&f, h.protocol);
                }
            }
            _ => {
                for p in [47, 759, 760, 761, 763, 764, 767] {
                    let _ = parse_login_start(&f, p);
                }
            }
        }
    }
}

#[test]
fn a_million_random_and_mutated_inputs_never_panic_or_overread() {
    let seed: u64 = std::env::var("CONDUCTOR_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cases: u64 = std::env::var("CONDUCTOR_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let seeds = seeds();
    let mut parsed = 0u64;
    let deep = std::cell::Cell::new((0u64, 0u64));
    rt.block_on(async {
        for case in 0..cases {
            let input = if case % 4 == 0 {
                random(&mut rng)
            } else {
                let pick = rng.random_range(0..seeds.len());
                let mut b = mutate(&mut rng, seeds[pick].clone());
                // Often a whole connection: handshake, then login start or status.
                if case % 3 == 0 {
                    let next = rng.random_range(3..seeds.len());
                    b.extend(mutate(&mut rng, seeds[next].clone()));
                }
                b
            };
            let ok = std::panic::AssertUnwindSafe(parse(&input, &deep));
            let r = futures_lite_catch(ok).await;
            if r.is_err() {
                panic!("case {case} (seed {seed}) panicked on {input:02x?}");
            }
            parsed += 1;
        }
    });
    assert_eq!(parsed, cases);
    // The mutations keep many inputs deep enough to test the packet parsers, not only framing.
    let (frames, handshakes) = deep.get();
    assert!(frames > cases / 3 && handshakes > cases / 20, "{frames} frames, {handshakes} handshakes");
}

/// Runs the future, turning a panic into an error (the input is printed by the caller).
async fn futures_lite_catch(f: std::panic::AssertUnwindSafe<impl std::future::Future<Output = ()>>) -> Result<(), ()> {
    // The parser is synchronous under the hood (reads from a slice never wait): poll once.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f.0);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(&mut cx))) {
        Ok(std::task::Poll::Ready(())) => Ok(()),
        Ok(std::task::Poll::Pending) => panic!("reading from memory never waits (a hang)"),
        Err(_) => Err(()),
    }
}
