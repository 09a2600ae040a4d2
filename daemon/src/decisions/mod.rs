//! Every workflow decision, as plain functions over facts: no USD, no I/O, unit-tested on
//! small hand-written inputs. The executor measures; these decide.

pub mod assessment;
pub mod batch;
pub mod budget;
pub mod compare;
pub mod containment;
pub mod costs;
pub mod dedupe;
pub mod iterate;
pub mod op_chain;
pub mod preservation;
pub mod prims;
pub mod remote;
pub mod report;
pub mod report_gate;
pub mod restructure;
pub mod routes;
pub mod score;
pub mod stats;
pub mod targets;
pub mod validation;
