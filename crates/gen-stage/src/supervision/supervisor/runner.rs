//! The supervisor's task.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::error::StartError;
use crate::exit::ExitReason;
use crate::exit_watch::ExitSender;
use crate::supervision::child::{ChildSpec, Restart, Supervised};
use crate::supervision::events::{Announcer, ChildEvent};
use crate::supervision::intensity::RestartIntensity;
use crate::supervision::supervisor::{
    ChildInfo, Command, Strategy, Supervisor, SupervisorError, SupervisorRef,
};

struct Child {
    spec: ChildSpec,
    running: Option<Box<dyn Supervised>>,
    /// Bumped at every start, so that exits of earlier runs are ignored.
    generation: u64,
    restarts: usize,
}

type Exit = BoxFuture<'static, (usize, u64, ExitReason)>;

struct Runner {
    children: Vec<Child>,
    strategy: Strategy,
    intensity: RestartIntensity,
    exits: FuturesUnordered<Exit>,
    /// Where the supervisor's exit is published, once it runs; taken when it is.
    exit: Option<ExitSender>,
    /// Tells the watchers; closed once the supervisor's end is announced.
    events: Arc<Announcer<String>>,
}

pub(super) async fn start(supervisor: Supervisor) -> Result<SupervisorRef, SupervisorError> {
    let mut ids = std::collections::HashSet::new();
    if let Some(spec) = supervisor
        .children
        .iter()
        .find(|spec| !ids.insert(spec.id.as_str()))
    {
        return Err(SupervisorError::DuplicateChildId(spec.id.clone()));
    }
    let mut runner = Runner {
        children: supervisor
            .children
            .into_iter()
            .map(|spec| Child {
                spec,
                running: None,
                generation: 0,
                restarts: 0,
            })
            .collect(),
        strategy: supervisor.strategy,
        intensity: supervisor.intensity,
        exits: FuturesUnordered::new(),
        exit: None,
        events: supervisor.events,
    };
    for index in 0..runner.children.len() {
        if let Err(error) = runner.start_child(index, false).await {
            let id = runner.children[index].spec.id.clone();
            runner.stop_from(0).await;
            return Err(SupervisorError::ChildStart { id, error });
        }
    }
    let (commands, receiver) = mpsc::unbounded_channel();
    let (exit_sender, exit) = crate::exit_watch::channel();
    // Held by the runner from now on, so that even a kill before its first poll
    // publishes the stop only once the children are gone (see `Drop for Runner`).
    runner.exit = Some(exit_sender);
    let events = runner.events.clone();
    let task = tokio::spawn(runner.run(receiver));
    Ok(SupervisorRef {
        commands,
        exit,
        abort: task.abort_handle(),
        events,
    })
}

impl Drop for Runner {
    /// A supervisor that goes away without stopping its children (killed) kills them:
    /// none outlives it unsupervised. Its stop is published once they are gone, so
    /// that whoever waits for it (a parent about to start it again, with the same
    /// names) finds them stopped.
    ///
    /// Its watchers learn the children's exits, then its own, before the stop is
    /// published; then their stream ends.
    fn drop(&mut self) {
        let mut gone = Vec::new();
        for child in &mut self.children {
            if let Some(running) = child.running.take() {
                running.kill();
                gone.push((child.spec.id.clone(), running.stopped()));
            }
        }
        let exit = self.exit.take();
        if gone.is_empty() && exit.is_none() {
            // Ended (or never started) with nothing left running.
            self.events.close();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.events.close();
            return;
        };
        let events = self.events.clone();
        runtime.spawn(async move {
            for (id, stopped) in gone {
                let reason = stopped.await;
                events.announce_shared(|| ChildEvent::Exited { id, reason });
            }
            if let Some(exit) = exit {
                events.announce_shared(|| ChildEvent::SupervisorStopped {
                    reason: ExitReason::Killed,
                });
                events.close();
                exit.send_replace(Some(ExitReason::Killed));
            } else {
                events.close();
            }
        });
    }
}

impl Child {
    /// Stops the child if it runs, as its shutdown says, and returns how it stopped;
    /// `None` if it did not run. It stays the supervisor's until it has stopped, so
    /// that a supervisor killed meanwhile kills it too (see `Drop for Runner`).
    async fn stop(&mut self) -> Option<ExitReason> {
        let running = self.running.as_deref()?;
        // The exit of this run is expected: it is not a crash to handle.
        self.generation += 1;
        let reason = self.spec.shutdown.stop(running).await;
        self.running = None;
        Some(reason)
    }
}

impl Runner {
    /// Starts child `index` (again, if `restart`); an ignored start leaves it not
    /// running.
    async fn start_child(&mut self, index: usize, restart: bool) -> Result<(), StartError> {
        let child = &mut self.children[index];
        child.generation += 1;
        match (child.spec.start)().await {
            Ok(running) => {
                let generation = child.generation;
                let stopped = running.stopped();
                self.exits
                    .push(Box::pin(async move { (index, generation, stopped.await) }));
                child.running = Some(running);
                let id = &child.spec.id;
                self.events.announce_shared(|| {
                    let id = id.clone();
                    if restart {
                        ChildEvent::Restarted { id }
                    } else {
                        ChildEvent::Started { id }
                    }
                });
                Ok(())
            }
            Err(StartError::Ignored) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Stops child `index` if it runs (see [`Child::stop`]) and tells the watchers;
    /// false if it did not run.
    async fn stop_child(&mut self, index: usize) -> bool {
        let child = &mut self.children[index];
        let Some(reason) = child.stop().await else {
            return false;
        };
        let id = &child.spec.id;
        self.events.announce_shared(|| ChildEvent::Exited {
            id: id.clone(),
            reason,
        });
        true
    }

    /// Stops the running children from `first` on, last first.
    async fn stop_from(&mut self, first: usize) {
        for index in (first..self.children.len()).rev() {
            self.stop_child(index).await;
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let reason = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop(reason)) => break reason,
                    Some(Command::WhichChildren(reply)) => {
                        let _ = reply.send(self.which_children());
                    }
                    None => break ExitReason::Shutdown,
                },
                Some(first) = self.exits.next(), if !self.exits.is_empty() => {
                    if let Err(reason) = self.handle_exits(first).await {
                        break reason;
                    }
                }
            }
        };
        self.stop_from(0).await;
        commands.close();
        self.events
            .announce_shared(|| ChildEvent::SupervisorStopped {
                reason: reason.clone(),
            });
        self.events.close();
        if let Some(exit) = self.exit.take() {
            exit.send_replace(Some(reason));
        }
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|child| ChildInfo {
                id: child.spec.id.clone(),
                running: child.running.is_some(),
                restarts: child.restarts,
            })
            .collect()
    }

    /// Handles `first` and every other exit already known, earliest child first: a
    /// child often stops because one started before it did.
    async fn handle_exits(&mut self, first: (usize, u64, ExitReason)) -> Result<(), ExitReason> {
        let mut exits = vec![first];
        while let Some(Some(exit)) = futures::FutureExt::now_or_never(self.exits.next()) {
            exits.push(exit);
        }
        exits.sort_by_key(|&(index, _, _)| index);
        for (index, generation, reason) in exits {
            if self.children[index].generation != generation {
                continue; // an earlier run, stopped on purpose
            }
            self.child_stopped(index, reason).await?;
        }
        Ok(())
    }

    async fn child_stopped(&mut self, index: usize, reason: ExitReason) -> Result<(), ExitReason> {
        let child = &mut self.children[index];
        child.running = None;
        self.events.announce_shared(|| ChildEvent::Exited {
            id: child.spec.id.clone(),
            reason: reason.clone(),
        });
        if !child.spec.restart.restarts_after(&reason) {
            tracing::debug!(
                "supervisor: child {:?} stopped ({reason}); not restarted",
                child.spec.id
            );
            return Ok(());
        }
        tracing::warn!(
            "supervisor: child {:?} stopped ({reason}); restarting",
            child.spec.id
        );
        let range = match self.strategy {
            Strategy::OneForOne => index..=index,
            Strategy::RestForOne => index..=self.children.len() - 1,
            Strategy::OneForAll => 0..=self.children.len() - 1,
        };
        // The others in range are stopped (last first) and restarted with it, in
        // order; temporary children are never restarted.
        let mut restart = vec![index];
        for position in range.rev() {
            if position == index {
                continue;
            }
            if self.stop_child(position).await
                && self.children[position].spec.restart != Restart::Temporary
            {
                restart.push(position);
            }
        }
        restart.sort_unstable();
        loop {
            if !self.intensity.allow_restart() {
                tracing::error!("supervisor: restart intensity reached; stopping");
                return Err(ExitReason::TooManyRestarts);
            }
            match self.restart_children(&restart).await {
                Ok(()) => return Ok(()),
                Err(error) => tracing::error!("supervisor: restart failed: {error}"),
            }
        }
    }

    /// Starts the listed children that are not running, in order.
    async fn restart_children(&mut self, positions: &[usize]) -> Result<(), StartError> {
        for &position in positions {
            if self.children[position].running.is_some() {
                continue;
            }
            self.children[position].restarts += 1;
            // On failure the rest stay stopped; the caller retries within the intensity.
            self.start_child(position, true).await?;
        }
        Ok(())
    }
}
