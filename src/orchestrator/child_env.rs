//! What a local replica is given besides its arguments: credentials move from its command line
//! (readable by every user through `ps`) to its environment (readable by its owner alone). (No
//! variable of ours is inherited at all: see `LocalOrchestrator`'s spawn.)

use crate::util::redact;

/// `serve`'s flags whose value may carry a credential, and the variable `serve` reads instead.
const VIA_ENV: &[(&str, &str)] = &[
    ("--mongodb-uri", "STARVATION_MONGODB_URI"),
    ("--pushgateway", "STARVATION_PUSHGATEWAY"),
];

/// `args` without the credential-bearing values, which come back as environment variables
/// (`--mongodb-uri mongodb://u:p@db` → `STARVATION_MONGODB_URI`). Values without a credential
/// stay on the command line, where `ps` shows what a replica runs with.
pub fn split_secrets(args: &[String]) -> (Vec<String>, Vec<(&'static str, String)>) {
    let mut kept = Vec::with_capacity(args.len());
    let mut env = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, value, used) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v), 1),
            None => (a.as_str(), args.get(i + 1).map(String::as_str), 2),
        };
        let var = VIA_ENV.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v);
        match (var, value) {
            (Some(var), Some(value)) if redact::url(value) != value => {
                env.push((var, value.to_owned()));
                i += used;
            }
            _ => {
                kept.push(a.clone());
                i += 1;
            }
        }
    }
    (kept, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_move_to_the_environment_the_rest_stays() {
        let args: Vec<String> = [
            "--block-ms",
            "0",
            "--mongodb-uri",
            "mongodb://admin:hunter2@db:27017",
            "--pushgateway=http://u:hunter2@pg:9091",
            "--data-dir",
            "d",
        ]
        .map(String::from)
        .to_vec();
        let (kept, env) = split_secrets(&args);
        assert_eq!(kept, ["--block-ms", "0", "--data-dir", "d"]);
        assert_eq!(
            env,
            [
                (
                    "STARVATION_MONGODB_URI",
                    "mongodb://admin:hunter2@db:27017".into()
                ),
                ("STARVATION_PUSHGATEWAY", "http://u:hunter2@pg:9091".into()),
            ]
        );
        let plain: Vec<String> = ["--pushgateway", "http://127.0.0.1:9091"]
            .map(String::from)
            .to_vec();
        assert_eq!(split_secrets(&plain), (plain.clone(), vec![]));
    }
}
