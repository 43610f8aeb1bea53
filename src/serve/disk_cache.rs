//! The on-disk image cache (gandissect's `<project>/cache/img/id/<id>.jpg`, and edited
//! images answered by URL), bounded by `--disk-cache-mb`: files are written atomically
//! (each write to its own temporary file, then renamed), every write and every read marks
//! the file as recently used, and the least recently used files are deleted once the
//! total passes the budget. Files found at start-up join in modification-time order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

struct Entry {
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<PathBuf, Entry>,
    total: u64,
    clock: u64,
}

pub struct DiskCache {
    budget: u64,
    index: Mutex<Index>,
    next_temp: AtomicU64,
}

impl DiskCache {
    /// A cache of `budget` bytes over the files already in `dirs` (recursively).
    pub fn new(budget: u64, dirs: &[PathBuf]) -> DiskCache {
        let mut found = Vec::new();
        for dir in dirs {
            collect_files(dir, &mut found);
        }
        found.sort_by_key(|(_, _, modified)| *modified);
        let cache = DiskCache {
            budget,
            index: Mutex::new(Index::default()),
            next_temp: AtomicU64::new(0),
        };
        for (path, bytes, _) in found {
            cache.record(path, bytes);
        }
        cache
    }

    /// Bytes of cached files.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().expect("disk cache lock").total
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.index
            .lock()
            .expect("disk cache lock")
            .entries
            .contains_key(path)
    }

    /// Marks `path` as just used (a cached file was served).
    pub fn touch(&self, path: &Path) {
        let mut index = self.index.lock().expect("disk cache lock");
        index.clock += 1;
        let clock = index.clock;
        if let Some(entry) = index.entries.get_mut(path) {
            entry.used = clock;
        }
    }

    /// Writes `dir/name` atomically and records it, evicting older files past the budget.
    /// Blocking: call it off the async runtime.
    pub fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let unique = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        if let Err(e) = std::fs::rename(&tmp, dir.join(name)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.record(dir.join(name), bytes.len() as u64);
        Ok(())
    }

    fn record(&self, path: PathBuf, bytes: u64) {
        let evicted = {
            let mut index = self.index.lock().expect("disk cache lock");
            index.clock += 1;
            let used = index.clock;
            if let Some(old) = index.entries.insert(path.clone(), Entry { bytes, used }) {
                index.total -= old.bytes;
            }
            index.total += bytes;
            let mut evicted = Vec::new();
            while index.total > self.budget {
                let Some(oldest) = index
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(p, _)| p.clone())
                else {
                    break;
                };
                let entry = index.entries.remove(&oldest).expect("just found");
                index.total -= entry.bytes;
                evicted.push(oldest);
            }
            evicted
        };
        for path in evicted {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn collect_files(dir: &Path, found: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            collect_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "tmp") {
            // A write that a crash interrupted.
            let _ = std::fs::remove_file(&path);
        } else {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((path, meta.len(), modified));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_files_go_first_past_the_budget() {
        let dir = std::env::temp_dir().join(format!("ganpaint-disk-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = DiskCache::new(250, std::slice::from_ref(&dir));
        cache.write(&dir, "a.jpg", &[1; 100]).unwrap();
        cache.write(&dir, "b.jpg", &[2; 100]).unwrap();
        cache.touch(&dir.join("a.jpg"));
        cache.write(&dir, "c.jpg", &[3; 100]).unwrap();
        assert!(dir.join("a.jpg").is_file() && dir.join("c.jpg").is_file());
        assert!(!dir.join("b.jpg").exists(), "b was the least recently used");
        assert_eq!(cache.total_bytes(), 200);
        // A new cache over the same folder finds the files.
        assert_eq!(
            DiskCache::new(250, std::slice::from_ref(&dir)).total_bytes(),
            200
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
