//! How fast a stage runtime with GenStage's shape can be: the lower bound that issue
//! 18's targets are measured against, found by writing it as lean as it can be.
//!
//! `lean-model N` runs N demand round trips at `max_demand` 1 (the bench's
//! `credit_md1`) between a producer and a consumer with what every stage runtime of
//! this shape has: a mailbox of envelopes as large as the library's (48 bytes), async
//! hooks through traits, a subscription table, demand accounting on both sides, a
//! stop and a request flag checked per message, counters other threads may read.
//! `lean-model N baseline` runs the bench's hand-written protocol in the same program.
//! Compare instructions with `valgrind --tool=callgrind` (subtract a run with N = 1).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[allow(dead_code)]
enum Envelope {
    Events { tag: usize, events: Vec<u64> },
    Ask { tag: usize, demand: usize },
    Cancel { tag: usize, reason: Arc<str> },
    Other(Box<dyn FnOnce() + Send>),
}

trait Producer: Send + 'static {
    fn handle_demand(
        &mut self,
        demand: usize,
    ) -> impl Future<Output = Result<Vec<u64>, BoxError>> + Send;
}
trait Consumer: Send + 'static {
    fn handle_events(
        &mut self,
        events: Vec<u64>,
        tag: usize,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

struct Stats {
    deliveries: AtomicU64,
    asks: AtomicU64,
    demand: AtomicU64,
}
struct Life {
    requests: AtomicBool,
}

struct Downstream {
    mailbox: mpsc::UnboundedSender<Envelope>,
    demand: usize,
    remote_tag: usize,
}
struct Upstream {
    mailbox: mpsc::UnboundedSender<Envelope>,
    pending: usize,
    max: usize,
    min: usize,
    remote_tag: usize,
}

async fn run_producer<P: Producer>(
    mut stage: P,
    mut mailbox: mpsc::UnboundedReceiver<Envelope>,
    mut consumers: Vec<Downstream>,
    stats: Arc<Stats>,
    life: Arc<Life>,
) {
    let mut stop = false;
    // Both loops' heads are written out: shared as one `async fn`, they cost 90
    // instructions more per round trip (BENCHMARKS.md, issue 18, third session).
    loop {
        if life.requests.load(Ordering::Acquire) {
            stop = true;
        }
        if stop {
            return;
        }
        let Some(envelope) = std::future::poll_fn(|cx| mailbox.poll_recv(cx)).await else {
            return;
        };
        match envelope {
            Envelope::Ask { tag, demand } => {
                let Some(consumer) = consumers.get_mut(tag) else {
                    continue;
                };
                consumer.demand += demand;
                stats
                    .demand
                    .store(consumer.demand as u64, Ordering::Relaxed);
                let want = consumer.demand;
                match stage.handle_demand(want).await {
                    Ok(events) => {
                        // The dispatcher: one consumer takes what it asked for.
                        let consumer = &mut consumers[tag];
                        let n = events.len().min(consumer.demand);
                        consumer.demand -= n;
                        stats.deliveries.fetch_add(1, Ordering::Relaxed);
                        if consumer
                            .mailbox
                            .send(Envelope::Events {
                                tag: consumer.remote_tag,
                                events,
                            })
                            .is_err()
                        {
                            stop = true;
                        }
                    }
                    Err(_) => stop = true,
                }
            }
            _ => rare_mail(),
        }
    }
}

/// Where the model's stages would handle the rest of their mail.
#[cold]
#[inline(never)]
fn rare_mail() {}

async fn run_consumer<C: Consumer>(
    mut stage: C,
    mut mailbox: mpsc::UnboundedReceiver<Envelope>,
    mut producers: Vec<Upstream>,
    stats: Arc<Stats>,
    life: Arc<Life>,
) {
    let mut stop = false;
    for p in &mut producers {
        let _ = p.mailbox.send(Envelope::Ask {
            tag: p.remote_tag,
            demand: p.max,
        });
        p.pending = p.max;
    }
    loop {
        if life.requests.load(Ordering::Acquire) {
            stop = true;
        }
        if stop {
            return;
        }
        let Some(envelope) = std::future::poll_fn(|cx| mailbox.poll_recv(cx)).await else {
            return;
        };
        match envelope {
            Envelope::Events { tag, events } => {
                let Some(producer) = producers.get_mut(tag) else {
                    continue;
                };
                let n = events.len();
                producer.pending -= n.min(producer.pending);
                if stage.handle_events(events, tag).await.is_err() {
                    stop = true;
                    continue;
                }
                let producer = &mut producers[tag];
                if producer.pending <= producer.min {
                    let ask = producer.max - producer.pending;
                    producer.pending = producer.max;
                    stats.asks.fetch_add(1, Ordering::Relaxed);
                    let _ = producer.mailbox.send(Envelope::Ask {
                        tag: producer.remote_tag,
                        demand: ask,
                    });
                }
            }
            _ => rare_mail(),
        }
    }
}

struct Counter(u64);
impl Producer for Counter {
    async fn handle_demand(&mut self, demand: usize) -> Result<Vec<u64>, BoxError> {
        let batch: Vec<u64> = (self.0..self.0 + demand as u64).collect();
        self.0 += demand as u64;
        Ok(batch)
    }
}
struct Counting {
    seen: u64,
    target: u64,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}
impl Consumer for Counting {
    async fn handle_events(&mut self, events: Vec<u64>, _tag: usize) -> Result<(), BoxError> {
        self.seen += std::hint::black_box(&events).len() as u64;
        if self.seen >= self.target {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
            return Err("done".into());
        }
        Ok(())
    }
}

/// `baseline::credit` of the bench (crates/gen-stage-cli/src/bench/baseline.rs), copied
/// as it is so that this program measures the same hand-written protocol.
async fn baseline(events: u64) {
    let (asks, mut asked) = mpsc::unbounded_channel::<usize>();
    let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<u64>>();
    tokio::spawn(async move {
        let mut next = 0u64;
        while let Some(demand) = asked.recv().await {
            let batch: Vec<u64> = (next..next + demand as u64).collect();
            next += demand as u64;
            if sender.send(batch).is_err() {
                break;
            }
        }
    });
    let _ = asks.send(1);
    let mut seen = 0;
    while seen < events {
        let batch = receiver.recv().await.unwrap();
        for part in batch.chunks(1) {
            seen += std::hint::black_box(part).len() as u64;
            let _ = asks.send(part.len());
        }
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15000);
    if std::env::args().nth(2).as_deref() == Some("baseline") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async move {
            let start = std::time::Instant::now();
            tokio::spawn(baseline(n)).await.unwrap();
            let e = start.elapsed();
            println!(
                "baseline {n} round trips in {e:?}: {:.2} M/s",
                n as f64 / e.as_secs_f64() / 1e6
            );
        });
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (ptx, prx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats {
            deliveries: AtomicU64::new(0),
            asks: AtomicU64::new(0),
            demand: AtomicU64::new(0),
        });
        let life = Arc::new(Life {
            requests: AtomicBool::new(false),
        });
        let (done, wait) = tokio::sync::oneshot::channel();
        let start = std::time::Instant::now();
        tokio::spawn(run_producer(
            Counter(0),
            prx,
            vec![Downstream {
                mailbox: ctx,
                demand: 0,
                remote_tag: 0,
            }],
            stats.clone(),
            life.clone(),
        ));
        tokio::spawn(run_consumer(
            Counting {
                seen: 0,
                target: n,
                done: Some(done),
            },
            crx,
            vec![Upstream {
                mailbox: ptx,
                pending: 0,
                max: 1,
                min: 0,
                remote_tag: 0,
            }],
            stats.clone(),
            life.clone(),
        ));
        let _ = wait.await;
        let e = start.elapsed();
        println!(
            "{n} round trips in {e:?}: {:.2} M/s",
            n as f64 / e.as_secs_f64() / 1e6
        );
    });
}
