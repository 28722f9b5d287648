//! `manifold batch`'s ledger: one JSON line per finished input (done or
//! failed) in the output folder, appended and synced as each input ends, so a
//! killed batch loses at most the inputs in flight. Several processes (the
//! shards of a cluster run) each append to their own file; every process
//! reads all of them. Main thread.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The ledger of a whole batch on one machine.
pub const LEDGER_FILE: &str = "manifold-ledger.jsonl";

/// The ledger file a process writes: `manifold-ledger.jsonl`, or one per
/// shard (`manifold-ledger.shard-2-of-8.jsonl`).
pub fn ledger_path(out_dir: &Path, shard: Option<super::Shard>) -> PathBuf {
    match shard {
        None => out_dir.join(LEDGER_FILE),
        Some(s) => out_dir.join(format!("manifold-ledger.shard-{}-of-{}.jsonl", s.index, s.count)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    Failed,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the output folder, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What happened to one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The job's output name (the ledger's key).
    pub name: String,
    pub input: String,
    /// sha256 of the input file's bytes (`None`: it could not be read).
    pub input_sha256: Option<String>,
    /// The task, model (with the sha256 of its files) and every setting
    /// that changes the output.
    pub settings: serde_json::Value,
    pub status: Status,
    pub outputs: Vec<OutputFile>,
    /// Why it failed, for the user.
    pub error: Option<String>,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
    pub host: String,
    pub pid: u32,
    /// Milliseconds since the Unix epoch when it ended (the latest record
    /// of a name is the one that counts).
    pub finished_ms: u64,
}

/// Appends records to one ledger file.
pub struct Ledger {
    file: std::fs::File,
}

impl Ledger {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path)?;
        // A batch killed while writing leaves a torn last line: end it, so
        // the next record starts a line of its own.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::Seek;
            let mut last = [0u8; 1];
            file.seek(std::io::SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Self { file })
    }

    /// Writes `record` as one line and syncs it to disk.
    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// The latest record of every name in every ledger file in `out_dir` (torn
/// or unreadable lines skipped).
pub fn read_all(out_dir: &Path) -> HashMap<String, Record> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("manifold-ledger") && n.ends_with(".jsonl")));
    files.sort();
    let mut latest: HashMap<String, Record> = HashMap::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<Record>(line) else { continue };
            match latest.get(&record.name) {
                Some(old) if old.finished_ms > record.finished_ms => {}
                _ => {
                    latest.insert(record.name.clone(), record);
                }
            }
        }
    }
    latest
}

/// sha256 of a file's bytes, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `record` says `name` is done with these input bytes and settings,
/// and its outputs are still there, unchanged.
pub fn is_done(record: Option<&Record>, input_sha256: &str, settings: &serde_json::Value, out_dir: &Path) -> bool {
    let Some(r) = record else { return false };
    r.status == Status::Done
        && r.input_sha256.as_deref() == Some(input_sha256)
        && &r.settings == settings
        && !r.outputs.is_empty()
        && r.outputs.iter().all(|o| {
            let path = out_dir.join(&o.path);
            std::fs::metadata(&path).is_ok_and(|m| m.len() == o.bytes) && sha256_file(&path).is_ok_and(|h| h == o.sha256)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: Status, finished_ms: u64) -> Record {
        Record {
            name: name.into(),
            input: format!("/in/{name}.wav"),
            input_sha256: Some("ab".into()),
            settings: serde_json::json!({"task": "clean"}),
            status,
            outputs: vec![],
            error: None,
            audio_seconds: 1.0,
            wall_seconds: 0.1,
            host: "h".into(),
            pid: 1,
            finished_ms,
        }
    }

    #[test]
    fn the_latest_record_wins_across_files_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Ledger::open(&ledger_path(dir.path(), None)).unwrap();
        a.append(&record("x", Status::Failed, 10)).unwrap();
        a.append(&record("y", Status::Done, 11)).unwrap();
        let mut b = Ledger::open(&ledger_path(dir.path(), Some(super::super::Shard { index: 1, count: 2 }))).unwrap();
        b.append(&record("x", Status::Done, 20)).unwrap();
        // A kill mid-write: half a line, then a new process appends.
        std::fs::OpenOptions::new().append(true).open(ledger_path(dir.path(), None)).unwrap().write_all(b"{\"name\":\"z\",\"inp").unwrap();
        let mut again = Ledger::open(&ledger_path(dir.path(), None)).unwrap();
        again.append(&record("w", Status::Done, 30)).unwrap();
        let all = read_all(dir.path());
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all["x"].status, Status::Done);
        assert_eq!(all["y"].status, Status::Done);
        assert_eq!(all["w"].finished_ms, 30);
    }

    #[test]
    fn done_needs_same_input_same_settings_and_intact_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("o.wav"), b"abc").unwrap();
        let mut r = record("o", Status::Done, 1);
        r.outputs = vec![OutputFile { path: "o.wav".into(), sha256: sha256_file(&dir.path().join("o.wav")).unwrap(), bytes: 3 }];
        let settings = r.settings.clone();
        assert!(is_done(Some(&r), "ab", &settings, dir.path()));
        assert!(!is_done(Some(&r), "cd", &settings, dir.path()), "changed input");
        assert!(!is_done(Some(&r), "ab", &serde_json::json!({"task": "stems"}), dir.path()), "changed settings");
        std::fs::write(dir.path().join("o.wav"), b"abd").unwrap();
        assert!(!is_done(Some(&r), "ab", &settings, dir.path()), "changed output");
        std::fs::remove_file(dir.path().join("o.wav")).unwrap();
        assert!(!is_done(Some(&r), "ab", &settings, dir.path()), "missing output");
        assert!(!is_done(None, "ab", &settings, dir.path()));
        r.status = Status::Failed;
        assert!(!is_done(Some(&r), "ab", &settings, dir.path()));
    }
}
