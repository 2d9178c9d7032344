//! The one rule for secrets in anything printed or saved (logs, errors, `--help`, reports,
//! JSON files): a URL keeps its scheme, host, port and path, and loses
//!
//! * its userinfo password, replaced by `***` (the user name stays, it says which account);
//!   a user name without a password is itself the credential (`https://TOKEN@host`), so it is
//!   replaced by `***`;
//! * the value of every query parameter whose name says it is a secret (`password`, `token`,
//!   `secret`, `apikey`, `key`, `sig`, … see [`is_secret_name`]).
//!
//! In an argument list, the value of a flag in [`SECRET_FLAGS`] is replaced whole, and every
//! other value that looks like a URL (holds `://`, or is a flag in [`URL_FLAGS`]) goes through
//! the URL rule. What is used to connect is never redacted, only what is shown.

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Flags whose whole value is a secret.
pub const SECRET_FLAGS: &[&str] = &["--token", "--password"];

/// Flags whose value is a URL or connection string that may carry credentials, even when it
/// does not parse as one.
pub const URL_FLAGS: &[&str] = &[
    "--mongodb-uri",
    "--pushgateway",
    "--prometheus",
    "--alertmanager",
    "--remote-write",
    "--url",
];

/// Whether a query parameter (or a flag, without its dashes) named `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const PARTS: &[&str] = &[
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "credential",
        "signature",
    ];
    const WHOLE: &[&str] = &["key", "sig", "auth", "pass"];
    PARTS.iter().any(|p| n.contains(p)) || WHOLE.contains(&n.as_str())
}

/// `raw` with its credentials replaced by [`MASK`]. A string that does not parse as a URL
/// (a MongoDB seed list `mongodb://u:p@h1,h2`, a typo) loses everything before its last `@`.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if raw.contains("://") => {
            if !url_in_place(&mut u) {
                // Nothing to hide: show it exactly as given, not re-serialised.
                return raw.to_owned();
            }
            u.to_string()
        }
        _ => unparsed(raw),
    }
}

/// Replaces `u`'s credentials by [`MASK`]; whether anything was.
pub fn url_in_place(u: &mut url::Url) -> bool {
    let mut changed = false;
    if u.password().is_some() {
        changed |= u.set_password(Some(MASK)).is_ok();
    } else if !u.username().is_empty() {
        changed |= u.set_username(MASK).is_ok();
    }
    if u.query_pairs().any(|(k, _)| is_secret_name(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    changed
}

/// The fallback for what `url::Url` refuses: userinfo is whatever precedes the last `@` of the
/// authority-and-beyond (credentials are the part worth hiding, so err towards hiding), and a
/// query's secret values go too.
fn unparsed(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut out = scheme.to_owned();
    match before_query.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// An argument list as it may be shown or saved: see the module's rule.
pub fn args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    // The flag whose value comes next, if it is one to redact.
    let mut pending: Option<fn(&str) -> String> = None;
    for a in args {
        let a = a.as_ref();
        if let Some(redact) = pending.take() {
            out.push(redact(a));
            continue;
        }
        if let Some((flag, value)) = a.split_once('=').filter(|(f, _)| f.starts_with('-')) {
            match rule_for(flag) {
                Some(redact) => out.push(format!("{flag}={}", redact(value))),
                None if value.contains("://") => out.push(format!("{flag}={}", url(value))),
                None => out.push(a.to_owned()),
            }
            continue;
        }
        if a.starts_with('-') {
            pending = rule_for(a);
            out.push(a.to_owned());
        } else if a.contains("://") {
            out.push(url(a));
        } else {
            out.push(a.to_owned());
        }
    }
    out
}

/// How the value of `flag` is redacted, if it is a flag that carries a secret.
fn rule_for(flag: &str) -> Option<fn(&str) -> String> {
    if SECRET_FLAGS.contains(&flag) || is_secret_name(flag.trim_start_matches('-')) {
        Some(|_| MASK.to_owned())
    } else if URL_FLAGS.contains(&flag) {
        Some(url)
    } else {
        None
    }
}

/// Whether `shown` (a redacted argument) stands for something hidden.
pub fn is_redacted(shown: &str) -> bool {
    shown.contains(MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_and_bare_users_are_masked_hosts_stay() {
        for (raw, shown) in [
            (
                "http://admin:hunter2@pushgateway:9091",
                "http://admin:***@pushgateway:9091/",
            ),
            ("https://tok3n@host/x", "https://***@host/x"),
            (
                "mongodb://admin:hunter2@db:27017/?authSource=admin",
                "mongodb://admin:***@db:27017/?authSource=admin",
            ),
            // A seed list does not parse as one URL: everything before the last @ goes.
            (
                "mongodb://admin:hunter2@db1:27017,db2:27017/x",
                "mongodb://***@db1:27017,db2:27017/x",
            ),
            (
                "mongodb+srv://a:p%40ss@cluster0",
                "mongodb+srv://a:***@cluster0",
            ),
            // Nothing secret: shown exactly as given, not re-serialised.
            ("http://pushgateway:9091", "http://pushgateway:9091"),
            ("not a url", "not a url"),
            ("user:hunter2@host", "***@host"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn secret_query_values_are_masked_others_stay() {
        assert_eq!(
            url("http://p:9090/api/v1/write?access_token=hunter2&tenant=a&X-Amz-Signature=s"),
            "http://p:9090/api/v1/write?access_token=***&tenant=a&X-Amz-Signature=***"
        );
        assert_eq!(
            url("mongodb://h1,h2/?tlsCertificateKeyFilePassword=hunter2&w=1"),
            "mongodb://h1,h2/?tlsCertificateKeyFilePassword=***&w=1"
        );
    }

    #[test]
    fn argument_lists_lose_secret_values_in_both_flag_forms() {
        let given = [
            "--mongodb-uri",
            "mongodb://admin:hunter2@db:27017",
            "--mongodb-uri=mongodb://admin:hunter2@db1,db2",
            "--token",
            "hunter2",
            "--api-key=hunter2",
            "--block-ms",
            "2000",
            "--pushgateway=http://u:hunter2@pg:9091",
            "--other=http://u:hunter2@x",
            "http://u:hunter2@positional",
            "--starvation-delay=1630ms",
        ];
        let shown = args(&given);
        assert_eq!(
            shown,
            [
                "--mongodb-uri",
                "mongodb://admin:***@db:27017",
                "--mongodb-uri=mongodb://admin:***@db1,db2",
                "--token",
                "***",
                "--api-key=***",
                "--block-ms",
                "2000",
                "--pushgateway=http://u:***@pg:9091/",
                "--other=http://u:***@x/",
                "http://u:***@positional/",
                "--starvation-delay=1630ms",
            ]
        );
        assert!(!shown.concat().contains("hunter2"));
        assert!(shown.iter().filter(|a| is_redacted(a)).count() == 7);
    }
}
