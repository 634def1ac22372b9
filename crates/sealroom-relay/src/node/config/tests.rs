//! The node configuration's parsing, merging and checks.

use super::*;

const GOOD: &str = r#"
    listen = "0.0.0.0:4433"
    internal_listen = "127.0.0.1:9500"
    admin_token = "0123456789abcdef-admin"
    drain_secs = 3
    [log]
    format = "json"
    [limits]
    max_members_per_room = 5
    [[apps]]
    app = "acme"
    secrets = [
        { kid = "k1", secret = "acme-ticket-secret-one" },
        { kid = "k2", secret = "acme-ticket-secret-two" },
    ]
"#;

#[test]
fn a_good_file_resolves() {
    let settings = parse(GOOD).unwrap().resolve().unwrap();
    assert_eq!(settings.listen, "0.0.0.0:4433".parse().unwrap());
    assert_eq!(settings.internal_listen.port(), 9500);
    assert_eq!(settings.drain, Duration::from_secs(3));
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.limits.max_members_per_room, 5);
    assert_eq!(
        settings.limits.max_rooms_per_app,
        Limits::default().max_rooms_per_app
    );
    assert_eq!(settings.apps.len(), 1);
    assert_eq!(settings.apps[0].secrets.len(), 2);
    assert_eq!(
        settings.apps[0].secrets[1].secret,
        b"acme-ticket-secret-two"
    );
    assert!(!settings.show_ids);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    for (text, key) in [
        ("listn = \"127.0.0.1:1\"", "listn"),
        ("[log]\nfromat = \"json\"", "fromat"),
        ("[tls]\ncertificate = \"x\"", "certificate"),
        (
            "[[apps]]\napp = \"a\"\nsecrets = []\nsecret = \"x\"",
            "secret",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    let err = parse("[limits]\nmax_member_per_room = 3")
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_member_per_room"), "{err}");
}

#[test]
fn overrides_beat_the_file() {
    let mut file = parse(GOOD).unwrap();
    file.apply(&Overrides {
        listen: Some("127.0.0.1:5000".parse().unwrap()),
        log_format: Some(LogFormat::Human),
        show_ids: Some(true),
        limits: vec![
            "max_members_per_room=9".into(),
            "max_rooms_per_app=2".into(),
        ],
        apps: vec![
            "acme:k3:acme-ticket-secret-three".into(),
            "other:a:other-ticket-secret".into(),
        ],
        ..Overrides::default()
    })
    .unwrap();
    let settings = file.resolve().unwrap();
    assert_eq!(settings.listen.port(), 5000);
    assert_eq!(settings.log_format, LogFormat::Human);
    assert!(settings.show_ids);
    assert_eq!(settings.limits.max_members_per_room, 9);
    assert_eq!(settings.limits.max_rooms_per_app, 2);
    assert_eq!(settings.apps[0].secrets.len(), 3);
    assert_eq!(settings.apps[1].app, "other");
}

#[test]
fn effective_config_redacts_every_secret() {
    let mut file = parse(GOOD).unwrap();
    file.apply(&Overrides {
        mask_salt: Some("salty-salt".into()),
        ..Overrides::default()
    })
    .unwrap();
    let text = file.resolve().unwrap().effective_toml().unwrap();
    for secret in ["acme-ticket-secret", "0123456789abcdef-admin", "salty-salt"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("<redacted>"));
    assert!(text.contains("kid = \"k2\""), "{text}");
    assert!(text.contains("max_members_per_room = 5"), "{text}");
    // The printed config parses back (secrets aside, it is a valid file).
    let reparsed: toml::Table = toml::from_str(&text).unwrap();
    assert!(reparsed.contains_key("limits"));
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    for (text, needle) in [
        ("admin_token = \"short\"", "16 characters"),
        ("[tls]\ncert = \"/nonexistent/cert.pem\"", "together"),
        (
            "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"",
            "no such file",
        ),
        ("[sla]\ntarget = 1.5", "between 0 and 1"),
        (
            "[[apps]]\napp = \"a\"\nsecrets = [{ kid = \"k\", secret = \"short\" }]",
            "16 bytes",
        ),
        (
            "[[apps]]\napp = \"a\"\nsecrets = [{ kid = \"k\" }]",
            "exactly one of",
        ),
    ] {
        let err = parse(text).unwrap().resolve().unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    let mut file = FileConfig::default();
    let err = file
        .apply(&Overrides {
            apps: vec!["nokid".into()],
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("app:kid:secret"));
}

#[test]
fn secret_files_are_read_without_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("sealroom-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "from-a-file-secret-value\n").unwrap();
    let text = format!(
        "admin_token_file = {0:?}\n[[apps]]\napp = \"a\"\nsecrets = [{{ kid = \"k\", secret_file = {0:?} }}]",
        path.display().to_string()
    );
    let settings = parse(&text).unwrap().resolve().unwrap();
    assert_eq!(
        settings.admin_token.unwrap().expose(),
        "from-a-file-secret-value"
    );
    assert_eq!(
        settings.apps[0].secrets[0].secret,
        b"from-a-file-secret-value"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The filter is checked where the log subscriber is part of the node (`cli`).
#[cfg(feature = "cli")]
#[test]
fn a_bad_log_filter_is_refused() {
    let text = "[log]\nfilter = \"==\"";
    let err = parse(text).unwrap().resolve().unwrap_err().to_string();
    assert!(err.contains("filter"), "{text}: {err}");
}
