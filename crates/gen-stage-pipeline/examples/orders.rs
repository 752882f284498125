//! An acknowledged pipeline, end to end: orders from an in-memory queue are parsed by
//! four processors, written out in batches per currency, and the bad ones retried, then
//! dead-lettered. It drains on Ctrl-C or SIGTERM, or once every order is settled, and
//! prints the report.
//!
//! ```sh
//! cargo run -p gen-stage-pipeline --example orders
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, Pipeline, ProcessorContext,
    ProcessorOptions, RetryPolicy,
};

/// The callbacks, and what they share: where the batches are written.
#[derive(Default)]
struct Orders {
    /// Written batches: the currency and the amounts. A database in real life.
    ledger: Mutex<Vec<(String, Vec<u64>)>>,
}

impl Handler for Orders {
    /// "<amount> <currency>", as the queue holds it.
    type Data = String;

    async fn handle_message(
        &self,
        message: &mut Message<String>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let (amount, currency) = message
            .data()
            .split_once(' ')
            .ok_or("an order needs an amount and a currency")?;
        let amount: u64 = amount.parse()?;
        let currency = currency.to_owned();
        message.set_data(amount.to_string());
        // One batch per currency, each on its own timeout.
        message.put_batch_key(currency);
        message.put_batcher("ledger");
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<String>) -> BatchOutcome<String> {
        let currency = batch
            .info()
            .batch_key
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let amounts = batch
            .data()
            .filter_map(|amount| amount.parse().ok())
            .collect();
        self.ledger
            .lock()
            .map_err(|_| "the ledger is poisoned")
            .map(|mut ledger| ledger.push((currency, amounts)))
            .unwrap_or_else(|error| eprintln!("{error}"));
        batch.done()
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let queue = MemoryQueue::new();
    for n in 0..1_000_u64 {
        let currency = ["EUR", "USD", "JPY"][(n % 3) as usize];
        let order = if n % 97 == 0 {
            format!("lots {currency}") // a bad order: retried, then dead-lettered
        } else {
            format!("{} {currency}", n * 10)
        };
        queue.push(order);
    }

    let orders = Arc::new(Orders::default());
    let source = queue.clone();
    let pipeline = Pipeline::builder(Arc::clone(&orders))
        .name("orders")
        .producer(move || source.producer())
        .processors(ProcessorOptions::new().concurrency(4))
        .batcher(
            "ledger",
            BatcherOptions::new()
                .batch_size(50)
                .batch_timeout(Duration::from_millis(100)),
        )
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .first_delay(Duration::from_millis(20)),
        )
        .start()
        .await?;

    // Listening from now on: a signal during the run drains at once.
    let on_signal = pipeline.drain_on_shutdown_signal(Duration::from_secs(10))?;
    println!("running: press Ctrl-C to drain early");
    let report = tokio::select! {
        report = on_signal => report,
        () = queue.settled() => pipeline.drain(Duration::from_secs(10)).await,
    };

    println!("{report}");
    let ledger = orders.ledger.lock().map_err(|_| "the ledger is poisoned")?;
    let written: usize = ledger.iter().map(|(_, amounts)| amounts.len()).sum();
    println!("{} batches written, {written} orders", ledger.len());
    for dead in queue.dead_letters() {
        let reason = dead.failure.map(|f| f.to_string()).unwrap_or_default();
        println!(
            "dead letter {}: {:?} after {} attempts ({reason})",
            dead.id, dead.data, dead.attempts
        );
    }
    Ok(())
}
