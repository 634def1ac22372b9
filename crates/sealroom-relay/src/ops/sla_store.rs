//! The SLA windows across restarts: a small JSON file next to the node's config file
//! (`relay.toml` keeps its windows in `relay.sla.json`), written every
//! [`SAVE_EVERY`] and at shutdown, read once at start.
//!
//! What happens at start:
//!
//! - **no file** (a first start, or a node that never had a join): the windows start empty;
//! - **a readable file** whose window length matches the configuration: its windows are
//!   restored (the newest `retained_windows` of them);
//! - **a file of another window length** (the configuration changed): ignored, the windows
//!   start empty, and the next save replaces it;
//! - **a corrupt file** (not JSON of this shape, an unknown version, an unreadable file):
//!   the node still starts, with empty windows; the file is renamed to `*.corrupt` so that
//!   it is kept for inspection and not overwritten, and a warning names both paths.
//!
//! A crash loses the joins since the last save (at most [`SAVE_EVERY`]). Writes go to a
//! temporary file renamed over the old one, so a crash during a save leaves the previous
//! file whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sla::SlaTracker;

/// How often a running node saves its windows.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The file format's version.
const VERSION: u32 = 1;

/// Largest state file read: 288 windows take about 12 KiB; anything far larger is not
/// ours.
const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    window_secs: u64,
    /// (window index since the epoch, succeeded, failed, excluded), oldest first.
    windows: Vec<[u64; 4]>,
}

/// What [`SlaStore::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The file's windows were restored.
    Restored {
        /// How many windows it held.
        windows: usize,
    },
    /// There was no file.
    Missing,
    /// The file was written with another window length; it was ignored.
    OtherWindow {
        /// The window length it was written with.
        window_secs: u64,
    },
    /// The file could not be read or parsed; it was moved aside.
    Corrupt {
        /// Why.
        reason: String,
        /// Where it was moved (`None` when even that failed).
        moved_to: Option<PathBuf>,
    },
}

/// Where a node keeps its SLA windows.
#[derive(Debug, Clone)]
pub struct SlaStore {
    path: PathBuf,
}

impl SlaStore {
    /// The store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The store next to a config file: `relay.toml` gives `relay.sla.json` in the same
    /// directory.
    pub fn next_to(config: &Path) -> Self {
        let stem = config
            .file_stem()
            .map_or_else(|| "relay".into(), |s| s.to_string_lossy().into_owned());
        Self::new(config.with_file_name(format!("{stem}.sla.json")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the file into `tracker`; see the module documentation for each case.
    pub fn load(&self, tracker: &mut SlaTracker) -> Loaded {
        let text = match read_bounded(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(err) => return self.corrupt(format!("cannot read it: {err}")),
        };
        let state: StateFile = match serde_json::from_str(&text) {
            Ok(state) => state,
            Err(err) => return self.corrupt(format!("not an SLA state file: {err}")),
        };
        if state.version != VERSION {
            return self.corrupt(format!(
                "version {} (this node reads version {VERSION})",
                state.version
            ));
        }
        if state.window_secs != tracker.config().window_secs {
            return Loaded::OtherWindow {
                window_secs: state.window_secs,
            };
        }
        let sorted = state.windows.windows(2).all(|w| w[0][0] < w[1][0]);
        if !sorted {
            return self.corrupt("windows out of order".to_owned());
        }
        tracker.restore(&state.windows);
        Loaded::Restored {
            windows: state.windows.len(),
        }
    }

    fn corrupt(&self, reason: String) -> Loaded {
        let mut aside = self.path.clone().into_os_string();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        let moved_to = std::fs::rename(&self.path, &aside).ok().map(|()| aside);
        Loaded::Corrupt { reason, moved_to }
    }

    /// Write `tracker`'s windows (to a temporary file renamed over the old one).
    ///
    /// # Errors
    /// When the directory is not writable or the disk is full.
    pub fn save(&self, tracker: &SlaTracker) -> std::io::Result<()> {
        let state = StateFile {
            version: VERSION,
            window_secs: tracker.config().window_secs,
            windows: tracker.windows(),
        };
        let text = serde_json::to_string(&state).map_err(std::io::Error::other)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE_LEN {
        return Err(std::io::Error::other(format!(
            "{len} bytes, more than an SLA state file holds"
        )));
    }
    std::fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{SlaConfig, SlaOutcome};

    const T0: u64 = 1_800_000_000;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sealroom-sla-store-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn tracker() -> SlaTracker {
        SlaTracker::new(SlaConfig::default().retained_windows(3))
    }

    #[test]
    fn windows_survive_a_save_and_a_load() {
        let dir = dir("roundtrip");
        let store = SlaStore::next_to(&dir.join("relay.toml"));
        assert_eq!(store.path(), dir.join("relay.sla.json"));
        let mut before = tracker();
        before.handle_join(T0, SlaOutcome::Succeeded);
        before.handle_join(T0 + 1, SlaOutcome::Failed);
        before.handle_join(T0 + 300, SlaOutcome::Excluded);
        store.save(&before).expect("saved");

        let mut after = tracker();
        // A join recorded before the load (the node already serving) is kept beside them.
        after.handle_join(T0 + 2, SlaOutcome::Succeeded);
        assert_eq!(store.load(&mut after), Loaded::Restored { windows: 2 });
        assert_eq!(
            after.windows(),
            vec![[T0 / 300, 2, 1, 0], [T0 / 300 + 1, 0, 0, 1]]
        );
        assert_eq!(after.summary(T0 + 600).windows_missed, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_file_starts_empty() {
        let dir = dir("missing");
        let store = SlaStore::next_to(&dir.join("relay.toml"));
        let mut sla = tracker();
        assert_eq!(store.load(&mut sla), Loaded::Missing);
        assert!(sla.windows().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_windows_start_empty() {
        let dir = dir("corrupt");
        let store = SlaStore::next_to(&dir.join("relay.toml"));
        for junk in [
            "{\"version\":1,\"window_secs\":300,\"windows\":[[1,2,3]]}",
            "not json at all",
            "{\"version\":9,\"window_secs\":300,\"windows\":[]}",
            "{\"version\":1,\"window_secs\":300,\"windows\":[[5,1,0,0],[4,1,0,0]]}",
        ] {
            std::fs::write(store.path(), junk).expect("write");
            let mut sla = tracker();
            let loaded = store.load(&mut sla);
            let Loaded::Corrupt { reason, moved_to } = loaded else {
                panic!("{junk}: {loaded:?}");
            };
            assert!(!reason.is_empty());
            let aside = dir.join("relay.sla.json.corrupt");
            assert_eq!(moved_to.as_deref(), Some(aside.as_path()));
            assert_eq!(std::fs::read_to_string(&aside).expect("kept"), junk);
            assert!(
                !store.path().exists(),
                "moved, so the next save starts afresh"
            );
            assert!(sla.windows().is_empty());
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_of_another_window_length_is_ignored() {
        let dir = dir("other");
        let store = SlaStore::next_to(&dir.join("relay.toml"));
        let mut minute = SlaTracker::new(SlaConfig::default().window_secs(60));
        minute.handle_join(T0, SlaOutcome::Succeeded);
        store.save(&minute).expect("saved");
        let mut sla = tracker();
        assert_eq!(
            store.load(&mut sla),
            Loaded::OtherWindow { window_secs: 60 }
        );
        assert!(sla.windows().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn restoring_keeps_only_the_retained_windows() {
        let mut sla = tracker();
        sla.restore(&[[1, 1, 0, 0], [2, 1, 0, 0], [3, 1, 0, 0], [4, 1, 0, 0]]);
        assert_eq!(
            sla.windows().iter().map(|w| w[0]).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }
}
