//! Credentials: a private NATS server of the test's own (on a free port, with a user
//! and a password, JetStream in a temporary directory) takes the right ones from the
//! URL and refuses wrong ones with a typed error. The shared server is not touched.

use std::process::Stdio;
use std::time::Duration;

use gen_stage_nats::{ConnectError, JetStreamOptions, JetStreamSource};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_in_the_url_connect_and_wrong_ones_are_refused() {
    let binary = std::env::var("GEN_STAGE_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        free.local_addr().expect("an address").port()
    };
    let store = std::env::temp_dir().join(format!("gsn-credentials-{}", std::process::id()));
    let started = Command::new(&binary)
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "--user",
            "ada",
        ])
        .args(["--pass", "lovelace", "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut server = match started {
        Ok(server) => server,
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("{binary} does not start and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
        }
        Err(error) => {
            eprintln!("skipped: {binary} does not start ({error}); set GEN_STAGE_NATS_SERVER");
            return;
        }
    };
    let options = || JetStreamOptions::new("CREDENTIALS", "worker");
    let right = format!("nats://ada:lovelace@127.0.0.1:{port}");
    // The server is up once it accepts the right credentials.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let source = loop {
        match JetStreamSource::connect_url(&right, options()).await {
            Ok(source) => break source,
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(source.is_ready());
    let wrong = format!("nats://ada:babbage@127.0.0.1:{port}");
    let refused = JetStreamSource::connect_url(&wrong, options()).await;
    assert!(
        matches!(refused, Err(ConnectError::Connect(_))),
        "{refused:?}"
    );
    drop(source);
    server.start_kill().expect("stopped");
    server.wait().await.expect("gone");
    let _ = std::fs::remove_dir_all(&store);
}
