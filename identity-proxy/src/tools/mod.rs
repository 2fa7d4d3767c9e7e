//! `identity-proxy sign` and `identity-proxy check`: helpers for the people
//! wiring a backend to the proxy. They never print a secret.

mod check;
mod sign;

use tower_identity::{Identifier, Key, KeySet, Scheme};

use crate::config::Settings;

pub use check::check_cmd;
pub use sign::sign_cmd;

/// The identifier values given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub visitor_id: Option<String>,
}

impl Ids {
    fn get(&self, which: Identifier) -> Option<&str> {
        match which {
            Identifier::UserId => self.user_id.as_deref(),
            Identifier::Email => self.email.as_deref(),
            Identifier::VisitorId => self.visitor_id.as_deref(),
            _ => None,
        }
    }

    fn all(&self) -> impl Iterator<Item = (Identifier, &str)> {
        [Identifier::UserId, Identifier::Email, Identifier::VisitorId]
            .into_iter()
            .filter_map(|i| self.get(i).map(|v| (i, v)))
    }
}

/// The keys and JWT audience of `tenant` in the configuration file.
fn tenant_keys<'a>(settings: &'a Settings, tenant: Option<&str>) -> Result<(&'a KeySet, Option<&'a str>), String> {
    if settings.postgres.is_some() {
        return Err("sign and check use the tenants of the configuration file; these tenants live in PostgreSQL".into());
    }
    settings
        .keys
        .iter()
        .find(|(id, _, _)| id.as_deref() == tenant)
        .map(|(_, aud, set)| (set, aud.as_deref()))
        .ok_or_else(|| match tenant {
            Some(t) => format!("no tenant {t:?} in the configuration"),
            None => "no tenant without an id in the configuration: pass --tenant".to_owned(),
        })
}

/// A key as the tools name it: its id and scheme, never its secret.
fn describe(key: &Key) -> String {
    let id = key.id().map_or_else(|| "(no id)".to_owned(), |id| format!("{id:?}"));
    match key.scheme() {
        Scheme::Jwt => format!("key {id} (jwt)"),
        s => format!("key {id} ({} over {})", s.as_str(), s.identifier().map_or("?", |i| i.as_str())),
    }
}
