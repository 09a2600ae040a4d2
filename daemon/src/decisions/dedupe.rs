//! Phase 2b: hierarchy-dedupe candidates from the prim table.
//!
//! Two ways copies are found: by value (subtrees whose candidate hash matches, i.e. the
//! same content apart from the root's name and placement) and by reference (prims that
//! reference or payload the same asset but are not instanced). Each group gets its
//! instancing readiness; then the frontier picks which groups to cut at, biggest subtrees
//! first, without counting a copy twice.
//!
//! Candidates are counted once: a prim that other prims bring in through an internal
//! reference or payload (a BIM converter's hidden mesh library, a prototype scope) is the
//! definition those copies already share, not one more copy of it, so neither it nor
//! anything below it joins a group. On the Duplex BIM scene (348 visible meshes that
//! reference a hidden library) pairing scene nodes with their own library nodes had
//! doubled the groups and the prims sharing would save.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};

use super::prims::{path_pattern, PrimTable};

/// Single-prim "groups" and bare Xform+Mesh pairs are noise (finder spec default).
pub const MIN_SUBTREE_PRIMS: u64 = 3;
/// Kind is untrusted as a boundary when this share of kind-bearing prims holds <= 1 mesh.
pub const KIND_TRUST_MAX_SINGLE_MESH_FRACTION: f64 = 0.80;
/// Member paths listed per group in the artifact (the count is always complete).
pub const LISTED_MEMBERS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Hash,
    Reference,
}

/// The instancing-readiness verdict of the upstream contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Safe,
    OverridesFound,
    VariantDivergence,
}

/// Where the copies' relationship targets go (finder spec §7): all inside (green), the
/// same outside targets on every copy (yellow), or differing (red: not one prototype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Green,
    Yellow,
    Red,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub source: Source,
    pub key: String,
    /// Table rows of the copies, in path order.
    pub members: Vec<usize>,
    /// The first member of each distinct prototype (variant selection): what sharing keeps.
    pub representatives: Vec<usize>,
    pub subtree_prims: u64,
    pub prim_savings: u64,
    pub byte_savings: u64,
    pub readiness: Readiness,
    pub verdict: Verdict,
    pub findings: Vec<String>,
    /// physics / articulated / skeleton / animated_below: never instance these blindly.
    pub content_flags: Vec<&'static str>,
    /// A copy holds an independent mover below its root (rigid body or animated xform):
    /// sharing the subtree would freeze it, so the frontier does not cut here.
    pub blocks_sharing: bool,
}

impl Group {
    fn new(table: &PrimTable, source: Source, key: String, mut members: Vec<usize>) -> Self {
        members.sort_by(|a, b| table.rows[*a].path.cmp(&table.rows[*b].path));
        let mut group = Self {
            source,
            key,
            members,
            representatives: vec![],
            subtree_prims: 0,
            prim_savings: 0,
            byte_savings: 0,
            readiness: Readiness::Safe,
            verdict: Verdict::Green,
            findings: vec![],
            content_flags: vec![],
            blocks_sharing: false,
        };
        group.assess(table);
        group
    }

    pub fn copies(&self) -> usize {
        self.members.len()
    }

    /// Savings, prototypes, readiness, verdict and flags of the current member set.
    fn assess(&mut self, table: &PrimTable) {
        let rows = |g: &Self| g.members.iter().map(|m| &table.rows[*m]).collect::<Vec<_>>();
        let members = rows(self);
        let mut seen = HashSet::new();
        self.representatives =
            self.members.iter().copied().filter(|m| seen.insert(table.rows[*m].variants.clone())).collect();
        let kept: HashSet<usize> = self.representatives.iter().copied().collect();
        self.subtree_prims = members.iter().map(|r| r.prims).max().unwrap_or(0);
        self.prim_savings = self.members.iter().filter(|m| !kept.contains(m)).map(|m| table.rows[*m].prims).sum();
        // A copy that brings its content in through a reference stores it once already:
        // sharing it removes composed prims, not bytes.
        self.byte_savings = self
            .members
            .iter()
            .filter(|m| !kept.contains(m) && table.rows[**m].reference.is_empty())
            .map(|m| table.rows[*m].bytes)
            .sum();

        let n = members.len();
        self.findings.clear();
        let outside: HashSet<&str> = members.iter().map(|r| r.ext.as_str()).collect();
        self.verdict = if outside.len() > 1 {
            Verdict::Red
        } else if outside.contains("") {
            Verdict::Green
        } else {
            Verdict::Yellow
        };
        match self.verdict {
            Verdict::Red => self.findings.push(format!(
                "copies point at different targets outside their subtree ({} distinct sets): as formed they are not one prototype",
                outside.len()
            )),
            Verdict::Yellow => self.findings.push(format!(
                "every copy points at the same {} target(s) outside its subtree (typically material bindings): inline or keep them when sharing",
                members[0].ext_n
            )),
            Verdict::Green => {}
        }
        let overridden: Vec<&str> = members.iter().filter(|r| r.overrides_below > 0).map(|r| r.path.as_str()).collect();
        let prototypes = self.representatives.len();
        self.readiness = if !overridden.is_empty() || self.verdict == Verdict::Red {
            if !overridden.is_empty() {
                self.findings.push(format!(
                    "{} of {n} copies carry opinions on descendants of what they bring in (first: {})",
                    overridden.len(),
                    overridden[0]
                ));
            }
            Readiness::OverridesFound
        } else if prototypes > 1 {
            self.findings.push(format!(
                "copies select {prototypes} distinct variant combinations: each becomes its own prototype"
            ));
            Readiness::VariantDivergence
        } else {
            Readiness::Safe
        };

        self.content_flags.clear();
        if members.iter().any(|r| r.physics > 0) {
            self.content_flags.push("physics");
        }
        if members.iter().any(|r| r.rigid_below || r.articulation_root) {
            self.content_flags.push("articulated");
        }
        if members.iter().any(|r| r.skeleton > 0) {
            self.content_flags.push("skeleton");
        }
        if members.iter().any(|r| r.animated_below) {
            self.content_flags.push("animated_below");
        }
        self.blocks_sharing = members.iter().any(|r| r.rigid_below || r.animated_below);
        if self.blocks_sharing {
            self.findings.push(
                "a copy moves parts below its root (rigid bodies or animated transforms): sharing would freeze them"
                    .into(),
            );
        }
    }
}

/// Rows that are, or lie below, a definition: a prim the stage brings in elsewhere through
/// an internal reference or payload (stage facts `internal_reference_targets`) and that
/// renders nothing where it stands, being hidden itself or under a hidden prim (a BIM
/// converter's invisible library, a prototype scope). A placed object that other placements
/// reference (DrawModes' first teapot, which 34 others reference) renders: it stays a copy.
pub fn definition_rows(table: &PrimTable, targets: &[String]) -> HashSet<usize> {
    let hides = |i: usize| table.rows[i].bounds.is_none() && table.rows[i].gprims > 0;
    targets
        .iter()
        .filter_map(|path| table.index_of(path))
        .filter(|&i| hides(i) || table.ancestors(i).any(hides))
        .flat_map(|root| table.subtree(root))
        .collect()
}

/// Every group of two or more copies: by candidate hash, then by referenced asset.
/// Definitions (see [`definition_rows`]) are never copies.
pub fn find_groups(table: &PrimTable, definitions: &HashSet<usize>) -> Vec<Group> {
    let mut by_hash: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_reference: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in table.rows.iter().enumerate() {
        if r.instance || definitions.contains(&i) {
            continue;
        }
        if r.prims >= MIN_SUBTREE_PRIMS && r.gprims >= 1 {
            by_hash.entry(&r.hash).or_default().push(i);
        }
        if !r.reference.is_empty() {
            by_reference.entry(&r.reference).or_default().push(i);
        }
    }
    let mut groups: Vec<Group> = by_hash
        .into_iter()
        .filter(|(_, members)| members.len() >= 2)
        .map(|(key, members)| Group::new(table, Source::Hash, key.to_string(), members))
        .collect();
    let hashed: HashSet<Vec<usize>> = groups.iter().map(|g| g.members.clone()).collect();
    for (key, members) in by_reference {
        let group = Group::new(table, Source::Reference, key.to_string(), members);
        if group.copies() >= 2 && group.subtree_prims >= 1 && !hashed.contains(&group.members) {
            groups.push(group);
        }
    }
    groups
}

/// One group of the frontier, or why a found group is not on it.
#[derive(Clone, Debug)]
pub struct Placement {
    pub selected: bool,
    pub absorbed_by: Option<usize>,
    pub reason: String,
}

/// Which groups to cut at. Biggest subtrees first (then more copies): a copy that is
/// already a member of a selected group, or lies inside a copy that sharing removes
/// (a non-representative member), is not counted again; copies inside the kept
/// representatives still count (they share inside the prototype). A group keeps its
/// remaining copies and drops out below two. Groups whose copies move parts below their
/// root are never selected. Returns the groups (members updated) and their placement.
pub fn frontier(table: &PrimTable, mut groups: Vec<Group>) -> (Vec<Group>, Vec<Placement>) {
    groups.sort_by(|a, b| {
        b.subtree_prims.cmp(&a.subtree_prims).then(b.copies().cmp(&a.copies())).then(a.members.cmp(&b.members))
    });
    let mut claimed: HashMap<usize, usize> = HashMap::new(); // member row -> group index
    let mut removed: HashMap<usize, usize> = HashMap::new(); // non-representative member -> group index
    let mut placements = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter_mut().enumerate() {
        if group.blocks_sharing {
            placements.push(Placement {
                selected: false,
                absorbed_by: None,
                reason: "copies move parts below their root".into(),
            });
            continue;
        }
        let mut absorbed_by = None;
        let remaining: Vec<usize> = group
            .members
            .iter()
            .copied()
            .filter(|m| {
                let by = claimed.get(m).or_else(|| table.ancestors(*m).find_map(|a| removed.get(&a)));
                if let Some(by) = by {
                    absorbed_by.get_or_insert(*by);
                }
                by.is_none()
            })
            .collect();
        if remaining.len() < 2 {
            placements.push(Placement {
                selected: false,
                absorbed_by,
                reason: "its copies are shared through a larger group".into(),
            });
            continue;
        }
        if remaining.len() != group.members.len() {
            group.members = remaining;
            group.assess(table);
        }
        let kept: HashSet<usize> = group.representatives.iter().copied().collect();
        for m in &group.members {
            claimed.insert(*m, g);
            if !kept.contains(m) {
                removed.insert(*m, g);
            }
        }
        placements.push(Placement { selected: true, absorbed_by: None, reason: String::new() });
    }
    (groups, placements)
}

/// The kind-trust preflight (finder spec §6.0.1): is authored kind a real boundary here?
#[derive(Clone, Debug, PartialEq)]
pub struct KindTrust {
    pub sampled: usize,
    pub excluded_fine_grain_subcomponents: usize,
    pub single_mesh_fraction: f64,
    pub median_meshes: f64,
    /// None when no prim carries a boundary kind.
    pub trusted: Option<bool>,
}

pub fn kind_trust(table: &PrimTable) -> KindTrust {
    const BOUNDARY_KINDS: [&str; 3] = ["component", "subcomponent", "group"];
    let mut sample = Vec::new();
    let mut excluded = 0;
    for (i, r) in table.rows.iter().enumerate() {
        if !BOUNDARY_KINDS.contains(&r.kind.as_str()) {
            continue;
        }
        // A single-mesh subcomponent under a multi-mesh kind-bearing ancestor is well-authored fine grain.
        let fine_grain = r.kind == "subcomponent"
            && r.meshes <= 1
            && table.ancestors(i).any(|a| !table.rows[a].kind.is_empty() && table.rows[a].meshes > 1);
        if fine_grain {
            excluded += 1;
        } else {
            sample.push(r.meshes);
        }
    }
    if sample.is_empty() {
        return KindTrust {
            sampled: 0,
            excluded_fine_grain_subcomponents: excluded,
            single_mesh_fraction: 0.0,
            median_meshes: 0.0,
            trusted: None,
        };
    }
    sample.sort_unstable();
    let single = sample.iter().filter(|m| **m <= 1).count() as f64 / sample.len() as f64;
    let mid = sample.len() / 2;
    let median = if sample.len() % 2 == 1 { sample[mid] as f64 } else { (sample[mid - 1] + sample[mid]) as f64 / 2.0 };
    KindTrust {
        sampled: sample.len(),
        excluded_fine_grain_subcomponents: excluded,
        single_mesh_fraction: single,
        median_meshes: median,
        trusted: Some(single < KIND_TRUST_MAX_SINGLE_MESH_FRACTION && median > 1.0),
    }
}

/// Every copy of a group with what restructure and instancing need of it: which
/// representative (value-variant) it shares, whether it overrides what an arc brings in,
/// and what it already references.
fn sites(table: &PrimTable, group: &Group) -> Vec<Value> {
    let variant_of: HashMap<&str, usize> =
        group.representatives.iter().enumerate().map(|(k, r)| (table.rows[*r].variants.as_str(), k)).collect();
    group
        .members
        .iter()
        .map(|m| {
            let row = &table.rows[*m];
            json!({
                "path": row.path,
                "prototype": variant_of.get(row.variants.as_str()).copied().unwrap_or(0),
                "overrides": row.overrides_below > 0,
                "ref": row.reference,
            })
        })
        .collect()
}

/// The dedupe-candidates artifact (schemas/dedupe-candidates.schema.json).
pub fn candidates_artifact(
    table: &PrimTable,
    groups: &[Group],
    placements: &[Placement],
    trust: &KindTrust,
    stage: &str,
) -> Value {
    let id = |g: usize| format!("g{:03}", g + 1);
    let identity_kinds = ["assembly", "group", "component", "subcomponent"];
    let listed: Vec<Value> = groups
        .iter()
        .zip(placements)
        .enumerate()
        .map(|(g, (group, place))| {
            let first = &table.rows[group.members[0]];
            // The upstream identity signals: a referenced asset is a named unit (its file); a
            // repeated subtree without trusted kind is the structural fallback, never anonymous
            // geometry (groups hold at least MIN_SUBTREE_PRIMS prims).
            let (grain_source, identity_signal) = if group.source == Source::Reference {
                ("identity", "naming")
            } else if trust.trusted == Some(true) && identity_kinds.contains(&first.kind.as_str()) {
                ("identity", "kind")
            } else {
                ("structural_fallback", "structural_fallback")
            };
            let paths: Vec<&str> = group.members.iter().map(|m| table.rows[*m].path.as_str()).collect();
            json!({
                "id": id(g),
                "source": group.source,
                "key": group.key,
                "path_pattern": path_pattern(paths.iter().copied()),
                "subtree_prims": group.subtree_prims,
                "meshes_per_copy": first.meshes,
                "copies": group.copies(),
                "prototypes": group.representatives.len(),
                "estimated_prim_savings": group.prim_savings,
                "estimated_byte_savings": group.byte_savings,
                "readiness": group.readiness,
                "verdict": group.verdict,
                "findings": group.findings,
                "content_flags": group.content_flags,
                "grain_source": grain_source,
                "identity_signal": identity_signal,
                "kind_untrusted": trust.trusted == Some(false),
                "depth": first.depth(),
                "selected": place.selected,
                "blocks_sharing": group.blocks_sharing,
                "absorbed_by": place.absorbed_by.map(id),
                "not_selected_reason": if place.selected { Value::Null } else { json!(place.reason) },
                "representatives": group.representatives.iter().map(|m| table.rows[*m].path.as_str()).collect::<Vec<_>>(),
                "members": paths.iter().take(LISTED_MEMBERS).collect::<Vec<_>>(),
                // Every copy of a selected group, for apply-restructure (Phase 2f/3).
                "sites": if place.selected { json!(sites(table, group)) } else { Value::Null },
            })
        })
        .collect();
    let selected: Vec<&Group> = groups.iter().zip(placements).filter(|(_, p)| p.selected).map(|(g, _)| g).collect();
    let clean: u64 = selected
        .iter()
        .filter(|g| g.verdict != Verdict::Red && g.readiness != Readiness::OverridesFound)
        .map(|g| g.prim_savings)
        .sum();
    let total: u64 = selected.iter().map(|g| g.prim_savings).sum();
    let max_depth = table.rows.iter().map(|r| r.depth()).max().unwrap_or(0);
    json!({
        "schemaVersion": "1.0",
        "stage": stage,
        "root_scanned": "/",
        "hash_level": 4,
        "float_tolerance": 0.0,
        "min_subtree_prims": MIN_SUBTREE_PRIMS,
        "prims_hashed": table.rows.len(),
        "max_depth_scanned": max_depth,
        "groups_found_below_depth_2": selected.iter().any(|g| table.rows[g.members[0]].depth() > 2),
        "group_count": groups.len(),
        "selected_count": selected.len(),
        "total_prim_savings": total,
        "total_byte_savings": selected.iter().map(|g| g.byte_savings).sum::<u64>(),
        "clean_prim_savings": clean,
        "blocked_prim_savings": total - clean,
        "kind_trust": {
            "sampled": trust.sampled, "excluded_fine_grain_subcomponents": trust.excluded_fine_grain_subcomponents,
            "single_mesh_fraction": trust.single_mesh_fraction, "median_meshes": trust.median_meshes,
            "trusted": trust.trusted, "threshold": KIND_TRUST_MAX_SINGLE_MESH_FRACTION,
        },
        "groups": listed,
        "caveats": [
            "advisory: no stage was modified; savings are estimates until a rewrite and an after-profile confirm them",
            "targets outside a candidate subtree (yellow/red) may prevent clean instancing; matching material bindings can usually be inlined",
            "groups that move parts below their root (rigid bodies, animated transforms) are never cut at",
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::prims::tests::row;
    use crate::decisions::prims::PrimRow;

    /// Three machines of 5 prims (hash M) with two bolt assemblies of 3 prims (hash B) each.
    fn factory() -> PrimTable {
        let mut rows = vec![row("/F", "root", 32, 9)];
        for m in 1..=3 {
            rows.push(row(&format!("/F/M{m}"), "M", 10, 3));
            for b in 1..=2 {
                rows.push(row(&format!("/F/M{m}/B{b}"), "B", 3, 1));
                rows.push(row(&format!("/F/M{m}/B{b}/Geom"), "G", 1, 1));
                rows.push(row(&format!("/F/M{m}/B{b}/Tip"), "T", 1, 0));
            }
            rows.push(row(&format!("/F/M{m}/Body"), "Y", 1, 1));
        }
        PrimTable::from_rows(rows)
    }

    fn frontier_of(table: &PrimTable) -> Vec<(u64, usize, u64)> {
        let (groups, placements) = frontier(table, find_groups(table, &HashSet::new()));
        groups
            .iter()
            .zip(&placements)
            .filter(|(_, p)| p.selected)
            .map(|(g, _)| (g.subtree_prims, g.copies(), g.prim_savings))
            .collect()
    }

    #[test]
    fn copies_inside_the_kept_prototype_still_count_once() {
        // Sharing the machines removes 2 × 10 prims; the 2 bolts of the kept machine still share (3 prims).
        assert_eq!(frontier_of(&factory()), [(10, 3, 20), (3, 2, 3)]);
    }

    #[test]
    fn a_copy_in_two_groups_is_counted_once() {
        let mut rows = factory().rows;
        for r in rows.iter_mut().filter(|r| r.hash == "M") {
            r.reference = "@/lib/machine.usd@</Machine>".into();
        }
        // The reference group has the same members as the hash group: reported once.
        let table = PrimTable::from_rows(rows);
        assert_eq!(find_groups(&table, &HashSet::new()).iter().filter(|g| g.subtree_prims == 10).count(), 1);
        assert_eq!(frontier_of(&table), [(10, 3, 20), (3, 2, 3)]);
    }

    /// A BIM converter's layout: `/Scene/Obj_i` internally reference `/Library/Part`, whose
    /// content (3 prims) they compose; the library is hidden (no bounds), the scene renders.
    fn library_and_references(copies: usize) -> PrimTable {
        let shown = |r: PrimRow| PrimRow { bounds: Some([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), ..r };
        let mut rows = vec![row("/Library", "lib", 4, 1), row("/Library/Part", "P", 3, 1)];
        rows.push(shown(row("/Library/Part/Geom", "G", 1, 1)));
        rows.push(row("/Library/Part/Cap", "C", 1, 0));
        rows.push(shown(row("/Scene", "scene", 1 + 3 * copies as u64, copies as u64)));
        for i in 0..copies {
            let r = PrimRow { reference: "</Library/Part>".into(), ..row(&format!("/Scene/Obj_{i}"), "P", 3, 1) };
            rows.push(shown(r));
            rows.push(shown(row(&format!("/Scene/Obj_{i}/Geom"), "G", 1, 1)));
            rows.push(row(&format!("/Scene/Obj_{i}/Cap"), "C", 1, 0));
        }
        PrimTable::from_rows(rows)
    }

    #[test]
    fn copies_of_a_library_definition_are_counted_once() {
        let table = library_and_references(3);
        let definitions = definition_rows(&table, &["/Library/Part".into(), "/Missing".into()]);
        assert_eq!(definitions.len(), 3, "the definition and its two children");
        let groups = find_groups(&table, &definitions);
        // One group: the three scene copies, by hash (the reference group has the same members).
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.copies(), 3);
        assert!(g.members.iter().all(|m| table.rows[*m].path.starts_with("/Scene/")));
        assert_eq!(g.prim_savings, 6, "two copies' composed prims go");
        assert_eq!(g.byte_savings, 0, "the content is stored once, in the library, already");
        // Without the definition known, the library node was paired with its own users.
        let blind = find_groups(&table, &HashSet::new());
        assert_eq!((blind[0].copies(), blind[0].prim_savings), (4, 9));
    }

    #[test]
    fn a_rendered_object_other_placements_reference_stays_a_copy() {
        // Obj_1 and Obj_2 reference Obj_0, which is placed and renders like them.
        let mut rows = library_and_references(3).rows;
        rows.retain(|r| !r.path.starts_with("/Library"));
        for r in rows.iter_mut().filter(|r| r.path == "/Scene/Obj_1" || r.path == "/Scene/Obj_2") {
            r.reference = "</Scene/Obj_0>".into();
        }
        let table = PrimTable::from_rows(rows);
        assert!(definition_rows(&table, &["/Scene/Obj_0".into()]).is_empty());
    }

    #[test]
    fn references_with_different_variants_are_one_group_with_divergence() {
        let mut rows = vec![row("/W", "w", 7, 3)];
        for (i, variant) in ["red", "red", "blue"].iter().enumerate() {
            let mut r = row(&format!("/W/Teapot_{i}"), &format!("h{variant}"), 2, 1);
            r.reference = "@/a/Teapot.usd@</Teapot>".into();
            r.variants = variant.to_string();
            rows.push(r);
        }
        let table = PrimTable::from_rows(rows);
        let groups = find_groups(&table, &HashSet::new());
        let teapots = groups.iter().find(|g| g.source == Source::Reference).unwrap();
        assert_eq!((teapots.copies(), teapots.representatives.len()), (3, 2));
        assert_eq!(teapots.readiness, Readiness::VariantDivergence);
        assert_eq!(teapots.prim_savings, 2, "one red copy goes; red and blue prototypes stay");
    }

    #[test]
    fn readiness_and_verdict_follow_overrides_and_outside_targets() {
        let copies = |ext: [&str; 2], overrides: [u64; 2]| {
            let rows: Vec<PrimRow> = (0..2)
                .map(|i| PrimRow {
                    ext: ext[i].into(),
                    ext_n: 1,
                    overrides_below: overrides[i],
                    ..row(&format!("/W/A{i}"), "h", 3, 1)
                })
                .collect();
            let table = PrimTable::from_rows(rows);
            let g = find_groups(&table, &HashSet::new()).remove(0);
            (g.readiness, g.verdict)
        };
        assert_eq!(copies(["", ""], [0, 0]), (Readiness::Safe, Verdict::Green));
        assert_eq!(copies(["m", "m"], [0, 0]), (Readiness::Safe, Verdict::Yellow));
        assert_eq!(copies(["m1", "m2"], [0, 0]), (Readiness::OverridesFound, Verdict::Red));
        assert_eq!(copies(["", ""], [0, 2]), (Readiness::OverridesFound, Verdict::Green));
    }

    #[test]
    fn moving_parts_keep_the_frontier_below_them() {
        let mut table = factory();
        for r in table.rows.iter_mut().filter(|r| r.hash == "M") {
            r.rigid_below = true;
        }
        let (groups, placements) = frontier(&table, find_groups(&table, &HashSet::new()));
        let machines = groups.iter().position(|g| g.subtree_prims == 10).unwrap();
        assert!(!placements[machines].selected);
        assert!(groups[machines].content_flags.contains(&"articulated"));
        // The bolts are cut at instead: all six copies.
        assert_eq!(frontier_of(&table), [(3, 6, 15)]);
    }

    #[test]
    fn kind_is_untrusted_when_components_hold_single_meshes() {
        let mut rows: Vec<PrimRow> =
            (0..10).map(|i| PrimRow { kind: "component".into(), ..row(&format!("/W/P{i}"), "p", 1, 1) }).collect();
        assert_eq!(kind_trust(&PrimTable::from_rows(rows.clone())).trusted, Some(false));
        for r in rows.iter_mut().take(6) {
            r.meshes = 4;
        }
        assert_eq!(kind_trust(&PrimTable::from_rows(rows)).trusted, Some(true));
        assert_eq!(kind_trust(&factory()).trusted, None);
    }
}
