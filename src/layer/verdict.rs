//! Resolve, decide, record, apply: the mode table, in one place.
//!
//! [`resolve`] asks the provider; [`decide`] turns the tenant's policy and
//! the claim into one [`Verdict`]; [`record`] (one metric and one event) and
//! [`apply`] (extensions and forwarded headers, or the rejection response)
//! only read it.

use bytes::Bytes;
use http::{Request, Response};

use super::config::{Config, Found};
use super::reject::Rejection;
use crate::code::ErrorCode;
use crate::extract::{Extracted, RequestHead, is_grpc, strip_credentials};
use crate::identity::{IdentityOutcome, UnverifiedReason, VerifiedIdentity};
use crate::mode::Mode;
use crate::provider::{Lookup, LookupFuture, LookupResult, ProviderError, TenantPolicy};
use crate::verify::{Failure, check, unknown_tenant};

/// The outcome of asking the provider: decided now, or a lookup to wait for.
#[allow(clippy::large_enum_variant)] // a short-lived return value; boxing would allocate per request
pub(crate) enum Resolved {
    /// Call the inner service with the request.
    Forward,
    /// Answer this rejection.
    Reject(Response<Bytes>),
    /// Wait for the provider.
    Later(LookupFuture),
}

/// Asks the provider for the tenant's policy and, when it answers at once,
/// decides and applies the verdict.
pub(crate) fn resolve<B>(config: &Config, req: &mut Request<B>, extracted: &mut Extracted) -> Resolved {
    let tenant = extracted.claim.tenant.as_deref();
    let verdict = match config.provider.find(tenant) {
        Ok(Found::Lent(policy)) => decide(config, extracted, Ok(policy)),
        Ok(Found::Asked(Lookup::Ready(result))) => decide(config, extracted, borrowed(&result)),
        Ok(Found::Asked(Lookup::Pending(lookup))) => return Resolved::Later(lookup),
        Err(()) => return Resolved::Reject(provider_panicked(config, &RequestHead::of(req))),
    };
    match apply(config, req, verdict) {
        None => Resolved::Forward,
        Some(res) => Resolved::Reject(res),
    }
}

/// A provider's answer, borrowed for [`decide`].
pub(crate) fn borrowed(result: &LookupResult) -> Result<Option<&TenantPolicy>, &ProviderError> {
    result.as_ref().map(Option::as_ref)
}

/// The answer for one request.
// A short-lived stack value: boxing the identity would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Verdict {
    /// Pass, with a verified identity.
    Verified(VerifiedIdentity),
    /// Pass, anonymous: no credential, and the mode allows that.
    Anonymous,
    /// Pass, unverified: the mode is off, or only reports.
    Unverified(UnverifiedReason),
    /// Refuse with this code; the inner service is not called.
    Reject(ErrorCode),
}

/// What led to a verdict, for [`record`]: the mode that applied (none when
/// the provider failed) and the verification failure, if any.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cause {
    mode: Option<Mode>,
    failure: Option<Failure>,
}

/// The tenant as metrics and logs name it. A tenant the provider does not
/// know is attacker-chosen text: it is one label value (`unknown`) and is
/// never logged, so random names grow neither metric series nor log lines.
#[derive(Clone, Copy)]
pub(crate) enum TenantName<'a> {
    /// The request named no tenant.
    None,
    /// A tenant the provider knows.
    Known(&'a str),
    /// A tenant the provider does not know.
    Unknown,
}

impl<'a> TenantName<'a> {
    fn of(tenant: Option<&'a str>, known: bool) -> TenantName<'a> {
        match tenant {
            None => TenantName::None,
            Some(tenant) if known => TenantName::Known(tenant),
            Some(_) => TenantName::Unknown,
        }
    }

    /// The `tenant` metric label.
    fn label(self) -> Option<&'a str> {
        match self {
            TenantName::None => None,
            TenantName::Known(tenant) => Some(tenant),
            TenantName::Unknown => Some("unknown"),
        }
    }

    /// The `tenant` field of log events.
    fn log(self) -> Option<&'a str> {
        match self {
            TenantName::Unknown => Some("<unknown>"),
            other => other.label(),
        }
    }
}

/// The verdict for a request whose claim was extracted and whose tenant was
/// looked up; records it.
pub(crate) fn decide(
    config: &Config,
    extracted: &mut Extracted,
    lookup: Result<Option<&TenantPolicy>, &ProviderError>,
) -> Verdict {
    // A provider that failed cannot say whether the tenant exists: counted
    // and logged as unknown too (the name is capped, but attacker-chosen).
    let known = matches!(lookup, Ok(Some(_)));
    let (verdict, cause) = judge(config, extracted, lookup);
    let tenant = match &verdict {
        Verdict::Verified(identity) => TenantName::of(identity.tenant(), true),
        _ => TenantName::of(extracted.claim.tenant.as_deref(), known),
    };
    record(config, tenant, cause, &verdict);
    verdict
}

fn judge(
    config: &Config,
    extracted: &mut Extracted,
    lookup: Result<Option<&TenantPolicy>, &ProviderError>,
) -> (Verdict, Cause) {
    let claim = &mut extracted.claim;
    let policy = match lookup {
        Ok(policy) => policy,
        Err(error) => {
            tracing::warn!(%error, "identity: secret provider failed; answering 503");
            return (Verdict::Reject(ErrorCode::ProviderUnavailable), Cause::default());
        }
    };
    let mode = policy.and_then(TenantPolicy::mode).unwrap_or(config.mode);
    let cause = |failure| Cause { mode: Some(mode), failure };
    if mode == Mode::Off {
        let credential = claim.has_credential() || extracted.error.is_some();
        let verdict =
            if credential { Verdict::Unverified(UnverifiedReason::VerificationOff) } else { Verdict::Anonymous };
        return (verdict, cause(None));
    }
    let failure = match (extracted.error, policy) {
        (Some(failure), _) => failure,
        (None, _) if !claim.has_credential() => Failure::Missing,
        (None, None) => unknown(config, claim),
        (None, Some(policy)) if policy.is_misconfigured() => {
            tracing::error!(
                tenant = claim.tenant.as_deref(),
                "identity: the provider refused the tenant's keys (see its log); refusing to verify"
            );
            return (Verdict::Reject(ErrorCode::Misconfigured), cause(None));
        }
        (None, Some(policy)) if policy.keys().shortest_secret() < config.min_secret_len => {
            tracing::error!(
                tenant = claim.tenant.as_deref(),
                min_secret_len = config.min_secret_len,
                "identity: the tenant's key set holds a secret shorter than the minimum; refusing to verify"
            );
            return (Verdict::Reject(ErrorCode::Misconfigured), cause(None));
        }
        (None, Some(policy)) => {
            let keys = policy.keys();
            // The clock (a system call) is read only for key sets that look at the time.
            let now = if keys.needs_time() { config.clock.now() } else { 0 };
            let timer = crate::metrics::Timer::start();
            let checked = check(claim, keys, now, &config.options);
            let scheme = checked.as_ref().map_or("unknown", |proof| proof.scheme().as_str());
            config.metrics.verification_time(scheme, timer.elapsed());
            match checked {
                // The identity takes the claim's values (no reference-count traffic).
                Ok(proof) => return (Verdict::Verified(proof.identity(claim)), cause(None)),
                Err(failure) => failure,
            }
        }
    };
    (by_mode(mode, failure), cause(Some(failure)))
}

/// An unknown tenant's failure: the same checks, time and metrics as a known
/// tenant's wrong key (see `verify::unknown_tenant`), so that neither the
/// answer nor its timing tells which tenants exist.
fn unknown(config: &Config, claim: &crate::claim::Claim) -> Failure {
    let now = if crate::verify::unknown_needs_time(claim) { config.clock.now() } else { 0 };
    let timer = crate::metrics::Timer::start();
    let failure = unknown_tenant(claim, now, &config.options);
    config.metrics.verification_time("unknown", timer.elapsed());
    failure
}

/// The mode table for a failed check (see [`Mode`]).
fn by_mode(mode: Mode, failure: Failure) -> Verdict {
    match failure {
        Failure::Missing if mode != Mode::Required => Verdict::Anonymous,
        failure if mode == Mode::ReportOnly => Verdict::Unverified(UnverifiedReason::WouldReject(failure.code())),
        failure => Verdict::Reject(failure.code()),
    }
}

/// One event (and one counter) per verdict: tenant, scheme, key id, outcome
/// and reason, never a secret, signature or token; the identifier only with
/// `log_identifiers`.
pub(crate) fn record(config: &Config, tenant: TenantName<'_>, cause: Cause, verdict: &Verdict) {
    let off = cause.mode == Some(Mode::Off);
    let (label, tenant) = (tenant.label(), tenant.log());
    match verdict {
        Verdict::Verified(identity) => record_verified(config, identity),
        Verdict::Anonymous if off => {
            config.metrics.verdict("anonymous", "off", label, None, "none");
            tracing::debug!(tenant, mode = "off", outcome = "anonymous", "identity: verification off");
        }
        Verdict::Anonymous => {
            config.metrics.verdict("anonymous", "none", label, None, "none");
            tracing::debug!(tenant, outcome = "anonymous", "identity: anonymous");
        }
        Verdict::Unverified(UnverifiedReason::WouldReject(code)) => {
            let reason = code.as_str();
            config.metrics.verdict("unverified", reason, label, None, "none");
            tracing::info!(tenant, outcome = "unverified", reason, "identity: would reject (report-only)");
        }
        Verdict::Unverified(_) => {
            config.metrics.verdict("unverified", "off", label, None, "none");
            tracing::debug!(tenant, mode = "off", outcome = "unverified", "identity: verification off");
        }
        Verdict::Reject(code) => {
            let reason = code.as_str();
            config.metrics.verdict("rejected", reason, label, None, "none");
            match cause.failure {
                Some(failure) => {
                    tracing::debug!(tenant, outcome = "rejected", reason, detail = %failure, "identity: rejected");
                }
                None => tracing::debug!(tenant, outcome = "rejected", reason, "identity: rejected"),
            }
        }
    }
}

fn record_verified(config: &Config, identity: &VerifiedIdentity) {
    let (tenant, scheme, key_id) = (identity.tenant(), identity.scheme().as_str(), identity.key_id());
    config.metrics.verdict("verified", "ok", tenant, key_id, scheme);
    if config.log_identifiers {
        tracing::debug!(tenant, scheme, key_id, subject = identity.id(), outcome = "verified", "identity: verified");
    } else {
        tracing::debug!(tenant, scheme, key_id, outcome = "verified", "identity: verified");
    }
}

/// Applies a verdict to the request (kept in place: the request is large and
/// moving it costs a copy). `Some` is the rejection response to answer
/// instead of calling the inner service.
pub(crate) fn apply<B>(config: &Config, req: &mut Request<B>, verdict: Verdict) -> Option<Response<Bytes>> {
    let (outcome, identity) = match verdict {
        Verdict::Reject(code) => return Some(reject(config, &RequestHead::of(req), code)),
        Verdict::Verified(identity) => (IdentityOutcome::Verified, Some(identity)),
        Verdict::Anonymous => (IdentityOutcome::Anonymous, None),
        Verdict::Unverified(reason) => (IdentityOutcome::Unverified(reason), None),
    };
    strip_credentials(&config.sources, config.strip_credentials, req);
    if let Some(forward) = &config.forward {
        forward.apply(req.headers_mut(), outcome, identity.as_ref());
    }
    let ext = req.extensions_mut();
    // Never trust state that arrived with the request (an outer identity
    // layer, or code in front of this one): the insert replaces a value of
    // its own type, the other one is removed. A verified request carries
    // only its identity (the outcome is implied, see
    // `IdentityOutcome::from_extensions`): one insert, one allocation fewer.
    if let Some(identity) = identity {
        ext.remove::<IdentityOutcome>();
        ext.insert(identity);
    } else {
        ext.remove::<VerifiedIdentity>();
        ext.insert(outcome);
    }
    None
}

/// The rejection response; a gRPC one for gRPC requests (looked up only here:
/// the accept path never needs to know).
pub(crate) fn reject(config: &Config, head: &RequestHead<'_>, code: ErrorCode) -> Response<Bytes> {
    if crate::cors::is_preflight(head.method, head.headers) {
        crate::cors::log_rejected_preflight(code.status().as_u16());
    }
    config.responder.respond(&Rejection::new(code, is_grpc(head.headers)), head)
}

/// A request refused before any lookup: its tenant cannot be read. No policy
/// (and so no mode) applies, so it is refused in every mode.
pub(crate) fn refuse_tenant(config: &Config, head: &RequestHead<'_>, failure: Failure) -> Response<Bytes> {
    tracing::debug!(reason = %failure, "identity: rejected before lookup");
    config.metrics.verdict("rejected", failure.code().as_str(), None, None, "none");
    reject(config, head, failure.code())
}

/// The body budget is in use: the request is refused (503, `Retry-After`)
/// before its body is read, in every mode.
pub(crate) fn overloaded(config: &Config, head: &RequestHead<'_>) -> Response<Bytes> {
    tracing::debug!("identity: the body budget is in use; answering 503");
    config.metrics.verdict("rejected", ErrorCode::Overloaded.as_str(), None, None, "none");
    reject(config, head, ErrorCode::Overloaded)
}

/// The secret provider panicked: the request is refused (500), never passed.
pub(crate) fn provider_panicked(config: &Config, head: &RequestHead<'_>) -> Response<Bytes> {
    tracing::error!("identity: the secret provider panicked; answering 500");
    config.metrics.verdict("rejected", ErrorCode::Internal.as_str(), None, None, "none");
    reject(config, head, ErrorCode::Internal)
}
