//! Metrics through the `metrics` facade (feature `metrics`); no-ops otherwise.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `identity_verdicts_total` | counter | `outcome` (verified, anonymous, unverified, rejected), `reason` (an error code, or `ok`/`none`), `tenant`, `key_id`, `scheme` |
//! | `identity_verification_seconds` | histogram | `scheme` |
//! | `identity_provider_lookups_total` | counter | `result` (ok, error): lookups a `CachingProvider` sends to its source |
//! | `identity_cache_lookups_total` | counter | `result` (hit, miss) |
//!
//! `key_id` tells an operator when an old key is no longer used;
//! `outcome="unverified", reason=<code>` counts report-only would-rejects.
//! The `tenant` label has one value per tenant the provider knows, `unknown`
//! for any other name a request sends (and when the provider failed), and is
//! empty when the request names none: attacker-chosen names never become
//! series. A layer counts under at most 4096 label sets; past them (a
//! provider that answers for any name), new ones are `tenant="other"`. With
//! very many tenants, drop the label in the recorder or aggregate upstream.

#[cfg(feature = "metrics")]
mod imp {
    use std::collections::HashMap;
    use std::fmt::Write as _;
    use std::sync::RwLock;
    use std::time::Duration;

    /// Most label sets a layer counts verdicts under. Tenants the provider
    /// does not know are all `unknown`, but a provider may answer for any
    /// name: past this many label sets, new ones are counted under
    /// `tenant="other"`, so no traffic can make the series unbounded.
    const MAX_CACHED: usize = 4096;

    /// Counter and histogram handles a layer registered, so that a request
    /// costs a read lock and a hash of its labels instead of building a
    /// labelled key and looking it up in the recorder. Handles belong to the
    /// recorder in use when the layer first recorded them.
    #[derive(Default)]
    pub(crate) struct Handles {
        verdicts: RwLock<HashMap<String, metrics::Counter>>,
        /// The verdicts without a tenant or key id (a single key set, the
        /// common case): a few dozen label sets of static strings, found by
        /// comparing them, without formatting or hashing a key.
        untenanted: RwLock<Vec<(StaticLabels, metrics::Counter)>>,
        timings: RwLock<Vec<(&'static str, metrics::Histogram)>>,
    }

    /// `outcome`, `reason`, `scheme`: each from a fixed set of static strings.
    type StaticLabels = [&'static str; 3];

    impl Clone for Handles {
        // A reconfigured layer starts with no handles.
        fn clone(&self) -> Handles {
            Handles::default()
        }
    }

    thread_local! {
        static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    impl Handles {
        pub(crate) fn verdict(
            &self,
            outcome: &'static str,
            reason: &'static str,
            tenant: Option<&str>,
            key_id: Option<&str>,
            scheme: &'static str,
        ) {
            if tenant.is_none() && key_id.is_none() {
                return self.untenanted_verdict([outcome, reason, scheme]);
            }
            let (tenant, key_id) = (tenant.unwrap_or(""), key_id.unwrap_or(""));
            KEY.with_borrow_mut(|key| {
                key.clear();
                // Length-prefixed: no two label sets share a key.
                let _ = write!(key, "{outcome}/{reason}/{scheme}/{}:{tenant}{}:{key_id}", tenant.len(), key_id.len());
                if let Ok(map) = self.verdicts.read()
                    && let Some(counter) = map.get(key.as_str())
                {
                    counter.increment(1);
                    return;
                }
                let counter = match self.verdicts.write() {
                    Ok(mut map) if map.len() < MAX_CACHED => {
                        let counter = verdict_counter(outcome, reason, tenant, key_id, scheme);
                        map.insert(key.clone(), counter.clone());
                        counter
                    }
                    _ => verdict_counter(outcome, reason, "other", key_id, scheme),
                };
                counter.increment(1);
            });
        }

        fn untenanted_verdict(&self, labels: StaticLabels) {
            if let Ok(counters) = self.untenanted.read()
                && let Some((_, counter)) = counters.iter().find(|(l, _)| *l == labels)
            {
                counter.increment(1);
                return;
            }
            let [outcome, reason, scheme] = labels;
            let counter = verdict_counter(outcome, reason, "", "", scheme);
            counter.increment(1);
            if let Ok(mut counters) = self.untenanted.write()
                && !counters.iter().any(|(l, _)| *l == labels)
            {
                counters.push((labels, counter));
            }
        }

        pub(crate) fn verification_time(&self, scheme: &'static str, elapsed: Duration) {
            let seconds = elapsed.as_secs_f64();
            if let Ok(timings) = self.timings.read()
                && let Some((_, histogram)) = timings.iter().find(|(s, _)| *s == scheme)
            {
                histogram.record(seconds);
                return;
            }
            let histogram = metrics::histogram!("identity_verification_seconds", "scheme" => scheme);
            histogram.record(seconds);
            if let Ok(mut timings) = self.timings.write() {
                timings.push((scheme, histogram));
            }
        }
    }

    fn verdict_counter(
        outcome: &'static str,
        reason: &'static str,
        tenant: &str,
        key_id: &str,
        scheme: &'static str,
    ) -> metrics::Counter {
        metrics::counter!(
            "identity_verdicts_total",
            "outcome" => outcome,
            "reason" => reason,
            "tenant" => tenant.to_owned(),
            "key_id" => key_id.to_owned(),
            "scheme" => scheme,
        )
    }

    #[cfg(feature = "cache")]
    pub(crate) fn provider_lookup(ok: bool) {
        metrics::counter!("identity_provider_lookups_total", "result" => if ok { "ok" } else { "error" }).increment(1);
    }

    #[cfg(feature = "cache")]
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
mod imp {
    use std::time::Duration;

    /// Nothing to keep without the `metrics` feature.
    #[derive(Clone, Default)]
    pub(crate) struct Handles;

    impl Handles {
        #[inline(always)]
        pub(crate) fn verdict(
            &self,
            _: &'static str,
            _: &'static str,
            _: Option<&str>,
            _: Option<&str>,
            _: &'static str,
        ) {
        }
        #[inline(always)]
        pub(crate) fn verification_time(&self, _: &'static str, _: Duration) {}
    }

    #[cfg(feature = "cache")]
    #[inline(always)]
    pub(crate) fn provider_lookup(_: bool) {}
    #[cfg(feature = "cache")]
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
