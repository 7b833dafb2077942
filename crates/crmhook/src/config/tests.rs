use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn layers_later_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "bind = \"127.0.0.1:9000\"\nmax_targets = 3\nmax_body_bytes = 2048\n").unwrap();
    let flags = Flags { config_file: Some(file), bind: Some("127.0.0.1:0".into()), data_dir: None, cluster: None };
    let c = load(&flags, &env(&[("CRMHOOK_MAX_TARGETS", "5"), ("CRMHOOK_BIND", "127.0.0.1:9001")])).unwrap();
    assert_eq!(c.bind.port(), 0);
    assert_eq!((c.max_targets, c.max_body_bytes), (5, 2048));
    assert_eq!(c.data_dir, PathBuf::from("./data/db"));
}

#[test]
fn exposure_keys_load_and_are_checked() {
    let c = load(&Flags::default(), &env(&[])).unwrap();
    assert_eq!((c.allowed_hosts.len(), c.metrics_token.as_deref()), (0, None));
    let c = load(
        &Flags::default(),
        &env(&[
            ("CRMHOOK_ALLOWED_HOSTS", "crmhook.example.com, other.example:8443"),
            ("CRMHOOK_METRICS_TOKEN", "met_0123456789abcdef"),
            ("CRMHOOK_AUTH_FAILURE_BURST", "0"),
            ("CRMHOOK_AUTH_FAILURE_REFILL_PER_MINUTE", "30"),
        ]),
    )
    .unwrap();
    assert_eq!(c.allowed_hosts, vec!["crmhook.example.com".to_owned(), "other.example:8443".to_owned()]);
    assert_eq!(c.metrics_token.as_deref(), Some("met_0123456789abcdef"));
    assert_eq!((c.auth_failure_burst, c.auth_failure_refill_per_minute), (0, 30));
    for (var, value, key) in [
        ("CRMHOOK_ALLOWED_HOSTS", "a b", "allowed_hosts"),
        ("CRMHOOK_METRICS_TOKEN", "short", "metrics_token"),
        ("CRMHOOK_AUTH_FAILURE_REFILL_PER_MINUTE", "0", "auth_failure_refill_per_minute"),
        ("CRMHOOK_AUTH_FAILURE_BURST", "-1", "auth_failure_burst"),
    ] {
        assert_eq!(load(&Flags::default(), &env(&[(var, value)])).unwrap_err().key, key, "{var}={value}");
    }
}

#[test]
fn a_misspelt_settings_variable_is_named_with_the_setting_and_others_are_left_alone() {
    let found = misspelt_variables(&env(&[
        ("CRMHOOK_MAX_TARGET", "3"),
        ("CRMHOOK_ALOW_PRIVATE_TARGET", "1"),
        ("CRMHOOK_MAX_TARGETS", "3"),
        ("CRMHOOK_LOG", "debug"),
        ("CRMHOOK_URL", "http://127.0.0.1:8080"),
        ("CRMHOOK_BENCH_SERVER", "x"),
        ("PATH", "/bin"),
    ]));
    assert_eq!(
        found,
        [
            ("CRMHOOK_ALOW_PRIVATE_TARGET".to_owned(), "CRMHOOK_ALLOW_PRIVATE_TARGETS".to_owned()),
            ("CRMHOOK_MAX_TARGET".to_owned(), "CRMHOOK_MAX_TARGETS".to_owned()),
        ]
    );
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "ab"), 2);
}

#[test]
fn bind_takes_an_ip_address_or_localhost_and_a_port() {
    let bind = |v: &str| load(&Flags::default(), &env(&[("CRMHOOK_BIND", v)])).map(|c| c.bind.to_string());
    assert_eq!(bind("localhost:0").unwrap(), "127.0.0.1:0");
    assert_eq!(bind("LOCALHOST:8080").unwrap(), "127.0.0.1:8080");
    assert_eq!(bind("[::1]:8080").unwrap(), "[::1]:8080");
    assert_eq!(bind("0.0.0.0:9").unwrap(), "0.0.0.0:9");
    for bad in ["localhost", "localhost:x", "example.com:80", "127.0.0.1"] {
        assert_eq!(bind(bad).unwrap_err().key, "bind", "{bad}");
    }
}

#[test]
fn errors_name_the_key_and_origin() {
    let e = load(&Flags::default(), &env(&[("CRMHOOK_BIND", "nowhere")])).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("bind", "environment CRMHOOK_BIND"));
    let e = load(&Flags::default(), &env(&[("CRMHOOK_ALLOW_PRIVATE_TARGETS", "maybe")])).unwrap_err();
    assert_eq!(e.key, "allow_private_targets");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "colour = \"red\"\n").unwrap();
    let e = load(&Flags { config_file: Some(file.clone()), ..Flags::default() }, &env(&[])).unwrap_err();
    assert_eq!(e.key, "colour");
    assert!(e.to_string().contains("unknown key `colour`"), "{e}");
    let missing = Flags { config_file: Some(dir.path().join("none.toml")), ..Flags::default() };
    assert!(load(&missing, &env(&[])).is_err());
    let same =
        env(&[("CRMHOOK_ADMIN_TOKEN", "tok_0123456789abcdef"), ("CRMHOOK_INGEST_TOKEN", "tok_0123456789abcdef")]);
    let e = load(&Flags::default(), &same).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("ingest_token", "environment CRMHOOK_INGEST_TOKEN"));
}

/// Loads the configuration of a file holding `text` (in `dir`), with no environment.
fn load_text(dir: &tempfile::TempDir, text: &str) -> Result<Config, ConfigError> {
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    load(&Flags { config_file: Some(file), ..Flags::default() }, &env(&[]))
}

#[test]
fn a_file_that_is_not_toml_names_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let load_file = |text: &str| load_text(&dir, text).unwrap_err();
    let e = load_file("bind = \"127.0.0.1:0\"\nmax_targets = 3\nallow_private_targets = tru\n");
    assert_eq!(e.key, "allow_private_targets", "{e}");
    assert!(e.reason.starts_with("line 3, column 25: "), "{e}");
    let e = load_file("# limits\nmax_targets = 99999999999999999999\n");
    assert_eq!(e.key, "max_targets", "{e}");
    assert!(e.reason.starts_with("line 2, "), "{e}");
    // No key on the line: the file itself is named.
    let e = load_file("[unclosed\n");
    assert_eq!(e.key, "config", "{e}");
}

#[test]
fn a_files_values_have_their_keys_types() {
    let dir = tempfile::tempdir().unwrap();
    let load_file = |text: &str| load_text(&dir, text);
    for (text, key) in [
        ("allow_private_targets = \"yes\"", "allow_private_targets"),
        ("allow_private_targets = 1", "allow_private_targets"),
        ("max_targets = \"5\"", "max_targets"),
        ("data_dir = 5", "data_dir"),
    ] {
        let e = load_file(text).expect_err(text);
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.reason.contains("is not a value for it; write"), "{text}: {e}");
    }
    // Its type said with the right article.
    let e = load_file("data_dir = 5").expect_err("an integer");
    assert!(e.reason.starts_with("an integer is not a value for it"), "{e}");
    let e = load_file("max_targets = \"5\"").expect_err("a string");
    assert!(e.reason.starts_with("a string is not a value for it"), "{e}");
    let c = load_file("allow_private_targets = true\nmax_targets = 5\nallowed_hosts = [\"a.example\"]\n").unwrap();
    assert_eq!((c.allow_private_targets, c.max_targets, c.allowed_hosts.clone()), (true, 5, vec!["a.example".into()]));
    // The environment's values are text: there `yes` still turns a switch on.
    let c = load(&Flags::default(), &env(&[("CRMHOOK_ALLOW_PRIVATE_TARGETS", "yes")])).unwrap();
    assert!(c.allow_private_targets);
}

#[test]
fn sched_batch_is_on_unless_turned_off() {
    assert!(load(&Flags::default(), &env(&[])).unwrap().sched_batch);
    assert!(!load(&Flags::default(), &env(&[("CRMHOOK_SCHED_BATCH", "off")])).unwrap().sched_batch);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "sched_batch = false\n").unwrap();
    assert!(!load(&Flags { config_file: Some(file), ..Flags::default() }, &env(&[])).unwrap().sched_batch);
    let e = load(&Flags::default(), &env(&[("CRMHOOK_SCHED_BATCH", "maybe")])).unwrap_err();
    assert_eq!(e.key, "sched_batch");
}

#[test]
fn a_locked_data_dir_ends_the_process_after_60_s_or_the_set_time_of_at_least_5() {
    assert_eq!(load(&Flags::default(), &env(&[])).unwrap().locked_restart_after_s, 60);
    let c = load(&Flags::default(), &env(&[("CRMHOOK_LOCKED_RESTART_AFTER_S", "10")])).unwrap();
    assert_eq!(c.locked_restart_after_s, 10);
    // Under one reopen's period it would end the process at the first reopen.
    let e = load(&Flags::default(), &env(&[("CRMHOOK_LOCKED_RESTART_AFTER_S", "4")])).unwrap_err();
    assert_eq!(e.key, "locked_restart_after_s", "{e}");
}

#[test]
fn streams_per_key_are_a_quarter_of_max_streams_unless_set_to_at_least_1() {
    assert_eq!(load(&Flags::default(), &env(&[])).unwrap().max_streams_per_key, None);
    let c = load(&Flags::default(), &env(&[("CRMHOOK_MAX_STREAMS_PER_KEY", "3")])).unwrap();
    assert_eq!(c.max_streams_per_key, Some(3));
    let e = load(&Flags::default(), &env(&[("CRMHOOK_MAX_STREAMS_PER_KEY", "0")])).unwrap_err();
    assert_eq!(e.key, "max_streams_per_key", "{e}");
}

#[test]
fn the_key_file_is_set_by_file_or_environment() {
    assert_eq!(load(&Flags::default(), &env(&[])).unwrap().key_file, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.key").display().to_string();
    let c = load(&Flags::default(), &env(&[("CRMHOOK_KEY_FILE", &file)])).unwrap();
    assert_eq!(c.key_file, Some(PathBuf::from(&file)));
    assert_eq!(load(&Flags::default(), &env(&[("CRMHOOK_KEY_FILE", " ")])).unwrap_err().key, "key_file");
    // One that could not be created is refused now, before the server makes anything.
    let e = load(&Flags::default(), &env(&[("CRMHOOK_KEY_FILE", "/nonexistent/db.key")])).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("key_file", "environment CRMHOOK_KEY_FILE"));
    assert!(e.reason.contains("cannot create the key file /nonexistent/db.key"), "{e}");
}

#[test]
fn the_tls_files_are_read_at_load_and_errors_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let both = [("CRMHOOK_TLS_CERT", cert_s.as_str()), ("CRMHOOK_TLS_KEY", key_s.as_str())];
    let e = load(&Flags::default(), &env(&both)).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("tls_cert", "environment CRMHOOK_TLS_CERT"));
    assert!(e.to_string().starts_with("invalid configuration: key `tls_cert`"), "{e}");
    assert!(e.reason.contains("cannot read the certificate"), "{e}");
    // A PEM file without a certificate in it.
    std::fs::write(&cert, "nothing here\n").unwrap();
    let e = load(&Flags::default(), &env(&both)).unwrap_err();
    assert!(e.key == "tls_cert" && e.reason.contains("holds no certificate"), "{e}");
    // One of the pair alone names the one set, and where it was set.
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("tls_key = {key_s:?}\n")).unwrap();
    let e = load(&Flags { config_file: Some(file.clone()), ..Flags::default() }, &env(&[])).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("tls_key", file.display().to_string().as_str()));
    assert!(e.reason.contains("tls_cert is not set"), "{e}");
}

#[test]
fn the_delivery_ca_file_is_read_at_load_and_errors_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    let shown = file.display().to_string();
    let set = [("CRMHOOK_DELIVERY_CA_FILE", shown.as_str())];
    let e = load(&Flags::default(), &env(&set)).unwrap_err();
    assert_eq!((e.key.as_str(), e.origin.as_str()), ("delivery_ca_file", "environment CRMHOOK_DELIVERY_CA_FILE"));
    assert!(e.reason.starts_with("cannot read"), "{e}");
    std::fs::write(&file, "nothing here\n").unwrap();
    let e = load(&Flags::default(), &env(&set)).unwrap_err();
    assert!(e.key == "delivery_ca_file" && e.reason.contains("holds no certificate"), "{e}");
    let e = load(&Flags::default(), &env(&[("CRMHOOK_DELIVERY_CA_FILE", " ")])).unwrap_err();
    assert!(e.key == "delivery_ca_file" && e.reason.contains("must not be empty"), "{e}");
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    use std::net::IpAddr;
    let dir = tempfile::tempdir().unwrap();
    let load_file = |text: &str| load_text(&dir, text);
    let c = load(&Flags::default(), &env(&[])).unwrap();
    assert_eq!(c.trusted_proxies, crmhook_server::api::client::TrustedProxies::default());
    let c = load(&Flags::default(), &env(&[("CRMHOOK_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,fd00::/8")])).unwrap();
    for (ip, trusted) in [("127.0.0.1", true), ("10.9.8.7", true), ("fd00::1", true), ("192.0.2.1", false)] {
        assert_eq!(c.trusted_proxies.contains(ip.parse::<IpAddr>().unwrap()), trusted, "{ip}");
    }
    let c = load_file("trusted_proxies = [\"127.0.0.1\", \"::1\"]\n").unwrap();
    assert!(c.trusted_proxies.contains("::1".parse::<IpAddr>().unwrap()));
    for bad in ["proxy.example.com", "10.0.0.0/40", "127.0.0.1 10.0.0.1"] {
        let e = load(&Flags::default(), &env(&[("CRMHOOK_TRUSTED_PROXIES", bad)])).unwrap_err();
        assert_eq!(e.key, "trusted_proxies", "{bad}");
        assert!(e.reason.contains("10.0.0.0/8"), "{e}");
    }
    let e = load_file("trusted_proxies = [1]\n").unwrap_err();
    assert_eq!(e.key, "trusted_proxies");
}
