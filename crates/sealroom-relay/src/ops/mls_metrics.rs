//! The MLS delivery service's series: `sealroom_mls_messages_total{outcome}`, one per
//! [`MlsOutcome`] (synced, published, committed, part, and each refusal: stale, exists,
//! no_group, too_large, empty), exported at zero from the start. Refusals counted here
//! are what a member that sends oversize, empty or out-of-order MLS messages causes;
//! the group is not disturbed by them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::engine::MlsOutcome;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The MLS counters of one relay.
#[derive(Debug)]
pub(crate) struct MlsMetrics {
    outcomes: Vec<(MlsOutcome, Counter)>,
}

impl MlsMetrics {
    /// Register the series in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let family = Family::<OutcomeLabels, Counter>::default();
        let outcomes = MlsOutcome::ALL
            .into_iter()
            .map(|outcome| {
                let labels = OutcomeLabels {
                    outcome: outcome.label(),
                };
                (outcome, family.get_or_create_owned(&labels))
            })
            .collect();
        registry.register(
            "mls_messages",
            "MLS delivery-service messages from members, by outcome",
            family,
        );
        Self { outcomes }
    }

    /// Count one MLS message.
    pub(crate) fn count(&self, outcome: MlsOutcome) {
        if let Some((_, counter)) = self.outcomes.iter().find(|(o, _)| *o == outcome) {
            counter.inc();
        }
    }

    /// The count of `outcome` so far.
    pub(crate) fn get(&self, outcome: MlsOutcome) -> u64 {
        self.outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, c)| c.get())
    }
}
