//! Stored uploads: one folder per inverted picture, `<root>/<project>/<id>/`, holding
//! `fit.safetensors` (the [`crate::invert::Fit`] the worker paints with), `picture.png`
//! (the picture at the model's resolution) and `upload.json` (its figures, what
//! `GET /api/v1/images/<id>` answers).
//!
//! Folders are written whole under a temporary name and renamed into place, so a crash
//! never leaves half an upload; leftovers are removed at start-up. The store is bounded by
//! bytes: past the budget the least recently used uploads are deleted. Use is recorded in
//! memory and in `upload.json`'s modification time, so the order survives a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::UploadId;

pub const FIT_FILE: &str = "fit.safetensors";
pub const PICTURE_FILE: &str = "picture.png";
pub const INFO_FILE: &str = "upload.json";

struct Entry {
    project: String,
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<UploadId, Entry>,
    total: u64,
    clock: u64,
}

/// Where a stored upload lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub project: String,
    pub dir: PathBuf,
}

impl Stored {
    pub fn fit_file(&self) -> PathBuf {
        self.dir.join(FIT_FILE)
    }
}

pub struct UploadStore {
    root: PathBuf,
    budget: u64,
    index: Mutex<Index>,
    next_temp: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("one upload takes {bytes} bytes, more than the whole upload budget of {budget} bytes (--uploads-mb)")]
    OverBudget { bytes: u64, budget: u64 },
    #[error("writing the upload under {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl UploadStore {
    /// The store under `root` (created with the first upload), with the uploads already there,
    /// least recently used first out once past `budget` bytes.
    /// Nothing is written until the first upload is stored.
    pub fn open(root: &Path, budget: u64) -> std::io::Result<UploadStore> {
        let mut found = Vec::new();
        let projects = match std::fs::read_dir(root) {
            Ok(projects) => projects.flatten().collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for project in projects {
            if !project.path().is_dir() {
                continue;
            }
            let project_name = project.file_name().to_string_lossy().to_string();
            for upload in std::fs::read_dir(project.path())?.flatten() {
                let path = upload.path();
                let name = upload.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    // A folder being written when the server stopped.
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
                let Ok(id) = UploadId::parse(&name) else {
                    continue;
                };
                let info = path.join(INFO_FILE);
                let Some(modified) = std::fs::metadata(&info).and_then(|m| m.modified()).ok()
                else {
                    continue;
                };
                if !path.join(FIT_FILE).is_file() {
                    continue;
                }
                found.push((modified, id, project_name.clone(), folder_bytes(&path)));
            }
        }
        found.sort_by_key(|(modified, ..)| *modified);
        let store = UploadStore {
            root: root.to_path_buf(),
            budget,
            index: Mutex::new(Index::default()),
            next_temp: AtomicU64::new(0),
        };
        {
            let mut index = store.index.lock().expect("upload store lock");
            for (_, id, project, bytes) in found {
                index.clock += 1;
                let used = index.clock;
                index.total += bytes;
                index.entries.insert(
                    id,
                    Entry {
                        project,
                        bytes,
                        used,
                    },
                );
            }
            store.evict(&mut index, None);
        }
        Ok(store)
    }

    fn dir_of(&self, project: &str, id: &UploadId) -> PathBuf {
        self.root.join(project).join(id.as_str())
    }

    /// Bytes of stored uploads.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().expect("upload store lock").total
    }

    pub fn len(&self) -> usize {
        self.index.lock().expect("upload store lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `id` is stored, if it is; marks it as just used. An upload another server
    /// stored in the same folder since this one started (replicas sharing a volume) is
    /// found on disk and joins the index.
    pub fn get(&self, id: &UploadId) -> Option<Stored> {
        let mut index = self.index.lock().expect("upload store lock");
        if !index.entries.contains_key(id) {
            let (project, bytes) = self.find_on_disk(id)?;
            index.total += bytes;
            index.entries.insert(
                id.clone(),
                Entry {
                    project,
                    bytes,
                    used: 0,
                },
            );
            self.evict(&mut index, Some(id));
        }
        index.clock += 1;
        let clock = index.clock;
        let entry = index.entries.get_mut(id)?;
        entry.used = clock;
        let project = entry.project.clone();
        drop(index);
        let dir = self.dir_of(&project, id);
        // For the order after a restart; a failure only loses that.
        if let Ok(file) = std::fs::File::options()
            .write(true)
            .open(dir.join(INFO_FILE))
        {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(Stored { project, dir })
    }

    /// Stores an upload: `write` fills a fresh folder, which then takes its place (an
    /// upload already stored under `id` is replaced). Older uploads are deleted past the
    /// budget. Blocking: call it off the async runtime.
    pub fn insert(
        &self,
        project: &str,
        id: &UploadId,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<Stored, StoreError> {
        let project_dir = self.root.join(project);
        let io = |source| StoreError::Io {
            dir: project_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&project_dir).map_err(io)?;
        let unique = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = project_dir.join(format!(".{id}.{}.{unique}", std::process::id()));
        let written = std::fs::create_dir(&temp).and_then(|()| write(&temp));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(io(e));
        }
        let bytes = folder_bytes(&temp);
        if bytes > self.budget {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(StoreError::OverBudget {
                bytes,
                budget: self.budget,
            });
        }
        let dir = self.dir_of(project, id);
        let mut index = self.index.lock().expect("upload store lock");
        if let Some(old) = index.entries.remove(id) {
            index.total -= old.bytes;
            let _ = std::fs::remove_dir_all(self.dir_of(&old.project, id));
        }
        if let Err(e) = std::fs::rename(&temp, &dir) {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(io(e));
        }
        index.clock += 1;
        let used = index.clock;
        index.total += bytes;
        index.entries.insert(
            id.clone(),
            Entry {
                project: project.to_string(),
                bytes,
                used,
            },
        );
        self.evict(&mut index, Some(id));
        Ok(Stored {
            project: project.to_string(),
            dir,
        })
    }

    /// A complete upload folder for `id` under any project: its project and bytes.
    fn find_on_disk(&self, id: &UploadId) -> Option<(String, u64)> {
        std::fs::read_dir(&self.root)
            .ok()?
            .flatten()
            .find_map(|project| {
                let dir = project.path().join(id.as_str());
                (dir.join(INFO_FILE).is_file() && dir.join(FIT_FILE).is_file()).then(|| {
                    (
                        project.file_name().to_string_lossy().to_string(),
                        folder_bytes(&dir),
                    )
                })
            })
    }

    /// Deletes the least recently used uploads (never `keep`) until the budget holds.
    fn evict(&self, index: &mut Index, keep: Option<&UploadId>) {
        while index.total > self.budget {
            let Some(oldest) = index
                .entries
                .iter()
                .filter(|(id, _)| Some(*id) != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            let entry = index.entries.remove(&oldest).expect("found above");
            index.total -= entry.bytes;
            tracing::info!(upload = %oldest, project = %entry.project, bytes = entry.bytes, "upload evicted (--uploads-mb)");
            let _ = std::fs::remove_dir_all(self.dir_of(&entry.project, &oldest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ganpaint-upload-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn id(n: u8) -> UploadId {
        UploadId::parse(&format!("upload-{}", format!("{n:02x}").repeat(16))).unwrap()
    }

    fn write(bytes: usize) -> impl FnOnce(&Path) -> std::io::Result<()> {
        move |dir| {
            std::fs::write(dir.join(FIT_FILE), vec![0u8; bytes])?;
            std::fs::write(dir.join(INFO_FILE), b"{}")
        }
    }

    #[test]
    fn least_recently_used_uploads_go_first_and_the_order_survives_a_restart() {
        let root = temp("lru");
        let store = UploadStore::open(&root, 3000).unwrap();
        for n in 0..3 {
            store.insert("demo", &id(n), write(900)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Using 0 makes 1 the oldest: the fourth upload evicts it.
        assert!(store.get(&id(0)).is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.insert("demo", &id(3), write(900)).unwrap();
        assert!(store.get(&id(1)).is_none());
        assert!(!root.join("demo").join(id(1).as_str()).exists());
        assert_eq!(store.len(), 3);
        assert_eq!(store.total_bytes(), 3 * 902);
        // After a restart with a smaller budget, the least recently used (2) goes first.
        drop(store);
        let again = UploadStore::open(&root, 2000).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.get(&id(2)).is_none());
        let stored = again.get(&id(0)).unwrap();
        assert_eq!(stored.project, "demo");
        assert!(stored.fit_file().is_file());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_upload_another_server_stored_in_the_folder_is_found() {
        let root = temp("shared");
        let one = UploadStore::open(&root, 10_000).unwrap();
        let two = UploadStore::open(&root, 10_000).unwrap();
        one.insert("demo", &id(5), write(100)).unwrap();
        let found = two.get(&id(5)).unwrap();
        assert_eq!(found.project, "demo");
        assert_eq!(two.total_bytes(), 102);
        assert!(two.get(&id(6)).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_or_oversized_write_leaves_nothing_and_leftovers_are_cleaned() {
        let root = temp("fail");
        let store = UploadStore::open(&root, 1000).unwrap();
        let err = store
            .insert("demo", &id(1), |_| Err(std::io::Error::other("disk full")))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        let err = store.insert("demo", &id(2), write(5000)).unwrap_err();
        assert!(matches!(err, StoreError::OverBudget { .. }), "{err}");
        assert_eq!(std::fs::read_dir(root.join("demo")).unwrap().count(), 0);
        // A half-written folder from a crash is removed when the store opens.
        std::fs::create_dir_all(root.join("demo/.upload-x.1.0")).unwrap();
        let again = UploadStore::open(&root, 1000).unwrap();
        assert!(again.is_empty());
        assert_eq!(std::fs::read_dir(root.join("demo")).unwrap().count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
