//! Secrets (and the PostgreSQL URL, which may hold a password): read from an
//! environment variable or a file only, never from the configuration itself,
//! and never echoed in an error.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ConfigError, Watched, err};

/// A secret (or a URL holding one) from exactly one of an environment
/// variable and a file (relative to the config file, and watched for changes).
/// The variable's name is echoed in an error only when it looks like one: a
/// misplaced secret must not end up on stderr or in the log.
pub fn read_secret_source(
    path: &Path,
    key: &str,
    (env_key, env): (&str, &Option<String>),
    (file_key, file): (&str, &Option<PathBuf>),
    watched: &mut Watched,
) -> Result<String, ConfigError> {
    match (env, file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            let named = !var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let problem = if named {
                format!("environment variable {var} is not set")
            } else {
                "must name an environment variable (letters, digits and _), not hold the value".to_owned()
            };
            err(path, format!("{key}.{env_key}"), problem)
        }),
        (None, Some(file)) => {
            let file =
                if file.is_relative() { path.parent().unwrap_or(Path::new(".")).join(file) } else { file.clone() };
            let text = read_secret_file(path, &format!("{key}.{file_key}"), &file)?;
            watched.push((file.clone(), mtime(&file)));
            Ok(text)
        }
        _ => Err(err(path, key, format!("set exactly one of {env_key} and {file_key}"))),
    }
}

/// The modification time of a watched file (`None` when it cannot be read).
pub fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a secret file: its bytes, without one trailing newline.
fn read_secret_file(file: &Path, key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        // A URL written where a file name belongs carries its password: not echoed.
        let shown = path.display().to_string();
        if shown.contains("://") || shown.contains('@') {
            err(file, key, "cannot read the file it names (it must name a file, not hold the value)")
        } else {
            err(file, key, format!("cannot read {shown}: {e}"))
        }
    })?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misplaced_secrets_are_not_echoed() {
        let mut watched = Vec::new();
        let url = Some("postgres://u:hunter2@db/x".to_owned());
        let e =
            read_secret_source(Path::new("f.toml"), "postgres", ("url_env", &url), ("url_file", &None), &mut watched)
                .unwrap_err()
                .to_string();
        assert!(e.contains("postgres.url_env") && !e.contains("hunter2"), "{e}");
        let var = Some("TOWER_IDENTITY_SURELY_UNSET_VAR".to_owned());
        let e =
            read_secret_source(Path::new("f.toml"), "k", ("secret_env", &var), ("secret_file", &None), &mut watched)
                .unwrap_err()
                .to_string();
        assert!(e.contains("TOWER_IDENTITY_SURELY_UNSET_VAR"), "a variable's name is shown: {e}");
        let file = Some(PathBuf::from("postgres://u:hunter2@db/x"));
        let e = read_secret_source(Path::new("f.toml"), "k", ("url_env", &None), ("url_file", &file), &mut watched)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.url_file") && !e.contains("hunter2"), "{e}");
        let missing = Some(PathBuf::from("/surely/missing/secret.txt"));
        let e = read_secret_source(Path::new("f.toml"), "k", ("url_env", &None), ("url_file", &missing), &mut watched)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/surely/missing/secret.txt"), "a path is shown: {e}");
    }
}
