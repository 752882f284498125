//! The `gen-stage` command.

mod bench;
#[cfg(any(
    feature = "postgres",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis"
))]
mod broker_servers;
mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::print_line;

/// gen-stage: stages with back-pressure for tokio.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a demo pipeline (gen-stage-pipeline: an in-memory queue of jobs ->
    /// processors -> a batcher -> acks) with a live view of each stage, then checks
    /// that every job was written exactly once and acked.
    Demo(DemoArgs),
    /// Runs the benchmark suite: each scenario on gen-stage and hand-written with tokio
    /// channels, alternating, several runs each.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = demo::LEGEND)]
struct DemoArgs {
    /// How many jobs the queue holds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    jobs: u64,
    /// How many processors share the jobs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    processors: u64,
    /// The most jobs a processor holds at once (its max_demand): their requests run
    /// side by side.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_demand: u64,
    /// The average time of a job's request, in milliseconds (each takes 0.5 to 1.5
    /// times it); writing a batch takes a fifth of it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    task_ms: u64,
    /// The most jobs the batcher puts in one batch (a batch also closes 200 ms after
    /// its first job).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// The share of jobs, in percent, whose first attempt fails: they are retried
    /// after a backoff and then succeed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=100))]
    fail_percent: u64,
    /// At most this many jobs taken in per second (none if not given).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate_limit: Option<u64>,
    /// Seed of the job generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the jobs wait: in memory, or in a real broker (built with the broker's
    /// cargo feature: `--features postgres` with GEN_STAGE_POSTGRES_URL, `--features nats`
    /// with GEN_STAGE_NATS_URL, `--features rabbitmq` with GEN_STAGE_AMQP_URL,
    /// `--features redis` with GEN_STAGE_REDIS_URL).
    #[arg(long, value_enum, default_value_t = demo::SourceKind::Memory)]
    source: demo::SourceKind,
    /// Keep what the run made on the broker (its table, stream or queue, with the
    /// jobs a signal left in it) rather than removing it; the summary names it.
    /// SIGTERM or Ctrl-C drains the run: what the pipeline holds is finished and
    /// acked, the rest stays in the queue.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// A reduced size that runs in under a minute.
    #[arg(long)]
    quick: bool,
    /// Runs of each side per scenario (default 5, or 3 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: Option<u64>,
    /// Also write the results as JSON to this file ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only this scenario, given by its name, or the scenarios whose name contains this
    /// (repeatable).
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Run one side alone, to profile it (the ratio is then left out).
    #[arg(long, value_enum, default_value_t = bench::Sides::Both)]
    sides: bench::Sides,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Bench(args) => runtime.block_on(bench_command(args)),
        Command::Demo(args) => runtime.block_on(demo_command(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench_command(args: BenchArgs) -> Result<(), gen_stage::BoxError> {
    let plan = bench::Plan {
        runs: args
            .runs
            .map_or(if args.quick { 3 } else { 5 }, |runs| runs as usize),
        shrink: if args.quick { 20 } else { 1 },
        only: args.only,
        sides: args.sides,
    };
    plan.check()?;
    // A path that cannot be written fails now, not after the whole suite.
    let json_file = match &args.json {
        Some(path) if path.as_os_str() != "-" => Some(
            std::fs::File::create(path)
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?,
        ),
        _ => None,
    };
    print_line(format_args!(
        "gen-stage benchmarks: {} runs per side, {} size, {} worker threads",
        plan.runs,
        if args.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    print_line(bench::report::HEADER);
    let report = bench::run(&plan, |row| print_line(row.line())).await?;
    let traffic: Vec<String> = report
        .rows
        .iter()
        .filter_map(|row| row.traffic_line())
        .collect();
    if !traffic.is_empty() {
        print_line(bench::report::TRAFFIC_HEADER);
        for line in traffic {
            print_line(line);
        }
        print_line(bench::report::TRAFFIC_NOTE);
    }
    if report
        .rows
        .iter()
        .any(|row| row.scenario.starts_with("credit_"))
    {
        print_line(bench::report::CREDIT_NOTE);
    }
    if report
        .rows
        .iter()
        .any(|row| row.scenario.ends_with("_wide"))
    {
        print_line(bench::report::WIDE_NOTE);
    }
    if let Some(path) = args.json {
        let json = report.json();
        match json_file {
            Some(mut file) => {
                use std::io::Write;
                writeln!(file, "{json}")
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                print_line(format_args!("JSON written to {}", path.display()));
            }
            None => print_line(&json),
        }
    }
    Ok(())
}

async fn demo_command(args: DemoArgs) -> Result<(), gen_stage::BoxError> {
    let settings = demo::Settings {
        jobs: args.jobs,
        processors: args.processors as usize,
        max_demand: args.max_demand as usize,
        task: std::time::Duration::from_millis(args.task_ms),
        batch_size: args.batch_size as usize,
        fail_percent: args.fail_percent,
        rate_limit: args.rate_limit,
        seed: args.seed,
        source: args.source,
        keep: args.keep,
    };
    let summary = demo::run(settings).await?;
    summary.print();
    if summary.passed() {
        Ok(())
    } else {
        Err("some jobs were not written and acked exactly once".into())
    }
}
