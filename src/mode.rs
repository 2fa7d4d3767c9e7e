//! Enforcement modes.

use std::fmt;

/// How strictly a layer (or a tenant) enforces identity verification.
///
/// | mode | no credential | valid credential | invalid credential |
/// | --- | --- | --- | --- |
/// | `Off` | pass, anonymous | pass, unverified (no check made) | pass, unverified |
/// | `ReportOnly` | pass, anonymous | pass, verified | pass, unverified + a logged would-reject |
/// | `Optional` | pass, anonymous | pass, verified | reject 401 |
/// | `Required` | reject 401 | pass, verified | reject 401 |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// No verification; credentials are ignored.
    Off,
    /// Verify, but never reject: failures are logged as "would reject".
    ReportOnly,
    /// Validate if present: anonymous requests pass, bad credentials are rejected.
    Optional,
    /// Every request must carry a valid credential (the default).
    #[default]
    Required,
}

impl Mode {
    /// `off`, `report-only`, `optional` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::ReportOnly => "report-only",
            Mode::Optional => "optional",
            Mode::Required => "required",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Mode::Off),
            "report-only" | "report_only" => Ok(Mode::ReportOnly),
            "optional" => Ok(Mode::Optional),
            "required" => Ok(Mode::Required),
            other => Err(format!("unknown mode {other:?} (expected off, report-only, optional or required)")),
        }
    }
}
