//! Hostile connections by the hundred beside well-behaved psql sessions:
//! every psql session keeps answering and the gateway stays under its
//! memory bound. The suite runs a small version; the full one (1,000
//! hostile, 50 psql) is the same test with STRESS_HOSTILE=1000
//! STRESS_PSQL=50 STRESS_SECONDS=30, and prints its measurements.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use velo_integration::raw::{cstr, startup_body, Raw};
use velo_integration::{run_script, Gateway};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn startup_packet(user: &str) -> Vec<u8> {
    let body = startup_body(user);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// One hostile client of kind `kind % 5`, until `stop`.
fn hostile(gw: &(String, u16), kind: usize, stop: &AtomicBool) {
    let Ok(mut s) = TcpStream::connect((gw.0.as_str(), gw.1)) else {
        return;
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let pause = || std::thread::sleep(Duration::from_millis(100));
    match kind % 5 {
        // Silent: holds a socket and says nothing.
        0 => {}
        // Slow login: the startup packet a byte at a time.
        1 => {
            for b in startup_packet("slow") {
                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    return;
                }
                pause();
            }
        }
        // Oversized: logs in, then claims a gigabyte of query.
        2 => {
            let _ = s.write_all(&startup_packet("big"));
            let _ = s.read(&mut sink);
            let _ = s.write_all(b"Q");
            let _ = s.write_all(&0x4000_0000i32.to_be_bytes());
            let junk = vec![b'x'; 64 << 10];
            while !stop.load(Ordering::Relaxed) && s.write_all(&junk).is_ok() {}
        }
        // Malformed: logs in, then sends a message whose length lies.
        3 => {
            let _ = s.write_all(&startup_packet("bad"));
            let _ = s.read(&mut sink);
            let _ = s.write_all(b"S\0\0\0\x08Q\0\0\0");
        }
        // Flooding: runs a query that sends nothing, then floods bytes.
        _ => {
            let _ = s.write_all(&startup_packet("flood"));
            let _ = s.read(&mut sink);
            let mut q = b"Q".to_vec();
            let sql = cstr("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES");
            q.extend(((sql.len() + 4) as i32).to_be_bytes());
            q.extend(sql);
            let _ = s.write_all(&q);
            let junk = vec![b'y'; 64 << 10];
            while !stop.load(Ordering::Relaxed) && s.write_all(&junk).is_ok() {}
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let _ = s.read(&mut sink);
        pause();
    }
}

#[test]
fn hostile_connections_beside_psql_sessions() {
    let hostile_count = env("STRESS_HOSTILE", 200) as usize;
    let psql_count = env("STRESS_PSQL", 8) as usize;
    let seconds = env("STRESS_SECONDS", 6);
    let gw = Gateway::start(&[
        "--max-connections",
        &(hostile_count + psql_count + 50).to_string(),
        "--authentication-timeout",
        "60s",
        // What keeps the flooding user from taking every engine slot.
        "--max-queries-per-user",
        "8",
    ]);
    let (_, _, _) = Raw::startup(&gw);
    let baseline = gw.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = (gw.host.clone(), gw.port);
    let attackers: Vec<_> = (0..hostile_count)
        .map(|i| {
            let (stop, addr) = (stop.clone(), addr.clone());
            std::thread::spawn(move || hostile(&addr, i, &stop))
        })
        .collect();
    let started = Instant::now();
    let mut peak = baseline;
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let sessions: Vec<_> = (0..psql_count)
            .map(|i| {
                // Each its own user: the per-user bound is for the flooders.
                let cmd = gw.psql(&format!("user{i}"));
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let out = run_script(
                        cmd,
                        "SELECT 1;\nSELECT count(*) > 0 FROM pg_catalog.pg_type;\n\
                         SELECT symbol FROM trades EMIT CHANGES LIMIT 3;\n",
                    );
                    (out, t.elapsed())
                })
            })
            .collect();
        for session in sessions {
            let (out, took) = session.join().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success()
                    && stdout.lines().take(2).collect::<Vec<_>>() == ["1", "t"]
                    && stdout.lines().count() == 5,
                "a well-behaved session failed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            worst = worst.max(took);
        }
        rounds += 1;
        peak = peak.max(gw.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    println!(
        "{hostile_count} hostile connections, {psql_count} psql sessions x {rounds} rounds: \
         slowest psql session {worst:?}, gateway RSS {baseline} KiB at rest, peak {peak} KiB"
    );
    assert!(
        worst < Duration::from_secs(10),
        "slowest psql session {worst:?}"
    );
    // Bounded per hostile connection: no more than 64 KiB each beyond the baseline.
    let bound = baseline + 64 * 1024 + hostile_count as u64 * 64;
    assert!(peak < bound, "peak {peak} KiB over the bound {bound} KiB");
}
