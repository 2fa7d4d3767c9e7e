//! Environment overrides: `IDENTITY_PROXY_A__B=value` sets `a.b = value` for
//! the configuration's own keys, never a secret or a whole section.

use std::path::Path;

use super::{ConfigError, err};

/// Prefix of the environment variables that override configuration keys:
/// `IDENTITY_PROXY_MODE=optional`, `IDENTITY_PROXY_SOURCES__BODY_LIMIT=8192`.
pub const ENV_PREFIX: &str = "IDENTITY_PROXY_";

/// Parses a TOML scalar from an environment variable's text.
fn env_value(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_owned()),
    }
}

/// The keys the environment may override (tenants and their secrets are not among them).
const OVERRIDABLE: [&str; 23] = [
    "postgres",
    "authz",
    "metrics_path",
    "listen",
    "upstream",
    "upstream_protocol",
    "mode",
    "health_path",
    "strip_credentials",
    "upstream_timeout_secs",
    "header_read_timeout_secs",
    "body_read_timeout_secs",
    "reload_poll_secs",
    "shutdown_grace_secs",
    "admin_listen",
    "ready_path",
    "metrics_on_public_listener",
    "log_format",
    "connections",
    "verify",
    "sources",
    "forward",
    "tunnels",
];

/// The sections the environment may set keys of.
const SECTIONS: [&str; 5] = ["postgres", "verify", "sources", "authz", "connections"];

/// Applies `IDENTITY_PROXY_A__B=value` overrides (`a.b = value`) for the
/// configuration's own keys; other variables with the prefix are ignored.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
    file: &Path,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !OVERRIDABLE.contains(&path[0].as_str()) {
            continue;
        }
        if path.iter().any(|p| p.starts_with("secret")) {
            return Err(err(file, &name, "secrets are read from secret_env or secret_file only"));
        }
        let mut t = &mut *table;
        for part in &path[..path.len() - 1] {
            t = match t.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
                toml::Value::Table(inner) => inner,
                _ => return Err(err(file, &name, format!("{part} is not a table"))),
            };
        }
        let key = &path[path.len() - 1];
        // A value for a whole section (`IDENTITY_PROXY_POSTGRES=postgres://…`) is a mistake whose
        // type error would quote the value, which may hold a password: refuse it by name only.
        if t.get(key).is_some_and(toml::Value::is_table) || (t.get(key).is_none() && SECTIONS.contains(&key.as_str())) {
            return Err(err(file, &name, format!("names the [{key}] section; set its keys with {name}__<key>")));
        }
        t.insert(key.clone(), env_value(&value));
    }
    Ok(())
}

/// A configuration error message without the quoted values it may echo: a
/// value set through the environment may be a secret put in the wrong place.
pub fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest() {
        let mut t: toml::Table = toml::from_str("mode = 'required'\n[sources]\nbearer = false").unwrap();
        let vars = [
            ("IDENTITY_PROXY_MODE".to_owned(), "optional".to_owned()),
            ("IDENTITY_PROXY_SOURCES__BODY_LIMIT".to_owned(), "1024".to_owned()),
            ("IDENTITY_PROXY_SOURCES__BEARER".to_owned(), "true".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        apply_env(&mut t, vars.into_iter(), Path::new("f.toml")).unwrap();
        assert_eq!(t["mode"].as_str(), Some("optional"));
        assert_eq!(t["sources"]["body_limit"].as_integer(), Some(1024));
        assert_eq!(t["sources"]["bearer"].as_bool(), Some(true));
        let ignored = [
            ("IDENTITY_PROXY_DEMO_SECRET".to_owned(), "x".to_owned()),
            ("IDENTITY_PROXY_CONFIG".to_owned(), "f".to_owned()),
        ];
        apply_env(&mut t, ignored.into_iter(), Path::new("f.toml")).unwrap();
        assert!(!t.contains_key("demo_secret") && !t.contains_key("config"));
        let bad = [("IDENTITY_PROXY_SOURCES__SECRET".to_owned(), "x".to_owned())];
        assert!(apply_env(&mut t, bad.into_iter(), Path::new("f.toml")).is_err());
        // A whole section set to a value (a URL with a password, say) is refused without echoing it.
        for section in ["POSTGRES", "VERIFY", "SOURCES"] {
            let name = format!("IDENTITY_PROXY_{section}");
            let url = [(name.clone(), "postgres://u:hunter2@db/x".to_owned())];
            let e = apply_env(&mut t, url.into_iter(), Path::new("f.toml")).unwrap_err().to_string();
            assert!(e.contains(&name) && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn echoed_values_are_elided() {
        assert_eq!(
            without_values(r#"invalid type: string "postgres://u:hunter2@db", expected a map"#),
            r#"invalid type: string "…", expected a map"#
        );
    }
}
