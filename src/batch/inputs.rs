//! What `manifold batch` renders: folders walked for audio files, manifests
//! read, and every input given the output name its results are filed under.
//! Main thread.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// File extensions read as audio when a folder is walked (what the decoder
/// reads: WAV, FLAC, MP3, Ogg Vorbis).
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "wave", "flac", "mp3", "ogg", "oga"];

/// File extensions read as manifests: one input path per line, relative to
/// the manifest's folder or absolute; blank lines and `#` comments skipped.
pub const MANIFEST_EXTENSIONS: &[&str] = &["txt", "lst", "m3u", "m3u8"];

/// One file to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub input: PathBuf,
    /// Where its results go, relative to the output folder, without
    /// extension, `/`-separated: `album/01 song` gives `album/01 song.wav`
    /// (or the folder `album/01 song/` of stems). Also the ledger's key.
    pub name: String,
}

/// A part of the inputs for one of several machines: the jobs whose name
/// hashes to `index` modulo `count` (stable whatever the order of the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `K/N`, 0 <= K < N.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a shard: write K/N with 0 <= K < N, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (k.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub fn holds(&self, name: &str) -> bool {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % self.count as u64) as usize == self.index
    }
}

/// What the inputs on the command line hold.
#[derive(Debug, Default)]
pub struct Plan {
    pub jobs: Vec<Job>,
    /// Inputs that cannot be given an output name of their own (two inputs
    /// that would write the same files), with the reason.
    pub clashes: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: no such file or folder")]
    Missing { path: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

fn extension_of(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase())
}

pub fn is_audio_file(path: &Path) -> bool {
    extension_of(path).is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.as_str()))
}

pub fn is_manifest(path: &Path) -> bool {
    extension_of(path).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.as_str()))
}

/// `rel` (a relative path) as an output name: `/`-separated, extension dropped.
fn name_of(rel: &Path) -> String {
    let without_ext = rel.with_extension("");
    without_ext.components().filter_map(|c| c.as_os_str().to_str()).collect::<Vec<_>>().join("/")
}

/// Every audio file under `dir` (sorted, hidden entries and `skip` left
/// out, symbolic links to folders not followed), as (path, path relative to `dir`).
fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), InputError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let here = dir.join(&rel_dir);
        let entries = std::fs::read_dir(&here).map_err(|e| InputError::Unreadable { path: here.display().to_string(), reason: e.to_string() })?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in names {
            let file_name = entry.file_name();
            if file_name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = rel_dir.join(&file_name);
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if std::fs::canonicalize(&path).map_or(true, |p| p != skip) {
                    subdirs.push(rel);
                }
            } else if is_audio_file(&path) {
                // Files and symbolic links to files (a broken link is an
                // input that fails to open, with its reason in the ledger).
                out.push((path, rel));
            }
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// The deepest folder holding every path in `paths` (all absolute).
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        let parent = p.parent().unwrap_or(Path::new("/")).to_path_buf();
        common = Some(match common {
            None => parent,
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a.as_os_str()).collect(),
        });
    }
    common.unwrap_or_default()
}

/// The audio files a manifest lists, each with its path relative to the
/// deepest folder holding them all (their output names keep that layout).
fn read_manifest(manifest: &Path) -> Result<Vec<(PathBuf, PathBuf)>, InputError> {
    let text = std::fs::read_to_string(manifest).map_err(|e| InputError::Unreadable { path: manifest.display().to_string(), reason: e.to_string() })?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let paths: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| normalise(&base.join(l)))
        .collect();
    let root = common_folder(&paths);
    Ok(paths.into_iter().map(|p| {
        let rel = p.strip_prefix(&root).map(Path::to_path_buf).unwrap_or_else(|_| PathBuf::from(p.file_name().unwrap_or_default()));
        (p, rel)
    }).collect())
}

/// `path` with `.` and `..` resolved lexically (the file may not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Turns the command line's inputs (folders, manifests, audio files) into
/// jobs, in a stable order. `out_dir` (canonical) is never walked into.
/// Inputs whose names clash keep their extension in the name
/// (`a.flac` and `a.wav` in one folder become `a.flac.wav` and
/// `a.wav.wav`); if they still clash they are set aside in `clashes`.
pub fn plan(inputs: &[PathBuf], out_dir: &Path, shard: Option<Shard>) -> Result<Plan, InputError> {
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, out_dir, &mut found)?;
        } else if input.is_file() && is_manifest(input) {
            found.extend(read_manifest(input)?);
        } else if input.is_file() || input.is_symlink() {
            found.push((input.clone(), PathBuf::from(input.file_name().unwrap_or_default())));
        } else {
            return Err(InputError::Missing { path: input.display().to_string() });
        }
    }
    // The same file listed twice is one job.
    let mut seen = std::collections::HashSet::new();
    found.retain(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));

    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, rel)) in found.iter().enumerate() {
        by_name.entry(name_of(rel)).or_default().push(i);
    }
    let mut names: Vec<String> = found.iter().map(|(_, rel)| name_of(rel)).collect();
    for (name, holders) in &by_name {
        if holders.len() > 1 {
            for &i in holders {
                let ext = found[i].1.extension().and_then(|e| e.to_str()).unwrap_or("");
                names[i] = format!("{name}.{ext}");
            }
        }
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        *count.entry(n.as_str()).or_default() += 1;
    }
    let mut plan = Plan::default();
    for (i, (input, _)) in found.iter().enumerate() {
        let name = &names[i];
        if count[name.as_str()] > 1 {
            plan.clashes.push((input.clone(), format!("another input would write the same output '{name}': rename one, or render them in separate batches")));
            continue;
        }
        if shard.is_none_or(|s| s.holds(name)) {
            plan.jobs.push(Job { input: input.clone(), name: name.clone() });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn folders_are_walked_for_audio_files_in_name_order_with_their_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        for f in ["b/2.flac", "a.wav", "b/1.MP3", "notes.txt", ".hidden/x.wav", "b/.x.wav", "c/d/e.ogg"] {
            touch(&root.join(f));
        }
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let plan = plan(std::slice::from_ref(&root), &std::fs::canonicalize(&out).unwrap(), None).unwrap();
        let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a", "b/1", "b/2", "c/d/e"]);
        assert!(plan.clashes.is_empty());
    }

    #[test]
    fn the_output_folder_inside_an_input_folder_is_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("song.wav"));
        touch(&dir.path().join("out/song.wav"));
        let out = std::fs::canonicalize(dir.path().join("out")).unwrap();
        let plan = plan(&[dir.path().to_path_buf()], &out, None).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.jobs[0].name, "song");
    }

    #[test]
    fn clashing_names_keep_their_extension() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.wav"));
        touch(&dir.path().join("a.flac"));
        let plan = plan(&[dir.path().to_path_buf()], Path::new("/nonexistent"), None).unwrap();
        let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a.flac", "a.wav"]);
        // Two folders with the same file: the second cannot be named.
        let other = tempfile::tempdir().unwrap();
        touch(&other.path().join("a.wav"));
        let plan = super::plan(&[dir.path().join("a.wav"), other.path().join("a.wav")], Path::new("/nonexistent"), None).unwrap();
        assert_eq!(plan.jobs.len(), 0);
        assert_eq!(plan.clashes.len(), 2);
    }

    #[test]
    fn manifests_list_files_relative_to_themselves_and_keep_their_layout() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("music/x/1.wav"));
        touch(&dir.path().join("music/y/2.wav"));
        std::fs::write(dir.path().join("list.txt"), "# two songs\nmusic/x/1.wav\n\n ./music/y/2.wav \nmusic/y/missing.wav\n").unwrap();
        let plan = plan(&[dir.path().join("list.txt")], Path::new("/nonexistent"), None).unwrap();
        let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        // A listed file that does not exist is still a job: it fails with its reason.
        assert_eq!(names, ["x/1", "y/2", "y/missing"]);
    }

    #[test]
    fn a_missing_input_on_the_command_line_is_an_error() {
        assert!(matches!(plan(&[PathBuf::from("/no/such/folder")], Path::new("/x"), None), Err(InputError::Missing { .. })));
    }

    #[test]
    fn shards_split_the_jobs_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            touch(&dir.path().join(format!("{i}.wav")));
        }
        let all = plan(&[dir.path().to_path_buf()], Path::new("/x"), None).unwrap().jobs;
        let mut union = Vec::new();
        for k in 0..3 {
            let part = plan(&[dir.path().to_path_buf()], Path::new("/x"), Some(Shard { index: k, count: 3 })).unwrap().jobs;
            assert!(!part.is_empty() && part.len() < 40, "shard {k} holds {}", part.len());
            union.extend(part);
        }
        union.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all_sorted = all.clone();
        all_sorted.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(union, all_sorted);
        assert_eq!("2/5".parse::<Shard>().unwrap(), Shard { index: 2, count: 5 });
        assert!("5/5".parse::<Shard>().is_err() && "x".parse::<Shard>().is_err());
    }
}
