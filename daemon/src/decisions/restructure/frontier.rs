//! The manifest's `frontier` block (upstream apply-restructure `frontier`): the reuse a
//! restructure measured and whether its de-duplication descent converged.
//!
//! Phase 2b hashes every subtree of the source at every depth, and the frontier takes
//! nested groups inside the kept prototypes too, so the descent is one pass. Its terminal
//! re-scan is the candidate list checked against what the plan authored: a group above the
//! floor (MIN_SUBTREE_PRIMS) with two or more listed copies that are neither shared (a
//! rewritten site, a prototype, a flipped placement), deliberately kept (held back by
//! instancing readiness), nor inside a copy the restructure replaced by a reference is
//! reuse the restructure left standing. Groups whose copies move parts (rigid bodies,
//! animation) or point at different targets (verdict red) are not shareable and not counted.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::plan::{is_below, GroupCandidate, RestructurePlan};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frontier {
    /// The reuse was counted from the prim table (distinct vs total), not estimated.
    pub reuse_measured: bool,
    /// Prototypes authored plus referenced assets whose placements were flipped.
    pub distinct_prototypes: u64,
    /// The occurrences they stand for.
    pub total_units: u64,
    pub descent_converged: bool,
    pub final_rescan_new_groups_above_floor: u64,
    /// The groups the re-scan found, by id (empty when converged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unshared_groups: Vec<String>,
}

/// The frontier of a plan over the candidate groups it was planned from.
pub fn frontier(groups: &[GroupCandidate], plan: &RestructurePlan) -> Frontier {
    let unshared = unshared_groups(groups, plan);
    let in_place = plan.prototypes.iter().filter(|p| p.in_place).count();
    let flipped_groups: HashSet<&str> =
        plan.readiness.iter().filter(|r| !r.flipped.is_empty()).map(|r| r.group.as_str()).collect();
    let reference_groups = groups.iter().filter(|g| g.source == "reference" && flipped_groups.contains(g.id.as_str()));
    Frontier {
        reuse_measured: true,
        distinct_prototypes: (plan.prototypes.len() + reference_groups.count()) as u64,
        total_units: (plan.sites.len() + in_place + plan.flips.len()) as u64,
        descent_converged: unshared.is_empty(),
        final_rescan_new_groups_above_floor: unshared.len() as u64,
        unshared_groups: unshared,
    }
}

/// The terminal re-scan (module header): ids of the shareable groups with two or more
/// copies the plan left standing.
pub fn unshared_groups(groups: &[GroupCandidate], plan: &RestructurePlan) -> Vec<String> {
    let prototype_sources: HashSet<&str> = plan.prototypes.iter().map(|p| p.source.as_str()).collect();
    let mut shared: HashSet<&str> = plan.sites.iter().map(|s| s.member.as_str()).collect();
    shared.extend(prototype_sources.iter().copied());
    shared.extend(plan.flips.iter().map(String::as_str));
    shared.extend(plan.readiness.iter().flat_map(|r| r.held_back.iter().map(|h| h.path.as_str())));
    // A rewritten copy that is not a prototype's source is replaced by a reference: what
    // lay below it is the prototype's now. Below a prototype's source, copies live on.
    let replaced: Vec<&str> =
        plan.sites.iter().map(|s| s.member.as_str()).filter(|m| !prototype_sources.contains(m)).collect();
    groups
        .iter()
        .filter(|g| !g.blocks_sharing && g.verdict != "red")
        .filter(|g| {
            let standing = g
                .members
                .iter()
                .filter(|m| !shared.contains(m.as_str()) && !replaced.iter().any(|r| is_below(m, r)))
                .count();
            standing >= 2
        })
        .map(|g| g.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan_dedupe, SiteCandidate};
    use super::super::Mode;
    use super::*;

    fn group(id: &str, members: &[&str], selected: bool) -> GroupCandidate {
        GroupCandidate {
            id: id.into(),
            source: "hash".into(),
            verdict: "green".into(),
            representatives: vec![members[0].to_string()],
            content_flags: vec![],
            sites: selected.then(|| {
                members
                    .iter()
                    .map(|m| SiteCandidate {
                        path: m.to_string(),
                        prototype: 0,
                        overrides: false,
                        reference: "".into(),
                    })
                    .collect()
            }),
            selected,
            identity_signal: "kind".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            blocks_sharing: false,
        }
    }

    #[test]
    fn a_plan_that_shares_every_group_converges() {
        // Robots R0..R2, each with two wheels; the wheels inside the kept R0 are a nested group.
        let robots = group("g001", &["/W/R0", "/W/R1", "/W/R2"], true);
        let wheels = group("g002", &["/W/R0/A", "/W/R0/B"], true);
        let absorbed = group("g003", &["/W/R0/A", "/W/R0/B", "/W/R1/A", "/W/R1/B"], false);
        let groups = [robots, wheels, absorbed];
        let plan = plan_dedupe(Mode::InternalReference, &groups);
        let frontier = frontier(&groups, &plan);
        assert!(frontier.descent_converged, "{frontier:?}");
        assert_eq!(frontier.final_rescan_new_groups_above_floor, 0);
        assert_eq!((frontier.distinct_prototypes, frontier.total_units), (2, 5));
    }

    #[test]
    fn a_nested_group_left_inside_the_kept_prototype_is_found() {
        let robots = group("g001", &["/W/R0", "/W/R1", "/W/R2"], true);
        // The wheels inside R0 were not shared: the prototype keeps two equal copies.
        let wheels = group("g002", &["/W/R0/A", "/W/R0/B"], false);
        let groups = [robots, wheels];
        let frontier = frontier(&groups, &plan_dedupe(Mode::InternalReference, &groups));
        assert!(!frontier.descent_converged);
        assert_eq!(frontier.unshared_groups, ["g002"]);
    }

    #[test]
    fn groups_that_cannot_be_shared_are_not_counted() {
        let robots = group("g001", &["/W/R0", "/W/R1"], true);
        let mut movers = group("g002", &["/W/M0", "/W/M1"], false);
        movers.blocks_sharing = true;
        let mut red = group("g003", &["/W/X0", "/W/X1"], false);
        red.verdict = "red".into();
        let groups = [robots, movers, red];
        assert!(frontier(&groups, &plan_dedupe(Mode::InternalReference, &groups)).descent_converged);
    }
}
