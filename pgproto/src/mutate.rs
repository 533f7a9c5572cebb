//! Test support: deterministic mutations of seed inputs (bit flips, byte
//! changes, insertions, deletions, truncations, splices), for the tests
//! that feed every decoder and parser hostile bytes and check what each
//! must still guarantee. Coverage-guided fuzzing goes further; these run
//! in every test run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `count` inputs derived from `seeds`, the same on every run.
pub fn mutations(seeds: &[&[u8]], count: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let interesting: &[&[u8]] = &[
        b"(",
        b")",
        b";",
        b"'",
        b"\"",
        b"$$",
        b"$a$",
        b"--",
        b"/*",
        b"*/",
        b"\\",
        b"\0",
        b"\xff",
        b"\xc3",
        b"e'",
        b"\xff\xff\xff\xff",
        b"\x7f\xff\xff\xff",
        b"\x00\x00\x00\x00",
    ];
    (0..count)
        .map(|_| {
            let mut input = seeds[rng.random_range(0..seeds.len())].to_vec();
            for _ in 0..rng.random_range(1..=4) {
                let at = if input.is_empty() {
                    0
                } else {
                    rng.random_range(0..input.len())
                };
                match rng.random_range(0..6) {
                    0 if !input.is_empty() => input[at] ^= 1 << rng.random_range(0..8),
                    1 if !input.is_empty() => input[at] = rng.random(),
                    2 => {
                        let piece = interesting[rng.random_range(0..interesting.len())];
                        input.splice(at..at, piece.iter().copied());
                    }
                    3 if !input.is_empty() => {
                        input.remove(at);
                    }
                    4 => input.truncate(at),
                    _ => {
                        let other = seeds[rng.random_range(0..seeds.len())];
                        let from = rng.random_range(0..=other.len());
                        input.splice(at..at, other[from..].iter().copied());
                    }
                }
            }
            input
        })
        .collect()
}
