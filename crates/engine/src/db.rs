//! Container metadata in SQLite (WAL): safe when many `onggi` commands run at
//! once, each its own connection; a write waits for the others (busy timeout)
//! instead of failing.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A container's lifecycle as the engine records it (Docker's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Made, never started (or being started).
    Created,
    /// Its init runs under a monitor.
    Running,
    /// Frozen.
    Paused,
    /// Its init has exited (exit code and cause recorded).
    Exited,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "paused" => State::Paused,
            "exited" => State::Exited,
            _ => State::Created,
        }
    }
}

/// One container's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image id (config digest).
    pub image: String,
    /// The image as the user named it.
    pub image_ref: String,
    /// What `run`/`create` was asked for (JSON of [`crate::spec::RunOptions`]).
    pub config: serde_json::Value,
    /// RFC 3339.
    pub created: String,
    /// Lifecycle state.
    pub state: State,
    /// The init's host PID while running.
    pub pid: Option<i32>,
    /// The monitor's PID while running.
    pub monitor_pid: Option<i32>,
    /// The monitor's start time (field 22 of /proc/PID/stat), against PID reuse.
    pub monitor_start: Option<u64>,
    /// RFC 3339, last start.
    pub started_at: Option<String>,
    /// RFC 3339, last exit.
    pub finished_at: Option<String>,
    /// The last exit code (128 + signal when killed).
    pub exit_code: Option<i32>,
    /// Why it stopped when the process did not say (`monitor died`...).
    pub exit_cause: Option<String>,
    /// Restarts done by the restart policy.
    pub restart_count: u32,
}

/// An open database.
pub struct Db {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_ref TEXT NOT NULL,
    config TEXT NOT NULL,
    created TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    monitor_pid INTEGER,
    monitor_start INTEGER,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    exit_cause TEXT,
    restart_count INTEGER NOT NULL DEFAULT 0
);
";

const COLUMNS: &str = "id, name, image, image_ref, config, created, state, pid, monitor_pid, \
                       monitor_start, started_at, finished_at, exit_code, exit_cause, restart_count";

/// Whether the database file at `path` is in WAL mode: bytes 18 and 19 of its
/// header (the file format's read and write versions) are 2 (sqlite.org/fileformat2.html).
fn is_wal(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head.starts_with(b"SQLite format 3\0") && head[18] == 2 && head[19] == 2)
}

fn sql(step: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        step: step.to_owned(),
        source,
    }
}

impl Db {
    /// Open (and make) the database at `path`.
    ///
    /// Every command opens it once, so opening is on the hot path of `run -d`:
    /// a database already set up (its header says WAL, which is set after the
    /// schema) skips the schema and the WAL switch, and closing does not
    /// checkpoint (SQLite's checkpoint on close fsyncs the WAL and the database
    /// and truncates the WAL for the next writer to grow again: two fsyncs per
    /// command). The WAL is checkpointed instead by the commit that grows it past
    /// 64 pages: not SQLite's 1000, as the first opener (every command, as no
    /// process keeps the database open) rebuilds the WAL's index by reading it all.
    pub fn open(path: &Path) -> Result<Db> {
        let ready = is_wal(path);
        let conn = Connection::open(path).map_err(sql(&format!("open {}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("set the busy timeout"))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(sql("keep the WAL at close"))?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 64; \
             PRAGMA journal_size_limit = 1048576;",
        )
        .map_err(sql("set synchronous"))?;
        if ready {
            return Ok(Db { conn });
        }
        conn.execute_batch(SCHEMA)
            .map_err(sql("create the schema"))?;
        // The first openers of a new database race to switch it to WAL, and SQLite
        // answers that race with BUSY at once, not through the busy timeout.
        let mut tries = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            let busy = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy);
            tries += 1;
            if !busy || tries == 200 {
                return Err(sql("switch to WAL")(e));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(Db { conn })
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
        let config: String = r.get(4)?;
        let state: String = r.get(6)?;
        Ok(Record {
            id: r.get(0)?,
            name: r.get(1)?,
            image: r.get(2)?,
            image_ref: r.get(3)?,
            config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
            created: r.get(5)?,
            state: State::parse(&state),
            pid: r.get(7)?,
            monitor_pid: r.get(8)?,
            monitor_start: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            started_at: r.get(10)?,
            finished_at: r.get(11)?,
            exit_code: r.get(12)?,
            exit_cause: r.get(13)?,
            restart_count: r.get::<_, i64>(14)? as u32,
        })
    }

    /// Add a container; its name must be free ([`Error::NameInUse`] otherwise).
    pub fn insert(&self, c: &Record) -> Result<()> {
        let r = self.conn.execute(
            &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                c.id,
                c.name,
                c.image,
                c.image_ref,
                c.config.to_string(),
                c.created,
                c.state.as_str(),
                c.pid,
                c.monitor_pid,
                c.monitor_start.map(|v| v as i64),
                c.started_at,
                c.finished_at,
                c.exit_code,
                c.exit_cause,
                c.restart_count as i64
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::NameInUse(c.name.clone()))
            }
            Err(e) => Err(sql("insert a container")(e)),
        }
    }

    /// Save every field of `c` (by id).
    pub fn update(&self, c: &Record) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET state = ?2, pid = ?3, monitor_pid = ?4, monitor_start = ?5, \
                 started_at = ?6, finished_at = ?7, exit_code = ?8, exit_cause = ?9, restart_count = ?10 \
                 WHERE id = ?1",
                params![
                    c.id,
                    c.state.as_str(),
                    c.pid,
                    c.monitor_pid,
                    c.monitor_start.map(|v| v as i64),
                    c.started_at,
                    c.finished_at,
                    c.exit_code,
                    c.exit_cause,
                    c.restart_count as i64
                ],
            )
            .map_err(sql("update a container"))?;
        Ok(())
    }

    /// Remove a container's row.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", params![id])
            .map_err(sql("delete a container"))?;
        Ok(())
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM containers ORDER BY created DESC"
            ))
            .map_err(sql("list containers"))?;
        let rows = st.query_map([], Db::row).map_err(sql("list containers"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql("list containers"))
    }

    /// The container a name, an id or an id prefix names.
    pub fn find(&self, what: &str) -> Result<Record> {
        let by_name = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                params![what],
                Db::row,
            )
            .optional()
            .map_err(sql("find a container"))?;
        if let Some(r) = by_name {
            return Ok(r);
        }
        if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchContainer(what.to_owned()));
        }
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM containers WHERE id LIKE ?1 || '%' LIMIT 2"
            ))
            .map_err(sql("find a container"))?;
        let hits = st
            .query_map(params![what.to_ascii_lowercase()], Db::row)
            .map_err(sql("find a container"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql("find a container"))?;
        match hits.len() {
            1 => Ok(hits.into_iter().next().expect("one")),
            0 => Err(Error::NoSuchContainer(what.to_owned())),
            _ => Err(Error::Ambiguous(what.to_owned())),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A created container's row, for tests.
    pub(crate) fn record(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            image: "sha256:x".into(),
            image_ref: "busybox".into(),
            config: serde_json::json!({"cmd": ["true"]}),
            created: format!("2026-11-22T00:00:0{}Z", id.len() % 10),
            state: State::Created,
            pid: None,
            monitor_pid: None,
            monitor_start: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            exit_cause: None,
            restart_count: 0,
        }
    }

    #[test]
    fn names_are_unique_and_ids_resolve_by_prefix() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("engine.db")).unwrap();
        db.insert(&record("abc123", "web")).unwrap();
        db.insert(&record("abd456", "db")).unwrap();
        assert!(matches!(db.insert(&record("fff", "web")), Err(Error::NameInUse(n)) if n == "web"));
        assert_eq!(db.find("web").unwrap().id, "abc123");
        assert_eq!(db.find("abc").unwrap().name, "web");
        assert!(matches!(db.find("ab"), Err(Error::Ambiguous(_))));
        assert!(matches!(db.find("zzz"), Err(Error::NoSuchContainer(_))));
        let mut r = db.find("db").unwrap();
        r.state = State::Exited;
        r.exit_code = Some(3);
        db.update(&r).unwrap();
        assert_eq!(db.find("abd").unwrap(), r);
        db.delete("abd456").unwrap();
        assert_eq!(db.list().unwrap().len(), 1);
    }

    /// Many connections writing at once (as many `onggi` commands do): every write lands.
    #[test]
    fn concurrent_writers_wait_for_each_other() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("engine.db");
        Db::open(&path).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = path.clone();
                s.spawn(move || {
                    let db = Db::open(&path).unwrap();
                    for i in 0..25 {
                        db.insert(&record(&format!("{t:02x}{i:04x}"), &format!("c{t}-{i}")))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(Db::open(&path).unwrap().list().unwrap().len(), 200);
    }
}
