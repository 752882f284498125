//! The `gen-stage demo` command, run as a user would, with small settings.

use std::process::Command;

fn gen_stage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gen-stage"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs the demo, checks that it succeeded, and returns what it printed.
fn demo(args: &[&str]) -> String {
    let output = gen_stage(&[&["demo"], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// 300 jobs, 3 processors, at most 5 jobs each at once, requests of about 2 ms.
const SMALL: [&str; 10] = [
    "--jobs",
    "300",
    "--processors",
    "3",
    "--max-demand",
    "5",
    "--task-ms",
    "2",
    "--seed",
    "7",
];

/// The number after `label` on the summary line that starts with it.
fn summary_number(stdout: &str, label: &str) -> f64 {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
}

#[test]
fn the_demo_writes_and_acks_every_job_exactly_once_and_summarises() {
    let stdout = demo(&SMALL);
    assert!(stdout.contains("jobs:             300"), "{stdout}");
    assert!(stdout.contains("acked:            300"), "{stdout}");
    assert!(
        stdout.contains("queue:            0 in flight, 0 stray outcomes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("exactly once:     ok (300 jobs, each written once)"),
        "{stdout}"
    );
    // 3 processors holding 5 jobs each at most.
    let peak = summary_number(&stdout, "peak in hand:");
    assert!((1.0..=15.0).contains(&peak), "peak in hand {peak}");
    let busy = summary_number(&stdout, "processors busy:");
    assert!((0.0..=100.0).contains(&busy), "processors busy {busy}%");
    // Without a terminal the view prints lines instead of redrawing.
    assert!(
        stdout.lines().any(|line| line.starts_with("t=")),
        "{stdout}"
    );
}

#[test]
fn failed_first_attempts_are_retried_and_every_job_still_ends_acked_once() {
    let stdout = demo(&[&SMALL[..], &["--fail-percent", "50"]].concat());
    let retried = summary_number(&stdout, "retried:");
    // About half of 300: a seed gives the same jobs every run.
    assert!((100.0..=200.0).contains(&retried), "retried {retried}");
    assert!(stdout.contains("acked:            300"), "{stdout}");
    assert!(stdout.contains("dead-lettered:    0"), "{stdout}");
    assert!(
        stdout.contains("exactly once:     ok (300 jobs, each written once)"),
        "{stdout}"
    );
    let none = demo(&[&SMALL[..], &["--fail-percent", "0"]].concat());
    assert_eq!(summary_number(&none, "retried:"), 0.0);
}

#[test]
fn a_demo_with_fewer_jobs_than_processors_still_runs_every_job() {
    for (jobs, processors) in [("1", "4"), ("5", "4"), ("10", "64")] {
        let stdout = demo(&["--jobs", jobs, "--processors", processors, "--task-ms", "1"]);
        let expected = format!("exactly once:     ok ({jobs} jobs, each written once)");
        assert!(stdout.contains(&expected), "{stdout}");
    }
}

#[test]
fn the_last_frame_shows_every_job_done_and_nothing_in_hand() {
    let stdout = demo(&SMALL);
    let last_frame = stdout
        .lines()
        .rfind(|line| line.starts_with("t="))
        .expect("a frame");
    assert!(last_frame.contains(" done    300/300 "), "{last_frame}");
    assert!(last_frame.contains(" acked 300 "), "{last_frame}");
    assert!(last_frame.contains(" in hand 0 "), "{last_frame}");
}

#[test]
fn a_rate_limit_is_shown_and_holds_the_jobs_back() {
    // 200 jobs at 100 per second: two windows at least, whatever the machine.
    let stdout = demo(&["--jobs", "200", "--task-ms", "1", "--rate-limit", "100"]);
    assert!(
        stdout.contains("exactly once:     ok (200 jobs, each written once)"),
        "{stdout}"
    );
    let elapsed = summary_number(&stdout, "elapsed:");
    assert!(elapsed >= 1.0, "200 jobs at 100 per second in {elapsed} s");
    assert!(
        stdout
            .lines()
            .filter(|line| line.starts_with("t="))
            .all(|line| line.contains(" rate limit 100/1s ")),
        "{stdout}"
    );
}

#[test]
fn bad_values_are_refused_with_a_clear_error() {
    let output = gen_stage(&["demo", "--jobs", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--jobs"), "{stderr}");
    let output = gen_stage(&["demo", "--processors", "many"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value"));
}

#[test]
fn help_lists_the_options() {
    let output = gen_stage(&["demo", "--help"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--jobs",
        "--processors",
        "--max-demand",
        "--task-ms",
        "--batch-size",
        "--fail-percent",
        "--rate-limit",
        "--seed",
    ] {
        assert!(stdout.contains(option), "{option} missing from {stdout}");
    }
    // What the view's columns mean.
    for column in ["asked ", "owed ", "buffered ", "in hand ", "busy "] {
        assert!(
            stdout
                .lines()
                .any(|line| line.trim_start().starts_with(column)),
            "{column:?} not explained in {stdout}"
        );
    }
}

#[test]
fn a_reader_that_stops_reading_ends_the_demo_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_gen-stage"))
        .args(["demo", "--jobs", "50", "--task-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Read the first line, as `gen-stage demo | head -1` would, then close the pipe:
    // every line after it finds no reader.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("a first line");
    assert!(first.starts_with("gen-stage demo:"), "{first}");
    let output = child.wait_with_output().expect("the demo ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The demo through the broker `source` (whose URL is in `url_variable`): every job
/// written and acked once, what was made for the run removed after it. Skipped with
/// a notice when the server is unreachable, unless `GEN_STAGE_REQUIRE_BROKERS=1`.
#[cfg(any(
    feature = "postgres",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis"
))]
fn demo_through(source: &str, url_variable: &str) {
    let output = gen_stage(&[&["demo", "--source", source], &SMALL[..]].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success()
        && stderr.contains(url_variable)
        && std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() != Ok("1")
    {
        eprintln!("skipped: {source} is unreachable: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("acked:            300"), "{stdout}");
    assert!(
        stdout.contains("queue:            0 in flight, 0 stray outcomes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("exactly once:     ok (300 jobs, each written once)"),
        "{stdout}"
    );
}

/// The same demo through a PostgreSQL table (the CLI's `postgres` feature).
#[cfg(feature = "postgres")]
#[test]
fn the_demo_runs_through_postgres_and_leaves_nothing_behind() {
    demo_through("postgres", "GEN_STAGE_POSTGRES_URL");
}

/// The same demo through a NATS JetStream stream (the CLI's `nats` feature).
#[cfg(feature = "nats")]
#[test]
fn the_demo_runs_through_nats_and_leaves_nothing_behind() {
    demo_through("nats", "GEN_STAGE_NATS_URL");
}

/// The same demo through a RabbitMQ queue (the CLI's `rabbitmq` feature).
#[cfg(feature = "rabbitmq")]
#[test]
fn the_demo_runs_through_rabbitmq_and_leaves_nothing_behind() {
    demo_through("rabbitmq", "GEN_STAGE_AMQP_URL");
}

/// The same demo through a Redis stream (the CLI's `redis` feature).
#[cfg(feature = "redis")]
#[test]
fn the_demo_runs_through_redis_and_leaves_nothing_behind() {
    demo_through("redis", "GEN_STAGE_REDIS_URL");
}

/// Runs the demo with `args`, sends it SIGTERM once it shows progress, and returns
/// what it printed after it drained and exited.
#[cfg(unix)]
fn interrupted_demo(args: &[&str]) -> std::process::Output {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_gen-stage"))
        .args([&["demo"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut printed = String::new();
    // Without a terminal the view prints a line a second, each starting with `t=`.
    loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("the demo's output");
        assert!(
            read > 0,
            "the demo ended before it showed progress: {printed}"
        );
        printed.push_str(&line);
        if line.starts_with("t=") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    stdout
        .read_to_string(&mut printed)
        .expect("the rest of its output");
    let mut output = child.wait_with_output().expect("the demo ends");
    output.stdout = printed.into_bytes();
    output
}

/// SIGTERM drains the demo: it exits 0, and what it acked, what it left in the queue
/// and the jobs add up, none in flight.
#[cfg(unix)]
#[test]
fn sigterm_drains_the_demo_and_the_summary_adds_up() {
    let output = interrupted_demo(&["--jobs", "20000", "--task-ms", "20", "--seed", "3"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let acked = summary_number(&stdout, "acked:");
    let dead = summary_number(&stdout, "dead-lettered:");
    let left = summary_number(&stdout, "interrupted:      drained at a signal;");
    assert!(acked > 0.0 && left > 0.0, "{stdout}");
    assert_eq!(acked + dead + left, 20000.0, "{stdout}");
    assert!(
        stdout.contains("queue:            0 in flight, 0 stray outcomes"),
        "{stdout}"
    );
    assert!(stdout.contains("exactly once:     ok so far"), "{stdout}");
}

/// SIGTERM drains the demo through RabbitMQ, which keeps its queue (`--keep`): the
/// broker's own count (`rabbitmqctl`) shows what the summary says was left, ready,
/// and nothing unacknowledged.
#[cfg(all(unix, feature = "rabbitmq"))]
#[test]
fn sigterm_drains_the_rabbitmq_demo_and_the_broker_holds_what_the_summary_left() {
    let output = interrupted_demo(&[
        "--source",
        "rabbitmq",
        "--keep",
        "--jobs",
        "20000",
        "--task-ms",
        "20",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success()
        && stderr.contains("GEN_STAGE_AMQP_URL")
        && std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() != Ok("1")
    {
        eprintln!("skipped: RabbitMQ is unreachable: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let queue = stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("kept:             RabbitMQ queues ")
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kept queue in {stdout}"))
        .to_owned();
    let left = summary_number(&stdout, "interrupted:      drained at a signal;");
    let listed = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for name in [queue.clone(), format!("{queue}.dead")] {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_queue", &name])
            .stdin(std::process::Stdio::null())
            .output();
    }
    let counts: Vec<f64> = listed
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == queue).then(|| fields.filter_map(|n| n.parse().ok()).collect())
        })
        .unwrap_or_else(|| panic!("no queue {queue} on the broker: {listed}"));
    assert_eq!(
        counts,
        [left, 0.0],
        "ready and unacked at the broker\n{stdout}"
    );
}

/// SIGTERM drains the demo through Redis, which keeps its stream (`--keep`): the
/// server's own view shows what the summary says was left (unread, waiting to be
/// retried, or released and claimable), and no entry held by the demo's consumer.
#[cfg(all(unix, feature = "redis"))]
#[test]
fn sigterm_drains_the_redis_demo_and_the_server_holds_what_the_summary_left() {
    use gen_stage_redis::redis;

    let output = interrupted_demo(&[
        "--source",
        "redis",
        "--keep",
        "--jobs",
        "20000",
        "--task-ms",
        "20",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success()
        && stderr.contains("GEN_STAGE_REDIS_URL")
        && std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() != Ok("1")
    {
        eprintln!("skipped: Redis is unreachable: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let stream = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("kept:             Redis stream "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kept stream in {stdout}"))
        .to_owned();
    let left = summary_number(&stdout, "interrupted:      drained at a signal;");
    assert!(left > 0.0, "interrupted before the end: {stdout}");
    let url = std::env::var("GEN_STAGE_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut connection = redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .expect("Redis answers");
    let (pending, groups, delayed): (redis::Value, redis::streams::StreamInfoGroupsReply, u64) =
        redis::pipe()
            .cmd("XPENDING")
            .arg(&stream)
            .arg("demo")
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .cmd("ZCARD")
            .arg(format!("{stream}:delayed"))
            .query(&mut connection)
            .expect("the server's view");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{stream}*"))
        .query(&mut connection)
        .expect("KEYS");
    let _: u64 = redis::cmd("DEL")
        .arg(&keys)
        .query(&mut connection)
        .expect("DEL");
    let per_consumer: Vec<(String, u64)> = match pending {
        redis::Value::Array(summary) => summary
            .into_iter()
            .nth(3)
            .and_then(|consumers| redis::from_redis_value::<Vec<(String, u64)>>(consumers).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    assert!(
        per_consumer
            .iter()
            .all(|(consumer, _)| consumer == "gen-stage-released"),
        "the demo's consumer holds nothing: {per_consumer:?}"
    );
    let released: u64 = per_consumer.iter().map(|(_, count)| count).sum();
    let lag = groups.groups[0].lag.expect("the group's lag") as u64;
    assert_eq!(
        (lag + delayed + released) as f64,
        left,
        "unread {lag}, waiting retries {delayed}, released {released}\n{stdout}"
    );
}
