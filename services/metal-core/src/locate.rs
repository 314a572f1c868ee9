//! Request and reply of the locator's `metal.locator.locate` service: what every source
//! says about a MAC right now, without onboarding anything.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::BmcSighting;
use crate::mac::Mac;

/// `{"bmc_mac": "..."}`; the service also takes a bare MAC as the whole payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateRequest {
    pub bmc_mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateReply {
    pub bmc_mac: Mac,
    /// Where an onboarding now would find the BMC, if anywhere.
    pub located: Option<LocatedNow>,
    /// Every source, in the configured order.
    pub sources: Vec<SourceAnswer>,
}

/// The sighting an onboarding would use, with the Redfish URL it would scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocatedNow {
    pub redfish_url: String,
    #[serde(flatten)]
    pub sighting: BmcSighting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    Seen,
    NotSeen,
    Failed,
}

/// One source's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceAnswer {
    pub source: String,
    pub source_name: Option<String>,
    pub answer: AnswerKind,
    /// What it said, in words.
    pub said: String,
    /// For a failure: asking again cannot help until an operator acts.
    #[serde(default)]
    pub permanent: bool,
    pub sightings: Vec<SightingNow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingNow {
    pub address: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// Seen now, as opposed to remembered (an offline client's fixed or last IP).
    pub current: bool,
    pub detail: String,
}
