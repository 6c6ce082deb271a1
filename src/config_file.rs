//! The configuration file and `*_FILE` secrets, folded into the argument list clap parses.
//!
//! Precedence, highest first: the command line, the environment, the configuration file, the
//! defaults. The file (`--config FILE` or `COUNTERSIGN_CONFIG`) is TOML with one key per long flag
//! name (`listen = "0.0.0.0:8080"`, `db-max-connections = 40`, `trusted-proxies = ["10.0.0.0/8"]`);
//! a key is used only when neither the command line nor the flag's environment variable sets it.
//! A key no command knows is refused by name; keys of other commands (`listen` while running
//! `migrate`) are ignored, so one file serves every command.
//!
//! Secrets never need to sit in the environment or in a URL on the command line: every secret flag
//! also reads `<ENV>_FILE` (`DATABASE_URL_FILE=/run/secrets/db`) or `<key>-file` in the
//! configuration file, and the file's content (without its final newline) is the value.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, Command};

/// The flags that hold secrets: redacted by `config check`, readable from `<ENV>_FILE`.
pub const SECRET_FLAGS: &[&str] = &["database-url", "app-database-url", "app-db-password", "smtp-url"];

/// The argument list to parse, and which flags the configuration file and secret files supplied.
#[derive(Debug, Default)]
pub struct Folded {
    pub args: Vec<OsString>,
    pub from_file: BTreeSet<String>,
    pub from_secret_file: BTreeSet<String>,
    pub config_path: Option<PathBuf>,
}

/// Folds the configuration file named by `args` (or `COUNTERSIGN_CONFIG`) and the `*_FILE`
/// secrets into `args`, for `root` (the CLI's command).
///
/// # Errors
/// A file that cannot be read, is not TOML, or holds a key no command knows, a value of the wrong
/// shape, or a secret set both directly and through a file: the message names it.
pub fn fold(root: &Command, args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Folded, String> {
    let given = given_flags(&args);
    let config_path = config_path(&args).or_else(|| env("COUNTERSIGN_CONFIG").map(PathBuf::from));
    let table = match &config_path {
        Some(p) => read_table(p)?,
        None => toml::Table::new(),
    };
    let chain = subcommand_chain(root, &args);
    let mut seen = BTreeSet::new();
    let applicable: Vec<&Arg> =
        chain.iter().flat_map(|c| c.get_arguments()).filter(|a| seen.insert(a.get_id().as_str().to_owned())).collect();
    let known = all_longs(root);
    let mut extra: Vec<OsString> = Vec::new();
    let mut folded = Folded { config_path: config_path.clone(), ..Folded::default() };
    let unset = |arg: &Arg, long: &str| {
        !given.contains(long) && arg.get_env().and_then(|e| e.to_str()).is_none_or(|e| env(e).is_none())
    };

    // Secrets from files: `<ENV>_FILE`, or `<key>-file` in the configuration file.
    for arg in applicable.iter().filter(|a| a.get_long().is_some_and(|l| SECRET_FLAGS.contains(&l))) {
        let long = arg.get_long().unwrap_or_default();
        let env_name = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default().to_owned();
        let file_env = format!("{env_name}_FILE");
        let path = match (env(&file_env), table.get(&format!("{long}-file"))) {
            (Some(p), _) => Some((PathBuf::from(p), file_env.clone())),
            (None, Some(toml::Value::String(p))) => {
                Some((PathBuf::from(p), format!("{long}-file in the configuration file")))
            }
            (None, Some(_)) => return Err(format!("configuration file: {long}-file must be a path (a string)")),
            (None, None) => None,
        };
        let Some((path, source)) = path else { continue };
        if given.contains(long) || env(&env_name).is_some() {
            return Err(format!("{long} is set both directly and through {source}: set one"));
        }
        let value =
            std::fs::read_to_string(&path).map_err(|e| format!("{source}: cannot read {}: {e}", path.display()))?;
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value);
        extra.push(format!("--{long}={value}").into());
        folded.from_secret_file.insert(long.to_owned());
    }

    for (key, value) in &table {
        if key.ends_with("-file") && SECRET_FLAGS.contains(&key.trim_end_matches("-file")) {
            continue;
        }
        if key == "config" {
            return Err("configuration file: `config` cannot be set inside a configuration file".into());
        }
        if !known.contains(key.as_str()) {
            let path = config_path.as_deref().map_or_else(String::new, |p| p.display().to_string());
            return Err(format!(
                "configuration file {path}: unknown setting `{key}` (settings are the long flag names of `countersign --help`, e.g. listen, db-max-connections)"
            ));
        }
        let Some(arg) = applicable.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            continue; // another command's setting
        };
        if !unset(arg, key) || folded.from_secret_file.contains(key) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        match (value, takes_value) {
            (toml::Value::Boolean(true), false) => extra.push(format!("--{key}").into()),
            (toml::Value::Boolean(false), false) => {}
            (toml::Value::Array(items), true) => {
                for item in items {
                    extra.push(format!("--{key}={}", scalar(key, item)?).into());
                }
            }
            (v, true) => extra.push(format!("--{key}={}", scalar(key, v)?).into()),
            (_, false) => return Err(format!("configuration file: `{key}` is a switch: write {key} = true or false")),
        }
        folded.from_file.insert(key.clone());
    }

    // The file's flags go right after the innermost subcommand's name (where every flag of the
    // chain is accepted; globals too), so the command line's own flags are never displaced.
    let at = insert_position(root, &args);
    let mut out = args;
    out.splice(at..at, extra);
    folded.args = out;
    Ok(folded)
}

fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("configuration file: `{key}` must be a string, number or boolean")),
    }
}

fn read_table(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("configuration file {}: cannot read it: {e}", path.display()))?;
    text.parse::<toml::Table>().map_err(|e| format!("configuration file {}: not valid TOML: {e}", path.display()))
}

/// The long flags the command line names (`--listen x`, `--listen=x`).
fn given_flags(args: &[OsString]) -> BTreeSet<String> {
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect()
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Every long flag name of every command.
fn all_longs(root: &Command) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(c) = stack.pop() {
        out.extend(c.get_arguments().filter_map(|a| a.get_long().map(str::to_owned)));
        stack.extend(c.get_subcommands());
    }
    out
}

/// The root command and the subcommands named in `args`, outermost first.
fn subcommand_chain<'a>(root: &'a Command, args: &[OsString]) -> Vec<&'a Command> {
    let mut chain = vec![root];
    for a in args.iter().skip(1).filter_map(|a| a.to_str()) {
        let current = chain[chain.len() - 1];
        if let Some(sub) = current.find_subcommand(a) {
            chain.push(sub);
        }
    }
    chain
}

/// Just after the innermost subcommand's name in `args` (or at the end when none is named).
fn insert_position(root: &Command, args: &[OsString]) -> usize {
    let mut current = root;
    let mut at = args.len();
    for (i, a) in args.iter().enumerate().skip(1) {
        if let Some(sub) = a.to_str().and_then(|a| current.find_subcommand(a)) {
            current = sub;
            at = i + 1;
        }
    }
    if current.get_name() == root.get_name() { args.len() } else { at }
}

/// `config check`: every setting `serve` would run with, where it came from, secrets redacted.
#[must_use]
pub fn report(serve: &Command, root: &Command, matches: &clap::ArgMatches, folded: &Folded) -> String {
    use clap::parser::ValueSource;
    use std::fmt::Write as _;
    let mut out = String::new();
    let from =
        folded.config_path.as_deref().map_or_else(|| "no configuration file".to_owned(), |p| p.display().to_string());
    let _ = writeln!(out, "# countersign serve: effective configuration ({from})");
    let mut seen = BTreeSet::new();
    for arg in root.get_arguments().chain(serve.get_arguments()) {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else { continue };
        if long == "config" || !seen.insert(long) {
            continue;
        }
        let raw: Vec<String> = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let source = match matches.value_source(id) {
            None => "not set".to_owned(),
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            Some(ValueSource::EnvVariable) => format!("environment {}", env.unwrap_or_default()),
            Some(_) if folded.from_secret_file.contains(long) => "secret file".to_owned(),
            Some(_) if folded.from_file.contains(long) => "configuration file".to_owned(),
            Some(_) => "command line".to_owned(),
        };
        let value = if raw.is_empty() {
            "(not set)".to_owned()
        } else if SECRET_FLAGS.contains(&long) {
            "(set, redacted)".to_owned()
        } else if raw.len() == 1 {
            format!("{:?}", raw[0])
        } else {
            format!("{raw:?}")
        };
        let _ = writeln!(out, "{long} = {value}  # {source}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{ArgAction, Command};

    fn cli() -> Command {
        Command::new("cs")
            .arg(Arg::new("data-dir").long("data-dir").env("CS_DATA_DIR").global(true))
            .arg(Arg::new("database-url").long("database-url").env("DATABASE_URL").global(true))
            .subcommand(
                Command::new("serve")
                    .arg(Arg::new("listen").long("listen").env("CS_LISTEN"))
                    .arg(Arg::new("insecure").long("insecure").action(ArgAction::SetTrue))
                    .arg(Arg::new("proxies").long("proxies").action(ArgAction::Append)),
            )
            .subcommand(Command::new("migrate"))
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn strings(f: &Folded) -> Vec<String> {
        f.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_command_line_and_the_environment_beat_the_file_and_other_commands_keys_are_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:1\"\ndata-dir = \"/srv\"\ninsecure = true\nproxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .expect("write");
        let p = path.to_str().expect("utf-8");
        let none = |_: &str| None;
        let f = fold(&cli(), args(&["cs", "serve", "--config", p]), &none).expect("fold");
        assert_eq!(
            strings(&f),
            [
                "cs",
                "serve",
                "--data-dir=/srv",
                "--insecure",
                "--listen=0.0.0.0:1",
                "--proxies=10.0.0.0/8",
                "--proxies=::1",
                "--config",
                p
            ]
        );
        // The command line's --listen and the environment's data dir win.
        let env = |k: &str| (k == "CS_DATA_DIR").then(|| "/env".to_owned());
        let f = fold(&cli(), args(&["cs", "serve", "--listen", "127.0.0.1:2", "--config", p]), &env).expect("fold");
        assert!(!strings(&f).iter().any(|a| a.starts_with("--listen=") || a.starts_with("--data-dir")), "{:?}", f.args);
        // `migrate` takes only the global data dir from the same file.
        let f = fold(&cli(), args(&["cs", "--config", p, "migrate"]), &none).expect("fold");
        assert_eq!(strings(&f), ["cs", "--config", p, "migrate", "--data-dir=/srv"]);
    }

    #[test]
    fn unknown_settings_bad_shapes_and_doubly_set_secrets_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let none = |_: &str| None;
        for (text, needle) in [
            ("lisen = \"x\"", "unknown setting `lisen`"),
            ("insecure = \"yes\"", "`insecure` is a switch"),
            ("listen = { a = 1 }", "`listen` must be a string"),
            ("listen = ", "not valid TOML"),
        ] {
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, text).expect("write");
            let e =
                fold(&cli(), args(&["cs", "serve", "--config", path.to_str().expect("utf-8")]), &none).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
        let missing =
            fold(&cli(), args(&["cs", "serve", "--config", "/nonexistent/c.toml"]), &none).expect_err("missing");
        assert!(missing.contains("/nonexistent/c.toml") && missing.contains("cannot read"), "{missing}");

        let secret = dir.path().join("db");
        std::fs::write(&secret, "postgres://u:hunter2@db/x\n").expect("write");
        let s = secret.to_str().expect("utf-8").to_owned();
        let file_env = move |k: &str| (k == "DATABASE_URL_FILE").then(|| s.clone());
        let f = fold(&cli(), args(&["cs", "migrate"]), &file_env).expect("fold");
        assert_eq!(strings(&f), ["cs", "migrate", "--database-url=postgres://u:hunter2@db/x"]);
        assert!(f.from_secret_file.contains("database-url"));
        let both =
            fold(&cli(), args(&["cs", "migrate", "--database-url", "postgres://x"]), &file_env).expect_err("both");
        assert!(both.contains("database-url is set both directly and through DATABASE_URL_FILE"), "{both}");
        assert!(!both.contains("hunter2"), "{both}");
        let unreadable = |k: &str| (k == "DATABASE_URL_FILE").then(|| "/nonexistent/secret".to_owned());
        let e = fold(&cli(), args(&["cs", "migrate"]), &unreadable).expect_err("unreadable");
        assert!(e.contains("DATABASE_URL_FILE") && e.contains("/nonexistent/secret"), "{e}");
    }
}
