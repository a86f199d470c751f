//! The services tried the way users try them: netcat, socat and the course's
//! own Python client. Each test skips, saying so, when its program is missing;
//! CI installs them all.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{config, start};

/// Runs `program args` with `input` on stdin; None (after saying so) if it is not installed.
fn run(program: &str, args: &[&str], input: &[u8]) -> Option<(i32, String)> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            common::skip(format_args!("{program} is not installed"));
            return None;
        }
        Err(e) => panic!("{program}: {e}"),
    };
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Some((out.status.code().unwrap_or(-1), stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_echo_with_netcat_socat_and_the_course_client() {
    let daemon = start(config(|_| {}));
    let port = daemon.addrs("udp_echo")[0].port().to_string();
    let blocking = tokio::task::spawn_blocking(move || {
        if let Some((code, out)) = run("nc", &["-u", "-w1", "127.0.0.1", &port], b"hello from nc\n")
        {
            assert_eq!((code, out.as_str()), (0, "hello from nc\n"));
        }
        let target = format!("UDP:127.0.0.1:{port}");
        if let Some((code, out)) = run("socat", &["-t1", "-", &target], "안녕 socat\n".as_bytes())
        {
            assert_eq!((code, out.as_str()), (0, "안녕 socat\n"));
        }
        let client = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/course_udp_client.py"
        );
        if let Some((code, out)) = run("python3", &[client, &port], b"") {
            assert_eq!(
                (code, out.as_str()),
                (0, "Message from Server b'Hello UDP Listener'\n")
            );
        }
    });
    blocking.await.unwrap();
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_echo_with_netcat_socat_and_the_course_client() {
    let daemon = start(config(|_| {}));
    let port = daemon.addrs("json_echo")[0].port().to_string();
    let blocking = tokio::task::spawn_blocking(move || {
        let input = "{\"name\": \"jung\", \"count\": 3}\n[1, 2]".as_bytes();
        let want = "{\"name\":\"jung\",\"count\":3}\n[1,2]\n";
        if let Some((code, out)) = run("nc", &["-q1", "127.0.0.1", &port], input) {
            assert_eq!((code, out.as_str()), (0, want));
        }
        let target = format!("TCP:127.0.0.1:{port}");
        if let Some((code, out)) = run("socat", &["-t2", "-", &target], input) {
            assert_eq!((code, out.as_str()), (0, want));
        }
        let client = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/course_json_client.py"
        );
        if let Some((code, out)) = run("python3", &[client, &port], b"") {
            assert_eq!(
                (code, out.as_str()),
                (0, "Received: {'name': 'jung', 'count': 3}\n")
            );
        }
    });
    blocking.await.unwrap();
    daemon.shutdown().await;
}
