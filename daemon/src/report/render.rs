//! The report rendered for people: Markdown (optimization-report.md) and a short terminal
//! summary (`usdtune show RUN --format pretty`), both from the typed report only.

use super::{OptimizationReport, RestructureBlock};
use crate::decisions::compare::fmt_num;

/// The human summary, optimization-report.md.
pub fn markdown(report: &OptimizationReport) -> String {
    let mut md = String::new();
    md += &format!("# USD Performance Tuning Report: {}\n\n", report.asset_name);
    md += &format!(
        "- Input: `{}`\n- Output: {}\n- Workflow mode: **{}**\n- Verdict: **{}**\n- Stage Optimization Score: **{} / 10** ({})\n- Generated: {}\n\n",
        report.input_path,
        report.output_path.as_ref().map(|p| format!("`{p}`")).unwrap_or_else(|| "none (no optimized stage written)".into()),
        report.workflow_mode.as_str(),
        report.verdict.as_str(),
        serde_json::json!(report.optimization_score),
        report.score_label,
        report.timestamp
    );
    let rc = &report.runtime_context;
    md += &format!(
        "Runtime: usd-optimize {} · usd-validation-nvidia {}\n\n",
        rc.usd_optimize.as_ref().map_or("absent", |so| so.version.as_str()),
        rc.asset_validator.as_ref().map_or("absent", |av| av.version.as_str())
    );
    if !report.notes.is_empty() {
        md += &format!("> {}\n\n", report.notes);
    }
    md += &format!("## Summary\n\n{}\n\n## Reasoning\n\n{}\n\n", report.executive_summary, report.reasoning);
    let st = &report.structure;
    md += &format!(
        "## Structure\n\n**{}**: {}. {}; {} containment pairs scoped for the occlusion probe.\n\n",
        st.classification,
        st.reasons.join("; "),
        st.hierarchy_dedupe,
        st.containment_pairs
    );
    if !st.top_groups.is_empty() {
        md += "| repeated subtree | copies | prims each | prims saved | readiness | flags |\n|---|---:|---:|---:|---|---|\n";
        for g in &st.top_groups {
            md += &format!(
                "| `{}` | {} | {} | {} | {} | {} |\n",
                g.path_pattern,
                g.copies,
                g.subtree_prims,
                g.estimated_prim_savings,
                g.readiness,
                g.content_flags.join(", ")
            );
        }
        md += "\n";
    }
    md += "## Metrics\n\n| metric | before | after | change | verdict |\n|---|---:|---:|---:|---|\n";
    for m in &report.metrics {
        md += &format!(
            "| {} | {} | {} | {:+.1}% | {}{} |\n",
            m.name,
            fmt_num(m.before),
            fmt_num(m.after),
            m.change_pct,
            m.verdict.as_str(),
            m.notes.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    if let Some(f) = &report.footprint {
        md += &format!(
            "\nFootprint: {} bytes as delivered, {} re-encoded ({:+.1}%: the free re-encode), {} optimized ({:+.1}% against the re-encoded source; {:+.1}% on disk).\n",
            fmt_num(f.raw_input_bytes as f64),
            fmt_num(f.repack_normalized_baseline_bytes as f64),
            f.repack_delta_pct,
            fmt_num(f.optimized_bytes as f64),
            f.structural_delta_pct,
            f.raw_delta_pct
        );
    }
    md += "\n## Operations\n\n";
    if report.operations.is_empty() {
        md += "No operation ran.\n";
    }
    for op in &report.operations {
        md += &format!("{}. `{}`: {} ({})\n", op.order, op.name, op.result, op.method);
    }
    if let Some(p) = &report.preservation {
        md +=
            &format!("\n## Geometry preservation\n\n**{}**: {}\n", if p.passed { "passed" } else { "FAILED" }, p.notes);
    }
    md += "\n## Validation\n\n| check | issues | notes |\n|---|---:|---|\n";
    for v in &report.validators {
        md += &format!("| {} | {} | {} |\n", v.name, v.issues, v.notes);
    }
    md += "\n## Target coverage\n\n";
    md += &format!("Complete: **{}**\n\n", report.target_coverage.complete);
    for e in &report.target_coverage.entries {
        md += &format!("- `{}` ({}, {} meshes): {}\n", e.path, e.role, e.mesh_count, disposition(e.disposition));
    }
    md += "\n## Untapped options\n\n";
    for u in &report.untapped_options {
        md += &format!("- {u}\n");
    }
    md
}

fn disposition(d: crate::decisions::targets::Disposition) -> String {
    serde_json::to_value(d).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// A few lines for a terminal: what went in, what came out, the verdict and why.
pub fn pretty(report: &OptimizationReport) -> String {
    let mut out = format!(
        "{}  {} · verdict {} · score {} / 10 ({})\n",
        report.asset_name,
        report.workflow_mode.as_str(),
        report.verdict.as_str(),
        serde_json::json!(report.optimization_score),
        report.score_label
    );
    out += &format!("  input   {}\n", report.input_path);
    out += &format!("  output  {}\n", report.output_path.as_deref().unwrap_or("none (no optimized stage written)"));
    if let RestructureBlock::Decided(d) = &report.restructure {
        out += &format!("  branch  {} (answered by {})\n", d.chosen, d.answered_by);
    }
    if !report.operations.is_empty() {
        // The chain once, in order: every target ran the same one.
        let mut chain: Vec<&str> = Vec::new();
        for op in &report.operations {
            if !chain.contains(&op.name.as_str()) {
                chain.push(&op.name);
            }
        }
        out += &format!("  ops     {} on {} target(s)\n", chain.join(" → "), report.target_coverage.entries.len());
    }
    for m in report.metrics.iter().filter(|m| m.verdict != crate::record::Verdict::Neutral) {
        out += &format!(
            "  {:<24} {} → {} ({:+.1}%, {})\n",
            m.name,
            fmt_num(m.before),
            fmt_num(m.after),
            m.change_pct,
            m.verdict.as_str()
        );
    }
    if let Some(p) = &report.preservation {
        out += &format!("  proof   {}\n", if p.passed { "geometry preserved" } else { "FAILED: output set aside" });
    }
    if !report.target_coverage.complete {
        out += "  coverage INCOMPLETE: a Phase 4 target was blocked\n";
    }
    if !report.notes.is_empty() {
        out += &format!("  note    {}\n", report.notes);
    }
    out
}
