//! Phase 0 for an `omniverse://` stage: what the run does with the executor's
//! `omni.client.stat` preflight (tasks/nucleus.py), before anything opens the stage. An
//! unreachable server, a refused login and a missing asset are three different problems with
//! three different fixes, so each has its own code. A reachable asset still stops here: this
//! installation has no `omniverse://` resolver for USD (OmniUsdResolver ships with full Kit
//! apps, not with the kernel wheel), and a profile of a local copy is not a fair cold-open
//! comparison with the remote stage (upstream omniverse-authentication), so the user copies it
//! deliberately.

use serde::Deserialize;

use crate::outcome::Outcome;

/// Whether a stage argument is a Nucleus URL rather than a file.
pub fn is_nucleus_url(stage: &str) -> bool {
    stage.starts_with("omniverse://")
}

/// The executor's preflight, as setup-preflight.json's `runtime_context.remote_access` keeps it.
#[derive(Clone, Debug, Deserialize)]
pub struct Preflight {
    pub url: String,
    pub server: String,
    /// omni.client's result name: OK, ERROR_CONNECTION, ERROR_NOT_FOUND, ERROR_ACCESS_DENIED, ...
    pub stat: String,
    /// interactive | cached | service | unavailable.
    pub auth: String,
}

/// The code and message the run stops with.
pub fn outcome(p: &Preflight) -> (Outcome, String) {
    match p.stat.as_str() {
        "ERROR_CONNECTION" => (
            Outcome::NucleusUnreachable,
            format!("{}: the Nucleus server {} did not answer (omni.client.stat: {})", p.url, p.server, p.stat),
        ),
        "ERROR_ACCESS_DENIED" | "ERROR_ACCESS_LOST" => (
            Outcome::NucleusAuthFailed,
            format!(
                "{}: {} refused access (omni.client.stat: {}; credentials: {}): log in once in a Kit or Omniverse app \
                 on this machine, or give a service account through OMNI_USER/OMNI_PASS",
                p.url, p.server, p.stat, p.auth
            ),
        ),
        "ERROR_NOT_FOUND" => (
            Outcome::NucleusAssetMissing,
            format!("{}: no such asset on {} (omni.client.stat: {})", p.url, p.server, p.stat),
        ),
        stat if stat.starts_with("OK") => (
            Outcome::NucleusOpenUnsupported,
            format!(
                "{}: reachable (credentials: {}), but this installation has no omniverse:// resolver for USD: copy the \
                 asset and its dependencies to a local folder and optimize the copy (its cold open is not the remote \
                 stage's)",
                p.url, p.auth
            ),
        ),
        other => {
            (Outcome::NucleusUnreachable, format!("{}: omni.client.stat answered {other} from {}", p.url, p.server))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(stat: &str, auth: &str) -> Preflight {
        Preflight {
            url: "omniverse://nucleus.example/Projects/Hall/hall.usd".into(),
            server: "nucleus.example".into(),
            stat: stat.into(),
            auth: auth.into(),
        }
    }

    #[test]
    fn unreachable_refused_and_missing_are_three_codes() {
        assert_eq!(outcome(&preflight("ERROR_CONNECTION", "unavailable")).0, Outcome::NucleusUnreachable);
        assert_eq!(outcome(&preflight("ERROR_ACCESS_DENIED", "interactive")).0, Outcome::NucleusAuthFailed);
        assert_eq!(outcome(&preflight("ERROR_NOT_FOUND", "cached")).0, Outcome::NucleusAssetMissing);
        let (code, message) = outcome(&preflight("OK", "cached"));
        assert_eq!(code, Outcome::NucleusOpenUnsupported);
        assert!(message.contains("copy"), "{message}");
        assert!(is_nucleus_url("omniverse://h/a.usd") && !is_nucleus_url("/data/omniverse://x.usd"));
    }
}
