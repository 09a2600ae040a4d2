//! Phases 2f and 3 as plans: which prototypes to author, which copies to rewrite or flip
//! instanceable (instancing readiness), and which sub-assets to payload. The executor
//! authors exactly these (kit-extension/.../tasks/restructure.py, instancing.py).

use serde::{Deserialize, Serialize};

use super::Mode;

/// One copy of a selected dedupe group (dedupe-candidates `groups[].sites[]`).
#[derive(Clone, Debug, Deserialize)]
pub struct SiteCandidate {
    pub path: String,
    /// Index of the representative (value-variant) this copy shares.
    pub prototype: usize,
    /// It carries opinions over what an arc brings in below it.
    pub overrides: bool,
    #[serde(rename = "ref")]
    pub reference: String,
}

/// A selected group of the dedupe frontier, as the assessment wrote it.
#[derive(Clone, Debug, Deserialize)]
pub struct GroupCandidate {
    pub id: String,
    /// hash (copies by value) | reference (placements of one referenced asset)
    pub source: String,
    pub verdict: String,
    pub representatives: Vec<String>,
    #[serde(default)]
    pub content_flags: Vec<String>,
    #[serde(default)]
    pub sites: Option<Vec<SiteCandidate>>,
    #[serde(default)]
    pub selected: bool,
    /// kind | naming | structural_fallback (upstream identity signals).
    #[serde(default = "structural_fallback")]
    pub identity_signal: String,
    /// The copies as listed (at most dedupe::LISTED_MEMBERS).
    #[serde(default)]
    pub members: Vec<String>,
    /// Copies move parts below their root: the frontier never shares this group.
    #[serde(default)]
    pub blocks_sharing: bool,
}

fn structural_fallback() -> String {
    "structural_fallback".into()
}

/// Instancing readiness of one share: the copies of a group that select one value-variant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Readiness {
    pub group: String,
    pub prototype: usize,
    pub sites: usize,
    /// safe | overrides_found | variant_divergence (the upstream verdicts)
    pub readiness: &'static str,
    /// Copies flipped instanceable (empty unless the share is safe or its clean copies are).
    pub flipped: Vec<String>,
    pub held_back: Vec<HeldBack>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldBack {
    pub path: String,
    pub reason: String,
}

/// Which copies may be flipped instanceable, share by share. A copy with overrides below is
/// held back (sharing would drop them); a value-variant with a single copy shares nothing;
/// a group whose copies point at different outside targets (verdict red) is not one
/// prototype; physics, skeletons and animation below are not instanced blindly.
pub fn readiness(group: &GroupCandidate) -> Vec<Readiness> {
    let sites = group.sites.as_deref().unwrap_or_default();
    let divergent = group.representatives.len() > 1;
    (0..group.representatives.len().max(1))
        .map(|k| {
            let share: Vec<&SiteCandidate> = sites.iter().filter(|s| s.prototype == k).collect();
            let mut held_back = Vec::new();
            let mut clean = Vec::new();
            for site in &share {
                let reason = if group.verdict == "red" {
                    Some("copies point at different targets outside their subtree: not one prototype".to_string())
                } else if !group.content_flags.is_empty() {
                    Some(format!("content below is not instanced blindly: {}", group.content_flags.join(", ")))
                } else if site.overrides {
                    Some("carries opinions on descendants of what it brings in".to_string())
                } else {
                    None
                };
                match reason {
                    Some(reason) => held_back.push(HeldBack { path: site.path.clone(), reason }),
                    None => clean.push(site.path.clone()),
                }
            }
            if clean.len() < 2 {
                let reason = if divergent {
                    "the only copy selecting this variant: nothing to share"
                } else {
                    "fewer than two clean copies"
                };
                held_back.extend(clean.drain(..).map(|path| HeldBack { path, reason: reason.into() }));
            }
            let verdict = if share.iter().any(|s| s.overrides) || group.verdict == "red" {
                "overrides_found"
            } else if divergent {
                "variant_divergence"
            } else {
                "safe"
            };
            Readiness {
                group: group.id.clone(),
                prototype: k,
                sites: share.len(),
                readiness: verdict,
                flipped: clean,
                held_back,
            }
        })
        .collect()
}

/// A prototype: copied from `source`, or (`in_place`) the prim at `source` itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedPrototype {
    pub name: String,
    pub group: String,
    pub source: String,
    pub in_place: bool,
    /// The group's identity signal (what set the grain), for the manifest.
    pub identity_signal: String,
}

/// A copy rewritten to reference its prototype. `within` names the prototype whose copied
/// content holds it ("" = the assembly root); `path` is then relative to that prototype.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedSite {
    pub prototype: String,
    #[serde(rename = "in")]
    pub within: String,
    pub path: String,
    /// The copy's path on the source stage (its composed placement is read there).
    pub member: String,
    pub instanceable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedSubasset {
    pub name: String,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    pub group: String,
    pub reason: String,
}

/// What apply-restructure authors (the executor's `restructure` task parameters, less paths).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RestructurePlan {
    pub mode: Mode,
    pub namespace: &'static str,
    pub prototypes: Vec<PlannedPrototype>,
    pub sites: Vec<PlannedSite>,
    pub subassets: Vec<PlannedSubasset>,
    /// Placements of one referenced asset: no prototype to author, only the flip.
    pub flips: Vec<String>,
    pub readiness: Vec<Readiness>,
    pub skipped: Vec<Skipped>,
}

/// The internal prototype namespace: an abstract `class`, so it neither renders nor counts.
pub const PROTOTYPE_NAMESPACE: &str = "/__usdtune_prototypes";

fn identifier(text: &str) -> String {
    let mut name: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(super) fn is_below(path: &str, root: &str) -> bool {
    path.len() > root.len() && path.starts_with(root) && path.as_bytes()[root.len()] == b'/'
}

/// Prototypes and rewritten sites for a dedupe materialization (internal or external).
///
/// One prototype per value-variant of each group. A copy that the others already
/// reference (a hidden library prim of a BIM export) stays where it is as the prototype, in
/// both modes: the sharing exists, and extracting it would only scatter it into files
/// (unless, in external mode, a copy lies inside another extracted prototype, which cannot
/// reference back into the assembly). Otherwise the representative is copied. A copy lying
/// inside a copied prototype's source is rewritten inside the prototype, where that content
/// now lives (the nested library: parent prototypes reference child prototypes).
pub fn plan_dedupe(mode: Mode, groups: &[GroupCandidate]) -> RestructurePlan {
    let mut plan = RestructurePlan {
        mode,
        namespace: PROTOTYPE_NAMESPACE,
        prototypes: vec![],
        sites: vec![],
        subassets: vec![],
        flips: vec![],
        readiness: vec![],
        skipped: vec![],
    };
    // (prototype name, its source path, copied?) per (group, variant)
    let mut shares: Vec<(&GroupCandidate, usize, String, String, bool)> = Vec::new();
    for group in groups.iter().filter(|g| g.selected) {
        let readiness = readiness(group);
        if group.source == "reference" {
            plan.flips.extend(readiness.iter().flat_map(|r| r.flipped.iter().cloned()));
            plan.readiness.extend(readiness);
            continue;
        }
        if group.verdict == "red" {
            plan.skipped.push(Skipped {
                group: group.id.clone(),
                reason: "copies point at different targets outside their subtree: not one prototype".into(),
            });
            plan.readiness.extend(readiness);
            continue;
        }
        let Some(sites) = group.sites.as_deref() else {
            plan.skipped.push(Skipped {
                group: group.id.clone(),
                reason: "the assessment listed no sites for this group".into(),
            });
            continue;
        };
        for (k, representative) in group.representatives.iter().enumerate() {
            let in_place = sites
                .iter()
                .filter(|s| s.prototype == k)
                .find(|candidate| {
                    candidate.reference.is_empty()
                        && sites.iter().any(|s| s.prototype == k && s.reference == format!("<{}>", candidate.path))
                })
                .map(|site| site.path.clone())
                .or_else(|| shared_definition(sites.iter().filter(|s| s.prototype == k)));
            let variant = if group.representatives.len() > 1 { format!("_v{k}") } else { String::new() };
            let name = identifier(&format!("{}_{}{variant}", leaf(representative), group.id));
            let (source, copied) = match in_place {
                Some(path) => (path, false),
                None => (representative.clone(), true),
            };
            shares.push((group, k, name, source, copied));
        }
        plan.readiness.extend(readiness);
    }
    if mode == Mode::ExternalPrototype {
        let roots: Vec<String> = shares.iter().filter(|s| s.4).map(|s| s.3.clone()).collect();
        for share in shares.iter_mut().filter(|s| !s.4) {
            let nested = share.0.sites.iter().flatten().any(|site| roots.iter().any(|root| is_below(&site.path, root)));
            if nested {
                share.3 = share.0.representatives[share.1].clone();
                share.4 = true;
            }
        }
    }
    let copied: Vec<(&str, &str)> = shares.iter().filter(|s| s.4).map(|s| (s.2.as_str(), s.3.as_str())).collect();
    for (group, k, name, source, is_copied) in &shares {
        plan.prototypes.push(PlannedPrototype {
            name: name.clone(),
            group: group.id.clone(),
            source: source.clone(),
            in_place: !*is_copied,
            identity_signal: group.identity_signal.clone(),
        });
        let flipped: std::collections::HashSet<&str> = plan
            .readiness
            .iter()
            .filter(|r| r.group == group.id && r.prototype == *k)
            .flat_map(|r| r.flipped.iter().map(String::as_str))
            .collect();
        for site in group.sites.iter().flatten().filter(|s| s.prototype == *k) {
            if !is_copied && site.path == *source {
                continue; // the prototype itself, used in place
            }
            // The innermost copied prototype whose source holds this copy.
            let holder =
                copied.iter().filter(|(_, root)| is_below(&site.path, root)).max_by_key(|(_, root)| root.len());
            let (within, path) = match holder {
                Some((holder, root)) => (holder.to_string(), site.path[root.len() + 1..].to_string()),
                None => (String::new(), site.path.clone()),
            };
            plan.sites.push(PlannedSite {
                prototype: name.clone(),
                within,
                path,
                member: site.path.clone(),
                instanceable: flipped.contains(site.path.as_str()),
            });
        }
    }
    plan
}

/// The definition every copy already references internally (the first in path order when
/// they reference equal definitions, e.g. a BIM library holding one mesh twice): the copies'
/// sharing exists, so that definition is the prototype, used where it is. None when a copy
/// references nothing or an external asset.
fn shared_definition<'a>(copies: impl Iterator<Item = &'a SiteCandidate>) -> Option<String> {
    let mut definitions = Vec::new();
    for copy in copies {
        definitions.push(copy.reference.strip_prefix('<')?.strip_suffix('>')?.to_string());
    }
    definitions.into_iter().min()
}

/// Selective loading: each boundary subtree becomes a payloaded sub-asset (no sharing).
pub fn plan_selective(boundaries: &[String]) -> RestructurePlan {
    // Outermost boundaries only: a boundary inside another travels with it.
    let mut roots: Vec<&String> = boundaries.iter().collect();
    roots.sort();
    roots.dedup();
    let outer: Vec<&String> = roots.iter().copied().filter(|b| !roots.iter().any(|o| is_below(b, o))).collect();
    let mut names = std::collections::HashSet::new();
    let subassets = outer
        .into_iter()
        .map(|b| {
            let mut name = identifier(leaf(b));
            let mut k = 1;
            while !names.insert(name.clone()) {
                k += 1;
                name = identifier(&format!("{}_{k}", leaf(b)));
            }
            PlannedSubasset { name, source: b.clone() }
        })
        .collect();
    RestructurePlan {
        mode: Mode::SelectiveLoading,
        namespace: PROTOTYPE_NAMESPACE,
        prototypes: vec![],
        sites: vec![],
        subassets,
        flips: vec![],
        readiness: vec![],
        skipped: vec![],
    }
}

/// Phase 3 without a restructure: flips of placements of one referenced asset, authored
/// in an override layer over the source.
pub fn plan_flips(groups: &[GroupCandidate]) -> (Vec<String>, Vec<Readiness>) {
    let mut flips = Vec::new();
    let mut rows = Vec::new();
    for group in groups.iter().filter(|g| g.selected && g.source == "reference") {
        let readiness = readiness(group);
        flips.extend(readiness.iter().flat_map(|r| r.flipped.iter().cloned()));
        rows.extend(readiness);
    }
    (flips, rows)
}

impl RestructurePlan {
    /// Phase 3 alone (no Phase 2f materialization): the reference placements it flips.
    pub fn flips_only(flips: Vec<String>, readiness: Vec<Readiness>) -> Self {
        Self {
            mode: Mode::InternalReference,
            namespace: PROTOTYPE_NAMESPACE,
            prototypes: vec![],
            sites: vec![],
            subassets: vec![],
            flips,
            readiness,
            skipped: vec![],
        }
    }

    /// Nothing to author: no prototype, no rewritten site, no sub-asset.
    pub fn is_empty(&self) -> bool {
        self.prototypes.is_empty() && self.sites.is_empty() && self.subassets.is_empty()
    }

    /// Placements this plan flips instanceable (rewritten sites and reference flips).
    pub fn flipped(&self) -> usize {
        self.sites.iter().filter(|s| s.instanceable).count() + self.flips.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(path: &str, prototype: usize, overrides: bool, reference: &str) -> SiteCandidate {
        SiteCandidate { path: path.into(), prototype, overrides, reference: reference.into() }
    }

    fn group(id: &str, source: &str, representatives: &[&str], sites: Vec<SiteCandidate>) -> GroupCandidate {
        GroupCandidate {
            id: id.into(),
            source: source.into(),
            verdict: "green".into(),
            selected: true,
            content_flags: vec![],
            representatives: representatives.iter().map(|r| r.to_string()).collect(),
            members: sites.iter().map(|s| s.path.clone()).collect(),
            sites: Some(sites),
            identity_signal: "kind".into(),
            blocks_sharing: false,
        }
    }

    #[test]
    fn copies_with_overrides_or_a_unique_variant_are_not_flipped() {
        let teapots = group(
            "g001",
            "reference",
            &["/W/T0", "/W/T2"],
            vec![
                site("/W/T0", 0, false, "@t.usd@<>"),
                site("/W/T1", 0, true, "@t.usd@<>"),
                site("/W/T2", 1, false, "@t.usd@<>"),
                site("/W/T3", 1, false, "@t.usd@<>"),
                site("/W/T4", 1, false, "@t.usd@<>"),
            ],
        );
        let rows = readiness(&teapots);
        assert_eq!(rows[0].readiness, "overrides_found");
        assert!(rows[0].flipped.is_empty(), "one clean copy left: nothing to share");
        assert_eq!(rows[0].held_back.len(), 2);
        assert_eq!(rows[1].readiness, "variant_divergence");
        assert_eq!(rows[1].flipped, ["/W/T2", "/W/T3", "/W/T4"]);
        let (flips, _) = plan_flips(&[teapots]);
        assert_eq!(flips.len(), 3);
    }

    #[test]
    fn a_red_group_is_never_shared() {
        let mut g = group("g001", "hash", &["/W/A"], vec![site("/W/A", 0, false, ""), site("/W/B", 0, false, "")]);
        g.verdict = "red".into();
        let plan = plan_dedupe(Mode::InternalReference, &[g]);
        assert!(plan.prototypes.is_empty() && plan.sites.is_empty());
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn copies_inside_a_copied_prototype_are_rewritten_there() {
        let lines = group(
            "g001",
            "hash",
            &["/F/Line_0"],
            vec![site("/F/Line_0", 0, false, ""), site("/F/Line_1", 0, false, "")],
        );
        let robots = group(
            "g002",
            "hash",
            &["/F/Line_0/Robot_0"],
            vec![
                site("/F/Line_0/Robot_0", 0, false, ""),
                site("/F/Line_0/Robot_1", 0, false, ""),
                site("/F/Cell/Robot_9", 0, false, ""),
            ],
        );
        let plan = plan_dedupe(Mode::ExternalPrototype, &[lines, robots]);
        assert_eq!(
            plan.prototypes.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["Line_0_g001", "Robot_0_g002"]
        );
        let robot_sites: Vec<(&str, &str)> = plan
            .sites
            .iter()
            .filter(|s| s.prototype == "Robot_0_g002")
            .map(|s| (s.within.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(robot_sites, [("Line_0_g001", "Robot_0"), ("Line_0_g001", "Robot_1"), ("", "/F/Cell/Robot_9")]);
        assert!(plan.sites.iter().all(|s| s.instanceable));
    }

    #[test]
    fn internal_mode_keeps_an_already_referenced_copy_as_the_prototype() {
        // A BIM library prim and the visible placement that references it.
        let g = group(
            "g060",
            "hash",
            &["/A/Library/node_0"],
            vec![site("/A/Library/node_0", 0, false, ""), site("/A/Scene/node_0", 0, false, "</A/Library/node_0>")],
        );
        let internal = plan_dedupe(Mode::InternalReference, std::slice::from_ref(&g));
        assert!(internal.prototypes[0].in_place && internal.prototypes[0].source == "/A/Library/node_0");
        assert_eq!(internal.sites.len(), 1);
        assert_eq!(internal.sites[0].member, "/A/Scene/node_0");
        let external = plan_dedupe(Mode::ExternalPrototype, std::slice::from_ref(&g));
        assert!(external.prototypes[0].in_place, "an existing sharing is not scattered into files");
        assert_eq!(external.sites.len(), 1);
        // ...unless a copy lies inside an extracted prototype, which cannot reach back.
        let outer =
            group("g001", "hash", &["/A/Scene"], vec![site("/A/Scene", 0, false, ""), site("/A/Other", 0, false, "")]);
        let nested = plan_dedupe(Mode::ExternalPrototype, &[outer, g]);
        assert!(nested.prototypes.iter().all(|p| !p.in_place));
    }

    #[test]
    fn copies_of_library_definitions_use_one_of_them_as_the_prototype() {
        // The library itself is no member (a definition, not a copy): the copies reference
        // two equal library prims; the first becomes the prototype and nothing is copied.
        let g = group(
            "g007",
            "hash",
            &["/A/Scene/node_0"],
            vec![
                site("/A/Scene/node_0", 0, false, "</A/Library/node_3>"),
                site("/A/Scene/node_1", 0, false, "</A/Library/node_1>"),
                site("/A/Scene/node_2", 0, false, "</A/Library/node_3>"),
            ],
        );
        for mode in [Mode::InternalReference, Mode::ExternalPrototype] {
            let plan = plan_dedupe(mode, std::slice::from_ref(&g));
            assert!(plan.prototypes[0].in_place && plan.prototypes[0].source == "/A/Library/node_1");
            assert_eq!(plan.sites.len(), 3, "every copy now references the one definition");
        }
        // A copy that references nothing (or an external asset) leaves the copy route.
        let mixed = group(
            "g008",
            "hash",
            &["/A/Scene/node_0"],
            vec![site("/A/Scene/node_0", 0, false, "</A/Library/node_3>"), site("/A/Scene/node_9", 0, false, "")],
        );
        assert!(!plan_dedupe(Mode::InternalReference, &[mixed]).prototypes[0].in_place);
    }

    #[test]
    fn selective_loading_cuts_at_the_outermost_boundaries() {
        let plan =
            plan_selective(&["/F/Hall_A".into(), "/F/Hall_A/Cell".into(), "/F/Hall_B".into(), "/G/Hall_A".into()]);
        let names: Vec<_> = plan.subassets.iter().map(|s| (s.name.as_str(), s.source.as_str())).collect();
        assert_eq!(names, [("Hall_A", "/F/Hall_A"), ("Hall_B", "/F/Hall_B"), ("Hall_A_2", "/G/Hall_A")]);
    }
}
