//! Crash safety (root only): `onggi run -d` killed with SIGKILL at random moments
//! leaves each container whole (listed, its directory, its row) or absent (nothing
//! of it anywhere); many `run -d` and `rm -f` at once leave a consistent store. The
//! engine's own check ([`onggi_engine::Engine::inconsistencies`]) must come back
//! empty, and once everything is removed nothing may be left: no mount, cgroup,
//! process, directory, row or image hold.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Onggi;

/// A small pseudo-random generator (PCG's multiplier), seeded from the clock; the
/// seed is printed so that a failing sequence of kills can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("ONGGI_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok());
        let seed = seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        eprintln!("ONGGI_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Poll the engine's check until it finds nothing wrong (what a killed command
/// forked may still be finishing: a monitor starting, a container made without one);
/// the problems if it never does.
fn settled(o: &Onggi) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let problems = o.engine().inconsistencies().unwrap();
        if problems.is_empty() || Instant::now() > deadline {
            return problems;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_run_leaves_a_whole_container_or_none() {
    let Some(o) = Onggi::new("crash-kill") else {
        return;
    };
    // How long a `run -d` takes here (the second one: the first fills caches); the
    // kills are spread over that, and a little after.
    o.ok(&["run", "-d", "--name", "warm", "busybox", "sleep", "1000"]);
    let t = Instant::now();
    o.ok(&["run", "-d", "--name", "warm2", "busybox", "sleep", "1000"]);
    let took = t.elapsed().as_micros() as u64;
    let mut rng = Rng::new();
    let out = o.dir.path().join("killed");
    for i in 0..20 {
        let name = format!("k{i}");
        let mut c = o
            .command(
                &["run", "-d", "--name", &name, "busybox", "sleep", "1000"],
                &out,
            )
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(took + took / 4)));
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
    }
    // Before anything sweeps: directories that no row owns (killed creates).
    let rows = onggi_engine::db::Db::open(&o.data().join("engine.db"))
        .unwrap()
        .list()
        .unwrap()
        .len();
    let dirs = std::fs::read_dir(o.data().join("containers"))
        .unwrap()
        .count();
    let problems = settled(&o);
    assert!(problems.is_empty(), "{problems:#?}");
    let v: serde_json::Value =
        serde_json::from_str(&o.ok(&["ps", "-a", "--format", "json"])).unwrap();
    let listed = v.as_array().unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for c in listed {
        let id = c["id"].as_str().unwrap();
        assert!(o
            .data()
            .join("containers")
            .join(id)
            .join("config.json")
            .exists());
        *seen
            .entry(c["state"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let absent = 22 - listed.len();
    eprintln!(
        "20 kills within {took} µs: {seen:?}, {absent} absent ({} directories without a row swept)",
        dirs - rows
    );
    // Whatever is listed still works: started, it runs.
    for c in listed.iter().filter(|c| c["state"] == "created") {
        o.ok(&["start", c["id"].as_str().unwrap()]);
    }
    o.remove_all_and_check(&[]);
}

#[test]
fn parallel_runs_and_removals_leave_a_consistent_store() {
    let Some(o) = Onggi::new("crash-parallel") else {
        return;
    };
    let (threads, rounds) = (20, 5);
    let t = Instant::now();
    // Each thread: (what failed, the ids it made).
    let done: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|s| {
        let o = &o;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (mut failed, mut ids) = (Vec::new(), Vec::new());
                    for i in 0..rounds {
                        let name = format!("p{t}-{i}");
                        for args in [
                            &["run", "-d", "--name", &name, "busybox", "sleep", "1000"][..],
                            &["rm", "-f", &name],
                        ] {
                            let r = o.onggi(args);
                            if r.code != 0 {
                                failed.push(format!("{args:?}: {}", r.stderr.trim()));
                            } else if args[0] == "run" {
                                ids.push(r.stdout.trim().to_owned());
                            }
                        }
                    }
                    (failed, ids)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    eprintln!("{} run -d + rm -f in {:?}", threads * rounds, t.elapsed());
    let failures: Vec<&String> = done.iter().flat_map(|d| &d.0).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(o.ids().is_empty());
    let problems = settled(&o);
    assert!(problems.is_empty(), "{problems:#?}");
    let ids: Vec<String> = done.into_iter().flat_map(|d| d.1).collect();
    assert_eq!(ids.len(), threads * rounds);
    o.remove_all_and_check(&ids);
}
