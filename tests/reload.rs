//! After a reload, the daemon describes itself as it now is: the announcer's
//! ttl, the services and their ports, under the same instance id, in both
//! the announcement and the discovery reply.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ask, config, start};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use pinetd::describe::Description;
use tokio::net::UdpSocket;
use tokio::time::timeout;

fn described(payload: &[u8]) -> Description {
    Description::parse(payload).unwrap_or_else(|| panic!("a description: {payload:?}"))
}

/// The discovery responder's answer to one probe.
async fn probe(socket: &UdpSocket, discovery: SocketAddr) -> Description {
    described(
        &ask(socket, discovery, b"?")
            .await
            .expect("a discovery reply"),
    )
}

/// The next announcement heard whose ttl is `ttl`: those sent before the
/// reload may still be on their way.
async fn announcement_with_ttl(listener: &UdpSocket, ttl: u64) -> Description {
    let mut buf = vec![0u8; 65_536];
    let wait = async {
        loop {
            let (n, _) = listener.recv_from(&mut buf).await.expect("recv");
            let description = described(&buf[..n]);
            if description.ttl == ttl {
                return description;
            }
        }
    };
    timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no announcement with ttl {ttl}"))
}

/// A daemon that announces to `listener` and answers probes from `prober`.
struct Watched {
    daemon: Daemon,
    first: Config,
    listener: UdpSocket,
    prober: UdpSocket,
    discovery: SocketAddr,
}

async fn watched() -> Watched {
    let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = announcing_to(listener.local_addr().unwrap());
    let daemon = start(first.clone());
    Watched {
        discovery: daemon.addrs("discovery")[0],
        daemon,
        first,
        listener,
        prober: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    }
}

fn announcing_to(listener: SocketAddr) -> Config {
    config(|c| {
        c.announcer.enabled = true;
        c.announcer.to = vec![listener];
        c.announcer.interval = Duration::from_secs(1);
        c.discovery.enabled = true;
        c.discovery.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.discovery.max_delay = Duration::ZERO;
        c.discovery.rate_limit = 0;
    })
}

#[tokio::test]
async fn a_reload_of_the_interval_changes_the_ttl_everywhere() {
    let Watched {
        mut daemon,
        first,
        listener,
        prober,
        discovery,
    } = watched().await;

    let before = probe(&prober, discovery).await;
    assert_eq!(before.ttl, 3);
    assert_eq!(
        announcement_with_ttl(&listener, 3).await.instance,
        before.instance
    );

    let mut second = first.clone();
    second.announcer.interval = Duration::from_secs(4);
    let changed = daemon.reload(second).await;
    assert!(changed.contains(&"discovery"), "{changed:?}");

    let after = probe(&prober, discovery).await;
    assert_eq!(after.ttl, 12, "the reply carries the announcer's new ttl");
    assert_eq!(after.instance, before.instance);
    assert_eq!(daemon.addrs("discovery"), [discovery], "still on its port");
    let announced = announcement_with_ttl(&listener, 12).await;
    assert_eq!(announced.instance, before.instance);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reload_of_the_services_changes_what_both_describe() {
    let Watched {
        mut daemon,
        first,
        listener,
        prober,
        discovery,
    } = watched().await;
    let before = probe(&prober, discovery).await;
    let udp_echo = daemon.addrs("udp_echo")[0].port();
    assert_eq!(
        before.services.get("json_echo"),
        Some(&daemon.addrs("json_echo")[0].port())
    );
    assert_eq!(before.services.get("udp_echo"), Some(&udp_echo));

    // JSON echo goes, chat comes, and the announcer's interval changes so
    // its next announcements can be told from those already sent.
    let mut second = first.clone();
    second.json_echo.enabled = false;
    second.chat.enabled = true;
    second.announcer.interval = Duration::from_secs(2);
    daemon.reload(second).await;
    let chat = daemon.addrs("chat")[0].port();

    for description in [
        probe(&prober, discovery).await,
        announcement_with_ttl(&listener, 6).await,
    ] {
        assert_eq!(description.instance, before.instance);
        assert_eq!(description.services.get("json_echo"), None);
        assert_eq!(description.services.get("chat"), Some(&chat));
        assert_eq!(description.services.get("udp_echo"), Some(&udp_echo));
        assert_eq!(
            description.services.get("discovery"),
            Some(&discovery.port())
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_discovery_table_that_cannot_bind_keeps_its_port_but_takes_the_new_ttl() {
    let Watched {
        mut daemon,
        first,
        prober,
        discovery,
        ..
    } = watched().await;
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut second = first.clone();
    second.announcer.interval = Duration::from_secs(4);
    second.discovery.listen = vec![taken.local_addr().unwrap()];
    daemon.reload(second).await;
    assert_eq!(daemon.addrs("discovery"), [discovery], "kept where it was");
    assert_eq!(probe(&prober, discovery).await.ttl, 12);
    daemon.shutdown().await;
}

/// A reload that moves chat from 0.0.0.0:P to 127.0.0.1:P (the same port,
/// an overlapping address) closes the old listener before binding the new
/// one: it used to fail with "Address already in use" and keep the old.
/// In a network namespace of its own (as root), so 0.0.0.0 is no LAN.
#[test]
fn chat_moves_from_every_address_to_loopback_on_the_same_port() {
    let Some(prefix) = common::netns::prefix() else {
        return;
    };
    let ns = common::netns::Netns::add(format!("{prefix}-reload"));
    ns.enter(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let everywhere = config(|c| {
                c.chat.enabled = true;
                c.chat.listen = vec!["0.0.0.0:9999".parse().unwrap()];
            });
            let mut daemon = start(everywhere.clone());
            let mut loopback = everywhere.clone();
            loopback.chat.listen = vec!["127.0.0.1:9999".parse().unwrap()];
            daemon.reload(loopback).await;
            assert_eq!(daemon.addrs("chat"), ["127.0.0.1:9999".parse().unwrap()]);
            assert_eq!(
                daemon.config().chat.listen,
                ["127.0.0.1:9999".parse::<SocketAddr>().unwrap()],
                "the new table runs, not the old one kept"
            );
            tokio::net::TcpStream::connect("127.0.0.1:9999")
                .await
                .expect("chat on loopback");
            // And back.
            daemon.reload(everywhere).await;
            assert_eq!(daemon.addrs("chat"), ["0.0.0.0:9999".parse().unwrap()]);
            daemon.shutdown().await;
        });
    });
}
