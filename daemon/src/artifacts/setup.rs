//! Phase 0: what the executor's probe reports, and setup-preflight.json built from it and
//! the daemon's host facts (upstream setup contract: `runtime_route`, `usdOptimize`,
//! `assetValidator`, `runtime_context`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The executor's `probe` task result (kit-extension/.../tasks/probe.py).
#[derive(Clone, Debug, Deserialize)]
pub struct Probe {
    pub runtime: String,
    pub python_version: String,
    pub python_executable: String,
    pub usd_version: String,
    pub usd_optimize_version: Option<String>,
    #[serde(default)]
    pub operations_available: Vec<String>,
    pub usd_validation_nvidia_version: Option<String>,
    pub usd_exchange_version: Option<String>,
    #[serde(default)]
    pub executor_id: String,
    /// Kit's identity when the executor runs inside Kit.
    #[serde(default)]
    pub kit: Option<Value>,
    pub probed_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UsdOptimize {
    pub extension: String,
    pub version: String,
    #[serde(rename = "operationsAvailable")]
    pub operations_available: Vec<String>,
    pub source: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetValidator {
    pub package: String,
    pub version: String,
    pub source: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtensionVersion {
    pub extension: String,
    pub version: String,
}

/// The runtime the report quotes (upstream `runtime_context`): Kit only when the executor
/// ran inside Kit; a component that could not load is named with version `unavailable`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kit: Option<Value>,
    #[serde(rename = "usdOptimize")]
    pub usd_optimize: ExtensionVersion,
    #[serde(rename = "assetValidator")]
    pub asset_validator: AssetValidator,
    pub cuda_available: Option<bool>,
    /// Who chose the runtime: flag | prompt | standalone_preferred (unattended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_by: Option<String>,
    /// An omniverse:// stage's preflight (tasks/nucleus.py): url, server, omni.client.stat's
    /// answer, how credentials could come (interactive | cached | service | unavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_access: Option<Value>,
}

impl RuntimeContext {
    /// The context of a run whose setup never completed: nothing could be probed.
    pub fn unprobed() -> Self {
        Self {
            kit: None,
            usd_optimize: ExtensionVersion { extension: "usd-optimize".into(), version: UNAVAILABLE.into() },
            asset_validator: AssetValidator {
                package: "usd-validation-nvidia".into(),
                version: UNAVAILABLE.into(),
                source: "pip".into(),
            },
            cuda_available: None,
            chosen_by: None,
            remote_access: None,
        }
    }
}

/// The version recorded for a component that could not load in the executor's runtime
/// (the contract requires the component's block either way).
pub const UNAVAILABLE: &str = "unavailable";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Python {
    pub version: String,
    pub executable: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Usd {
    pub version: String,
    pub usd_exchange_version: Option<String>,
}

/// setup-preflight.json (upstream setup-preflight contract).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Preflight {
    #[serde(rename = "schemaVersion")]
    pub schema_version: String,
    /// kit | standalone
    pub runtime_route: String,
    /// Kit's identity, only when the executor runs inside Kit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kit: Option<Value>,
    pub cuda_available: Option<bool>,
    /// usd-optimize as probed; version `unavailable` and no operation when it cannot load.
    #[serde(rename = "usdOptimize")]
    pub usd_optimize: UsdOptimize,
    #[serde(rename = "assetValidator")]
    pub asset_validator: AssetValidator,
    pub runtime_context: RuntimeContext,
    pub probed_at: String,
    pub executor_id: String,
    pub python: Python,
    pub usd: Usd,
    /// CPU, RAM and GPUs (NVML) of the daemon's host (crate::resources::host_facts).
    pub host: Value,
}

impl Preflight {
    pub fn new(probe: Probe, host: Value) -> Self {
        let so_version = probe.usd_optimize_version.filter(|v| !v.is_empty()).unwrap_or_else(|| UNAVAILABLE.into());
        let operations = if so_version == UNAVAILABLE { vec![] } else { probe.operations_available };
        let asset_validator = AssetValidator {
            package: "usd-validation-nvidia".into(),
            version: probe
                .usd_validation_nvidia_version
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| UNAVAILABLE.into()),
            source: "pip".into(),
        };
        let cuda_available = host["gpus"].as_array().map(|g| !g.is_empty());
        let kit = probe.kit.filter(|k| !k.is_null());
        Self {
            schema_version: "1.0".into(),
            runtime_route: probe.runtime,
            kit: kit.clone(),
            cuda_available,
            usd_optimize: UsdOptimize {
                extension: "usd-optimize".into(),
                version: so_version.clone(),
                operations_available: operations,
                source: "standalone-package".into(),
            },
            asset_validator: asset_validator.clone(),
            runtime_context: RuntimeContext {
                kit,
                usd_optimize: ExtensionVersion { extension: "usd-optimize".into(), version: so_version },
                asset_validator,
                cuda_available,
                chosen_by: None,
                remote_access: None,
            },
            probed_at: probe.probed_at,
            executor_id: probe.executor_id,
            python: Python { version: probe.python_version, executable: probe.python_executable },
            usd: Usd { version: probe.usd_version, usd_exchange_version: probe.usd_exchange_version },
            host,
        }
    }

    /// The op keys usd-optimize offers in this runtime (empty when it cannot load).
    pub fn operations(&self) -> &[String] {
        &self.usd_optimize.operations_available
    }

    /// usd-optimize's version, None when it cannot load (the structural-only path).
    pub fn usd_optimize_version(&self) -> Option<&str> {
        Some(self.usd_optimize.version.as_str()).filter(|v| *v != UNAVAILABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(so: Option<&str>) -> Probe {
        serde_json::from_value(json!({
            "runtime": "standalone", "python_version": "3.12.1", "python_executable": "/p", "usd_version": "0.26.8",
            "usd_optimize_version": so, "operations_available": if so.is_some() { json!(["meshCleanup"]) } else { json!([]) },
            "usd_validation_nvidia_version": "1.22.0", "usd_exchange_version": "3.0.1", "executor_id": "local",
            "kit": null, "probed_at": "2026-12-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn preflight_matches_its_schema_with_and_without_usd_optimize() {
        for so in [Some("1.3.1"), None] {
            let preflight = Preflight::new(
                probe(so),
                json!({"cpu_count": 2, "cpu_brand": "x", "ram_total_bytes": 1, "ram_available_bytes": 1, "gpus": null}),
            );
            crate::store::validate("setup-preflight", &serde_json::to_value(&preflight).unwrap()).unwrap();
            assert_eq!(preflight.operations().len(), usize::from(so.is_some()));
            assert_eq!(preflight.usd_optimize_version(), so);
            assert_eq!(preflight.cuda_available, None, "no NVML: unknown, not false");
            let value = serde_json::to_value(&preflight).unwrap();
            assert!(
                value.get("kit").is_none() && value["runtime_context"].get("kit").is_none(),
                "no Kit, no kit block"
            );
        }
    }

    #[test]
    fn a_probe_without_its_runtime_is_refused() {
        assert!(serde_json::from_value::<Probe>(json!({"python_version": "3.12"})).is_err());
    }
}
