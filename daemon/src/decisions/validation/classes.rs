//! Geometry classes: meshes (and instances, keyed on their prototype) with identical
//! content, so a per-mesh rule runs once per class and its findings are listed for every copy.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::decisions::prims::PrimTable;

/// Meshes (and instances, keyed on their prototype) grouped by identical content, so a
/// per-mesh rule runs once per class. Built from the prim table's subtree hashes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeometryClasses {
    pub mesh_count: u64,
    pub class_count: u64,
    /// The fewest subtree roots that hold every representative and no copy.
    pub mask_paths: Vec<String>,
    /// What each mask path holds, in the same order: a validation sample is sized from it.
    #[serde(default)]
    pub mask_sizes: Vec<MaskSize>,
    /// Classes with more than one member: the representative and its copies.
    pub shared: Vec<SharedClass>,
}

/// The representatives under one mask path and the bytes of their authored values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MaskSize {
    pub representatives: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedClass {
    pub representative: String,
    pub copies: Vec<String>,
}

impl GeometryClasses {
    pub fn from_table(table: &PrimTable) -> Self {
        let is_unit = |i: usize| table.rows[i].instance || table.rows[i].type_name == "Mesh";
        let mut members: BTreeMap<(bool, &str), Vec<usize>> = BTreeMap::new();
        for i in (0..table.rows.len()).filter(|i| is_unit(*i)) {
            members.entry((table.rows[i].instance, table.rows[i].hash.as_str())).or_default().push(i);
        }
        let mut representative = vec![false; table.rows.len()];
        let mut shared = Vec::new();
        for rows in members.values() {
            representative[rows[0]] = true;
            if rows.len() > 1 {
                shared.push(SharedClass {
                    representative: table.rows[rows[0]].path.clone(),
                    copies: rows[1..].iter().map(|i| table.rows[*i].path.clone()).collect(),
                });
            }
        }
        // Rows sort parents first, so walking backwards sees children before parents.
        let mut units = vec![0u64; table.rows.len()];
        let mut reps = vec![0u64; table.rows.len()];
        for i in (0..table.rows.len()).rev() {
            if is_unit(i) {
                units[i] += 1;
                reps[i] += representative[i] as u64;
            }
            if let Some(p) = table.parent[i] {
                units[p] += units[i];
                reps[p] += reps[i];
            }
        }
        let pure = |i: usize| units[i] > 0 && units[i] == reps[i];
        let roots: Vec<usize> =
            (0..table.rows.len()).filter(|i| pure(*i) && !table.parent[*i].is_some_and(pure)).collect();
        Self {
            mesh_count: (0..table.rows.len()).filter(|i| table.rows[*i].type_name == "Mesh").count() as u64,
            class_count: members.len() as u64,
            mask_paths: roots.iter().map(|i| table.rows[*i].path.clone()).collect(),
            mask_sizes: roots
                .iter()
                .map(|i| MaskSize { representatives: reps[*i], bytes: table.rows[*i].bytes })
                .collect(),
            shared,
        }
    }

    /// Every path a finding at `site` stands for: the site, and the same path under each copy
    /// when the site is (or lies under) a representative.
    pub fn expand(&self, site: &str, index: &HashMap<&str, &SharedClass>) -> Vec<String> {
        let mut head = site;
        loop {
            if let Some(class) = index.get(head) {
                let tail = &site[head.len()..];
                return std::iter::once(site.to_string())
                    .chain(class.copies.iter().map(|c| format!("{c}{tail}")))
                    .collect();
            }
            match head.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => head = parent,
                _ => return vec![site.to_string()],
            }
        }
    }

    pub fn index(&self) -> HashMap<&str, &SharedClass> {
        self.shared.iter().map(|c| (c.representative.as_str(), c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::validation::testing::table;

    #[test]
    fn geometry_classes_keep_one_representative_per_class_and_expand_copies() {
        let classes = GeometryClasses::from_table(&table());
        assert_eq!((classes.mesh_count, classes.class_count), (6, 3));
        // M1 holds only representatives; M3's body is one too, its bolt a copy.
        assert_eq!(classes.mask_paths, ["/F/M1", "/F/M3/Body"]);
        assert_eq!(classes.mask_sizes.iter().map(|m| m.representatives).collect::<Vec<_>>(), [2, 1]);
        let index = classes.index();
        assert_eq!(classes.expand("/F/M1/Bolt", &index), ["/F/M1/Bolt", "/F/M2/Bolt", "/F/M3/Bolt"]);
        assert_eq!(classes.expand("/F/M1/Body/Subset", &index), ["/F/M1/Body/Subset", "/F/M2/Body/Subset"]);
        assert_eq!(classes.expand("/F/M3/Body", &index), ["/F/M3/Body"]);
    }
}
