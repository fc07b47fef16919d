//! One command at a time on a container's lifecycle: an exclusive `flock` on the
//! container's directory (`DATA/containers/<id>`), no lock file to leave behind.
//!
//! Held by whoever changes what runs: `create` until its row is in, `start` until
//! the container runs under its monitor, the command that records an exit, and the
//! restart policy from its decision to its start. Readers (`ps`, `inspect`) take
//! it only on their slow path, when they find an exit to record. A process that
//! dies holding it releases it (the kernel closes its descriptors), so a killed
//! `onggi` never blocks the others; that is also how the sweep ([`super::sweep`])
//! tells a container being made from one whose maker was killed.
//!
//! The lock is re-entrant per thread: `start` holds it and calls `refresh`, which
//! takes it again. The forked monitor inherits the descriptor until its `execve`
//! (close-on-exec), so a start holds the lock until its container runs.

use std::cell::RefCell;
use std::fs::{File, TryLockError};

use super::Engine;
use crate::error::{Context, Error, Result};

thread_local! {
    /// The containers this thread holds the lock of.
    static HELD: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A held container lock; released on drop.
#[derive(Debug)]
pub(crate) struct ContainerLock {
    id: String,
    /// `None` when this thread already held the lock (re-entered).
    file: Option<File>,
}

impl ContainerLock {
    /// Whether this thread held the lock already when it asked again.
    pub(crate) fn reentered(&self) -> bool {
        self.file.is_none()
    }
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        if self.file.is_some() {
            HELD.with(|h| h.borrow_mut().retain(|i| *i != self.id));
        }
    }
}

impl Engine {
    /// Wait for and take container `id`'s lock. [`Error::NoSuchContainer`] when its
    /// directory is gone (removed meanwhile).
    pub(crate) fn lock(&self, id: &str) -> Result<ContainerLock> {
        Ok(self.lock_with(id, true)?.expect("a blocking lock is taken"))
    }

    /// Take container `id`'s lock if nobody holds it; `None` if somebody does.
    pub(crate) fn try_lock(&self, id: &str) -> Result<Option<ContainerLock>> {
        self.lock_with(id, false)
    }

    fn lock_with(&self, id: &str, wait: bool) -> Result<Option<ContainerLock>> {
        if HELD.with(|h| h.borrow().iter().any(|i| i == id)) {
            return Ok(Some(ContainerLock {
                id: id.to_owned(),
                file: None,
            }));
        }
        let dir = self.dir(id);
        let file = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer(id.to_owned()))
            }
            Err(e) => return Err(e).step(|| format!("open {}", dir.display())),
        };
        if wait {
            file.lock().step(|| format!("lock {}", dir.display()))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => {
                    return Err(e).step(|| format!("lock {}", dir.display()))
                }
            }
        }
        HELD.with(|h| h.borrow_mut().push(id.to_owned()));
        Ok(Some(ContainerLock {
            id: id.to_owned(),
            file: Some(file),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Roots;

    fn engine(d: &std::path::Path) -> Engine {
        Engine::open(
            Roots {
                data: d.join("data"),
                run: d.join("run"),
            },
            d.to_path_buf(),
        )
        .unwrap()
    }

    #[test]
    fn the_lock_is_exclusive_between_holders_and_reentrant_in_a_thread() {
        let d = tempfile::tempdir().unwrap();
        let e = engine(d.path());
        assert!(matches!(e.lock("abc"), Err(Error::NoSuchContainer(_))));
        std::fs::create_dir_all(e.dir("abc")).unwrap();
        let held = e.lock("abc").unwrap();
        assert!(!held.reentered());
        let again = e.try_lock("abc").unwrap().expect("re-entered");
        assert!(again.reentered());
        drop(again);
        // Another thread (as another process would) finds it taken until it is dropped.
        let other = || {
            let p = d.path().to_path_buf();
            std::thread::spawn(move || engine(&p).try_lock("abc").unwrap().is_some())
                .join()
                .unwrap()
        };
        assert!(!other());
        drop(held);
        assert!(other());
    }
}
