//! The sampling decision, as `OTEL_TRACES_SAMPLER`/`_ARG` name it (OpenTelemetry SDK
//! configuration spec). Pure: the shards decide with [`SamplerSpec::sample`] on every invocation
//! they trace; the control plane's SDK tracer gets the equivalent SDK sampler from
//! [`SamplerSpec::sdk`], so both planes keep or drop the same traces.

use opentelemetry_sdk::trace::Sampler;

use crate::wire::trace::TraceParent;

/// What decides a span that has no parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Keep this fraction of traces, chosen by trace id (so every host keeps the same ones).
    Ratio(f64),
}

/// A sampler: the root rule alone, or the parent's decision when there is a parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSpec {
    Plain(Root),
    ParentBased(Root),
}

impl Default for SamplerSpec {
    /// The specification's default: `parentbased_always_on`.
    fn default() -> Self {
        SamplerSpec::ParentBased(Root::AlwaysOn)
    }
}

impl Root {
    fn sample(self, trace_id: &[u8; 16]) -> bool {
        match self {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            Root::Ratio(ratio) => ratio_keeps(ratio, trace_id),
        }
    }

    fn sdk(self) -> Sampler {
        match self {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        }
    }
}

/// The SDK's `TraceIdRatioBased` rule: the low 63 bits of the trace id's last 8 bytes below
/// `ratio × 2^63`.
fn ratio_keeps(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

impl SamplerSpec {
    /// Read `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; an unknown sampler or a bad
    /// ratio falls back to the default with a warning.
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> (SamplerSpec, Option<String>) {
        let ratio = || -> Result<f64, String> {
            let Some(arg) = arg else { return Ok(1.0) };
            match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG={arg} is not a ratio in [0, 1]: sampling every trace"
                )),
            }
        };
        let spec = match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("parentbased_always_on") => Ok(SamplerSpec::ParentBased(Root::AlwaysOn)),
            Some("always_on") => Ok(SamplerSpec::Plain(Root::AlwaysOn)),
            Some("always_off") => Ok(SamplerSpec::Plain(Root::AlwaysOff)),
            Some("parentbased_always_off") => Ok(SamplerSpec::ParentBased(Root::AlwaysOff)),
            Some("traceidratio") => ratio().map(|r| SamplerSpec::Plain(Root::Ratio(r))),
            Some("parentbased_traceidratio") => ratio().map(|r| SamplerSpec::ParentBased(Root::Ratio(r))),
            Some(other) => Err(format!(
                "OTEL_TRACES_SAMPLER={other} is not supported: using parentbased_always_on"
            )),
        };
        match spec {
            Ok(spec) => (spec, None),
            Err(warning) => (SamplerSpec::default(), Some(warning)),
        }
    }

    /// Whether a span in `trace_id` is recorded and exported, given its parent (if any).
    pub fn sample(&self, parent: Option<&TraceParent>, trace_id: &[u8; 16]) -> bool {
        match (self, parent) {
            (SamplerSpec::ParentBased(_), Some(parent)) => parent.sampled(),
            (SamplerSpec::ParentBased(root) | SamplerSpec::Plain(root), _) => root.sample(trace_id),
        }
    }

    /// The SDK sampler with the same rule, for the control plane's tracer.
    pub fn sdk(&self) -> Sampler {
        match self {
            SamplerSpec::Plain(root) => root.sdk(),
            SamplerSpec::ParentBased(root) => Sampler::ParentBased(Box::new(root.sdk())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    #[test]
    fn reads_every_sampler_the_spec_names() {
        let cases = [
            (None, None, SamplerSpec::ParentBased(Root::AlwaysOn)),
            (Some("always_on"), None, SamplerSpec::Plain(Root::AlwaysOn)),
            (Some("ALWAYS_OFF"), None, SamplerSpec::Plain(Root::AlwaysOff)),
            (
                Some("parentbased_always_off"),
                None,
                SamplerSpec::ParentBased(Root::AlwaysOff),
            ),
            (
                Some("traceidratio"),
                Some("0.25"),
                SamplerSpec::Plain(Root::Ratio(0.25)),
            ),
            (Some("traceidratio"), None, SamplerSpec::Plain(Root::Ratio(1.0))),
            (
                Some("parentbased_traceidratio"),
                Some("0.01"),
                SamplerSpec::ParentBased(Root::Ratio(0.01)),
            ),
        ];
        for (name, arg, expected) in cases {
            assert_eq!(SamplerSpec::from_env(name, arg), (expected, None), "{name:?} {arg:?}");
        }
        let (spec, warning) = SamplerSpec::from_env(Some("traceidratio"), Some("2"));
        assert_eq!(spec, SamplerSpec::default());
        assert!(warning.unwrap().contains("not a ratio"));
        let (_, warning) = SamplerSpec::from_env(Some("jaeger_remote"), None);
        assert!(warning.unwrap().contains("not supported"));
    }

    #[test]
    fn parent_based_follows_the_parent() {
        let spec = SamplerSpec::ParentBased(Root::AlwaysOff);
        let mut parent = TraceParent {
            trace_id: [7; 16],
            span_id: [1; 8],
            flags: 1,
        };
        assert!(spec.sample(Some(&parent), &parent.trace_id));
        parent.flags = 0;
        assert!(!SamplerSpec::default().sample(Some(&parent), &parent.trace_id));
        assert!(SamplerSpec::default().sample(None, &[3; 16]));
        assert!(!spec.sample(None, &[3; 16]));
        // A plain sampler ignores the parent.
        assert!(SamplerSpec::Plain(Root::AlwaysOn).sample(Some(&parent), &[3; 16]));
    }

    /// The shards and the SDK keep the same traces for the same ratio.
    #[test]
    fn the_ratio_rule_matches_the_sdk() {
        let mut kept = 0;
        for seed in 0u64..2_000 {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.to_be_bytes());
            trace_id[8..].copy_from_slice(&seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            let ours = Root::Ratio(0.1).sample(&trace_id);
            let theirs = Sampler::TraceIdRatioBased(0.1).should_sample(
                None,
                TraceId::from_bytes(trace_id),
                "x",
                &SpanKind::Server,
                &[],
                &[],
            );
            assert_eq!(ours, theirs.decision == SamplingDecision::RecordAndSample, "{seed}");
            kept += usize::from(ours);
        }
        assert!((100..300).contains(&kept), "about 10 % of 2000 kept: {kept}");
    }
}
