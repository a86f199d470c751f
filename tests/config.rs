//! Config validation as a user meets it: every problem at once, each naming
//! file, line and key; the shipped files and an empty file are valid.

use std::time::Duration;

use pinetd::config::Config;

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, "test.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn empty_file_is_the_embedded_default() {
    assert_eq!(Config::parse("", "empty.toml").unwrap(), Config::default());
}

#[test]
fn local_toml_writes_out_the_embedded_default() {
    let text = include_str!("../config/local.toml");
    assert_eq!(
        Config::parse(text, "config/local.toml").unwrap(),
        Config::default()
    );
    // Every key of every table is written out, so the file documents them all.
    let config = Config::default();
    let tables = config.tables().map(|t| t.name());
    for table in ["daemon"].into_iter().chain(tables) {
        assert!(text.contains(&format!("[{table}]")), "[{table}] missing");
    }
}

/// Found by fuzzing (fuzz/corpus/config/regression-empty-written-out):
/// durations were written as `{ secs, nanos }` tables, which no file takes.
#[test]
fn a_config_written_out_loads_again_unchanged() {
    let files = [
        include_str!("../config/local.toml"),
        include_str!("../config/pinetd.toml"),
        "[daemon]\nshutdown_grace = \"1m 30s 250ms\"\n[chat]\nflush_after = \"1us\"\n",
    ];
    for text in files {
        let config = Config::parse(text, "in.toml").unwrap();
        let written = toml::to_string(&config).unwrap();
        assert_eq!(
            Config::parse(&written, "out.toml").unwrap(),
            config,
            "{written}"
        );
    }
}

#[test]
fn production_toml_opens_the_lan() {
    let config = Config::parse(include_str!("../config/pinetd.toml"), "pinetd.toml").unwrap();
    assert_eq!(config.chat.listen.len(), 2);
    assert!(config.discovery.allow.is_empty());
    assert_eq!(
        config.announcer.to,
        vec!["255.255.255.255:37020".parse().unwrap()]
    );
    // The page is on the LAN, for the LAN only: it shows what students typed.
    assert_eq!(config.web.listen, ["0.0.0.0:8080".parse().unwrap()]);
    let admits = |ip: &str| pinetd::net::allowed(&config.web.allow, ip.parse().unwrap());
    assert!(admits("192.168.1.20") && admits("10.1.2.3") && admits("127.0.0.1"));
    assert!(!admits("203.0.113.9") && !admits("2001:db8::1"));
}

#[test]
fn every_problem_is_reported_at_once_with_line_and_key() {
    let text = "\
[daemon]
shutdown_grace = \"5s\"
colour = true

[chat]
max_clients = \"many\"
listen = \"0.0.0.0:70000\"

[announcer]
interval = \"0s\"
";
    let got = problems(text);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("test.toml:3:1: daemon.colour: unknown field `colour`"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("test.toml:6:15: chat.max_clients: expected a whole number"),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("test.toml:7:10: chat.listen:"),
        "{}",
        got[2]
    );
    assert!(got[2].contains("port 70000 is out of range"), "{}", got[2]);
    assert_eq!(
        got[3],
        "test.toml:10:12: announcer.interval: must be longer than zero"
    );
}

#[test]
fn busy_poll_is_bounded() {
    let got = problems("[json_echo]\nbusy_poll = \"2ms\"\n");
    assert_eq!(
        got,
        vec![
            "test.toml:2:13: json_echo.busy_poll: must be at most 1ms (\"0s\" turns busy polling off)"
        ]
    );
    assert!(problems("[json_echo]\nbusy_poll = \"0s\"\n").is_empty());
}

#[test]
fn unknown_table_is_named() {
    let got = problems("[chat]\nenabled = true\n\n[chatt]\nenabled = true\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("test.toml:4:2: chatt: unknown field `chatt`"),
        "{}",
        got[0]
    );
}

#[test]
fn wrong_types_and_values_name_their_key() {
    let cases = [
        (
            "[udp_echo]\nrate_limit = -1\n",
            "2:14: udp_echo.rate_limit:",
        ),
        (
            "[udp_echo]\nenabled = \"yes\"\n",
            "2:11: udp_echo.enabled: invalid type",
        ),
        (
            "[json_echo]\nmax_message_bytes = 0\n",
            "json_echo.max_message_bytes: 0 is out of range",
        ),
        (
            "[chat]\nqueue = 4294967295\n",
            "2:9: chat.queue: 4294967295 is out of range (1 to 1048576)",
        ),
        (
            "[chat]\non_lag = \"wait\"\n",
            "chat.on_lag: unknown variant `wait`",
        ),
        (
            "[chat]\nflush_after = \"soon\"\n",
            "chat.flush_after: invalid duration \"soon\"",
        ),
        (
            "[discovery]\nallow = [\"10.0.0.0/33\"]\n",
            "2:9: discovery.allow: \"10.0.0.0/33\" is not a network",
        ),
        (
            "[announcer]\nto = [\"127.0.0.1:0\"]\n",
            "announcer.to: \"127.0.0.1:0\": port 0 is not a destination",
        ),
        (
            "[chat]\nlisten = \"::1:9999\"\n",
            "write an IPv6 address in brackets",
        ),
        (
            "[daemon]\nlog = \"info,[\"\n",
            "daemon.log: invalid log filter",
        ),
        (
            "[udp_echo]\nreply = 5\n",
            "udp_echo.reply: invalid type: integer `5`, expected a string",
        ),
        ("[chat\n", "test.toml:1:"),
    ];
    for (text, want) in cases {
        let got = problems(text);
        assert_eq!(got.len(), 1, "{text:?}: {got:#?}");
        assert!(got[0].contains(want), "{text:?}: {} lacks {want:?}", got[0]);
    }
}

#[test]
fn two_services_on_one_address_clash() {
    let text = "[chat]\nlisten = [\"0.0.0.0:9000\"]\n\n[json_echo]\nlisten = \"127.0.0.1:9000\"\n";
    let got = problems(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("test.toml:5:1: json_echo.listen: 127.0.0.1:9000 clashes with 0.0.0.0:9000 of chat.listen"), "{}", got[0]);
    // TCP and UDP on one port, and a disabled service, are no clash.
    assert!(problems("[udp_echo]\nlisten = \"127.0.0.1:9999\"\n").is_empty());
    assert!(problems("[json_echo]\nenabled = false\nlisten = \"127.0.0.1:9999\"\n").is_empty());
    // IPv6 wildcard is v6-only, so it does not cover IPv4.
    assert!(problems("[json_echo]\nlisten = \"[::]:9999\"\n").is_empty());
}

#[test]
fn values_are_read_as_written() {
    let config = Config::parse(
        "[daemon]\nshutdown_grace = \"250ms\"\n[chat]\nlisten = [\"0.0.0.0:1\", \"[::]:1\"]\nflush_after = \"5m\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(config.daemon.shutdown_grace, Duration::from_millis(250));
    assert_eq!(config.chat.flush_after, Duration::from_secs(300));
    assert_eq!(config.chat.listen[1], "[::]:1".parse().unwrap());
}

#[test]
fn lan_guards_bound_the_announcer_and_discovery() {
    let text = "[announcer]\ninterval = \"1ms\"\n[discovery]\nmax_delay = \"10h\"\n";
    assert_eq!(
        problems(text),
        [
            "test.toml:2:12: announcer.interval: must be at least 100ms: every device on the LAN hears each announcement",
            "test.toml:4:13: discovery.max_delay: must be at most 2s: `pinetd discover` waits 3s by default, and a later reply is not heard",
        ]
    );
    // The bounds themselves are fine.
    let text = "[announcer]\ninterval = \"100ms\"\n[discovery]\nmax_delay = \"2s\"\n";
    assert_eq!(problems(text), Vec::<String>::new());
}

#[test]
fn an_enabled_service_must_listen_somewhere() {
    let text = "[json_echo]\nlisten = []\n[udp_echo]\nenabled = false\nlisten = []\n";
    assert_eq!(
        problems(text),
        [
            "test.toml:2:1: json_echo.listen: is empty, so the service would listen nowhere: give it an address, or set enabled = false"
        ]
    );
}

#[test]
fn announcer_interfaces_are_names_that_may_not_exist_yet() {
    let config =
        Config::parse("[announcer]\ninterfaces = [\"wlan0\", \"ap0\"]\n", "t.toml").unwrap();
    assert_eq!(config.announcer.interfaces, ["wlan0", "ap0"]);
    for (bad, why) in [
        ("[\"eth 0\"]", "\"eth 0\" is not an interface name"),
        ("[\"\"]", "\"\" is not an interface name"),
        ("[\"averyveryverylong0\"]", "1 to 15 characters"),
        ("\"eth0\"", "expected a list of interface names"),
    ] {
        let text = format!("[announcer]\ninterfaces = {bad}\n");
        let got = problems(&text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("test.toml:2:")
                && got[0].contains("announcer.interfaces")
                && got[0].contains(why),
            "{got:?}"
        );
    }
}

#[test]
fn the_announcer_sends_only_inside_its_allow() {
    let text = "[announcer]\nallow = [\"192.168.0.0/24\"]\nto = [\"192.168.0.255:37020\", \"10.0.0.255:37020\"]\n";
    assert_eq!(
        problems(text),
        [
            "test.toml:3:1: announcer.to: 10.0.0.255:37020 is outside announcer.allow, which bounds where announcements go"
        ]
    );
    // The limited broadcast never leaves the link: always inside.
    let inside = "[announcer]\nallow = [\"192.168.0.0/24\"]\nto = [\"192.168.0.255:37020\", \"255.255.255.255:37020\"]\n";
    assert_eq!(problems(inside), Vec::<String>::new());
}

#[test]
fn the_chat_bridge_takes_nats_urls_and_one_subject_without_wildcards() {
    let config = Config::parse(
        "[chat]\nbridge_url = \"nats://pi:s3cret@10.0.0.5:4222, nats://nats.school.lan,nats://[::1]:4223\"\nbridge_subject = \"school.room-7\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(config.chat.bridge_url.contains("nats.school.lan"));
    assert_eq!(config.chat.bridge_subject, "school.room-7");
    // Off by default, on the usual subject.
    assert_eq!(Config::default().chat.bridge_url, "");
    assert_eq!(Config::default().chat.bridge_subject, "pinetd.chat");
    for (key, bad, why) in [
        (
            "bridge_url",
            "\"http://10.0.0.5:4222\"",
            "is not a NATS server address",
        ),
        (
            "bridge_url",
            "\"tls://10.0.0.5:4222\"",
            "does not speak TLS",
        ),
        ("bridge_url", "\"nats://10.0.0.5:99999\"", "is not a port"),
        ("bridge_url", "\"nats://10.0.0.5:0\"", "is not a port"),
        (
            "bridge_url",
            "\"nats://bad host:4222\"",
            "is not a host name or IP address",
        ),
        (
            "bridge_url",
            "\"nats://::1:4222\"",
            "is not a host name or IP address",
        ),
        (
            "bridge_url",
            "\"nats://a:1,\"",
            "is not a NATS server address",
        ),
        ("bridge_url", "\"nats://127.0.0.1:+4222\"", "is not a port"),
        (
            "bridge_url",
            "\"nats://[[::1]\"",
            "is not a host name or IP address",
        ),
        (
            "bridge_url",
            "\"nats://[::1]]:4222\"",
            "is not a host name or IP address",
        ),
        (
            "bridge_url",
            "\"nats://[10.0.0.1]:4222\"",
            "is not a host name or IP address",
        ),
        ("bridge_url", "\"nats://a b:c@10.0.0.5\"", "credentials"),
        ("bridge_url", "\"nats://@10.0.0.5\"", "credentials"),
        ("bridge_subject", "\"\"", "is empty"),
        ("bridge_subject", "\"pinetd.*\"", "has a wildcard"),
        ("bridge_subject", "\"pinetd.>\"", "has a wildcard"),
        (
            "bridge_subject",
            "\"pinetd..chat\"",
            "is not a NATS subject",
        ),
        ("bridge_subject", "\"pinetd chat\"", "is not a NATS subject"),
        ("bridge_subject", "\"room*\"", "is not a NATS subject"),
    ] {
        let text = format!("[chat]\n{key} = {bad}\n");
        let got = problems(&text);
        assert_eq!(got.len(), 1, "{bad}: {got:?}");
        assert!(
            got[0].starts_with("test.toml:2:")
                && got[0].contains(&format!("chat.{key}"))
                && got[0].contains(why),
            "{bad}: {got:?}"
        );
    }
}

#[test]
fn bridge_credentials_are_taken_and_never_shown() {
    use pinetd::config::{NatsAuth, NatsUrl};
    let url = NatsUrl::parse("nats://pi:s3cret@10.0.0.5:4222").unwrap();
    assert_eq!(url.server, "nats://10.0.0.5:4222");
    assert_eq!(
        url.auth,
        NatsAuth::UserPassword("pi".into(), "s3cret".into())
    );
    let url = NatsUrl::parse("nats://t0ken@[::1]").unwrap();
    assert_eq!(url.server, "nats://[::1]:4222");
    assert_eq!(url.auth, NatsAuth::Token("t0ken".into()));
    let bad = problems("[chat]\nbridge_url = \"nats://pi:s3cret@bad host:4222\"\n");
    assert!(!bad[0].contains("s3cret"), "{bad:?}");
}

/// `log = "loud"` would be a tracing target of that name: the daemon would
/// then log nothing at all. A bare word must be a level.
#[test]
fn a_log_filter_that_silences_everything_is_refused() {
    assert_eq!(
        problems("[daemon]\nlog = \"loud\"\n"),
        [
            "test.toml:2:7: daemon.log: invalid log filter \"loud\": \"loud\" is not a level (off, error, warn, info, debug, trace, or TARGET=LEVEL)"
        ]
    );
    for good in [
        "info",
        "WARN",
        "off",
        "info,pinetd=debug",
        "debug,async_nats=warn",
    ] {
        assert_eq!(
            problems(&format!("[daemon]\nlog = \"{good}\"\n")),
            Vec::<String>::new(),
            "{good}"
        );
    }
}

/// One true message for each mistake: a bad key's default never stands in
/// for it in the checks across tables, and a file that cannot be read has
/// no line 0.
#[test]
fn a_bad_key_is_not_blamed_again_as_its_default() {
    let text = "[chat]\nlisten = \"127.0.0.1:99999\"\n[json_echo]\nlisten = \"127.0.0.1:9999\"\n";
    let got = problems(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("test.toml:2:10: chat.listen: "),
        "{got:#?}"
    );
    let missing = Config::load(std::path::Path::new("/nonexistent/pinetd.toml")).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "/nonexistent/pinetd.toml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn the_web_tables_problems_name_their_line_and_key() {
    let text = "\
[web]
history = 20000
header_timeout = \"0s\"
max_clients = 0
listen = \"127.0.0.1:8080\"
colour = \"red\"
";
    assert_eq!(
        problems(text),
        [
            "test.toml:2:11: web.history: 20000 is out of range (0 to 2000)",
            "test.toml:3:18: web.header_timeout: must be longer than zero",
            "test.toml:4:15: web.max_clients: 0 is out of range (1 to 4294967295)",
            "test.toml:6:1: web.colour: unknown field `colour`, expected one of `enabled`, `listen`, `allow`, `max_clients`, `max_per_source`, `hosts`, `header_timeout`, `history`, `activity`, `closed`, `admin_token_file`",
        ]
    );
}

/// The control socket's path is absolute (a daemon's working directory is
/// not the shell's) and fits a Unix socket address; "" serves none.
#[test]
fn a_control_socket_must_be_an_absolute_path_that_fits() {
    assert_eq!(
        problems("[daemon]\ncontrol_socket = \"run/pinetd.sock\"\n"),
        [
            "test.toml:2:18: daemon.control_socket: \"run/pinetd.sock\" is not an absolute path (like \"/run/pinetd/control.sock\"; \"\" for none)"
        ]
    );
    let long = format!("/{}", "d".repeat(120));
    assert_eq!(
        problems(&format!("[daemon]\ncontrol_socket = \"{long}\"\n")),
        [
            "test.toml:2:18: daemon.control_socket: the path is 121 bytes long: a Unix socket's path is at most 107"
        ]
    );
    let daemon = |text: &str| Config::parse(text, "t.toml").unwrap().daemon;
    assert_eq!(
        daemon("[daemon]\ncontrol_socket = \"\"\n").control_socket(),
        None
    );
    assert_eq!(
        daemon("[daemon]\ncontrol_socket = \"/tmp/p.sock\"\n").control_socket(),
        Some("/tmp/p.sock".into())
    );
}
