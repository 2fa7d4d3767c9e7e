//! Metrics through the `metrics` facade (feature `metrics`); no-ops otherwise.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `identity_verdicts_total` | counter | `outcome` (verified, anonymous, unverified, rejected), `reason` (an error code, or `ok`/`none`), `tenant`, `key_id`, `scheme` |
//! | `identity_verification_seconds` | histogram | `scheme` |
//! | `identity_provider_lookups_total` | counter | `result` (ok, error) |
//! | `identity_cache_lookups_total` | counter | `result` (hit, miss) |
//!
//! `key_id` tells an operator when an old key is no longer used;
//! `outcome="unverified", reason=<code>` counts report-only would-rejects.
//! The `tenant` label has one value per tenant: with very many tenants,
//! drop it in the recorder or aggregate upstream.

#[cfg(feature = "metrics")]
mod imp {
    use std::time::Duration;

    pub(crate) fn verdict(
        outcome: &'static str,
        reason: &'static str,
        tenant: Option<&str>,
        key_id: Option<&str>,
        scheme: &'static str,
    ) {
        metrics::counter!(
            "identity_verdicts_total",
            "outcome" => outcome,
            "reason" => reason,
            "tenant" => tenant.unwrap_or("").to_owned(),
            "key_id" => key_id.unwrap_or("").to_owned(),
            "scheme" => scheme,
        )
        .increment(1);
    }

    pub(crate) fn verification_time(scheme: &'static str, elapsed: Duration) {
        metrics::histogram!("identity_verification_seconds", "scheme" => scheme).record(elapsed.as_secs_f64());
    }

    pub(crate) fn provider_lookup(ok: bool) {
        metrics::counter!("identity_provider_lookups_total", "result" => if ok { "ok" } else { "error" }).increment(1);
    }

    pub(crate) fn cache(hit: bool) {
        metrics::counter!("identity_cache_lookups_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
    }

    pub(crate) struct Timer(std::time::Instant);

    impl Timer {
        pub(crate) fn start() -> Timer {
            Timer(std::time::Instant::now())
        }
        pub(crate) fn elapsed(&self) -> Duration {
            self.0.elapsed()
        }
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod imp {
    use std::time::Duration;

    #[inline(always)]
    pub(crate) fn verdict(_: &'static str, _: &'static str, _: Option<&str>, _: Option<&str>, _: &'static str) {}
    #[inline(always)]
    pub(crate) fn verification_time(_: &'static str, _: Duration) {}
    #[inline(always)]
    pub(crate) fn provider_lookup(_: bool) {}
    #[inline(always)]
    pub(crate) fn cache(_: bool) {}

    pub(crate) struct Timer;

    impl Timer {
        #[inline(always)]
        pub(crate) fn start() -> Timer {
            Timer
        }
        #[inline(always)]
        pub(crate) fn elapsed(&self) -> Duration {
            Duration::ZERO
        }
    }
}

pub(crate) use imp::*;
