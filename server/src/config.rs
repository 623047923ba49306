//! `baomi-server serve --config FILE` (or `BAOMI_CONFIG`): the serve options in a TOML file,
//! one key per flag with the flag's name (`listen = "0.0.0.0:8443"`, `db = "postgres://…"`,
//! `upload-key = "/etc/baomi/upload.key"`, `threads = 8`, `nanomdm-no-push = true`).
//!
//! Precedence, highest first: flags, environment (`BAOMI_LISTEN`, `BAOMI_DB`, …), the file,
//! the defaults. The file is read into flags placed before the command line's own (so a flag
//! given on the command line overrides it); a key whose variable is set in the environment is
//! skipped (so the environment overrides it); a key that names no serve option is an error
//! that names it.

use std::ffi::OsString;

/// The command line with the config file's options put in, for `clap` to parse.
pub fn expand(args: Vec<OsString>, serve: &clap::Command) -> Result<Vec<OsString>, String> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(args);
    }
    let mut path: Option<String> = std::env::var("BAOMI_CONFIG").ok();
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    let (program, sub) = (it.next(), it.next());
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--config") => {
                path = Some(
                    it.next()
                        .and_then(|p| p.into_string().ok())
                        .ok_or("--config needs a file")?,
                );
            }
            Some(s) if s.starts_with("--config=") => {
                path = Some(s["--config=".len()..].to_owned());
            }
            _ => rest.push(a),
        }
    }
    let mut out: Vec<OsString> = program.into_iter().chain(sub).collect();
    if let Some(path) = path {
        out.extend(from_file(&path, serve)?);
    }
    out.extend(rest);
    Ok(out)
}

fn from_file(path: &str, serve: &clap::Command) -> Result<Vec<OsString>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut flags = Vec::new();
    for (key, value) in table {
        if key == "config" {
            return Err(format!("{path}: a config file cannot name another"));
        }
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(|| {
                format!("{path}: `{key}` is not a serve option (see `baomi-server serve --help`)")
            })?;
        if arg.get_env().is_some_and(|v| std::env::var_os(v).is_some()) {
            continue;
        }
        let flag = format!("--{key}");
        match value {
            toml::Value::Boolean(true) => flags.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => flags.extend([flag.into(), s.into()]),
            toml::Value::Integer(i) => flags.extend([flag.into(), i.to_string().into()]),
            other => {
                return Err(format!(
                    "{path}: `{key}` must be a string, number or true/false, not {}",
                    other.type_str()
                ));
            }
        }
    }
    Ok(flags)
}
