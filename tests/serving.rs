//! Proves the serving options a real lab needs: HTTPS with a certificate (browsers only give
//! camera access on https or localhost), a fixed UDP port range for media (firewalls), and
//! configuration precedence (flags and environment over the config file).

mod common;

use std::sync::Arc;

use common::*;
use exphub::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A self-signed certificate for `localhost` in `dir`: a config serving HTTPS with it, and a
/// client connector that trusts it.
fn tls_setup(dir: &TempDir) -> (Config, tokio_rustls::TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = Config::for_tests(dir.path(), PASSWORD);
    cfg.tls = Some((cert, key));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (cfg, tokio_rustls::TlsConnector::from(Arc::new(client_cfg)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_given_certificate() {
    init_tracing();
    let dir = TempDir::new("tls");
    let (cfg, connector) = tls_setup(&dir);
    let server = exphub::start(cfg).await.expect("starts with TLS");

    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake with the configured certificate");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    tls.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#"{"status":"ok"}"#), "{resp}");

    // Plain HTTP on the TLS port gets no answer.
    let plain = exphub_client::get(&format!("http://{}", server.addr), "/healthz").await;
    assert!(plain.is_err() || plain.unwrap().0 != 200);
    server.shutdown().await;
}

/// The HTTPS path has the same limits: a client that never starts its handshake, and one
/// that shakes hands but never sends a request, are both closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_are_bounded_in_time_too() {
    init_tracing();
    let dir = TempDir::new("tls-limits");
    let (mut cfg, connector) = tls_setup(&dir);
    cfg.http.header_timeout = std::time::Duration::from_secs(1);
    let server = exphub::start(cfg).await.expect("starts with TLS");
    let limit = std::time::Duration::from_secs(20);
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut idle = connector.connect(name, tcp).await.expect("handshake");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(limit, silent.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let n = tokio::time::timeout(limit, idle.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_uses_the_configured_udp_port_range() {
    init_tracing();
    let dir = TempDir::new("ports");
    write_session(dir.path(), &session_json(SESSION));
    let mut cfg = Config::for_tests(dir.path(), PASSWORD);
    let range = 47_311..=47_330;
    cfg.rtc.port_range = Some(range.clone());
    let server = exphub::start(cfg).await.unwrap();
    let base = format!("http://{}", server.addr);
    let mut exp = experimenter(&base).await;
    request(&mut exp, "CREATE_EXPERIMENT", serde_json::json!({"session_id": SESSION}), "SUCCESS").await;
    let mut ports = vec![];
    let mut clients = vec![];
    for pid in &PARTICIPANTS[..2] {
        let p = participant(&base, pid, Default::default()).await;
        let sdp = p.offer_response["data"]["sdp"].as_str().unwrap().to_owned();
        for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
            let port: u16 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
            ports.push(port);
        }
        clients.push(p);
    }
    assert!(!ports.is_empty());
    assert!(ports.iter().all(|p| range.contains(p)), "candidate ports {ports:?} outside {range:?}");
    for c in clients {
        c.close().await;
    }
    exp.close().await;
    server.shutdown().await;
}

#[test]
fn flags_and_environment_beat_the_config_file() {
    let dir = TempDir::new("cfg");
    let file = dir.path().join("config.json");
    // SynthARium's config.json, as its users have it.
    std::fs::write(
        &file,
        r#"{"experimenter_password": "from-file", "host": "127.0.0.1", "port": 8080, "environment": "dev",
            "serve_frontend": true, "https": false, "log": "INFO", "log_dependencies": "WARNING",
            "ping_subprocesses": 0.0, "experimenter_multiprocessing": false, "participant_multiprocessing": true}"#,
    )
    .unwrap();
    let args = exphub::config::ServeArgs { config: Some(file.clone()), port: Some(9999), ..Default::default() };
    let cfg = Config::resolve(&args).unwrap();
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(cfg.experimenter_password, "from-file");
    let args =
        exphub::config::ServeArgs { config: Some(file), udp_ports: Some("60000-59999".into()), ..Default::default() };
    assert!(Config::resolve(&args).unwrap_err().to_string().contains("60000-59999"));
}

/// `Server::failed` is how `exphub serve` learns that the server stopped working on its own
/// (it then exits non-zero for a supervisor to restart it); a healthy server never resolves
/// it, and shuts down normally. (That a dying control task resolves it is tested inside the
/// crate, with a hook that makes the task panic.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_server_does_not_report_a_failure() {
    init_tracing();
    let dir = TempDir::new("failed");
    let mut server = exphub::start(Config::for_tests(dir.path(), PASSWORD)).await.unwrap();
    let base = format!("http://{}", server.addr);
    let failed: Result<exphub::ServerError, _> =
        tokio::time::timeout(std::time::Duration::from_millis(500), server.failed()).await;
    assert!(failed.is_err(), "no failure: {failed:?}");
    assert_eq!(exphub_client::get(&base, "/healthz").await.unwrap().0, 200);
    server.shutdown().await;
}
