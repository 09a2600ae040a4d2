//! The prim table the facts task streams: one row per composed prim with its subtree
//! aggregates. Column meanings live with the collector (kit-extension/usdtune.executor/
//! usdtune_executor/workers/stage_walk.py, `PRIM_COLUMNS`); rows arrive in chunks of columns.
//!
//! The daemon holds one table per assessing run, so its size is the daemon's share of a run's
//! memory. Rows sorted by path are their own index (no map holding a second copy of every
//! path) and each chunk's JSON is dropped once read: on the 100k hall the assessment's daemon
//! peak went from 129.2–130.0 MB to 95.0–96.1 MB (`usdtune assess`, 3 runs each, interleaved,
//! same outputs).

use serde::Deserialize;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrimRow {
    pub path: String,
    pub type_name: String,
    pub kind: String,
    /// Candidate hash: subtree content without the prim's own name and placement.
    pub hash: String,
    pub prims: u64,
    pub meshes: u64,
    /// Geometry prims of any kind (meshes, implicit shapes, curves, points).
    pub gprims: u64,
    pub bytes: u64,
    /// Digest of the targets that leave the subtree ('' when none).
    pub ext: String,
    pub ext_n: u64,
    /// The asset this prim references or payloads ('' when none).
    pub reference: String,
    /// Digest of the variant selections in the subtree ('' when none).
    pub variants: String,
    pub overrides_below: u64,
    pub instance: bool,
    pub physics: u64,
    pub skeleton: u64,
    pub rigid_below: bool,
    pub animated_below: bool,
    pub animated: bool,
    pub articulation_root: bool,
    pub material: String,
    pub bounds: Option<[f64; 6]>,
}

impl PrimRow {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    pub fn depth(&self) -> usize {
        self.path.matches('/').count()
    }
}

/// The columns of the prim table, in the executor's row order. The collector declares them
/// in `PRIM_COLUMNS` (kit-extension/usdtune.executor/usdtune_executor/workers/stage_walk.py);
/// a test holds the two lists and [`Chunk`]'s fields equal.
pub const PRIM_COLUMNS: &[&str] = &[
    "path",
    "type",
    "kind",
    "hash",
    "prims",
    "meshes",
    "gprims",
    "bytes",
    "ext",
    "ext_n",
    "ref",
    "variants",
    "overrides_below",
    "instance",
    "physics",
    "skeleton",
    "rigid_below",
    "animated_below",
    "animated",
    "articulation_root",
    "material",
    "bounds",
];

/// One streamed chunk: equal-length columns.
#[derive(Deserialize)]
struct Chunk {
    path: Vec<String>,
    #[serde(rename = "type")]
    type_name: Vec<String>,
    kind: Vec<String>,
    hash: Vec<String>,
    prims: Vec<u64>,
    meshes: Vec<u64>,
    gprims: Vec<u64>,
    bytes: Vec<u64>,
    ext: Vec<String>,
    ext_n: Vec<u64>,
    #[serde(rename = "ref")]
    reference: Vec<String>,
    variants: Vec<String>,
    overrides_below: Vec<u64>,
    instance: Vec<bool>,
    physics: Vec<u64>,
    skeleton: Vec<u64>,
    rigid_below: Vec<bool>,
    animated_below: Vec<bool>,
    animated: Vec<bool>,
    articulation_root: Vec<bool>,
    material: Vec<String>,
    bounds: Vec<Option<[f64; 6]>>,
}

#[derive(Debug, Default)]
pub struct PrimTable {
    pub rows: Vec<PrimRow>,
    /// Row index of each row's parent prim (None for top-level prims).
    pub parent: Vec<Option<usize>>,
    pub children: Vec<Vec<usize>>,
}

impl PrimTable {
    pub fn from_rows(mut rows: Vec<PrimRow>) -> Self {
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        // Sorted rows are their own index (see the module header).
        let find = |path: &str| rows.binary_search_by(|r| r.path.as_str().cmp(path)).ok();
        let parent: Vec<Option<usize>> =
            rows.iter().map(|r| r.path.rsplit_once('/').and_then(|(head, _)| find(head))).collect();
        let mut children = vec![Vec::new(); rows.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        Self { rows, parent, children }
    }

    /// Rebuild the table from the facts task's streamed chunks (JSON column objects).
    /// The table from the executor's chunks, each dropped once read (the chunks of a 1M-prim
    /// stage hold a few hundred MB of JSON text).
    pub fn from_chunks<S: AsRef<str>>(chunks: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let mut rows = Vec::new();
        for (n, text) in chunks.into_iter().enumerate() {
            let mut c: Chunk = serde_json::from_str(text.as_ref()).map_err(|e| format!("prim table chunk {n}: {e}"))?;
            let len = c.path.len();
            let lengths = [
                c.type_name.len(),
                c.kind.len(),
                c.hash.len(),
                c.prims.len(),
                c.meshes.len(),
                c.gprims.len(),
                c.bytes.len(),
                c.ext.len(),
                c.ext_n.len(),
                c.reference.len(),
                c.variants.len(),
                c.overrides_below.len(),
                c.instance.len(),
                c.physics.len(),
                c.skeleton.len(),
                c.rigid_below.len(),
                c.animated_below.len(),
                c.animated.len(),
                c.articulation_root.len(),
                c.material.len(),
                c.bounds.len(),
            ];
            if lengths.iter().any(|l| *l != len) {
                return Err(format!("prim table chunk {n}: columns of different lengths"));
            }
            for i in 0..len {
                rows.push(PrimRow {
                    path: std::mem::take(&mut c.path[i]),
                    type_name: std::mem::take(&mut c.type_name[i]),
                    kind: std::mem::take(&mut c.kind[i]),
                    hash: std::mem::take(&mut c.hash[i]),
                    prims: c.prims[i],
                    meshes: c.meshes[i],
                    gprims: c.gprims[i],
                    bytes: c.bytes[i],
                    ext: std::mem::take(&mut c.ext[i]),
                    ext_n: c.ext_n[i],
                    reference: std::mem::take(&mut c.reference[i]),
                    variants: std::mem::take(&mut c.variants[i]),
                    overrides_below: c.overrides_below[i],
                    instance: c.instance[i],
                    physics: c.physics[i],
                    skeleton: c.skeleton[i],
                    rigid_below: c.rigid_below[i],
                    animated_below: c.animated_below[i],
                    animated: c.animated[i],
                    articulation_root: c.articulation_root[i],
                    material: std::mem::take(&mut c.material[i]),
                    bounds: c.bounds[i],
                });
            }
        }
        Ok(Self::from_rows(rows))
    }

    pub fn index_of(&self, path: &str) -> Option<usize> {
        self.rows.binary_search_by(|r| r.path.as_str().cmp(path)).ok()
    }

    /// Ancestors of a row, nearest first.
    pub fn ancestors(&self, mut i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::from_fn(move || {
            let p = self.parent[i]?;
            i = p;
            Some(p)
        })
    }

    /// Rows in a subtree, the root included.
    pub fn subtree(&self, root: usize) -> Vec<usize> {
        let mut out = vec![root];
        let mut k = 0;
        while k < out.len() {
            out.extend(self.children[out[k]].iter().copied());
            k += 1;
        }
        out
    }
}

/// A readable pattern for a set of paths: segments that differ become their name base
/// with numeric and copy suffixes stripped, followed by `*` (Machine_0012 → Machine_*).
pub fn path_pattern<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    let split: Vec<Vec<&str>> = paths.into_iter().map(|p| p.split('/').collect()).collect();
    let Some(first) = split.first() else { return String::new() };
    if split.iter().any(|s| s.len() != first.len()) {
        return format!("{}  (and others)", first.join("/"));
    }
    (0..first.len())
        .map(|k| {
            let base = name_base(first[k]);
            if split.iter().all(|s| s[k] == first[k]) {
                first[k].to_string()
            } else if split.iter().all(|s| name_base(s[k]) == base) && base != first[k] {
                format!("{base}*")
            } else {
                "*".to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A sibling name without numeric suffixes, copy suffixes and export ids ("Bolt_12" → "Bolt_").
pub fn name_base(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let trimmed = trimmed.strip_suffix("_copy").or_else(|| trimmed.strip_suffix("Copy")).unwrap_or(trimmed);
    if trimmed.is_empty() {
        name
    } else {
        trimmed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The keys of the collector's `PRIM_COLUMNS = {...}` dict literal, in order.
    fn collector_columns() -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../kit-extension/usdtune.executor/usdtune_executor/workers/stage_walk.py");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("PRIM_COLUMNS = {").expect("the collector declares PRIM_COLUMNS");
        let body = &text[start..start + text[start..].find("\n}").unwrap()];
        body.lines()
            .skip(1)
            .filter_map(|line| line.trim().strip_prefix('"')?.split_once('"').map(|(key, _)| key.to_string()))
            .collect()
    }

    #[test]
    fn the_table_columns_are_the_collectors_and_the_chunk_reads_every_one() {
        assert_eq!(collector_columns(), PRIM_COLUMNS);
        // A chunk of one row holding exactly these columns is read; without any one of them it is refused.
        let value = |c: &str| match c {
            "prims" | "meshes" | "gprims" | "bytes" | "ext_n" | "overrides_below" | "physics" | "skeleton" => {
                json!([1])
            }
            "instance" | "rigid_below" | "animated_below" | "animated" | "articulation_root" => json!([false]),
            "bounds" => json!([null]),
            _ => json!(["x"]),
        };
        let chunk = |skip: Option<&str>| {
            let columns: serde_json::Map<String, serde_json::Value> =
                PRIM_COLUMNS.iter().filter(|c| Some(**c) != skip).map(|c| (c.to_string(), value(c))).collect();
            serde_json::Value::Object(columns).to_string()
        };
        assert_eq!(PrimTable::from_chunks(&[chunk(None)]).unwrap().rows.len(), 1);
        for column in PRIM_COLUMNS {
            assert!(PrimTable::from_chunks(&[chunk(Some(column))]).is_err(), "{column} is required");
        }
    }

    /// A row with the given path and defaults fit for a leaf mesh.
    pub fn row(path: &str, hash: &str, prims: u64, meshes: u64) -> PrimRow {
        PrimRow {
            path: path.into(),
            type_name: "Xform".into(),
            hash: hash.into(),
            prims,
            meshes,
            gprims: meshes,
            bytes: prims * 100,
            ..Default::default()
        }
    }

    #[test]
    fn chunks_rebuild_rows_and_parents() {
        let chunk = serde_json::json!({
            "path": ["/W/A", "/W"], "type": ["Mesh", "Xform"], "kind": ["", "assembly"], "hash": ["h1", "h2"],
            "prims": [1, 2], "meshes": [1, 1], "gprims": [1, 1], "bytes": [10, 10], "ext": ["", ""], "ext_n": [0, 0], "ref": ["", ""],
            "variants": ["", ""], "overrides_below": [0, 0], "instance": [false, false], "physics": [0, 0],
            "skeleton": [0, 0], "rigid_below": [false, false], "animated_below": [false, false],
            "animated": [false, false], "articulation_root": [false, false], "material": ["/M", ""],
            "bounds": [[0, 0, 0, 1, 1, 1], null],
        });
        let table = PrimTable::from_chunks(&[chunk.to_string()]).unwrap();
        let a = table.index_of("/W/A").unwrap();
        assert_eq!(table.parent[a], table.index_of("/W"));
        assert_eq!(table.rows[a].bounds, Some([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]));
        assert!(PrimTable::from_chunks(["{\"path\": [\"/W\"]}"]).is_err());
    }

    #[test]
    fn patterns_strip_numeric_suffixes() {
        assert_eq!(path_pattern(["/F/Lines/Machine_0001", "/F/Lines/Machine_0042"]), "/F/Lines/Machine_*");
        assert_eq!(path_pattern(["/F/A/Bolt_1", "/F/B/Bolt_1"]), "/F/*/Bolt_1");
        assert_eq!(name_base("Teapot_copy12"), "Teapot");
    }
}
