//! source-guard.json: every file the source stage composes (its layers and the assets they
//! name, as `UsdUtils.ComputeAllDependencies` finds them in Phase 2c), with its size and a
//! digest of its bytes. Before any stage is written the daemon refuses a workspace that holds
//! one of them (an output could overwrite it); before the report it hashes them again, and a
//! run whose source changed fails (`source_modified`): usdtune never writes them, so
//! something else did, and nothing measured can be trusted.

use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardedFile {
    pub path: String,
    pub bytes: u64,
    /// SipHash-1-3 of the bytes, hex (a change detector, not a signature).
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceGuard {
    pub files: Vec<GuardedFile>,
}

fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.write(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, format!("{:016x}", hasher.finish())))
}

impl SourceGuard {
    /// The files as they are now (a path that does not exist is left out: an unresolved asset).
    pub fn capture<'a>(paths: impl IntoIterator<Item = &'a str>) -> std::io::Result<Self> {
        let mut files = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for path in paths {
            if !seen.insert(path) || !Path::new(path).is_file() {
                continue;
            }
            let (bytes, digest) = digest(Path::new(path))?;
            files.push(GuardedFile { path: path.to_string(), bytes, digest });
        }
        Ok(Self { files })
    }

    /// The first guarded file inside `dir` (where a run would write), if any.
    pub fn inside(&self, dir: &Path) -> Option<&str> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.files
            .iter()
            .map(|f| f.path.as_str())
            .find(|p| std::fs::canonicalize(p).unwrap_or_else(|_| Path::new(p).to_path_buf()).starts_with(&dir))
    }

    /// The guarded files whose bytes are not what they were (or that are gone).
    pub fn changed(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| digest(Path::new(&f.path)).map_or(true, |(bytes, d)| bytes != f.bytes || d != f.digest))
            .map(|f| f.path.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_removed_file_is_named_and_a_workspace_holding_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (root, sub) = (dir.path().join("s.usda"), dir.path().join("parts/sub.usda"));
        std::fs::create_dir(dir.path().join("parts")).unwrap();
        std::fs::write(&root, "#usda 1.0\n").unwrap();
        std::fs::write(&sub, "#usda 1.0\n").unwrap();
        let (root_s, sub_s) = (root.display().to_string(), sub.display().to_string());
        let guard = SourceGuard::capture([root_s.as_str(), sub_s.as_str(), "/no/such/texture.png"]).unwrap();
        assert_eq!(guard.files.len(), 2);
        assert!(guard.changed().is_empty());
        assert_eq!(guard.inside(&dir.path().join("parts")), Some(sub_s.as_str()));
        assert_eq!(guard.inside(&dir.path().join("elsewhere")), None);
        std::fs::write(&sub, "#usda 1.0\ndef \"X\" {}\n").unwrap();
        assert_eq!(guard.changed(), std::slice::from_ref(&sub_s));
        std::fs::remove_file(&root).unwrap();
        assert_eq!(guard.changed(), [root_s, sub_s]);
    }
}
